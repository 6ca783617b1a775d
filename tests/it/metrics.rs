//! The metrics endpoint: scraped over real HTTP while `camera` runs a live feed and while the
//! element runs in this process; its refusals and its errors at start.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gstreamer as gst;
use gstreamer_check::Harness;

use crate::element::{buffer, harness, people_frames};
use crate::helpers::{assert_fails, count_after, describe, finish};

/// An HTTP client that hands back 4xx and 5xx answers instead of failing on them.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// GETs `url` with `host` as the `Host` header (the URL's own when `None`): status and body.
fn get(url: &str, host: Option<&str>) -> (u16, String) {
    let mut request = agent().get(url);
    if let Some(host) = host {
        request = request.header("Host", host);
    }
    let mut response = request.call().unwrap();
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

/// The value of the sample `name{labels}` in a scrape, if there is one.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn a_live_run_is_scraped_while_it_runs_and_answers_only_to_its_own_address() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("live.mkv");
    let frames: u32 = 150;
    let source = format!(
        "videotestsrc is-live=true num-buffers={frames} pattern=ball ! \
         video/x-raw,width=320,height=240,framerate=30/1 ! videoconvert ! appsink name=frames"
    );
    let args = [
        "camera",
        "--source-pipeline",
        &source,
        "-o",
        out.to_str().unwrap(),
        "--metrics",
        "0",
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_segstream"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    let base = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "the run ended without saying where its metrics are:\n{said}"
        );
        said.push_str(&line);
        if let Some(rest) = line.strip_prefix("metrics: ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let base = base.trim_end_matches("/metrics").to_string();
    let series = |name: &str| format!("segstream_{name}{{source=\"--source-pipeline\"}}");

    // Scraped until frames flow (the model loads first), then once more a little later.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (first, health) = loop {
        let (status, text) = get(&format!("{base}/metrics"), None);
        assert_eq!(status, 200, "{text}");
        if sample(&text, &series("frames_written_total")).unwrap_or(0.0) >= 10.0 {
            break (text, get(&format!("{base}/healthz"), None));
        }
        assert!(
            Instant::now() < deadline,
            "no frame written in 60 s:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_millis(500));
    let (_, second) = get(&format!("{base}/metrics"), None);
    let refused = get(&format!("{base}/metrics"), Some("attacker.example:80"));
    let elsewhere = get(&format!("{base}/other"), None);
    // The rest of stderr is read while the run finishes.
    let rest = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let output = finish(child, Duration::from_secs(120));
    let stderr = said + &rest.join().unwrap();
    assert!(
        output.status.success(),
        "{}\n{stderr}",
        describe(&args, &output)
    );

    let value = |text: &str, name: &str| sample(text, &series(name)).unwrap();
    let read = value(&first, "frames_read_total");
    let written = value(&first, "frames_written_total");
    // A live run may drop frames on a busy machine: what was read was written, dropped or is
    // still on its way.
    let dropped = value(&first, "frames_dropped_total");
    assert!(
        written + dropped <= read && read <= f64::from(frames),
        "read {read}, written {written}, dropped {dropped}"
    );
    assert!(
        value(&second, "frames_written_total") > written,
        "the counter moved on"
    );
    assert_eq!(value(&first, "errors_total"), 0.0);
    assert!(value(&first, "fps") > 0.0);
    assert_eq!(value(&first, "source_up"), 1.0);
    assert_eq!(
        value(&first, "frame_latency_seconds_count"),
        written,
        "one latency per frame written"
    );
    for stage in [
        "source",
        "preprocess",
        "batcher",
        "infer",
        "postprocess",
        "sink",
    ] {
        let count = format!("segstream_stage_latency_seconds_count{{stage=\"{stage}\"}}");
        assert!(
            sample(&first, &count).is_some_and(|n| n > 0.0),
            "{stage}:\n{first}"
        );
    }
    assert!(sample(&first, "segstream_inference_batch_frames_count").is_some_and(|n| n > 0.0));
    assert_eq!(health.0, 200, "{}", health.1);
    let health: serde_json::Value = serde_json::from_str(&health.1).unwrap();
    assert_eq!(health["healthy"], true);
    assert_eq!(health["sources"][0]["status"], "delivering");
    assert_eq!(refused.0, 403, "a foreign Host is refused");
    assert!(!refused.1.contains("segstream_"), "{}", refused.1);
    assert_eq!(elsewhere.0, 404);
    // The end's own count: every frame read was written or dropped.
    let (written, read) = (count_after(&stderr, "wrote "), count_after(&stderr, " of "));
    assert_eq!(read, u64::from(frames), "{stderr}");
    assert_eq!(written + count_after(&stderr, "dropped "), read, "{stderr}");
    assert!(
        value(&second, "frames_written_total") <= written as f64,
        "the scrape counted no more than the run wrote"
    );
}

#[test]
fn a_port_in_use_or_a_bad_address_is_an_error_at_start() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.mp4");
    let clip = crate::media::generated("people.mkv");
    let segment = |metrics: &str| {
        [
            "segment".to_string(),
            clip.to_str().unwrap().into(),
            "-o".into(),
            out.to_str().unwrap().into(),
            "--metrics".into(),
            metrics.into(),
        ]
    };
    let in_use = segment(&port);
    let in_use: Vec<&str> = in_use.iter().map(String::as_str).collect();
    assert_fails(&in_use, &[], 2, &[&format!("127.0.0.1:{port}"), "in use"]);
    assert!(!out.exists(), "nothing was written");
    let bad = segment("metrics.example:80");
    let bad: Vec<&str> = bad.iter().map(String::as_str).collect();
    assert_fails(&bad, &[], 2, &["not a port or an IP address"]);
    let foreign = segment("192.0.2.1:9100");
    let foreign: Vec<&str> = foreign.iter().map(String::as_str).collect();
    assert_fails(
        &foreign,
        &[],
        2,
        &["192.0.2.1:9100", "not one of this machine's"],
    );
}

#[test]
fn the_elements_counters_equal_the_frames_it_passed_on() {
    let frames = people_frames(12);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut h: Harness = harness(
        &[
            ("name", "metered"),
            ("mode", "mask"),
            ("metrics-port", &port.to_string()),
        ],
        "RGBA",
        &frames[0],
    );
    for frame in &frames {
        h.push(buffer(frame, false)).unwrap();
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let mut out = 0;
    while h.pull_until_eos().unwrap().is_some() {
        out += 1;
    }
    assert_eq!(out, frames.len());
    let (status, text) = get(&format!("http://127.0.0.1:{port}/metrics"), None);
    assert_eq!(status, 200);
    let value = |name: &str| sample(&text, &format!("segstream_{name}{{source=\"metered\"}}"));
    assert_eq!(
        value("frames_read_total"),
        Some(frames.len() as f64),
        "{text}"
    );
    assert_eq!(value("frames_written_total"), Some(out as f64), "{text}");
    assert_eq!(value("frames_dropped_total"), Some(0.0));
    // (`/healthz` is checked on its own process above: this one runs other tests' elements.)
    // Stopped, the element lets its server go: the port is free again.
    h.element().unwrap().set_state(gst::State::Null).unwrap();
    drop(h);
    // The HTTP server's accepting thread lets the socket go just after.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpListener::bind(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server still holds the port");
        std::thread::sleep(Duration::from_millis(50));
    }
}
