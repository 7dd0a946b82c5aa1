//! Imports run one way: the layers below never import the layers above them (issue 15:
//! `config.rs`, `align/` and `backbone/` used to import each other in a circle). A
//! `crate::<module>` path in a file of a lower layer names the file and the module.

use std::path::Path;

/// Levels from the bottom: a module may import modules of lower levels only, never one of
/// its own level (backbones and alignments do not know each other) nor one above. Modules
/// under `src/` (file or directory), by level.
const LEVELS: &[&[&str]] = &[
    &["rng", "cache"],
    &["step", "data"],
    &["text", "eval"],
    &["backbone", "align"],
];
/// The layers above every level: nothing below may import them.
const UPPER: &[&str] = &["config", "train", "experiment", "pipeline", "serve"];

/// Modules that `module` (at `level`) must not import.
fn forbidden(level: usize, module: &str) -> Vec<&'static str> {
    let mut f: Vec<&str> = LEVELS[level..]
        .iter()
        .flat_map(|l| l.iter().copied())
        .filter(|m| *m != module)
        .collect();
    f.extend(UPPER);
    f
}

fn rust_files(p: &Path, out: &mut Vec<std::path::PathBuf>) {
    if p.is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            rust_files(&e.unwrap().path(), out);
        }
    } else if p.is_file() && p.extension().is_some_and(|e| e == "rs") {
        out.push(p.to_path_buf());
    }
}

#[test]
fn lower_layers_never_import_upper_ones() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut broken = Vec::new();
    for (level, modules) in LEVELS.iter().enumerate() {
        for module in *modules {
            let forbidden = forbidden(level, module);
            let mut files = Vec::new();
            rust_files(&src.join(module), &mut files);
            rust_files(&src.join(format!("{module}.rs")), &mut files);
            assert!(!files.is_empty(), "no files for module {module}");
            for f in files {
                let text = std::fs::read_to_string(&f).unwrap();
                for (n, line) in text.lines().enumerate() {
                    let code = line.split("//").next().unwrap_or("");
                    for m in &forbidden {
                        if code.contains(&format!("crate::{m}::"))
                            || code.contains(&format!("crate::{m};"))
                        {
                            broken.push(format!("{}:{}: imports `{m}`", f.display(), n + 1));
                        }
                    }
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "imports against the layering:\n{}",
        broken.join("\n")
    );
}
