//! The CPU backend's [`BackendStorage`] impl: each method checks its arguments
//! (module `check`), borrows the operands as [`View`]s and hands them to the kernels of
//! the sibling modules.

use super::*;
use operands::{attention_operands, weights_operand};

mod norm;
mod operands;

impl BackendStorage for CpuStorage {
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn dtype(&self) -> DType {
        match &self.mapped {
            Some(m) => m.dtype,
            None => self.host.dtype(),
        }
    }
    fn len(&self) -> usize {
        match &self.mapped {
            Some(m) => m.len,
            None => self.host.len(),
        }
    }
    fn to_host(&self) -> Result<HostData> {
        let x = self.view();
        elementwise::cast(x, x.dtype())
    }
    fn as_host(&self) -> Option<&HostData> {
        self.data()
    }
    fn as_host_mut(&mut self) -> Option<&mut HostData> {
        self.host_mut().ok()
    }
    fn as_le_bytes(&self) -> Option<&[u8]> {
        // files are little-endian, and only little-endian hosts borrow from them
        if cfg!(target_endian = "big") {
            return None;
        }
        match &self.mapped {
            Some(m) => Some(m.bytes()),
            None => match self.host.le_bytes() {
                std::borrow::Cow::Borrowed(b) => Some(b),
                std::borrow::Cow::Owned(_) => None,
            },
        }
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn deep_copy(&self) -> Result<Storage> {
        out(self.to_host()?)
    }

    fn write_at(&mut self, offset: usize, src: &HostData) -> Result<()> {
        let len = self.view().len();
        let end = offset.checked_add(src.len()).filter(|&e| e <= len);
        let Some(end) = end else {
            return Err(Error::IndexOutOfRange {
                op: "write_at",
                index: i64::try_from(offset.saturating_add(src.len())).unwrap_or(i64::MAX),
                size: len,
            });
        };
        match (self.host_mut()?, src) {
            (HostData::F32(d), HostData::F32(s)) => d[offset..end].copy_from_slice(s),
            (HostData::I64(d), HostData::I64(s)) => d[offset..end].copy_from_slice(s),
            (d, s) => return Err(dtype_err("write_at", s.dtype(), d.dtype())),
        }
        Ok(())
    }

    fn sgd_step(
        &mut self,
        grad: &dyn BackendStorage,
        buf: Option<&mut dyn BackendStorage>,
        step: &SgdStep,
    ) -> Result<bool> {
        let g = cpu("sgd_step", grad)?.f32s("sgd_step")?;
        let p = f32s_mut("sgd_step", self.host_mut()?)?;
        match buf {
            None => {
                check::lens("sgd_step", p.len(), &[g.len()])?;
                optim::sgd(step, p, g, None);
            }
            Some(b) => {
                let b = f32s_mut("sgd_step", cpu_mut("sgd_step", b)?)?;
                check::lens("sgd_step", p.len(), &[g.len(), b.len()])?;
                optim::sgd(step, p, g, Some(b));
            }
        }
        Ok(true)
    }

    fn adam_step(
        &mut self,
        grad: &dyn BackendStorage,
        m: &mut dyn BackendStorage,
        v: &mut dyn BackendStorage,
        step: &AdamStep,
    ) -> Result<bool> {
        let g = cpu("adam_step", grad)?.f32s("adam_step")?;
        let p = f32s_mut("adam_step", self.host_mut()?)?;
        let m = f32s_mut("adam_step", cpu_mut("adam_step", m)?)?;
        let v = f32s_mut("adam_step", cpu_mut("adam_step", v)?)?;
        check::lens("adam_step", p.len(), &[g.len(), m.len(), v.len()])?;
        optim::adam(step, p, g, m, v);
        Ok(true)
    }

    fn optim_step(
        &mut self,
        grad: &dyn BackendStorage,
        state: &mut [&mut dyn BackendStorage],
        step: &OptimStep,
    ) -> Result<bool> {
        const OP: &str = "optim_step";
        let g = cpu(OP, grad)?.f32s(OP)?;
        let p = f32s_mut(OP, self.host_mut()?)?;
        let mut bufs: [&mut [f32]; 3] = [&mut [], &mut [], &mut []];
        let n = state.len();
        if n > bufs.len() {
            return Err(Error::invalid_config(OP, "state buffers", n, "at most 3"));
        }
        for (slot, s) in bufs.iter_mut().zip(state.iter_mut()) {
            *slot = f32s_mut(OP, cpu_mut(OP, &mut **s)?)?;
        }
        let [a, b, c] = &bufs;
        let lens = [g.len(), a.len(), b.len(), c.len()];
        check::lens(OP, p.len(), &lens[..n + 1])?;
        optim::fused(step, p, g, &mut bufs[..n])?;
        Ok(true)
    }

    fn unary(&self, op: UnaryOp) -> Result<Storage> {
        let x = self.view().f32s("unary")?;
        out(HostData::F32(elementwise::unary(op, x)?))
    }

    fn binary(
        &self,
        op: BinaryOp,
        lhs_shape: &[usize],
        rhs: &dyn BackendStorage,
        rhs_shape: &[usize],
        out_shape: &[usize],
    ) -> Result<Storage> {
        let (lhs, rhs) = (self.view(), cpu("binary", rhs)?);
        check::broadcast_operands(
            "binary",
            (lhs_shape, lhs.len()),
            (rhs_shape, rhs.len()),
            out_shape,
        )?;
        out(match (lhs, rhs) {
            (View::F32(a), View::F32(b)) => {
                elementwise::binary_f32(op, a, lhs_shape, b, rhs_shape, out_shape)?
            }
            (View::I64(a), View::I64(b)) => {
                elementwise::binary_i64(op, a, lhs_shape, b, rhs_shape, out_shape)?
            }
            _ => return Err(dtype_err("binary", rhs.dtype(), lhs.dtype())),
        })
    }

    fn compare(
        &self,
        op: BinaryOp,
        lhs_shape: &[usize],
        rhs: &dyn BackendStorage,
        rhs_shape: &[usize],
        out_shape: &[usize],
    ) -> Result<Storage> {
        let (lhs, rhs) = (self.view(), cpu("compare", rhs)?);
        check::broadcast_operands(
            "compare",
            (lhs_shape, lhs.len()),
            (rhs_shape, rhs.len()),
            out_shape,
        )?;
        let (sa, sb, so) = (lhs_shape, rhs_shape, out_shape);
        out(match (lhs, rhs) {
            (View::F32(a), View::F32(b)) => elementwise::compare(op, a, sa, b, sb, so)?,
            (View::I64(a), View::I64(b)) => elementwise::compare(op, a, sa, b, sb, so)?,
            _ => return Err(dtype_err("compare", rhs.dtype(), lhs.dtype())),
        })
    }

    fn where_cond(
        &self,
        cond_shape: &[usize],
        a: &dyn BackendStorage,
        a_shape: &[usize],
        b: &dyn BackendStorage,
        b_shape: &[usize],
        out_shape: &[usize],
    ) -> Result<Storage> {
        operands::where_cond(self, cond_shape, (a, a_shape), (b, b_shape), out_shape)
    }

    fn matmul(&self, rhs: &dyn BackendStorage, spec: &MatmulSpec) -> Result<Storage> {
        let a = self.view().f32s("matmul")?;
        let b = cpu("matmul", rhs)?.f32s("matmul")?;
        let n_out = check::matmul(spec, a.len(), b.len())?;
        out(HostData::F32(matmul::matmul(a, b, spec, n_out)?))
    }

    fn matmul_bias(
        &self,
        rhs: &dyn BackendStorage,
        spec: &MatmulSpec,
        bias: &dyn BackendStorage,
    ) -> Result<Storage> {
        let a = self.view().f32s("linear")?;
        let b = cpu("linear", rhs)?.f32s("linear")?;
        let bias = cpu("linear", bias)?.f32s("linear")?;
        if bias.len() != spec.n {
            return Err(Error::mismatch("linear", &[bias.len()], &[spec.n]));
        }
        let n_out = check::matmul(spec, a.len(), b.len())?;
        out(HostData::F32(matmul::matmul_bias(a, b, spec, bias, n_out)?))
    }

    fn channel_affine(
        &self,
        shape: [usize; 3],
        mean: &dyn BackendStorage,
        scale: &dyn BackendStorage,
        shift: Option<&dyn BackendStorage>,
        residual: Option<&dyn BackendStorage>,
        relu: bool,
    ) -> Result<Storage> {
        norm::channel_affine(self, shape, [mean, scale], shift, residual, relu)
    }

    fn batch_norm(
        &self,
        spec: &BatchNormSpec,
        operands: &BatchNormOperands<'_>,
    ) -> Result<Option<(Storage, Storage)>> {
        norm::batch_norm(self, spec, operands).map(Some)
    }

    fn batch_norm_backward(
        &self,
        grad: &dyn BackendStorage,
        output: &dyn BackendStorage,
        stats: &dyn BackendStorage,
        weight: Option<&dyn BackendStorage>,
        spec: &BatchNormSpec,
        needs: [bool; 4],
    ) -> Result<Option<BatchNormGrads>> {
        norm::batch_norm_backward(self, [grad, output, stats], weight, spec, needs).map(Some)
    }

    fn relu_backward(&self, grad: &dyn BackendStorage) -> Result<Storage> {
        let x = self.view().f32s("relu_backward")?;
        let g = cpu("relu_backward", grad)?.f32s("relu_backward")?;
        check::lens("relu_backward", x.len(), &[g.len()])?;
        out(HostData::F32(elementwise::relu_backward(x, g)?))
    }

    fn relu_backward_colsum(
        &self,
        grad: &dyn BackendStorage,
        rows: usize,
        cols: usize,
    ) -> Result<(Storage, Storage)> {
        let y = self.view().f32s("relu_backward")?;
        let g = cpu("relu_backward", grad)?.f32s("relu_backward")?;
        check::lens("relu_backward", y.len(), &[g.len()])?;
        check::len("relu_backward", &[rows, cols], y.len())?;
        let (gm, sums) = elementwise::relu_backward_colsum(y, g, cols)?;
        Ok((storage(HostData::F32(gm)), storage(HostData::F32(sums))))
    }

    fn cross_entropy(
        &self,
        targets: &dyn BackendStorage,
        rows: usize,
        classes: usize,
    ) -> Result<Option<(Storage, Storage)>> {
        let x = self.view().f32s("cross_entropy")?;
        let t = cpu("cross_entropy", targets)?.i64s("cross_entropy")?;
        check::len("cross_entropy", &[rows, classes], x.len())?;
        check::len("cross_entropy", &[rows], t.len())?;
        let (loss, probs) = loss::cross_entropy(x, t, classes)?;
        Ok(Some((
            storage(HostData::F32(vec![loss])),
            storage(HostData::F32(probs)),
        )))
    }

    fn cross_entropy_backward(
        &self,
        targets: &dyn BackendStorage,
        grad: &dyn BackendStorage,
        rows: usize,
        classes: usize,
    ) -> Result<Option<Storage>> {
        let p = self.view().f32s("cross_entropy")?;
        let t = cpu("cross_entropy", targets)?.i64s("cross_entropy")?;
        let g = cpu("cross_entropy", grad)?.f32s("cross_entropy")?;
        check::len("cross_entropy", &[rows, classes], p.len())?;
        check::len("cross_entropy", &[rows], t.len())?;
        check::len("cross_entropy", &[], g.len())?;
        let gx = loss::cross_entropy_backward(p, t, g[0], classes)?;
        Ok(Some(storage(HostData::F32(gx))))
    }

    fn softmax_last(&self, rows: usize, cols: usize) -> Result<Option<Storage>> {
        let x = self.view().f32s("softmax")?;
        check::len("softmax", &[rows, cols], x.len())?;
        Ok(Some(storage(HostData::F32(rowwise::softmax(x, cols)?))))
    }

    fn softmax_last_backward(
        &self,
        grad: &dyn BackendStorage,
        rows: usize,
        cols: usize,
    ) -> Result<Option<Storage>> {
        let y = self.view().f32s("softmax_backward")?;
        let g = cpu("softmax_backward", grad)?.f32s("softmax_backward")?;
        check::len("softmax_backward", &[rows, cols], y.len())?;
        check::lens("softmax_backward", y.len(), &[g.len()])?;
        let dx = rowwise::softmax_backward(y, g, cols)?;
        Ok(Some(storage(HostData::F32(dx))))
    }

    fn layer_norm(
        &self,
        weight: Option<&dyn BackendStorage>,
        bias: Option<&dyn BackendStorage>,
        rows: usize,
        cols: usize,
        eps: f32,
    ) -> Result<Option<(Storage, Storage)>> {
        let x = self.view().f32s("layer_norm")?;
        check::len("layer_norm", &[rows, cols], x.len())?;
        fn param(p: Option<&dyn BackendStorage>, cols: usize) -> Result<Option<&[f32]>> {
            let Some(p) = p else { return Ok(None) };
            let v = cpu("layer_norm", p)?.f32s("layer_norm")?;
            check::len("layer_norm", &[cols], v.len())?;
            Ok(Some(v))
        }
        let aff = rowwise::Affine {
            weight: param(weight, cols)?,
            bias: param(bias, cols)?,
        };
        let (y, stats) = rowwise::layer_norm(x, cols, eps, aff)?;
        Ok(Some((
            storage(HostData::F32(y)),
            storage(HostData::F32(stats)),
        )))
    }

    fn layer_norm_backward(
        &self,
        grad: &dyn BackendStorage,
        stats: &dyn BackendStorage,
        weight: Option<&dyn BackendStorage>,
        with_bias: bool,
        rows: usize,
        cols: usize,
    ) -> Result<Option<LayerNormGrads>> {
        let op = "layer_norm_backward";
        let x = self.view().f32s(op)?;
        let g = cpu(op, grad)?.f32s(op)?;
        let st = cpu(op, stats)?.f32s(op)?;
        check::len(op, &[rows, cols], x.len())?;
        check::lens(op, x.len(), &[g.len()])?;
        check::len(op, &[rows, 2], st.len())?;
        let w = match weight {
            Some(w) => {
                let w = cpu(op, w)?.f32s(op)?;
                check::len(op, &[cols], w.len())?;
                Some(w)
            }
            None => None,
        };
        let (dx, dw, db) = rowwise::layer_norm_backward(x, g, st, cols, w, with_bias)?;
        let wrap = |v: Vec<f32>| storage(HostData::F32(v));
        Ok(Some((wrap(dx), dw.map(wrap), db.map(wrap))))
    }

    fn attention(
        &self,
        key: &dyn BackendStorage,
        value: &dyn BackendStorage,
        mask: Option<&dyn BackendStorage>,
        spec: &AttentionSpec,
    ) -> Result<Option<Storage>> {
        let op = "scaled_dot_product_attention";
        let (q, k, v, mask) = attention_operands(op, self, key, value, mask, spec)?;
        let o = match spec.packed_heads {
            Some(h) => attention::forward_packed(q, h, mask, spec)?,
            None => attention::forward(q, k, v, mask, spec)?,
        };
        Ok(Some(storage(HostData::F32(o))))
    }

    fn attention_train(
        &self,
        key: &dyn BackendStorage,
        value: &dyn BackendStorage,
        mask: Option<&dyn BackendStorage>,
        drop: Option<&dyn BackendStorage>,
        spec: &AttentionSpec,
    ) -> Result<Option<(Storage, Storage)>> {
        let op = "scaled_dot_product_attention";
        let (q, k, v, mask) = attention_operands(op, self, key, value, mask, spec)?;
        let drop = weights_operand(op, drop, spec)?;
        let (o, p) = attention::train_forward(q, k, v, mask, drop, spec)?;
        Ok(Some((storage(HostData::F32(o)), storage(HostData::F32(p)))))
    }

    fn attention_backward(
        &self,
        key: &dyn BackendStorage,
        value: &dyn BackendStorage,
        probs: &dyn BackendStorage,
        drop: Option<&dyn BackendStorage>,
        grad: &dyn BackendStorage,
        spec: &AttentionSpec,
    ) -> Result<Option<Vec<Storage>>> {
        let op = "scaled_dot_product_attention_backward";
        let (q, k, v, _) = attention_operands(op, self, key, value, None, spec)?;
        let drop = weights_operand(op, drop, spec)?;
        let probs = weights_operand(op, Some(probs), spec)?.unwrap_or_default();
        let g = cpu(op, grad)?.f32s(op)?;
        let out_len = match spec.packed_heads {
            Some(h) => [spec.batch / h.max(1), spec.l, h * spec.dv],
            None => [spec.batch, spec.l, spec.dv],
        };
        check::len(op, &out_len, g.len())?;
        let grads = attention::backward(q, k, v, probs, drop, g, spec)?;
        Ok(Some(
            grads
                .into_iter()
                .map(|g| storage(HostData::F32(g)))
                .collect(),
        ))
    }

    fn reduce(&self, op: ReduceOp, shape: &[usize], axes: &[usize]) -> Result<Storage> {
        check::len("reduce", shape, self.view().len())?;
        check::axes("reduce", shape, axes)?;
        if op == ReduceOp::ArgMax {
            let [ax] = *axes else {
                return Err(Error::bad_shape(
                    "argmax",
                    shape,
                    format!("needs exactly one axis, got {axes:?}"),
                ));
            };
            return out(HostData::I64(match self.view() {
                View::F32(x) => reduce::argmax(x, shape, ax)?,
                View::I64(x) => reduce::argmax(x, shape, ax)?,
                other => return Err(storage_only("argmax", other)),
            }));
        }
        out(match self.view() {
            View::F32(x) => HostData::F32(reduce::reduce(op, x, shape, axes)?),
            View::I64(x) => HostData::I64(reduce::reduce(op, x, shape, axes)?),
            other => return Err(storage_only("reduce", other)),
        })
    }

    fn permute(&self, shape: &[usize], perm: &[usize]) -> Result<Storage> {
        check::len("permute", shape, self.view().len())?;
        check::perm(shape, perm)?;
        out(match self.view() {
            View::F32(x) => HostData::F32(copy::permute(x, shape, perm)?),
            View::I64(x) => HostData::I64(copy::permute(x, shape, perm)?),
            other => return Err(storage_only("permute", other)),
        })
    }

    fn narrow(&self, shape: &[usize], axis: usize, start: usize, len: usize) -> Result<Storage> {
        check::len("narrow", shape, self.view().len())?;
        check::range(shape, axis, start, len)?;
        out(match self.view() {
            View::F32(x) => HostData::F32(copy::narrow(x, shape, axis, start, len)?),
            View::I64(x) => HostData::I64(copy::narrow(x, shape, axis, start, len)?),
            other => return Err(storage_only("narrow", other)),
        })
    }

    fn cat(
        &self,
        shape: &[usize],
        others: &[(&dyn BackendStorage, &[usize])],
        axis: usize,
    ) -> Result<Storage> {
        operands::cat(self, shape, others, axis)
    }

    fn index_select(
        &self,
        shape: &[usize],
        axis: usize,
        indices: &dyn BackendStorage,
    ) -> Result<Storage> {
        let idx = cpu("index_select", indices)?.i64s("index_select")?;
        check::len("index_select", shape, self.view().len())?;
        check::axis("index_select", shape, axis)?;
        let size = shape.get(axis).copied().unwrap_or(0);
        let idx = copy::check_indices("index_select", idx, size)?;
        out(match self.view() {
            View::F32(x) => HostData::F32(copy::index_select(x, shape, axis, &idx)?),
            View::I64(x) => HostData::I64(copy::index_select(x, shape, axis, &idx)?),
            other => return Err(storage_only("index_select", other)),
        })
    }

    fn index_add(
        &self,
        shape: &[usize],
        axis: usize,
        indices: &dyn BackendStorage,
        out_shape: &[usize],
    ) -> Result<Storage> {
        let idx = cpu("index_add", indices)?.i64s("index_add")?;
        check::len("index_add", shape, self.view().len())?;
        check::axis("index_add", shape, axis)?;
        check::same_but_axis("index_add", out_shape, shape, axis)?;
        check::numel("index_add", out_shape)?;
        if shape.get(axis) != Some(&idx.len()) {
            return Err(Error::mismatch("index_add", shape, &[idx.len()]));
        }
        let idx = copy::check_indices("index_add", idx, out_shape[axis])?;
        let x = self.view().f32s("index_add")?;
        out(HostData::F32(copy::index_add(
            x, shape, axis, &idx, out_shape,
        )?))
    }

    fn cast(&self, dtype: DType) -> Result<Storage> {
        out(elementwise::cast(self.view(), dtype)?)
    }

    fn im2col(&self, spec: &Im2ColSpec) -> Result<Storage> {
        let x = self.view().f32s("im2col")?;
        let (image, cols) = im2col::check_spec("im2col", spec)?;
        check::lens("im2col", x.len(), &[image])?;
        out(HostData::F32(im2col::im2col(x, spec, cols)?))
    }

    fn col2im(&self, spec: &Im2ColSpec) -> Result<Storage> {
        let c = self.view().f32s("col2im")?;
        let (image, cols) = im2col::check_spec("col2im", spec)?;
        check::lens("col2im", c.len(), &[cols])?;
        out(HostData::F32(im2col::col2im(c, spec, image)?))
    }

    fn conv2d(
        &self,
        weight: &dyn BackendStorage,
        bias: Option<&dyn BackendStorage>,
        spec: &Conv2dSpec,
    ) -> Result<Option<Storage>> {
        const OP: &str = "conv2d";
        let x = self.view().f32s(OP)?;
        let w = cpu(OP, weight)?.f32s(OP)?;
        let b = bias.map(|b| cpu(OP, b)?.f32s(OP)).transpose()?;
        conv::check_spec(OP, spec, x.len(), w.len(), b.map(<[f32]>::len))?;
        Ok(Some(storage(HostData::F32(conv::forward(x, w, b, spec)?))))
    }

    fn conv2d_backward(
        &self,
        weight: &dyn BackendStorage,
        grad: &dyn BackendStorage,
        spec: &Conv2dSpec,
        needs: [bool; 3],
    ) -> Result<Option<Conv2dGrads>> {
        const OP: &str = "conv2d_backward";
        let x = self.view().f32s(OP)?;
        let w = cpu(OP, weight)?.f32s(OP)?;
        let g = cpu(OP, grad)?.f32s(OP)?;
        conv::check_spec(OP, spec, x.len(), w.len(), None)?;
        check::lens(OP, spec.output_len(), &[g.len()])?;
        let (dx, dw, db) = conv::backward(x, w, g, spec, needs)?;
        let wrap = |v: Option<Vec<f32>>| v.map(|v| storage(HostData::F32(v)));
        Ok(Some((wrap(dx), wrap(dw), wrap(db))))
    }
}
