//! Imports run one way: the layers below never import the layers above them (issue 15:
//! `config.rs`, `align/` and `backbone/` used to import each other in a circle). A
//! `crate::<module>` path in a file of a lower layer names the file and the module.

use std::path::Path;

/// (layer directory or file under `src/`, modules it must not import).
const RULES: &[(&str, &[&str])] = &[
    (
        "cache.rs",
        &[
            "config",
            "data",
            "backbone",
            "align",
            "step",
            "train",
            "experiment",
            "pipeline",
            "serve",
            "text",
        ],
    ),
    (
        "rng.rs",
        &[
            "config",
            "data",
            "backbone",
            "align",
            "step",
            "train",
            "experiment",
            "pipeline",
            "serve",
            "text",
        ],
    ),
    (
        "step",
        &[
            "config",
            "data",
            "backbone",
            "align",
            "train",
            "experiment",
            "pipeline",
            "serve",
            "text",
        ],
    ),
    (
        "data",
        &[
            "config",
            "backbone",
            "align",
            "step",
            "train",
            "experiment",
            "pipeline",
            "serve",
            "text",
            "eval",
        ],
    ),
    (
        "backbone",
        &[
            "config",
            "align",
            "train",
            "experiment",
            "pipeline",
            "serve",
            "text",
        ],
    ),
    (
        "align",
        &[
            "config",
            "backbone",
            "train",
            "experiment",
            "pipeline",
            "serve",
        ],
    ),
    (
        "eval",
        &[
            "config",
            "backbone",
            "align",
            "train",
            "experiment",
            "pipeline",
            "serve",
        ],
    ),
    (
        "text",
        &[
            "config",
            "backbone",
            "align",
            "train",
            "experiment",
            "pipeline",
            "serve",
        ],
    ),
];

fn rust_files(p: &Path, out: &mut Vec<std::path::PathBuf>) {
    if p.is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            rust_files(&e.unwrap().path(), out);
        }
    } else if p.extension().is_some_and(|e| e == "rs") {
        out.push(p.to_path_buf());
    }
}

#[test]
fn lower_layers_never_import_upper_ones() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut broken = Vec::new();
    for (layer, forbidden) in RULES {
        let mut files = Vec::new();
        rust_files(&src.join(layer), &mut files);
        assert!(!files.is_empty(), "no files for layer {layer}");
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for m in *forbidden {
                    if code.contains(&format!("crate::{m}::"))
                        || code.contains(&format!("crate::{m};"))
                    {
                        broken.push(format!("{}:{}: imports `{m}`", f.display(), n + 1));
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
