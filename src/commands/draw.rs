//! What `segment` and `camera` draw: the mode and one style per mask label, from the drawing
//! options they share.

use crate::Error;
use crate::cli::{DrawArgs, EdgeArg, MaskFormat, ModeArg};
use crate::imaging::{Background, Compositor, Edge, Mode, label_styles};
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
    if draw.feather.is_some_and(|f| !(f.is_finite() && f > 0.0)) {
        return Err(Error::Config("--feather is a positive number of pixels".into()).into());
    }
    let mode = mode(draw, keeps_alpha)?;
    let edge = match draw.edge {
        EdgeArg::Soft => Edge::Soft {
            feather: draw.feather,
        },
        EdgeArg::Hard => Edge::Hard,
    };
    // A matte shows the object as a cut-out keeps it.
    let as_cutout = matches!(mode, Mode::Cutout { .. } | Mode::Matte);
    let styles = label_styles(card, &draw.classes, as_cutout)?;
    (0..workers)
        .map(|_| {
            Compositor::new(mode.clone(), styles.clone())
                .map(|compositor| compositor.with_edge(edge))
                .map_err(Into::into)
        })
        .collect()
}

fn mode(args: &DrawArgs, keeps_alpha: bool) -> anyhow::Result<Mode> {
    Ok(match args.mode {
        ModeArg::Overlay => Mode::Overlay {
            opacity: args.opacity,
        },
        ModeArg::Mask => match args.mask_format {
            MaskFormat::Labels => Mode::Mask,
            MaskFormat::Alpha => Mode::Matte,
        },
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
