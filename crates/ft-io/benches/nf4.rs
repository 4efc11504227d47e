//! NF4 codec throughput on a 4096×4096 weight (GB/s of f32 values processed).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ft_io::nf4::Nf4Tensor;

const ROWS: usize = 4096;
const COLS: usize = 4096;

/// Deterministic normal-ish weights (sum of uniforms), no RNG dependency.
fn weights() -> Vec<f32> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    (0..ROWS * COLS)
        .map(|_| 0.02 * (uniform() + uniform() + uniform() + uniform()))
        .collect()
}

fn nf4(c: &mut Criterion) {
    let values = weights();
    let shape = [ROWS, COLS];
    let mut group = c.benchmark_group("nf4_4096x4096");
    group.sample_size(10);
    group.throughput(Throughput::Bytes((ROWS * COLS * 4) as u64));
    group.bench_function("quantize", |b| {
        b.iter(|| Nf4Tensor::quantize(black_box(&values), &shape, false).expect("valid shape"))
    });
    group.bench_function("quantize_double_quant", |b| {
        b.iter(|| Nf4Tensor::quantize(black_box(&values), &shape, true).expect("valid shape"))
    });
    let plain = Nf4Tensor::quantize(&values, &shape, false).expect("valid shape");
    let double = Nf4Tensor::quantize(&values, &shape, true).expect("valid shape");
    let mut out = vec![0.0f32; ROWS * COLS];
    group.bench_function("dequantize_into", |b| {
        b.iter(|| plain.dequantize_into(black_box(&mut out)).expect("sized buffer"))
    });
    group.bench_function("dequantize_into_double_quant", |b| {
        b.iter(|| double.dequantize_into(black_box(&mut out)).expect("sized buffer"))
    });
    let mut rows = vec![0.0f32; 64 * COLS];
    group.throughput(Throughput::Bytes((64 * COLS * 4) as u64));
    group.bench_function("dequantize_64_rows_single_thread", |b| {
        b.iter(|| {
            plain
                .dequantize_rows_into(black_box(1024..1088), &mut rows)
                .expect("in bounds")
        })
    });
    group.finish();
}

criterion_group!(benches, nf4);
criterion_main!(benches);
