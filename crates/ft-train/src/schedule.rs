//! Learning-rate schedule: linear warm-up then cosine decay to zero, per optimizer step
//! (XTuner's `LinearLR(start_factor=1e-5)` + `CosineAnnealingLR(eta_min=0)`).

/// Warm-up + cosine schedule over `total_steps` optimizer steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarmupCosine {
    /// Peak learning rate.
    pub base_lr: f64,
    /// Warm-up steps (`int(warmup_ratio · total_steps)`).
    pub warmup_steps: usize,
    /// All optimizer steps of the run.
    pub total_steps: usize,
}

/// XTuner's warm-up start factor.
const START_FACTOR: f64 = 1e-5;

impl WarmupCosine {
    /// The schedule for `total_steps` steps with `warmup_ratio` of them warming up.
    pub fn new(base_lr: f64, warmup_ratio: f64, total_steps: usize) -> Self {
        let warmup_steps = ((warmup_ratio * total_steps as f64) as usize).min(total_steps);
        Self {
            base_lr,
            warmup_steps,
            total_steps,
        }
    }

    /// Learning rate of optimizer step `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            // LinearLR over W iterations: factor goes from START_FACTOR to 1 at step W−1.
            let span = self.warmup_steps.saturating_sub(1).max(1) as f64;
            let t = (step as f64).min(span);
            return self.base_lr * (START_FACTOR + (1.0 - START_FACTOR) * t / span);
        }
        let t = (step - self.warmup_steps) as f64;
        let t_max = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        self.base_lr * (1.0 + (std::f64::consts::PI * t / t_max).cos()) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_linearly_then_decays_to_zero() {
        let s = WarmupCosine::new(1e-3, 0.1, 100);
        assert_eq!(s.warmup_steps, 10);
        assert!((s.lr(0) - 1e-3 * START_FACTOR).abs() < 1e-15);
        assert!((s.lr(9) - 1e-3).abs() < 1e-15);
        assert!((s.lr(10) - 1e-3).abs() < 1e-15, "cosine starts at the peak");
        assert!((s.lr(55) - 0.5e-3).abs() < 1e-12, "half way through the cosine");
        assert!(s.lr(99) < 1e-6 && s.lr(99) > 0.0);
        assert!((1..100).all(|i| i <= 10 || s.lr(i) <= s.lr(i - 1)));
    }

    #[test]
    fn no_warmup_starts_at_peak() {
        let s = WarmupCosine::new(2e-4, 0.0, 4);
        assert_eq!(s.lr(0), 2e-4);
    }
}
