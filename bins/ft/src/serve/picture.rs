//! A request's picture: a `data:` URL decoded and processed for the LLaVA's CLIP, and the
//! prompt's placeholder widened to the rows the picture takes. Those rows get ids outside the
//! vocabulary derived from the pixels, so that a later prompt with the same picture (the next
//! turn of the conversation) reuses the cached rows and a different picture never does.

use base64::Engine as _;
use ft_data::encode::IMAGE_TOKEN_INDEX;
use ft_llava::ImageProcessor;

use super::api::ImageRef;
use super::engine::ImageInput;
use super::error::ApiError;

/// First id of the picture rows' range (never a vocabulary id).
const IMAGE_ROW_IDS: u32 = 0x8000_0000;

/// A prompt for the model: ids, and the picture whose rows some of them stand for.
pub struct Prompt {
    /// Token ids (picture rows as ids ≥ 2³¹).
    pub ids: Vec<u32>,
    /// The picture.
    pub image: Option<ImageInput>,
}

/// A text-only prompt.
pub fn text_prompt(ids: Vec<u32>) -> Prompt {
    Prompt { ids, image: None }
}

/// The prompt of rendered `ids` (one `IMAGE_TOKEN_INDEX` where the picture goes) and the
/// picture `image`, processed by `processor` into `rows` rows.
pub fn image_prompt(
    ids: Vec<i32>,
    image: &ImageRef,
    processor: &ImageProcessor,
    rows: usize,
) -> Result<Prompt, ApiError> {
    let bytes =
        data_url_bytes(&image.url).map_err(|message| ApiError::invalid(message, Some(&image.param)))?;
    let origin = std::path::Path::new("image_url");
    let decoded = ft_llava::rgb_from_bytes(&bytes, origin)
        .map_err(|e| ApiError::invalid(format!("the picture cannot be decoded: {e}"), Some(&image.param)))?;
    let (pixels, shape) = processor.prepare(&decoded, true);
    let at = ids
        .iter()
        .position(|&i| i == IMAGE_TOKEN_INDEX)
        .ok_or_else(|| ApiError::invalid("the template dropped the picture's place", Some("messages")))?;
    let first_row = IMAGE_ROW_IDS | (fingerprint(&pixels) & 0x7fff_0000);
    let mut prompt = Vec::with_capacity(ids.len() + rows);
    for (k, &id) in ids.iter().enumerate() {
        if k == at {
            prompt.extend((0..rows as u32).map(|r| first_row | (r & 0xffff)));
        } else {
            let id = u32::try_from(id)
                .map_err(|_| ApiError::invalid("one picture per conversation", Some("messages")))?;
            prompt.push(id);
        }
    }
    Ok(Prompt {
        ids: prompt,
        image: Some(ImageInput {
            pixels,
            shape,
            at,
            rows,
        }),
    })
}

/// The bytes of a base64 `data:` URL.
fn data_url_bytes(url: &str) -> Result<Vec<u8>, String> {
    let rest = url
        .strip_prefix("data:")
        .ok_or("only `data:` URLs are accepted (the server fetches nothing)")?;
    let (meta, data) = rest
        .split_once(',')
        .ok_or("a data: URL needs a comma before its data")?;
    if !meta.ends_with(";base64") {
        return Err("the data: URL must be base64 (`data:image/png;base64,...`)".into());
    }
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| format!("bad base64 in the data: URL: {e}"))
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
