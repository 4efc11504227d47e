//! Smoothing of noisy per-step curves.

/// The weight of the past in a long run's loss smoothing (LLaMA-Factory's `smooth`).
pub const LOSS_SMOOTHING: f64 = 0.9;

/// The EMA weight LLaMA-Factory's `smooth` gives a curve of `points` points:
/// `1.8 · (sigmoid(0.05 · points) − 0.5)`, which rises to [`LOSS_SMOOTHING`] (0.9) as the run
/// grows (0.89 at 100 points), so a short run's curve is not dragged behind by its first value.
pub fn loss_smoothing_weight(points: usize) -> f64 {
    let sigmoid = 1.0 / (1.0 + (-0.05 * points as f64).exp());
    2.0 * LOSS_SMOOTHING * (sigmoid - 0.5)
}

/// Exponential moving average: `s₀ = x₀`, `sᵢ = w·sᵢ₋₁ + (1 − w)·xᵢ`.
pub fn ema(values: &[f64], weight: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(values.len());
    let mut last = match values.first() {
        Some(&v) => v,
        None => return out,
    };
    for &v in values {
        last = weight * last + (1.0 - weight) * v;
        out.push(last);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ema_starts_at_the_first_value_and_follows_by_a_tenth() {
        let s = ema(&[2.0, 1.0, 1.0], 0.9);
        assert_eq!(s[0], 2.0);
        assert!((s[1] - 1.9).abs() < 1e-12);
        assert!((s[2] - 1.81).abs() < 1e-12);
        assert!(ema(&[], 0.9).is_empty());
    }

    #[test]
    fn the_weight_rises_to_a_tenth_per_step() {
        // LLaMA-Factory: 1.8 * (1 / (1 + math.exp(-0.05 * n)) - 0.5)
        assert!((loss_smoothing_weight(17) - 0.36107).abs() < 1e-4);
        assert!((loss_smoothing_weight(100) - 0.88796).abs() < 1e-4);
        assert!((loss_smoothing_weight(10_000) - 0.9).abs() < 1e-12);
    }
}
