//! Gradient checkpointing (`checkpointed`): a block kept as one node that holds its input alone
//! and runs again in backward gives the same output and the same gradients (input, trainable
//! parameters; none for frozen ones) as the block run plainly, whichever of the input and the
//! parameters are tracked, for blocks in a chain, and with dropout when the generator is seeded.

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module, Param, ParamId};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use burn_flex::Flex;
use ft_kernels::{checkpointed, rms_norm};

use crate::common;
use common::{assert_close, random, values};

type A = Autodiff<Flex>;

/// A residual MLP block with a norm, a trainable and a frozen matrix and optional dropout.
#[derive(Module, Debug)]
struct Block<B: Backend> {
    norm: Param<Tensor<B, 1>>,
    up: Param<Tensor<B, 2>>,
    down: Param<Tensor<B, 2>>,
    dropout: Dropout,
}

impl<B: ft_kernels::KernelBackend> Block<B> {
    /// # Shapes
    /// - x: `[batch, seq, hidden]`
    /// - output: `[batch, seq, hidden]`
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = rms_norm(x.clone(), self.norm.val(), 1e-6);
        let h = self.dropout.forward(h).matmul(self.up.val().unsqueeze());
        x + h.tanh().matmul(self.down.val().unsqueeze())
    }
}

const HIDDEN: usize = 6;
const INNER: usize = 10;

/// A block whose parameters are tracked as `trained` says (norm, up, down).
fn block(seed: u64, trained: [bool; 3], dropout: f64) -> Block<A> {
    let track =
        |t: Tensor<A, 2>, on: bool| Param::initialized(ParamId::new(), if on { t.require_grad() } else { t });
    let norm = random::<A, 1>([HIDDEN], seed, 1.0) + 1.0;
    Block {
        norm: Param::initialized(
            ParamId::new(),
            if trained[0] { norm.require_grad() } else { norm },
        ),
        up: track(random([HIDDEN, INNER], seed + 1, 0.5), trained[1]),
        down: track(random([INNER, HIDDEN], seed + 2, 0.5), trained[2]),
        dropout: DropoutConfig::new(dropout).init(),
    }
}

/// Output, then the gradients of x (when tracked) and of each trained parameter, after
/// `blocks` run in a chain, plainly or checkpointed; `seeds` seeds the generator before each.
fn run(blocks: &[Block<A>], x_tracked: bool, checkpoint: bool, seeds: &[Option<u64>]) -> Vec<Vec<f32>> {
    let x = random::<A, 3>([2, 3, HIDDEN], 7, 1.0);
    let x = if x_tracked { x.require_grad() } else { x };
    let mut h = x.clone();
    for (block, &seed) in blocks.iter().zip(seeds) {
        h = if checkpoint {
            checkpointed(block, h, seed, |b: &Block<A>, x| b.forward(x))
        } else {
            if let Some(seed) = seed {
                Flex::seed(&Default::default(), seed);
            }
            block.forward(h)
        };
    }
    let weights = random::<A, 3>([2, 3, HIDDEN], 8, 1.0);
    let grads = (h.clone() * weights).sum().backward();
    let mut out = vec![values(h.inner())];
    if x_tracked {
        out.push(values(x.grad(&grads).expect("x's gradient")));
    }
    for block in blocks {
        let norm = block.norm.val().grad(&grads).map(values);
        let up = block.up.val().grad(&grads).map(values);
        let down = block.down.val().grad(&grads).map(values);
        let matrices = [up, down].into_iter();
        out.extend(norm.into_iter().chain(matrices.flatten()));
    }
    out
}

fn assert_same(what: &str, got: &[Vec<f32>], want: &[Vec<f32>]) {
    assert_eq!(got.len(), want.len(), "{what}: the same tensors have gradients");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_close(&format!("{what}: tensor {i}"), g, w, 1e-6);
    }
}

#[test]
fn a_checkpointed_block_gives_the_plain_blocks_output_and_gradients() {
    for x_tracked in [false, true] {
        for trained in [[true, true, true], [false, true, false], [false, false, false]] {
            if !x_tracked && trained == [false; 3] {
                continue; // nothing to differentiate
            }
            let blocks = [block(1, trained, 0.0)];
            let plain = run(&blocks, x_tracked, false, &[None]);
            let kept = run(&blocks, x_tracked, true, &[None]);
            let expected = 1 + usize::from(x_tracked) + trained.iter().filter(|&&t| t).count();
            assert_eq!(plain.len(), expected, "x {x_tracked}, trained {trained:?}");
            assert_same(&format!("x {x_tracked}, trained {trained:?}"), &kept, &plain);
        }
    }
}

#[test]
fn chained_checkpointed_blocks_pass_gradients_through_each_other() {
    // The second block's input is the first's checkpointed output: its gradient flows back
    // through the first recompute to the first block's parameters.
    let blocks = [
        block(1, [false, true, true], 0.0),
        block(11, [true, true, false], 0.0),
    ];
    let plain = run(&blocks, false, false, &[None, None]);
    let kept = run(&blocks, false, true, &[None, None]);
    assert_eq!(plain.len(), 1 + 4);
    assert_same("two blocks", &kept, &plain);
}

#[test]
fn a_seeded_recompute_draws_the_dropout_masks_of_its_forward() {
    let blocks = [
        block(1, [false, true, true], 0.3),
        block(11, [false, true, true], 0.3),
    ];
    let seeds = [Some(41), Some(42)];
    let plain = run(&blocks, true, false, &seeds);
    let kept = run(&blocks, true, true, &seeds);
    assert_same("dropout 0.3, seeded", &kept, &plain);
    // The masks matter: another seed gives other gradients.
    let other = run(&blocks, true, true, &[Some(43), Some(44)]);
    assert_ne!(other[1], plain[1], "dropout changes the input's gradient");
}

#[test]
fn inference_backends_just_run_the_block() {
    let block = block(1, [false; 3], 0.0).valid();
    let x = random::<Flex, 3>([2, 3, HIDDEN], 7, 1.0);
    let kept = checkpointed(&block, x.clone(), None, |b: &Block<Flex>, x| b.forward(x));
    assert_eq!(values(kept), values(block.forward(x)));
}
