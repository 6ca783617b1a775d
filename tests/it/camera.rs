//! `camera` on real live streams: a `gst-launch-1.0` sender streams a clip of people as RTP/H.264
//! over UDP on 127.0.0.1 in real time, and `segstream camera` receives, segments and writes it.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::helpers::{
    DEADLINE, assert_fails, count_after, describe, exits_within, finish, interrupt, shipped,
};
use crate::media::{decode, generated, people_clip};
use crate::rtsp_server::RtspServer;
use gstreamer as gst;

/// Live tests run one at a time: each measures latency in real time.
static REAL_TIME: Mutex<()> = Mutex::new(());

/// A `gst-launch-1.0` process streaming `clip` as 640×480 RTP/H.264 at `fps` to
/// 127.0.0.1:`port`, in real time (`sync=true`). `picture` (elements) goes between the decoder
/// and the encoder.
fn send(clip: &Path, port: u16, picture: &str, fps: u32, bitrate_kbps: u32) -> Child {
    let description = format!(
        "filesrc location={} ! decodebin ! videoconvert ! videoscale ! videorate ! {picture} ! \
         video/x-raw,width=640,height=480,framerate={fps}/1 ! videoconvert ! \
         x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 bitrate={bitrate_kbps} ! \
         rtph264pay config-interval=-1 ! udpsink host=127.0.0.1 port={port} sync=true",
        clip.display()
    );
    Command::new("gst-launch-1.0")
        .arg("-q")
        .args(description.split_whitespace())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gst-launch-1.0 runs")
}

/// The short clip of people (about 110 frames at 30 fps), sent as it is.
fn send_short(port: u16) -> Child {
    send(&generated("people.mkv"), port, "identity", 30, 2000)
}

/// The long clip of people at `fps`, until killed.
fn send_long(port: u16, fps: u32) -> Child {
    send(&people_clip(), port, "identity", fps, 2000)
}

/// A UDP port nobody listens on right now.
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `segstream camera` receiving on `port` with `args`; the receiver gets a moment to
/// listen before anything is sent.
fn receive(port: u16, args: &[&str]) -> Child {
    let source = format!("udp://127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_segstream"))
        .args(["camera", "--source", &source])
        .args(args)
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    child
}

/// Waits for `camera` (20 s at most) and asserts that it succeeded.
fn finish_ok(camera: Child, args: &[&str]) -> Output {
    let result = finish(camera, Duration::from_secs(20));
    assert_eq!(result.status.code(), Some(0), "{}", describe(args, &result));
    result
}

fn stats(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn count(stats: &serde_json::Value, key: &str) -> u64 {
    stats[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no {key} in {stats}"))
}

/// Frames read, written and dropped.
fn frame_counts(stats: &serde_json::Value) -> (u64, u64, u64) {
    (
        count(stats, "frames_read"),
        count(stats, "frames_written"),
        count(stats, "frames_dropped"),
    )
}

/// The figures of stage `name`.
fn stage<'a>(stats: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    stats["stages"]
        .as_array()
        .and_then(|stages| stages.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no stage {name} in {stats}"))
}

fn decoded_frames(path: &Path) -> (u64, (usize, usize)) {
    let (mut frames, mut size) = (0, (0, 0));
    decode(path, |frame| {
        frames += 1;
        size = (frame.width(), frame.height());
    });
    (frames, size)
}

#[test]
fn an_rtp_feed_is_segmented_into_a_playable_file_with_latency_reported() {
    let _serial = REAL_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (output, json) = (dir.path().join("live.mkv"), dir.path().join("stats.json"));
    let port = free_port();
    // The fixture model: the feed's rate is one any machine holds, busy or not.
    let model = crate::helpers::fixture_model();
    let args = [
        "-o",
        output.to_str().unwrap(),
        "--stats-json",
        json.to_str().unwrap(),
        "--reconnect-timeout",
        "2",
        "--model",
        model.to_str().unwrap(),
    ];
    let camera = receive(port, &args);
    let mut sender = send_short(port);
    assert!(
        exits_within(&mut sender, DEADLINE).success(),
        "the sender failed"
    );
    finish_ok(camera, &args);

    let stats = stats(&json);
    let (read, written, dropped) = frame_counts(&stats);
    println!(
        "read {read}, written {written}, dropped {dropped}: {}",
        stats["latency"]
    );
    // The first frames may go before the decoder has a key frame.
    let (sent, _) = decoded_frames(&generated("people.mkv"));
    assert!(
        (sent - 30..=sent).contains(&read),
        "{read} of {sent} frames received"
    );
    assert_eq!(
        read,
        written + dropped,
        "every frame is written or counted as dropped"
    );
    assert!(written >= 20, "{written} of {read} written");
    assert_eq!(stats["ending"], "source_lost");
    let p95 = stats["latency"]["p95_ms"].as_f64().unwrap();
    assert!(p95 > 0.0 && p95 < 2000.0, "p95 latency {p95} ms");

    let (frames, size) = decoded_frames(&output);
    assert_eq!(frames, written, "the file holds every frame written");
    assert_eq!(size, (640, 480));
}

#[test]
fn an_overloaded_feed_drops_the_oldest_frames_instead_of_queueing() {
    let _serial = REAL_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (output, json) = (dir.path().join("live.mkv"), dir.path().join("stats.json"));
    let port = free_port();
    // One inference thread running the model at nine times its size on a 60 fps feed: it can
    // keep up with a fraction of it.
    let args = [
        "-o",
        output.to_str().unwrap(),
        "--threads",
        "1",
        "--input-size",
        "864x1152",
        "--stats-interval",
        "2",
        "--stats-json",
        json.to_str().unwrap(),
        "--reconnect-timeout",
        "2",
    ];
    let camera = receive(port, &args);
    let mut sender = send_long(port, 60);
    std::thread::sleep(Duration::from_secs(9));
    sender.kill().unwrap();
    exits_within(&mut sender, DEADLINE);
    finish_ok(camera, &args);

    let stats = stats(&json);
    let (read, written, dropped) = frame_counts(&stats);
    let infer_p95 = stage(&stats, "infer")["p95_ms"].as_f64().unwrap();
    let intervals = stats["intervals"].as_array().unwrap();
    let p95s: Vec<f64> = intervals
        .iter()
        .filter(|i| i["frames_written"].as_u64().unwrap() > 5)
        .map(|i| i["latency"]["p95_ms"].as_f64().unwrap())
        .collect();
    println!("read {read}, written {written}, dropped {dropped}; p95 per interval {p95s:?}");
    assert!(read > 200, "{read} frames received in 9 s at 60 fps");
    assert_eq!(read, written + dropped);
    assert!(dropped * 4 > read, "only {dropped} of {read} dropped");
    // The stated bound: a frame waits for at most the inference in progress, then its own.
    // Both figures come from the same run, so a busy machine moves them together. A queue
    // that grew would add ~45 frames (0.75 s) of latency per second of overload.
    let overall = stats["latency"]["p95_ms"].as_f64().unwrap();
    let bound = 3.0 * infer_p95 + 100.0;
    assert!(
        overall < bound,
        "p95 latency {overall} ms, bound {bound} ms"
    );
    assert!(p95s.len() >= 3, "intervals: {intervals:?}");
    let (first, last) = (p95s[0], p95s[p95s.len() - 1]);
    assert!(
        last < 3.0 * first + 200.0,
        "p95 grew from {first} to {last} ms"
    );
}

#[test]
fn every_third_frame_runs_the_model_and_the_others_reuse_its_mask() {
    let _serial = REAL_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let model = crate::helpers::fixture_model();
    let dir = tempfile::tempdir().unwrap();
    let (output, json) = (dir.path().join("live.mkv"), dir.path().join("stats.json"));
    let port = free_port();
    let args = [
        "-o",
        output.to_str().unwrap(),
        "--every",
        "3",
        "--stats-json",
        json.to_str().unwrap(),
        "--reconnect-timeout",
        "1.5",
        "--model",
        model.to_str().unwrap(),
    ];
    let camera = receive(port, &args);
    let mut sender = send_short(port);
    exits_within(&mut sender, DEADLINE);
    finish_ok(camera, &args);
    let stats = stats(&json);
    let written = count(&stats, "frames_written");
    let inferred = count(stage(&stats, "infer"), "frames");
    println!("the model ran on {inferred} of {written} frames written");
    assert!(written >= 20, "{written} frames written");
    // Each model run serves at most 3 frames.
    assert!(
        3 * inferred >= written,
        "{inferred} runs for {written} frames"
    );
    // Two thirds reuse a mask when nothing is dropped; at least a quarter even on a busy
    // machine, where drops leave fewer frames between the model's runs.
    assert!(
        written - inferred >= written / 4,
        "{inferred} runs for {written} frames"
    );
}

#[test]
fn smoothing_steadies_the_mask_of_a_still_picture() {
    let _serial = REAL_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    // One frame of a real clip repeated for 4 s; the encoder's changing artefacts (a key frame
    // every 10 frames at a low bitrate) make the mask flicker as a real static scene does.
    let picture = "imagefreeze num-buffers=120";
    let flicker = |smooth: &str| {
        let json = dir.path().join(format!("stats-{smooth}.json"));
        let output = dir.path().join(format!("still-{smooth}.mkv"));
        let port = free_port();
        // A street scene: the street model (camera's default is the portrait model, whose
        // four averaged views barely flicker on it to begin with).
        let model = shipped("people.onnx");
        let args = [
            "--model",
            model.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
            "--smooth",
            smooth,
            "--stats-json",
            json.to_str().unwrap(),
            "--reconnect-timeout",
            "1.5",
        ];
        let camera = receive(port, &args);
        let mut sender = send(&people_clip(), port, picture, 30, 300);
        exits_within(&mut sender, DEADLINE);
        finish_ok(camera, &args);
        stats(&json)["flicker"].as_f64().unwrap()
    };
    let (raw, smoothed) = (flicker("0"), flicker("0.8"));
    println!("flicker: {raw:.4} raw, {smoothed:.4} with --smooth 0.8");
    assert!(raw > 0.0, "the still picture did not flicker at all");
    assert!(smoothed < 0.8 * raw, "{smoothed} against {raw}");
}

#[test]
fn a_sender_that_stops_ends_the_run_within_the_reconnect_timeout_with_the_file_finalised() {
    let _serial = REAL_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("live.mp4");
    let port = free_port();
    let args = ["-o", output.to_str().unwrap(), "--reconnect-timeout", "2"];
    let camera = receive(port, &args);
    let mut sender = send_long(port, 30);
    std::thread::sleep(Duration::from_secs(4));
    sender.kill().unwrap();
    exits_within(&mut sender, DEADLINE);
    let stopped = Instant::now();
    let result = finish_ok(camera, &args);
    let waited = stopped.elapsed();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("the source sent nothing for"), "{stderr}");
    // The reconnect timeout, plus finalising the file and the process exit.
    assert!(
        waited < Duration::from_secs(5),
        "exited {waited:?} after the sender stopped"
    );
    let (frames, _) = decoded_frames(&output);
    assert!(frames > 10, "{frames} frames in the finalised MP4");
}

#[test]
fn ctrl_c_finalises_the_live_recording() {
    let _serial = REAL_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("live.mp4");
    let port = free_port();
    let camera = receive(port, &["-o", output.to_str().unwrap()]);
    let mut sender = send_long(port, 30);
    std::thread::sleep(Duration::from_secs(3));
    interrupt(&camera);
    let result = finish(camera, Duration::from_secs(10));
    sender.kill().unwrap();
    exits_within(&mut sender, DEADLINE);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(130), "{stderr}");
    let written = count_after(&stderr, "interrupted: wrote ");
    let (frames, _) = decoded_frames(&output);
    assert!(written > 0, "{stderr}");
    assert_eq!(
        frames, written,
        "the finalised file holds every frame written"
    );
}

#[test]
fn the_rtp_output_feeds_another_receiver() {
    let _serial = REAL_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (output, json) = (
        dir.path().join("relayed.mkv"),
        dir.path().join("stats.json"),
    );
    let (first, second) = (free_port(), free_port());
    let relay_to = format!("udp://127.0.0.1:{second}");
    let receiver_args = [
        "-o",
        output.to_str().unwrap(),
        "--stats-json",
        json.to_str().unwrap(),
        "--mode",
        "mask",
        "--reconnect-timeout",
        "2",
    ];
    let receiver = receive(second, &receiver_args);
    let relay = receive(first, &["-o", &relay_to, "--reconnect-timeout", "1.5"]);
    let mut sender = send_short(first);
    exits_within(&mut sender, DEADLINE);
    finish_ok(relay, &[]);
    finish_ok(receiver, &[]);
    let frames = count(&stats(&json), "frames_read");
    println!("{frames} frames came through the relay");
    assert!(frames >= 20, "{frames} frames came through the relay");
    assert_eq!(decoded_frames(&output).1, (640, 480));
}

/// A virtual X display (Xvfb, installed by `scripts/setup`) for the window output.
struct VirtualDisplay {
    server: Child,
    name: String,
}

impl VirtualDisplay {
    /// Starts Xvfb on a display it picks itself, and waits until it accepts clients: with
    /// `-displayfd` it writes the display number once it is ready. `-noreset`: autovideosink
    /// probes xvimagesink first, and without it Xvfb restarts when that probe disconnects,
    /// refusing the ximagesink that comes next.
    fn start() -> Self {
        let mut server = Command::new("Xvfb")
            .args(["-displayfd", "1", "-noreset", "-nolisten", "tcp"])
            .args(["-screen", "0", "800x600x24"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb runs (scripts/setup installs it)");
        let mut number = String::new();
        let stdout = server.stdout.take().unwrap();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut number).unwrap();
        let number = number.trim();
        assert!(!number.is_empty(), "Xvfb did not start");
        VirtualDisplay {
            server,
            name: format!(":{number}"),
        }
    }
}

impl Drop for VirtualDisplay {
    fn drop(&mut self) {
        // SIGTERM, so that Xvfb removes its lock file and socket.
        let _ = Command::new("kill")
            .arg(self.server.id().to_string())
            .status();
        let _ = self.server.wait();
    }
}

#[test]
fn the_default_output_is_a_window() {
    let _serial = REAL_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let display = VirtualDisplay::start();
    let port = free_port();
    let source = format!("udp://127.0.0.1:{port}");
    let camera = Command::new(env!("CARGO_BIN_EXE_segstream"))
        .args(["camera", "--source", &source, "--reconnect-timeout", "1.5"])
        .args(["--model", crate::helpers::fixture_model().to_str().unwrap()])
        .env("DISPLAY", &display.name)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let mut sender = send_short(port);
    exits_within(&mut sender, DEADLINE);
    let result = finish_ok(camera, &["camera", "--source", &source]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    let written = count_after(&stderr, "wrote ");
    assert!(stderr.contains("to a window"), "{stderr}");
    assert!(written > 30, "{written} frames shown");
}

#[test]
fn a_source_pipeline_that_ends_ends_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let (output, json) = (dir.path().join("out.mkv"), dir.path().join("stats.json"));
    // A file decoded as fast as it goes: far faster than the model, so most frames are dropped.
    let description = "videotestsrc num-buffers=77 pattern=ball ! \
                       video/x-raw,width=640,height=480 ! videoconvert ! appsink name=frames";
    let args = [
        "camera",
        "--source-pipeline",
        description,
        "-o",
        output.to_str().unwrap(),
        "--stats-json",
        json.to_str().unwrap(),
    ];
    let started = Instant::now();
    let result = crate::helpers::segstream(&args);
    assert_eq!(
        result.status.code(),
        Some(0),
        "{}",
        describe(&args, &result)
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "end of stream was waited on"
    );
    assert!(
        String::from_utf8_lossy(&result.stderr).contains("models/portrait.onnx"),
        "camera's default model is the portrait model: {}",
        describe(&args, &result)
    );
    let stats = stats(&json);
    let (read, written, dropped) = frame_counts(&stats);
    assert_eq!(stats["ending"], "finished");
    assert_eq!(read, 77, "the source made 77 frames");
    assert_eq!(read, written + dropped);
    assert!(
        dropped > 0 && written > 0,
        "{written} written, {dropped} dropped"
    );
    assert_eq!(decoded_frames(&output).0, written);
}

#[test]
fn an_absent_camera_is_a_clear_error_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("never.mkv");
    assert_fails(
        &[
            "camera",
            "--device",
            "/dev/video9",
            "-o",
            output.to_str().unwrap(),
        ],
        &[],
        1,
        &["/dev/video9", "no such camera"],
    );
    assert!(
        !output.exists(),
        "an output file was created for an absent camera"
    );
}

#[test]
fn absent_outputs_and_unreachable_sources_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("never.mkv");
    let udp = format!("udp://127.0.0.1:{}", free_port());
    assert_fails(
        &["camera", "--source", &udp, "-o", "/dev/video9"],
        &[],
        1,
        &["/dev/video9", "no such video output device"],
    );
    assert_fails(
        &["camera", "--source", &udp],
        &[("DISPLAY", ""), ("WAYLAND_DISPLAY", "")],
        2,
        &["no display for a window"],
    );
    let closed = format!("rtsp://127.0.0.1:{}/stream", free_port());
    assert_fails(
        &["camera", "--source", &closed, "-o", file.to_str().unwrap()],
        &[],
        1,
        &[&closed],
    );
    assert_fails(
        &[
            "camera",
            "--source",
            &udp,
            "-o",
            file.to_str().unwrap(),
            "--start-timeout",
            "1",
        ],
        &[],
        1,
        &["no frame from the source within 1.0 s"],
    );
    assert_fails(
        &[
            "camera",
            "--source",
            "http://example.com/x",
            "-o",
            file.to_str().unwrap(),
        ],
        &[],
        2,
        &["udp://HOST:PORT"],
    );
}

#[test]
#[ignore = "needs a camera"]
fn a_real_camera_is_segmented_live() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("camera.mkv");
    let child = Command::new(env!("CARGO_BIN_EXE_segstream"))
        .args([
            "camera",
            "--device",
            "/dev/video0",
            "--resolution",
            "640x480",
        ])
        .args(["-o", output.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    interrupt(&child);
    let result = finish(child, Duration::from_secs(10));
    assert_eq!(result.status.code(), Some(130));
    let (frames, size) = decoded_frames(&output);
    assert!(frames > 10);
    assert_eq!(size, (640, 480));
}

/// The pedestrians clip (H.264 in Matroska) as an RTSP server would serve a recording.
fn clip_server() -> RtspServer {
    let clip = generated("people.mkv");
    RtspServer::start(
        "clip",
        &format!(
            "( filesrc location={} ! matroskademux ! h264parse ! rtph264pay name=pay0 pt=96 )",
            clip.display()
        ),
    )
}

/// A live camera-like RTSP feed that never ends (a moving test picture, H.264, 30 fps).
const LIVE_FEED: &str = "( videotestsrc is-live=true pattern=ball ! \
    video/x-raw,width=320,height=240,framerate=30/1 ! \
    x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 ! rtph264pay name=pay0 pt=96 )";

/// [`LIVE_FEED`] served at `/live` in this process.
fn live_server() -> RtspServer {
    RtspServer::start("live", LIVE_FEED)
}

/// [`LIVE_FEED`] served at `rtsp://127.0.0.1:PORT/live` by a process of its own (the crate's
/// `rtsp_serve` example, which `cargo test` builds), so that a test can kill it as a server
/// dies; returns once it listens.
fn live_server_process(port: u16) -> Child {
    let program = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("examples/rtsp_serve");
    assert!(
        program.exists(),
        "{} is missing: `cargo test` builds it (cargo build --examples)",
        program.display()
    );
    let mut server = Command::new(program)
        .args([&port.to_string(), "live", LIVE_FEED])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut uri = String::new();
    BufReader::new(server.stdout.as_mut().unwrap())
        .read_line(&mut uri)
        .unwrap();
    assert!(uri.starts_with("rtsp://"), "the RTSP server said {uri:?}");
    server
}

/// A TCP port nobody listens on right now.
fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `segstream camera --source SOURCE ARGS…`.
fn camera_from(source: &str, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_segstream"))
        .args(["camera", "--source", source])
        .args(args)
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn an_rtsp_server_feed_is_segmented_with_latency_reported() {
    let _serial = REAL_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = clip_server();
    let dir = tempfile::tempdir().unwrap();
    let (output, json) = (dir.path().join("rtsp.mkv"), dir.path().join("stats.json"));
    let uri = server.uri("rtsp", "clip");
    let args = [
        "-o",
        output.to_str().unwrap(),
        "--stats-json",
        json.to_str().unwrap(),
    ];
    let result = finish_ok(camera_from(&uri, &args), &args);
    let stats = stats(&json);
    let (read, written, dropped) = frame_counts(&stats);
    println!(
        "RTSP: read {read}, written {written}, dropped {dropped}: {}",
        stats["latency"]
    );
    let (sent, _) = decoded_frames(&generated("people.mkv"));
    assert!(
        read >= sent / 2 && read <= sent,
        "{read} of {sent} frames received"
    );
    assert_eq!(read, written + dropped);
    let p95 = stats["latency"]["p95_ms"].as_f64().unwrap();
    assert!(p95 > 0.0 && p95 < 2000.0, "p95 latency {p95} ms");
    assert_eq!(stats["ending"], "finished", "{}", describe(&args, &result));
    assert_eq!(
        decoded_frames(&output).0,
        written,
        "the file holds every frame written"
    );
}

#[test]
fn rtsp_over_tcp_is_received_and_a_server_that_stops_ends_the_run_with_the_file_finalised() {
    let _serial = REAL_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = live_server();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("tcp.mkv");
    // rtspt:// asks for the media interleaved in the RTSP (TCP) connection.
    let uri = server.uri("rtspt", "live");
    let model = crate::helpers::fixture_model();
    let args = [
        "-o",
        output.to_str().unwrap(),
        "--reconnect-timeout",
        "2",
        "--model",
        model.to_str().unwrap(),
    ];
    let camera = camera_from(&uri, &args);
    std::thread::sleep(Duration::from_secs(4));
    let stopped = Instant::now();
    // The server closes every session: the feed has ended, and so does the run.
    drop(server);
    let result = finish_ok(camera, &args);
    let waited = stopped.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "ended {waited:?} after the server stopped"
    );
    let stderr = String::from_utf8_lossy(&result.stderr);
    let written = count_after(&stderr, "wrote ");
    assert!(written > 20, "{written} frames over TCP in 4 s: {stderr}");
    assert_eq!(decoded_frames(&output).0, written);
}

#[test]
fn an_rtsp_server_that_dies_is_reconnected_when_it_returns_and_its_loss_ends_the_run() {
    let _serial = REAL_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (output, json) = (dir.path().join("rtsp.mkv"), dir.path().join("stats.json"));
    let port = free_tcp_port();
    let uri = format!("rtsp://127.0.0.1:{port}/live");
    let args = [
        "-o",
        output.to_str().unwrap(),
        "--reconnect-timeout",
        "6",
        "--stats-json",
        json.to_str().unwrap(),
    ];
    let kill = |mut server: Child| {
        server.kill().unwrap();
        server.wait().unwrap();
    };
    let server = live_server_process(port);
    let camera = camera_from(&uri, &args);
    std::thread::sleep(Duration::from_secs(4));
    // The server dies without a word to its clients, and comes back on the same port.
    kill(server);
    std::thread::sleep(Duration::from_secs(3));
    let server = live_server_process(port);
    std::thread::sleep(Duration::from_secs(6));
    kill(server);
    let stopped = Instant::now();
    let result = finish(camera, Duration::from_secs(30));
    let waited = stopped.elapsed();
    let stderr = String::from_utf8_lossy(&result.stderr);
    // Refused connections to the end: the run fails with the source's last error, the file
    // finalised.
    assert_eq!(
        result.status.code(),
        Some(1),
        "{}",
        describe(&args, &result)
    );
    assert!(stderr.contains("the source is back"), "{stderr}");
    let (_, error) = stderr.rsplit_once("error: ").unwrap_or_default();
    for expected in [&uri, "reconnecting did not bring it back"] {
        assert!(error.contains(expected), "{stderr}");
    }
    // The reconnect timeout, plus finalising the file and the process exit.
    assert!(
        waited < Duration::from_secs(10),
        "ended {waited:?} after the server died for good"
    );
    let stats = stats(&json);
    assert_eq!(stats["ending"], "source_lost");
    let (read, written, dropped) = frame_counts(&stats);
    println!(
        "read {read}, written {written}, dropped {dropped}: {}",
        stats["latency"]
    );
    // Frames from both sides of the gap reached the file: they are stamped by arrival, so the
    // file spans the 4 s before the loss and the 3 s gap at least, however many frames a busy
    // machine dropped on the way.
    let mut stamps = Vec::new();
    decode(&output, |frame| stamps.extend(frame.pts));
    assert_eq!(
        stamps.len() as u64,
        written,
        "the file holds every frame written"
    );
    let span = stamps
        .iter()
        .max()
        .zip(stamps.iter().min())
        .map(|(a, b)| *a - *b);
    assert!(
        span.is_some_and(|span| span > gst::ClockTime::from_seconds(7)),
        "{written} frames spanning {span:?}: {stderr}"
    );
}

#[test]
fn a_wrong_rtsp_path_is_an_error_naming_the_uri_and_the_answer() {
    let server = live_server();
    let uri = server.uri("rtsp", "no-such-path");
    assert_fails(
        &["camera", "--source", &uri, "-o", "never.mkv"],
        &[],
        1,
        &[&uri, "Not Found"],
    );
    assert!(!Path::new("never.mkv").exists());
}

#[test]
fn two_live_sources_share_the_model_and_one_stopping_leaves_the_other_at_its_rate() {
    let _serial = REAL_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (pattern, json) = (
        dir.path().join("live-{index}.mkv"),
        dir.path().join("stats.json"),
    );
    let ports = [free_port(), free_port()];
    // The fixture model: two 15 fps feeds are a rate any machine holds, busy or not.
    let model = crate::helpers::fixture_model();
    let sources: Vec<String> = ports
        .iter()
        .map(|p| format!("udp://127.0.0.1:{p}"))
        .collect();
    let args = [
        "camera",
        "--source",
        &sources[0],
        "--source",
        &sources[1],
        "-o",
        pattern.to_str().unwrap(),
        "--stats-json",
        json.to_str().unwrap(),
        "--reconnect-timeout",
        "2",
        "--model",
        model.to_str().unwrap(),
    ];
    let camera = Command::new(env!("CARGO_BIN_EXE_segstream"))
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let mut senders = [send_long(ports[0], 15), send_long(ports[1], 15)];
    std::thread::sleep(Duration::from_secs(3));
    senders[1].kill().unwrap();
    std::thread::sleep(Duration::from_secs(5));
    senders[0].kill().unwrap();
    for sender in &mut senders {
        exits_within(sender, DEADLINE);
    }
    let result = finish_ok(camera, &args);
    let stderr = String::from_utf8_lossy(&result.stderr);
    let stats = stats(&json);
    let per_source = stats["sources"].as_array().unwrap();
    assert_eq!(per_source.len(), 2, "{stats}");
    for (index, source) in per_source.iter().enumerate() {
        let (read, written, dropped) = frame_counts(source);
        assert_eq!(read, written + dropped, "source {index}");
        let output = dir.path().join(format!("live-{index}.mkv"));
        assert_eq!(
            decoded_frames(&output).0,
            written,
            "source {index}: {stderr}"
        );
    }
    // The first source ran about 8 s at 15 fps, 5 of them alone: its rate did not drop.
    let (first, second) = (&per_source[0], &per_source[1]);
    let fps = first["output_fps"].as_f64().unwrap();
    assert!(fps > 12.0, "source 0 at {fps} fps: {stderr}");
    assert!(count(first, "frames_written") > 100, "{stderr}");
    assert!(
        count(second, "frames_written") < count(first, "frames_written"),
        "{stderr}"
    );
    assert!(
        stderr.contains("source 0 (") && stderr.contains("source 1 ("),
        "{stderr}"
    );
}

/// A live test pattern of `frames` 320×240 frames at 15 fps in `pattern` (videotestsrc's).
fn test_pattern(pattern: &str, frames: u32) -> String {
    format!(
        "videotestsrc is-live=true num-buffers={frames} pattern={pattern} ! \
         video/x-raw,width=320,height=240,framerate=15/1 ! appsink name=frames"
    )
}

#[test]
fn two_sources_with_one_output_are_tiled_side_by_side() {
    let _serial = REAL_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (output, json) = (dir.path().join("mosaic.mkv"), dir.path().join("stats.json"));
    let (red, blue) = (test_pattern("red", 45), test_pattern("blue", 30));
    // The fixture model: 15 fps of small frames is a rate any machine holds, busy or not.
    let model = crate::helpers::fixture_model();
    let args = [
        "camera",
        "--source-pipeline",
        &red,
        "--source-pipeline",
        &blue,
        "--opacity",
        "0",
        "-o",
        output.to_str().unwrap(),
        "--stats-json",
        json.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
    ];
    let result = crate::helpers::segstream(&args);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{}", describe(&args, &result));
    assert!(stderr.contains("tiled the sources 2×1 into"), "{stderr}");
    // Every frame of both feeds was read; a live feed may drop a frame when the machine is busy.
    let stats = stats(&json);
    let per_source = stats["sources"].as_array().unwrap();
    let mut written = Vec::new();
    for (index, (source, frames)) in per_source.iter().zip([45, 30]).enumerate() {
        let (read, wrote, dropped) = frame_counts(source);
        assert_eq!(
            (read, wrote + dropped),
            (frames, frames),
            "tile {index}: {stats}"
        );
        assert!(wrote * 3 >= frames * 2, "tile {index}: {stats}");
        assert!(
            stderr.contains(&format!("wrote {wrote} of {frames} frames to tile {index}")),
            "{stderr}"
        );
        written.push(wrote);
    }
    let (mut pictures, mut last) = (0, None);
    decode(&output, |frame| {
        pictures += 1;
        last = Some(frame);
    });
    let last = last.expect("the mosaic holds pictures");
    assert_eq!((last.width(), last.height()), (640, 240));
    // At most one picture per frame written (both tiles often change in one picture).
    assert!(
        (written[1]..=written[0] + written[1]).contains(&pictures),
        "{pictures} pictures for {written:?} frames"
    );
    // The blue source ended first: its tile keeps its last picture beside the red one.
    let pixel = |x: usize, y: usize| &last.pixels[(y * 640 + x) * 4..][..3];
    let (left, right) = (pixel(160, 120), pixel(480, 120));
    assert!(
        left[0] > 200 && left[1] < 40 && left[2] < 40,
        "left {left:?}"
    );
    assert!(
        right[2] > 200 && right[0] < 40 && right[1] < 40,
        "right {right:?}"
    );
}

#[test]
fn several_sources_without_an_output_are_tiled_in_one_window() {
    let display = VirtualDisplay::start();
    let feeds = [
        test_pattern("red", 60),
        test_pattern("blue", 60),
        test_pattern("green", 60),
    ];
    let model = crate::helpers::fixture_model();
    let mut args = vec!["camera", "--model", model.to_str().unwrap()];
    for feed in &feeds {
        args.extend(["--source-pipeline", feed.as_str()]);
    }
    let result = crate::helpers::segstream_with_env(&args, &[("DISPLAY", &display.name)]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{}", describe(&args, &result));
    assert!(
        stderr.contains("tiled the sources 2×2 into a window"),
        "{stderr}"
    );
    // Every feed reaches its tile; frames that came while the window opened are dropped, as
    // live runs drop what they cannot show in time.
    for tile in 0..3 {
        let summary = format!("to tile {tile} of a window");
        let line = stderr
            .lines()
            .find(|line| line.starts_with("wrote ") && line.contains(&summary))
            .unwrap_or_else(|| panic!("no summary for tile {tile}: {stderr}"));
        let written = count_after(line, "wrote ");
        assert!(line.contains("of 60 frames") && written >= 5, "{line}");
    }
}

#[test]
fn outputs_must_match_the_sources() {
    let live = "videotestsrc is-live=true num-buffers=5 ! appsink name=frames";
    for (outputs, needle) in [
        (
            &["-o", "a.mkv", "-o", "b.mkv", "-o", "c.mkv"][..],
            "3 outputs (-o) for 2 sources",
        ),
        (
            &["-o", "window", "-o", "b.mkv"][..],
            "a window with other outputs",
        ),
        (
            &["-o", "same.mkv", "-o", "same.mkv"][..],
            "two sources would write same.mkv",
        ),
    ] {
        let mut args = vec![
            "camera",
            "--source-pipeline",
            live,
            "--source-pipeline",
            live,
        ];
        args.extend(outputs);
        assert_fails(&args, &[], 2, &[needle]);
    }
}

#[test]
fn one_output_per_feed_in_the_order_the_feeds_were_given() {
    let _serial = REAL_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("a.mkv"), dir.path().join("b.mkv"));
    let port = free_port();
    let source = format!("udp://127.0.0.1:{port}");
    // The pipeline (320×240) first, then the network feed (640×480).
    let pipeline = test_pattern("red", 30);
    let model = crate::helpers::fixture_model();
    let args = [
        "--source-pipeline",
        pipeline.as_str(),
        "--source",
        source.as_str(),
        "-o",
        first.to_str().unwrap(),
        "-o",
        second.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--reconnect-timeout",
        "1.5",
    ];
    let camera = Command::new(env!("CARGO_BIN_EXE_segstream"))
        .arg("camera")
        .args(args)
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let mut sender = send_short(port);
    exits_within(&mut sender, DEADLINE);
    finish_ok(camera, &args);
    assert_eq!(decoded_frames(&first).1, (320, 240), "-o 1: the first feed");
    assert_eq!(
        decoded_frames(&second).1,
        (640, 480),
        "-o 2: the second feed"
    );
}

#[test]
fn a_feed_given_twice_is_a_usage_error() {
    let source = format!("udp://127.0.0.1:{}", free_port());
    assert_fails(
        &[
            "camera", "--source", &source, "--source", &source, "-o", "x.mkv",
        ],
        &[],
        2,
        &["is given twice"],
    );
}
