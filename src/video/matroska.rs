//! Whether a Matroska or WebM file was finalised whole, read from its first bytes: the muxer
//! writes the Segment's size only once the file is complete, and a file cut short (a failed
//! copy, a full disk) holds less than that size, though its header still announces the full
//! duration. Plain file reading; nothing here knows GStreamer.

use std::io::Read as _;
use std::path::Path;

/// The EBML header's element ID, the first element of every Matroska and WebM file.
const EBML_HEADER: u32 = 0x1A45_DFA3;
/// The Segment's element ID: everything after the header.
const SEGMENT: u32 = 0x1853_8067;

/// Whether the Matroska file at `path` holds its whole Segment: `None` when it is not a
/// Matroska file at all (or cannot be read), `Some(false)` when its Segment's size is unknown
/// (never finalised) or reaches past the end of the file.
pub fn is_whole(path: &Path) -> Option<bool> {
    let mut file = std::fs::File::open(path).ok()?;
    let length = file.metadata().ok()?.len();
    // The header is a few dozen bytes; 256 hold it and the Segment's ID and size.
    let mut head = Vec::with_capacity(256);
    file.by_ref().take(256).read_to_end(&mut head).ok()?;
    let mut at = 0;
    let (id, _) = vint(&head, &mut at, true)?;
    if id != u64::from(EBML_HEADER) {
        return None;
    }
    let (header_size, _) = vint(&head, &mut at, false)?;
    at = at.checked_add(usize::try_from(header_size).ok()?)?;
    let (id, _) = vint(&head, &mut at, true)?;
    if id != u64::from(SEGMENT) {
        return Some(false);
    }
    let (size, unknown) = vint(&head, &mut at, false)?;
    Some(
        !unknown
            && (at as u64)
                .checked_add(size)
                .is_some_and(|end| end <= length),
    )
}

/// Reads an EBML variable-length integer at `*at`: an element ID (`keep_marker`, as IDs are
/// written) or a size, and whether all its value bits are set (a size of "unknown").
fn vint(bytes: &[u8], at: &mut usize, keep_marker: bool) -> Option<(u64, bool)> {
    let first = *bytes.get(*at)?;
    let length = first.leading_zeros() as usize + 1;
    if length > 8 {
        return None;
    }
    let marker = 1u64 << (7 * length);
    let mut value = 0u64;
    for &byte in bytes.get(*at..*at + length)? {
        value = (value << 8) | u64::from(byte);
    }
    *at += length;
    let bits = value & (marker - 1);
    let unknown = bits == marker - 1;
    Some((if keep_marker { value } else { bits }, unknown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ids_are_read_as_written() {
        let mut at = 0;
        assert_eq!(vint(&[0x81], &mut at, false), Some((1, false)));
        let mut at = 0;
        assert_eq!(
            vint(&[0x1A, 0x45, 0xDF, 0xA3], &mut at, true),
            Some((0x1A45_DFA3, false))
        );
        assert_eq!(at, 4);
        let mut at = 0;
        assert_eq!(
            vint(
                &[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
                &mut at,
                false
            )
            .map(|v| v.1),
            Some(true)
        );
        let mut at = 0;
        assert_eq!(vint(&[0x00], &mut at, false), None);
    }
}
