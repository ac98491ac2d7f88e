//! Operand checking of the batch-norm methods: the eval-mode `channel_affine` and the
//! fused `batch_norm` and its backward (each operand borrowed as f32, its length checked
//! against the `[outer, c, inner]` shape or the channel count).

use super::super::*;

/// An operand of `len` f32 elements.
fn f32s_of<'a>(op: &'static str, s: &'a dyn BackendStorage, len: usize) -> Result<&'a [f32]> {
    let v = cpu(op, s)?.f32s(op)?;
    check::lens(op, len, &[v.len()])?;
    Ok(v)
}

/// An optional operand of `len` f32 elements.
fn opt_f32s<'a>(
    op: &'static str,
    s: Option<&'a dyn BackendStorage>,
    len: usize,
) -> Result<Option<&'a [f32]>> {
    s.map(|s| f32s_of(op, s, len)).transpose()
}

/// `BackendStorage::channel_affine` of `x`, `[mean, scale]` `[c]`.
pub(super) fn channel_affine(
    x: &CpuStorage,
    shape: [usize; 3],
    [mean, scale]: [&dyn BackendStorage; 2],
    shift: Option<&dyn BackendStorage>,
    residual: Option<&dyn BackendStorage>,
    relu: bool,
) -> Result<Storage> {
    const OP: &str = "channel_affine";
    let x = x.view().f32s(OP)?;
    check::len(OP, &shape, x.len())?;
    let c = shape[1];
    let (mean, scale) = (f32s_of(OP, mean, c)?, f32s_of(OP, scale, c)?);
    let shift = opt_f32s(OP, shift, c)?;
    let residual = opt_f32s(OP, residual, x.len())?;
    let ch = elementwise::Channels { mean, scale, shift };
    out(HostData::F32(elementwise::channel_affine(
        x, shape, &ch, residual, relu,
    )?))
}

/// `BackendStorage::batch_norm` of `x`.
pub(super) fn batch_norm(
    x: &CpuStorage,
    spec: &BatchNormSpec,
    ops: &BatchNormOperands<'_>,
) -> Result<(Storage, Storage)> {
    const OP: &str = "batch_norm";
    let x = x.view().f32s(OP)?;
    check::len(OP, &spec.shape, x.len())?;
    let c = spec.shape[1];
    let running = match ops.running {
        Some((m, v)) => Some((f32s_of(OP, m, c)?, f32s_of(OP, v, c)?)),
        None if !spec.batch_stats => {
            return Err(Error::invalid_config(
                OP,
                "running",
                "None",
                "the running (mean, var) are needed when spec.batch_stats is false",
            ));
        }
        None => None,
    };
    let operands = batch_norm::Operands {
        weight: opt_f32s(OP, ops.weight, c)?,
        bias: opt_f32s(OP, ops.bias, c)?,
        residual: opt_f32s(OP, ops.residual, x.len())?,
        running,
    };
    let (y, stats) = batch_norm::batch_norm(x, spec, &operands)?;
    Ok((storage(HostData::F32(y)), storage(HostData::F32(stats))))
}

/// `BackendStorage::batch_norm_backward` of the input `x` from `[grad, output, stats]`.
pub(super) fn batch_norm_backward(
    x: &CpuStorage,
    [grad, output, stats]: [&dyn BackendStorage; 3],
    weight: Option<&dyn BackendStorage>,
    spec: &BatchNormSpec,
    needs: [bool; 4],
) -> Result<BatchNormGrads> {
    const OP: &str = "batch_norm_backward";
    let x = x.view().f32s(OP)?;
    check::len(OP, &spec.shape, x.len())?;
    let c = spec.shape[1];
    let g = cpu(OP, grad)?.f32s(OP)?;
    let y = cpu(OP, output)?.f32s(OP)?;
    let st = cpu(OP, stats)?.f32s(OP)?;
    check::lens(OP, x.len(), &[g.len(), y.len()])?;
    check::len(OP, &[3, c], st.len())?;
    let w = opt_f32s(OP, weight, c)?;
    let (dx, dw, db, dr) = batch_norm::batch_norm_backward(x, g, y, st, w, spec, needs)?;
    let wrap = |v: Vec<f32>| storage(HostData::F32(v));
    Ok((dx.map(wrap), dw.map(wrap), db.map(wrap), dr.map(wrap)))
}
