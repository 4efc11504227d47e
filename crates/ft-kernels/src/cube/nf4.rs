//! NF4 dequantisation as one CubeCL kernel: one unit per packed word (eight codes), each code
//! looked up in the NF4 codebook and scaled by its block's absmax in f32, then stored in the
//! requested dtype. A double-quantised absmax (one value per block of 64, so 1/64 of the work)
//! is recovered first by the composite ops: its multiply and add must stay two roundings, as
//! bitsandbytes computes them, and a GPU compiler may contract them into one fused multiply-add
//! inside a kernel.

use burn::tensor::ops::FloatTensorOps;
use burn::tensor::{DType, FloatDType, TensorData};
use burn_cubecl::element::BoolElement;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{CubeBackend, CubeRuntime, FloatElement, IntElement};
use cubecl::prelude::*;
use ft_io::nf4::{NF4_BLOCK_SIZE, NF4_CODE};

use super::{elementwise, empty};
use crate::nf4::{Nf4Primitive, composite};

#[cube(launch)]
fn dequantize_kernel<F: Float, C: Int>(
    codes: &Tensor<C>,
    absmax: &Tensor<f32>,
    codebook: &Tensor<f32>,
    out: &mut Tensor<F>,
    #[define(F, C)] _dtypes: [StorageType; 2],
) {
    let word = ABSOLUTE_POS;
    if word >= codes.len() {
        terminate!();
    }
    let packed = u32::cast_from(codes[word]);
    let first = word * 8;
    let scale = absmax[first / 64];
    let total = out.len();
    #[unroll]
    for field in 0..8u32 {
        // bitsandbytes' byte stream: the high nibble of each byte first.
        let shift = comptime!(8 * (field / 2) + if field % 2 == 0 { 4 } else { 0 });
        let code = (packed >> shift) & 15u32;
        let at = first + field as usize;
        if at < total {
            out[at] = F::cast_from(codebook[code as usize] * scale);
        }
    }
}

/// The dense weight of `weight` in `dtype`.
///
/// # Shapes
/// - output: `weight.shape`
pub(super) fn dequantize<R, F, I, BT>(
    weight: Nf4Primitive<CubeBackend<R, F, I, BT>>,
    dtype: DType,
) -> CubeTensor<R>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    type B<R, F, I, BT> = CubeBackend<R, F, I, BT>;
    let codes = into_contiguous(weight.codes.clone());
    let device = codes.device.clone();
    let blocks = weight.blocks();
    debug_assert_eq!(blocks * NF4_BLOCK_SIZE, codes.meta.num_elements() * 8);
    let absmax = composite::absmax::<B<R, F, I, BT>>(weight.absmax, blocks, &device)
        .into_primitive()
        .tensor();
    let absmax = into_contiguous(match absmax.dtype {
        DType::F32 => absmax,
        _ => B::<R, F, I, BT>::float_cast(absmax, FloatDType::F32),
    });
    let codebook =
        B::<R, F, I, BT>::float_from_data(TensorData::new(NF4_CODE.to_vec(), [NF4_CODE.len()]), &device);
    let out = empty(&codes, &weight.shape, dtype);
    let (cube_count, cube_dim) = elementwise(&codes, codes.meta.num_elements());
    let dtypes = [dtype.into(), codes.dtype.into()];
    let client = codes.client.clone();
    dequantize_kernel::launch::<R>(
        &client,
        cube_count,
        cube_dim,
        codes.into_tensor_arg(),
        absmax.into_tensor_arg(),
        codebook.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        dtypes,
    );
    out
}
