//! The commands behind the CLI: each turns validated arguments into library calls and prints
//! what the user asked for.

#[cfg(feature = "train")]
mod init_model;
mod inspect;
mod segment;

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
        Command::Train(_) => Ok(planned("train")),
        Command::Eval(_) => Ok(planned("eval")),
        Command::Bench(_) => Ok(planned("bench")),
    }
}

fn planned(name: &str) -> u8 {
    eprintln!("segstream {name}: not implemented yet");
    EXIT_USAGE
}
