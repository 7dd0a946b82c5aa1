#!/usr/bin/env python3
"""PyTorch reference for darec's embedding benchmark (benches/embed_throughput.rs).

Embeds the texts of a JSON file (a list of strings) with sentence-transformers on --threads
threads, the same way darec's LocalEmbedder does (mean pooling, L2 normalisation, batches
of --batch-size; sentence-transformers sorts texts by length itself), after a warm-up on
the first --warmup texts. Prints one JSON line; with --out also saves the vectors as .npy
(float32, C order) so the caller can compare them with its own.

    .venv-bench/bin/pip install sentence-transformers   # 6.2.0 with torch 2.15 here
    python3 bench/embed_torch.py --model .cache/models/all-MiniLM-L6-v2 --texts t.json --json
"""
import argparse
import json
import os
import resource
import time

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--model", required=True, help="sentence-transformer directory")
p.add_argument("--texts", required=True, help="JSON file: a list of strings")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--batch-size", type=int, default=32)
p.add_argument("--warmup", type=int, default=64, help="texts embedded before timing")
p.add_argument("--repeats", type=int, default=1, help="timed passes; the best is reported")
p.add_argument("--out", help="save the vectors here (.npy)")
p.add_argument("--json", action="store_true", help="print one JSON line instead of text")
args = p.parse_args()
if min(args.threads, args.batch_size, args.repeats) < 1:
    p.error("--threads, --batch-size and --repeats must be at least 1")

# Pin OpenMP/MKL before torch loads; PASSIVE: idle workers sleep instead of spinning
# (see bench/lightgcn_torch.py).
os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
import warnings  # noqa: E402

warnings.filterwarnings("ignore")
import numpy as np  # noqa: E402
import torch  # noqa: E402
import sentence_transformers  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

torch.set_num_threads(args.threads)
with open(args.texts) as f:
    texts = json.load(f)
t0 = time.perf_counter()
model = SentenceTransformer(args.model, device="cpu")
load_s = time.perf_counter() - t0


def run(batch):
    with torch.inference_mode():
        return model.encode(batch, batch_size=args.batch_size, convert_to_numpy=True,
                            normalize_embeddings=False, show_progress_bar=False)


run(texts[: args.warmup])
best, best_cpu, vectors = float("inf"), float("nan"), None
for _ in range(args.repeats):
    t0, c0 = time.perf_counter(), time.process_time()
    vectors = run(texts)
    s = time.perf_counter() - t0
    if s < best:
        best, best_cpu = s, time.process_time() - c0
if args.out:
    np.save(args.out, np.ascontiguousarray(vectors, dtype="<f4"))
res = {
    "torch": torch.__version__,
    "sentence_transformers": sentence_transformers.__version__,
    "threads": args.threads,
    "batch_size": args.batch_size,
    "max_seq_length": model.max_seq_length,
    "texts": len(texts),
    "load_s": load_s,
    "seconds": best,
    "cpu_seconds": best_cpu,
    "texts_per_s": len(texts) / best,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}
if args.json:
    print(json.dumps(res))
else:
    print(f"{res['texts']} texts in {best:.2f} s: {res['texts_per_s']:.1f} texts/s "
          f"({args.threads} threads, batch {args.batch_size}, torch {torch.__version__})")
