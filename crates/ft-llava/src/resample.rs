//! Bicubic resizing of 8-bit RGB pictures with Pillow's arithmetic, so that pixel values equal
//! those of `CLIPImageProcessor` on its PIL backend (and of XTuner, which uses it): a separable
//! convolution (Keys cubic, a = −0.5) whose support widens by the scale when shrinking
//! (antialiasing), fixed-point weights of 22 fractional bits, horizontal pass first, each pass
//! rounded and clipped to 8 bits.

use image::RgbImage;

/// Fractional bits of the fixed-point weights (Pillow: 32 − 8 − 2).
const PRECISION_BITS: u32 = 32 - 8 - 2;
/// Half-width of the bicubic kernel at scale 1.
const BICUBIC_SUPPORT: f64 = 2.0;

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// The source range and fixed-point weights of every output position along one axis.
struct Taps {
    /// `(first source index, count)` per output position.
    bounds: Vec<(usize, usize)>,
    /// `kernel_size` weights per output position.
    weights: Vec<i32>,
    kernel_size: usize,
}

fn taps(in_size: usize, out_size: usize) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = BICUBIC_SUPPORT * filter_scale;
    let kernel_size = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * kernel_size];
    let mut row = vec![0.0f64; kernel_size];
    for out in 0..out_size {
        let center = (out as f64 + 0.5) * scale;
        // C's `(int)` truncates toward zero.
        let first = ((center - support + 0.5) as i64).max(0) as usize;
        let last = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let count = last - first;
        let mut total = 0.0;
        for (x, w) in row.iter_mut().enumerate().take(count) {
            *w = bicubic((x as f64 + first as f64 - center + 0.5) / filter_scale);
            total += *w;
        }
        let fixed = &mut weights[out * kernel_size..(out + 1) * kernel_size];
        for (x, w) in row.iter().enumerate().take(count) {
            let w = if total != 0.0 { w / total } else { *w };
            let rounding = if w < 0.0 { -0.5 } else { 0.5 };
            fixed[x] = (w * f64::from(1u32 << PRECISION_BITS) + rounding) as i32;
        }
        bounds.push((first, count));
    }
    Taps {
        bounds,
        weights,
        kernel_size,
    }
}

fn clip8(value: i64) -> u8 {
    if value >= (1i64 << PRECISION_BITS << 8) {
        255
    } else if value <= 0 {
        0
    } else {
        (value >> PRECISION_BITS) as u8
    }
}

/// One output sample: the weighted sum of `count` source samples `stride` apart.
fn convolve(source: &[u8], start: usize, stride: usize, count: usize, weights: &[i32]) -> u8 {
    let mut sum: i64 = 1 << (PRECISION_BITS - 1);
    for (k, &w) in weights.iter().enumerate().take(count) {
        sum += i64::from(source[start + k * stride]) * i64::from(w);
    }
    clip8(sum)
}

fn resize_horizontal(image: &RgbImage, width: usize) -> RgbImage {
    let (in_w, h) = (image.width() as usize, image.height() as usize);
    let t = taps(in_w, width);
    let source = image.as_raw();
    let mut out = vec![0u8; width * h * 3];
    for y in 0..h {
        for (x, &(first, count)) in t.bounds.iter().enumerate() {
            let weights = &t.weights[x * t.kernel_size..];
            for c in 0..3 {
                let start = (y * in_w + first) * 3 + c;
                out[(y * width + x) * 3 + c] = convolve(source, start, 3, count, weights);
            }
        }
    }
    RgbImage::from_raw(width as u32, h as u32, out)
        .expect("invariant: the buffer holds width × height pixels")
}

fn resize_vertical(image: &RgbImage, height: usize) -> RgbImage {
    let (w, in_h) = (image.width() as usize, image.height() as usize);
    let t = taps(in_h, height);
    let source = image.as_raw();
    let mut out = vec![0u8; w * height * 3];
    for (y, &(first, count)) in t.bounds.iter().enumerate() {
        let weights = &t.weights[y * t.kernel_size..];
        for x in 0..w {
            for c in 0..3 {
                let start = (first * w + x) * 3 + c;
                out[(y * w + x) * 3 + c] = convolve(source, start, w * 3, count, weights);
            }
        }
    }
    RgbImage::from_raw(w as u32, height as u32, out)
        .expect("invariant: the buffer holds width × height pixels")
}

/// `image` resized to `width × height` as Pillow's `Image.resize(..., BICUBIC)` does.
pub fn resize_bicubic(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let mut out = image.clone();
    if out.width() != width {
        out = resize_horizontal(&out, width as usize);
    }
    if out.height() != height {
        out = resize_vertical(&out, height as usize);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_of_every_position_sum_to_one() {
        for (from, to) in [(23, 16), (7, 16), (336, 336), (500, 336)] {
            let t = taps(from, to);
            for out in 0..to {
                let sum: i64 = t.weights[out * t.kernel_size..][..t.bounds[out].1]
                    .iter()
                    .map(|&w| i64::from(w))
                    .sum();
                assert!(
                    (sum - (1 << PRECISION_BITS)).abs() <= t.kernel_size as i64,
                    "{from}->{to} at {out}: {sum}"
                );
            }
        }
    }

    #[test]
    fn a_flat_picture_stays_flat() {
        let flat = RgbImage::from_pixel(13, 9, image::Rgb([200, 17, 90]));
        let resized = resize_bicubic(&flat, 7, 20);
        assert!(resized.pixels().all(|p| p.0 == [200, 17, 90]));
    }
}
