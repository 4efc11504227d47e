//! `ft train` over several peers through the real binary: `--devices cpu:2` in one process, two
//! processes on 127.0.0.1 as two nodes (`--nnodes 2 --node-rank R --master HOST:PORT`), each
//! giving the losses of one process on one device; and a node killed mid-run, which makes the
//! other exit non-zero within `[train] collective_timeout_s`, naming it, after which the last
//! checkpoint resumes; and a node that stops answering (SIGSTOP), which makes the other exit within
//! the timeout, naming it.

use crate::common;
use common::{assistant_config, ft, run_ok, stderr};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// The assistant exercise, shortened: no sample answers, `[train]` keys set by `train` (its
/// `epochs` line replaced, `save_steps` and `save_total_limit` set from `saves`).
fn config(dir: &Path, name: &str, train: &str) -> PathBuf {
    config_saving(dir, name, train, (50, 2))
}

fn config_saving(dir: &Path, name: &str, train: &str, (every, keep): (usize, usize)) -> PathBuf {
    let data = dir.join("assistant.jsonl");
    if !data.exists() {
        run_ok(
            ft().args(["data", "gen-assistant", "--name", "Ada", "--count", "96", "--out"])
                .arg(&data),
        );
    }
    let out = dir.join(name);
    assistant_config(dir, &data, &out, |text| {
        let text = text.split("[eval]").next().unwrap().replace("epochs = 8", train);
        let text = text.replace("save_steps = 50", &format!("save_steps = {every}"));
        let text = text.replace("save_total_limit = 2", &format!("save_total_limit = {keep}"));
        text.replace("report_to = [\"tensorboard\"]", "")
    })
}

fn losses(out: &Path) -> Vec<f64> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let lines = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap());
    lines.map(|m| m["loss"].as_f64().unwrap()).collect()
}

fn assert_close(a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= 1e-6 * x.abs().max(1.0), "{a:?} vs {b:?}");
    }
}

/// A port `p` with `p`, `p + 1` and `p + 2` free (the orchestrator and two data services).
fn free_ports() -> u16 {
    for _ in 0..50 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port < 65000 && (1..3).all(|k| TcpListener::bind(("127.0.0.1", port + k)).is_ok()) {
            return port;
        }
    }
    panic!("no three consecutive free ports");
}

fn node(config: &Path, rank: u32, port: u16) -> Child {
    let master = format!("127.0.0.1:{port}");
    ft().arg("train")
        .arg(config)
        .args([
            "--nnodes",
            "2",
            "--node-rank",
            &rank.to_string(),
            "--master",
            &master,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn two_cpu_peers_and_two_nodes_train_as_one_device_does() {
    let dir = tempfile::tempdir().unwrap();
    let steps = "max_steps = 4";
    run_ok(ft().arg("train").arg(config(dir.path(), "one", steps)));
    let single = losses(&dir.path().join("one"));

    let peers = run_ok(
        ft().arg("train")
            .arg(config(dir.path(), "peers", steps))
            .args(["--devices", "cpu:2"]),
    );
    assert!(stderr(&peers).contains("× 2 peers"), "{}", stderr(&peers));
    assert_close(&single, &losses(&dir.path().join("peers")));

    let port = free_ports();
    let first = node(&config(dir.path(), "node0", steps), 0, port);
    std::thread::sleep(Duration::from_millis(300));
    let second = node(&config(dir.path(), "node1", steps), 1, port);
    for (name, child) in [("node 0", first), ("node 1", second)] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{name}:\n{}", stderr(&out));
    }
    assert_close(&single, &losses(&dir.path().join("node0")));
    assert!(
        !dir.path().join("node1/metrics.jsonl").exists() && !dir.path().join("node1/final").exists(),
        "only rank 0 writes the run's files"
    );
}

#[test]
fn qlora_over_two_cpu_peers_gives_the_one_device_losses() {
    let dir = tempfile::tempdir().unwrap();
    let nf4 = |name: &str| {
        let config = config(dir.path(), name, "max_steps = 3");
        let text = std::fs::read_to_string(&config).unwrap();
        let text = text.replace("dtype = \"f32\"", "dtype = \"f32\"\nquantization = \"nf4\"");
        std::fs::write(&config, text).unwrap();
        config
    };
    run_ok(ft().arg("train").arg(nf4("one")));
    run_ok(ft().arg("train").arg(nf4("two")).args(["--devices", "cpu:2"]));
    assert_close(&losses(&dir.path().join("one")), &losses(&dir.path().join("two")));
    let meta = std::fs::read_to_string(dir.path().join("two/final/ft_adapter.json")).unwrap();
    assert!(meta.contains("nf4"), "{meta}");
}

#[test]
fn a_killed_node_stops_the_other_within_the_timeout_and_the_last_checkpoint_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let train = "max_steps = 2000\ncollective_timeout_s = 3";
    let port = free_ports();
    let first_config = config_saving(dir.path(), "node0", train, (1, 0));
    let mut first = node(&first_config, 0, port);
    let mut second = node(&config_saving(dir.path(), "node1", train, (1, 0)), 1, port);
    let checkpoint = dir.path().join("node0/checkpoint-2");
    let waiting = Instant::now();
    while !checkpoint.join("trainer_state.json").exists() {
        assert!(waiting.elapsed() < Duration::from_secs(120), "no checkpoint-2");
        std::thread::sleep(Duration::from_millis(20));
    }
    second.kill().unwrap();
    second.wait().unwrap();
    let killed = Instant::now();
    let status = loop {
        if let Some(status) = first.try_wait().unwrap() {
            break status;
        }
        assert!(killed.elapsed() < Duration::from_secs(60), "node 0 still running");
        std::thread::sleep(Duration::from_millis(50));
    };
    let waited = killed.elapsed();
    let mut text = String::new();
    std::io::Read::read_to_string(first.stderr.as_mut().unwrap(), &mut text).unwrap();
    assert!(!status.success(), "{text}");
    assert!(text.contains("rank 1"), "the error names the lost rank:\n{text}");
    assert!(
        waited < Duration::from_secs(3 + 10),
        "stopped {waited:?} after the kill"
    );

    // The newest checkpoint resumes on one device, for two more steps.
    let newest = std::fs::read_dir(dir.path().join("node0"))
        .unwrap()
        .filter_map(|e| {
            e.unwrap()
                .file_name()
                .to_str()?
                .strip_prefix("checkpoint-")?
                .parse::<usize>()
                .ok()
        })
        .max()
        .unwrap();
    let resumed = std::fs::read_to_string(&first_config)
        .unwrap()
        .replace("max_steps = 2000", &format!("max_steps = {}", newest + 2));
    std::fs::write(&first_config, resumed).unwrap();
    let out = run_ok(ft().arg("train").arg(&first_config).arg("--resume"));
    assert!(
        stderr(&out).contains(&format!("at step {newest}")),
        "{}",
        stderr(&out)
    );
    assert_eq!(losses(&dir.path().join("node0")).len(), newest + 2);
    assert!(dir.path().join("node0/final/adapter_model.safetensors").is_file());
}

#[test]
fn a_llava_run_over_two_cpu_peers_gives_the_one_device_losses() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, extra: &[&str]| {
        let text = format!(
            "[model]\npath = \"{}\"\n[data]\nfiles = [\"{}\"]\nformat = \"llava\"\ntemplate = \"qwen_chat\"\n\
             max_length = 128\npack = false\nimage_folder = \"{}\"\n[llava]\nvisual_encoder = \"{}\"\n\
             [train]\noutput_dir = \"{}\"\nmax_steps = 3\nbatch_size = 3\nlr = 1e-3\nsave_steps = 0\n",
            common::repo("fixtures/tiny-base").display(),
            common::repo("fixtures/llava/eval.jsonl").display(),
            common::repo("fixtures/llava/images").display(),
            common::repo("fixtures/llava/clip-vision").display(),
            dir.path().join(name).display(),
        );
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::write(&config, text).unwrap();
        run_ok(ft().arg("train").arg(&config).args(extra));
        losses(&dir.path().join(name))
    };
    let one = run("one", &[]);
    assert_close(&one, &run("two", &["--devices", "cpu:2"]));
}

#[test]
fn a_node_that_stops_answering_stops_the_other_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let train = "max_steps = 2000\ncollective_timeout_s = 3";
    let port = free_ports();
    let mut first = node(&config(dir.path(), "node0", train), 0, port);
    let mut second = node(&config(dir.path(), "node1", train), 1, port);
    let metrics = dir.path().join("node0/metrics.jsonl");
    let waiting = Instant::now();
    while std::fs::read_to_string(&metrics).map_or(0, |m| m.lines().count()) < 2 {
        assert!(waiting.elapsed() < Duration::from_secs(120), "no step");
        std::thread::sleep(Duration::from_millis(20));
    }
    let paused = std::process::Command::new("kill")
        .args(["-STOP", &second.id().to_string()])
        .status()
        .unwrap();
    assert!(paused.success());
    let stopped = Instant::now();
    let status = loop {
        if let Some(status) = first.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(60),
            "node 0 still waiting"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let waited = stopped.elapsed();
    second.kill().unwrap();
    second.wait().unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(first.stderr.as_mut().unwrap(), &mut text).unwrap();
    assert!(!status.success(), "{text}");
    assert!(
        text.contains("rank 1") && text.contains("collective_timeout_s"),
        "the error names the silent rank and the key:\n{text}"
    );
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(3 + 10),
        "{waited:?}"
    );
}
