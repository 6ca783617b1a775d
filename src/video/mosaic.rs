//! Several live sources tiled into one output: each source's composed frames replace its tile
//! (scaled to fit, letterboxed), and the whole picture goes to one sink whenever a tile
//! changes, at most [`MOSAIC_RATE`] times a second. A source that falls silent keeps its last
//! picture; it never holds the others back.
//!
//! ```text
//! source 0 lane --Tile 0--\
//! source 1 lane --Tile 1---> Mosaic (grid of tiles) --push--> FrameSink (window, file, RTP…)
//! source 2 lane --Tile 2--/
//! ```

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gstreamer as gst;

use super::frame::Frame;
use super::sink::{FrameOutput, FrameSink};
use crate::Result;
use crate::imaging::Scaler;

/// The most pictures a second the mosaic sends on (each tile update would otherwise be one).
pub const MOSAIC_RATE: u32 = 30;
/// The largest mosaic: tiles are scaled down to fit it.
const LARGEST: [usize; 2] = [1920, 1080];

/// One output shared by several sources, each drawn in a tile of a grid.
pub struct Mosaic {
    state: Mutex<State>,
}

/// Geometry of the grid, fixed by the first frame that arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Grid {
    columns: usize,
    rows: usize,
    /// Size of one tile (even, so that 4:2:0 encoders take the mosaic as it is).
    tile: [usize; 2],
}

impl Grid {
    /// The grid for `tiles` sources whose first frame is `first` (width, height) in size:
    /// nearly square (columns ≥ rows), tiles at the frame's size unless the mosaic would
    /// exceed [`LARGEST`].
    fn for_tiles(tiles: usize, first: [usize; 2]) -> Grid {
        let columns = (1..=tiles).find(|c| c * c >= tiles).unwrap_or(1);
        let rows = tiles.div_ceil(columns);
        let scale = f64::min(
            1.0,
            f64::min(
                LARGEST[0] as f64 / (columns * first[0]) as f64,
                LARGEST[1] as f64 / (rows * first[1]) as f64,
            ),
        );
        let side = |length: usize| (((length as f64 * scale) as usize) & !1).max(2);
        Grid {
            columns,
            rows,
            tile: [side(first[0]), side(first[1])],
        }
    }

    /// Size of the whole mosaic.
    fn size(&self) -> [usize; 2] {
        [self.columns * self.tile[0], self.rows * self.tile[1]]
    }
}

/// What the tiles share.
struct State {
    /// The output, until the last tile leaves.
    sink: Option<FrameSink>,
    grid: Option<Grid>,
    /// The whole picture (packed RGBA), opaque black where no source has drawn yet.
    picture: Vec<u8>,
    /// The first frame, whose frame rate and pixel aspect the mosaic takes.
    like: Option<Frame>,
    /// Tiles the mosaic was made for.
    tiles: usize,
    /// Tiles that have not left yet.
    open: usize,
    interrupted: bool,
    /// When the first picture was sent: the mosaic's time zero.
    started: Option<Instant>,
    last_sent: Option<Instant>,
    /// A tile changed since the picture was last sent.
    changed: bool,
    sent: u64,
    /// How finishing the output ended, once the last tile has left.
    outcome: Option<std::result::Result<u64, String>>,
}

impl Mosaic {
    /// A mosaic of `tiles` sources written to `sink`, which [`Mosaic::start`] starts.
    pub fn new(sink: FrameSink, tiles: usize) -> Arc<Mosaic> {
        Arc::new(Mosaic {
            state: Mutex::new(State {
                sink: Some(sink),
                grid: None,
                picture: Vec::new(),
                like: None,
                tiles,
                open: tiles,
                interrupted: false,
                started: None,
                last_sent: None,
                changed: false,
                sent: 0,
                outcome: None,
            }),
        })
    }

    /// Starts the output; one that cannot be opened fails here, and is let go (there is
    /// nothing to finish when the tiles leave).
    ///
    /// # Errors
    /// [`crate::Error::Pipeline`] with GStreamer's reason.
    pub fn start(&self) -> Result<()> {
        let mut state = self.lock();
        let started = state.sink.as_ref().map_or(Ok(()), FrameSink::start);
        if started.is_err() {
            state.sink = None;
        }
        started
    }

    /// The output for source `index` (0-based, in the grid's reading order).
    pub fn tile(self: &Arc<Mosaic>, index: usize) -> Tile {
        Tile {
            mosaic: Arc::clone(self),
            index,
            scaler: Scaler::default(),
            written: 0,
            left: false,
        }
    }

    /// How the shared output ended once every tile has left: the pictures written, or the
    /// error that finishing it met. `None` while tiles are still open.
    pub fn outcome(&self) -> Option<std::result::Result<u64, String>> {
        self.lock().outcome.clone()
    }

    /// The grid's size in tiles (columns, rows), once the first frame has fixed it.
    pub fn layout(&self) -> Option<[usize; 2]> {
        self.lock().grid.map(|grid| [grid.columns, grid.rows])
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A tile that panicked leaves the picture as it was: still worth writing.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    /// The grid, fixed by `frame` when it is the first.
    fn grid_for(&mut self, frame: &Frame) -> Grid {
        if let Some(grid) = self.grid {
            return grid;
        }
        let grid = Grid::for_tiles(self.tiles, [frame.width(), frame.height()]);
        let [width, height] = grid.size();
        self.picture = [0, 0, 0, 255].repeat(width * height);
        self.like = Some(frame.with_pixels(Vec::new()));
        self.grid = Some(grid);
        grid
    }

    /// Copies `pixels` (a tile's size) into tile `index`.
    fn draw(&mut self, grid: Grid, index: usize, pixels: &[u8]) {
        let [width, _] = grid.size();
        let (column, row) = (index % grid.columns, index / grid.columns);
        let line = grid.tile[0] * 4;
        for (y, source) in pixels.chunks_exact(line).enumerate() {
            let start = ((row * grid.tile[1] + y) * width + column * grid.tile[0]) * 4;
            self.picture[start..start + line].copy_from_slice(source);
        }
        self.changed = true;
    }

    /// Sends the picture when it changed and the last one left at least a frame interval ago
    /// (or at once when `last_chance`).
    fn send_if_due(&mut self, last_chance: bool) -> Result<()> {
        let interval = Duration::from_secs(1) / MOSAIC_RATE;
        let due = self.last_sent.is_none_or(|at| at.elapsed() >= interval);
        if !self.changed || !(due || last_chance) {
            return Ok(());
        }
        let (Some(grid), Some(like), Some(sink)) = (self.grid, &self.like, self.sink.as_mut())
        else {
            return Ok(());
        };
        let [width, height] = grid.size();
        let mut picture = like.resized(width, height, self.picture.clone())?;
        picture.seq = self.sent;
        let since = self.started.get_or_insert_with(Instant::now).elapsed();
        picture.pts = Some(gst::ClockTime::from_nseconds(since.as_nanos() as u64));
        picture.duration = None;
        sink.push(picture)?;
        self.sent += 1;
        self.changed = false;
        self.last_sent = Some(Instant::now());
        Ok(())
    }

    /// One tile leaves; the last one sends what is pending and finishes the output.
    fn leave(&mut self, interrupted: bool) -> Result<()> {
        self.open -= 1;
        self.interrupted |= interrupted;
        if self.open > 0 {
            return Ok(());
        }
        let sent = self.send_if_due(true);
        let Some(sink) = self.sink.take() else {
            return sent;
        };
        let finished = sent.and_then(|()| sink.finish(self.interrupted));
        self.outcome = Some(finished.as_ref().map_err(ToString::to_string).copied());
        finished.map(|_| ())
    }
}

/// One source's place in a [`Mosaic`].
pub struct Tile {
    mosaic: Arc<Mosaic>,
    index: usize,
    scaler: Scaler,
    written: u64,
    /// Whether this tile has left the mosaic (finished, or dropped after a failure).
    left: bool,
}

impl FrameOutput for Tile {
    fn push(&mut self, frame: Frame) -> Result<()> {
        let grid = self.mosaic.lock().grid_for(&frame);
        // Scaled outside the lock: the other tiles keep drawing meanwhile.
        let pixels =
            self.scaler
                .rgba_fit(&frame.pixels, [frame.width(), frame.height()], grid.tile);
        let mut state = self.mosaic.lock();
        state.draw(grid, self.index, &pixels);
        state.send_if_due(false)?;
        self.written += 1;
        Ok(())
    }

    fn finish(mut self: Box<Self>, interrupted: bool) -> Result<u64> {
        self.left = true;
        self.mosaic.lock().leave(interrupted)?;
        Ok(self.written)
    }
}

impl Drop for Tile {
    /// A tile dropped without finishing (its source failed) leaves the mosaic, so that the
    /// output is still finalised when the others end.
    fn drop(&mut self) {
        if !self.left
            && let Err(error) = self.mosaic.lock().leave(true)
        {
            tracing::warn!("finishing the tiled output: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_are_nearly_square_and_fit_the_largest_mosaic() {
        let grid = Grid::for_tiles(2, [640, 480]);
        assert_eq!((grid.columns, grid.rows, grid.tile), (2, 1, [640, 480]));
        let grid = Grid::for_tiles(3, [640, 480]);
        assert_eq!((grid.columns, grid.rows), (2, 2));
        let grid = Grid::for_tiles(4, [1920, 1080]);
        assert_eq!((grid.columns, grid.rows, grid.tile), (2, 2, [960, 540]));
        let grid = Grid::for_tiles(5, [321, 241]);
        assert_eq!((grid.columns, grid.rows, grid.tile), (3, 2, [320, 240]));
        let grid = Grid::for_tiles(1, [1280, 720]);
        assert_eq!(grid.size(), [1280, 720]);
    }
}
