//! Opening a GGUF file: header, metadata, tensor infos and the data section.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::cursor::Cursor;
use crate::error::{GgufError, Result};
use crate::ggml_type::GgmlType;
use crate::metadata::Metadata;

/// `general.alignment` when the file does not set it.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// ggml tensors have at most four dimensions.
const MAX_DIMS: u32 = 4;

/// Where one tensor lives and how it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The GGUF name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// ggml dims, **ne\[0\] first** (the fastest-moving axis).
    pub dims: Vec<u64>,
    /// Storage type.
    pub ggml_type: GgmlType,
    /// Offset of the data relative to the data section.
    pub offset: u64,
    /// Size of the data in bytes.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// The PyTorch (row-major) shape: the ggml dims reversed, so a linear weight is `[out, in]`.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// Number of values.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

enum Storage {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Mapped(map) => map,
            Self::Owned(bytes) => bytes,
        }
    }
}

/// A parsed GGUF file (v2 or v3, little-endian) whose tensor data stays memory-mapped.
///
/// Opening validates every structural field, including that each tensor's data lies inside the
/// file, so later reads cannot go out of bounds.
pub struct GgufFile {
    path: PathBuf,
    storage: Storage,
    version: u32,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u64,
    data_offset: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("kv_count", &self.metadata.len())
            .field("tensor_count", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .finish()
    }
}

impl GgufFile {
    /// Memory-maps and parses `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let io = |source| GgufError::Io {
            file: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only and private to this value. As with every mmap-based reader
        // (safetensors, candle, llama.cpp), a file truncated by another process while mapped is
        // outside what the type system can guard against.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Self::parse(path.to_path_buf(), Storage::Mapped(map))
    }

    /// Parses a GGUF held in memory; `name` stands for the file in error messages.
    pub fn from_bytes(name: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<Self> {
        Self::parse(name.into(), Storage::Owned(bytes))
    }

    fn parse(path: PathBuf, storage: Storage) -> Result<Self> {
        let bytes = storage.bytes();
        let mut cur = Cursor::new(&path, bytes);
        let magic = cur.take(4, "magic")?;
        if magic != b"GGUF" {
            return Err(GgufError::BadMagic {
                file: path.clone(),
                found: magic.to_vec(),
            });
        }
        let version = cur.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::UnsupportedVersion {
                file: path.clone(),
                version,
            });
        }
        let tensor_count = cur.u64("tensor_count")?;
        let kv_count = cur.u64("kv_count")?;
        let left = (bytes.len() - cur.position()) as u64;
        // A key/value pair takes at least 13 bytes and a tensor info at least 32: bound the counts
        // by the file size before allocating anything.
        if kv_count.saturating_mul(13) > left || tensor_count.saturating_mul(32) > left {
            return Err(GgufError::Truncated {
                file: path.clone(),
                what: format!("{kv_count} metadata pairs and {tensor_count} tensor infos"),
                offset: cur.position() as u64,
                needed: kv_count
                    .saturating_mul(13)
                    .saturating_add(tensor_count.saturating_mul(32)),
                len: bytes.len() as u64,
            });
        }

        let mut entries = Vec::with_capacity(kv_count as usize);
        for i in 0..kv_count {
            let key = cur.string(&format!("key of metadata pair {i}"))?;
            let type_id = cur.u32(&format!("type of metadata `{key}`"))?;
            let value = cur.value(type_id, &format!("metadata `{key}`"))?;
            entries.push((key, value));
        }
        let metadata = Metadata::new(&path, entries)?;

        let alignment = metadata
            .get_u64("general.alignment")?
            .unwrap_or(DEFAULT_ALIGNMENT);
        if alignment == 0 || !alignment.is_power_of_two() {
            return Err(cur.corrupt(format!(
                "general.alignment is {alignment}, expected a power of two"
            )));
        }

        let mut infos = Vec::with_capacity(tensor_count as usize);
        for i in 0..tensor_count {
            let name = cur.string(&format!("name of tensor {i}"))?;
            let n_dims = cur.u32(&format!("n_dims of tensor `{name}`"))?;
            if n_dims > MAX_DIMS {
                return Err(cur.corrupt(format!(
                    "tensor `{name}` has {n_dims} dims, at most {MAX_DIMS} allowed"
                )));
            }
            let dims = (0..n_dims)
                .map(|_| cur.u64(&format!("dims of tensor `{name}`")))
                .collect::<Result<Vec<_>>>()?;
            let type_id = cur.u32(&format!("type of tensor `{name}`"))?;
            let ggml_type = GgmlType::from_id(type_id)
                .ok_or_else(|| cur.corrupt(format!("tensor `{name}` has unknown ggml type id {type_id}")))?;
            let offset = cur.u64(&format!("offset of tensor `{name}`"))?;
            infos.push((name, dims, ggml_type, offset));
        }

        let header_end = cur.position() as u64;
        let data_offset = header_end.div_ceil(alignment) * alignment;
        let file_len = bytes.len() as u64;
        if data_offset > file_len && tensor_count > 0 {
            return Err(GgufError::Truncated {
                file: path.clone(),
                what: "padding before the data section".to_string(),
                offset: header_end,
                needed: data_offset - header_end,
                len: file_len,
            });
        }

        let mut tensors = Vec::with_capacity(infos.len());
        let mut tensor_index = HashMap::with_capacity(infos.len());
        for (name, dims, ggml_type, offset) in infos {
            let n_bytes = tensor_n_bytes(&name, &dims, ggml_type).map_err(|what| cur.corrupt(what))?;
            if offset % alignment != 0 {
                return Err(cur.corrupt(format!(
                    "tensor `{name}` offset {offset} is not a multiple of the alignment {alignment}"
                )));
            }
            let start = data_offset.checked_add(offset);
            let end = start.and_then(|s| s.checked_add(n_bytes));
            if end.is_none_or(|e| e > file_len) {
                return Err(GgufError::Truncated {
                    file: path.clone(),
                    what: format!("data of tensor `{name}` ({ggml_type}, dims {dims:?})"),
                    offset: start.unwrap_or(u64::MAX),
                    needed: n_bytes,
                    len: file_len,
                });
            }
            if tensor_index.insert(name.clone(), tensors.len()).is_some() {
                return Err(cur.corrupt(format!("tensor `{name}` appears twice")));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
                n_bytes,
            });
        }

        Ok(Self {
            path,
            storage,
            version,
            metadata,
            tensors,
            tensor_index,
            alignment,
            data_offset,
        })
    }

    /// The file's path (or the name given to [`Self::from_bytes`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// All metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// `general.alignment` (default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute byte offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// The info of the tensor with GGUF name `name`.
    pub fn tensor_info(&self, name: &str) -> Result<&TensorInfo> {
        self.tensor_index
            .get(name)
            .map(|&i| &self.tensors[i])
            .ok_or_else(|| GgufError::TensorNotFound {
                file: self.path.clone(),
                name: name.to_string(),
            })
    }

    /// Whether a tensor with GGUF name `name` exists.
    pub fn has_tensor(&self, name: &str) -> bool {
        self.tensor_index.contains_key(name)
    }

    /// The raw stored bytes of tensor `name` (GGUF name).
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8]> {
        let info = self.tensor_info(name)?;
        let start = (self.data_offset + info.offset) as usize;
        // Bounds were checked in `parse`.
        Ok(&self.storage.bytes()[start..start + info.n_bytes as usize])
    }

    /// Tensor `name` (GGUF name) dequantised to f32, with its PyTorch shape (ggml dims reversed).
    /// No renaming and no un-permuting: see [`Self::tensor_f32`] for HF layout.
    ///
    /// # Shapes
    /// - output: `(values, shape)` with `values.len() == shape.iter().product()`
    pub fn gguf_tensor_f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let info = self.tensor_info(name)?;
        if !info.ggml_type.can_dequantize() {
            return Err(GgufError::UnsupportedTensorType {
                file: self.path.clone(),
                name: name.to_string(),
                ggml_type: info.ggml_type.name().to_string(),
            });
        }
        let bytes = self.tensor_bytes(name)?;
        let values = crate::dequant::dequantize(info.ggml_type, bytes, info.n_elements() as usize)
            .expect("invariant: type is dequantisable and the byte count was checked in parse");
        Ok((values, info.shape()))
    }
}

/// Bytes a tensor of `dims` and `ggml_type` occupies; `Err` describes an impossible geometry.
fn tensor_n_bytes(name: &str, dims: &[u64], ggml_type: GgmlType) -> std::result::Result<u64, String> {
    let (block_values, block_bytes) = ggml_type.block_geometry();
    let first = dims.first().copied().unwrap_or(1);
    if first % block_values != 0 {
        return Err(format!(
            "tensor `{name}`: ne[0] = {first} is not a multiple of the {ggml_type} block size {block_values}"
        ));
    }
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= isize::MAX as u64 / 4)
        .ok_or_else(|| format!("tensor `{name}`: dims {dims:?} overflow"))?;
    (n_elements / block_values)
        .checked_mul(block_bytes)
        .ok_or_else(|| format!("tensor `{name}`: byte size overflows"))
}
