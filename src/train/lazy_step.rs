//! One training step of `train.optimizer = "lazy_adam"`: BPR on the rows of the node
//! table (MF: the table is the final embeddings), its row-sparse gradient
//! (`ops::bpr_rows`) and a row-wise lazy Adam update (`ops::lazy_adam`), in place on the
//! table, without building autograd tensors. A step costs `O(batch x d)`, not `O(N d)`.

use crate::ops::bpr_rows::RowGrads;
use crate::ops::lazy_adam::LazyAdam;
use crate::ops::AdamConfig;
use candle_core::{CpuStorage, InplaceOp1, Layout, Var};
use std::sync::Mutex;

/// Lazy Adam over one `[N, d]` table and the scratch of its sparse gradients.
pub struct LazyTable {
    pub adam: LazyAdam,
    grads: RowGrads,
    dim: usize,
}

impl LazyTable {
    pub fn new(n_rows: usize, dim: usize, cfg: AdamConfig) -> Self {
        Self {
            adam: LazyAdam::new(n_rows, dim, cfg),
            grads: RowGrads::new(n_rows),
            dim,
        }
    }

    /// One step on the triples (node indices: items already offset by the user count):
    /// returns the BPR loss; the table is only updated when the loss is finite.
    pub fn step(
        &mut self,
        table: &Var,
        users: &[u32],
        pos: &[u32],
        neg: &[u32],
    ) -> anyhow::Result<f32> {
        if !table.device().is_cpu() {
            anyhow::bail!("train.optimizer = \"lazy_adam\" runs on the CPU only");
        }
        let op = Kernel {
            state: Mutex::new((self, None)),
            users,
            pos,
            neg,
        };
        table.as_tensor().inplace_op1(&op)?;
        let (_, loss) = op.state.into_inner().expect("lazy step state");
        Ok(loss.expect("the kernel ran"))
    }
}

struct Kernel<'a, 'b> {
    state: Mutex<(&'a mut LazyTable, Option<f32>)>,
    users: &'b [u32],
    pos: &'b [u32],
    neg: &'b [u32],
}

impl InplaceOp1 for Kernel<'_, '_> {
    fn name(&self) -> &'static str {
        "lazy-bpr-step"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> candle_core::Result<()> {
        let Some((a, b)) = l.contiguous_offsets() else {
            candle_core::bail!("lazy step: the table must be contiguous");
        };
        let CpuStorage::F32(data) = s else {
            candle_core::bail!("lazy step: the table must be f32");
        };
        let table = &mut data[a..b];
        let mut guard = self.state.lock().expect("lazy step state");
        let (lazy, loss) = &mut *guard;
        let d = lazy.dim;
        let n_rows = table.len() / d;
        if self
            .users
            .iter()
            .chain(self.pos)
            .chain(self.neg)
            .any(|&r| r as usize >= n_rows)
        {
            candle_core::bail!("lazy step: a node index is out of range ({n_rows} rows)");
        }
        let value = lazy.grads.bpr(table, d, self.users, self.pos, self.neg);
        *loss = Some(value);
        if value.is_finite() {
            let LazyTable { adam, grads, .. } = &mut **lazy;
            adam.step(table, &grads.rows, &grads.grads);
        }
        Ok(())
    }
}
