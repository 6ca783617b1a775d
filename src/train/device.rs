//! Where training runs: `--device cpu|cuda|vulkan|auto`, resolved once into burn's device
//! (autodiff over it) or into an error that says why the device cannot be used — the backend
//! not built, the driver missing, no device — never a silent fall back to the CPU.
//!
//! The model, the loop, the checkpoints and the export are the same on every device (burn's
//! run-time `Dispatch` backend); only the CPU runs segstream's own kernels (`crate::kernels`).
//! Uses burn and `crate::Error`.

use std::fmt;
use std::str::FromStr;

use burn::prelude::Device;

use crate::{Error, Result};

/// The device a user asks `train` for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrainDevice {
    /// The CPU cores (burn's Flex backend with segstream's kernels).
    Cpu,
    /// An NVIDIA GPU through CUDA (the `cuda` build).
    Cuda,
    /// Any Vulkan device: a GPU's driver, or Mesa's software lavapipe (the `vulkan` build).
    Vulkan,
    /// CUDA when this build has it and a GPU answers, else the CPU; said aloud.
    #[default]
    Auto,
}

impl FromStr for TrainDevice {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda),
            "vulkan" => Ok(Self::Vulkan),
            "auto" => Ok(Self::Auto),
            other => Err(format!(
                "unknown device {other:?}: cpu, cuda, vulkan or auto"
            )),
        }
    }
}

impl fmt::Display for TrainDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
            Self::Vulkan => "vulkan",
            Self::Auto => "auto",
        })
    }
}

/// A device training can run on, with the name to print.
#[derive(Clone)]
pub struct Chosen {
    /// burn's device, with autodiff.
    pub device: Device,
    /// What it is, for the user: "CPU", "CUDA: NVIDIA H100 …", "Vulkan: llvmpipe …".
    pub name: String,
}

impl TrainDevice {
    /// The device to train on.
    ///
    /// # Errors
    /// [`Error::Config`] naming why the asked-for device cannot be used.
    pub fn resolve(self) -> Result<Chosen> {
        let asked = |found: std::result::Result<Chosen, String>| {
            found.map_err(|why| Error::Config(format!("--device {self}: {why}")))
        };
        match self {
            Self::Cpu => Ok(cpu()),
            Self::Cuda => asked(cuda()),
            Self::Vulkan => asked(vulkan()),
            Self::Auto => Ok(cuda().unwrap_or_else(|why| {
                let mut chosen = cpu();
                chosen.name = format!("CPU (no CUDA device: {why})");
                chosen
            })),
        }
    }
}

fn cpu() -> Chosen {
    Chosen {
        device: Device::flex().autodiff(),
        name: "CPU".into(),
    }
}

/// The first device of a GPU runtime, named by the device itself.
#[cfg(any(feature = "cuda", feature = "vulkan"))]
fn first_device(kind: burn::tensor::DeviceType, runtime: &str) -> Option<Chosen> {
    let device = Device::enumerate(kind).into_vec().into_iter().next()?;
    let name = device.identity().map_or_else(
        || runtime.to_string(),
        |id| format!("{runtime}: {}", id.name),
    );
    Some(Chosen {
        device: device.autodiff(),
        name,
    })
}

#[cfg(feature = "vulkan")]
fn vulkan() -> std::result::Result<Chosen, String> {
    // The loader first: without it wgpu lists no Vulkan adapter and cannot say why.
    if !library_loads(c"libvulkan.so.1") {
        return Err(
            "the Vulkan loader (libvulkan.so.1) is not installed (Debian: apt install \
                    libvulkan1, and a driver: the GPU's, or mesa-vulkan-drivers for the \
                    software device)"
                .into(),
        );
    }
    first_device(burn::tensor::DeviceType::Vulkan, "Vulkan").ok_or_else(|| {
        "the Vulkan loader found no device: install the GPU's Vulkan driver (Debian: \
         mesa-vulkan-drivers for AMD, Intel and the software device)"
            .into()
    })
}

#[cfg(not(feature = "vulkan"))]
fn vulkan() -> std::result::Result<Chosen, String> {
    Err(not_built("vulkan"))
}

#[cfg(feature = "cuda")]
fn cuda() -> std::result::Result<Chosen, String> {
    if !library_loads(c"libcuda.so.1") {
        return Err("the NVIDIA driver's libcuda.so.1 is not installed".into());
    }
    let Some(libdevice) = libdevice() else {
        return Err(
            "libdevice.10.bc not found: set CUDA_PATH to a folder holding \
                    nvvm/libdevice/libdevice.10.bc (`scripts/setup-cuda` installs the \
                    nvidia-cuda-nvcc-cu12 wheel's and prints the folder), or install CUDA in \
                    /usr/local/cuda"
                .into(),
        );
    };
    tracing::debug!(libdevice = %libdevice.display(), "CUDA kernels link libdevice");
    first_device(burn::tensor::DeviceType::Cuda, "CUDA")
        .ok_or_else(|| "the NVIDIA driver reports no CUDA device".into())
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> std::result::Result<Chosen, String> {
    Err(not_built("cuda"))
}

/// Where the CUDA backend (cubecl's NVPTX compiler) looks for libdevice: `$CUDA_PATH`, else
/// the first of the usual toolkit folders that has one.
#[cfg(feature = "cuda")]
fn libdevice() -> Option<std::path::PathBuf> {
    let roots: Vec<std::path::PathBuf> = match std::env::var_os("CUDA_PATH") {
        Some(root) => vec![root.into()],
        None => ["/usr/local/cuda", "/opt/cuda", "/usr/lib/cuda", "/usr"]
            .map(Into::into)
            .into(),
    };
    roots
        .into_iter()
        .map(|root| root.join("nvvm/libdevice/libdevice.10.bc"))
        .find(|path| path.is_file())
}

#[cfg(not(all(feature = "cuda", feature = "vulkan")))]
fn not_built(device: &str) -> String {
    format!("this segstream was built without it: cargo build --release --features {device}")
}

/// Whether the dynamic loader can open `name` (the way the GPU runtimes will).
#[cfg(any(feature = "cuda", feature = "vulkan"))]
fn library_loads(name: &std::ffi::CStr) -> bool {
    // SAFETY: dlopen with a valid C string; the handle is closed at once.
    unsafe {
        let handle = libc::dlopen(name.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL);
        if handle.is_null() {
            return false;
        }
        libc::dlclose(handle);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back() {
        for device in [
            TrainDevice::Cpu,
            TrainDevice::Cuda,
            TrainDevice::Vulkan,
            TrainDevice::Auto,
        ] {
            assert_eq!(device.to_string().parse::<TrainDevice>(), Ok(device));
        }
        assert!("gpu".parse::<TrainDevice>().is_err());
    }
}
