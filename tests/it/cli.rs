//! The command line itself: help lists every command; unknown options are usage errors.

use crate::helpers::{assert_fails, describe, segstream};

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
