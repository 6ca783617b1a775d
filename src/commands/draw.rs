//! What `segment` and `camera` draw: the mode and one style per mask label, from the drawing
//! options they share.

use crate::Error;
use crate::cli::{DrawArgs, ModeArg};
use crate::imaging::{Background, Compositor, Mode, label_styles};
use crate::infer::ModelCard;

/// One compositor per worker for `card`'s labels, drawing as `draw` asks.
/// `keeps_alpha`: whether the output can keep a transparent background.
pub(super) fn compositors(
    draw: &DrawArgs,
    card: &ModelCard,
    keeps_alpha: bool,
    workers: usize,
) -> anyhow::Result<Vec<Compositor>> {
    if !(0.0..=1.0).contains(&draw.threshold) || !(0.0..=1.0).contains(&draw.opacity) {
        return Err(Error::Config("--threshold and --opacity are between 0 and 1".into()).into());
    }
    let mode = mode(draw, keeps_alpha)?;
    let styles = label_styles(card, &draw.classes, draw.mode == ModeArg::Cutout)?;
    (0..workers)
        .map(|_| Compositor::new(mode.clone(), styles.clone()).map_err(Into::into))
        .collect()
}

fn mode(args: &DrawArgs, keeps_alpha: bool) -> anyhow::Result<Mode> {
    Ok(match args.mode {
        ModeArg::Overlay => Mode::Overlay {
            opacity: args.opacity,
        },
        ModeArg::Mask => Mode::Mask,
        ModeArg::Cutout => {
            let mut background = Background::parse(&args.background)?;
            if background == Background::Transparent && !keeps_alpha {
                tracing::warn!(
                    "this container cannot keep transparency (use .mov or a folder); background is black"
                );
                background = Background::Color([0, 0, 0]);
            }
            Mode::Cutout { background }
        }
    })
}
