//! Shared test helpers: running the binary with a readable failure message, test inputs.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Held by in-process tests that seed burn's random numbers and depend on them: the seed is
/// the device's, shared by every thread of the test process, so a concurrent test reseeding
/// or drawing would change their weights.
pub static BURN_RANDOM: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Folder of committed test fixtures.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// The tiny untrained U-Net committed as a fixture (see tests/data/README.md).
pub fn fixture_model() -> PathBuf {
    fixtures().join("unet-d2b8-random.onnx")
}

/// The arguments of `segstream segment INPUT -o OUTPUT --model MODEL`, to extend.
pub fn segment_args<'a>(input: &'a Path, output: &'a Path, model: &'a Path) -> Vec<&'a str> {
    vec![
        "segment",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
    ]
}

/// Segments `input` with the fixture model (and `extra` options) into `name` in a new
/// temporary folder; returns the folder (keep it alive), the output path and stderr.
pub fn segment_with_fixture(
    input: &Path,
    name: &str,
    extra: &[&str],
) -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join(name);
    let model = fixture_model();
    let mut args = segment_args(input, &output, &model);
    args.extend(extra);
    let stderr = run_ok(&args).stderr;
    (dir, output, stderr)
}

/// Runs `segstream` with `args`; returns its output.
pub fn segstream(args: &[&str]) -> Output {
    segstream_with_env(args, &[])
}

/// The longest any command of the tests may run: a command that hangs fails the test with
/// what it printed, rather than holding the suite until CI kills it.
pub const DEADLINE: Duration = Duration::from_secs(600);

/// Runs `segstream` with `args` and extra environment variables, within [`DEADLINE`].
pub fn segstream_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_segstream"))
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the segstream binary runs");
    finish(child, DEADLINE)
}

/// Runs `command` with its output piped, within [`DEADLINE`].
pub fn output_within(command: &mut Command) -> Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?} does not start: {e}"));
    finish(child, DEADLINE)
}

/// Waits for `child` to end within `deadline`, collecting what it prints on the pipes it was
/// given; past the deadline it is killed and the test fails with its output.
pub fn finish(mut child: Child, deadline: Duration) -> Output {
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = wait_within(&mut child, deadline);
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    match status {
        Some(status) => Output {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "process {} still ran after {} s and was killed\nstdout:\n{}\nstderr:\n{}",
            child.id(),
            deadline.as_secs(),
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ),
    }
}

/// Waits up to `deadline` for `child`; kills it (and returns `None`) when it is still running.
pub fn wait_within(child: &mut Child, deadline: Duration) -> Option<ExitStatus> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("the child can be waited for") {
            return Some(status);
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`wait_within`] for a child whose output is not read: its exit status, or a failed test.
pub fn exits_within(child: &mut Child, deadline: Duration) -> ExitStatus {
    wait_within(child, deadline).unwrap_or_else(|| {
        panic!(
            "process {} still ran after {} s and was killed",
            child.id(),
            deadline.as_secs()
        )
    })
}

/// Describes a finished command for assertion messages.
pub fn describe(args: &[&str], output: &Output) -> String {
    format!(
        "segstream {}\nstatus: {}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// What a successful run printed.
pub struct Printed {
    /// Standard output.
    pub stdout: String,
    /// Standard error (logs, progress, summaries).
    pub stderr: String,
}

/// Runs `segstream` with `args` and asserts it succeeds without a panic.
/// Segments the generated `bars.mkv` (60 frames) with `model` and `extra` options into PNG
/// frames in `frames`, asserting success.
pub fn segment_bars_with(model: &Path, frames: &Path, extra: &[&str]) {
    let input = crate::media::generated("bars.mkv");
    let mut args = vec![
        "segment",
        input.to_str().unwrap(),
        "-o",
        frames.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
    ];
    args.extend(extra);
    run_ok(&args);
}

pub fn run_ok(args: &[&str]) -> Printed {
    let output = segstream(args);
    let text = describe(args, &output);
    assert!(output.status.success(), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    Printed {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `segstream import SOURCE -o OUT EXTRA…`, asserted to succeed; returns its stdout.
pub fn import_model(source: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "import",
        source.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    run_ok(&args).stdout
}

/// Runs `segstream`, asserts it succeeds and parses its stdout as one JSON value.
pub fn run_json(args: &[&str]) -> serde_json::Value {
    let output = segstream(args);
    assert!(output.status.success(), "{}", describe(args, &output));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", describe(args, &output)))
}

/// Runs `segstream` and asserts it fails with exit code `code` and a stderr containing every
/// one of `needles`.
pub fn assert_fails(args: &[&str], env: &[(&str, &str)], code: i32, needles: &[&str]) {
    let output = segstream_with_env(args, env);
    let text = describe(args, &output);
    assert_eq!(output.status.code(), Some(code), "{text}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for needle in needles {
        assert!(stderr.contains(needle), "stderr lacks {needle:?}\n{text}");
    }
    assert!(!stderr.contains("panicked"), "{text}");
}

/// Sends Ctrl-C (SIGINT) to `child`.
pub fn interrupt(child: &Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -INT {} failed", child.id());
}

/// The number right after `prefix` in `stderr` (e.g. the count in "wrote 42 frames").
pub fn count_after(stderr: &str, prefix: &str) -> u64 {
    stderr
        .split(prefix)
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count after {prefix:?} in: {stderr}"))
}

/// The model `name` shipped in `models/`.
pub fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(name)
}

/// Runs `segstream eval --json` for `model` on `data` with `extra` options; returns its JSON.
pub fn eval_json(model: &Path, data: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--json",
    ];
    args.extend(extra);
    run_json(&args)
}
