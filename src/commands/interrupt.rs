//! Ctrl-C: one handler, installed before anything else runs, so that an interrupt that comes
//! while a command is still starting cannot kill the process with an output half-made.
//!
//! SIGTERM and SIGHUP (a service being stopped, a closed terminal) are handled as Ctrl-C is.
//!
//! Until a command claims Ctrl-C (with [`claim`]), an interrupt exits at once with code 130,
//! as the default handler would: nothing has been written yet (temporary files are removed). Once claimed, the first Ctrl-C
//! sets the command's stop flag and prints what the command will do; a second exits at once.
//! A second signal within [`SAME_REQUEST`] of the first is the same request delivered twice
//! (`timeout` and `kill -- -PGID` signal the process and its group), not a second one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::EXIT_INTERRUPTED;

/// Signals closer together than this are one request.
const SAME_REQUEST: Duration = Duration::from_millis(500);

/// The flag Ctrl-C sets and what to print when it does (`None`: not claimed, exit at once).
struct Interrupt {
    stop: Arc<AtomicBool>,
    message: Mutex<Option<&'static str>>,
    /// When the first signal came.
    first: OnceLock<Instant>,
}

static INTERRUPT: OnceLock<Interrupt> = OnceLock::new();

fn state() -> &'static Interrupt {
    INTERRUPT.get_or_init(|| Interrupt {
        stop: Arc::new(AtomicBool::new(false)),
        message: Mutex::new(None),
        first: OnceLock::new(),
    })
}

/// Installs the process's Ctrl-C handler; call it first thing in `main`.
///
/// # Errors
/// When the handler cannot be installed.
pub fn install() -> anyhow::Result<()> {
    let interrupt = state();
    ctrlc::set_handler(move || {
        // A poisoned lock still holds a valid message: nothing can be half-written in it.
        let message = *interrupt.message.lock().unwrap_or_else(|e| e.into_inner());
        let first = *interrupt.first.get_or_init(Instant::now);
        match message {
            Some(message) if !interrupt.stop.swap(true, Ordering::SeqCst) => {
                eprintln!("\n{message} (Ctrl-C again to abort)");
            }
            Some(_) if first.elapsed() < SAME_REQUEST => {}
            _ => {
                crate::files::remove_temporaries();
                // `_exit`, not `exit`: the other threads are still running (an ONNX Runtime
                // session, GStreamer), and the static destructors `exit` runs would tear their
                // libraries down beneath them (a segmentation fault instead of exit 130).
                // SAFETY: `_exit` ends the process at once; it touches no Rust state.
                unsafe { libc::_exit(i32::from(EXIT_INTERRUPTED)) }
            }
        }
    })
    .context("installing the Ctrl-C handler")
}

/// Claims Ctrl-C for the running command: from now on the first one sets the returned flag
/// (after printing `message`) instead of exiting. Claim it before opening any output, so that
/// every interrupt either comes before anything was written or finalises what was.
pub fn claim(message: &'static str) -> Arc<AtomicBool> {
    let interrupt = state();
    *interrupt.message.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
    Arc::clone(&interrupt.stop)
}
