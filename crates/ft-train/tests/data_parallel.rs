//! Data parallelism through burn-collective, on the CPU in one process: 1, 2 and 3 peers with
//! the same global batch give the same losses and weights (LoRA and full fine-tuning), resume
//! across a change of peer count, stop together on Ctrl-C, and a failed or silent peer stops
//! the others with an error naming it.
//!
//! Tolerances: losses agree within 1e-6 relative (each peer sums its rows' losses in f32, then
//! the sums are added across peers: only the summation order differs); weights within 2e-5
//! absolute after 4 AdamW steps (eps 1e-4, as in train_loop.rs: with eps 1e-8 an element whose
//! gradient is ~0 turns summation-order noise into an lr-sized step).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burn::backend::Autodiff;
use burn_flex::Flex;
use ft_data::pack::PackedRow;
use ft_data::rows::RowSource;
use ft_train::TrainError;
use ft_train::config::TrainConfig;
use ft_train::parallel::train_parallel;
use ft_train::trainer::{NoHooks, TrainOutcome, TrainSetup};

use crate::common;
use common::{adapter_values, max_difference, model_values, tiny_rows, tiny_setup, write_tiny_config};

type A = Autodiff<Flex>;

/// burn-collective keeps one session per backend type per process: runs here take turns.
static COLLECTIVE: Mutex<()> = Mutex::new(());

const LORA: &str = "[lora]\nr = 4\nalpha = 8\ndropout = 0.0\n";

fn write_config(dir: &Path, train: &str, lora: &str) -> PathBuf {
    write_tiny_config(dir, 24, &format!("eps = 1e-4\n{train}"), false, lora)
}

/// How a faulty peer's rows fail, from a given row read on.
#[derive(Clone, Copy)]
enum Fault {
    Panic,
    Hang,
}

struct FaultyRows {
    rows: Arc<dyn RowSource>,
    fault: Fault,
    after: usize,
    reads: std::sync::atomic::AtomicUsize,
}

impl RowSource for FaultyRows {
    fn len(&self) -> usize {
        self.rows.len()
    }
    fn row(&self, i: usize) -> PackedRow {
        let reads = self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if reads >= self.after {
            match self.fault {
                Fault::Panic => panic!("out of memory on this device"),
                // Never wakes while the test process runs (it would join a later session).
                Fault::Hang => loop {
                    std::thread::sleep(Duration::from_secs(3600));
                },
            }
        }
        self.rows.row(i)
    }
}

/// One setup per peer, each with its own replica of the model (adapters drawn from the same
/// host-seeded generator), over the same rows.
fn setups(
    config_path: &Path,
    peers: usize,
    resume: Option<PathBuf>,
    fault: Option<(usize, Fault, usize)>,
) -> Vec<TrainSetup<A>> {
    let config = TrainConfig::from_file(config_path).unwrap();
    let rows: Arc<dyn RowSource> = Arc::new(tiny_rows(&config));
    (0..peers)
        .map(|rank| {
            let rows: Box<dyn RowSource> = match fault {
                Some((r, fault, after)) if r == rank => Box::new(FaultyRows {
                    rows: rows.clone(),
                    fault,
                    after,
                    reads: Default::default(),
                }),
                _ => Box::new(rows.clone()),
            };
            // Each peer has its own stop flag, as each node's process has its own Ctrl-C.
            tiny_setup(&config, rows, resume.clone(), false)
        })
        .collect()
}

fn run(config: &Path, peers: usize) -> TrainOutcome {
    let _turn = COLLECTIVE.lock().unwrap_or_else(|e| e.into_inner());
    train_parallel(setups(config, peers, None, None), &mut NoHooks, None).unwrap()
}

fn assert_losses_equal(a: &[f64], b: &[f64], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= 1e-6 * x.abs().max(1.0), "{what}: {a:?} vs {b:?}");
    }
}

/// Runs the same config with 1, 2 and 3 peers (each in its own folder); returns the outcomes
/// and folders.
fn one_two_three(train: &str, lora: &str) -> Vec<(TrainOutcome, tempfile::TempDir)> {
    [1, 2, 3]
        .into_iter()
        .map(|peers| {
            let dir = tempfile::tempdir().unwrap();
            let config = write_config(dir.path(), train, lora);
            (run(&config, peers), dir)
        })
        .collect()
}

#[test]
fn lora_with_one_two_and_three_peers_gives_the_same_losses_and_adapter() {
    // 5 rows per micro-batch: 3 peers take 1, 2 and 2 rows; grad_accum 2 spans micro-batches.
    let runs = one_two_three(
        "max_steps = 4\nbatch_size = 5\ngrad_accum = 2\nmax_grad_norm = 1.0",
        LORA,
    );
    let single = adapter_values(&runs[0].1.path().join("out/final"));
    for (outcome, dir) in &runs[1..] {
        assert_losses_equal(&runs[0].0.losses, &outcome.losses, "losses");
        let values = adapter_values(&dir.path().join("out/final"));
        let diff = max_difference(&single, &values);
        assert!(diff < 2e-5, "adapter differs by {diff}");
    }
    assert!(
        runs[0].0.losses[3] < runs[0].0.losses[0],
        "{:?}",
        runs[0].0.losses
    );
}

#[test]
fn full_finetuning_with_one_two_and_three_peers_gives_the_same_model() {
    let runs = one_two_three("max_steps = 3\nbatch_size = 4\nmax_grad_norm = 1.0", "");
    let single = model_values(&runs[0].1.path().join("out/final"));
    for (outcome, dir) in &runs[1..] {
        assert_losses_equal(&runs[0].0.losses, &outcome.losses, "losses");
        let diff = max_difference(&single, &model_values(&dir.path().join("out/final")));
        assert!(diff < 2e-5, "weights differ by {diff}");
    }
}

#[test]
fn only_rank_0_writes_and_a_resume_may_change_the_peer_count() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "max_steps = 4\nbatch_size = 4\nsave_steps = 2\nsave_total_limit = 0",
        LORA,
    );
    let full = run(&config, 1);
    std::fs::remove_dir_all(dir.path().join("out")).unwrap();
    let two = run(&config, 2);
    let metrics = std::fs::read_to_string(dir.path().join("out/metrics.jsonl")).unwrap();
    assert_eq!(
        metrics.lines().count(),
        4,
        "one line per step, from rank 0 alone:\n{metrics}"
    );
    assert_losses_equal(&full.losses, &two.losses, "2 peers");
    let checkpoint = dir.path().join("out/checkpoint-2");
    let resumed = {
        let _turn = COLLECTIVE.lock().unwrap_or_else(|e| e.into_inner());
        train_parallel(setups(&config, 3, Some(checkpoint), None), &mut NoHooks, None).unwrap()
    };
    assert_losses_equal(&full.losses[2..], &resumed.losses, "resumed on 3 peers");
}

#[test]
fn a_stop_request_to_one_peer_stops_every_peer_after_the_same_step() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "max_steps = 5\nbatch_size = 4", LORA);
    let _turn = COLLECTIVE.lock().unwrap_or_else(|e| e.into_inner());
    let setups = setups(&config, 2, None, None);
    setups[1].stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let out = train_parallel(setups, &mut NoHooks, None).unwrap();
    assert!(out.interrupted);
    assert_eq!(out.steps, 1);
    assert!(
        dir.path()
            .join("out/checkpoint-1/adapter_model.safetensors")
            .is_file()
    );
}

/// Runs 3 peers where `rank` has `fault` after `after` row reads; returns the error and how
/// long it took.
fn faulty_run(train: &str, rank: usize, fault: Fault, after: usize) -> (TrainError, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), train, LORA);
    let _turn = COLLECTIVE.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let result = train_parallel(
        setups(&config, 3, None, Some((rank, fault, after))),
        &mut NoHooks,
        None,
    );
    (result.unwrap_err(), started.elapsed())
}

#[test]
fn a_failing_peer_stops_the_others_at_once_and_is_named() {
    let (error, took) = faulty_run("max_steps = 3\nbatch_size = 3", 2, Fault::Panic, 4);
    let text = error.to_string();
    assert!(
        text.contains("rank 2") && text.contains("out of memory"),
        "{text}"
    );
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

#[test]
fn a_silent_peer_stops_the_others_within_the_timeout_and_is_named() {
    let train = "max_steps = 3\nbatch_size = 3\ncollective_timeout_s = 2";
    let (error, took) = faulty_run(train, 1, Fault::Hang, 4);
    let text = error.to_string();
    assert!(
        text.contains("rank 1") && text.contains("collective_timeout_s"),
        "{text}"
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
}
