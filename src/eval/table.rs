//! Markdown table of evaluation results: one row per run, columns R@K, N@K, P@K, H@K.

use super::metrics::Metrics;
use std::collections::BTreeSet;

/// Markdown table: one row per `(label, metrics)`, columns `R@K` for every K found in the
/// rows (ascending), then `N@K`, `P@K`, `H@K`; 4 decimals, `-` where a row lacks a value.
pub fn markdown_table(rows: &[(String, Metrics)]) -> String {
    let ks: BTreeSet<usize> = rows
        .iter()
        .flat_map(|(_, m)| m.values.keys())
        .filter_map(|key| key.split_once('@').and_then(|(_, k)| k.parse().ok()))
        .collect();
    let cols = [
        ("recall", "R"),
        ("ndcg", "N"),
        ("precision", "P"),
        ("hit", "H"),
    ];
    let mut header = String::from("| model |");
    let mut rule = String::from("|---|");
    for (_, short) in cols {
        for k in &ks {
            header.push_str(&format!(" {short}@{k} |"));
            rule.push_str("---|");
        }
    }
    let mut s = format!("{header}\n{rule}\n");
    for (label, m) in rows {
        s.push_str(&format!("| {} |", label.replace('|', "\\|")));
        for (name, _) in cols {
            for k in &ks {
                match m.get(&format!("{name}@{k}")) {
                    Some(v) => s.push_str(&format!(" {v:.4} |")),
                    None => s.push_str(" - |"),
                }
            }
        }
        s.push('\n');
    }
    s
}
