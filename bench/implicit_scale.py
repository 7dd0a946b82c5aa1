"""implicit's BPR and ALS on one training matrix, timed as the scale benchmark times darec.

The matrix comes from `cargo bench --bench scale`: darec's own training split of a
`darec data synth` data set, written as little-endian u32 (user, item) pairs. Prints one
JSON object: seconds per BPR iteration and per ALS iteration (each the median of the
iterations after the first, with the first reported apart), and the time to recommend the
top 20 (training items filtered out) for every user, or a sample of them.

    python bench/implicit_scale.py --pairs train.u32 --users U --items I [--threads 2]

Install (not in git, not in CI): python3 -m venv .venv-implicit &&
.venv-implicit/bin/pip install implicit==0.7.3 numpy scipy threadpoolctl
"""

import argparse
import json
import time

import numpy as np
import scipy.sparse as sp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--users", type=int, required=True)
    ap.add_argument("--items", type=int, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--factors", type=int, default=32)
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--recommend-users", type=int, default=0,
                    help="recommend for this many users (0: all), time scaled to all")
    a = ap.parse_args()

    from threadpoolctl import threadpool_limits
    import implicit

    t0 = time.perf_counter()
    pairs = np.fromfile(a.pairs, dtype="<u4").reshape(-1, 2)
    m = sp.csr_matrix(
        (np.ones(len(pairs), dtype=np.float32), (pairs[:, 0], pairs[:, 1])),
        shape=(a.users, a.items),
    )
    load_s = time.perf_counter() - t0
    out = {"implicit": implicit.__version__, "nnz": int(m.nnz), "load_s": load_s,
           "threads": a.threads, "factors": a.factors}

    def per_iteration(model):
        times = []
        last = [time.perf_counter()]

        def cb(*_args):
            now = time.perf_counter()
            times.append(now - last[0])
            last[0] = now

        last[0] = time.perf_counter()
        model.fit(m, show_progress=False, callback=cb)
        return times

    # implicit asks for single-threaded BLAS (its own loops are parallel)
    with threadpool_limits(limits=1, user_api="blas"):
        bpr = implicit.cpu.bpr.BayesianPersonalizedRanking(
            factors=a.factors, iterations=a.iterations, num_threads=a.threads, random_state=1)
        t = per_iteration(bpr)
        out["bpr_first_s"] = t[0]
        out["bpr_iteration_s"] = float(np.median(t[1:] if len(t) > 1 else t))
        als = implicit.cpu.als.AlternatingLeastSquares(
            factors=a.factors, iterations=a.iterations, num_threads=a.threads, random_state=1)
        t = per_iteration(als)
        out["als_first_s"] = t[0]
        out["als_iteration_s"] = float(np.median(t[1:] if len(t) > 1 else t))
        users = np.arange(a.users)
        if a.recommend_users and a.recommend_users < a.users:
            users = np.random.default_rng(1).choice(a.users, a.recommend_users, replace=False)
        t0 = time.perf_counter()
        bpr.recommend(users, m[users], N=20, filter_already_liked_items=True)
        rec = time.perf_counter() - t0
        out["recommend_users"] = int(len(users))
        out["recommend_s"] = rec
        out["recommend_all_s"] = rec * a.users / len(users)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
