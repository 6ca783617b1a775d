//! How each mask label is drawn, from the model's card and the classes a user selects.

use super::LabelStyle;
use crate::infer::ModelCard;
use crate::{Error, Result};

/// One style per mask label: binary models have labels 0 (background) and 1 (object);
/// multi-class models one label per class, drawn when selected (by name or index; all when none
/// is). A `cutout` keeps the selected classes, and without a selection every class but the
/// first (the background).
///
/// # Errors
/// [`Error::Config`] when a selected class is not one of the model's.
pub fn label_styles(
    card: &ModelCard,
    selected: &[String],
    cutout: bool,
) -> Result<Vec<LabelStyle>> {
    let colors = &card.colors;
    let selected = selected
        .iter()
        .map(|name| class_index(card, name))
        .collect::<Result<Vec<_>>>()?;
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
    if selected.is_empty() && cutout {
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
fn class_index(card: &ModelCard, name: &str) -> Result<usize> {
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
