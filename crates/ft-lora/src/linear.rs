//! The one linear layer every projection of every model uses: a frozen or trainable base
//! weight in PyTorch layout `[out, in]` (dense, or NF4 for QLoRA, see [`LinearBase`]), an optional
//! bias, and an optional LoRA adapter on the activation path,
//! `y = x·Wᵀ + b + scale·dropout(x)·Aᵀ·Bᵀ` (the dense `W + s·B·A` is never built).
//!
//! Adapters are f32 whatever the base's dtype, as PEFT keeps them (`autocast_adapter_dtype`):
//! over a bf16 or f16 base the adapter's input is cast up, the adapter product and the sum are
//! computed in f32, and the sum is cast back to the base's dtype; the gradients of A and B (and so
//! AdamW's moments) are f32.

use burn::module::{Module, Param};

pub use crate::base::{LinearBase, Nf4Weight};
use crate::nf4::Nf4Error;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, FloatDType, Tensor, TensorData};
use ft_kernels::{KernelBackend, LoraWeights, lora_linear, nf4_linear};

/// A LoRA adapter: `A [r, in]`, `B [out, r]` (PEFT's `lora_A` / `lora_B` layout), scaled by
/// `alpha / r` (or `alpha / √r` with rsLoRA).
#[derive(Module, Debug)]
pub struct LoraAdapter<B: Backend> {
    /// `lora_A.weight`, `[r, in]`.
    pub a: Param<Tensor<B, 2>>,
    /// `lora_B.weight`, `[out, r]`.
    pub b: Param<Tensor<B, 2>>,
    /// Dropout on the adapter's input.
    pub dropout: Dropout,
    /// The adapter's scale.
    pub scale: f64,
}

/// How to build a LoRA adapter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoraSpec {
    /// Rank.
    pub r: usize,
    /// Alpha.
    pub alpha: f64,
    /// Dropout probability on the adapter input.
    pub dropout: f64,
    /// rsLoRA scaling (alpha / √r).
    pub use_rslora: bool,
}

impl LoraSpec {
    /// `alpha / r`, or `alpha / √r` with rsLoRA.
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }
}

/// A linear layer: base weight `[out, in]`, optional bias `[out]`, optional LoRA adapter.
#[derive(Module, Debug)]
pub struct FtLinear<B: Backend> {
    /// Base weight, `[out, in]` (PyTorch layout): dense or NF4.
    pub base: LinearBase<B>,
    /// Bias, `[out]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// LoRA adapter on the activation path.
    pub lora: Option<LoraAdapter<B>>,
}

impl<B: Backend> FtLinear<B> {
    /// A layer from its base weight `[out, in]` and optional bias `[out]`.
    pub fn from_weight(weight: Tensor<B, 2>, bias: Option<Tensor<B, 1>>) -> Self {
        Self {
            base: LinearBase::Dense(Param::from_tensor(weight)),
            bias: bias.map(Param::from_tensor),
            lora: None,
        }
    }

    /// A layer over an NF4 base weight (frozen by construction) and an optional bias `[out]`.
    pub fn from_nf4(weight: Nf4Weight<B>, bias: Option<Tensor<B, 1>>) -> Self {
        Self {
            base: LinearBase::Nf4(weight),
            bias: bias.map(|b| Param::from_tensor(b).set_require_grad(false)),
            lora: None,
        }
    }

    /// A zero-initialised layer of the given shape (weights are loaded afterwards).
    pub fn zeros(d_in: usize, d_out: usize, bias: bool, device: &B::Device) -> Self {
        Self::from_weight(
            Tensor::zeros([d_out, d_in], device),
            bias.then(|| Tensor::zeros([d_out], device)),
        )
    }

    /// `(out, in)`.
    pub fn shape(&self) -> (usize, usize) {
        self.base.shape()
    }

    /// Replaces the base by a dense weight `[out, in]` (keeps bias and adapter).
    pub fn set_dense_weight(&mut self, weight: Tensor<B, 2>) {
        self.base = LinearBase::Dense(Param::from_tensor(weight));
    }

    /// The dense base parameter, `None` for an NF4 base.
    pub fn dense_weight(&self) -> Option<&Param<Tensor<B, 2>>> {
        match &self.base {
            LinearBase::Dense(w) => Some(w),
            LinearBase::Nf4(_) => None,
        }
    }

    /// The NF4 base, `None` for a dense base.
    pub fn nf4_weight(&self) -> Option<&Nf4Weight<B>> {
        match &self.base {
            LinearBase::Dense(_) => None,
            LinearBase::Nf4(w) => Some(w),
        }
    }

    /// Freezes the base weight and bias (they get no gradient).
    pub fn freeze_base(mut self) -> Self {
        if let LinearBase::Dense(w) = self.base {
            self.base = LinearBase::Dense(w.set_require_grad(false));
        }
        self.bias = self.bias.map(|b| b.set_require_grad(false));
        self
    }

    /// Quantises a dense base to NF4 in place (bitsandbytes layout, blocks of 64, optionally
    /// double-quantised absmax); the bias is kept (frozen), the adapter untouched. An NF4 base is
    /// left as it is.
    pub fn quantize_base(&mut self, double_quant: bool) -> Result<(), Nf4Error> {
        if let LinearBase::Dense(w) = &self.base {
            let (out, d_in) = self.shape();
            let values = w
                .val()
                .into_data()
                .convert::<f32>()
                .into_vec::<f32>()
                .expect("invariant: converted to f32");
            let device = w.val().device();
            self.base = LinearBase::Nf4(Nf4Weight::quantize(&values, [out, d_in], double_quant, &device)?);
            self.bias = self.bias.take().map(|b| b.set_require_grad(false));
        }
        Ok(())
    }

    /// Attaches a fresh adapter with PEFT's init: A kaiming-uniform(a=√5) = U(−1/√in, 1/√in),
    /// B = 0 (so the layer's output is unchanged). A is drawn on the host from `rng`, so the
    /// same seed gives the same adapter on every backend.
    pub fn with_new_lora(mut self, spec: LoraSpec, rng: &mut impl rand::Rng, device: &B::Device) -> Self {
        self.set_new_lora(spec, rng, device);
        self
    }

    /// In-place [`Self::with_new_lora`] (replaces any adapter).
    pub fn set_new_lora(&mut self, spec: LoraSpec, rng: &mut impl rand::Rng, device: &B::Device) {
        let (out, d_in) = self.shape();
        let bound = 1.0 / (d_in as f32).sqrt();
        let values: Vec<f32> = (0..spec.r * d_in)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        let a = Tensor::from_data(TensorData::new(values, [spec.r, d_in]), (device, DType::F32));
        let b = Tensor::from_data(
            TensorData::new(vec![0f32; out * spec.r], [out, spec.r]),
            (device, DType::F32),
        );
        self.set_lora(a, b, spec.scale(), spec.dropout);
    }

    /// Attaches an adapter with given `A [r, in]` and `B [out, r]`.
    pub fn with_lora(mut self, a: Tensor<B, 2>, b: Tensor<B, 2>, scale: f64, dropout: f64) -> Self {
        self.set_lora(a, b, scale, dropout);
        self
    }

    /// In-place [`Self::with_lora`] (replaces any adapter); A and B are trainable and kept in
    /// f32 (cast up if given in another dtype).
    pub fn set_lora(&mut self, a: Tensor<B, 2>, b: Tensor<B, 2>, scale: f64, dropout: f64) {
        self.lora = Some(LoraAdapter {
            a: Param::from_tensor(into_f32(a)),
            b: Param::from_tensor(into_f32(b)),
            dropout: DropoutConfig::new(dropout).init(),
            scale,
        });
    }
}

impl<B: KernelBackend> FtLinear<B> {
    /// The base weight as a tensor (dequantised for NF4): for merging or comparing.
    ///
    /// # Shapes
    /// - output: `[out, in]`
    pub fn base_weight(&self) -> Tensor<B, 2> {
        self.base.value()
    }

    /// Whether the forward draws random numbers in training (adapter dropout above 0).
    pub fn draws_random(&self) -> bool {
        self.lora.as_ref().is_some_and(|lora| lora.dropout.prob > 0.0)
    }

    /// Applies the layer to the last dimension. With an adapter, the base and adapter products
    /// are one fused op (`ft_kernels::lora_linear`, hand-written backward); an NF4 base is one op
    /// too (`ft_kernels::nf4_linear`), which never keeps the dense weight.
    ///
    /// # Shapes
    /// - input: `[..., in]`
    /// - output: `[..., out]`
    pub fn forward<const D: usize>(&self, input: Tensor<B, D>) -> Tensor<B, D> {
        let dims = input.dims();
        let d_in = dims[D - 1];
        let rows = dims[..D - 1].iter().product::<usize>();
        let x: Tensor<B, 2> = input.reshape([rows, d_in]);
        let x_adapter = match &self.lora {
            Some(lora) => lora.dropout.forward(x.clone()),
            None => x.clone(),
        };
        let mut y = match (&self.base, &self.lora) {
            (base, Some(lora)) if lora.a.val().dtype() != x.dtype() => {
                mixed_precision_lora(base, lora, x, x_adapter)
            }
            (LinearBase::Nf4(weight), lora) => {
                let adapter = lora.as_ref().map(|l| (l.a.val(), l.b.val(), l.scale as f32));
                nf4_linear(x, x_adapter, weight, adapter)
            }
            (LinearBase::Dense(weight), Some(lora)) => {
                let weights = LoraWeights {
                    weight: weight.val(),
                    a: lora.a.val(),
                    b: lora.b.val(),
                    scale: lora.scale as f32,
                };
                lora_linear(x, x_adapter, weights)
            }
            (LinearBase::Dense(weight), None) => x.matmul(weight.val().transpose()),
        };
        if let Some(bias) = &self.bias {
            y = y + bias.val().unsqueeze_dim(0);
        }
        let mut out_dims = dims;
        out_dims[D - 1] = y.dims()[1];
        y.reshape(out_dims)
    }
}

/// `t` in f32 (itself when it already is).
fn into_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, D> {
    if t.dtype() == DType::F32 {
        t
    } else {
        t.cast(FloatDType::F32)
    }
}

/// `x·Wᵀ + s·(x_a·Aᵀ)·Bᵀ` with the base in x's dtype and the adapter in its own (f32), as PEFT
/// computes it: x_a cast to the adapter's dtype, the two products summed there, the sum cast
/// back to x's dtype.
///
/// # Shapes
/// - x, x_adapter: `[rows, in]`
/// - output: `[rows, out]`
fn mixed_precision_lora<B: KernelBackend>(
    base: &LinearBase<B>,
    lora: &LoraAdapter<B>,
    x: Tensor<B, 2>,
    x_adapter: Tensor<B, 2>,
) -> Tensor<B, 2> {
    let compute = x.dtype();
    let base_out = match base {
        LinearBase::Nf4(weight) => nf4_linear(x.clone(), x, weight, None),
        LinearBase::Dense(weight) => x.matmul(weight.val().transpose()),
    };
    let a = lora.a.val();
    let adapter_dtype: FloatDType = a.dtype().into();
    let adapter_out = x_adapter
        .cast(adapter_dtype)
        .matmul(a.transpose())
        .matmul(lora.b.val().transpose())
        .mul_scalar(lora.scale);
    (base_out.cast(adapter_dtype) + adapter_out).cast(FloatDType::from(compute))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Autodiff;
    use burn::tensor::{Distribution, Tolerance};
    use burn_flex::Flex;
    use rand::SeedableRng;

    type B = Flex;

    fn t2(values: &[f32], shape: [usize; 2]) -> Tensor<B, 2> {
        Tensor::from_data(TensorData::new(values.to_vec(), shape), &Default::default())
    }

    #[test]
    fn forward_is_x_times_w_transposed_plus_bias() {
        let layer = FtLinear::from_weight(
            t2(&[1., 2., 3., 4., 5., 6.], [2, 3]),
            Some(Tensor::from_data(
                TensorData::new(vec![0.5f32, -1.0], [2]),
                &Default::default(),
            )),
        );
        let x: Tensor<B, 3> = Tensor::from_data(
            TensorData::new(vec![1f32, 0., 1., 0., 1., 0.], [1, 2, 3]),
            &Default::default(),
        );
        let y = layer.forward(x);
        y.into_data().assert_approx_eq::<f32>(
            &TensorData::new(vec![4.5f32, 9.0, 2.5, 4.0], [1, 2, 2]),
            Tolerance::default(),
        );
    }

    #[test]
    fn lora_equals_merged_weight() {
        let device = Default::default();
        let w = Tensor::<B, 2>::random([5, 4], Distribution::Normal(0.0, 1.0), &device);
        let a = Tensor::<B, 2>::random([2, 4], Distribution::Normal(0.0, 1.0), &device);
        let b = Tensor::<B, 2>::random([5, 2], Distribution::Normal(0.0, 1.0), &device);
        let x = Tensor::<B, 2>::random([3, 4], Distribution::Normal(0.0, 1.0), &device);
        let merged = w.clone() + b.clone().matmul(a.clone()).mul_scalar(0.5);
        let expected = x.clone().matmul(merged.transpose());
        let y = FtLinear::from_weight(w, None)
            .with_lora(a, b, 0.5, 0.0)
            .forward(x);
        y.into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::default());
    }

    #[test]
    fn new_lora_leaves_output_unchanged_and_only_adapter_gets_gradients() {
        type A = Autodiff<Flex>;
        let device = Default::default();
        let w = Tensor::<A, 2>::random([3, 4], Distribution::Normal(0.0, 1.0), &device);
        let base = FtLinear::from_weight(w, None).freeze_base();
        let x = Tensor::<A, 2>::random([2, 4], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let before = base.forward(x.clone()).into_data();
        let spec = LoraSpec {
            r: 2,
            alpha: 4.0,
            dropout: 0.0,
            use_rslora: false,
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let layer = base.with_new_lora(spec, &mut rng, &device);
        let y = layer.forward(x.clone());
        y.clone()
            .into_data()
            .assert_approx_eq::<f32>(&before, Tolerance::default());
        let grads = y.sum().backward();
        let lora = layer.lora.as_ref().unwrap();
        assert!(
            layer.dense_weight().unwrap().val().grad(&grads).is_none(),
            "frozen base has no gradient"
        );
        assert!(lora.b.val().grad(&grads).is_some());
        assert!(x.grad(&grads).is_some(), "gradient flows to the input");
        // A is U(−1/√in, 1/√in), drawn on the host: the same seed gives the same values.
        let a: Vec<f32> = lora.a.val().into_data().into_vec().unwrap();
        assert!(a.iter().all(|v| v.abs() < 0.5) && a.iter().any(|v| *v != 0.0));
        let again = FtLinear::from_weight(Tensor::<A, 2>::zeros([3, 4], &device), None).with_new_lora(
            spec,
            &mut rand_chacha::ChaCha8Rng::seed_from_u64(7),
            &device,
        );
        let a2: Vec<f32> = again
            .lora
            .as_ref()
            .unwrap()
            .a
            .val()
            .into_data()
            .into_vec()
            .unwrap();
        assert_eq!(a, a2);
        assert_eq!(spec.scale(), 2.0);
        assert_eq!(
            LoraSpec {
                use_rslora: true,
                ..spec
            }
            .scale(),
            4.0 / 2f64.sqrt()
        );
    }
}
