//! Labelled images: finding pairs on disk, what mask values mean, the grouped validation split,
//! decoding, and the resized cache training reads from.

pub mod cache;
pub mod classes;
pub mod layout;
pub mod read;
pub mod source;
pub mod split;

pub use cache::{Resized, Sample, load_resized};
pub use classes::ClassSet;
pub use layout::{Dataset, Layout, Pair};
pub use read::{LabelledImage, read_pair};
pub use source::DataSource;
pub use split::{CARVANA_GROUP, group_of, grouped_split};
