//! Picture files: PNG through plotters' bitmap backend and the `image` crate's encoder, SVG
//! through its SVG backend; text in the bundled DejaVu Sans; written atomically.

use std::path::Path;
use std::sync::Once;

use image::ImageEncoder;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{MetricsError, Result};

/// Something drawn the same way on any plotters backend.
pub trait Drawing {
    /// Draws on `area`; errors as text.
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> std::result::Result<(), String>;
}

/// The formats a picture can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PictureFormat {
    /// RGB PNG.
    Png,
    /// SVG (text left to the viewer's fonts).
    Svg,
}

impl PictureFormat {
    /// The format a file name asks for by its extension.
    pub fn from_path(path: &Path) -> Result<Self> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("png") => Ok(Self::Png),
            Some("svg") => Ok(Self::Svg),
            _ => Err(MetricsError::PictureFormat(path.to_path_buf())),
        }
    }
}

/// Draws `drawing` into `path` (format by extension), `size` pixels, atomically.
pub fn render(path: &Path, size: (u32, u32), drawing: &impl Drawing) -> Result<()> {
    register_fonts();
    let failed = |message: String| MetricsError::Plot {
        path: path.to_path_buf(),
        message,
    };
    let bytes = match PictureFormat::from_path(path)? {
        PictureFormat::Png => draw_png(size, drawing).map_err(failed)?,
        PictureFormat::Svg => draw_svg(size, drawing).map_err(failed)?.into_bytes(),
    };
    ft_io::write_file_atomically(path, &bytes)?;
    Ok(())
}

fn draw_png(size: (u32, u32), drawing: &impl Drawing) -> std::result::Result<Vec<u8>, String> {
    let (w, h) = size;
    let mut rgb = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        drawing.draw(&root)?;
        root.present().map_err(|e| e.to_string())?;
    }
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&rgb, w, h, image::ExtendedColorType::Rgb8)
        .map_err(|e| e.to_string())?;
    Ok(png)
}

fn draw_svg(size: (u32, u32), drawing: &impl Drawing) -> std::result::Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        drawing.draw(&root)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// The bundled font under plotters' `sans-serif` family, once per process.
fn register_fonts() {
    static FONTS: Once = Once::new();
    FONTS.call_once(|| {
        for (style, bytes) in [
            (FontStyle::Normal, dejavu::sans::regular()),
            (FontStyle::Bold, dejavu::sans::bold()),
        ] {
            plotters::style::register_font("sans-serif", style, bytes)
                .unwrap_or_else(|_| panic!("invariant: the bundled DejaVu Sans parses"));
        }
    });
}
