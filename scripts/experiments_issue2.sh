#!/usr/bin/env bash
# Reproduces the foundation results in README.md: MostPop, MF and LightGCN on RLMRec's
# amazon and yelp splits and on ML-1M (ratings >= 4, random 3:1:1), three seeds each,
# then prints mean ± std tables. Runs go to runs/issue2/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN="${BIN:-./target/release/darec}"
OUT=runs/issue2
SEEDS="${SEEDS:-1 2 3}"
DATASETS="${DATASETS:-amazon yelp ml-1m}"
for d in $DATASETS; do
  $BIN --log warn train --config configs/$d-mostpop.toml --out $OUT/$d-mostpop >/dev/null
  for m in lightgcn mf; do
    for s in $SEEDS; do
      [ -f $OUT/$d-$m-s$s/metrics.json ] && continue
      $BIN --log warn train --config configs/$d-$m.toml --set train.seed=$s --out $OUT/$d-$m-s$s | tail -2
    done
  done
done
for d in $DATASETS; do
  $BIN summarize $OUT/$d-*
done
