//! Building NF4 storage from a pre-quantised bitsandbytes state dict (written by bitsandbytes 0.50's
//! own `QuantState.as_dict(packed=True)` in fixtures/gen_nf4.py).

use crate::nf4_common;

use ft_io::nf4::{
    BnbAbsmax, BnbNf4Parts, DoubleQuantAbsmax, NF4_CODE, Nf4Absmax, Nf4Error, Nf4Tensor, nf4_from_bnb,
};
use nf4_common::{Fixture, assert_bits_eq};

struct Layer {
    weight: Vec<u8>,
    absmax_f32: Vec<f32>,
    absmax_u8: Vec<u8>,
    nested_absmax: Vec<f32>,
    nested_quant_map: Vec<f32>,
    quant_map: Vec<f32>,
    quant_state: Vec<u8>,
    nested: bool,
}

impl Layer {
    fn read(fx: &Fixture, prefix: &str) -> Self {
        let key = |suffix: &str| format!("{prefix}.weight{suffix}");
        let nested = fx.has(&key(".nested_absmax"));
        Self {
            weight: fx.u8(&key("")),
            absmax_f32: if nested { vec![] } else { fx.f32(&key(".absmax")) },
            absmax_u8: if nested { fx.u8(&key(".absmax")) } else { vec![] },
            nested_absmax: if nested {
                fx.f32(&key(".nested_absmax"))
            } else {
                vec![]
            },
            nested_quant_map: if nested {
                fx.f32(&key(".nested_quant_map"))
            } else {
                vec![]
            },
            quant_map: fx.f32(&key(".quant_map")),
            quant_state: fx.u8(&key(".quant_state.bitsandbytes__nf4")),
            nested,
        }
    }

    fn parts(&self) -> BnbNf4Parts<'_> {
        let absmax = if self.nested {
            BnbAbsmax::Nested {
                codes: &self.absmax_u8,
                nested_absmax: &self.nested_absmax,
                nested_quant_map: &self.nested_quant_map,
            }
        } else {
            BnbAbsmax::F32(&self.absmax_f32)
        };
        BnbNf4Parts {
            weight: &self.weight,
            absmax,
            quant_map: &self.quant_map,
            quant_state: &self.quant_state,
        }
    }
}

#[test]
fn bnb_checkpoint_dequantises_like_bitsandbytes() {
    let fx = Fixture::open("bnb_checkpoint.safetensors");
    let expected = Fixture::open("bnb_checkpoint_expected.safetensors");
    let layers = [
        ("layers.0.down_proj", [48, 80], true),
        ("layers.0.up_proj", [80, 48], false),
        ("layers.0.gate_proj", [40, 128], true),
    ];
    for (prefix, shape, nested) in layers {
        let layer = Layer::read(&fx, prefix);
        assert_eq!(layer.nested, nested);
        let (tensor, state) = nf4_from_bnb(layer.parts()).expect("valid bnb checkpoint");
        assert_eq!(tensor.shape(), shape);
        assert_eq!(state.dtype, "float32");
        assert_eq!(tensor.is_double_quant(), nested);
        let want = expected.f32(&format!("{prefix}.dequant"));
        assert_bits_eq(prefix, &tensor.dequantize(), &want);

        // Quantising the original weight here reproduces bitsandbytes' stored arrays.
        let input = expected.f32(&format!("{prefix}.input"));
        let ours = Nf4Tensor::quantize(&input, &shape, false).expect("shape matches");
        assert!(ours.packed() == tensor.packed(), "{prefix}: packed codes differ");
        let Nf4Absmax::Full(absmax) = ours.absmax() else {
            panic!("plain quantisation")
        };
        match tensor.absmax() {
            Nf4Absmax::Full(theirs) => assert_bits_eq(prefix, absmax, theirs),
            Nf4Absmax::Double(theirs) => {
                // torch's f32 mean and our f64-accumulated mean may differ in the last bit.
                let ours = DoubleQuantAbsmax::quantize(absmax);
                assert!(
                    (ours.offset - theirs.offset).abs() <= f32::EPSILON * theirs.offset,
                    "{prefix}: offset"
                );
                // Given bnb's offset, the 8-bit codes and scales are identical.
                let again = DoubleQuantAbsmax::quantize_with_offset(absmax, theirs.offset);
                assert!(&again == theirs, "{prefix}: nested codes / absmax2 differ");
            }
        }
    }
}

#[test]
fn bnb_import_rejects_what_it_cannot_read() {
    let fx = Fixture::open("bnb_checkpoint.safetensors");
    let layer = Layer::read(&fx, "layers.0.up_proj");

    let fp4 = String::from_utf8(layer.quant_state.clone())
        .expect("utf-8")
        .replace("nf4", "fp4");
    let err = nf4_from_bnb(BnbNf4Parts {
        quant_state: fp4.as_bytes(),
        ..layer.parts()
    })
    .unwrap_err();
    assert!(
        matches!(
            err,
            Nf4Error::UnsupportedQuantState {
                field: "quant_type",
                ..
            }
        ),
        "{err}"
    );

    let mut wrong_map = NF4_CODE.to_vec();
    wrong_map[3] = 0.5;
    let err = nf4_from_bnb(BnbNf4Parts {
        quant_map: &wrong_map,
        ..layer.parts()
    })
    .unwrap_err();
    assert!(
        matches!(err, Nf4Error::CodeTableMismatch { index: 3, .. }),
        "{err}"
    );

    let err = nf4_from_bnb(BnbNf4Parts {
        weight: &layer.weight[1..],
        ..layer.parts()
    })
    .unwrap_err();
    assert!(
        matches!(err, Nf4Error::LengthMismatch { what: "packed", .. }),
        "{err}"
    );

    let err = nf4_from_bnb(BnbNf4Parts {
        quant_state: b"{not json",
        ..layer.parts()
    })
    .unwrap_err();
    assert!(matches!(err, Nf4Error::QuantStateJson(_)), "{err}");
}
