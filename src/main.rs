//! The `segstream` binary: parse the command line, run the command, map errors to exit codes.

use std::io::IsTerminal;
use std::process::ExitCode;

use segstream::cli::{Cli, Command};

fn main() -> ExitCode {
    limit_malloc_arenas();
    keep_burns_default_device_on_the_cpu();
    quiet_vulkan_device_selection_without_a_desktop();
    // First of all: a Ctrl-C during start-up must not kill the process with an output half-made.
    if let Err(error) = segstream::commands::interrupt::install() {
        eprintln!("error: {error:#}");
        return ExitCode::FAILURE;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SEGSTREAM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    let cli = Cli::parse_in_order();
    if matches!(
        cli.command,
        Command::Inspect(_) | Command::Eval(_) | Command::Bench(_)
    ) {
        // A reader that stops early (`segstream inspect … | head`) ends a command that only
        // reports, as it ends any Unix tool, rather than a panic on the broken pipe. Commands
        // that write files keep ignoring SIGPIPE: they must finish their output.
        // SAFETY: restores the default disposition of one signal; no handler is involved.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match segstream::commands::run(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            // Options that cannot work are usage errors, like clap's own.
            match error.downcast_ref::<segstream::Error>() {
                Some(segstream::Error::Config(_)) => {
                    ExitCode::from(segstream::commands::EXIT_USAGE)
                }
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// Two malloc heaps for the whole process. glibc gives threads that contend their own heap, up
/// to 8 a core, and a heap keeps what its threads freed: with decoders, encoders and stage
/// workers for several streams that memory is held once per heap. Two hold 50–60 MB less with
/// four streams in one process, at the same CPU (docs/segment.md, "Several files, one model").
/// Set before any thread starts, so no third heap is ever made.
/// burn's default device is the first GPU runtime a build has (Vulkan in the default build,
/// CUDA in the `cuda` one), and burn loads an optimiser's saved state there before moving it
/// to the training device: a checkpoint must load on a machine without a GPU, so the default
/// is the CPU unless `BURN_DEVICE` says otherwise. Training's own device is `--device`.
fn keep_burns_default_device_on_the_cpu() {
    if std::env::var_os("BURN_DEVICE").is_none() {
        // SAFETY: set while the process has one thread, before anything reads it.
        unsafe { std::env::set_var("BURN_DEVICE", "flex") };
    }
}

/// Mesa's Vulkan device-select layer asks the Wayland compositor which GPU draws the screen;
/// without a desktop session (a server, CI, a terminal over SSH) it prints "error:
/// XDG_RUNTIME_DIR is invalid or not set" each time the devices are listed, which
/// `train --device vulkan` does. There is no screen to follow then: the layer is turned off.
fn quiet_vulkan_device_selection_without_a_desktop() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none()
        && std::env::var_os("NODEVICE_SELECT").is_none()
    {
        // SAFETY: set while the process has one thread, before anything reads it.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
}

fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: a malloc tuning parameter, set while the process has one thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
