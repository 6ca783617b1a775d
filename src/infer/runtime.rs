//! Finding and loading ONNX Runtime's shared library (`ort`'s `load-dynamic`), once per process.
//!
//! Search order: `ORT_DYLIB_PATH`; beside the executable (or plugin); `.deps/onnxruntime/` in any
//! folder above it (a checkout's `target/release/segstream` finds the checkout's `.deps/`); the
//! `.deps/` of the checkout the binary was built from.
//!
//! The CUDA provider's libraries (cuDNN, cuBLAS, the CUDA runtime: `ORT_GPU=1 scripts/setup`
//! puts them beside ONNX Runtime, from PyPI's `nvidia-*` wheels) are loaded from that folder
//! first, as the Python package's `preload_dlls` does, so that the provider finds them without
//! `LD_LIBRARY_PATH`.

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
    if let Some(folder) = path.parent() {
        preload_cuda_libraries(folder);
    }
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

/// The libraries of the CUDA provider that the `nvidia-*` wheels bring (the driver's
/// `libcuda.so.1` is not among them: it comes with the driver). cuDNN's engines are not: the
/// main library loads them from its own folder when a model needs them.
const CUDA_LIBRARIES: [&str; 8] = [
    "libcudart.so.",
    "libnvJitLink.so.",
    "libnvrtc.so.",
    "libcublasLt.so.",
    "libcublas.so.",
    "libcurand.so.",
    "libcufft.so.",
    "libcudnn.so.",
];

/// Loads, globally, every CUDA library in `folder` (none there: nothing happens), so that the
/// CUDA provider's own loading finds them by name. A library whose dependencies are not loaded
/// yet is tried again after the others; one that cannot load at all (no driver for a cuDNN
/// engine) is left to the provider, whose error then names it.
fn preload_cuda_libraries(folder: &Path) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    let mut pending: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            name.is_some_and(|n| CUDA_LIBRARIES.iter().any(|l| n.starts_with(l)))
        })
        .collect();
    pending.sort();
    while !pending.is_empty() {
        let before = pending.len();
        pending.retain(|library| !load_globally(library));
        if pending.len() == before {
            for library in &pending {
                tracing::debug!(library = %shown(library), "CUDA library not preloaded");
            }
            return;
        }
    }
}

/// `dlopen(path, RTLD_LAZY | RTLD_GLOBAL)`, kept open for the life of the process.
fn load_globally(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(name) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a valid C string; the handle is never closed (the provider uses the library).
    !unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_LAZY | libc::RTLD_GLOBAL) }.is_null()
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
