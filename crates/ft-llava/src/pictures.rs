//! Reading a dataset's pictures by name (relative to an image folder) into pixel tensors, and
//! one sample with its picture spliced in: what training, held-out losses, sample answers and
//! `ft eval` share.

use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use ft_kernels::KernelBackend;
use ft_model::CausalLm;

use crate::error::{LlavaError, Result};
use crate::image::{ImageProcessor, load_pixels};
use crate::splice::{SpliceSample, SplicedBatch, splice};
use crate::vision::VisionSide;

/// Where a run's pictures are and how they are processed.
#[derive(Debug, Clone)]
pub struct PictureReader {
    /// The vision tower's preprocessing.
    pub processor: ImageProcessor,
    /// The folder relative picture names are in (`[data] image_folder`, `--image-folder`).
    pub folder: Option<PathBuf>,
    /// Pad to a square with the mean colour first (XTuner: stage 2 and chat).
    pub pad: bool,
}

impl PictureReader {
    /// The file of the picture `name`: in the image folder, or as given when absolute.
    pub fn path(&self, name: &str) -> Result<PathBuf> {
        picture_path(self.folder.as_deref(), name)
    }

    /// `[3, side, side]` pixel values of the picture `name`.
    pub fn pixels(&self, name: &str) -> Result<(Vec<f32>, [usize; 3])> {
        load_pixels(&self.path(name)?, &self.processor, self.pad)
    }

    /// The picture `name` as a one-picture batch.
    ///
    /// # Shapes
    /// - output: `[1, 3, side, side]`
    pub fn tensor<B: burn::tensor::backend::Backend>(
        &self,
        name: &str,
        device: &B::Device,
    ) -> Result<Tensor<B, 4>> {
        let (pixels, [c, h, w]) = self.pixels(name)?;
        Ok(Tensor::from_data(TensorData::new(pixels, [1, c, h, w]), device))
    }
}

/// The file of the picture `name`: in `folder`, or as given when absolute.
pub fn picture_path(folder: Option<&Path>, name: &str) -> Result<PathBuf> {
    let given = Path::new(name);
    match folder {
        _ if given.is_absolute() => Ok(given.to_path_buf()),
        Some(folder) => Ok(folder.join(given)),
        None => Err(LlavaError::Input(format!(
            "the picture `{name}` is relative to an image folder, and none is set"
        ))),
    }
}

impl<B: KernelBackend> VisionSide<B> {
    /// One sample (ids with one placeholder, labels) with the rows of `pixels` spliced in.
    ///
    /// # Shapes
    /// - pixels: `[1, 3, side, side]`
    /// - output embeddings: `[1, seq + patches − 1, llm_hidden]`
    pub fn spliced_sample(
        &self,
        llm: &CausalLm<B>,
        pixels: Tensor<B, 4>,
        sample: SpliceSample,
    ) -> Result<SplicedBatch<B>> {
        let rows = self.image_rows(pixels);
        let [_, patches, hidden] = rows.dims();
        splice(llm, &[sample], vec![rows.reshape([patches, hidden])])
    }
}
