//! [`FastBert`]: a CPU forward pass of a BERT encoder (inference only) with the weights
//! and maths of candle-transformers' `models::bert::BertModel`, written to be quick on a
//! few cores (SPEC section 3; STACK.md: candle's BERT runs MiniLM at about half PyTorch's
//! speed because its element-wise ops are single-threaded and allocate).
//!
//! What differs is only the schedule:
//! - the tokens of all sequences of a batch are packed into one `[T, H]` matrix with no
//!   padding, so every linear layer is one `gemm` call over real tokens only;
//! - query, key and value are one fused `[H, 3H]` product;
//! - attention runs per sequence (so no mask is needed), sequences in parallel;
//! - bias + GELU and residual + LayerNorm are fused row loops (`kernels`);
//! - a forward either spreads each step over the rayon pool or, when the caller runs one
//!   batch per thread, runs on one thread without any synchronisation.
//!
//! Padding a sequence in candle's model changes nothing for its real tokens (padded keys
//! get a `f32::MIN` score), so both give the same hidden states up to rounding.

use super::kernels::{bias_act, bias_residual_norm, layer_norm_row, softmax_row};
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{Config, HiddenAct};
use rayon::prelude::*;

/// Weights of one encoder layer; matrices are stored `[in, out]` row-major.
struct Layer {
    wqkv: Vec<f32>,
    bqkv: Vec<f32>,
    wo: Vec<f32>,
    bo: Vec<f32>,
    ln1: (Vec<f32>, Vec<f32>),
    w1: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
    b2: Vec<f32>,
    ln2: (Vec<f32>, Vec<f32>),
}

/// A BERT encoder for the CPU; see the module documentation.
pub struct FastBert {
    word: Vec<f32>,
    pos: Vec<f32>,
    /// Token-type 0 embedding (sentence-transformers feed one segment).
    type0: Vec<f32>,
    ln_emb: (Vec<f32>, Vec<f32>),
    layers: Vec<Layer>,
    h: usize,
    heads: usize,
    inter: usize,
    vocab: usize,
    max_pos: usize,
    eps: f32,
    act: HiddenAct,
}

fn vec1(t: Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// A linear layer's weight `[out, in]` transposed to `[in, out]`, and its bias.
fn linear(vb: &VarBuilder, inp: usize, out: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    let w = vec1(vb.get((out, inp), "weight")?.t()?.contiguous()?)?;
    let b = vec1(vb.get(out, "bias")?)?;
    Ok((w, b))
}

/// LayerNorm weight and bias (older checkpoints call them `gamma` and `beta`).
fn norm(vb: &VarBuilder, h: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    if vb.contains_tensor("weight") {
        Ok((vec1(vb.get(h, "weight")?)?, vec1(vb.get(h, "bias")?)?))
    } else {
        Ok((vec1(vb.get(h, "gamma")?)?, vec1(vb.get(h, "beta")?)?))
    }
}

impl FastBert {
    /// Reads the weights (`embeddings.*`, `encoder.layer.N.*`, optionally under `bert.`).
    pub fn load(vb: &VarBuilder, cfg: &Config) -> Result<Self> {
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") {
            vb.clone()
        } else {
            vb.pp("bert")
        };
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let e = vb.pp("embeddings");
        let word = vec1(e.get((cfg.vocab_size, h), "word_embeddings.weight")?)?;
        let pos = vec1(e.get(
            (cfg.max_position_embeddings, h),
            "position_embeddings.weight",
        )?)?;
        let types = vec1(e.get((cfg.type_vocab_size, h), "token_type_embeddings.weight")?)?;
        let ln_emb = norm(&e.pp("LayerNorm"), h)?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let v = vb.pp(format!("encoder.layer.{l}"));
            let a = v.pp("attention");
            let (wq, bq) = linear(&a.pp("self.query"), h, h)?;
            let (wk, bk) = linear(&a.pp("self.key"), h, h)?;
            let (wv, bv) = linear(&a.pp("self.value"), h, h)?;
            // [h, 3h]: row r is (wq[r], wk[r], wv[r])
            let mut wqkv = Vec::with_capacity(3 * h * h);
            for r in 0..h {
                for w in [&wq, &wk, &wv] {
                    wqkv.extend_from_slice(&w[r * h..(r + 1) * h]);
                }
            }
            let bqkv = [bq, bk, bv].concat();
            let (wo, bo) = linear(&a.pp("output.dense"), h, h)?;
            let ln1 = norm(&a.pp("output.LayerNorm"), h)?;
            let (w1, b1) = linear(&v.pp("intermediate.dense"), h, i)?;
            let (w2, b2) = linear(&v.pp("output.dense"), i, h)?;
            let ln2 = norm(&v.pp("output.LayerNorm"), h)?;
            layers.push(Layer {
                wqkv,
                bqkv,
                wo,
                bo,
                ln1,
                w1,
                b1,
                w2,
                b2,
                ln2,
            });
        }
        Ok(Self {
            word,
            pos,
            type0: types[..h].to_vec(),
            ln_emb,
            layers,
            h,
            heads: cfg.num_attention_heads,
            inter: i,
            vocab: cfg.vocab_size,
            max_pos: cfg.max_position_embeddings,
            eps: cfg.layer_norm_eps as f32,
            act: cfg.hidden_act,
        })
    }

    /// Hidden size.
    pub fn dim(&self) -> usize {
        self.h
    }

    /// Last hidden states of each sequence, `[len, H]` row-major, in input order. Ids must be
    /// below the vocabulary size and sequences no longer than `max_position_embeddings`
    /// (the caller truncates); out-of-range ids map to id 0 rather than panic.
    ///
    /// `parallel`: spread each product and row loop over the rayon pool. Pass `false` when
    /// running several forwards at once from a rayon loop (one batch per thread), which has
    /// no synchronisation inside a forward.
    pub fn forward(&self, seqs: &[&[u32]], parallel: bool) -> Vec<Vec<f32>> {
        let h = self.h;
        let mut offsets = Vec::with_capacity(seqs.len() + 1);
        offsets.push(0usize);
        for s in seqs {
            offsets.push(offsets.last().unwrap() + s.len().min(self.max_pos));
        }
        let t = *offsets.last().unwrap();
        if t == 0 {
            return seqs.iter().map(|_| Vec::new()).collect();
        }
        // embeddings: word + position + type 0, then LayerNorm
        let mut rows: Vec<(usize, usize)> = Vec::with_capacity(t);
        for s in seqs {
            for (p, &id) in s.iter().take(self.max_pos).enumerate() {
                let id = id as usize;
                rows.push((p, if id < self.vocab { id } else { 0 }));
            }
        }
        let mut x = vec![0f32; t * h];
        for_rows(&mut x, h, parallel, |r, out| {
            let (p, id) = rows[r];
            let w = &self.word[id * h..(id + 1) * h];
            let pe = &self.pos[p * h..(p + 1) * h];
            for k in 0..h {
                out[k] = w[k] + self.type0[k] + pe[k];
            }
            layer_norm_row(out, &self.ln_emb.0, &self.ln_emb.1, self.eps);
        });
        let mut qkv = vec![0f32; t * 3 * h];
        let mut ctx = vec![0f32; t * h];
        let mut attn = vec![0f32; t * h];
        let mut mid = vec![0f32; t * self.inter];
        let mut out = vec![0f32; t * h];
        let eps = self.eps;
        for layer in &self.layers {
            matmul(&x, t, h, &layer.wqkv, 3 * h, &mut qkv, parallel);
            let b = &layer.bqkv;
            for_rows(&mut qkv, 3 * h, parallel, |_, r| {
                r.iter_mut().zip(b).for_each(|(v, bb)| *v += bb)
            });
            self.attention(&qkv, &offsets, &mut ctx, parallel);
            matmul(&ctx, t, h, &layer.wo, h, &mut attn, parallel);
            let (b, res, ln) = (&layer.bo, &x, &layer.ln1);
            for_rows(&mut attn, h, parallel, |i, r| {
                bias_residual_norm(r, b, &res[i * h..(i + 1) * h], &ln.0, &ln.1, eps)
            });
            matmul(&attn, t, h, &layer.w1, self.inter, &mut mid, parallel);
            let (b, act) = (&layer.b1, self.act);
            for_rows(&mut mid, self.inter, parallel, |_, r| bias_act(r, b, act));
            matmul(&mid, t, self.inter, &layer.w2, h, &mut out, parallel);
            let (b, res, ln) = (&layer.b2, &attn, &layer.ln2);
            for_rows(&mut out, h, parallel, |i, r| {
                bias_residual_norm(r, b, &res[i * h..(i + 1) * h], &ln.0, &ln.1, eps)
            });
            std::mem::swap(&mut x, &mut out);
        }
        offsets
            .windows(2)
            .map(|w| x[w[0] * h..w[1] * h].to_vec())
            .collect()
    }

    /// Multi-head self-attention of each sequence on its own rows of `qkv` (`[T, 3H]`:
    /// queries, keys, values), written to `ctx` (`[T, H]`).
    fn attention(&self, qkv: &[f32], offsets: &[usize], ctx: &mut [f32], parallel: bool) {
        let h = self.h;
        let dh = h / self.heads;
        let scale = 1.0 / (dh as f32).sqrt();
        // split ctx into one block of rows per sequence
        let mut blocks = Vec::with_capacity(offsets.len() - 1);
        let mut rest = ctx;
        for w in offsets.windows(2) {
            let (a, b) = rest.split_at_mut((w[1] - w[0]) * h);
            blocks.push((w[0], w[1] - w[0], a));
            rest = b;
        }
        let one = |(start, n, out): (usize, usize, &mut [f32])| {
            if n == 0 {
                return;
            }
            let base = &qkv[start * 3 * h..(start + n) * 3 * h];
            let mut scores = vec![0f32; n * n];
            for head in 0..self.heads {
                let q = &base[head * dh..];
                let k = &base[h + head * dh..];
                let v = &base[2 * h + head * dh..];
                // scores = scale * Q K^T  (Q: [n, dh] row stride 3h; K^T via strides)
                // SAFETY: every addressed element lies inside `base` (rows < n, columns
                // < dh from the head's offset) or `scores` / `out` (sized n*n and n*h).
                unsafe {
                    gemm::gemm(
                        n,
                        n,
                        dh,
                        scores.as_mut_ptr(),
                        1,
                        n as isize,
                        false,
                        q.as_ptr(),
                        1,
                        (3 * h) as isize,
                        k.as_ptr(),
                        (3 * h) as isize,
                        1,
                        0.0,
                        scale,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
                scores.chunks_mut(n).for_each(softmax_row);
                // out[:, head] = P V
                unsafe {
                    gemm::gemm(
                        n,
                        dh,
                        n,
                        out.as_mut_ptr().add(head * dh),
                        1,
                        h as isize,
                        false,
                        scores.as_ptr(),
                        1,
                        n as isize,
                        v.as_ptr(),
                        1,
                        (3 * h) as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
            }
        };
        if parallel {
            blocks.into_par_iter().for_each(one);
        } else {
            blocks.into_iter().for_each(one);
        }
    }
}

/// `out[m, n] = a[m, k] * b[k, n]`, all row-major, over the rayon pool when `parallel`.
fn matmul(a: &[f32], m: usize, k: usize, b: &[f32], n: usize, out: &mut [f32], parallel: bool) {
    assert!(a.len() >= m * k && b.len() == k * n && out.len() >= m * n);
    let par = if parallel && m * n * k >= 1 << 15 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: shapes and strides match the asserted slice lengths.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// Rows a parallel task takes at once in the element-wise loops.
const ROWS_PER_TASK: usize = 16;

/// Calls `f(row index, row)` on every row of `x` (rows of `n` values), over the rayon pool
/// when `parallel`.
fn for_rows(x: &mut [f32], n: usize, parallel: bool, f: impl Fn(usize, &mut [f32]) + Sync) {
    let task = |(c, rows): (usize, &mut [f32])| {
        for (k, r) in rows.chunks_mut(n).enumerate() {
            f(c * ROWS_PER_TASK + k, r);
        }
    };
    if parallel {
        x.par_chunks_mut(n * ROWS_PER_TASK)
            .enumerate()
            .for_each(task);
    } else {
        x.chunks_mut(n * ROWS_PER_TASK).enumerate().for_each(task);
    }
}
