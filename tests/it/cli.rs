//! The command line itself: help lists every command; unknown options are usage errors; a
//! reader that stops early ends a report quietly.

use std::process::{Command, Stdio};

use crate::helpers::{assert_fails, describe, segstream, shipped};

#[test]
fn help_lists_every_command() {
    let output = segstream(&["--help"]);
    let text = describe(&["--help"], &output);
    assert!(output.status.success(), "{text}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    for command in ["segment", "camera", "train", "eval", "bench", "inspect"] {
        assert!(stdout.contains(command), "help lacks {command}\n{text}");
    }
}

#[test]
fn unknown_option_is_a_usage_error() {
    assert_fails(
        &["inspect", "--no-such-option"],
        &[],
        2,
        &["--no-such-option"],
    );
}

#[test]
fn a_reader_that_stops_early_ends_a_report_without_a_panic() {
    use std::os::unix::process::ExitStatusExt as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_segstream"))
        .args(["inspect", shipped("camvid.onnx").to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `| head -0`: the reader is gone before the model has loaded and the report is printed.
    drop(child.stdout.take());
    let output = crate::helpers::finish(child, crate::helpers::DEADLINE);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.signal(), Some(libc::SIGPIPE), "{stderr}");
}
