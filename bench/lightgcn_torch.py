#!/usr/bin/env python3
"""PyTorch reference for darec's LightGCN, SGL and SimGCL benchmarks (protocol: SPEC.md 2).

Trains LightGCN (or SGL / SimGCL, written as RLMRec writes their steps: a clean LightGCN
view for BPR plus a cosine InfoNCE between two dropped-edge or noisy views) with BPR for a
few epochs on RLMRec's TSV export and times, per epoch,
negative sampling plus every training step, then one full-ranking evaluation of the test
split (Recall@20, NDCG@20). Both sides of the comparison must run with the same thread
count; this script pins torch (OpenMP/MKL) to --threads before torch is imported.

    python3 bench/lightgcn_torch.py --train trn.tsv --test tst.tsv --json
"""
import argparse
import json
import os
import re
import resource
import sys
import time

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--train", required=True, help="training TSV (user<TAB>item, '# shape=UxI')")
p.add_argument("--test", required=True, help="test TSV, same format and shape")
for name, kind, default in [("layers", int, 3), ("dim", int, 32), ("batch", int, 4096),
                            ("epochs", int, 3), ("threads", int, 2), ("seed", int, 1),
                            ("keep-rate", float, 0.8), ("reg", float, 1e-6), ("lr", float, 1e-3)]:
    p.add_argument("--" + name, type=kind, default=default, help=f"default {default}")
p.add_argument("--model", choices=["lightgcn", "sgl", "simgcl"], default="lightgcn",
               help="sgl: two dropped-edge views (--keep-rate), InfoNCE on users, positives and "
               "negatives; simgcl: two noisy views (--eps), InfoNCE on users and positives")
for name, default in [("cl-weight", 0.1), ("tau", 0.2), ("eps", 0.9)]:
    p.add_argument("--" + name, type=float, default=default, help=f"SGL/SimGCL, default {default}")
p.add_argument("--format", choices=["csr", "coo"], default="csr", help="sparse layout")
p.add_argument("--backward", choices=["symmetric", "autograd"], default="symmetric",
               help="symmetric: grad of A@x is A@grad (A stays symmetric under dropout); "
               "autograd: torch.sparse.mm's own backward, which transposes A every layer")
p.add_argument("--json", action="store_true", help="print one JSON line instead of text")
args = p.parse_args()
if min(args.epochs, args.threads, args.batch, args.dim) < 1 or args.layers < 0:
    p.error("--epochs, --threads, --batch and --dim must be at least 1, --layers at least 0")

# OpenMP and MKL read these when torch loads. PASSIVE: idle OpenMP workers sleep instead of
# spinning; with the default (spinning) a 2-thread run here slowed down 2.5x to 17x whenever
# another process used a core (see bench/README.md). An explicit OMP_WAIT_POLICY is respected.
os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

warnings.filterwarnings("ignore", message="Sparse (CSR tensor support|invariant checks)")
torch.set_num_threads(args.threads)
K, EVAL_BATCH = 20, 1024


def read_tsv(path):
    """Return (n_users, n_items, pairs[n, 2] int64) from an RLMRec TSV export."""
    with open(path) as f:
        header = f.readline()
    m = re.search(r"shape=(\d+)x(\d+)", header)
    if not header.startswith("#") or m is None:
        sys.exit(f"{path}: line 1: expected a '#' comment with shape=UxI, got {header!r}")
    pairs = np.loadtxt(path, dtype=np.int64, comments="#", ndmin=2).reshape(-1, 2)
    n_users, n_items = int(m[1]), int(m[2])
    if len(pairs) and (pairs.min() < 0 or (pairs.max(0) >= [n_users, n_items]).any()):
        sys.exit(f"{path}: an id lies outside shape={n_users}x{n_items}")
    return n_users, n_items, pairs


def csr_of(pairs, n_rows):
    """Per-user item lists as (indptr, indices), items sorted within a user."""
    pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(pairs[:, 0], minlength=n_rows))])
    return indptr, pairs[:, 1].copy()


class Graph:
    """Symmetric D^-1/2 A D^-1/2 of the bipartite graph (users 0..U, items U..U+I), stored as
    CSR entries in row order; `edge` maps each stored entry to its undirected edge id so that
    dropout removes both directions of an edge together."""

    def __init__(self, n_users, n_items, pairs):
        n_edges, self.n = len(pairs), n_users + n_items
        u, i = pairs[:, 0], pairs[:, 1] + n_users
        rows, cols = np.concatenate([u, i]), np.concatenate([i, u])
        edge = np.concatenate([np.arange(n_edges), np.arange(n_edges)])
        deg = np.bincount(rows, minlength=self.n).astype(np.float64)
        vals = deg[rows] ** -0.5 * deg[cols] ** -0.5  # no self loops (SPEC 2)
        order = np.lexsort((cols, rows))
        self.rows = torch.from_numpy(rows[order])
        self.cols = torch.from_numpy(cols[order])
        self.vals = torch.from_numpy(vals[order]).float()
        self.edge = torch.from_numpy(edge[order])
        self.n_edges = n_edges

    def matrix(self, keep=None):
        """The full matrix, or only the entries where `keep` (a bool mask) is true;
        kept values are not rescaled (SPEC 2). Layout per --format."""
        rows, cols, vals = self.rows, self.cols, self.vals
        if keep is not None:
            rows, cols, vals = rows[keep], cols[keep], vals[keep]
        size = (self.n, self.n)
        if args.format == "coo":  # entries are already sorted, hence coalesced
            return torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, size, is_coalesced=True)
        crow = torch.zeros(self.n + 1, dtype=torch.int64)
        crow[1:] = torch.cumsum(torch.bincount(rows, minlength=self.n), 0)
        return torch.sparse_csr_tensor(crow, cols, vals, size)

    def dropped(self, keep_rate):
        """A fresh edge-dropout sample: each undirected edge survives with keep_rate."""
        keep_edge = torch.rand(self.n_edges) < keep_rate
        return self.matrix(keep_edge[self.edge])


class SymmetricSpmm(torch.autograd.Function):
    """adj @ x for a symmetric sparse adj: the gradient w.r.t. x is adj^T @ g = adj @ g,
    which spares the transpose (a sort) that torch.sparse.mm's backward does each call."""

    @staticmethod
    def forward(ctx, adj, x):
        ctx.adj = adj
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx, grad):
        return None, torch.sparse.mm(ctx.adj, grad)


spmm = SymmetricSpmm.apply if args.backward == "symmetric" else torch.sparse.mm


class LightGCN(torch.nn.Module):
    def __init__(self, n_users, n_items, dim, layers):
        super().__init__()
        self.n_users, self.n_items, self.layers = n_users, n_items, layers
        self.user = torch.nn.Parameter(torch.nn.init.xavier_uniform_(torch.empty(n_users, dim)))
        self.item = torch.nn.Parameter(torch.nn.init.xavier_uniform_(torch.empty(n_items, dim)))

    def forward(self, adj, eps=0.0):
        """Final embeddings = sum of layers 0..L of x_{l+1} = adj @ x_l (SimGCL's noisy view:
        plus eps * normalize(U[0,1)) * sign(x_{l+1}) after each layer)."""
        x = torch.cat([self.user, self.item])
        out = x
        for _ in range(self.layers):
            x = spmm(adj, x)
            if eps:
                x = x + torch.sign(x) * torch.nn.functional.normalize(torch.rand_like(x)) * eps
            out = out + x
        return out.split([self.n_users, self.n_items])


def info_nce(a, p, candidates, tau):
    """RLMRec's cal_infonce_loss: sum over rows of -cos(a, p)/tau + log sum exp(cos(a, c)/tau)."""
    a, p, c = (x / torch.sqrt(1e-8 + x.square().sum(-1, keepdim=True)) for x in (a, p, candidates))
    return (-(a * p).sum(-1) / tau + torch.logsumexp(a @ c.T / tau, -1)).sum()


def contrastive(model, graph, full, u, i, j):
    """SGL's / SimGCL's InfoNCE between two augmented views, / B."""
    if args.model == "sgl":
        (u1, i1), (u2, i2) = model(graph.dropped(args.keep_rate)), model(graph.dropped(args.keep_rate))
        rows = [(u1[u], u2[u], u2), (i1[i], i2[i], i2), (i1[j], i2[j], i2)]
    else:
        (u1, i1), (u2, i2) = model(full, args.eps), model(full, args.eps)
        rows = [(u1[u], u2[u], u2), (i1[i], i2[i], i2)]
    return sum(info_nce(a, p, c, args.tau) for a, p, c in rows) / len(u)


def sample_epoch(rng, pairs, n_items, train_keys):
    """Every training pair once, shuffled, with one uniform negative per positive,
    redrawn until (user, negative) is not a training pair."""
    perm = rng.permutation(len(pairs))
    users, pos = pairs[perm, 0], pairs[perm, 1]
    neg = rng.integers(0, n_items, len(users))

    def is_train(idx):
        q = users[idx] * n_items + neg[idx]
        at = np.minimum(np.searchsorted(train_keys, q), len(train_keys) - 1)
        return train_keys[at] == q

    todo = np.nonzero(is_train(np.arange(len(users))))[0]
    while len(todo):
        neg[todo] = rng.integers(0, n_items, len(todo))
        todo = todo[is_train(todo)]
    return [torch.from_numpy(a) for a in (users, pos, neg)]


def batch_entries(indptr, indices, users):
    """(local row, item) of every stored item of `users`, for masking and ground truth."""
    counts = indptr[users + 1] - indptr[users]
    rows = np.repeat(np.arange(len(users)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    items = indices[np.repeat(indptr[users], counts) + offsets]
    return torch.from_numpy(rows), torch.from_numpy(items)


@torch.no_grad()
def evaluate(model, adj, train_csr, test_csr):
    """Full ranking of all items for every user with >=1 test item, train items masked;
    Recall@K = hits/|GT|, NDCG@K with IDCG over min(K, |GT|) positions (SPEC 2)."""
    user_emb, item_emb = model(adj)
    disc = 1.0 / torch.log2(torch.arange(2, K + 2, dtype=torch.float64))
    idcg = torch.cumsum(disc, 0)  # idcg[m-1] = ideal DCG with m relevant items
    n_gt_all = np.diff(test_csr[0])
    users = np.nonzero(n_gt_all > 0)[0]
    if len(users) == 0:
        sys.exit(f"{args.test}: no user has a test item")
    recall = ndcg = 0.0
    for start in range(0, len(users), EVAL_BATCH):
        b = users[start : start + EVAL_BATCH]
        scores = user_emb[torch.from_numpy(b)] @ item_emb.T
        scores[batch_entries(*train_csr, b)] = -float("inf")
        top = torch.topk(scores, min(K, scores.shape[1])).indices
        truth = torch.zeros(scores.shape, dtype=torch.bool)
        truth[batch_entries(*test_csr, b)] = True
        hits = truth.gather(1, top).double()
        n_gt = torch.from_numpy(n_gt_all[b]).double()
        recall += (hits.sum(1) / n_gt).sum().item()
        ndcg += ((hits @ disc[: top.shape[1]]) / idcg[n_gt.clamp(max=K).long() - 1]).sum().item()
    return recall / len(users), ndcg / len(users)


def main():
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    n_users, n_items, train = read_tsv(args.train)
    tu, ti, test = read_tsv(args.test)
    if (tu, ti) != (n_users, n_items):
        sys.exit(f"{args.test}: shape {tu}x{ti} differs from {args.train}: {n_users}x{n_items}")
    if len(train) == 0 or np.bincount(train[:, 0]).max() >= n_items:
        sys.exit(f"{args.train}: empty, or a user has every item (no negative to sample)")
    graph = Graph(n_users, n_items, train)
    train_csr, test_csr = csr_of(train, n_users), csr_of(test, n_users)
    train_keys = np.sort(train[:, 0] * n_items + train[:, 1])
    model = LightGCN(n_users, n_items, args.dim, args.layers)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)

    full = graph.matrix()
    epoch_s, epoch_cpu_s, sampling_s = [], [], []
    for _ in range(args.epochs):
        t0, c0 = time.perf_counter(), time.process_time()
        users, pos, neg = sample_epoch(rng, train, n_items, train_keys)
        sampling_s.append(time.perf_counter() - t0)
        for s in range(0, len(users), args.batch):
            u, i, j = users[s : s + args.batch], pos[s : s + args.batch], neg[s : s + args.batch]
            if args.model == "lightgcn":
                user_emb, item_emb = model(graph.dropped(args.keep_rate))
            else:  # the clean view
                user_emb, item_emb = model(full)
            eu = user_emb[u]
            diff = (eu * item_emb[j]).sum(1) - (eu * item_emb[i]).sum(1)
            bpr = torch.nn.functional.softplus(diff).mean()
            reg = sum(w.square().sum() for w in model.parameters())
            loss = bpr + args.reg * reg
            if args.model != "lightgcn":
                loss = loss + args.cl_weight * contrastive(model, graph, full, u, i, j)
            opt.zero_grad()
            loss.backward()
            opt.step()
        epoch_s.append(time.perf_counter() - t0)
        epoch_cpu_s.append(time.process_time() - c0)  # all threads; less load-sensitive

    t0 = time.perf_counter()
    recall, ndcg = evaluate(model, full, train_csr, test_csr)
    eval_s = time.perf_counter() - t0

    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    out = {"impl": "pytorch", "model": args.model, "torch": torch.__version__, "threads": torch.get_num_threads(),
           "format": args.format, "backward": args.backward,
           "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
           "epoch_s": [round(t, 4) for t in epoch_s],
           "epoch_cpu_s": [round(t, 4) for t in epoch_cpu_s],
           "sampling_s": round(sum(sampling_s) / len(sampling_s), 4),  # mean per epoch
           "eval_s": round(eval_s, 4), "recall@20": round(recall, 6), "ndcg@20": round(ndcg, 6),
           "last_loss": round(loss.item(), 6), "peak_rss_mb": round(rss_mb, 1)}
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:>12}: {v}")


if __name__ == "__main__":
    main()
