//! The commands behind the CLI: each turns validated arguments into library calls and prints
//! what the user asked for.

mod bench;
mod eval;
#[cfg(feature = "train")]
mod init_model;
mod inspect;
mod segment;
#[cfg(feature = "train")]
mod train;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;

use crate::cli::Command;

/// Exit code for usage errors and commands that are not available.
pub const EXIT_USAGE: u8 = 2;

/// Runs `command`; `Ok(code)` is the process exit code.
///
/// # Errors
/// Whatever the command fails with; `main` prints the chain and exits 1.
pub fn run(command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Inspect(args) => inspect::run(&args).map(|()| 0),
        #[cfg(feature = "train")]
        Command::InitModel(args) => init_model::run(&args).map(|()| 0),
        Command::Segment(args) => segment::run(&args),
        Command::Camera(_) => Ok(planned("camera")),
        #[cfg(feature = "train")]
        Command::Train(args) => train::run(&args),
        Command::Eval(args) => eval::run(&args).map(|()| 0),
        Command::Bench(args) => bench::run(&args).map(|()| 0),
    }
}

fn planned(name: &str) -> u8 {
    eprintln!("segstream {name}: not implemented yet");
    EXIT_USAGE
}

/// Exit code after Ctrl-C (128 + SIGINT).
pub const EXIT_INTERRUPTED: u8 = 130;

/// A flag that the first Ctrl-C sets (after printing `message`); a second Ctrl-C exits at once.
fn interrupt_flag(message: &'static str) -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
        eprintln!("\n{message} (Ctrl-C again to abort)");
    })
    .context("installing the Ctrl-C handler")?;
    Ok(stop)
}
