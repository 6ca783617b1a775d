//! Labelled images: finding pairs on disk, what mask values mean, the grouped validation split,
//! decoding, and the resized cache training reads from.
//!
//! Uses `imaging` (resizing), `infer` (the model card's classes), `paths` and the error.

pub mod cache;
pub mod classes;
pub mod layout;
pub mod pair;
pub mod read;
pub mod source;
pub mod split;

pub use cache::{Resized, Sample, load_resized};
pub use classes::ClassSet;
pub use layout::{Dataset, Layout};
pub use pair::Pair;
pub use read::{LabelledImage, read_pair};
pub use source::DataSource;
pub use split::{CARVANA_GROUP, group_of, grouped_split};
