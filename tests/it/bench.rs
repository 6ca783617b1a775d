//! `segstream bench --json` holds every figure the table shows, all positive.

use std::process::Command;

use crate::helpers::{describe, fixture_model, segstream};

#[test]
fn bench_json_holds_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    let status = Command::new("gst-launch-1.0")
        .args(["-q", "videotestsrc", "num-buffers=24", "pattern=ball", "!"])
        .args([
            "video/x-raw,width=160,height=120,framerate=24/1",
            "!",
            "x264enc",
            "!",
            "mp4mux",
            "!",
        ])
        .arg("filesink")
        .arg(format!("location={}", clip.display()))
        .status()
        .expect("gst-launch-1.0 runs (scripts/setup installs gstreamer1.0-tools)");
    assert!(status.success());
    let json = dir.path().join("bench.json");
    let model = fixture_model();
    let args = [
        "bench",
        "--input",
        clip.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--batch",
        "1,2",
        "--repeats",
        "2",
        "--json",
        json.to_str().unwrap(),
    ];
    let output = segstream(&args);
    let text = describe(&args, &output);
    assert!(output.status.success(), "{text}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("efficiency"),
        "{text}"
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(report["efficiency"].as_f64().unwrap() > 0.0, "{report}");
    assert!(report["peak_rss_mib"].as_f64().unwrap() > 0.0);
    // The CPU bound: each part's CPU time per frame, and end-to-end against what they allow.
    for part in ["decode_encode", "inference", "pre_post"] {
        let seconds = report["cpu_s_per_frame"][part].as_f64().unwrap();
        assert!(seconds > 0.0 && seconds < 1.0, "{part}: {report}");
    }
    assert!(report["cpu_bound_fps"].as_f64().unwrap() > 0.0, "{report}");
    assert!(report["cpu_efficiency"].as_f64().unwrap() > 0.0, "{report}");
    let measurements = report["measurements"].as_array().unwrap();
    let names: Vec<(&str, Option<u64>)> = measurements
        .iter()
        .map(|m| (m["name"].as_str().unwrap(), m["batch"].as_u64()))
        .collect();
    assert_eq!(
        names,
        [
            ("decode", None),
            ("decode+encode", None),
            ("inference", Some(1)),
            ("inference", Some(2)),
            ("end-to-end", Some(1)),
            ("end-to-end", Some(2)),
        ]
    );
    for m in measurements {
        for key in ["median", "min", "max"] {
            assert!(m["fps"][key].as_f64().unwrap() > 0.0, "{m}");
        }
        assert!(m["fps"]["min"].as_f64() <= m["fps"]["max"].as_f64());
        assert!(m["cpu_percent"].as_f64().unwrap() > 0.0, "{m}");
    }
    assert_eq!(measurements[0]["frames"], 24);
    let stages = measurements[4]["stages"].as_array().unwrap();
    assert!(
        stages
            .iter()
            .any(|s| s["name"] == "infer" && s["p95_ms"].as_f64().unwrap() > 0.0)
    );
}

#[test]
fn bench_of_streams_compares_one_process_with_one_per_stream() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("streams.json");
    let (model, clip) = (fixture_model(), crate::media::generated("bars.mkv"));
    let args = [
        "bench",
        "--input",
        clip.to_str().unwrap(),
        "--streams",
        "3",
        "--repeats",
        "1",
        "--model",
        model.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ];
    let output = segstream(&args);
    let text = describe(&args, &output);
    assert!(output.status.success(), "{text}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["streams"], 3, "{report}");
    assert_eq!(report["frames"], 180, "{report}");
    for way in ["one_process", "separate"] {
        let way = &report[way];
        assert!(way["fps"]["median"].as_f64().unwrap() > 0.0, "{report}");
        assert!(way["peak_rss_mib"].as_f64().unwrap() > 10.0, "{report}");
        assert_eq!(
            way["latency_p95_ms"].as_array().unwrap().len(),
            3,
            "{report}"
        );
    }
    assert!(
        text.contains("one process:") && text.contains("the memory"),
        "{text}"
    );
}

#[test]
fn streams_the_machine_cannot_hold_or_none_are_refused_before_any_start() {
    let clip = crate::media::generated("bars.mkv");
    let clip = clip.to_str().unwrap();
    crate::helpers::assert_fails(
        &["bench", "--input", clip, "--streams", "0"],
        &[],
        2,
        &["--streams 0"],
    );
    // 20,000 streams of about 210 MiB each: more than any test machine holds.
    crate::helpers::assert_fails(
        &["bench", "--input", clip, "--streams", "20000"],
        &[],
        2,
        &["--streams 20000", "MiB available"],
    );
}
