//! `darec plot --run A --run B [--x seconds]`: one validation metric of several runs on
//! one chart, against epochs or against wall time (training plus validation, from
//! `metrics.jsonl`), so that a faster mode and a slower one can be compared by the time
//! they take to reach a quality, not by their epochs. PNG and SVG, as `curves`.

use anyhow::Context;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// The x axis of a comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum XAxis {
    Epoch,
    Seconds,
}

/// One run's validation curve.
#[derive(Debug, Clone)]
pub struct RunCurve {
    pub label: String,
    /// `(epoch or seconds, metric)` at every validation.
    pub points: Vec<(f64, f64)>,
}

/// The validation points of `metric` in a run's `metrics.jsonl`. Wall time is the logged
/// `elapsed_seconds`, or for runs logged before it existed, the sum of each validation's
/// epoch time times the epochs since the previous one plus its validation time.
pub fn read_run_curve(dir: &Path, metric: &str, x: XAxis) -> anyhow::Result<Vec<(f64, f64)>> {
    let log = dir.join("metrics.jsonl");
    let text =
        std::fs::read_to_string(&log).with_context(|| format!("{}: cannot read", log.display()))?;
    let (mut points, mut clock, mut last_epoch) = (Vec::new(), 0.0f64, 0.0f64);
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue; // a torn last line
        };
        if v["split"] != "valid" {
            continue;
        }
        let (Some(epoch), Some(y)) = (v["epoch"].as_f64(), v[metric].as_f64()) else {
            continue;
        };
        let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
        clock += (epoch - last_epoch) * f("epoch_seconds") + f("eval_seconds");
        last_epoch = epoch;
        let at = match x {
            XAxis::Epoch => epoch,
            XAxis::Seconds => v["elapsed_seconds"].as_f64().unwrap_or(clock),
        };
        points.push((at, y));
    }
    if points.is_empty() {
        anyhow::bail!("{}: no validation line with `{metric}`", log.display());
    }
    Ok(points)
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("{e:?}")
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    runs: &[RunCurve],
    metric: &str,
    x: XAxis,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    let pts = runs.iter().flat_map(|r| r.points.iter());
    let (mut x1, mut y0, mut y1) = (0.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for &(a, b) in pts {
        x1 = x1.max(a);
        y0 = y0.min(b);
        y1 = y1.max(b);
    }
    if !(y1 > y0) {
        y1 = y0 + 1e-3;
    }
    let pad = (y1 - y0) * 0.08;
    let x_desc = match x {
        XAxis::Epoch => "epoch",
        XAxis::Seconds => "wall time, training + validation (s)",
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("validation {metric}"), ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x1 * 1.02 + 1e-9, (y0 - pad)..(y1 + pad))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_label_formatter(&|y| format!("{y:.3}"))
        .draw()
        .map_err(err)?;
    for (n, r) in runs.iter().enumerate() {
        let colour = Palette99::pick(n).to_rgba();
        chart
            .draw_series(LineSeries::new(
                r.points.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(err)?
            .label(r.label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// A run's label: its directory name.
fn label(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

/// Writes `<stem>.png` and `<stem>.svg`: `metric` of every run in `dirs` against `x`.
pub fn plot_runs(
    dirs: &[PathBuf],
    metric: &str,
    x: XAxis,
    stem: &Path,
) -> anyhow::Result<Vec<RunCurve>> {
    let runs = dirs
        .iter()
        .map(|d| {
            Ok(RunCurve {
                label: label(d),
                points: read_run_curve(d, metric, x)?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let size = (1000, 600);
    let png = stem.with_extension("png");
    draw(
        crate::plot_backend::TextBitmap::new(&png, size).into_drawing_area(),
        &runs,
        metric,
        x,
    )?;
    let svg = stem.with_extension("svg");
    draw(
        SVGBackend::new(&svg, size).into_drawing_area(),
        &runs,
        metric,
        x,
    )?;
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_time_is_logged_or_rebuilt_from_epoch_and_validation_times() {
        let dir = std::env::temp_dir().join(format!("darec-curves-cmp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("metrics.jsonl"),
            "{\"epoch\":3,\"split\":\"valid\",\"recall@20\":0.1,\"epoch_seconds\":2.0,\"eval_seconds\":0.5}\n\
             {\"epoch\":6,\"split\":\"valid\",\"recall@20\":0.2,\"epoch_seconds\":1.0,\"eval_seconds\":0.5,\"elapsed_seconds\":9.0}\n\
             {\"epoch\":9,\"split\":\"valid\",\"recall@20\":0.3,\"epoch_seconds\":1.0,\"eval_seconds\":0.5}\n\
             {\"epoch\":6,\"split\":\"test\",\"recall@20\":0.25}\n",
        )
        .unwrap();
        let s = read_run_curve(&dir, "recall@20", XAxis::Seconds).unwrap();
        // 3 * 2 + 0.5 = 6.5; logged 9; then 6.5 + 3.5 + 3.5 = 13.5 rebuilt
        assert_eq!(s, vec![(6.5, 0.1), (9.0, 0.2), (13.5, 0.3)]);
        let e = read_run_curve(&dir, "recall@20", XAxis::Epoch).unwrap();
        assert_eq!(e, vec![(3.0, 0.1), (6.0, 0.2), (9.0, 0.3)]);
        assert!(read_run_curve(&dir, "ndcg@20", XAxis::Epoch).is_err());
        let out = plot_runs(
            &[dir.clone(), dir.clone()],
            "recall@20",
            XAxis::Seconds,
            &dir.join("cmp"),
        )
        .unwrap();
        assert_eq!(out.len(), 2);
        assert!(dir.join("cmp.png").exists() && dir.join("cmp.svg").exists());
        std::fs::remove_dir_all(&dir).ok();
    }
}
