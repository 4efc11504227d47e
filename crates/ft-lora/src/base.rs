//! The base weight of an [`crate::linear::FtLinear`]: dense (a Burn [`Param`]) or NF4 (packed
//! 4-bit codes and scales as device tensors, dequantised by a kernel inside each forward and
//! again in backward; see [`ft_kernels::nf4`]).

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use ft_kernels::{KernelBackend, nf4_dequantize};

/// A frozen NF4 base weight `[out, in]` on the device: a constant of the module tree (no
/// parameters, an empty record, no gradient).
pub type Nf4Weight<B> = ft_kernels::Nf4Device<B>;

/// The base weight `[out, in]` of a linear layer.
#[derive(Module, Debug)]
pub enum LinearBase<B: Backend> {
    /// A dense parameter (trainable unless frozen).
    Dense(Param<Tensor<B, 2>>),
    /// A frozen NF4 weight on the device.
    Nf4(Nf4Weight<B>),
}

impl<B: Backend> LinearBase<B> {
    /// `(out, in)`.
    pub fn shape(&self) -> (usize, usize) {
        match self {
            Self::Dense(w) => {
                let [out, d_in] = w.dims();
                (out, d_in)
            }
            Self::Nf4(w) => w.shape(),
        }
    }
}

impl<B: KernelBackend> LinearBase<B> {
    /// The weight to multiply with: the parameter's value, or the dequantised NF4 weight (a new
    /// tensor on the weight's device, in the backend's float dtype).
    ///
    /// # Shapes
    /// - output: `[out, in]`
    pub fn value(&self) -> Tensor<B, 2> {
        match self {
            Self::Dense(w) => w.val(),
            Self::Nf4(w) => nf4_dequantize(w),
        }
    }
}
