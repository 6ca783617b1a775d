//! Finding and loading ONNX Runtime's shared library (`ort`'s `load-dynamic`), once per process.
//!
//! Search order: `ORT_DYLIB_PATH`; beside the executable (or plugin); `.deps/onnxruntime/` in any
//! folder above it (a checkout's `target/release/segstream` finds the checkout's `.deps/`); the
//! `.deps/` of the checkout the binary was built from.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::paths::{checkout_candidates, shown, this_module};
use crate::{Error, Result};

/// File name of the library as `scripts/setup` leaves it.
const LIBRARY: &str = "libonnxruntime.so";
/// Where `scripts/setup` puts the library, relative to the checkout.
const DEPS_DIR: &str = ".deps/onnxruntime";

static ENVIRONMENT: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

/// The process-wide ONNX Runtime environment, loading the library on first use.
///
/// # Errors
/// [`Error::Runtime`] when the library is not found or cannot be loaded; the message says what
/// to run.
pub fn environment() -> Result<&'static ort::environment::Environment> {
    ENVIRONMENT
        .get_or_init(load)
        .as_ref()
        .map_err(|reason| Error::Runtime(reason.clone()))
}

fn load() -> Result<ort::environment::Environment, String> {
    let candidates = library_candidates();
    let Some(path) = candidates.iter().find(|p| p.is_file()) else {
        let looked: Vec<String> = candidates.iter().map(|p| shown(p)).collect();
        return Err(format!(
            "the shared library {LIBRARY} was not found (looked at: {}). Run `scripts/setup` in the \
             segstream checkout, or set ORT_DYLIB_PATH to a libonnxruntime.so of version 1.31",
            looked.join(", ")
        ));
    };
    let builder = ort::init_from(path).map_err(|e| {
        format!(
            "cannot load {}: {e}. Run `scripts/setup` again",
            shown(path)
        )
    })?;
    let environment = builder
        .with_name("segstream")
        .build()
        .map_err(|e| format!("cannot start ONNX Runtime from {}: {e}", shown(path)))?;
    tracing::debug!(library = %shown(path), "ONNX Runtime loaded");
    Ok(environment)
}

fn library_candidates() -> Vec<PathBuf> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        return vec![PathBuf::from(path)];
    }
    let beside_module =
        this_module().and_then(|module| module.parent().map(|dir| dir.join(LIBRARY)));
    beside_module
        .into_iter()
        .chain(checkout_candidates(&Path::new(DEPS_DIR).join(LIBRARY)))
        .collect()
}
