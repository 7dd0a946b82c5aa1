//! Summaries over several runs: mean and sample standard deviation of each test metric
//! per group (e.g. dataset x model over seeds), as a markdown table.

use crate::eval::Metrics;
use std::path::{Path, PathBuf};

/// Mean and sample standard deviation (n-1; 0 for a single value).
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// One group of runs sharing a label.
pub struct Group {
    pub label: String,
    pub runs: Vec<Metrics>,
}

/// Groups `(label, metrics)` rows by label, keeping first-seen order.
pub fn group(rows: Vec<(String, Metrics)>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for (label, m) in rows {
        match groups.iter_mut().find(|g| g.label == label) {
            Some(g) => g.runs.push(m),
            None => groups.push(Group {
                label,
                runs: vec![m],
            }),
        }
    }
    groups
}

/// Markdown table of `mean ± std` per metric key, one row per group, with the number of runs.
pub fn mean_std_table(groups: &[Group], keys: &[&str]) -> String {
    let mut s = String::from("| model | runs |");
    for k in keys {
        s.push_str(&format!(" {} |", short(k)));
    }
    s.push_str("\n|---|---|");
    s.push_str(&"---|".repeat(keys.len()));
    s.push('\n');
    for g in groups {
        s.push_str(&format!("| {} | {} |", g.label, g.runs.len()));
        for k in keys {
            let xs: Vec<f64> = g.runs.iter().filter_map(|m| m.get(k)).collect();
            let (m, sd) = mean_std(&xs);
            s.push_str(&format!(" {m:.4} ± {sd:.4} |"));
        }
        s.push('\n');
    }
    s
}

/// `recall@20` -> `R@20`.
pub fn short(key: &str) -> String {
    let (name, k) = key.split_once('@').unwrap_or((key, ""));
    let letter = match name {
        "recall" => "R",
        "ndcg" => "N",
        "precision" => "P",
        "hit" => "H",
        other => other,
    };
    format!("{letter}@{k}")
}

/// The standard six columns.
pub const MAIN_KEYS: [&str; 6] = [
    "recall@5",
    "recall@10",
    "recall@20",
    "ndcg@5",
    "ndcg@10",
    "ndcg@20",
];

/// Finds `metrics.json` files under the given paths (a run directory or a parent of runs).
pub fn find_runs(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.join("metrics.json").exists() {
            out.push(p.clone());
        } else if let Ok(rd) = std::fs::read_dir(p) {
            let mut subs: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            subs.sort();
            out.extend(subs.into_iter().filter(|s| s.join("metrics.json").exists()));
        }
    }
    out
}

/// Reads `(dataset backbone, test metrics)` of a run directory.
pub fn read_run(dir: &Path) -> anyhow::Result<(String, Metrics)> {
    let p = dir.join("metrics.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p)?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
    let label = format!(
        "{} {}",
        v["dataset"].as_str().unwrap_or("?"),
        v.get("label")
            .and_then(|l| l.as_str())
            .unwrap_or(v["backbone"].as_str().unwrap_or("?"))
    );
    let test: Metrics = serde_json::from_value(v["test"].clone())
        .map_err(|e| anyhow::anyhow!("{}: test: {e}", p.display()))?;
    Ok((label, test))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_std_by_hand() {
        // 1, 2, 3, 6: mean 3, squared deviations 4+1+0+9 = 14, /3 -> 4.6667, sqrt 2.1602
        let (m, s) = mean_std(&[1.0, 2.0, 3.0, 6.0]);
        assert!((m - 3.0).abs() < 1e-12);
        assert!((s - 2.160247).abs() < 1e-6);
        assert_eq!(mean_std(&[5.0]), (5.0, 0.0));
    }

    #[test]
    fn table_groups_rows_by_label() {
        let m = |r: f64| Metrics {
            n_users: 1,
            values: [("recall@20".to_string(), r)].into_iter().collect(),
            ..Default::default()
        };
        let g = group(vec![
            ("a".into(), m(0.1)),
            ("b".into(), m(0.5)),
            ("a".into(), m(0.3)),
        ]);
        let t = mean_std_table(&g, &["recall@20"]);
        assert!(t.contains("| a | 2 | 0.2000 ± 0.1414 |"), "{t}");
        assert!(t.contains("| b | 1 | 0.5000 ± 0.0000 |"), "{t}");
    }
}
