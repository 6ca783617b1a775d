//! The sizes a model may ask for. A model's input shape (or its card's input size) decides how
//! much memory every inference allocates; a size no machine can hold must be refused with a
//! message, before an allocation fails and aborts the process.

use std::path::Path;

use super::raw::RawSession;

/// The longest input side segstream runs a model at (GStreamer's video caps stop far above,
/// but no segmentation model is trained or run beyond 16K).
pub const MAX_INPUT_SIDE: usize = 16_384;

/// Checks that a batch of `batch` inputs of `size` (height, width), with `classes` output
/// maps, has sides up to [`MAX_INPUT_SIDE`] and fits in half the memory available now.
///
/// # Errors
/// The reason, naming the size and what the machine has.
pub fn check_input_size(batch: usize, size: [usize; 2], classes: usize) -> Result<(), String> {
    let [height, width] = size;
    if height == 0 || width == 0 || height > MAX_INPUT_SIDE || width > MAX_INPUT_SIDE {
        return Err(format!(
            "its input size {height}x{width} is outside 1..={MAX_INPUT_SIDE} per side"
        ));
    }
    let values = (batch as u128) * (3 + classes as u128) * (height as u128) * (width as u128);
    let bytes = values * 4;
    if let Some(available) = available_memory()
        && bytes > u128::from(available / 2)
    {
        return Err(format!(
            "a {batch}×3×{height}×{width} input and its {classes}-class output need {} MB, more \
             than half the {} MB of memory available",
            bytes >> 20,
            available >> 20
        ));
    }
    Ok(())
}

/// The working memory (activations) a model needs per input pixel, measured on this machine:
/// the process's peak resident memory over one run at `size`, then over one at twice its
/// sides, the peak reset before each (`/proc/self/clear_refs`). ONNX Runtime's arena keeps what
/// the first run took, so the second run's growth is the difference between the two sizes;
/// where memory is handed back instead, the figure comes out larger, never smaller. `None`
/// when it cannot be measured (no such kernel interface, or the model does not run there).
pub fn working_bytes_per_pixel(
    model: &[u8],
    origin: &Path,
    [height, width]: [usize; 2],
) -> Option<f64> {
    let mut session = RawSession::open(model, origin).ok()?;
    let run = |session: &mut RawSession, [h, w]: [usize; 2]| -> Option<u64> {
        std::fs::write("/proc/self/clear_refs", "5").ok()?;
        let before = process_memory("VmRSS:")?;
        let input = ndarray::ArrayD::<f32>::zeros(vec![1, 3, h, w]);
        session.run(input.view()).ok()?;
        Some(process_memory("VmHWM:")?.saturating_sub(before))
    };
    run(&mut session, [height, width])?;
    let grown = run(&mut session, [2 * height, 2 * width])?;
    Some(grown as f64 / (3 * height * width) as f64)
}

/// Checks that `pixels` input pixels of a model needing `bytes_per_pixel` of working memory
/// fit in half the memory available now, as [`check_input_size`] does for its tensors.
///
/// # Errors
/// The reason, naming what is needed and what the machine has.
pub fn check_working_memory(pixels: u64, bytes_per_pixel: f64) -> Result<(), String> {
    let need = (pixels as f64 * bytes_per_pixel) as u64;
    match available_memory() {
        Some(available) if need > available / 2 => Err(format!(
            "it would need about {} MB of working memory ({bytes_per_pixel:.0} bytes a pixel, \
             measured at small sizes), more than half the {} MB of memory available",
            need >> 20,
            available >> 20
        )),
        _ => Ok(()),
    }
}

/// A figure of this process's memory from `/proc/self/status` (`VmRSS:`, `VmHWM:`), in bytes.
fn process_memory(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Memory the kernel says is available for new allocations (`MemAvailable`), when it says.
pub fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_beyond_the_limit_or_the_memory_are_refused() {
        assert!(check_input_size(1, [256, 256], 1).is_ok());
        assert!(check_input_size(1, [60_000, 60_000], 1).is_err());
        assert!(check_input_size(1, [0, 256], 1).is_err());
        assert!(check_input_size(1 << 40, [16, 16], 1).is_err());
    }
}
