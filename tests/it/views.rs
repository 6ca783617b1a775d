//! `segstream views`: a model that averages its logits over views of each picture gives the
//! mean of the model's own runs on those views, at any input size and batch, and nothing is
//! written for views the model cannot take.

use std::path::Path;

use ndarray::{Array4, Axis, s};
use segstream::infer::raw::run_once;

use crate::helpers::{assert_fails, run_ok, shipped};
use crate::media::shared;

/// human_seg image `name` resized to `[h, w]`, RGB in 0..1, as a 1×3×H×W batch.
fn picture(name: &str, [h, w]: [usize; 2]) -> Array4<f32> {
    let image = image::open(shared("human_seg/images").join(name))
        .unwrap()
        .to_rgb8();
    let image = image::imageops::resize(&image, w as u32, h as u32, image::imageops::Triangle);
    Array4::from_shape_fn((1, 3, h, w), |(_, c, y, x)| {
        f32::from(image.get_pixel(x as u32, y as u32)[c]) / 255.0
    })
}

fn logits(model: &Path, input: &Array4<f32>) -> Array4<f32> {
    run_once(model, input.view().into_dyn())
        .unwrap()
        .into_dimensionality()
        .unwrap()
}

/// `x` mirrored left to right.
fn mirrored(x: &Array4<f32>) -> Array4<f32> {
    x.slice(s![.., .., .., ..;-1]).to_owned()
}

/// Largest difference relative to the logits' scale (they reach the hundreds).
fn worst(a: &Array4<f32>, b: &Array4<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / x.abs().max(y.abs()).max(1.0))
        .fold(0.0, f32::max)
}

#[test]
fn views_average_the_model_on_the_picture_and_its_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let (model, wrapped) = (shipped("people.onnx"), dir.path().join("mirrored.onnx"));
    let printed = run_ok(&[
        "views",
        model.to_str().unwrap(),
        "-o",
        wrapped.to_str().unwrap(),
        "--size",
        "288x384",
        "--mirror",
    ]);
    assert!(
        printed.stdout.contains("2 views a picture"),
        "{}",
        printed.stdout
    );
    // At the view's own size the resizes change nothing: the wrapped model's logits are the
    // mean of the model's on the picture and, mirrored back, on its mirror image.
    let input = picture("1.jpg", [288, 384]);
    let expected = (logits(&model, &input) + mirrored(&logits(&model, &mirrored(&input)))) / 2.0;
    let got = logits(&wrapped, &input);
    assert!(worst(&got, &expected) < 1e-4, "{}", worst(&got, &expected));
    // A batch of two pictures gives each one's own result (the mirror images ride in the
    // same batch, and are split back by picture).
    let other = picture("10.jpg", [288, 384]);
    let both = ndarray::concatenate(Axis(0), &[input.view(), other.view()]).unwrap();
    let batch = logits(&wrapped, &both);
    assert!(worst(&batch.slice(s![0..1, .., .., ..]).to_owned(), &got) < 1e-4);
    let alone = logits(&wrapped, &other);
    assert!(worst(&batch.slice(s![1..2, .., .., ..]).to_owned(), &alone) < 1e-4);
}

#[test]
fn views_at_several_sizes_answer_at_the_input_size_and_find_the_person() {
    let dir = tempfile::tempdir().unwrap();
    let wrapped = dir.path().join("views.onnx");
    run_ok(&[
        "views",
        shipped("people.onnx").to_str().unwrap(),
        "-o",
        wrapped.to_str().unwrap(),
        "--size",
        "256x256,288x384",
        "--mirror",
    ]);
    // Any input size: the views are resized inside the graph and their logits back.
    let input = picture("1.jpg", [200, 300]);
    let got = logits(&wrapped, &input);
    assert_eq!(got.shape(), &[1, 1, 200, 300]);
    let mask = image::open(shared("human_seg/masks/1.png"))
        .unwrap()
        .to_luma8();
    let mask = image::imageops::resize(&mask, 300, 200, image::imageops::Nearest);
    let (mut both, mut total) = (0usize, 0usize);
    for ((_, _, y, x), &logit) in got.indexed_iter() {
        let truth = mask.get_pixel(x as u32, y as u32)[0] > 127;
        both += usize::from(truth && logit > 0.0);
        total += usize::from(truth) + usize::from(logit > 0.0);
    }
    let dice = 2.0 * both as f64 / total as f64;
    assert!(dice > 0.9, "Dice {dice}");
}

#[test]
fn views_the_model_cannot_take_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let wrapped = dir.path().join("odd.onnx");
    // The person network's skip connections need sizes that halve evenly four times.
    assert_fails(
        &[
            "views",
            shipped("people.onnx").to_str().unwrap(),
            "-o",
            wrapped.to_str().unwrap(),
            "--size",
            "100x150",
        ],
        &[],
        1,
        &[
            "nothing written",
            "did not run at every view size (100x150)",
        ],
    );
    assert!(!wrapped.exists());
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "no temporary left"
    );
}

#[test]
fn a_view_size_given_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let wrapped = dir.path().join("twice.onnx");
    assert_fails(
        &[
            "views",
            shipped("people.onnx").to_str().unwrap(),
            "-o",
            wrapped.to_str().unwrap(),
            "--size",
            "64x64,64x64",
        ],
        &[],
        2,
        &["--size 64x64 is given twice"],
    );
    assert!(!wrapped.exists());
}

#[test]
fn sigterm_while_a_model_is_written_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let wrapped = dir.path().join("big.onnx");
    // A large view: checking that it runs takes a second or more, while its temporary file
    // exists (4096² needs about 1.5 GB).
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_segstream"))
        .args(["views", shipped("people.onnx").to_str().unwrap(), "-o"])
        .arg(&wrapped)
        .args(["--size", "4096x4096"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let temporary = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().ends_with(".part"))
    };
    let started = std::time::Instant::now();
    while !temporary() && child.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "no temporary file appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = crate::helpers::exits_within(&mut child, crate::helpers::DEADLINE);
    assert!(!temporary(), "a .part file was left behind");
    // Stopped while writing (nothing kept), or done just before the signal (the whole model).
    match status.code() {
        Some(130) => assert!(!wrapped.exists()),
        Some(0) => assert!(wrapped.exists()),
        other => panic!("exit {other:?}"),
    }
}

#[test]
fn views_the_memory_cannot_hold_are_refused_before_they_are_allocated() {
    let dir = tempfile::tempdir().unwrap();
    let wrapped = dir.path().join("huge.onnx");
    // A side whose view needs several times the memory available (the person model works
    // with about 90 bytes a pixel), within the 16384 per side that sizes may have.
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let available_kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    let side = ((available_kib * 1024.0 / 20.0).sqrt() as usize / 32 * 32).clamp(1024, 16384);
    let size = format!("{side}x{side}");
    assert_fails(
        &[
            "views",
            shipped("people.onnx").to_str().unwrap(),
            "-o",
            wrapped.to_str().unwrap(),
            "--size",
            &size,
        ],
        &[],
        2,
        &["working memory", "MB of memory available"],
    );
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing written"
    );
}
