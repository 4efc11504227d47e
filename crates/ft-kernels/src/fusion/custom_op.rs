//! One fused op as a custom operation of Burn's `Fusion` stream: the inputs are registered (so
//! fusion flushes what produces them first), the outputs are declared with their shapes and
//! dtypes, and when the stream reaches the op it runs the wrapped backend's kernel on the
//! inputs' handles and registers the results under the declared ids.

use std::fmt;
use std::sync::Arc;

use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{DType, Shape, TensorMetadata};
use burn_fusion::stream::{Operation, OperationStreams};
use burn_fusion::{FusionBackend, FusionRuntime, FusionTensor};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, TensorIr};

/// The wrapped backend's handles, by tensor id.
type Handles<B> = HandleContainer<<<B as FusionBackend>::FusionRuntime as FusionRuntime>::FusionHandle>;

/// A tensor of the `Fusion` wrapper over `B`.
pub(super) type Wrapped<B> = FusionTensor<<B as FusionBackend>::FusionRuntime>;

/// The op's inputs on the wrapped backend, taken in the order they were given to [`launch`].
pub(super) struct Inputs<'a, B: FusionBackend> {
    irs: std::slice::Iter<'a, TensorIr>,
    handles: &'a mut Handles<B>,
}

impl<B: FusionBackend> Inputs<'_, B> {
    fn next_ir(&mut self) -> TensorIr {
        self.irs
            .next()
            .expect("invariant: a custom op reads as many inputs as it registered")
            .clone()
    }

    /// The next input, a float tensor.
    pub(super) fn float(&mut self) -> FloatTensor<B> {
        let ir = self.next_ir();
        self.handles.get_float_tensor::<B>(&ir)
    }

    /// The next `N` inputs, float tensors.
    pub(super) fn floats<const N: usize>(&mut self) -> [FloatTensor<B>; N] {
        std::array::from_fn(|_| self.float())
    }

    /// The next input, an int tensor.
    pub(super) fn int(&mut self) -> IntTensor<B> {
        let ir = self.next_ir();
        self.handles.get_int_tensor::<B>(&ir)
    }
}

/// What the op runs: the wrapped backend's kernel, from its inputs to its outputs in the
/// declared order.
type Kernel<B> = dyn Fn(&mut Inputs<'_, B>) -> Vec<FloatTensor<B>> + Send + Sync;

/// The operation the stream holds until it runs it.
struct KernelOp<B: FusionBackend> {
    desc: CustomOpIr,
    kernel: Arc<Kernel<B>>,
}

impl<B: FusionBackend> fmt::Debug for KernelOp<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelOp").field("desc", &self.desc).finish()
    }
}

impl<B: FusionBackend> Operation<B::FusionRuntime> for KernelOp<B> {
    fn execute(&self, handles: &mut Handles<B>) {
        let mut inputs = Inputs {
            irs: self.desc.inputs.iter(),
            handles,
        };
        let results = (self.kernel)(&mut inputs);
        assert_eq!(
            results.len(),
            self.desc.outputs.len(),
            "invariant: {} returns each output it declared",
            self.desc.id
        );
        for (declared, result) in self.desc.outputs.iter().zip(results) {
            let result = as_declared::<B>(&self.desc.id, declared, result);
            handles.register_float_tensor::<B>(&declared.id, result);
        }
    }
}

/// `result` in the declared dtype (a backend may keep a product in its own float type); its
/// shape must be the declared one.
fn as_declared<B: FusionBackend>(op: &str, declared: &TensorIr, result: FloatTensor<B>) -> FloatTensor<B> {
    assert_eq!(
        result.shape(),
        declared.shape,
        "invariant: {op} returns the shape it declared"
    );
    if result.dtype() == declared.dtype {
        result
    } else {
        B::float_cast(result, declared.dtype.into())
    }
}

/// Registers `kernel` on `inputs`' stream as the custom op `name` with outputs of the given
/// shapes and dtypes, and returns those outputs (computed when the stream runs the op).
pub(super) fn launch<B, K>(
    name: &'static str,
    inputs: Vec<Wrapped<B>>,
    outputs: &[(Shape, DType)],
    kernel: K,
) -> Vec<Wrapped<B>>
where
    B: FusionBackend,
    K: Fn(&mut Inputs<'_, B>) -> Vec<FloatTensor<B>> + Send + Sync + 'static,
{
    let client = inputs
        .first()
        .expect("invariant: every fused op has an input")
        .client
        .clone();
    let streams = OperationStreams::with_inputs(&inputs);
    let outputs: Vec<TensorIr> = outputs
        .iter()
        .map(|(shape, dtype)| TensorIr::uninit(client.create_empty_handle(), shape.clone(), *dtype))
        .collect();
    let inputs: Vec<TensorIr> = inputs.into_iter().map(FusionTensor::into_ir).collect();
    let desc = CustomOpIr::new(name, &inputs, &outputs);
    let op = KernelOp::<B> {
        desc: desc.clone(),
        kernel: Arc::new(kernel),
    };
    client.register(streams, OperationIr::Custom(desc), op)
}

/// [`launch`] for an op with one output.
pub(super) fn launch_one<B, K>(
    name: &'static str,
    inputs: Vec<Wrapped<B>>,
    output: (Shape, DType),
    kernel: K,
) -> Wrapped<B>
where
    B: FusionBackend,
    K: Fn(&mut Inputs<'_, B>) -> FloatTensor<B> + Send + Sync + 'static,
{
    let [out] = fixed(launch::<B, _>(name, inputs, &[output], move |inputs| {
        vec![kernel(inputs)]
    }));
    out
}

/// The outputs of [`launch`] as an array.
pub(super) fn fixed<T, const N: usize>(outputs: Vec<T>) -> [T; N] {
    outputs
        .try_into()
        .unwrap_or_else(|_| panic!("invariant: a custom op returns the {N} outputs it declared"))
}

/// The shape and dtype of `tensor`, for an output declared like it.
pub(super) fn like<B: FusionBackend>(tensor: &Wrapped<B>) -> (Shape, DType) {
    (tensor.shape.clone(), tensor.dtype)
}
