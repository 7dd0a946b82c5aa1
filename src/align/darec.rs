//! DaRec (Yang et al., ICDE 2025): disentangled alignment of collaborative and language
//! representations (SPEC.md section 1, steps 1-6).
//!
//! Each step draws `n_hat` nodes uniformly from all users and items (our choice) and
//! 1. splits both sides into shared and specific parts with four heads (collaborative:
//!    `Linear(d, d)`; language: the RLMRec MLP shape, our choice);
//! 2. `L_or`: mean squared cosine between specific and shared parts, on both sides;
//! 3. `L_uni`: uniformity (Wang & Isola, t = 2) of the normalised specific parts;
//! 4. `L_g`: MSE between the cosine-similarity matrices of the two shared parts;
//! 5. `L_l`: K-means preference centres of each shared part (assignments without
//!    gradient, centres = member means), matched by the Hungarian method on cosine, and
//!    `mean_k (1 - cos(c_C,k, c_L,pi(k)))`;
//! 6. `loss = lambda * (w_or L_or + w_uni L_uni + w_g L_g + w_l L_l)`.
//!
//! `disentangle = false` is the paper's ablation "w/o disentangling": the collaborative
//! embedding itself and the projected language embedding are aligned (global + local),
//! and `L_or`, `L_uni` are off.

use super::hungarian::max_score_assignment;
use super::kmeans::kmeans;
use super::mlp::{Head, Linear, Mlp};
use super::rlmrec_con::{ConConfig, RlmrecCon};
use super::{AlignContext, AlignInput, Alignment, SemanticTables};
use crate::ops::gram_identity::gram_mse_identity;
use crate::ops::rowwise::{centre, l2_normalize, mean_cos_sq};
use crate::ops::similarity::{uniformity, variance_floor};
use crate::rng::Rng;
use crate::step::LossTerm;
use candle_core::{Result, Tensor, Var};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DarecConfig {
    /// Weight of the whole alignment (`lambda`; paper: best in [0.1, 1]).
    pub lambda: f64,
    /// Nodes sampled per step (`N_hat`; paper: best at 4096).
    pub n_hat: usize,
    /// Preference centres (`K`; paper: best in [4, 8]).
    pub k: usize,
    /// Lloyd iterations of K-means.
    pub kmeans_iters: usize,
    /// Uniformity temperature `t`.
    pub uniformity_t: f64,
    /// Split into shared and specific parts (false: the "w/o disentangling" ablation).
    pub disentangle: bool,
    pub use_or: bool,
    pub use_uni: bool,
    pub use_global: bool,
    pub use_local: bool,
    pub w_or: f64,
    pub w_uni: f64,
    pub w_global: f64,
    pub w_local: f64,
    /// Not in the paper: the uniformity term on the shared parts too (weight `w_uni`).
    /// Without it the shared heads were measured to collapse to one direction, which meets
    /// the structure losses trivially (README, ML-1M alignment).
    pub shared_uni: bool,
    /// Not in the paper (issue 13, item 1): centre each shared part by its mean over the
    /// rows at hand before the L2 normalisation of the global and local structure terms (a
    /// CKA-like alignment). The measured collapse puts every node near one constant vector;
    /// centring removes that constant, so a collapsed side no longer meets the structure
    /// terms trivially (a constant side becomes zero and matches no structure).
    pub centred: bool,
    /// Not in the paper (issue 13, item 8): the global structure term over every user and
    /// item at each step instead of the `n_hat` sampled nodes. Exact and cheap through
    /// `||X X^T - Y Y^T||_F^2 = ||X^T X||^2 - 2 ||X^T Y||^2 + ||Y^T Y||^2` (`O(n d^2)`); the
    /// local term and `L_or`, `L_uni` keep the sample.
    pub global_all: bool,
    /// `false` (not in the paper; issue 13, item 2): the shared heads of both sides have no
    /// bias (their biases stay zero). The measured collapse ran mostly through the language
    /// shared head's bias: without one, a constant output needs a constant input.
    pub shared_bias: bool,
    /// Not in the paper (issue 13, item 3): VICReg's variance floor on the L2-normalised
    /// shared parts of both sides, `mean_j max(0, gamma - std_j)` with `gamma = var_floor`
    /// (0: off), weighted by `w_var`. An alternative to `shared_uni` against the collapse:
    /// it only pushes while a dimension's spread is below the floor. Unit rows spread
    /// evenly over `d` dimensions have `std_j` about `1 / sqrt(d)` (0.18 at `d = 32`).
    pub var_floor: f64,
    pub w_var: f64,
    /// Not in the paper (issue 13, item 4): the structure terms on users and items apart
    /// (user-user and item-item similarity blocks, centres of each kind), averaged,
    /// instead of one sample mixing both. The mixed sample's structure is dominated by the
    /// user/item split itself, which a constant offset per kind already explains.
    pub split_nodes: bool,
    /// Not in the paper (issue 13, item 6): `lambda` rises linearly over the first
    /// `warmup_epochs` epochs (`lambda * min(1, epoch / warmup_epochs)`; 0: off). The
    /// measured failure at larger `lambda` is early stopping catching the early dip.
    pub warmup_epochs: usize,
    /// Not in the paper (issue 13, item 7): RLMRec-Con's InfoNCE (with `align.rlmrec_con`'s
    /// settings) added to DaRec's terms: the structure terms on top of the strongest
    /// baseline. `lambda`'s warm-up applies to DaRec's terms only.
    pub plus_con: bool,
    /// Not in the paper: the uniformity terms over the first `uni_rows` rows of the sample
    /// only (0: all `n_hat`). The sample is a uniform draw, so its first rows are one too;
    /// the pairwise term costs `O(n^2 d)` and dominates the step at the paper's
    /// `n_hat = 4096`, while every other term is linear in `n` (the global term through the
    /// Gram identity). 1024 rows cost a sixteenth.
    pub uni_rows: usize,
    /// Not in the paper (issue 13, item 5; our reading of the paper's argument that the
    /// disentangled parts carry the useful information): rank with `[e_C ; P_C^sh(e_C)]`,
    /// so a score is `e_u . e_i + P(e_u) . P(e_i)`. BPR trains through the same score, so the
    /// collaborative shared head learns from ranking as well as from the alignment; the
    /// saved model, evaluation and serving use this space (its width is `2 d`).
    pub score_shared: bool,
    /// The language-side heads: `"mlp"` (RLMRec's MLP shape, `d_L -> (d_L + d) / 2 -> d`,
    /// the default) or `"linear"` (one `Linear(d_L, d)`). Both are our choice (the paper
    /// names projection heads, not their shape); on 384-d vectors the MLP heads over the
    /// `n_hat` sampled rows are most of DaRec's cost at the paper's `n_hat = 4096`
    /// (benches/alignment_cost.rs), the linear ones cost a sixth of that.
    pub l_heads: LanguageHeads,
}

/// Shape of DaRec's language-side heads (`l_heads`).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LanguageHeads {
    #[default]
    Mlp,
    Linear,
}

impl Default for DarecConfig {
    fn default() -> Self {
        Self {
            lambda: 0.5,
            n_hat: 4096,
            k: 6,
            kmeans_iters: 10,
            uniformity_t: 2.0,
            disentangle: true,
            use_or: true,
            use_uni: true,
            use_global: true,
            use_local: true,
            w_or: 1.0,
            w_uni: 1.0,
            w_global: 1.0,
            w_local: 1.0,
            shared_uni: false,
            centred: false,
            global_all: false,
            shared_bias: true,
            var_floor: 0.0,
            w_var: 1.0,
            split_nodes: false,
            warmup_epochs: 0,
            plus_con: false,
            uni_rows: 0,
            score_shared: false,
            l_heads: LanguageHeads::Mlp,
        }
    }
}

pub struct Darec {
    cfg: DarecConfig,
    c_shared: Linear,
    c_specific: Linear,
    l_shared: Head,
    l_specific: Head,
    sem: SemanticTables,
    /// RLMRec-Con beside DaRec's terms (`plus_con`).
    con: Option<RlmrecCon>,
    /// The current epoch (1-based; 0 before training), for the warm-up of `lambda`.
    epoch: usize,
}

impl Darec {
    /// `con` holds RLMRec-Con's settings, used when `cfg.plus_con`.
    pub fn new(cfg: &DarecConfig, con: &ConConfig, ctx: AlignContext) -> Result<Self> {
        if cfg.score_shared && !cfg.disentangle {
            candle_core::bail!(
                "align.darec.score_shared needs disentangle = true (it scores with the shared part)"
            );
        }
        if cfg.uni_rows == 1 {
            candle_core::bail!("align.darec.uni_rows must be 0 (all) or >= 2");
        }
        if cfg.n_hat < 2 || cfg.k == 0 {
            candle_core::bail!("align.darec: n_hat must be >= 2 and k >= 1");
        }
        if cfg.var_floor < 0.0 {
            candle_core::bail!("align.darec.var_floor must be >= 0 (0: off)");
        }
        let d = ctx.out_dim;
        let c_shared = Linear::new(d, d, ctx.device, ctx.rng)?;
        let c_specific = Linear::new(d, d, ctx.device, ctx.rng)?;
        let (dl, dev) = (ctx.sem.dim, ctx.device);
        let head = |rng: &mut Rng| -> Result<Head> {
            Ok(match cfg.l_heads {
                LanguageHeads::Mlp => Head::Mlp(Mlp::new(dl, d, dev, rng)?),
                LanguageHeads::Linear => Head::Linear(Linear::new(dl, d, dev, rng)?),
            })
        };
        let l_shared = head(ctx.rng)?;
        let l_specific = head(ctx.rng)?;
        let sem = ctx.sem.clone();
        // built last, so DaRec's own heads start as they do without it
        let con = if cfg.plus_con {
            Some(RlmrecCon::new(con, ctx)?)
        } else {
            None
        };
        Ok(Self {
            cfg: cfg.clone(),
            c_shared,
            c_specific,
            l_shared,
            l_specific,
            sem,
            con,
            epoch: 0,
        })
    }

    /// `lambda` for the current epoch (warm-up, `warmup_epochs`).
    pub fn lambda_now(&self) -> f64 {
        let w = self.cfg.warmup_epochs;
        if w == 0 {
            self.cfg.lambda
        } else {
            self.cfg.lambda * (self.epoch as f64 / w as f64).min(1.0)
        }
    }

    /// The shared parts of both sides for the given node rows (for plots and analysis).
    pub fn shared(&self, e_c: &Tensor, e_l: &Tensor) -> Result<(Tensor, Tensor)> {
        if self.cfg.disentangle {
            Ok((self.c_shared.forward(e_c)?, self.l_shared.forward(e_l)?))
        } else {
            Ok((e_c.clone(), self.l_shared.forward(e_l)?))
        }
    }
}

/// Centres of the clusters (member means) as a differentiable function of `x` (`[n, d]`).
fn centres(x: &Tensor, assign: &[usize], k: usize) -> Result<Tensor> {
    let n = assign.len();
    let mut counts = vec![0f32; k];
    assign.iter().for_each(|&a| counts[a] += 1.0);
    let mut m = vec![0f32; k * n];
    for (i, &a) in assign.iter().enumerate() {
        m[a * n + i] = 1.0 / counts[a];
    }
    Tensor::from_vec(m, (k, n), x.device())?.matmul(x)
}

/// `L_l`: cluster both shared parts, match centres by maximal total cosine, and average
/// `1 - cos` over matched pairs. Clusters that end up empty on either side are skipped.
pub fn local_alignment(
    sh_c: &Tensor,
    sh_l: &Tensor,
    k: usize,
    iters: usize,
    rng: &mut Rng,
) -> Result<Tensor> {
    let (n, d) = sh_c.dims2()?;
    let xc = sh_c.detach().flatten_all()?.to_vec1::<f32>()?;
    let xl = sh_l.detach().flatten_all()?.to_vec1::<f32>()?;
    let k = k.min(n);
    let ac = kmeans(&xc, n, d, k, iters, rng);
    let al = kmeans(&xl, n, d, k, iters, rng);
    let cc = l2_normalize(&centres(sh_c, &ac, k)?)?;
    let cl = l2_normalize(&centres(sh_l, &al, k)?)?;
    let cos: Vec<f64> = cc
        .matmul(&cl.t()?)?
        .flatten_all()?
        .to_vec1::<f32>()?
        .iter()
        .map(|&v| v as f64)
        .collect();
    let pi = max_score_assignment(&cos, k);
    let non_empty = |a: &[usize], c: usize| a.contains(&c);
    let rows: Vec<u32> = (0..k)
        .filter(|&c| non_empty(&ac, c) && non_empty(&al, pi[c]))
        .map(|c| c as u32)
        .collect();
    let cols: Vec<u32> = rows.iter().map(|&c| pi[c as usize] as u32).collect();
    let dev = sh_c.device();
    let r = Tensor::from_slice(&rows, rows.len(), dev)?;
    let c = Tensor::from_slice(&cols, cols.len(), dev)?;
    let matched = (cc.index_select(&r, 0)? * cl.index_select(&c, 0)?)?.sum(1)?;
    (1.0 - matched)?.mean_all()
}

impl Alignment for Darec {
    fn name(&self) -> &'static str {
        "darec"
    }
    fn params(&self) -> Vec<(String, Var)> {
        let mut shared = self.l_shared.params("l_shared");
        if self.cfg.disentangle {
            shared.extend(self.c_shared.params("c_shared"));
        }
        // without bias: the shared heads' biases are not trained and stay at their zero
        // initialisation (and are not saved)
        if !self.cfg.shared_bias {
            shared.retain(|(name, _)| !name.ends_with(".bias"));
        }
        let mut p = shared;
        if self.cfg.disentangle {
            p.extend(self.c_specific.params("c_specific"));
            p.extend(self.l_specific.params("l_specific"));
        }
        if let Some(con) = &self.con {
            p.extend(
                con.params()
                    .into_iter()
                    .map(|(n, v)| (format!("con.{n}"), v)),
            );
        }
        p
    }
    /// The language side's shared part `s = P_L^sh(e_L)`, mapped back through the
    /// collaborative shared head `P_C^sh(e) = e W + b` by least squares (ridge 1e-6):
    /// `e = (s - b) W^T (W W^T + 1e-6 I)^-1`. Without disentangling, `s` is aligned with
    /// `e_C` directly and is returned as it is.
    fn text_to_collaborative(&self, e_l: &Tensor) -> Result<Option<Tensor>> {
        let s = self.l_shared.forward(e_l)?;
        if !self.cfg.disentangle {
            return Ok(Some(s));
        }
        let w = self.c_shared.weight.as_tensor().detach();
        let d = w.dim(0)?;
        let gram =
            (w.matmul(&w.t()?)? + (Tensor::eye(d, candle_core::DType::F32, w.device())? * 1e-6)?)?;
        let inv = super::inverse::inverse(&gram)?;
        let centred = s.broadcast_sub(&self.c_shared.bias.as_tensor().detach())?;
        Ok(Some(centred.matmul(&w.t()?)?.matmul(&inv)?))
    }
    fn shared_space(&self, e_c: &Tensor, nodes: &[u32]) -> Result<Option<(Tensor, Tensor)>> {
        let idx = Tensor::from_slice(nodes, nodes.len(), e_c.device())?;
        let e_l = self.sem.all.index_select(&idx, 0)?;
        Ok(Some(self.shared(e_c, &e_l)?))
    }
    fn score_space(&self, nodes: &Tensor) -> Result<Option<Tensor>> {
        if !self.cfg.score_shared {
            return Ok(None);
        }
        let shared = self.c_shared.forward(nodes)?;
        Ok(Some(Tensor::cat(&[nodes, &shared], 1)?))
    }
    fn start_epoch(&mut self, epoch: usize) {
        self.epoch = epoch;
    }
    fn losses(&mut self, input: &AlignInput, rng: &mut Rng) -> Result<Vec<LossTerm>> {
        let cfg = self.cfg.clone();
        let n_nodes = input.nodes.dim(0)?;
        let sample: Vec<u32> = rng
            .sample_distinct(n_nodes, cfg.n_hat)
            .into_iter()
            .map(|i| i as u32)
            .collect();
        let dev = input.nodes.device();
        let idx = Tensor::from_slice(&sample, sample.len(), dev)?;
        let e_c = input.nodes.index_select(&idx, 0)?;
        let e_l = self.sem.all.index_select(&idx, 0)?;
        let (sh_c, sh_l) = self.shared(&e_c, &e_l)?;
        let mut terms = Vec::new();
        let w = self.lambda_now();
        // the uniformity terms' rows (`uni_rows`)
        let uni_rows = |x: &Tensor| -> Result<Tensor> {
            let n = x.dim(0)?;
            match cfg.uni_rows {
                0 => Ok(x.clone()),
                m => x.narrow(0, 0, m.min(n)),
            }
        };
        if cfg.disentangle && (cfg.use_or || cfg.use_uni) {
            let sp_c = self.c_specific.forward(&e_c)?;
            let sp_l = self.l_specific.forward(&e_l)?;
            if cfg.use_or {
                let l = (mean_cos_sq(&sp_c, &sh_c)? + mean_cos_sq(&sp_l, &sh_l)?)?;
                terms.push(LossTerm::new("or", (l * (w * cfg.w_or))?));
            }
            if cfg.use_uni {
                let t = cfg.uniformity_t;
                let l = (uniformity(&l2_normalize(&uni_rows(&sp_c)?)?, t)?
                    + uniformity(&l2_normalize(&uni_rows(&sp_l)?)?, t)?)?;
                terms.push(LossTerm::new("uni", (l * (w * cfg.w_uni))?));
            }
        }
        let (nc, nl) = (l2_normalize(&sh_c)?, l2_normalize(&sh_l)?);
        if cfg.shared_uni {
            let t = cfg.uniformity_t;
            let l = (uniformity(&uni_rows(&nc)?, t)? + uniformity(&uni_rows(&nl)?, t)?)?;
            terms.push(LossTerm::new("shared_uni", (l * (w * cfg.w_uni))?));
        }
        if cfg.var_floor > 0.0 {
            let l = (variance_floor(&nc, cfg.var_floor)? + variance_floor(&nl, cfg.var_floor)?)?;
            terms.push(LossTerm::new("var_floor", (l * (w * cfg.w_var))?));
        }
        // the structure terms' view of a block of shared parts: centred first when asked
        let view = |x: &Tensor| -> Result<Tensor> {
            if cfg.centred {
                l2_normalize(&centre(x)?)
            } else {
                l2_normalize(x)
            }
        };
        // the sample's blocks: users and items apart, or all together
        let n_users = input.n_users as u32;
        let blocks: Vec<Tensor> = if cfg.split_nodes {
            let (mut users, mut items) = (Vec::new(), Vec::new());
            for (pos, &node) in sample.iter().enumerate() {
                if node < n_users {
                    users.push(pos as u32);
                } else {
                    items.push(pos as u32);
                }
            }
            [users, items]
                .into_iter()
                .filter(|b| b.len() >= 2)
                .map(|b| Tensor::from_slice(&b, b.len(), dev))
                .collect::<Result<_>>()?
        } else {
            vec![Tensor::arange(0u32, sample.len() as u32, dev)?]
        };
        let views: Vec<(Tensor, Tensor)> = blocks
            .iter()
            .map(|b| {
                Ok((
                    view(&sh_c.index_select(b, 0)?)?,
                    view(&sh_l.index_select(b, 0)?)?,
                ))
            })
            .collect::<Result<_>>()?;
        let mean_of = |ls: Vec<Tensor>| -> Result<Tensor> {
            let n = ls.len().max(1) as f64;
            let mut total = Tensor::zeros((), candle_core::DType::F32, dev)?;
            for l in ls {
                total = (total + l)?;
            }
            total / n
        };
        if cfg.use_global {
            let ls: Vec<Tensor> = if cfg.global_all {
                let (all_c, all_l) = self.shared(input.nodes, &self.sem.all)?;
                let ranges = if cfg.split_nodes {
                    vec![(0, input.n_users), (input.n_users, n_nodes - input.n_users)]
                } else {
                    vec![(0, n_nodes)]
                };
                ranges
                    .into_iter()
                    .filter(|&(_, len)| len >= 2)
                    .map(|(start, len)| {
                        gram_mse_identity(
                            &view(&all_c.narrow(0, start, len)?)?,
                            &view(&all_l.narrow(0, start, len)?)?,
                        )
                    })
                    .collect::<Result<_>>()?
            } else {
                views
                    .iter()
                    .map(|(c, l)| gram_mse_identity(c, l))
                    .collect::<Result<_>>()?
            };
            terms.push(LossTerm::new(
                "global",
                (mean_of(ls)? * (w * cfg.w_global))?,
            ));
        }
        if cfg.use_local {
            let mut ls = Vec::new();
            for (c, l) in &views {
                ls.push(local_alignment(c, l, cfg.k, cfg.kmeans_iters, rng)?);
            }
            terms.push(LossTerm::new("local", (mean_of(ls)? * (w * cfg.w_local))?));
        }
        if let Some(con) = self.con.as_mut() {
            terms.extend(con.losses(input, rng)?);
        }
        Ok(terms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn local_alignment_is_zero_for_identical_clusters_and_positive_otherwise() {
        let dev = Device::Cpu;
        // two tight clusters at (1,0) and (0,1), the second side a relabelled copy
        let mut rows = Vec::new();
        for i in 0..20 {
            let e = 0.01 * (i as f32 % 3.0);
            rows.extend_from_slice(&if i % 2 == 0 { [1.0, e] } else { [e, 1.0] });
        }
        let x = l2_normalize(&Tensor::from_vec(rows.clone(), (20, 2), &dev).unwrap()).unwrap();
        let l = local_alignment(&x, &x, 2, 10, &mut Rng::new(1))
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(l.abs() < 1e-5, "{l}");
        // rotate the second side by 45 degrees: matched centres differ by ~45 degrees
        let rot: Vec<f32> = rows
            .chunks(2)
            .flat_map(|r| [(r[0] - r[1]) * 0.70710677, (r[0] + r[1]) * 0.70710677])
            .collect();
        let y = l2_normalize(&Tensor::from_vec(rot, (20, 2), &dev).unwrap()).unwrap();
        let l = local_alignment(&x, &y, 2, 10, &mut Rng::new(1))
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((l - (1.0 - 0.70710677)).abs() < 0.02, "{l}");
    }

    #[test]
    fn centres_gradient_matches_finite_differences() {
        let dev = Device::Cpu;
        let x0: Vec<f32> = (0..12).map(|i| ((i * 5 % 7) as f32 - 3.0) / 3.0).collect();
        let assign = [0usize, 1, 0, 2, 1, 0];
        let w = Tensor::new(&[[0.3f32, -0.2], [0.5, 0.1], [-0.7, 0.4]], &dev).unwrap();
        let f = |v: &[f32]| {
            let x = Tensor::from_vec(v.to_vec(), (6, 2), &dev).unwrap();
            (centres(&x, &assign, 3).unwrap() * &w)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64
        };
        let x = Var::from_vec(x0.clone(), (6, 2), &dev).unwrap();
        let g = (centres(x.as_tensor(), &assign, 3).unwrap() * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gv = g
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for k in 0..12 {
            let (mut p, mut m) = (x0.clone(), x0.clone());
            p[k] += 1e-2;
            m[k] -= 1e-2;
            assert!(((f(&p) - f(&m)) / 2e-2 - gv[k] as f64).abs() < 1e-3);
        }
    }

    /// The measured collapse: every node's shared part is one constant plus a small
    /// variation. Uncentred, two such sides meet the structure terms almost exactly,
    /// whatever their variations; centred, the variations are what is compared, so two
    /// unrelated variations give a large loss, and matching ones a small one.
    #[test]
    fn a_collapsed_shared_space_no_longer_meets_the_centred_structure_terms() {
        let dev = Device::Cpu;
        let (n, d) = (64, 8);
        let mut rng = Rng::new(4);
        let mut noise = |scale: f32| -> Tensor {
            let v: Vec<f32> = (0..n * d).map(|_| scale * (rng.f32() - 0.5)).collect();
            Tensor::from_vec(v, (n, d), &dev).unwrap()
        };
        let constant = Tensor::ones((n, d), candle_core::DType::F32, &dev).unwrap();
        let var_c = noise(0.02);
        let c = (&constant + &var_c).unwrap();
        let l_unrelated = (&constant + noise(0.02)).unwrap();
        let l_matching = (&constant + (&var_c * 1.5).unwrap()).unwrap();
        let global = |a: &Tensor, b: &Tensor, centred: bool| -> f32 {
            let prep = |x: &Tensor| {
                if centred {
                    l2_normalize(&centre(x).unwrap()).unwrap()
                } else {
                    l2_normalize(x).unwrap()
                }
            };
            gram_mse_identity(&prep(a), &prep(b))
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        let plain = global(&c, &l_unrelated, false);
        let centred = global(&c, &l_unrelated, true);
        assert!(plain < 1e-3, "uncentred: met trivially, {plain}");
        assert!(
            centred > 0.05,
            "centred: unrelated variations cost, {centred}"
        );
        assert!(
            global(&c, &l_matching, true) < 1e-4,
            "matching variations meet it"
        );
        // an exactly constant side becomes zero after centring and matches no structure
        let flat = global(&constant, &l_unrelated, true);
        assert!(flat > 0.01, "{flat}");
        // the local term: centres of unrelated variations no longer all coincide
        let mut r = Rng::new(1);
        let loc = |a: &Tensor, b: &Tensor, r: &mut Rng| {
            local_alignment(
                &l2_normalize(a).unwrap(),
                &l2_normalize(b).unwrap(),
                4,
                10,
                r,
            )
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
        };
        let plain_local = loc(&c, &l_unrelated, &mut r);
        let centred_local = loc(&centre(&c).unwrap(), &centre(&l_unrelated).unwrap(), &mut r);
        assert!(plain_local < 1e-3, "{plain_local}");
        assert!(
            centred_local > 10.0 * plain_local.max(1e-6),
            "{centred_local}"
        );
    }

    /// A DaRec over 6 users and 5 items with random tables, and one batch.
    fn small(cfg: &DarecConfig) -> (Darec, Tensor, crate::step::Batch) {
        let dev = Device::Cpu;
        let (n_users, n_items, d, dl) = (6, 5, 4, 7);
        let mut r = Rng::new(9);
        let mut table = |rows: usize, cols: usize| {
            let v: Vec<f32> = (0..rows * cols).map(|_| r.f32() - 0.5).collect();
            Tensor::from_vec(v, (rows, cols), &dev).unwrap()
        };
        let sem = SemanticTables::new(table(n_users, dl), table(n_items, dl)).unwrap();
        let nodes = table(n_users + n_items, d);
        let mut rng = Rng::new(3);
        let ctx = AlignContext {
            sem,
            out_dim: d,
            ego_dim: d,
            device: &dev,
            rng: &mut rng,
        };
        let darec = Darec::new(cfg, &ConConfig::default(), ctx).unwrap();
        let batch =
            crate::step::Batch::new(&[(0, 1, 2), (3, 0, 4), (5, 2, 1)], n_users, &dev).unwrap();
        (darec, nodes, batch)
    }

    fn term(terms: &[LossTerm], name: &str) -> Option<f32> {
        terms
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.value.to_scalar::<f32>().unwrap())
    }

    fn losses_of(darec: &mut Darec, nodes: &Tensor, batch: &crate::step::Batch) -> Vec<LossTerm> {
        let input = AlignInput {
            ego: nodes,
            nodes,
            n_users: 6,
            batch,
        };
        darec.losses(&input, &mut Rng::new(5)).unwrap()
    }

    /// `split_nodes`: the global term is the mean of the user-user and the item-item
    /// terms, computed here by hand from the shared parts (every node sampled).
    #[test]
    fn split_nodes_averages_the_user_and_the_item_blocks() {
        let cfg = DarecConfig {
            n_hat: 11,
            split_nodes: true,
            global_all: true,
            lambda: 1.0,
            ..Default::default()
        };
        let (mut darec, nodes, batch) = small(&cfg);
        let got = term(&losses_of(&mut darec, &nodes, &batch), "global").unwrap();
        let (c, l) = darec.shared(&nodes, &darec.sem.all).unwrap();
        let block = |s: usize, n: usize| {
            gram_mse_identity(
                &l2_normalize(&c.narrow(0, s, n).unwrap()).unwrap(),
                &l2_normalize(&l.narrow(0, s, n).unwrap()).unwrap(),
            )
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
        };
        let want = (block(0, 6) + block(6, 5)) / 2.0;
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        let mixed = gram_mse_identity(&l2_normalize(&c).unwrap(), &l2_normalize(&l).unwrap())
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((got - mixed).abs() > 1e-4, "the split changes the term");
        // sampled: every node is in the sample, so the sampled split gives the same value
        let cfg = DarecConfig {
            global_all: false,
            ..cfg
        };
        let (mut darec, nodes, batch) = small(&cfg);
        let sampled = term(&losses_of(&mut darec, &nodes, &batch), "global").unwrap();
        assert!((sampled - want).abs() < 1e-6, "{sampled} vs {want}");
    }

    /// `warmup_epochs`: lambda rises linearly and then stays; the weighted terms follow.
    #[test]
    fn warmup_scales_lambda_over_the_first_epochs() {
        let cfg = DarecConfig {
            lambda: 0.4,
            warmup_epochs: 4,
            n_hat: 11,
            ..Default::default()
        };
        let (mut darec, nodes, batch) = small(&cfg);
        for (epoch, want) in [(0, 0.0), (1, 0.1), (2, 0.2), (4, 0.4), (9, 0.4)] {
            darec.start_epoch(epoch);
            assert!((darec.lambda_now() - want).abs() < 1e-12, "epoch {epoch}");
        }
        darec.start_epoch(2);
        let half = term(&losses_of(&mut darec, &nodes, &batch), "or").unwrap();
        darec.start_epoch(4);
        let full = term(&losses_of(&mut darec, &nodes, &batch), "or").unwrap();
        assert!((2.0 * half - full).abs() < 1e-6, "{half} vs {full}");
    }

    /// `var_floor`: the term is VICReg's hinge on both normalised shared parts, weighted.
    #[test]
    fn variance_floor_term_is_the_weighted_hinge_on_both_shared_parts() {
        let cfg = DarecConfig {
            lambda: 0.5,
            var_floor: 0.6,
            w_var: 2.0,
            n_hat: 11,
            ..Default::default()
        };
        let (mut darec, nodes, batch) = small(&cfg);
        let got = term(&losses_of(&mut darec, &nodes, &batch), "var_floor").unwrap();
        let (c, l) = darec.shared(&nodes, &darec.sem.all).unwrap();
        let v = |x: &Tensor| {
            variance_floor(&l2_normalize(x).unwrap(), 0.6)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        // every node sampled; the floor is a column statistic, so row order does not matter
        let want = (v(&c) + v(&l)) * 0.5 * 2.0;
        assert!(want > 0.0);
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        let off = DarecConfig::default();
        let (mut darec, nodes, batch) = small(&DarecConfig { n_hat: 11, ..off });
        assert!(term(&losses_of(&mut darec, &nodes, &batch), "var_floor").is_none());
    }

    /// `plus_con`: RLMRec-Con's term and parameters join DaRec's, and DaRec's own heads
    /// start as they do without it.
    #[test]
    fn plus_con_adds_the_contrastive_term_and_its_parameters() {
        let base = DarecConfig {
            n_hat: 11,
            ..Default::default()
        };
        let (mut plain, nodes, batch) = small(&base);
        let (mut with, _, _) = small(&DarecConfig {
            plus_con: true,
            ..base.clone()
        });
        let names = |d: &Darec| d.params().into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        let extra: Vec<String> = names(&with)
            .into_iter()
            .filter(|n| !names(&plain).contains(n))
            .collect();
        assert!(
            !extra.is_empty() && extra.iter().all(|n| n.starts_with("con.mlp")),
            "{extra:?}"
        );
        let (a, b) = (
            losses_of(&mut plain, &nodes, &batch),
            losses_of(&mut with, &nodes, &batch),
        );
        assert!(term(&a, "kd").is_none());
        assert!(term(&b, "kd").unwrap() > 0.0);
        for name in ["or", "uni", "global", "local"] {
            assert_eq!(term(&a, name), term(&b, name), "{name}");
        }
    }

    /// `uni_rows`: the uniformity term over the sample's first rows equals the term computed
    /// by hand on those rows of the specific parts.
    #[test]
    fn uni_rows_takes_the_first_rows_of_the_sample() {
        let cfg = DarecConfig {
            n_hat: 11,
            lambda: 1.0,
            uni_rows: 4,
            ..Default::default()
        };
        let (mut darec, nodes, batch) = small(&cfg);
        let got = term(&losses_of(&mut darec, &nodes, &batch), "uni").unwrap();
        // the sample as the loss draws it (same rng seed)
        let sample: Vec<u32> = Rng::new(5)
            .sample_distinct(11, 11)
            .into_iter()
            .take(4)
            .map(|i| i as u32)
            .collect();
        let idx = Tensor::from_slice(&sample, 4, &Device::Cpu).unwrap();
        let u = |head: &dyn Fn(&Tensor) -> Tensor, x: &Tensor| {
            uniformity(
                &l2_normalize(&head(&x.index_select(&idx, 0).unwrap())).unwrap(),
                2.0,
            )
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
        };
        let want = u(&|x| darec.c_specific.forward(x).unwrap(), &nodes)
            + u(&|x| darec.l_specific.forward(x).unwrap(), &darec.sem.all);
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        let all = term(
            &losses_of(
                &mut small(&DarecConfig { uni_rows: 0, ..cfg }).0,
                &nodes,
                &batch,
            ),
            "uni",
        )
        .unwrap();
        assert!((all - got).abs() > 1e-4);
    }

    /// `score_shared`: the score space is `[e ; e W + b]` of the collaborative shared
    /// head, so a dot product there is `e_u . e_i + P(e_u) . P(e_i)`; off, there is none.
    #[test]
    fn score_shared_appends_the_collaborative_shared_part() {
        let cfg = DarecConfig {
            n_hat: 11,
            score_shared: true,
            ..Default::default()
        };
        let (darec, nodes, _) = small(&cfg);
        let s = darec.score_space(&nodes).unwrap().unwrap();
        assert_eq!(s.dims(), &[11, 8]);
        let p = darec.c_shared.forward(&nodes).unwrap();
        let dot = |a: &Tensor, i: usize, j: usize| {
            (a.get(i).unwrap() * a.get(j).unwrap())
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        let want = dot(&nodes, 0, 7) + dot(&p, 0, 7);
        assert!((dot(&s, 0, 7) - want).abs() < 1e-5);
        let (plain, nodes, _) = small(&DarecConfig {
            score_shared: false,
            ..cfg
        });
        assert!(plain.score_space(&nodes).unwrap().is_none());
    }
}
