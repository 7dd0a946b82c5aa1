//! Helpers shared by the benchmarks that compare darec with PyTorch.

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
