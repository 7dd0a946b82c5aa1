//! Every config shipped in `configs/` loads: run configs through `Config::load` (types,
//! unknown keys, validation), and each variant of a comparison and each trial of a tuning
//! as its base plus its overrides, so a typo in a shipped config fails here and not hours
//! into a grid.

use darec::config::Config;
use darec::experiment::{CompareConfig, TuneConfig};
use std::path::Path;

#[test]
fn every_shipped_config_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::set_current_dir(root).unwrap();
    let mut checked = 0;
    for e in std::fs::read_dir(root.join("configs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&p).unwrap();
        let load = |base: &Path, sets: &[String], what: &str| {
            Config::load(Some(base), sets).unwrap_or_else(|e| panic!("{name} ({what}): {e:#}"));
        };
        if name.starts_with("compare-") {
            let c: CompareConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            for v in &c.variants {
                let sets: Vec<String> = c.set.iter().chain(&v.set).cloned().collect();
                load(&c.base, &sets, &v.name);
            }
        } else if name.starts_with("tune-") {
            let t: TuneConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            for trial in t.trials().unwrap() {
                let sets: Vec<String> = t.set.iter().chain(&trial).cloned().collect();
                load(&t.base, &sets, &trial.join(" "));
            }
        } else {
            load(&p, &[], "run config");
        }
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} configs found");
}
