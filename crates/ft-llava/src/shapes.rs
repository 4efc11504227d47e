//! A generated LLaVA dataset for the walk-through: pictures of one coloured shape (red, green or
//! blue; square, circle or triangle) at a random place and size on white, with captions (stage
//! 1: "A red circle.") and questions (stage 2: "What colour is the shape?" → "Red."), in the
//! LLaVA JSON format.

use std::io::Write;
use std::path::Path;

use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::error::{LlavaError, Result};

/// The colours, as named in answers.
pub const COLOURS: [(&str, [u8; 3]); 3] = [
    ("red", [220, 30, 30]),
    ("green", [30, 170, 50]),
    ("blue", [30, 60, 220]),
];
/// The shapes.
pub const SHAPES: [&str; 3] = ["square", "circle", "triangle"];

/// One generated picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapePicture {
    /// File name in the images folder.
    pub file: String,
    /// Colour name.
    pub colour: &'static str,
    /// Shape name.
    pub shape: &'static str,
}

/// Draws `count` pictures into `dir/images` (seeded) and writes `dir/captions.jsonl` (stage 1) and
/// `dir/questions.jsonl` (stage 2); returns the pictures.
pub fn write_shapes_dataset(dir: &Path, count: usize, seed: u64, prefix: &str) -> Result<Vec<ShapePicture>> {
    let images = dir.join("images");
    std::fs::create_dir_all(&images).map_err(|e| LlavaError::io(&images, e))?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut pictures = Vec::with_capacity(count);
    for k in 0..count {
        // Every colour and shape equally often, in a seeded order.
        let (colour, rgb) = COLOURS[(k + rng.random_range(0..3)) % 3];
        let shape = SHAPES[rng.random_range(0..3)];
        let (w, h) = (rng.random_range(40..72), rng.random_range(40..72));
        let picture = draw(shape, rgb, w, h, &mut rng);
        let file = format!("{prefix}{k:04}.png");
        let path = images.join(&file);
        picture.save(&path).map_err(|e| LlavaError::Image {
            path: path.clone(),
            message: e.to_string(),
        })?;
        pictures.push(ShapePicture { file, colour, shape });
    }
    write_jsonl(&dir.join("captions.jsonl"), pictures.iter().map(caption))?;
    write_jsonl(&dir.join("questions.jsonl"), pictures.iter().flat_map(questions))?;
    Ok(pictures)
}

fn draw(shape: &str, rgb: [u8; 3], w: u32, h: u32, rng: &mut ChaCha8Rng) -> RgbImage {
    let mut picture = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    let side = rng.random_range(w.min(h) / 2..=w.min(h) * 4 / 5);
    let (x0, y0) = (rng.random_range(0..=w - side), rng.random_range(0..=h - side));
    let r = side as f32 / 2.0;
    let (cx, cy) = (x0 as f32 + r, y0 as f32 + r);
    for y in y0..y0 + side {
        for x in x0..x0 + side {
            let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
            let inside = match shape {
                "circle" => dx * dx + dy * dy <= r * r,
                // Apex at the top middle, base at the bottom.
                "triangle" => dx.abs() <= (dy + r) / 2.0,
                _ => true,
            };
            if inside {
                picture.put_pixel(x, y, Rgb(rgb));
            }
        }
    }
    picture
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().collect::<String>() + chars.as_str())
        .unwrap_or_default()
}

fn caption(p: &ShapePicture) -> serde_json::Value {
    json!({"image": p.file, "conversations": [
        {"from": "human", "value": "<image>\nDescribe the picture."},
        {"from": "gpt", "value": format!("A {} {}.", p.colour, p.shape)},
    ]})
}

fn questions(p: &ShapePicture) -> [serde_json::Value; 2] {
    [
        json!({"image": p.file, "conversations": [
            {"from": "human", "value": "<image>\nWhat colour is the shape?"},
            {"from": "gpt", "value": format!("{}.", capitalised(p.colour))},
        ]}),
        json!({"image": p.file, "conversations": [
            {"from": "human", "value": "<image>\nWhat shape is it?"},
            {"from": "gpt", "value": format!("A {}.", p.shape)},
        ]}),
    ]
}

fn write_jsonl(path: &Path, records: impl Iterator<Item = serde_json::Value>) -> Result<()> {
    let mut text = Vec::new();
    for record in records {
        writeln!(text, "{record}").map_err(|e| LlavaError::io(path, e))?;
    }
    ft_io::write_file_atomically(path, &text)?;
    Ok(())
}
