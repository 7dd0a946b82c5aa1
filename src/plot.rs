//! 2-D maps of DaRec's shared space (like the paper's t-SNE figure): sampled users and
//! items projected to 2-D by t-SNE (`crate::tsne`) or their first two principal
//! components, coloured by their K-means preference centre, with the centres drawn large;
//! collaborative side left, language side right. PNG (no text: no font is needed) and SVG
//! (with titles).

use crate::align::kmeans::kmeans;
use crate::rng::Rng;
use plotters::prelude::*;
use std::path::Path;

/// Projects rows (`[n, d]`) onto their two leading principal components (power iteration
/// with deflation on the covariance).
pub fn pca_2d(x: &[f32], n: usize, d: usize) -> Vec<(f32, f32)> {
    let mut mean = vec![0f64; d];
    for i in 0..n {
        for j in 0..d {
            mean[j] += x[i * d + j] as f64 / n as f64;
        }
    }
    let mut cov = vec![0f64; d * d];
    for i in 0..n {
        for a in 0..d {
            let xa = x[i * d + a] as f64 - mean[a];
            for b in 0..d {
                cov[a * d + b] += xa * (x[i * d + b] as f64 - mean[b]);
            }
        }
    }
    let mut comps: Vec<Vec<f64>> = Vec::new();
    for c in 0..2 {
        let mut v: Vec<f64> = (0..d).map(|j| 1.0 + (j * (c + 1)) as f64 * 0.01).collect();
        for _ in 0..200 {
            let mut w = vec![0f64; d];
            for a in 0..d {
                for b in 0..d {
                    w[a] += cov[a * d + b] * v[b];
                }
            }
            for p in &comps {
                let dot: f64 = w.iter().zip(p).map(|(a, b)| a * b).sum();
                w.iter_mut().zip(p).for_each(|(a, b)| *a -= dot * b);
            }
            let norm = w.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-12);
            v = w.into_iter().map(|a| a / norm).collect();
        }
        comps.push(v);
    }
    (0..n)
        .map(|i| {
            let row = |c: &Vec<f64>| {
                (0..d)
                    .map(|j| (x[i * d + j] as f64 - mean[j]) * c[j])
                    .sum::<f64>() as f32
            };
            (row(&comps[0]), row(&comps[1]))
        })
        .collect()
}

/// One panel's data: 2-D points, cluster of each point, and the centres.
pub struct Panel {
    pub title: String,
    pub points: Vec<(f32, f32)>,
    pub cluster: Vec<usize>,
    pub centres: Vec<(f32, f32)>,
}

/// How rows are brought down to 2-D.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Projection {
    /// t-SNE (perplexity 30), as in the paper's figure.
    Tsne,
    /// The two leading principal components (fast, linear).
    Pca,
}

/// Clusters normalised rows into `k` groups and projects points and centres to 2-D.
pub fn panel(
    title: &str,
    x: &[f32],
    (n, d): (usize, usize),
    k: usize,
    seed: u64,
    projection: Projection,
) -> Panel {
    let cluster = kmeans(x, n, d, k, 20, &mut Rng::derive(seed, "plot-kmeans"));
    let points = match projection {
        Projection::Pca => pca_2d(x, n, d),
        Projection::Tsne => crate::tsne::tsne_2d(
            x,
            n,
            d,
            &crate::tsne::TsneConfig {
                seed,
                ..Default::default()
            },
        ),
    };
    let k = cluster.iter().max().map_or(0, |m| m + 1);
    let centres = (0..k)
        .map(|c| {
            let members: Vec<&(f32, f32)> = points
                .iter()
                .zip(&cluster)
                .filter(|(_, &a)| a == c)
                .map(|(p, _)| p)
                .collect();
            let m = members.len().max(1) as f32;
            (
                members.iter().map(|p| p.0).sum::<f32>() / m,
                members.iter().map(|p| p.1).sum::<f32>() / m,
            )
        })
        .collect();
    Panel {
        title: title.into(),
        points,
        cluster,
        centres,
    }
}

/// Recolours `right`'s clusters after the `left` cluster each is matched to: centres
/// (member means of the rows `x*`, `[n, d]`) are paired by maximal total cosine, as DaRec's
/// local alignment pairs them, so matched preference centres share a colour.
pub fn match_colours(left: &Panel, xl: &[f32], right: &mut Panel, xr: &[f32], d: usize) {
    let k = left.centres.len().max(right.centres.len());
    let centroids = |x: &[f32], cluster: &[usize]| {
        let mut c = vec![0f64; k * d];
        for (i, &a) in cluster.iter().enumerate() {
            for j in 0..d {
                c[a * d + j] += x[i * d + j] as f64;
            }
        }
        for row in c.chunks_mut(d) {
            let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
            row.iter_mut().for_each(|v| *v /= norm);
        }
        c
    };
    let (cl, cr) = (centroids(xl, &left.cluster), centroids(xr, &right.cluster));
    let cos: Vec<f64> = (0..k * k)
        .map(|ab| {
            let (a, b) = (ab / k, ab % k);
            (0..d).map(|j| cl[a * d + j] * cr[b * d + j]).sum()
        })
        .collect();
    // pi[a] = right cluster matched to left cluster a
    let pi = crate::align::hungarian::max_score_assignment(&cos, k);
    let mut new_label = vec![0usize; k];
    for (a, &b) in pi.iter().enumerate() {
        new_label[b] = a;
    }
    right.cluster.iter_mut().for_each(|c| *c = new_label[*c]);
    let mut centres = vec![(0f32, 0f32); k];
    for (b, c) in right.centres.iter().enumerate() {
        centres[new_label[b]] = *c;
    }
    right.centres = centres;
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    panels: &[Panel],
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let areas = root.split_evenly((1, panels.len()));
    for (area, p) in areas.iter().zip(panels) {
        let (xs, ys): (Vec<f32>, Vec<f32>) = p.points.iter().cloned().unzip();
        let lo = |v: &[f32]| v.iter().cloned().fold(f32::INFINITY, f32::min);
        let hi = |v: &[f32]| v.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let pad = |a: f32, b: f32| ((b - a) * 0.05).max(1e-3);
        let (x0, x1, y0, y1) = (lo(&xs), hi(&xs), lo(&ys), hi(&ys));
        let mut builder = ChartBuilder::on(area);
        builder.margin(12);
        builder.caption(&p.title, ("sans-serif", 18));
        let mut chart = builder
            .build_cartesian_2d(
                (x0 - pad(x0, x1))..(x1 + pad(x0, x1)),
                (y0 - pad(y0, y1))..(y1 + pad(y0, y1)),
            )
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        chart
            .draw_series(
                p.points.iter().zip(&p.cluster).map(|(&(x, y), &c)| {
                    Circle::new((x, y), 2, Palette99::pick(c).mix(0.5).filled())
                }),
            )
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        chart
            .draw_series(p.centres.iter().enumerate().map(|(c, &(x, y))| {
                Cross::new(
                    (x, y),
                    9,
                    ShapeStyle::from(&Palette99::pick(c)).stroke_width(4),
                )
            }))
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        chart
            .draw_series(
                p.centres.iter().map(|&(x, y)| {
                    Circle::new((x, y), 10, ShapeStyle::from(&BLACK).stroke_width(2))
                }),
            )
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    root.present().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(())
}

/// Writes `<stem>.png` and `<stem>.svg`; both carry the panel titles.
pub fn write_map(stem: &Path, panels: &[Panel]) -> anyhow::Result<()> {
    let (w, h) = (520 * panels.len() as u32, 520);
    let png = stem.with_extension("png");
    draw(
        crate::plot_backend::TextBitmap::new(&png, (w, h)).into_drawing_area(),
        panels,
    )?;
    let svg = stem.with_extension("svg");
    draw(SVGBackend::new(&svg, (w, h)).into_drawing_area(), panels)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same rows clustered with permuted labels get the left side's labels back.
    #[test]
    fn matched_colours_undo_a_label_permutation() {
        let x = [1f32, 0., 0.9, 0.1, 0., 1., 0.1, 0.9, -1., 0., -0.9, -0.1];
        let panel = |cluster: Vec<usize>| Panel {
            title: String::new(),
            points: vec![(0.0, 0.0); 6],
            centres: (0..3).map(|c| (c as f32, 0.0)).collect(),
            cluster,
        };
        let left = panel(vec![0, 0, 1, 1, 2, 2]);
        let mut right = panel(vec![2, 2, 0, 0, 1, 1]);
        match_colours(&left, &x, &mut right, &x, 2);
        assert_eq!(right.cluster, left.cluster);
        // right's old centre 2 (x = 2.0) belonged to the points now labelled 0
        assert_eq!(right.centres[0], (2.0, 0.0));
    }

    #[test]
    fn pca_finds_the_main_axis() {
        // points spread along (1, 1, 0) with small noise on the other axes
        let mut x = Vec::new();
        for i in 0..50 {
            let t = i as f32 - 25.0;
            x.extend_from_slice(&[t, t, 0.01 * (i % 3) as f32]);
        }
        let p = pca_2d(&x, 50, 3);
        let spread1: f32 = p.iter().map(|q| q.0 * q.0).sum();
        let spread2: f32 = p.iter().map(|q| q.1 * q.1).sum();
        assert!(spread1 > 1000.0 * spread2.max(1e-6), "{spread1} {spread2}");
        // t = i - 25 has mean -0.5, so the first point's centred t is -24.5 and its first
        // coordinate is +-sqrt(2) * 24.5
        assert!(
            (p[0].0.abs() - 24.5 * 2f32.sqrt()).abs() < 1e-2,
            "{}",
            p[0].0
        );
    }
}
