//! The pictures read back: PNG size and non-blank panels in the series' colours; SVG with one
//! line per series and a point per logged step.

use std::path::Path;

use ft_metrics::plot::{write_comparison, write_run_plots};
use ft_metrics::{EvalMetrics, Metric, MetricsWriter, RunHistory, StepMetrics};

fn write_run(dir: &Path, steps: usize, evals: &[usize], scale: f64) {
    let mut w = MetricsWriter::open(dir).unwrap();
    for step in 1..=steps {
        let s = step as f64;
        w.log(&StepMetrics {
            step,
            loss: scale * (3.0 / s.sqrt() + 0.2 * (s * 1.7).sin()),
            lr: 2e-4 * (1.0 - s / steps as f64),
            grad_norm: 1.0 + (s * 0.3).cos(),
            tokens_per_s: 900.0 + s,
            supervised_tokens: 100 + step,
        })
        .unwrap();
        if evals.contains(&step) {
            w.log_eval(&EvalMetrics {
                step,
                eval_loss: scale * 2.5 / s.sqrt(),
                eval_tokens: 64,
            })
            .unwrap();
        }
    }
}

/// The point counts of the SVG's `<polyline>`s.
fn polyline_lengths(svg: &str) -> Vec<usize> {
    svg.split("<polyline")
        .skip(1)
        .map(|p| {
            let points = p.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
            points.split_whitespace().count()
        })
        .collect()
}

/// The texts of the SVG's `<text>` elements.
fn svg_texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .map(|t| {
            t.split_once('>')
                .unwrap()
                .1
                .split("</text>")
                .next()
                .unwrap()
                .trim()
                .to_string()
        })
        .collect()
}

/// Pixels of exactly `color` inside the rows `rows` of the picture.
fn count_color(img: &image::RgbImage, color: [u8; 3], rows: std::ops::Range<u32>) -> usize {
    img.enumerate_pixels()
        .filter(|(_, y, p)| rows.contains(y) && p.0 == color)
        .count()
}

#[test]
fn a_run_picture_has_every_panel_drawn() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path(), 37, &[10, 20, 30], 1.0);
    let [png, svg] = write_run_plots(dir.path(), "assistant · tiny-base")
        .unwrap()
        .unwrap();
    assert_eq!(png, dir.path().join("loss.png"));

    let img = image::open(&png).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (1280, 960));
    let (_, h) = img.dimensions();
    let top = 0..h * 55 / 100;
    let bottom = h * 55 / 100..h;
    assert!(
        count_color(&img, [31, 119, 180], top.clone()) > 500,
        "loss curve missing"
    );
    assert!(count_color(&img, [255, 127, 14], top) > 50, "eval points missing");
    assert!(
        count_color(&img, [44, 160, 44], bottom.clone()) > 300,
        "lr curve missing"
    );
    assert!(
        count_color(&img, [148, 103, 189], bottom) > 300,
        "grad-norm curve missing"
    );

    let svg = std::fs::read_to_string(&svg).unwrap();
    let lengths = polyline_lengths(&svg);
    // Raw loss, smoothed loss, lr and grad norm: one line of 37 points each; evals: 3 points.
    assert_eq!(lengths.iter().filter(|&&n| n == 37).count(), 4, "{lengths:?}");
    assert_eq!(lengths.iter().filter(|&&n| n == 3).count(), 1, "{lengths:?}");
    assert_eq!(svg.matches("<circle").count(), 3);
    let texts = svg_texts(&svg);
    for label in [
        "assistant · tiny-base",
        "loss",
        "smoothed (EMA)",
        "eval loss",
        "learning rate",
        "step",
    ] {
        assert!(texts.iter().any(|t| t == label), "{label:?} not in {texts:?}");
    }
}

#[test]
fn nothing_logged_draws_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("metrics.jsonl"), "").unwrap();
    assert!(write_run_plots(dir.path(), "t").unwrap().is_none());
    assert!(!dir.path().join("loss.png").exists());
}

#[test]
fn a_comparison_draws_each_run_in_its_own_colour() {
    let root = tempfile::tempdir().unwrap();
    let (lora, qlora) = (root.path().join("lora"), root.path().join("qlora"));
    std::fs::create_dir_all(&lora).unwrap();
    std::fs::create_dir_all(&qlora).unwrap();
    write_run(&lora, 20, &[], 1.0);
    write_run(&qlora, 12, &[], 1.1);
    let runs = vec![
        RunHistory::read(&lora).unwrap(),
        RunHistory::read(&qlora).unwrap(),
    ];

    let svg_path = root.path().join("cmp.svg");
    write_comparison(&runs, Metric::Loss, &svg_path).unwrap();
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let mut lengths = polyline_lengths(&svg);
    lengths.retain(|&n| n > 2);
    lengths.sort();
    // Raw and smoothed loss of each run.
    assert_eq!(lengths, vec![12, 12, 20, 20]);
    let texts = svg_texts(&svg);
    assert!(
        texts.contains(&"lora".to_string()) && texts.contains(&"qlora".to_string()),
        "{texts:?}"
    );
    assert!(texts.contains(&"lora vs qlora".to_string()), "{texts:?}");

    let png_path = root.path().join("cmp.png");
    write_comparison(&runs, Metric::GradNorm, &png_path).unwrap();
    let img = image::open(&png_path).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (1280, 720));
    let all = 0..720;
    assert!(count_color(&img, [31, 119, 180], all.clone()) > 300);
    assert!(count_color(&img, [255, 127, 14], all) > 300);

    let err = write_comparison(&runs, Metric::Loss, &root.path().join("cmp.jpg")).unwrap_err();
    assert!(err.to_string().contains("cmp.jpg"), "{err}");
}
