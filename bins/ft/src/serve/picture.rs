//! A request's picture: a `data:` URL decoded and processed for the LLaVA's CLIP, and the
//! prompt's placeholder widened to the rows the picture takes (`ft_cli::picture`).

use base64::Engine as _;
use ft_cli::picture::{PictureRows, widen_placeholder};
use ft_llava::ImageProcessor;

use super::api::ImageRef;
use super::error::ApiError;

/// A prompt for the model: ids, and the picture whose rows some of them stand for.
pub struct Prompt {
    /// Token ids (picture rows as ids ≥ 2³¹).
    pub ids: Vec<u32>,
    /// The picture.
    pub image: Option<PictureRows>,
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
    let (pixels, shape) = processor
        .prepare(&decoded, true)
        .map_err(|e| ApiError::invalid(e.to_string(), Some(&image.param)))?;
    let (ids, picture) = widen_placeholder(&ids, pixels, shape, rows)
        .map_err(|message| ApiError::invalid(message, Some("messages")))?;
    Ok(Prompt {
        ids,
        image: Some(picture),
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
