//! Drawing cost of a long run's pictures: `metrics.jsonl` of 10,000 steps (with an eval every
//! 500) read back and drawn as `loss.png` and `loss.svg`, as the trainer does at every checkpoint.
//!
//! Run: `cargo bench -p ft-metrics --bench plot` (set `FT_BENCH_STEPS` for another length).

use criterion::{Criterion, criterion_group, criterion_main};
use ft_metrics::{EvalMetrics, MetricsWriter, StepMetrics};

fn bench_plot(c: &mut Criterion) {
    let steps: usize = std::env::var("FT_BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("bench dir");
    let mut log = MetricsWriter::open(dir.path()).expect("metrics file");
    for step in 1..=steps {
        let s = step as f64;
        let m = StepMetrics {
            step,
            loss: 2.0 / s.ln_1p() + 0.1 * (s * 0.37).sin(),
            lr: 2e-4 * (1.0 - s / steps as f64),
            grad_norm: 0.5 + 0.2 * (s * 0.11).cos(),
            tokens_per_s: 1600.0,
            supervised_tokens: 512,
        };
        log.log(&m).expect("metrics line");
        if step % 500 == 0 {
            let e = EvalMetrics {
                step,
                eval_loss: m.loss * 1.1,
                eval_tokens: 4096,
            };
            log.log_eval(&e).expect("metrics line");
        }
    }
    let mut group = c.benchmark_group("plot");
    group.sample_size(10);
    group.bench_function(format!("loss_png_and_svg_{steps}_steps"), |b| {
        b.iter(|| ft_metrics::plot::write_run_plots(dir.path(), "bench · model").expect("drawn"))
    });
    group.finish();
}

criterion_group!(benches, bench_plot);
criterion_main!(benches);
