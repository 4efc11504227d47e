//! Pictures for the vision tower: decoding (PNG, JPEG, WebP, GIF; EXIF orientation honoured;
//! alpha dropped; greyscale and palettes to RGB), XTuner's pad-to-square with the mean colour,
//! then `CLIPImageProcessor` as a model folder's `preprocessor_config.json` configures it:
//! shortest-edge bicubic resize, centre crop, rescale, normalise, CHW f32.

use std::io::BufReader;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{LlavaError, Result};
use crate::resample::resize_bicubic;

/// CLIP's normalisation (OpenAI), the default of `CLIPImageProcessor`.
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP's normalisation (OpenAI).
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// `preprocessor_config.json`, the keys `CLIPImageProcessor` reads.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProcessor {
    /// Resize so that the shorter side has this length.
    pub shortest_edge: Option<u32>,
    /// Centre crop `(height, width)`.
    pub crop: Option<(u32, u32)>,
    /// Multiply 8-bit values by this (1/255).
    pub rescale_factor: Option<f32>,
    /// Per-channel mean and std, or no normalisation.
    pub normalize: Option<([f32; 3], [f32; 3])>,
}

#[derive(Deserialize)]
struct RawProcessor {
    #[serde(default)]
    size: Option<Value>,
    #[serde(default)]
    crop_size: Option<Value>,
    #[serde(default = "yes")]
    do_resize: bool,
    #[serde(default = "yes")]
    do_center_crop: bool,
    #[serde(default = "yes")]
    do_rescale: bool,
    #[serde(default = "yes")]
    do_normalize: bool,
    #[serde(default)]
    rescale_factor: Option<f32>,
    #[serde(default)]
    image_mean: Option<Vec<f32>>,
    #[serde(default)]
    image_std: Option<Vec<f32>>,
    #[serde(default)]
    resample: Option<u32>,
}

fn yes() -> bool {
    true
}

/// PIL's code for bicubic resampling.
const PIL_BICUBIC: u32 = 3;

impl ImageProcessor {
    /// CLIP ViT-L/14-336's processor.
    pub fn clip(size: u32) -> Self {
        Self {
            shortest_edge: Some(size),
            crop: Some((size, size)),
            rescale_factor: Some(1.0 / 255.0),
            normalize: Some((CLIP_MEAN, CLIP_STD)),
        }
    }

    /// Reads `preprocessor_config.json` from a model folder.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("preprocessor_config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| LlavaError::io(&path, e))?;
        let raw: RawProcessor =
            serde_json::from_str(&text).map_err(|e| LlavaError::config(&path, e.to_string()))?;
        if raw.resample.is_some_and(|r| r != PIL_BICUBIC) {
            return Err(LlavaError::config(
                &path,
                "`resample`: only bicubic (3) is supported",
            ));
        }
        let shortest_edge = match (raw.do_resize, &raw.size) {
            (false, _) => None,
            (true, Some(size)) => Some(edge(&path, "size", size, "shortest_edge")?),
            (true, None) => return Err(LlavaError::config(&path, "`size` is missing")),
        };
        let crop = match (raw.do_center_crop, &raw.crop_size) {
            (false, _) => None,
            (true, Some(size)) => Some((
                edge(&path, "crop_size", size, "height")?,
                edge(&path, "crop_size", size, "width")?,
            )),
            (true, None) => return Err(LlavaError::config(&path, "`crop_size` is missing")),
        };
        let normalize = if raw.do_normalize {
            let triple = |v: Option<Vec<f32>>, default: [f32; 3], key: &str| -> Result<[f32; 3]> {
                match v {
                    None => Ok(default),
                    Some(v) => v
                        .try_into()
                        .map_err(|_| LlavaError::config(&path, format!("`{key}` must hold 3 values"))),
                }
            };
            Some((
                triple(raw.image_mean, CLIP_MEAN, "image_mean")?,
                triple(raw.image_std, CLIP_STD, "image_std")?,
            ))
        } else {
            None
        };
        Ok(Self {
            shortest_edge,
            crop,
            rescale_factor: raw.do_rescale.then(|| raw.rescale_factor.unwrap_or(1.0 / 255.0)),
            normalize,
        })
    }

    /// The colour XTuner pads with: `int(255 · mean)` per channel.
    pub fn fill_colour(&self) -> [u8; 3] {
        let mean = self.normalize.map_or(CLIP_MEAN, |(mean, _)| mean);
        mean.map(|m| (255.0 * m) as u8)
    }

    /// Pixel values `[3, height, width]` of a decoded picture, padded to a square first when
    /// `pad` (XTuner's stage 2 and chat). A picture so elongated that its padded square or its
    /// resized form would pass 192 MiB is an error (a 1 × 30,000 strip pads to 2.7 GB).
    pub fn prepare(&self, image: &RgbImage, pad: bool) -> Result<(Vec<f32>, [usize; 3])> {
        self.check_working_size(image.width(), image.height(), pad)?;
        Ok(if pad {
            self.pixel_values(&pad_to_square(image, self.fill_colour()))
        } else {
            self.pixel_values(image)
        })
    }

    /// The padded square and the resized picture of a `width` × `height` one stay within
    /// [`MAX_DECODED_BYTES`].
    fn check_working_size(&self, width: u32, height: u32, pad: bool) -> Result<()> {
        if width == 0 || height == 0 {
            return Err(LlavaError::Input(format!("a {width}×{height} picture is empty")));
        }
        let (w, h) = match pad {
            true => (width.max(height), width.max(height)),
            false => (width, height),
        };
        let bytes = |w: u32, h: u32| u64::from(w) * u64::from(h) * 3;
        let resized = self.shortest_edge.map_or(0, |edge| {
            let (rw, rh) = resized_size(w, h, edge);
            bytes(rw, rh)
        });
        if bytes(w, h).max(resized) > MAX_DECODED_BYTES {
            return Err(LlavaError::Input(format!(
                "a {width}×{height} picture is too elongated: {} would take over {} MB",
                if pad {
                    "its padded square"
                } else {
                    "its resized form"
                },
                MAX_DECODED_BYTES / 1_000_000
            )));
        }
        Ok(())
    }

    /// Pixel values `[3, height, width]` (row-major, CHW) of a decoded picture.
    pub fn pixel_values(&self, image: &RgbImage) -> (Vec<f32>, [usize; 3]) {
        let mut image = image.clone();
        if let Some(edge) = self.shortest_edge {
            let (w, h) = resized_size(image.width(), image.height(), edge);
            image = resize_bicubic(&image, w, h);
        }
        if let Some((crop_h, crop_w)) = self.crop {
            image = center_crop(&image, crop_h, crop_w);
        }
        let (w, h) = (image.width() as usize, image.height() as usize);
        let mut values = vec![0.0f32; 3 * h * w];
        for (x, y, pixel) in image.enumerate_pixels() {
            for c in 0..3 {
                let mut v = f32::from(pixel.0[c]);
                if let Some(factor) = self.rescale_factor {
                    v *= factor;
                }
                if let Some((mean, std)) = self.normalize {
                    v = (v - mean[c]) / std[c];
                }
                values[(c * h + y as usize) * w + x as usize] = v;
            }
        }
        (values, [3, h, w])
    }
}

fn edge(path: &Path, key: &str, size: &Value, field: &str) -> Result<u32> {
    let value = match size {
        Value::Number(n) => n.as_u64(),
        Value::Object(map) => map.get(field).and_then(Value::as_u64),
        _ => None,
    };
    value
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| LlavaError::config(path, format!("`{key}` needs `{field}` (a pixel count)")))
}

/// transformers' `get_resize_output_image_size(default_to_square=False)`: the short side
/// becomes `edge`, the long one `int(edge · long / short)`.
fn resized_size(width: u32, height: u32, edge: u32) -> (u32, u32) {
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    let new_long = (u64::from(edge) * u64::from(long) / u64::from(short)) as u32;
    if width <= height {
        (edge, new_long)
    } else {
        (new_long, edge)
    }
}

/// The centre `height × width` (padded with black where the picture is smaller, as
/// transformers does).
fn center_crop(image: &RgbImage, height: u32, width: u32) -> RgbImage {
    let (w, h) = (image.width() as i64, image.height() as i64);
    let top = (h - i64::from(height)) / 2;
    let left = (w - i64::from(width)) / 2;
    RgbImage::from_fn(width, height, |x, y| {
        let (sx, sy) = (i64::from(x) + left, i64::from(y) + top);
        if (0..w).contains(&sx) && (0..h).contains(&sy) {
            *image.get_pixel(sx as u32, sy as u32)
        } else {
            image::Rgb([0, 0, 0])
        }
    })
}

/// XTuner's `expand2square`: the picture centred on a square canvas of `fill`.
pub fn pad_to_square(image: &RgbImage, fill: [u8; 3]) -> RgbImage {
    let (w, h) = (image.width(), image.height());
    if w == h {
        return image.clone();
    }
    let side = w.max(h);
    let mut canvas = RgbImage::from_pixel(side, side, image::Rgb(fill));
    let (x, y) = if w > h { (0, (w - h) / 2) } else { ((h - w) / 2, 0) };
    image::imageops::replace(&mut canvas, image, i64::from(x), i64::from(y));
    canvas
}

/// Decodes a picture file to 8-bit RGB: EXIF orientation applied, alpha dropped (not blended,
/// as PIL's `convert("RGB")`), greyscale and palettes expanded.
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let file = std::fs::File::open(path).map_err(|e| LlavaError::io(path, e))?;
    decode_rgb(BufReader::new(file), path)
}

/// [`load_rgb`] of a picture's bytes (a `data:` URL's); `origin` names it in errors.
pub fn rgb_from_bytes(bytes: &[u8], origin: &Path) -> Result<RgbImage> {
    decode_rgb(std::io::Cursor::new(bytes), origin)
}

/// The largest decoded picture, padded square or resized picture handled (192 MiB: an 8K
/// RGBA photo is 133 MB); processing holds a few such buffers at once.
const MAX_DECODED_BYTES: u64 = 192 * 1024 * 1024;

fn decode_rgb(reader: impl std::io::BufRead + std::io::Seek, origin: &Path) -> Result<RgbImage> {
    let bad = |message: String| LlavaError::Image {
        path: origin.to_path_buf(),
        message,
    };
    let reader = ImageReader::new(reader)
        .with_guessed_format()
        .map_err(|e| LlavaError::io(origin, e))?;
    let mut decoder = reader.into_decoder().map_err(|e| bad(e.to_string()))?;
    // The decoded size comes from the header: a damaged or hostile one must not make us
    // allocate gigabytes (image's own limit is not applied on this path).
    if decoder.total_bytes() > MAX_DECODED_BYTES {
        let (width, height) = decoder.dimensions();
        return Err(bad(format!(
            "{width}×{height} pixels would take {} MB decoded; at most {} MB are read",
            decoder.total_bytes() / 1_000_000,
            MAX_DECODED_BYTES / 1_000_000
        )));
    }
    let orientation = decoder.orientation().map_err(|e| bad(e.to_string()))?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| bad(e.to_string()))?;
    image.apply_orientation(orientation);
    Ok(image.to_rgb8())
}

/// Checks, before a run, that a picture file exists and its header decodes (its format known,
/// its size readable); the pixels are decoded only when the picture is used.
pub fn check_picture(path: &Path) -> Result<()> {
    let reader = ImageReader::open(path)
        .map_err(|e| LlavaError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| LlavaError::io(path, e))?;
    reader.into_dimensions().map_err(|e| LlavaError::Image {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(())
}

/// A picture file as the vision tower takes it: decoded, padded to a square (when `pad`) and
/// processed; `[3, height, width]`.
pub fn load_pixels(path: &Path, processor: &ImageProcessor, pad: bool) -> Result<(Vec<f32>, [usize; 3])> {
    processor
        .prepare(&load_rgb(path)?, pad)
        .map_err(|e| LlavaError::Image {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_short_side_becomes_the_edge_and_the_long_one_is_truncated() {
        assert_eq!(resized_size(23, 17, 16), (21, 16));
        assert_eq!(resized_size(19, 30, 16), (16, 25));
        assert_eq!(resized_size(500, 375, 336), (448, 336));
    }

    #[test]
    fn a_picture_too_elongated_to_pad_or_resize_is_an_error() {
        let strip = RgbImage::from_pixel(1, 30_000, image::Rgb([9, 9, 9]));
        let processor = ImageProcessor::clip(336);
        for pad in [true, false] {
            let err = processor.prepare(&strip, pad).unwrap_err().to_string();
            assert!(err.contains("1×30000") && err.contains("elongated"), "{err}");
        }
        assert!(processor.prepare(&RgbImage::new(40, 30), true).is_ok());
    }

    #[test]
    fn padding_centres_the_picture_on_the_mean_colour() {
        let image = RgbImage::from_pixel(4, 2, image::Rgb([9, 9, 9]));
        let square = pad_to_square(&image, ImageProcessor::clip(336).fill_colour());
        assert_eq!(square.dimensions(), (4, 4));
        assert_eq!(square.get_pixel(0, 0).0, [122, 116, 104]);
        assert_eq!(square.get_pixel(0, 1).0, [9, 9, 9]);
        assert_eq!(square.get_pixel(3, 2).0, [9, 9, 9]);
        assert_eq!(square.get_pixel(3, 3).0, [122, 116, 104]);
    }
}
