//! Bad input, second round: inputs that hung, aborted, half-wrote a checkpoint or made
//! segstream say something false. Each test makes its input at test time and checks what
//! happens now: a finished run, or a clear error with the right exit code and nothing false
//! left behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use gstreamer_pbutils as gst_pbutils;
use segstream::video::{Frame, FrameSource, Pulled, probe_file};

use crate::helpers::{
    assert_fails, count_after, describe, fixture_model, run_ok, segment_args, segment_with_fixture,
    segstream, segstream_with_env,
};
use crate::media::{
    decode, frame_count, generated, identity_model, nan_model, people_clip, with_metadata,
};

/// Runs `segstream ARGS`, killing it (and failing) when it runs past `limit`.
fn segstream_within(args: &[&str], limit: Duration) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_segstream"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    crate::helpers::finish(child, limit)
}

/// The names in `dir` that are hidden (the temporary names outputs are staged under).
fn hidden_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect()
}

#[test]
fn a_gif_whose_demuxer_never_ends_is_segmented_to_its_last_frame() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("gif.mp4");
    let (model, input) = (fixture_model(), generated("forever.gif"));
    let args = segment_args(&input, &output, &model);
    let result = segstream_within(&args, Duration::from_secs(60));
    let text = describe(&args, &result);
    assert_eq!(result.status.code(), Some(0), "{text}");
    // GStreamer 1.22's GIF reader never ends its stream, and segstream says it worked around
    // that; 1.26's ends it, so there is nothing to say. On either, every frame is written.
    gstreamer::init().unwrap();
    let (major, minor, _, _) = gstreamer::version();
    if (major, minor) < (1, 24) {
        assert!(text.contains("did not end its stream"), "{text}");
    }
    assert_eq!(frame_count(&output), 20, "{text}");
    assert!(hidden_names(dir.path()).is_empty(), "{text}");
}

#[test]
fn a_variable_frame_rate_file_is_not_called_damaged() {
    let input = generated("vfr.mkv");
    // The condition of the defect: the nominal rate times the duration promises far more
    // frames than the file has.
    let info = probe_file(&input).unwrap();
    let promised = info.expected_frames().unwrap();
    assert!(promised > 60, "{info:?}: {promised} frames promised");
    let (_dir, output, stderr) = segment_with_fixture(&input, "vfr.mkv", &[]);
    assert_eq!(count_after(&stderr, "wrote "), 50, "{}", stderr);
    assert!(!stderr.contains("truncated"), "{}", stderr);
    let mut last_pts = None;
    decode(&output, |frame| last_pts = frame.pts);
    let last_ms = last_pts.unwrap().mseconds();
    assert!(
        (3250..=3400).contains(&last_ms),
        "last frame at {last_ms} ms"
    );
}

/// How combed the frames are: the mean, over pixels, of how far a row stands out from both
/// rows around it in the same direction (the teeth of interleaved fields), on green.
fn combing(frames: &[Frame]) -> f64 {
    let mut total = 0.0;
    let mut count = 0usize;
    for frame in frames {
        let (width, height) = (frame.width(), frame.height());
        let green = |x: usize, y: usize| f64::from(frame.pixels[(y * width + x) * 4 + 1]);
        for y in 1..height - 1 {
            for x in 0..width {
                let (up, down) = (green(x, y) - green(x, y - 1), green(x, y) - green(x, y + 1));
                if up * down > 0.0 {
                    total += up.abs().min(down.abs());
                }
                count += 1;
            }
        }
    }
    total / count as f64
}

/// Every frame of `path` decoded without deinterlacing, as a player that ignores the flag
/// would show them.
fn decoded_as_stored(path: &Path) -> Vec<Frame> {
    let mut source = FrameSource::from_description(&format!(
        "filesrc location={} ! decodebin ! videoconvert ! appsink name=frames",
        path.display()
    ))
    .unwrap();
    source.start().unwrap();
    let mut frames = Vec::new();
    while let Pulled::Frame(frame) = source.pull(gstreamer::ClockTime::from_seconds(10)).unwrap() {
        frames.push(*frame);
    }
    frames
}

fn is_interlaced(path: &Path) -> bool {
    let discoverer = gst_pbutils::Discoverer::new(gstreamer::ClockTime::from_seconds(15)).unwrap();
    let uri = gstreamer::glib::filename_to_uri(path, None).unwrap();
    let info = discoverer.discover_uri(&uri).unwrap();
    info.video_streams()[0].is_interlaced()
}

#[test]
fn interlaced_input_comes_out_progressive_without_combing() {
    let input = generated("interlaced.mkv");
    assert!(is_interlaced(&input));
    let (_dir, output, stderr) = segment_with_fixture(&input, "out.mkv", &["--opacity", "0"]);
    assert_eq!(count_after(&stderr, "wrote "), 50, "{}", stderr);
    assert!(!is_interlaced(&output), "the output is flagged interlaced");
    let (before, after) = (
        combing(&decoded_as_stored(&input)),
        combing(&decoded_as_stored(&output)),
    );
    assert!(
        after < before / 10.0,
        "combing {before:.4} in, {after:.4} out"
    );
}

#[test]
fn nvdec_without_an_nvidia_gpu_is_refused_with_the_reason_and_auto_decodes_on_the_cpu() {
    gstreamer::init().unwrap();
    if gstreamer::ElementFactory::find("nvh264dec").is_some() {
        return; // NVDEC is there: the device kit measures it.
    }
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.mp4");
    let (clip, model) = (generated("bars.mkv"), fixture_model());
    let mut args = segment_args(&clip, &output, &model);
    args.extend(["--decoder", "nvdec"]);
    assert_fails(&args, &[], 2, &["--decoder nvdec", "nvcodec", "libnvcuvid"]);
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    args.pop();
    args.push("auto");
    let run = run_ok(&args);
    assert!(run.stderr.contains("decoding on the CPU"), "{}", run.stderr);
    assert_eq!(frame_count(&output), 60);
}

#[test]
fn standard_input_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.mp4");
    assert_fails(
        &[
            "segment",
            "-",
            "-o",
            output.to_str().unwrap(),
            "--model",
            fixture_model().to_str().unwrap(),
        ],
        &[],
        1,
        &["standard input is not supported", "fdsrc"],
    );
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}

#[test]
fn a_device_as_output_is_refused_as_not_a_file() {
    let bars = generated("bars.mkv");
    let model = fixture_model();
    for output in ["/dev/full", "/dev/null"] {
        assert_fails(
            &[
                "segment",
                bars.to_str().unwrap(),
                "-o",
                output,
                "--model",
                model.to_str().unwrap(),
            ],
            &[],
            2,
            &[output, "not a regular file or folder"],
        );
    }
}

#[test]
fn a_model_with_nan_weights_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let model = nan_model(dir.path());
    let model = model.to_str().unwrap();
    assert_fails(&["inspect", model], &[], 1, &[model, "not numbers"]);
    segment_refuses_the_model(dir.path(), model, &["not numbers"]);
}

/// Asserts that `segment` with `model` fails (exit 1) with `needles` and writes nothing.
fn segment_refuses_the_model(dir: &Path, model: &str, needles: &[&str]) {
    let output = dir.join("out.mkv");
    assert_fails(
        &[
            "segment",
            generated("bars.mkv").to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
            "--model",
            model,
        ],
        &[],
        1,
        needles,
    );
    assert!(!output.exists());
}

#[test]
fn a_model_asking_for_a_huge_input_is_refused_not_aborted() {
    let dir = tempfile::tempdir().unwrap();
    let fixed = dir.path().join("fixed.onnx");
    std::fs::write(&fixed, identity_model(&[1, 3, 60_000, 60_000])).unwrap();
    let fixed = fixed.to_str().unwrap();
    assert_fails(&["inspect", fixed], &[], 1, &[fixed, "60000x60000"]);
    // A free input size whose card asks for the same.
    let carded = dir.path().join("carded.onnx");
    with_metadata(
        &fixture_model(),
        &carded,
        "segstream.input_size",
        "[60000, 60000]",
    );
    let carded = carded.to_str().unwrap();
    segment_refuses_the_model(dir.path(), carded, &[carded, "60000x60000"]);
}

#[test]
fn fp16_of_a_half_precision_model_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (half, again) = (dir.path().join("half.onnx"), dir.path().join("again.onnx"));
    run_ok(&[
        "fp16",
        fixture_model().to_str().unwrap(),
        "-o",
        half.to_str().unwrap(),
    ]);
    assert_fails(
        &[
            "fp16",
            half.to_str().unwrap(),
            "-o",
            again.to_str().unwrap(),
        ],
        &[],
        1,
        &["half precision already"],
    );
    assert!(!again.exists());
}

#[test]
fn rtsp_urls_without_a_host_or_with_a_bad_port_are_usage_errors() {
    let model = fixture_model();
    for (url, needle) in [
        ("rtsp://", "no host"),
        ("rtsp:///stream", "no host"),
        ("rtsp://camera:port/stream", "not a port"),
        ("rtmp://camera/stream", "rtsp://"),
    ] {
        assert_fails(
            &[
                "camera",
                "--source",
                url,
                "--model",
                model.to_str().unwrap(),
            ],
            &[],
            2,
            &[url, needle],
        );
    }
}

/// A live test source of 30 small frames.
const LIVE_SOURCE: &str = "videotestsrc is-live=true num-buffers=30 ! video/x-raw,width=64,height=64 ! appsink name=frames";

/// Runs `segstream ARGS` in a network namespace of its own, where only loopback exists (no
/// route to anywhere else).
fn without_network(args: &[&str]) -> Output {
    crate::helpers::output_within(
        Command::new("unshare")
            .arg("-n")
            .arg(env!("CARGO_BIN_EXE_segstream"))
            .args(args),
    )
}

#[test]
fn udp_receivers_that_cannot_be_reached_are_errors_not_successes() {
    let model = fixture_model();
    let model = model.to_str().unwrap();
    let unresolved = "udp://no.such.host.invalid:5000";
    assert_fails(
        &[
            "camera",
            "--source-pipeline",
            LIVE_SOURCE,
            "-o",
            unresolved,
            "--model",
            model,
        ],
        &[],
        2,
        &["no.such.host.invalid", "does not resolve"],
    );
    // No route: refused before anything starts.
    let args = [
        "camera",
        "--source-pipeline",
        LIVE_SOURCE,
        "-o",
        "udp://192.0.2.1:5000",
        "--model",
        model,
    ];
    let output = without_network(&args);
    let text = describe(&args, &output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("Network is unreachable"), "{text}");
    // The same failure while running (a sink pipeline is not checked up front): packets that
    // cannot be sent fail the run instead of counting as written.
    let sink = "appsrc name=out ! videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast ! \
                rtph264pay ! udpsink host=192.0.2.1 port=5000";
    let args = [
        "camera",
        "--source-pipeline",
        LIVE_SOURCE,
        "--sink-pipeline",
        sink,
        "--model",
        model,
    ];
    let output = without_network(&args);
    let text = describe(&args, &output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("Error sending UDP packets"), "{text}");
    assert!(
        !text.contains("wrote 30 of 30") && !text.contains("CRITICAL"),
        "{text}"
    );
}

#[test]
fn a_binary_model_is_not_scored_on_multi_class_masks() {
    let model = fixture_model();
    let model = model.to_str().unwrap();
    // CamVid's layout: its classes are known, so the way to map them is given.
    let camvid = crate::media::shared("camvid");
    assert_fails(
        &[
            "eval",
            "--model",
            model,
            "--data",
            camvid.to_str().unwrap(),
            "--limit",
            "4",
        ],
        &[],
        2,
        &["11 classes", "--data", "=foreground"],
    );
    // Masks of class ids in a plain images/masks folder.
    let dir = tempfile::tempdir().unwrap();
    for folder in ["images", "masks"] {
        std::fs::create_dir(dir.path().join(folder)).unwrap();
    }
    for i in 0..5u8 {
        let image = image::RgbImage::from_pixel(64, 64, image::Rgb([i * 40, 90, 200]));
        image
            .save(dir.path().join(format!("images/{i}.png")))
            .unwrap();
        let mask = image::GrayImage::from_fn(64, 64, |x, _| image::Luma([(x / 8) as u8]));
        mask.save(dir.path().join(format!("masks/{i}.png")))
            .unwrap();
    }
    assert_fails(
        &[
            "eval",
            "--model",
            model,
            "--data",
            dir.path().to_str().unwrap(),
            "--split",
            "all",
        ],
        &[],
        1,
        &["mask values up to 7", "binary"],
    );
}

#[test]
fn sigterm_and_sighup_finalise_the_output_like_ctrl_c() {
    for signal in ["TERM", "HUP"] {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("out.mp4");
        let child = Command::new(env!("CARGO_BIN_EXE_segstream"))
            .args(["segment", people_clip().to_str().unwrap(), "-o"])
            .arg(&output)
            .args(["--model", fixture_model().to_str().unwrap()])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let result = crate::helpers::finish(child, crate::helpers::DEADLINE);
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(130), "SIG{signal}: {stderr}");
        let written = count_after(&stderr, "interrupted: wrote ");
        assert!(written > 0, "SIG{signal}: {stderr}");
        assert_eq!(frame_count(&output), written as usize, "SIG{signal}");
        assert!(hidden_names(dir.path()).is_empty(), "SIG{signal}: {stderr}");
    }
}

#[test]
fn names_with_control_characters_are_escaped_in_messages() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("two\nlines.mkv");
    let printed = run_ok(&[
        "segment",
        generated("bars.mkv").to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--model",
        fixture_model().to_str().unwrap(),
    ]);
    assert!(output.is_file());
    assert!(
        printed.stderr.contains("two\\nlines.mkv"),
        "{}",
        printed.stderr
    );
    assert!(!printed.stderr.contains("two\nlines"), "{}", printed.stderr);
    let missing = dir.path().join("no\u{1b}[31mred.mp4");
    let model = fixture_model();
    let args = [
        "segment",
        missing.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
    ];
    let result = segstream(&args);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(
        result.status.code(),
        Some(1),
        "{}",
        describe(&args, &result)
    );
    assert!(
        stderr.contains("no\\u{1b}[31mred.mp4") && !stderr.contains('\u{1b}'),
        "{stderr}"
    );
}

/// `train` in `run`, with the process's file size limited to `max_file_bytes` when given (as
/// a full disk stops a write; the signal that limit raises is ignored, so a write fails with
/// "File too large" instead).
#[cfg(feature = "train")]
fn train_cli(args: &[&str], max_file_bytes: Option<u64>) -> Output {
    use std::os::unix::process::CommandExt as _;
    let mut command = Command::new(env!("CARGO_BIN_EXE_segstream"));
    command.arg("train").args(args);
    if let Some(limit) = max_file_bytes {
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(move || {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let rlimit = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    crate::helpers::output_within(&mut command)
}

/// The weights and optimiser files `state.json` names, and the epochs it has completed.
#[cfg(feature = "train")]
fn checkpoint_state(run: &Path) -> (Vec<PathBuf>, usize) {
    let dir = run.join("checkpoint");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
    let files = &state["files"];
    let named = ["model", "optimizer"]
        .iter()
        .map(|part| {
            let path = dir.join(files[part].as_str().unwrap());
            let bytes = files[format!("{part}_bytes")].as_u64().unwrap();
            assert_eq!(std::fs::metadata(&path).unwrap().len(), bytes, "{path:?}");
            path
        })
        .collect();
    (named, state["history"].as_array().unwrap().len())
}

#[cfg(feature = "train")]
#[test]
fn a_checkpoint_that_cannot_be_written_whole_leaves_the_previous_one() {
    let runs = tempfile::tempdir().unwrap();
    let run = runs.path().join("run");
    let data = crate::media::shared("human_seg");
    let first = [
        "--data",
        data.to_str().unwrap(),
        "--classes",
        "person",
        "--size",
        "64",
        "--epochs",
        "3",
        "--limit",
        "8",
        "--depth",
        "2",
        "--base",
        "8",
        "--no-cache",
        "--stop-after",
        "1",
        "-o",
        run.to_str().unwrap(),
    ];
    let output = train_cli(&first, None);
    assert!(output.status.success(), "{}", describe(&first, &output));
    let (files, epochs) = checkpoint_state(&run);
    assert_eq!(epochs, 1);
    // Room for the weights but not for the optimiser state (Adam's two moments per weight).
    let model_bytes = std::fs::metadata(&files[0]).unwrap().len();
    let resume = ["--resume", run.to_str().unwrap(), "--stop-after", "2"];
    let output = train_cli(&resume, Some(model_bytes + 4096));
    let text = describe(&resume, &output);
    assert_ne!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("File too large"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    // The first epoch's checkpoint is still whole, and nothing of the failed save is left.
    assert_eq!(checkpoint_state(&run), (files.clone(), 1));
    let mut left: Vec<_> = std::fs::read_dir(run.join("checkpoint"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left.len(), 4, "{left:?}"); // best.bpk, model-…, optimizer-…, state.json
    // It resumes from there.
    let output = train_cli(&resume, None);
    let text = describe(&resume, &output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("epoch   2/3"), "{text}");
    let (files, epochs) = checkpoint_state(&run);
    assert_eq!(epochs, 2);
    // A checkpoint whose parts do not match is refused, not resumed.
    let mut bytes = std::fs::read(&files[0]).unwrap();
    bytes.extend_from_slice(&[0; 16]);
    std::fs::write(&files[0], bytes).unwrap();
    let output = segstream_with_env(&["train", "--resume", run.to_str().unwrap()], &[]);
    let text = describe(&resume, &output);
    assert_ne!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("cannot be resumed"), "{text}");
}
