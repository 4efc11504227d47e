//! Property tests for the packer: no token lost or duplicated, boundaries consistent.

use ft_data::batch::collate;
use ft_data::encode::EncodedSample;
use ft_data::pack::pack;
use proptest::prelude::*;

fn samples() -> impl Strategy<Value = Vec<EncodedSample>> {
    prop::collection::vec(1usize..40, 1..30).prop_map(|lens| {
        let mut next = 0i32;
        lens.into_iter()
            .map(|n| {
                let ids: Vec<i32> = (next..next + n as i32).collect();
                next += n as i32;
                EncodedSample {
                    labels: ids.iter().map(|i| if i % 3 == 0 { -100 } else { *i }).collect(),
                    input_ids: ids,
                    truncated: false,
                }
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn packing_is_lossless_and_ordered(samples in samples(), max_length in 1usize..64) {
        let rows = pack(&samples, max_length);
        let flat_in: Vec<i32> = samples.iter().flat_map(|s| s.input_ids.clone()).collect();
        let flat_out: Vec<i32> = rows.iter().flat_map(|r| r.input_ids.clone()).collect();
        prop_assert_eq!(&flat_in, &flat_out);
        let labels_in: Vec<i32> = samples.iter().flat_map(|s| s.labels.clone()).collect();
        let labels_out: Vec<i32> = rows.iter().flat_map(|r| r.labels.clone()).collect();
        prop_assert_eq!(labels_in, labels_out);
        // Every row but the last is full.
        for row in &rows[..rows.len() - 1] {
            prop_assert_eq!(row.input_ids.len(), max_length);
        }
    }

    #[test]
    fn boundaries_and_positions_agree(samples in samples(), max_length in 1usize..64) {
        for row in pack(&samples, max_length) {
            prop_assert_eq!(row.cu_seqlens[0], 0);
            prop_assert_eq!(*row.cu_seqlens.last().unwrap(), row.input_ids.len());
            prop_assert!(row.cu_seqlens.windows(2).all(|w| w[0] < w[1]));
            for w in row.cu_seqlens.windows(2) {
                let expected: Vec<i32> = (0..(w[1] - w[0]) as i32).collect();
                prop_assert_eq!(&row.position_ids[w[0]..w[1]], expected.as_slice());
            }
            // Within a segment ids are consecutive (the generator uses consecutive ids per sample),
            // and a segment never spans two samples.
            for w in row.cu_seqlens.windows(2) {
                prop_assert!(row.input_ids[w[0]..w[1]].windows(2).all(|p| p[1] == p[0] + 1));
            }
        }
    }

    #[test]
    fn collated_batch_masks_exactly_the_real_tokens(samples in samples(), max_length in 1usize..64) {
        let rows = pack(&samples, max_length);
        let refs: Vec<_> = rows.iter().collect();
        let batch = collate(&refs);
        let real: usize = rows.iter().map(|r| r.input_ids.len()).sum();
        prop_assert_eq!(batch.real_tokens(), real);
        prop_assert_eq!(batch.input_ids.len(), batch.batch_size * batch.seq_len);
    }
}
