//! `darec plot`: a run's training curves from its `metrics.jsonl` (one line per
//! validation): every loss term (mean per step over the epochs since the last validation,
//! log scale) and the validation metrics at the largest K, with the best epoch marked. The
//! same chart is written as PNG ([`crate::plot_backend::TextBitmap`]) and SVG.

use anyhow::Context;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// Named series over epochs.
#[derive(Debug, Default)]
pub struct Curves {
    pub losses: BTreeMap<String, Vec<(f64, f64)>>,
    pub metrics: BTreeMap<String, Vec<(f64, f64)>>,
    pub best_epoch: Option<f64>,
}

/// Reads the validation lines of a `metrics.jsonl` (test lines and torn lines are skipped).
pub fn read_curves(log: &Path) -> anyhow::Result<Curves> {
    let text =
        std::fs::read_to_string(log).with_context(|| format!("{}: cannot read", log.display()))?;
    let mut c = Curves::default();
    let mut ks: Vec<u64> = Vec::new();
    let mut rows = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v.get("split").and_then(|s| s.as_str()) != Some("valid") {
            continue;
        }
        let Some(epoch) = v.get("epoch").and_then(|e| e.as_f64()) else {
            continue;
        };
        if let Some(obj) = v.as_object() {
            for k in obj
                .keys()
                .filter_map(|k| k.split_once('@'))
                .filter_map(|(_, k)| k.parse().ok())
            {
                if !ks.contains(&k) {
                    ks.push(k);
                }
            }
        }
        rows.push((epoch, v));
    }
    let kmax = ks.iter().max().copied();
    for (epoch, v) in rows {
        let obj = v.as_object().expect("a JSON object line");
        for (key, val) in obj {
            let Some(x) = val.as_f64().filter(|x| x.is_finite()) else {
                continue;
            };
            if let Some(name) = key.strip_prefix("loss_") {
                c.losses
                    .entry(name.to_string())
                    .or_default()
                    .push((epoch, x));
            } else if let Some((name, k)) = key.split_once('@') {
                if k.parse::<u64>().ok() == kmax && name != "precision" && name != "hit" {
                    c.metrics.entry(key.clone()).or_default().push((epoch, x));
                }
            }
        }
        if v.get("best").and_then(|b| b.as_bool()) == Some(true) {
            c.best_epoch = Some(epoch);
        }
    }
    if c.losses.is_empty() && c.metrics.is_empty() {
        anyhow::bail!("{}: no validation lines to plot", log.display());
    }
    Ok(c)
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("{e:?}")
}

fn range(series: &BTreeMap<String, Vec<(f64, f64)>>) -> (f64, f64, f64, f64) {
    let pts = series.values().flatten();
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if !x0.is_finite() {
        return (0.0, 1.0, 0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + y0.abs().max(1e-9);
    }
    (x0, x1, y0, y1)
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    c: &Curves,
    title: &str,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, ("sans-serif", 20)).map_err(err)?;
    let (left, right) = root.split_horizontally(root.dim_in_pixel().0 / 2);
    // losses, log scale (terms differ by orders of magnitude)
    let positive: BTreeMap<String, Vec<(f64, f64)>> = c
        .losses
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.iter().copied().filter(|p| p.1 > 0.0).collect::<Vec<_>>(),
            )
        })
        .filter(|(_, v): &(String, Vec<(f64, f64)>)| !v.is_empty())
        .collect();
    let (x0, x1, y0, y1) = range(&positive);
    let mut chart = ChartBuilder::on(&left)
        .caption("loss terms (mean per step)", ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, (y0 * 0.8..y1 * 1.25).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_label_formatter(&|y| format!("{y:.0e}"))
        .draw()
        .map_err(err)?;
    for (n, (name, pts)) in positive.iter().enumerate() {
        let colour = Palette99::pick(n).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), colour.stroke_width(2)))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    // validation metrics
    let (x0, x1, y0, y1) = range(&c.metrics);
    let pad = (y1 - y0) * 0.1;
    let mut chart = ChartBuilder::on(&right)
        .caption("validation", ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_label_formatter(&|y| format!("{y:.3}"))
        .draw()
        .map_err(err)?;
    for (n, (name, pts)) in c.metrics.iter().enumerate() {
        let colour = Palette99::pick(n + 5).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), colour.stroke_width(2)))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
            });
    }
    if let Some(b) = c.best_epoch {
        chart
            .draw_series(LineSeries::new(
                vec![(b, y0 - pad), (b, y1 + pad)],
                BLACK.mix(0.4),
            ))
            .map_err(err)?
            .label(format!("best epoch {b}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK.mix(0.4)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// Writes `<stem>.png` and `<stem>.svg` for the run in `dir`.
pub fn plot_run(dir: &Path, stem: &Path) -> anyhow::Result<Curves> {
    let c = read_curves(&dir.join("metrics.jsonl"))?;
    let title = std::fs::read_to_string(dir.join("config.toml"))
        .ok()
        .and_then(|t| {
            crate::config::Config::load(Some(&dir.join("config.toml")), &[])
                .ok()
                .map(|c| (t, c))
        })
        .map(|(_, c)| format!("{} {} seed {}", c.data.name, c.label(), c.train.seed))
        .unwrap_or_else(|| dir.display().to_string());
    let size = (1200, 500);
    let png = stem.with_extension("png");
    draw(
        crate::plot_backend::TextBitmap::new(&png, size).into_drawing_area(),
        &c,
        &title,
    )?;
    let svg = stem.with_extension("svg");
    draw(SVGBackend::new(&svg, size).into_drawing_area(), &c, &title)?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_losses_and_top_k_metrics_and_best_epoch() {
        let dir = std::env::temp_dir().join(format!("darec-curves-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("metrics.jsonl");
        std::fs::write(
            &log,
            "{\"epoch\":3,\"split\":\"valid\",\"recall@5\":0.1,\"recall@20\":0.2,\"ndcg@20\":0.15,\"loss_bpr\":0.5,\"best\":true}\n\
             {\"epoch\":6,\"split\":\"valid\",\"recall@5\":0.1,\"recall@20\":0.19,\"ndcg@20\":0.14,\"loss_bpr\":0.3,\"best\":false}\n\
             {\"epoch\":3,\"split\":\"test\",\"recall@20\":0.3}\n{\"epoch\":9,\"spl",
        )
        .unwrap();
        let c = read_curves(&log).unwrap();
        assert_eq!(c.losses["bpr"], vec![(3.0, 0.5), (6.0, 0.3)]);
        assert_eq!(
            c.metrics.keys().collect::<Vec<_>>(),
            vec!["ndcg@20", "recall@20"]
        );
        assert_eq!(c.best_epoch, Some(3.0));
        std::fs::write(&log, "").unwrap();
        assert!(read_curves(&log).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
