//! The sizes a model may ask for. A model's input shape (or its card's input size) decides how
//! much memory every inference allocates; a size no machine can hold must be refused with a
//! message, before an allocation fails and aborts the process.

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
