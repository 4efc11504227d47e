//! LLaVA for ft: the CLIP vision tower, image preprocessing equal to `CLIPImageProcessor`
//! (with XTuner's pad-to-square), and XTuner's projector.
//!
//! - [`clip`]: the ViT, loaded from a `CLIPVisionModel`, a full `CLIPModel` or an HF LLaVA
//!   folder; features of `visual_select_layer` without the class token.
//! - [`image`]: decoding and preprocessing to `[3, side, side]` pixel values.
//! - [`projector`]: `ProjectorModel` (depth, GELU, biases), loaded and saved in XTuner's layout.
//! - [`vision`]: CLIP + projector, one block of LLM rows per picture.
//! - [`splice`]: the picture rows in place of each sample's `<image>` placeholder.

pub mod clip;
pub mod clip_lora;
pub mod error;
pub mod folder;
pub mod image;
pub mod pictures;
pub mod projector;
mod resample;
pub mod shapes;
pub mod splice;
pub mod vision;

pub use clip::{ClipVision, ClipVisionConfig, load_clip};
pub use clip_lora::{CLIP_LORA_TARGETS, attach_clip_adapter, attach_new_clip_lora, clip_adapter};
pub use error::{LlavaError, Result};
pub use folder::LlavaParts;
pub use image::{ImageProcessor, check_picture, load_pixels, load_rgb, pad_to_square, rgb_from_bytes};
pub use pictures::PictureReader;
pub use projector::{Projector, ProjectorConfig, load_projector, save_projector};
pub use splice::{SpliceSample, SplicedBatch, rows_with_image, splice};
pub use vision::VisionSide;
