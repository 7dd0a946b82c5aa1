//! From a [`DataConfig`] to a prepared [`Dataset`]: picks the reader for the format and
//! runs the preparation (threshold, k-core, split).

use super::config::{DataConfig, DataFormat};
use super::{delimited, prepare, recbole, rlmrec, Dataset};
use anyhow::Context;

pub fn load_dataset(cfg: &DataConfig) -> anyhow::Result<Dataset> {
    let path = cfg.resolved_path();
    let hint = || {
        if cfg.path.starts_with("@cache/") {
            format!(
                "dataset `{}` not found at {}: run `bash scripts/fetch_data.sh data` first",
                cfg.name,
                path.display()
            )
        } else {
            format!("dataset `{}` not found at {}", cfg.name, path.display())
        }
    };
    if !path.exists() {
        anyhow::bail!(hint());
    }
    let raw = match cfg.format {
        DataFormat::Recbole => {
            let stem = cfg.recbole_stem.clone().unwrap_or_else(|| cfg.name.clone());
            recbole::read_recbole(&path, &stem, &cfg.recbole)?
        }
        DataFormat::Delimited => delimited::read_delimited(&path, &cfg.delimited)?,
        DataFormat::Rlmrec => rlmrec::read_rlmrec(&path, cfg.rlmrec_format)?,
    };
    if raw.is_empty() {
        anyhow::bail!(
            "{}: no interactions: the data is empty or holds only a header",
            path.display()
        );
    }
    let ds = prepare::prepare(raw, &cfg.name, &cfg.prepare)
        .with_context(|| format!("preparing dataset `{}` from {}", cfg.name, path.display()))?;
    Ok(ds)
}
