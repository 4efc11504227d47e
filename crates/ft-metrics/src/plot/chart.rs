//! What the pictures show: panels of series against the optimizer step.

use std::ops::Range;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::history::{Metric, RunHistory};
use crate::plot::output::Drawing;
use crate::smooth::{ema, loss_smoothing_weight};

const FONT: &str = "sans-serif";
const LOSS: RGBColor = RGBColor(31, 119, 180);
const EVAL: RGBColor = RGBColor(255, 127, 14);
const LR: RGBColor = RGBColor(44, 160, 44);
const GRAD_NORM: RGBColor = RGBColor(148, 103, 189);

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stroke {
    /// A thin, pale line (raw values under their smoothed curve).
    Faint,
    /// A solid line.
    Solid,
    /// A solid line with a dot at every point (sparse values: evals).
    Dotted,
}

/// One curve of a panel.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text (none: not in the legend).
    pub label: Option<String>,
    /// `(step, value)`, finite.
    pub points: Vec<(f64, f64)>,
    /// Colour.
    pub color: RGBColor,
    /// Line style.
    pub stroke: Stroke,
}

/// One chart: a caption, a y-axis name and its curves.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Above the chart.
    pub caption: String,
    /// Name of the y axis.
    pub y_desc: String,
    /// Curves, drawn in order.
    pub series: Vec<Series>,
}

/// A run's picture: loss (raw, EMA-smoothed, eval) on top; learning rate and gradient norm below.
pub struct RunChart<'a> {
    /// The run.
    pub history: &'a RunHistory,
    /// The heading (run name and base model).
    pub title: &'a str,
}

impl RunChart<'_> {
    /// The three panels.
    pub fn panels(&self) -> [Panel; 3] {
        let h = self.history;
        let loss = h.series(Metric::Loss);
        let mut series = loss_series(&loss, LOSS, Some("loss"), "smoothed (EMA)");
        let eval = h.series(Metric::EvalLoss);
        if !eval.is_empty() {
            series.push(Series {
                label: Some("eval loss".into()),
                points: eval,
                color: EVAL,
                stroke: Stroke::Dotted,
            });
        }
        let single = |metric: Metric, color: RGBColor| Series {
            label: None,
            points: h.series(metric),
            color,
            stroke: Stroke::Solid,
        };
        [
            Panel {
                caption: "loss".into(),
                y_desc: "loss".into(),
                series,
            },
            Panel {
                caption: "learning rate".into(),
                y_desc: "lr".into(),
                series: vec![single(Metric::Lr, LR)],
            },
            Panel {
                caption: "gradient norm (before clipping)".into(),
                y_desc: "grad_norm".into(),
                series: vec![single(Metric::GradNorm, GRAD_NORM)],
            },
        ]
    }
}

impl Drawing for RunChart<'_> {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        area.fill(&WHITE).map_err(text)?;
        let body = area.titled(self.title, (FONT, 26)).map_err(text)?;
        let (_, height) = body.dim_in_pixel();
        let (top, bottom) = body.split_vertically(height * 55 / 100);
        let (width, _) = bottom.dim_in_pixel();
        let (left, right) = bottom.split_horizontally(width / 2);
        let [loss, lr, grad_norm] = self.panels();
        draw_panel(&top, &loss)?;
        draw_panel(&left, &lr)?;
        draw_panel(&right, &grad_norm)
    }
}

/// One metric of several runs in one chart, a colour per run.
pub struct ComparisonChart<'a> {
    /// The runs, in legend order.
    pub runs: &'a [RunHistory],
    /// What to compare.
    pub metric: Metric,
}

impl ComparisonChart<'_> {
    /// The single panel.
    pub fn panel(&self) -> Panel {
        let names = distinct_names(self.runs);
        let mut series = Vec::new();
        for (i, (run, name)) in self.runs.iter().zip(names).enumerate() {
            let color = palette(i);
            let points = run.series(self.metric);
            match self.metric {
                Metric::Loss => series.extend(loss_series(&points, color, None, &name)),
                _ => series.push(Series {
                    label: Some(name),
                    points,
                    color,
                    stroke: if self.metric == Metric::EvalLoss {
                        Stroke::Dotted
                    } else {
                        Stroke::Solid
                    },
                }),
            }
        }
        Panel {
            caption: format!("{} by step", self.metric.key()),
            y_desc: self.metric.key().into(),
            series,
        }
    }
}

impl Drawing for ComparisonChart<'_> {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        area.fill(&WHITE).map_err(text)?;
        let title = self
            .runs
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(" vs ");
        let body = area.titled(&title, (FONT, 24)).map_err(text)?;
        draw_panel(&body, &self.panel())
    }
}

/// Raw loss (faint, labelled `raw_label`) under its EMA (solid, labelled `smooth_label`).
fn loss_series(
    loss: &[(f64, f64)],
    color: RGBColor,
    raw_label: Option<&str>,
    smooth_label: &str,
) -> Vec<Series> {
    if loss.is_empty() {
        return Vec::new();
    }
    let values: Vec<f64> = loss.iter().map(|p| p.1).collect();
    let smoothed = ema(&values, loss_smoothing_weight(values.len()));
    vec![
        Series {
            label: raw_label.map(String::from),
            points: loss.to_vec(),
            color,
            stroke: Stroke::Faint,
        },
        Series {
            label: Some(smooth_label.into()),
            points: loss.iter().zip(smoothed).map(|(p, s)| (p.0, s)).collect(),
            color,
            stroke: Stroke::Solid,
        },
    ]
}

/// Draws a panel on `area`: axes, grid, curves, legend.
pub fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, panel: &Panel) -> Result<(), String> {
    let points = || panel.series.iter().flat_map(|s| s.points.iter());
    let (Some(x), Some(y)) = (
        padded(points().map(|p| p.0), 0.0),
        padded(points().map(|p| p.1), 0.05),
    ) else {
        return empty_panel(area, panel);
    };
    let y_format = value_format(&y);
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.caption, (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(76)
        .build_cartesian_2d(x, y)
        .map_err(text)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(&panel.y_desc)
        .x_labels(8)
        .y_labels(6)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| y_format(*v))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .bold_line_style(BLACK.mix(0.1))
        .light_line_style(WHITE)
        .draw()
        .map_err(text)?;
    let mut labelled = false;
    for series in &panel.series {
        labelled |= draw_series(&mut chart, series)?;
    }
    if labelled {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(text)?;
    }
    Ok(())
}

type Chart<'a, DB> = ChartContext<
    'a,
    DB,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// Draws one curve; returns whether it went into the legend.
fn draw_series<DB: DrawingBackend>(chart: &mut Chart<'_, DB>, series: &Series) -> Result<bool, String> {
    if series.points.is_empty() {
        return Ok(false);
    }
    let color = match series.stroke {
        Stroke::Faint => series.color.mix(0.4),
        Stroke::Solid | Stroke::Dotted => series.color.to_rgba(),
    };
    let style = color.stroke_width(if series.stroke == Stroke::Faint { 1 } else { 2 });
    let drawn = chart
        .draw_series(LineSeries::new(series.points.iter().copied(), style))
        .map_err(text)?;
    let labelled = match &series.label {
        Some(label) => {
            drawn
                .label(label)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], color.filled()));
            true
        }
        None => false,
    };
    if series.stroke == Stroke::Dotted {
        let color = series.color;
        chart
            .draw_series(series.points.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(text)?;
    }
    Ok(labelled)
}

fn empty_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, panel: &Panel) -> Result<(), String> {
    let (w, h) = area.dim_in_pixel();
    area.draw_text(
        &format!("{}: nothing logged", panel.caption),
        &(FONT, 16).into_text_style(area),
        (w as i32 / 3, h as i32 / 2),
    )
    .map_err(text)
}

/// The range of `values` widened by `pad` of its span on each side (a flat range by a little).
fn padded(values: impl Iterator<Item = f64>, pad: f64) -> Option<Range<f64>> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() || !hi.is_finite() {
        return None;
    }
    let span = hi - lo;
    let margin = if span > 0.0 {
        span * pad
    } else {
        (hi.abs() * 0.05)
            .max(1.0e-9)
            .max(if pad == 0.0 { 1.0 } else { 0.0 })
    };
    Some(lo - margin..hi + margin)
}

/// Tick labels for a range: scientific for tiny or huge magnitudes (learning rates), else as
/// many decimals as about six ticks over the span need.
fn value_format(range: &Range<f64>) -> impl Fn(f64) -> String + use<> {
    let magnitude = range.start.abs().max(range.end.abs());
    let tick = ((range.end - range.start) / 6.0).max(f64::MIN_POSITIVE);
    let decimals = (-tick.log10().floor()).clamp(0.0, 6.0) as usize;
    move |v| {
        if magnitude != 0.0 && !(1e-2..1e6).contains(&magnitude) {
            format!("{v:.1e}")
        } else {
            format!("{v:.decimals$}")
        }
    }
}

/// Legend names: folder names, or whole paths where two folders share a name.
fn distinct_names(runs: &[RunHistory]) -> Vec<String> {
    runs.iter()
        .enumerate()
        .map(|(i, r)| {
            let clash = runs.iter().filter(|o| o.name == r.name).count() > 1;
            if clash {
                format!("{} #{}", r.name, i + 1)
            } else {
                r.name.clone()
            }
        })
        .collect()
}

fn palette(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 6] = [
        LOSS,
        EVAL,
        LR,
        RGBColor(214, 39, 40),
        GRAD_NORM,
        RGBColor(140, 86, 75),
    ];
    COLORS[i % COLORS.len()]
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_pad_their_span_and_widen_a_flat_one() {
        let r = padded([1.0, 3.0].into_iter(), 0.05).unwrap();
        assert!((r.start - 0.9).abs() < 1e-12 && (r.end - 3.1).abs() < 1e-12);
        let flat = padded([2.0].into_iter(), 0.05).unwrap();
        assert!(flat.start < 2.0 && flat.end > 2.0);
        let one_step = padded([5.0].into_iter(), 0.0).unwrap();
        assert_eq!(one_step, 4.0..6.0);
        assert!(padded(std::iter::empty(), 0.05).is_none());
    }

    #[test]
    fn learning_rates_are_labelled_in_scientific_notation_and_losses_by_their_span() {
        assert_eq!(value_format(&(0.0..2e-4))(1e-4), "1.0e-4");
        assert_eq!(value_format(&(0.0..3.0))(2.5), "2.5");
        assert_eq!(value_format(&(1.9..2.1))(2.0), "2.00");
        assert_eq!(value_format(&(0.0..1500.0))(1234.4), "1234");
    }
}
