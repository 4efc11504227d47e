//! Half-precision inputs: RMSNorm and the loss compute in f32 whatever the model's dtype, as
//! transformers does (an f16 square overflows above 255; an f16/bf16 sum of many squares or a
//! log-sum-exp near 1000 loses most of its digits).

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{DType, FloatDType, Tensor, TensorData, Tolerance};
use burn_flex::Flex;
use ft_model::layers::RmsNorm;
use ft_model::load_hf;
use ft_model::loss::cross_entropy_sum;

type B = Flex;

use crate::common;

use common::{Golden, max_logit_error, model_dir};

/// A unit-scale norm of width `values.len()` with its weight in `dtype`, applied to `values`
/// cast to `dtype`; returns the output (checked to keep `dtype`) as f32.
fn norm_in(dtype: FloatDType, values: &[f32]) -> Vec<f32> {
    let device = Default::default();
    let hidden = values.len();
    let mut norm = RmsNorm::<B>::new(hidden, 1e-6, &device);
    norm.weight = Param::from_tensor(norm.weight.val().cast(dtype));
    let x = Tensor::<B, 3>::from_data(TensorData::new(values.to_vec(), [1, 1, hidden]), &device).cast(dtype);
    let y = norm.forward(x);
    assert_eq!(
        y.dtype(),
        DType::from(dtype),
        "the output keeps the input's dtype"
    );
    y.cast(FloatDType::F32).into_data().into_vec::<f32>().unwrap()
}

/// `x / rms(x)` in f64.
fn reference_norm(values: &[f32]) -> Vec<f32> {
    let mean_square = values.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / values.len() as f64;
    let rms = (mean_square + 1e-6).sqrt();
    values.iter().map(|&v| (v as f64 / rms) as f32).collect()
}

fn max_abs_error(got: &[f32], want: &[f32]) -> f32 {
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f32::max)
}

#[test]
fn rms_norm_of_large_f16_values_squares_in_f32() {
    // 300² = 90 000 > 65 504, the largest f16: squaring in f16 gives inf and a zero output.
    let values = [300f32, -300.0, 400.0, 100.0];
    let got = norm_in(FloatDType::F16, &values);
    let err = max_abs_error(&got, &reference_norm(&values));
    assert!(err < 2e-3, "f16 RMSNorm max error {err}: {got:?}");
}

#[test]
fn rms_norm_of_bf16_values_rounds_once() {
    // bf16-exact values whose bf16-rounded square, mean, rsqrt and product drift 1.5e-2 from
    // the exact norm; computed in f32 only the final rounding to bf16 remains (~2e-4 here).
    let values = [-0.929_687_5f32, 0.285_156_25, 3.843_75, 0.144_531_25];
    let got = norm_in(FloatDType::BF16, &values);
    let err = max_abs_error(&got, &reference_norm(&values));
    assert!(err < 2e-3, "bf16 RMSNorm max error {err}: {got:?}");
}

#[test]
fn rms_norm_in_f32_is_unchanged_by_the_cast() {
    let values = [0.5f32, -1.25, 3.0, 0.0, 2.0, -0.75];
    let got = norm_in(FloatDType::F32, &values);
    let err = max_abs_error(&got, &reference_norm(&values));
    assert!(err < 1e-6, "f32 RMSNorm max error {err}");
}

#[test]
fn cross_entropy_of_f16_logits_is_computed_in_f32() {
    let device = Default::default();
    // Rows whose log-sum-exp sits near 1000, where f16 resolves only 0.5.
    let logits = [1000.0f32, 1000.5, 999.0, 0.0, 2.0, -1.0];
    let targets = [0u32, 1];
    let mut expected = 0.0f64;
    for (row, &t) in logits.chunks(3).zip(&targets) {
        let max = row.iter().fold(f64::MIN, |m, &v| m.max(v as f64));
        let lse = max + row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
        expected += lse - row[t as usize] as f64;
    }
    let x =
        Tensor::<B, 2>::from_data(TensorData::new(logits.to_vec(), [2, 3]), &device).cast(FloatDType::F16);
    let sum = cross_entropy_sum(x, &targets);
    assert_eq!(sum.dtype(), DType::F32, "the loss is f32");
    let found = sum.into_scalar();
    assert!(
        (found as f64 - expected).abs() < 1e-4,
        "Σ CE {found}, expected {expected}"
    );
}

#[test]
fn cross_entropy_of_f32_logits_matches_the_reference() {
    let device = Default::default();
    let logits = [0.25f32, -1.5, 2.0, 0.0];
    let x = Tensor::<B, 2>::from_data(TensorData::new(logits.to_vec(), [1, 4]), &device);
    let lse = logits.iter().map(|&v| (v as f64).exp()).sum::<f64>().ln();
    let found = cross_entropy_sum(x, &[2]).into_data();
    found.assert_approx_eq::<f32>(
        &TensorData::new(vec![(lse - 2.0) as f32], [1]),
        Tolerance::absolute(1e-6),
    );
}

/// Casts every float parameter of a module.
struct CastParams(FloatDType);

impl ModuleMapper<B> for CastParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        Param::from_mapped_value(id, tensor.cast(self.0), mapper)
    }
}

/// Max |logit error| and |loss error| of the `llama` fixture run with every weight in `dtype`,
/// against transformers' f32 goldens.
fn half_model_errors(dtype: FloatDType) -> (f32, f32) {
    let device = Default::default();
    let dir = model_dir("llama");
    let (model, config) = load_hf::<B>(&dir, &device).unwrap();
    let model = model.map(&mut CastParams(dtype));
    let golden = Golden::read(&dir.join("golden.safetensors"));
    let (input, labels) = golden.input();
    let logits = model.forward(&input, &config);
    assert_eq!(
        logits.dtype(),
        DType::from(dtype),
        "logits stay in the model's dtype"
    );
    let got = logits
        .cast(FloatDType::F32)
        .into_data()
        .into_vec::<f32>()
        .unwrap();
    let mask = input.attention_mask.as_ref().unwrap();
    let logit_err = max_logit_error(&got, golden.logits(), mask, config.vocab_size);
    let loss = model.loss(&input, &labels, &config);
    assert_eq!(loss.dtype(), DType::F32, "the loss is f32");
    (logit_err, (loss.into_scalar() - golden.loss()).abs())
}

#[test]
fn f16_model_runs_end_to_end_close_to_the_f32_goldens() {
    let (logit_err, loss_err) = half_model_errors(FloatDType::F16);
    eprintln!("f16 model: max |logit error| {logit_err}, |loss error| {loss_err}");
    assert!(
        logit_err < 5e-2 && loss_err < 1e-2,
        "f16: logits {logit_err}, loss {loss_err}"
    );
}

#[test]
fn bf16_model_runs_end_to_end_close_to_the_f32_goldens() {
    let (logit_err, loss_err) = half_model_errors(FloatDType::BF16);
    eprintln!("bf16 model: max |logit error| {logit_err}, |loss error| {loss_err}");
    assert!(
        logit_err < 3e-1 && loss_err < 5e-2,
        "bf16: logits {logit_err}, loss {loss_err}"
    );
}
