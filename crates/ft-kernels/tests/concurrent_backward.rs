//! A `backward()` on one thread never takes a gradient from another thread's graph. After every
//! backward, Burn's autodiff sweeps every graph of the process and frees the steps of those in
//! which no tensor is alive any more. An op that lets go of its inputs before its own step is
//! registered opens a window in which its input's graph looks dead: a sweep then frees the step
//! that links the input to its parameters, and that parameter's gradient is silently lost. Data
//! parallelism with several devices in one process runs one backward per device at once.
//!
//! Each case runs an op many times on a tracked intermediate whose only handle goes into the op,
//! while another thread runs small backward passes without pause; every gradient must be there
//! and equal the single-threaded one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::Autodiff;
use burn::tensor::{Tensor, TensorData};
use burn_flex::Flex;
use ft_io::nf4::Nf4Tensor;
use ft_kernels::{LoraWeights, Nf4Device, lora_linear, nf4_linear};

use crate::common;
use common::{random, values};

type A = Autodiff<Flex>;

const ROUNDS: usize = 200;
const ROWS: usize = 256;
const WIDTH: usize = 512;
const RANK: usize = 8;

/// Runs `op` on `p · 1.5` (an intermediate whose only handle is moved into the op) `ROUNDS` times
/// while another thread runs backward passes; returns how many rounds lost or changed the
/// gradient of the parameter `p`.
fn rounds_that_lost_a_gradient(op: impl Fn(Tensor<A, 2>) -> Tensor<A, 2>) -> usize {
    // A parameter: after its first backward it has no graph of its own, so `p · 1.5` starts a
    // graph whose only node is that product.
    let p = random::<A, 2>([ROWS, WIDTH], 1, 1.0).require_grad();
    let gradient = || {
        let loss = op(p.clone() * 1.5).sum();
        let grads = loss.backward();
        p.grad(&grads).map(values)
    };
    let want = gradient().expect("the single-threaded run has the gradient");
    let stop = Arc::new(AtomicBool::new(false));
    let sweeper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let q = random::<A, 1>([4], 2, 1.0).require_grad();
                let _ = (q * 2.0).sum().backward();
            }
        })
    };
    let lost = (0..ROUNDS).filter(|_| gradient().as_ref() != Some(&want)).count();
    stop.store(true, Ordering::Relaxed);
    sweeper.join().unwrap();
    lost
}

fn lora_weights() -> LoraWeights<A> {
    LoraWeights {
        weight: random::<A, 2>([WIDTH, WIDTH], 3, 0.1),
        a: random::<A, 2>([RANK, WIDTH], 4, 0.1).require_grad(),
        b: random::<A, 2>([WIDTH, RANK], 5, 0.1).require_grad(),
        scale: 2.0,
    }
}

#[test]
fn the_lora_product_keeps_its_inputs_gradients() {
    let weights = lora_weights();
    let lost = rounds_that_lost_a_gradient(|x| lora_linear(x.clone(), x, weights.clone()));
    assert_eq!(lost, 0, "{lost} of {ROUNDS} rounds lost the input's gradient");
}

#[test]
fn the_nf4_linear_keeps_its_inputs_gradients() {
    let dense = values(random::<Flex, 2>([WIDTH, WIDTH], 3, 0.2));
    let q = Nf4Tensor::quantize(&dense, &[WIDTH, WIDTH], true).unwrap();
    let nf4 = Nf4Device::<A>::upload(&q, &Default::default()).unwrap();
    let weights = lora_weights();
    let lost = rounds_that_lost_a_gradient(|x| {
        let adapter = Some((weights.a.clone(), weights.b.clone(), weights.scale));
        nf4_linear(x.clone(), x, &nf4, adapter)
    });
    assert_eq!(lost, 0, "{lost} of {ROUNDS} rounds lost the input's gradient");
}

#[test]
fn concatenation_keeps_its_inputs_gradients() {
    // Burn's own `cat` let go of its inputs before registering (fixed in vendor/burn-autodiff).
    let other = Tensor::<A, 2>::from_data(
        TensorData::new(vec![0.5f32; 4 * ROWS * WIDTH], [4 * ROWS, WIDTH]),
        &Default::default(),
    );
    let lost = rounds_that_lost_a_gradient(|x| {
        let joined = Tensor::cat(vec![x, other.clone()], 0);
        joined.clone() * joined
    });
    assert_eq!(lost, 0, "{lost} of {ROUNDS} rounds lost the input's gradient");
}
