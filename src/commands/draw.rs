//! What `segment` and `camera` draw: the mode and one style per mask label, from the drawing
//! options they share.

use crate::Error;
use crate::cli::{DrawArgs, ModeArg};
use crate::imaging::{Background, Compositor, LabelStyle, Mode};
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
    let styles = label_styles(card, &draw.classes, draw.mode)?;
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

/// One style per mask label: binary models have labels 0 (background) and 1 (object);
/// multi-class models one label per class, drawn when selected by `--classes`.
pub(super) fn label_styles(
    card: &ModelCard,
    selected: &[String],
    mode: ModeArg,
) -> anyhow::Result<Vec<LabelStyle>> {
    let colors = &card.colors;
    let selected = selected
        .iter()
        .map(|name| class_index(card, name))
        .collect::<crate::Result<Vec<_>>>()?;
    if card.num_classes() == 1 {
        let background = LabelStyle {
            color: None,
            foreground: false,
            mask_value: 0,
        };
        let object = LabelStyle {
            color: Some(colors[0]),
            foreground: true,
            mask_value: 255,
        };
        return Ok(vec![background, object]);
    }
    let mut shown = vec![selected.is_empty(); card.num_classes()];
    if selected.is_empty() && mode == ModeArg::Cutout {
        shown[0] = false;
    }
    for index in selected {
        shown[index] = true;
    }
    Ok(shown
        .iter()
        .enumerate()
        .map(|(i, &on)| LabelStyle {
            color: on.then_some(colors[i]),
            foreground: on,
            mask_value: i as u8,
        })
        .collect())
}

/// The index of the class `name` (a class name or an index) names.
///
/// # Errors
/// [`Error::Config`] when the model has no such class.
fn class_index(card: &ModelCard, name: &str) -> crate::Result<usize> {
    card.classes
        .iter()
        .position(|c| c == name)
        .or_else(|| {
            name.parse::<usize>()
                .ok()
                .filter(|&i| i < card.num_classes())
        })
        .ok_or_else(|| {
            Error::Config(format!(
                "--classes: '{name}' is not a class of this model (classes: {}; or an index \
                 below {})",
                card.classes.join(", "),
                card.num_classes()
            ))
        })
}
