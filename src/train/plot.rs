//! Line charts as PNG (plotters, drawn into a buffer and saved with `image`): the training curves
//! and the learning-rate range test. Text uses the system's DejaVu Sans (Debian's
//! `fonts-dejavu-core`, installed by `scripts/setup`).

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;

use crate::paths::shown;
use crate::{Error, Result};

/// Where Debian keeps DejaVu Sans.
const FONT_FILE: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

/// One chart: named series of (x, y) points.
pub struct Panel<'a> {
    /// Chart title.
    pub title: &'a str,
    /// X axis label.
    pub x_label: &'a str,
    /// (name, points).
    pub series: Vec<(&'a str, Vec<(f64, f64)>)>,
}

/// Draws `panels` side by side into the PNG `path`.
///
/// # Errors
/// No usable font, or a file that cannot be written.
pub fn draw_panels(path: &Path, panels: &[Panel<'_>]) -> Result<()> {
    register_font()?;
    let (width, height) = (640 * panels.len().max(1) as u32, 420);
    let mut buffer = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        let areas = root.split_evenly((1, panels.len().max(1)));
        for (panel, area) in panels.iter().zip(&areas) {
            draw_panel(panel, area).map_err(|e| Error::Config(format!("plotting: {e}")))?;
        }
        root.present()
            .map_err(|e| Error::Config(format!("plotting: {e}")))?;
    }
    image::RgbImage::from_raw(width, height, buffer)
        .expect("the buffer matches its size")
        .save(path)
        .map_err(|e| Error::Config(format!("writing {}: {e}", shown(path))))
}

type Area<'b> = DrawingArea<BitMapBackend<'b>, plotters::coord::Shift>;

fn draw_panel(
    panel: &Panel<'_>,
    area: &Area<'_>,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let points = || panel.series.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points().filter(|(x, y)| x.is_finite() && y.is_finite()) {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        return Ok(());
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    let (y0, y1) = (y0 - pad, y1 + pad);
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart
        .configure_mesh()
        .x_desc(panel.x_label)
        .label_style(("sans-serif", 13))
        .draw()?;
    for (i, (name, series)) in panel.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                series.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()?;
    Ok(())
}

/// Registers DejaVu Sans as plotters' "sans-serif" once per process.
fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let bytes = std::fs::read(FONT_FILE)
                .map_err(|e| format!("{FONT_FILE}: {e} (install fonts-dejavu-core)"))?;
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes.leak())
                .map_err(|_| format!("{FONT_FILE} is not a usable font"))
        })
        .clone()
        .map_err(Error::Config)
}
