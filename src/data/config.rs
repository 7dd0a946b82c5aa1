//! The data section of a run's configuration: which reader, where, and how to prepare.
//! It lives with the readers it configures; `config.rs` gathers it with the other sections.

use super::delimited::DelimitedOptions;
use super::prepare::PrepareOptions;
use super::recbole::RecboleOptions;
use super::rlmrec::RlmrecFormat;
use crate::cache::resolve_cache_path;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DataFormat {
    /// RecBole atomic files `<path>/<name>.inter` (+ `.item`, `.user`).
    #[default]
    Recbole,
    /// One delimited interaction file at `<path>`.
    Delimited,
    /// RLMRec's split directory `<path>/{trn,val,tst}_mat.pkl` or `.tsv`.
    Rlmrec,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Dataset name; a built-in name brings its own defaults.
    pub name: String,
    pub format: DataFormat,
    /// Directory (recbole, rlmrec) or file (delimited). A leading `@cache/` stands for the
    /// download cache: `$DAREC_CACHE`, or `.cache` in the working directory.
    pub path: String,
    /// File stem of RecBole atomic files (defaults to `name`).
    pub recbole_stem: Option<String>,
    pub recbole: RecboleOptions,
    pub delimited: DelimitedOptions,
    pub rlmrec_format: RlmrecFormat,
    pub prepare: PrepareOptions,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            name: "ml-1m".into(),
            format: DataFormat::Recbole,
            path: "@cache/data/ml-1m".into(),
            recbole_stem: None,
            recbole: RecboleOptions::default(),
            delimited: DelimitedOptions::default(),
            rlmrec_format: RlmrecFormat::default(),
            prepare: PrepareOptions::default(),
        }
    }
}

impl DataConfig {
    /// The data path with `@cache/` expanded.
    pub fn resolved_path(&self) -> PathBuf {
        resolve_cache_path(&self.path)
    }
}
