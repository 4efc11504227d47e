//! Run-time choice of backend and dtype (`--device auto|cuda|wgpu|cpu`, `--dtype`): the one place
//! where backend types are named; everything else is generic over `B: KernelBackend`.

use clap::ValueEnum;
use ft_model::KernelBackend;

/// Where to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceKind {
    /// CUDA if a GPU answers, else wgpu, else the CPU.
    Auto,
    /// NVIDIA GPU (build with `--features cuda`).
    Cuda,
    /// Any GPU through wgpu (build with `--features wgpu`).
    Wgpu,
    /// Burn's flex CPU backend.
    Cpu,
}

/// Compute dtype of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// bfloat16.
    Bf16,
    /// IEEE half.
    F16,
}

/// Work to run on whichever backend is chosen.
pub trait BackendTask {
    /// What the work returns.
    type Output;
    /// Runs on backend `B`; `label` names the device and dtype for logs.
    fn run<B: KernelBackend>(self, device: B::Device, label: &str) -> anyhow::Result<Self::Output>;
}

/// Work to run on several devices of one backend (the peers of a data-parallel run).
pub trait BackendPeersTask {
    /// What the work returns.
    type Output;
    /// Runs on backend `B` over `devices` (one or more); `label` names the backend and dtype.
    fn run<B: KernelBackend>(self, devices: Vec<B::Device>, label: &str) -> anyhow::Result<Self::Output>;
}

/// A one-device task seen as a task over several devices (it takes the first).
struct OnFirst<T>(T);

impl<T: BackendTask> BackendPeersTask for OnFirst<T> {
    type Output = T::Output;
    fn run<B: KernelBackend>(self, devices: Vec<B::Device>, label: &str) -> anyhow::Result<T::Output> {
        let device = devices
            .into_iter()
            .next()
            .expect("invariant: one device at least");
        self.0.run::<B>(device, label)
    }
}

/// Runs `task` on the requested device and dtype. The CPU backend computes in f32: a bf16/f16
/// request there is converted (with a note), never a crash.
pub fn dispatch<T: BackendTask>(kind: DeviceKind, dtype: DType, task: T) -> anyhow::Result<T::Output> {
    dispatch_peers(kind, dtype, &[0], OnFirst(task))
}

/// Runs `task` on devices `indices` of the requested kind (`cuda:I`, `wgpu:I`; on the CPU every
/// index is the one CPU device) and dtype.
pub fn dispatch_peers<T: BackendPeersTask>(
    kind: DeviceKind,
    dtype: DType,
    indices: &[usize],
    task: T,
) -> anyhow::Result<T::Output> {
    let kind = resolve(kind)?;
    match kind {
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => {
            let devices = indices
                .iter()
                .map(|&i| burn::backend::cuda::CudaDevice { index: i })
                .collect();
            match dtype {
                DType::F32 => task.run::<burn::backend::Cuda<f32>>(devices, &gpu_label("cuda f32")),
                DType::Bf16 => {
                    task.run::<burn::backend::Cuda<burn::tensor::bf16>>(devices, &gpu_label("cuda bf16"))
                }
                DType::F16 => {
                    task.run::<burn::backend::Cuda<burn::tensor::f16>>(devices, &gpu_label("cuda f16"))
                }
            }
        }
        #[cfg(feature = "wgpu")]
        DeviceKind::Wgpu => {
            if dtype != DType::F32 {
                tracing::warn!("wgpu runs in f32 here; {dtype:?} weights are converted");
            }
            let devices = match indices {
                [_] => vec![Default::default()],
                _ => indices
                    .iter()
                    .map(|&i| burn::backend::wgpu::WgpuDevice::DiscreteGpu(i))
                    .collect(),
            };
            task.run::<burn::backend::Wgpu>(devices, &gpu_label("wgpu f32"))
        }
        _ => {
            if dtype != DType::F32 {
                tracing::info!("the CPU backend computes in f32; {dtype:?} weights are converted");
            }
            let devices = indices.iter().map(|_| Default::default()).collect();
            task.run::<burn_flex::Flex>(devices, "cpu f32")
        }
    }
}

fn resolve(kind: DeviceKind) -> anyhow::Result<DeviceKind> {
    match kind {
        DeviceKind::Auto => {
            if cfg!(feature = "cuda") && gpu_answers() {
                Ok(DeviceKind::Cuda)
            } else if cfg!(feature = "wgpu") {
                Ok(DeviceKind::Wgpu)
            } else {
                Ok(DeviceKind::Cpu)
            }
        }
        DeviceKind::Cuda if !cfg!(feature = "cuda") => {
            anyhow::bail!(
                "this ft was built without CUDA; rebuild with `--features cuda` or use --device cpu"
            )
        }
        DeviceKind::Wgpu if !cfg!(feature = "wgpu") => {
            anyhow::bail!(
                "this ft was built without wgpu; rebuild with `--features wgpu` or use --device cpu"
            )
        }
        other => Ok(other),
    }
}

/// The bytes the backend's memory pool has reserved on `device` now (what
/// `torch.cuda.memory_reserved` reports: live tensors plus the pool's free pages, which it keeps);
/// `None` on the CPU, whose memory is the process's RSS.
pub fn device_memory_reserved<D: 'static>(device: &D) -> Option<u64> {
    let device = device as &dyn std::any::Any;
    #[cfg(feature = "cuda")]
    if let Some(cuda) = device.downcast_ref::<burn::backend::cuda::CudaDevice>() {
        use burn::cubecl::Runtime;
        let client = burn::cubecl::cuda::CudaRuntime::client(cuda);
        return client.memory_usage().ok().map(|usage| usage.bytes_reserved);
    }
    #[cfg(feature = "wgpu")]
    if let Some(wgpu) = device.downcast_ref::<burn::backend::wgpu::WgpuDevice>() {
        use burn::cubecl::Runtime;
        let client = burn::backend::wgpu::WgpuRuntime::client(wgpu);
        return client.memory_usage().ok().map(|usage| usage.bytes_reserved);
    }
    let _ = device;
    None
}

/// Whether an NVIDIA GPU is visible (driver device nodes present).
fn gpu_answers() -> bool {
    std::path::Path::new("/dev/nvidiactl").exists() || std::path::Path::new("/dev/nvidia0").exists()
}

/// A GPU backend's name in logs and bench output, marked `+fusion` when built with Burn's kernel
/// fusion (the `fusion` feature).
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn gpu_label(backend_and_dtype: &str) -> String {
    match cfg!(feature = "fusion") {
        true => format!("{backend_and_dtype} +fusion"),
        false => backend_and_dtype.to_owned(),
    }
}
