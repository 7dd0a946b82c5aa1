//! Helpers shared by the benchmarks that compare darec with PyTorch.
#![allow(dead_code)] // each bench uses a subset of these helpers

use std::process::Command;

/// `key` from the environment, or `default`.
pub fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}

/// A Python interpreter that can run `import <modules>`: `$DAREC_TORCH_PYTHON`, then
/// `.venv-bench/bin/python`, then `python3`.
pub fn python_with(modules: &str) -> Option<String> {
    let candidates = [
        std::env::var("DAREC_TORCH_PYTHON").ok(),
        Some(".venv-bench/bin/python".into()),
        Some("python3".into()),
    ];
    candidates.into_iter().flatten().find(|py| {
        Command::new(py)
            .args(["-c", &format!("import {modules}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    })
}

/// The result of a PyTorch script run: `None` (with the failure printed) when it failed,
/// else its last JSON line (printed as `pytorch <label>: ...`) and that line's `epoch_s`.
pub fn torch_run(
    out: &std::process::Output,
    label: &str,
) -> anyhow::Result<Option<(serde_json::Value, Vec<f64>)>> {
    if !out.status.success() {
        eprintln!(
            "PyTorch {label} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or("{}")
        .to_string();
    eprintln!("pytorch {label}: {line}");
    let v: serde_json::Value = serde_json::from_str(&line)?;
    let epochs = v["epoch_s"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
        .unwrap_or_default();
    Ok(Some((v, epochs)))
}
