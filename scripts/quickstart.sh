#!/usr/bin/env bash
# The embedded default job: fetch MovieLens-1M (and ML-100K, MiniLM, SmolLM2), build darec,
# train LightGCN on ML-1M under RLMRec's protocol and print the test metrics.
# Extra arguments go to `darec train`, e.g. `--set train.max_epochs=30`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/fetch_data.sh all
cargo build --release --locked
./target/release/darec data stats ml-1m
./target/release/darec train --config configs/ml-1m-lightgcn.toml --out runs/quickstart-ml-1m-lightgcn "$@"
