//! QLoRA's frozen base on the device: an NF4 weight as device tensors (packed 4-bit codes, the
//! absmax, or its double-quantised codes and statistics), dequantised by a kernel inside
//! [`nf4_linear`], whose backward dequantises again instead of keeping the dense weight. Values
//! equal bitsandbytes' dequantisation: `NF4_CODE[code] · absmax[block]` in f32, with
//! `absmax[b] = DYNAMIC_SIGNED_MAP[code8[b]] · absmax2[b / 256] + offset` when double-quantised.
//!
//! Layout: the codes are bitsandbytes' byte stream (two codes a byte, the first in the high
//! nibble) read as little-endian u32 words, padded to whole blocks of 64; the double-quant codes
//! (one byte a block) likewise, padded to whole words.

pub(crate) mod autodiff;
pub mod composite;
pub(crate) mod cpu;

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{DType, Int, Tensor, TensorData};
use ft_io::nf4::{DoubleQuantAbsmax, NF4_BLOCK_SIZE, NF4_CODE, Nf4Absmax, Nf4Error, Nf4Tensor};

use crate::backend::{KernelBackend, float};

/// An NF4 weight `[rows, cols]` on a device.
#[derive(Module, Debug)]
pub struct Nf4Device<B: Backend> {
    /// The packed codes: u32 words of eight 4-bit codes, `[blocks · 8]`.
    pub codes: Tensor<B, 1, Int>,
    /// The absmax of each block of 64.
    pub absmax: Nf4DeviceAbsmax<B>,
    /// Rows of the weight (`out`).
    pub rows: usize,
    /// Columns of the weight (`in`).
    pub cols: usize,
}

/// The absmax of an [`Nf4Device`] weight.
#[derive(Module, Debug)]
pub enum Nf4DeviceAbsmax<B: Backend> {
    /// One f32 per block, `[blocks]`.
    Full(Tensor<B, 1>),
    /// Double quantisation: one 8-bit code per block and one f32 per 256 blocks.
    Double(DoubleQuantDevice<B>),
}

/// A double-quantised absmax on a device.
#[derive(Module, Debug)]
pub struct DoubleQuantDevice<B: Backend> {
    /// u32 words of four 8-bit codes, `[⌈blocks / 4⌉]`.
    pub codes: Tensor<B, 1, Int>,
    /// One f32 per 256 blocks, `[⌈blocks / 256⌉]`.
    pub absmax2: Tensor<B, 1>,
    /// Added to every recovered absmax.
    pub offset: f32,
}

/// The primitives of an [`Nf4Device`], as the backend ops take them.
#[derive(Debug, Clone)]
pub struct Nf4Primitive<B: Backend> {
    /// See [`Nf4Device::codes`].
    pub codes: IntTensor<B>,
    /// Full absmax `[blocks]`, or the double-quant codes, `absmax2` and offset.
    pub absmax: AbsmaxPrimitive<B>,
    /// `[rows, cols]`.
    pub shape: [usize; 2],
}

/// The primitives of an [`Nf4DeviceAbsmax`].
#[derive(Debug, Clone)]
pub enum AbsmaxPrimitive<B: Backend> {
    /// One f32 per block.
    Full(FloatTensor<B>),
    /// Codes (u32 words of four bytes), `absmax2` and the offset.
    Double(IntTensor<B>, FloatTensor<B>, f32),
}

impl<B: Backend> Nf4Primitive<B> {
    /// Number of blocks of 64.
    pub fn blocks(&self) -> usize {
        (self.shape[0] * self.shape[1]).div_ceil(NF4_BLOCK_SIZE)
    }
}

/// `values` packed as little-endian u32 words, zero-padded to a multiple of `multiple` bytes.
fn words(bytes: &[u8], multiple: usize) -> Vec<u32> {
    let mut padded = bytes.to_vec();
    padded.resize(bytes.len().div_ceil(multiple) * multiple, 0);
    padded
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The first `len` bytes of a tensor of little-endian u32 words.
fn host_bytes<B: Backend>(words: &Tensor<B, 1, Int>, len: usize) -> Vec<u8> {
    let data = words.to_data().convert::<u32>();
    let words = data.as_slice::<u32>().expect("invariant: converted to u32");
    let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    bytes.truncate(len);
    bytes
}

fn host_f32<B: Backend>(values: &Tensor<B, 1>) -> Vec<f32> {
    values
        .to_data()
        .convert::<f32>()
        .to_vec()
        .expect("invariant: converted to f32")
}

fn u32_tensor<B: Backend>(values: Vec<u32>, device: &B::Device) -> Tensor<B, 1, Int> {
    let len = values.len();
    Tensor::from_data(TensorData::new(values, [len]), (device, DType::U32))
}

fn f32_tensor<B: Backend>(values: Vec<f32>, device: &B::Device) -> Tensor<B, 1> {
    let len = values.len();
    Tensor::from_data(TensorData::new(values, [len]), (device, DType::F32))
}

impl<B: Backend> Nf4Device<B> {
    /// Uploads a quantised `[rows, cols]` weight.
    pub fn upload(tensor: &Nf4Tensor, device: &B::Device) -> Result<Self, Nf4Error> {
        let &[rows, cols] = tensor.shape() else {
            return Err(Nf4Error::NotMatrix {
                shape: tensor.shape().to_vec(),
            });
        };
        let codes = u32_tensor(words(tensor.packed(), NF4_BLOCK_SIZE / 2), device);
        let absmax = match tensor.absmax() {
            Nf4Absmax::Full(values) => Nf4DeviceAbsmax::Full(f32_tensor(values.clone(), device)),
            Nf4Absmax::Double(dq) => Nf4DeviceAbsmax::Double(DoubleQuantDevice {
                codes: u32_tensor(words(&dq.codes, 4), device),
                absmax2: f32_tensor(dq.absmax2.clone(), device),
                offset: dq.offset,
            }),
        };
        Ok(Self {
            codes,
            absmax,
            rows,
            cols,
        })
    }

    /// Quantises a row-major `[rows, cols]` weight on the host and uploads it.
    ///
    /// # Shapes
    /// - values: `[rows * cols]`
    pub fn quantize(
        values: &[f32],
        [rows, cols]: [usize; 2],
        double_quant: bool,
        device: &B::Device,
    ) -> Result<Self, Nf4Error> {
        Self::upload(&Nf4Tensor::quantize(values, &[rows, cols], double_quant)?, device)
    }

    /// An all-zero weight (every code is NF4's `0.0`, every absmax 0): a placeholder of the
    /// quantised size, filled by loading.
    pub fn zeros([rows, cols]: [usize; 2], double_quant: bool, device: &B::Device) -> Self {
        let numel = rows * cols;
        let absmax = vec![0.0f32; numel.div_ceil(NF4_BLOCK_SIZE)];
        let absmax = if double_quant {
            Nf4Absmax::Double(DoubleQuantAbsmax::quantize(&absmax))
        } else {
            Nf4Absmax::Full(absmax)
        };
        let zero = NF4_CODE
            .iter()
            .position(|&c| c == 0.0)
            .expect("NF4 has a zero code") as u8;
        let packed = vec![(zero << 4) | zero; numel.div_ceil(2)];
        let tensor = Nf4Tensor::from_parts(packed, absmax, vec![rows, cols])
            .expect("invariant: lengths follow the shape");
        Self::upload(&tensor, device).expect("invariant: a matrix")
    }

    /// `(rows, cols)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// The primitives (shallow copies of the device handles).
    pub fn primitive(&self) -> Nf4Primitive<B> {
        let absmax = match &self.absmax {
            Nf4DeviceAbsmax::Full(a) => AbsmaxPrimitive::Full(a.clone().into_primitive().tensor()),
            Nf4DeviceAbsmax::Double(dq) => AbsmaxPrimitive::Double(
                dq.codes.clone().into_primitive(),
                dq.absmax2.clone().into_primitive().tensor(),
                dq.offset,
            ),
        };
        Nf4Primitive {
            codes: self.codes.clone().into_primitive(),
            absmax,
            shape: [self.rows, self.cols],
        }
    }

    /// Reads the weight back to the host, as bitsandbytes lays it out (padding dropped).
    pub fn to_host(&self) -> Nf4Tensor {
        let numel = self.rows * self.cols;
        let blocks = numel.div_ceil(NF4_BLOCK_SIZE);
        let absmax = match &self.absmax {
            Nf4DeviceAbsmax::Full(a) => Nf4Absmax::Full(host_f32(a)),
            Nf4DeviceAbsmax::Double(dq) => Nf4Absmax::Double(DoubleQuantAbsmax {
                codes: host_bytes(&dq.codes, blocks),
                absmax2: host_f32(&dq.absmax2),
                offset: dq.offset,
            }),
        };
        Nf4Tensor::from_parts(
            host_bytes(&self.codes, numel.div_ceil(2)),
            absmax,
            vec![self.rows, self.cols],
        )
        .expect("invariant: the device parts follow the shape")
    }

    /// Number of weights.
    pub fn numel(&self) -> usize {
        self.rows * self.cols
    }

    /// Bytes held on the device.
    pub fn device_bytes(&self) -> usize {
        let absmax = match &self.absmax {
            Nf4DeviceAbsmax::Full(a) => 4 * a.dims()[0],
            Nf4DeviceAbsmax::Double(dq) => 4 * (dq.codes.dims()[0] + dq.absmax2.dims()[0] + 1),
        };
        4 * self.codes.dims()[0] + absmax
    }
}

/// The dense weight, dequantised on the weight's device.
///
/// # Shapes
/// - output: `[rows, cols]`
pub fn nf4_dequantize<B: KernelBackend>(weight: &Nf4Device<B>) -> Tensor<B, 2> {
    let dtype = <B::FloatElem as burn::tensor::Element>::dtype();
    float(B::nf4_dequantize_as(weight.primitive(), dtype))
}

/// `x · Wᵀ` for an NF4 `W`, plus `scale · (x_adapter · Aᵀ) · Bᵀ` with an adapter `(A, B, scale)`.
/// Under autodiff the dense `W` lives only inside the forward and again inside the backward.
///
/// # Shapes
/// - x, x_adapter: `[rows, in]`; weight `[out, in]`; A `[r, in]`, B `[out, r]`
/// - output: `[rows, out]`
pub fn nf4_linear<B: KernelBackend>(
    x: Tensor<B, 2>,
    x_adapter: Tensor<B, 2>,
    weight: &Nf4Device<B>,
    adapter: Option<(Tensor<B, 2>, Tensor<B, 2>, f32)>,
) -> Tensor<B, 2> {
    let [_, d_in] = x.dims();
    assert_eq!(d_in, weight.cols, "nf4_linear: input width");
    let (adapter, scale) = match adapter {
        Some((a, b, scale)) => (Some([a, b].map(|t| t.into_primitive().tensor())), scale),
        None => (None, 0.0),
    };
    float(B::fused_nf4_linear(
        x.into_primitive().tensor(),
        x_adapter.into_primitive().tensor(),
        weight.primitive(),
        adapter,
        scale,
    ))
}
