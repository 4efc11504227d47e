//! NF4 4-bit weight codec (bitsandbytes `quant_type="nf4"`, as used by QLoRA), on plain slices.
//!
//! Bit-exact with bitsandbytes' CUDA kernels (`kQuantizeBlockwise` / `dQuantizeNF4`):
//! - the weight is flattened row-major and cut into blocks of [`NF4_BLOCK_SIZE`] values (the last
//!   block may be partial); `absmax[b] = max|x|` in f32;
//! - `scaled = x * (1.0 / absmax)` (reciprocal, then multiply, in f32) and the 4-bit index is the
//!   number of [`NF4_THRESHOLDS`] strictly below `scaled`: a value on a midpoint takes the lower code;
//! - two indices per byte, element `2j` in the **high** nibble; an odd count is padded with the
//!   index of `0.0`;
//! - dequantisation is `NF4_CODE[index] * absmax[block]` in f32.
//!
//! Optional double quantisation ([`DoubleQuantAbsmax`]) stores the absmax in 8 bits with the
//! signed dynamic map of bitsandbytes ([`DYNAMIC_SIGNED_MAP`]).
//!
//! ```
//! use ft_io::nf4::{NF4_CODE, Nf4Tensor, pack_indices};
//!
//! assert_eq!(pack_indices(&[0, 1]), vec![1]);
//! let w = vec![0.5_f32, -1.0, 0.25, 0.0];
//! let q = Nf4Tensor::quantize(&w, &[2, 2], false).unwrap();
//! assert_eq!(q.packed(), [0xC0, 0xA7]); // indices 12, 0, 10, 7
//! assert_eq!(q.dequantize(), vec![NF4_CODE[12], -1.0, NF4_CODE[10], 0.0]);
//! ```

mod bnb;
mod codebook;
mod dequantize;
mod double_quant;
mod dynamic_map;
mod error;
mod quantize;
mod tensor;

pub use bnb::{BnbAbsmax, BnbNf4Parts, BnbQuantState, nf4_from_bnb};
pub use codebook::{NF4_BYTE_LUT, NF4_CODE, NF4_THRESHOLDS, nf4_index, pack_indices, unpack_indices};
pub use dequantize::{dequantize_nf4, dequantize_nf4_into};
pub use double_quant::DoubleQuantAbsmax;
pub use dynamic_map::{DYNAMIC_SIGNED_MAP, dynamic_index, quantize_dynamic_blockwise};
pub use error::Nf4Error;
pub use quantize::{quantize_nf4, quantize_nf4_into};
pub use tensor::{Nf4Absmax, Nf4Tensor, nf4_storage_bytes};

/// Values per NF4 block (one absmax each).
pub const NF4_BLOCK_SIZE: usize = 64;
/// Absmax values per block of the double quantisation (one f32 `absmax2` each).
pub const NESTED_BLOCK_SIZE: usize = 256;
/// Packed bytes per full NF4 block.
pub const NF4_BLOCK_BYTES: usize = NF4_BLOCK_SIZE / 2;
