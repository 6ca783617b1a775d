//! A validation split that does not leak: every image of one object (a group) lands on the same
//! side, chosen by a seeded shuffle of the groups. Fold `k` holds out the `k`-th slice of that
//! order, so the folds of one seed are disjoint (k-fold cross-validation).

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use regex::Regex;

use super::pair::Pair;

/// Carvana's grouping: the car id before `_NN` (`00087a6bd4dc_04` → `00087a6bd4dc`).
pub const CARVANA_GROUP: &str = r"^(.+)_\d+$";

/// CamVid's grouping: the sequence, the name's prefix before `_` (`0016E5_07959` → `0016E5`,
/// `Seq05VD_f00120` → `Seq05VD`); frames of one drive look alike, so a sequence is one group.
pub const CAMVID_GROUP: &str = r"^([^_]+)_";

/// Splits `pairs` into (train, valid) with every image of group `held` in valid and the rest
/// in train, and the groups there are with their image counts (for an error naming them).
pub fn hold_out_group(
    pairs: Vec<Pair>,
    group_by: &Regex,
    held: &str,
) -> (Vec<Pair>, Vec<Pair>, BTreeMap<String, usize>) {
    let mut counts = BTreeMap::new();
    let (valid, train): (Vec<Pair>, Vec<Pair>) = pairs.into_iter().partition(|pair| {
        let group = group_of(&pair.name(), Some(group_by));
        let is_held = group == held;
        *counts.entry(group).or_insert(0) += 1;
        is_held
    });
    (train, valid, counts)
}

/// The group of an image name: `group_by`'s first capture (or whole match) where it matches,
/// else the name itself (each image its own group).
pub fn group_of(name: &str, group_by: Option<&Regex>) -> String {
    group_by
        .and_then(|re| re.captures(name))
        .and_then(|caps| caps.get(1).or_else(|| caps.get(0)))
        .map_or_else(|| name.to_string(), |m| m.as_str().to_string())
}

/// Splits `pairs` into (train, valid) with about `valid_frac` of the images in valid, whole
/// groups at a time: the `fold`-th such share of the shuffled groups (fold 0 the first). The
/// same seed and fold give the same split.
pub fn grouped_split(
    pairs: Vec<Pair>,
    valid_frac: f64,
    group_by: Option<&Regex>,
    seed: u64,
    fold: usize,
) -> (Vec<Pair>, Vec<Pair>) {
    let mut groups: BTreeMap<String, Vec<Pair>> = BTreeMap::new();
    for pair in pairs {
        groups
            .entry(group_of(&pair.name(), group_by))
            .or_default()
            .push(pair);
    }
    let total: usize = groups.values().map(Vec::len).sum();
    let wanted = (total as f64 * valid_frac).round() as usize;
    let mut order: Vec<Vec<Pair>> = groups.into_values().collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let skipped = wanted * fold;
    let (mut train, mut valid) = (Vec::new(), Vec::new());
    for group in order {
        if train.len() >= skipped && valid.len() < wanted {
            valid.extend(group);
        } else {
            train.extend(group);
        }
    }
    let by_name = |a: &Pair, b: &Pair| a.image.cmp(&b.image);
    train.sort_by(by_name);
    valid.sort_by(by_name);
    (train, valid)
}
