//! Datasets as training and evaluation read them: layouts, the grouped split, augmentation that
//! keeps masks aligned, and a clear error for each kind of broken dataset.

use std::path::{Path, PathBuf};

use image::{GrayImage, Luma, Rgb, RgbImage};

use crate::media::shared;
use rand::SeedableRng;
use rand::rngs::StdRng;
use segstream::dataset::{
    ClassSet, DataSource, Dataset, Layout, Pair, Sample, grouped_split, load_resized,
};
use segstream::metrics::IGNORE;
use segstream::train::augment::{Augmentation, CopyPaste, Transform};
use segstream::train::loader::EpochPlan;

/// Writes an RGB image and a mask (values from `mask_value`) of the given sizes.
fn write_pair(
    image: &Path,
    mask: &Path,
    image_size: [u32; 2],
    mask_size: [u32; 2],
    mask_value: u8,
) {
    for path in [image, mask] {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    }
    RgbImage::from_pixel(image_size[0], image_size[1], Rgb([90, 120, 150]))
        .save(image)
        .unwrap();
    GrayImage::from_fn(mask_size[0], mask_size[1], |x, _| {
        Luma([if x < mask_size[0] / 2 { 0 } else { mask_value }])
    })
    .save(mask)
    .unwrap();
}

fn human_seg() -> PathBuf {
    shared("human_seg")
}

#[test]
fn layouts_are_detected_and_paired() {
    let people = Dataset::open(&human_seg(), None).unwrap();
    assert_eq!(people.layout, Layout::Generic);
    assert_eq!(people.train.len(), 235);
    assert!(people.valid.is_none());
    let camvid_root = shared("camvid");
    let camvid = Dataset::open(&camvid_root, None).unwrap();
    assert_eq!(camvid.layout, Layout::CamVid);
    assert_eq!(
        (camvid.train.len(), camvid.valid.as_ref().unwrap().len()),
        (367, 101)
    );
    assert!(
        camvid
            .train
            .iter()
            .all(|p| p.image.file_name() == p.mask.file_name())
    );

    let dir = tempfile::tempdir().unwrap();
    for id in ["aaa_01", "aaa_02", "bbb_01"] {
        write_pair(
            &dir.path().join(format!("train/{id}.jpg")),
            &dir.path().join(format!("train_masks/{id}_mask.png")),
            [8, 6],
            [8, 6],
            255,
        );
    }
    let carvana = Dataset::open(dir.path(), None).unwrap();
    assert_eq!(carvana.layout, Layout::Carvana);
    assert_eq!(
        carvana.train[0].mask.file_name().unwrap(),
        "aaa_01_mask.png"
    );
}

#[test]
fn grouped_split_keeps_each_car_on_one_side() {
    let pairs: Vec<Pair> = (0..40)
        .flat_map(|car| {
            (1..=16).map(move |view| Pair {
                image: PathBuf::from(format!("train/car{car:03}_{view:02}.jpg")),
                mask: PathBuf::from(format!("train_masks/car{car:03}_{view:02}_mask.gif")),
            })
        })
        .collect();
    let regex = regex::Regex::new(segstream::dataset::CARVANA_GROUP).unwrap();
    let (train, valid) = grouped_split(pairs.clone(), 0.2, Some(&regex), 3, 0);
    assert_eq!(train.len() + valid.len(), 640);
    assert_eq!(valid.len(), 128, "8 whole cars of 16 views");
    let car = |p: &Pair| p.name()[..6].to_string();
    let train_cars: std::collections::HashSet<String> = train.iter().map(car).collect();
    assert!(valid.iter().all(|p| !train_cars.contains(&car(p))));
    let again = grouped_split(pairs.clone(), 0.2, Some(&regex), 3, 0);
    assert_eq!(again.1, valid, "the same seed gives the same split");
    assert_ne!(
        grouped_split(pairs.clone(), 0.2, Some(&regex), 4, 0).1,
        valid
    );
    // The five folds of one seed hold out every car exactly once, whole.
    let mut held_out: Vec<Pair> = Vec::new();
    for fold in 0..5 {
        let (train, valid) = grouped_split(pairs.clone(), 0.2, Some(&regex), 3, fold);
        assert_eq!(valid.len(), 128, "fold {fold}: 8 whole cars");
        let train_cars: std::collections::HashSet<String> = train.iter().map(car).collect();
        assert!(valid.iter().all(|p| !train_cars.contains(&car(p))));
        held_out.extend(valid);
    }
    held_out.sort_by(|a, b| a.image.cmp(&b.image));
    let mut all = pairs;
    all.sort_by(|a, b| a.image.cmp(&b.image));
    assert_eq!(held_out, all);
    assert!(grouped_split(all, 0.2, Some(&regex), 3, 5).1.is_empty());
}

/// A 32×48 pattern whose labels are readable from the image: label 1 where the red channel is
/// 255, label 0 where it is 0 (a checkerboard of 4-pixel squares plus an asymmetric bar).
#[test]
fn holding_out_a_sequence_keeps_all_of_it_on_one_side() {
    let root = shared("camvid");
    let camvid = Dataset::open(&root, None).unwrap();
    let total = camvid.train.len() + camvid.valid.as_ref().unwrap().len();
    let sequence = |p: &Pair| p.name().split('_').next().unwrap().to_string();
    for held in ["0001TP", "0006R0", "0016E5"] {
        let (train, valid) = camvid.hold_out(None, held).unwrap();
        assert!(
            !valid.is_empty() && valid.iter().all(|p| sequence(p) == held),
            "{held}"
        );
        assert!(train.iter().all(|p| sequence(p) != held), "{held}");
        // Every image of the folder, its own val/ included, is on exactly one side.
        assert_eq!(train.len() + valid.len(), total, "{held}");
    }
    let error = camvid.hold_out(None, "0006").unwrap_err().to_string();
    assert!(error.contains("0006R0 (101)"), "{error}");
    let people = Dataset::open(&shared("human_seg"), None).unwrap();
    let error = people.hold_out(None, "x").unwrap_err().to_string();
    assert!(error.contains("--group-by"), "{error}");
}

fn pattern() -> Sample {
    let [h, w] = [32, 48];
    let label =
        |y: usize, x: usize| u8::from((y / 4 + x / 4).is_multiple_of(2) || (x < 10 && y < 6));
    let labels: Vec<u8> = (0..h * w).map(|i| label(i / w, i % w)).collect();
    let rgb = labels.iter().flat_map(|&l| [l * 255, 40, 200]).collect();
    Sample {
        name: "pattern".into(),
        rgb,
        labels,
    }
}

#[test]
fn flips_and_rotations_move_the_mask_with_the_image() {
    let sample = pattern();
    let size = [32, 48];
    for (flip, rotate_deg, zoom, shift) in [
        (true, 0.0, 1.0, [0.0, 0.0]),
        (false, 4.0, 1.0, [0.0, 0.0]),
        (true, -3.5, 1.0, [0.0, 0.0]),
        (false, 2.0, 1.6, [5.0, -3.0]),
        (true, 0.0, 0.6, [-4.0, 2.0]),
    ] {
        let transform = Transform {
            flip,
            rotate_deg,
            brightness: 0.0,
            contrast: 1.0,
            zoom,
            shift,
        };
        let out = transform.apply(&sample, size);
        assert_ne!(
            out.labels, sample.labels,
            "the transform changes the layout"
        );
        // Wherever the image pixel is clearly one side (not blended at an edge), the label
        // must agree with it.
        let (mut checked, mut wrong) = (0, 0);
        for (px, &label) in out.rgb.chunks_exact(3).zip(&out.labels) {
            if label == IGNORE {
                // Brought in from outside the image: black, and no label invented.
                assert_eq!(px, [0, 0, 0]);
                continue;
            }
            if px[0] > 230 || px[0] < 25 {
                checked += 1;
                wrong += usize::from((px[0] > 230) != (label == 1));
            }
        }
        let ignored = out.labels.iter().filter(|&&l| l == IGNORE).count();
        assert!(checked > (32 * 48 - ignored) / 3, "{checked} clear pixels");
        assert!(
            wrong * 100 <= checked,
            "flip {flip} rot {rotate_deg} zoom {zoom}: {wrong}/{checked} misaligned"
        );
        assert_eq!(zoom < 1.0, ignored > 32 * 48 / 10, "{ignored} ignored");
    }
}

#[test]
fn lighting_changes_the_image_never_the_mask() {
    let sample = pattern();
    let augmentation = Augmentation {
        flip: 0.0,
        max_rotate_deg: 0.0,
        lighting: 0.05,
        ..Augmentation::default()
    };
    let mut rng = StdRng::seed_from_u64(1);
    let transform = augmentation.draw(&mut rng, [32, 48]);
    assert!(transform.brightness != 0.0 || transform.contrast != 1.0);
    let out = transform.apply(&sample, [32, 48]);
    assert_eq!(out.labels, sample.labels);
    assert_ne!(out.rgb, sample.rgb);
}

#[test]
fn copy_paste_moves_objects_with_their_mask_exactly() {
    let donor = pattern();
    let size = [32, 48];
    let plain = Sample {
        name: "plain".into(),
        rgb: [0, 90, 0].repeat(32 * 48),
        labels: vec![0; 32 * 48],
    };
    let paste = CopyPaste {
        probability: 1.0,
        max_objects: 2,
        height: [0.2, 0.6],
        labels: vec![1],
    };
    let samples = vec![donor, plain.clone()];
    assert_eq!(paste.donors(&samples), [0], "only the pattern has objects");
    let mut pasted_any = false;
    for seed in 0..8 {
        let mut sample = plain.clone();
        paste.apply(
            &mut sample,
            &samples,
            &[0],
            size,
            &mut StdRng::seed_from_u64(seed),
        );
        let mut rows = std::collections::BTreeSet::new();
        for (i, (px, &label)) in sample.rgb.chunks_exact(3).zip(&sample.labels).enumerate() {
            match label {
                // Every object pixel carries the donor's object colour, and nothing else changed.
                1 => assert_eq!(px, [255, 40, 200], "pixel {i}"),
                _ => assert_eq!(px, [0, 90, 0], "pixel {i}"),
            }
            if label == 1 {
                rows.insert(i / 48);
            }
        }
        pasted_any |= !rows.is_empty();
        // Two objects of at most 0.6 × 32 rows each.
        assert!(rows.len() <= 2 * 20, "{} rows", rows.len());
    }
    assert!(pasted_any);
}

#[test]
fn a_mapping_reads_another_datasets_classes_as_the_models() {
    let source: DataSource = "../camvid:Pedestrian=person,bicyclist=person@0.5"
        .parse()
        .unwrap();
    assert_eq!(source.weight, 0.5);
    assert_eq!(source.mapping.len(), 2);
    assert_eq!(source.to_string().parse::<DataSource>().unwrap(), source);
    let person = ClassSet::parse("person").unwrap();
    let reading = source.reading(Layout::CamVid, &person).unwrap();
    // CamVid values: 9 Pedestrian, 10 Bicyclist, 3 Road, 11 Unlabelled (ignored).
    let labels = reading
        .labels_from_mask(&[9, 10, 3, 11, 0], Path::new("m.png"))
        .unwrap();
    assert_eq!(labels, [1, 1, 0, IGNORE, 0]);
    for (spec, needle) in [
        ("x:Walker=person", "no class 'Walker'"),
        ("x:Pedestrian=car", "no class 'car'"),
        ("x:Pedestrian=person,Car", "'Car' is not SOURCE=MODEL"),
        ("x@-1", "positive"),
    ] {
        let error = spec
            .parse::<DataSource>()
            .and_then(|s| s.reading(Layout::CamVid, &person))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(needle) && error.contains("x"),
            "{spec}: {error}"
        );
    }

    // On real masks: exactly CamVid's pedestrian pixels become the person.
    let camvid = Dataset::open(&shared("camvid"), None).unwrap();
    let pairs = &camvid.valid.unwrap()[..4];
    let mapped = load_resized(pairs, [90, 120], &reading, None, 2).unwrap();
    let own = load_resized(pairs, [90, 120], &ClassSet::camvid(), None, 2).unwrap();
    for (m, o) in mapped.samples.iter().zip(&own.samples) {
        for (&a, &b) in m.labels.iter().zip(&o.labels) {
            let expected = match b {
                9 | 10 => 1,
                IGNORE => IGNORE,
                _ => 0,
            };
            assert_eq!(a, expected);
        }
    }
}

#[test]
fn sampling_weights_set_each_folders_share_of_an_epoch() {
    let plan = EpochPlan::training(&[(10, 1.0), (20, 0.5), (5, 2.0)], 1, 3, None);
    let drawn: Vec<usize> = plan.batches.concat();
    let count =
        |range: std::ops::Range<usize>| drawn.iter().filter(|&&i| range.contains(&i)).count();
    assert_eq!((count(0..10), count(10..30), count(30..35)), (10, 10, 10));
    let unique: std::collections::HashSet<_> =
        drawn.iter().filter(|&&i| (10..30).contains(&i)).collect();
    assert_eq!(unique.len(), 10, "half of the second folder, each once");
}

#[test]
fn smaller_masks_of_the_same_aspect_ratio_are_resized_and_counted() {
    let pairs = Dataset::open(&human_seg(), None).unwrap().train[..12].to_vec();
    let classes = ClassSet::parse("person").unwrap();
    let cache = tempfile::tempdir().unwrap();
    let first = load_resized(&pairs, [64, 48], &classes, Some(cache.path()), 2).unwrap();
    assert_eq!(first.samples.len(), 12);
    assert_eq!(first.from_cache, 0);
    assert!(first.masks_resized > 0, "human_seg has smaller masks");
    let again = load_resized(&pairs, [64, 48], &classes, Some(cache.path()), 2).unwrap();
    assert_eq!(again.from_cache, 12);
    assert_eq!(again.masks_resized, first.masks_resized);
    for (a, b) in first.samples.iter().zip(&again.samples) {
        assert_eq!((&a.rgb, &a.labels), (&b.rgb, &b.labels));
        assert_eq!(a.labels.len(), 64 * 48);
        assert!(a.labels.iter().all(|&l| l <= 1));
    }
}

/// Loads the generic dataset under `root` with `classes`; returns the error text.
fn load_error(root: &Path, classes: &str) -> String {
    let result = Dataset::open(root, None).and_then(|d| {
        load_resized(&d.train, [16, 16], &ClassSet::parse(classes)?, None, 1).map(|_| ())
    });
    result.expect_err("the dataset is broken").to_string()
}

#[test]
fn broken_datasets_are_clear_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (images, masks) = (root.join("images"), root.join("masks"));
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&masks).unwrap();
    let empty = load_error(root, "1");
    assert!(
        empty.contains("no images") && empty.contains("images"),
        "{empty}"
    );

    write_pair(
        &images.join("a.png"),
        &masks.join("a.png"),
        [16, 12],
        [8, 6],
        255,
    );
    write_pair(
        &images.join("b.png"),
        &root.join("elsewhere/b.png"),
        [16, 12],
        [16, 12],
        255,
    );
    let missing = load_error(root, "1");
    assert!(
        missing.contains("b.png") && missing.contains("no mask"),
        "{missing}"
    );

    write_pair(
        &images.join("b.png"),
        &masks.join("b.png"),
        [16, 12],
        [12, 12],
        255,
    );
    let aspect = load_error(root, "1");
    assert!(
        aspect.contains("masks/b.png") && aspect.contains("aspect ratio"),
        "{aspect}"
    );

    write_pair(
        &images.join("a.png"),
        &masks.join("a.png"),
        [16, 12],
        [16, 12],
        2,
    );
    write_pair(
        &images.join("b.png"),
        &masks.join("b.png"),
        [16, 12],
        [16, 12],
        7,
    );
    let value = load_error(root, "3");
    assert!(
        value.contains("masks/b.png") && value.contains("value 7"),
        "{value}"
    );
}
