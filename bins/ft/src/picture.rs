//! A LLaVA prompt's picture: the placeholder widened to the rows the picture takes, those rows
//! given ids outside the vocabulary derived from the pixels (so a later prompt with the same
//! picture, the next turn of a conversation, reuses the cached rows and another picture never
//! does), and feeding such a prompt to a KV session as input embeddings.

use burn::tensor::{Tensor, TensorData};
use ft_data::encode::IMAGE_TOKEN_INDEX;
use ft_llava::{VisionSide, rows_with_image};
use ft_model::session::KvSession;
use ft_model::{CausalLm, KernelBackend};

/// First id of the picture rows' range (never a vocabulary id).
const PICTURE_ROW_IDS: u32 = 0x8000_0000;

/// A processed picture and where its rows sit in the prompt.
#[derive(Debug, Clone)]
pub struct PictureRows {
    /// `[3, side, side]` pixel values.
    pub pixels: Vec<f32>,
    /// Their shape.
    pub shape: [usize; 3],
    /// Where its rows start in the prompt.
    pub at: usize,
    /// How many rows it takes.
    pub rows: usize,
}

/// The prompt of rendered `ids` (one `IMAGE_TOKEN_INDEX` where the picture goes) with the
/// placeholder widened to `rows` picture-row ids; and where they are.
pub fn widen_placeholder(
    ids: &[i32],
    pixels: Vec<f32>,
    shape: [usize; 3],
    rows: usize,
) -> Result<(Vec<u32>, PictureRows), String> {
    let at = ids
        .iter()
        .position(|&i| i == IMAGE_TOKEN_INDEX)
        .ok_or("the template dropped the picture's place")?;
    let first_row = PICTURE_ROW_IDS | (fingerprint(&pixels) & 0x7fff_0000);
    let mut prompt = Vec::with_capacity(ids.len() + rows);
    for (k, &id) in ids.iter().enumerate() {
        if k == at {
            prompt.extend((0..rows as u32).map(|r| first_row | (r & 0xffff)));
        } else {
            prompt
                .push(u32::try_from(id).map_err(|_| "one picture per conversation is supported".to_owned())?);
        }
    }
    Ok((
        prompt,
        PictureRows {
            pixels,
            shape,
            at,
            rows,
        },
    ))
}

/// A reusable prefix length that never ends inside the picture's rows (they are computed whole).
pub fn clamp_to_picture(reused: usize, picture: Option<&PictureRows>) -> usize {
    match picture {
        Some(p) if reused < p.at + p.rows => reused.min(p.at),
        _ => reused,
    }
}

/// Feeds `prompt[reused..]` to `session`: ids, or, when the picture's rows are in that part, the
/// LLM rows of the text around it and of the picture (CLIP, then the projector); returns the
/// next-token logits.
pub fn prefill<B: KernelBackend>(
    session: &mut KvSession<'_, B>,
    model: &CausalLm<B>,
    vision: Option<&VisionSide<B>>,
    prompt: &[u32],
    picture: Option<&PictureRows>,
    reused: usize,
) -> Result<Vec<f32>, String> {
    use ft_model::generate::LogitsSession;
    let rest = &prompt[reused..];
    let (Some(picture), Some(vision)) = (picture, vision) else {
        return session.append(rest).map_err(|e| e.to_string());
    };
    if reused >= picture.at + picture.rows {
        return session.append(rest).map_err(|e| e.to_string());
    }
    let [c, h, w] = picture.shape;
    let device = model.embed.device();
    let pixels = Tensor::<B, 4>::from_data(TensorData::new(picture.pixels.clone(), [1, c, h, w]), &device);
    let rows = vision.image_rows(pixels);
    let [_, patches, hidden] = rows.dims();
    if patches != picture.rows {
        return Err(format!(
            "the picture gives {patches} rows, {} were planned",
            picture.rows
        ));
    }
    let end = picture.at + picture.rows;
    let embeddings = rows_with_image(
        model,
        &prompt[reused..picture.at],
        rows.reshape([patches, hidden]),
        &prompt[end..],
    );
    session.append_embeddings(embeddings).map_err(|e| e.to_string())
}

/// FNV-1a of the pixel values.
fn fingerprint(pixels: &[f32]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for value in pixels {
        for byte in value.to_le_bytes() {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    }
    hash
}
