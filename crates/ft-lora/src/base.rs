//! The base weight of an [`crate::linear::FtLinear`]: dense (a Burn [`Param`]) or NF4 (packed 4-bit
//! codes on the host, dequantised for each forward and dropped afterwards).

use std::sync::Arc;

use burn::module::{
    AutodiffModule, Content, Devices, EmptyRecord, Module, ModuleDisplay, ModuleDisplayDefault, ModuleMapper,
    ModuleVisitor, Param,
};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};

use crate::nf4::{DoubleQuantAbsmax, NF4_BLOCK_SIZE, NF4_CODE, Nf4Absmax, Nf4Error, Nf4Tensor};

/// The index of `0.0` in [`NF4_CODE`].
const ZERO_INDEX: u8 = 7;
const _: () = assert!(NF4_CODE[ZERO_INDEX as usize] == 0.0);

/// A frozen NF4 base weight `[out, in]`: the packed codes and scales stay on the host (shared, so
/// cloning the module does not copy them); each forward builds the dense f32 weight on the input's
/// device, and nothing dense is kept once the step's graph is dropped.
///
/// It is a constant of the module tree: no parameters, an empty record, no gradient.
#[derive(Debug, Clone)]
pub struct Nf4Weight {
    tensor: Arc<Nf4Tensor>,
}

impl Nf4Weight {
    /// Wraps a quantised `[out, in]` weight.
    pub fn new(tensor: Nf4Tensor) -> Result<Self, Nf4Error> {
        if tensor.shape().len() != 2 {
            return Err(Nf4Error::NotMatrix {
                shape: tensor.shape().to_vec(),
            });
        }
        Ok(Self {
            tensor: Arc::new(tensor),
        })
    }

    /// Quantises a row-major `[out, in]` weight.
    ///
    /// # Shapes
    /// - values: `[out * in]`
    pub fn quantize(values: &[f32], out: usize, d_in: usize, double_quant: bool) -> Result<Self, Nf4Error> {
        Self::new(Nf4Tensor::quantize(values, &[out, d_in], double_quant)?)
    }

    /// An all-zero weight (every code is NF4's `0.0`, every absmax 0): a placeholder that takes
    /// the quantised size only.
    pub fn zeros(out: usize, d_in: usize, double_quant: bool) -> Self {
        let numel = out * d_in;
        let absmax = vec![0.0f32; numel.div_ceil(NF4_BLOCK_SIZE)];
        let absmax = if double_quant {
            Nf4Absmax::Double(DoubleQuantAbsmax::quantize(&absmax))
        } else {
            Nf4Absmax::Full(absmax)
        };
        let zero_pair = (ZERO_INDEX << 4) | ZERO_INDEX;
        let tensor = Nf4Tensor::from_parts(vec![zero_pair; numel.div_ceil(2)], absmax, vec![out, d_in])
            .expect("invariant: lengths follow the shape");
        Self {
            tensor: Arc::new(tensor),
        }
    }

    /// The packed tensor.
    pub fn nf4(&self) -> &Nf4Tensor {
        &self.tensor
    }

    /// `(out, in)`.
    pub fn shape(&self) -> (usize, usize) {
        let s = self.tensor.shape();
        (s[0], s[1])
    }

    /// Bytes held by the packed codes and scales.
    pub fn storage_bytes(&self) -> usize {
        self.tensor.storage_bytes()
    }

    /// The dequantised weight as a new (non-trainable) tensor on `device`.
    ///
    /// # Shapes
    /// - output: `[out, in]`
    pub fn dequantize<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2> {
        let (out, d_in) = self.shape();
        let values = self.tensor.dequantize();
        Tensor::from_data(TensorData::new(values, [out, d_in]), device)
    }
}

impl<B: Backend> Module<B> for Nf4Weight {
    type Record = EmptyRecord;

    fn visit<V: ModuleVisitor<B>>(&self, _visitor: &mut V) {}

    fn map<M: ModuleMapper<B>>(self, _mapper: &mut M) -> Self {
        self
    }

    fn load_record(self, _record: Self::Record) -> Self {
        self
    }

    fn into_record(self) -> Self::Record {
        EmptyRecord::new()
    }

    fn to_device(self, _device: &B::Device) -> Self {
        self
    }

    fn fork(self, _device: &B::Device) -> Self {
        self
    }

    fn collect_devices(&self, devices: Devices<B>) -> Devices<B> {
        devices
    }
}

impl<B: AutodiffBackend> AutodiffModule<B> for Nf4Weight {
    type InnerModule = Nf4Weight;

    fn valid(&self) -> Self::InnerModule {
        self.clone()
    }

    fn from_inner(module: Self::InnerModule) -> Self {
        module
    }
}

impl ModuleDisplayDefault for Nf4Weight {
    fn content(&self, content: Content) -> Option<Content> {
        let (out, d_in) = self.shape();
        content
            .add_formatted(&format!(
                "Nf4Weight {{ shape: [{out}, {d_in}], bytes: {} }}",
                self.storage_bytes()
            ))
            .optional()
    }
}

impl ModuleDisplay for Nf4Weight {}

/// The base weight `[out, in]` of a linear layer.
#[derive(Module, Debug)]
pub enum LinearBase<B: Backend> {
    /// A dense f32 parameter (trainable unless frozen).
    Dense(Param<Tensor<B, 2>>),
    /// A frozen NF4 weight on the host.
    Nf4(Nf4Weight),
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

    /// The weight to multiply with: the parameter's value, or a freshly dequantised tensor on
    /// `device` (the device of the dense case is the parameter's own).
    ///
    /// # Shapes
    /// - output: `[out, in]`
    pub fn value(&self, device: &B::Device) -> Tensor<B, 2> {
        match self {
            Self::Dense(w) => w.val(),
            Self::Nf4(w) => w.dequantize(device),
        }
    }
}
