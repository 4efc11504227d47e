//! The multimodal splice, as XTuner's `prepare_inputs_labels_for_multimodal` does it: each
//! sample's text is embedded around its image placeholder (`IMAGE_TOKEN_INDEX`), the image's
//! projected rows take the placeholder's place (labels −100), and the batch is right-padded
//! with zero embeddings, label −100 and mask 0. Positions run 0…L−1 over the spliced rows.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use ft_data::encode::IMAGE_TOKEN_INDEX;
use ft_kernels::KernelBackend;
use ft_model::loss::IGNORE_INDEX;
use ft_model::{CausalLm, ModelInput};

use crate::error::{LlavaError, Result};

/// One sample before the splice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpliceSample {
    /// Token ids; at most one `IMAGE_TOKEN_INDEX`.
    pub input_ids: Vec<i32>,
    /// Labels, as long as `input_ids`.
    pub labels: Vec<i32>,
}

/// A spliced batch, ready for the LLM.
pub struct SplicedBatch<B: Backend> {
    /// `[batch, seq, hidden]`.
    pub embeddings: Tensor<B, 3>,
    /// The shape, padding mask and positions (its ids are placeholders).
    pub input: ModelInput,
    /// `[batch · seq]` labels.
    pub labels: Vec<i32>,
}

/// Splices `images` (one `[patches, hidden]` tensor per sample that holds a placeholder, in
/// order) into the samples' text embeddings.
pub fn splice<B: KernelBackend>(
    llm: &CausalLm<B>,
    samples: &[SpliceSample],
    images: Vec<Tensor<B, 2>>,
) -> Result<SplicedBatch<B>> {
    let wanted = samples
        .iter()
        .filter(|s| s.input_ids.contains(&IMAGE_TOKEN_INDEX))
        .count();
    if wanted != images.len() {
        return Err(LlavaError::Input(format!(
            "{wanted} samples hold an image placeholder but {} images were given",
            images.len()
        )));
    }
    let mut images = images.into_iter();
    let mut rows = Vec::with_capacity(samples.len());
    let mut labels = Vec::with_capacity(samples.len());
    for (k, sample) in samples.iter().enumerate() {
        let (row, row_labels) = splice_one(llm, sample, || images.next(), k)?;
        rows.push(row);
        labels.push(row_labels);
    }
    let seq = labels.iter().map(Vec::len).max().unwrap_or(0);
    let mut mask = Vec::with_capacity(samples.len() * seq);
    let mut padded_labels = Vec::with_capacity(samples.len() * seq);
    let padded: Vec<Tensor<B, 3>> = rows
        .into_iter()
        .zip(&labels)
        .map(|(row, row_labels)| {
            let [len, hidden] = row.dims();
            mask.extend((0..seq).map(|i| i32::from(i < len)));
            padded_labels.extend(
                row_labels
                    .iter()
                    .copied()
                    .chain(std::iter::repeat_n(IGNORE_INDEX, seq - len)),
            );
            let row = if len < seq {
                let zeros = Tensor::<B, 2>::zeros([seq - len, hidden], &row.device()).cast(row.dtype());
                Tensor::cat(vec![row, zeros], 0)
            } else {
                row
            };
            row.unsqueeze_dim::<3>(0)
        })
        .collect();
    let batch = samples.len();
    let input = ModelInput {
        batch,
        seq,
        input_ids: vec![0; batch * seq],
        attention_mask: mask.contains(&0).then_some(mask),
        position_ids: None,
        segment_ids: None,
    };
    Ok(SplicedBatch {
        embeddings: Tensor::cat(padded, 0),
        input,
        labels: padded_labels,
    })
}

/// The LLM rows of text `before`, a picture's `image` rows and text `after`.
///
/// # Shapes
/// - image: `[patches, hidden]`
/// - output: `[before + patches + after, hidden]`
pub fn rows_with_image<B: KernelBackend>(
    llm: &CausalLm<B>,
    before: &[u32],
    image: Tensor<B, 2>,
    after: &[u32],
) -> Tensor<B, 2> {
    let dtype = image.dtype();
    let text = |ids: &[u32]| (!ids.is_empty()).then(|| llm.embed_ids(ids).cast(dtype));
    let parts: Vec<Tensor<B, 2>> = [text(before), Some(image), text(after)]
        .into_iter()
        .flatten()
        .collect();
    Tensor::cat(parts, 0)
}

/// One sample's rows `[len, hidden]` and labels.
fn splice_one<B: KernelBackend>(
    llm: &CausalLm<B>,
    sample: &SpliceSample,
    next_image: impl FnOnce() -> Option<Tensor<B, 2>>,
    index: usize,
) -> Result<(Tensor<B, 2>, Vec<i32>)> {
    let (ids, labels) = (&sample.input_ids, &sample.labels);
    if ids.len() != labels.len() {
        return Err(LlavaError::Input(format!(
            "sample {index}: input_ids and labels differ in length"
        )));
    }
    let places: Vec<usize> = ids
        .iter()
        .enumerate()
        .filter(|(_, i)| **i == IMAGE_TOKEN_INDEX)
        .map(|(p, _)| p)
        .collect();
    let text_ids = |range: &[i32]| -> Result<Vec<u32>> {
        range
            .iter()
            .map(|&i| {
                u32::try_from(i).map_err(|_| LlavaError::Input(format!("sample {index}: token id {i}")))
            })
            .collect()
    };
    match places.as_slice() {
        [] if ids.is_empty() => Err(LlavaError::Input(format!("sample {index} is empty"))),
        [] => Ok((llm.embed_ids(&text_ids(ids)?), labels.clone())),
        [at] => {
            let image = next_image().expect("invariant: images were counted against placeholders");
            let patches = image.dims()[0];
            let rows = rows_with_image(llm, &text_ids(&ids[..*at])?, image, &text_ids(&ids[at + 1..])?);
            let mut spliced_labels = labels[..*at].to_vec();
            spliced_labels.extend(std::iter::repeat_n(IGNORE_INDEX, patches));
            spliced_labels.extend_from_slice(&labels[at + 1..]);
            Ok((rows, spliced_labels))
        }
        more => Err(LlavaError::Input(format!(
            "sample {index} holds {} image placeholders; one image per sample is supported",
            more.len()
        ))),
    }
}
