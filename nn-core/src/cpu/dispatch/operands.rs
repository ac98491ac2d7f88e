//! Operand gathering of the methods that take several storages: `cat`'s parts, `where`'s
//! three operands, a fused attention's q/k/v, masks and saved weights (each borrowed as a
//! [`View`] of the expected dtype, its length checked against the shape it claims).

use super::super::*;

/// `cat` of `first` (`shape`) and `others` along `axis`.
pub(super) fn cat(
    first: &CpuStorage,
    shape: &[usize],
    others: &[(&dyn BackendStorage, &[usize])],
    axis: usize,
) -> Result<Storage> {
    let first = first.view();
    check::len("cat", shape, first.len())?;
    check::axis("cat", shape, axis)?;
    let mut parts: Vec<(View<'_>, &[usize])> = vec![(first, shape)];
    let mut total = first.len();
    for (s, sh) in others {
        let c = cpu("cat", *s)?;
        if c.dtype() != first.dtype() {
            return Err(dtype_err("cat", c.dtype(), first.dtype()));
        }
        check::len("cat", sh, c.len())?;
        check::same_but_axis("cat", shape, sh, axis)?;
        total = total
            .checked_add(c.len())
            .ok_or_else(|| Error::bad_shape("cat", sh, "total size overflows usize"))?;
        parts.push((c, sh));
    }
    out(match first {
        View::F32(_) => {
            let p: Vec<(&[f32], &[usize])> = parts
                .iter()
                .map(|(c, s)| c.f32s("cat").map(|v| (v, *s)))
                .collect::<Result<_>>()?;
            HostData::F32(copy::cat(&p, axis)?)
        }
        View::I64(_) => {
            let p: Vec<(&[i64], &[usize])> = parts
                .iter()
                .map(|(c, s)| c.i64s("cat").map(|v| (v, *s)))
                .collect::<Result<_>>()?;
            HostData::I64(copy::cat(&p, axis)?)
        }
        other => return Err(storage_only("cat", other)),
    })
}

/// `where(cond, a, b)` broadcast to `out_shape`.
pub(super) fn where_cond(
    cond: &CpuStorage,
    cond_shape: &[usize],
    (a, a_shape): (&dyn BackendStorage, &[usize]),
    (b, b_shape): (&dyn BackendStorage, &[usize]),
    out_shape: &[usize],
) -> Result<Storage> {
    let cond = match cond.view() {
        View::I64(c) => elementwise::Cond::I64(c),
        View::Other(HostData::Bool(c) | HostData::U8(c)) => elementwise::Cond::U8(c),
        other => return Err(dtype_err("where", other.dtype(), DType::I64)),
    };
    let (a, b) = (cpu("where", a)?, cpu("where", b)?);
    check::numel("where", out_shape)?;
    for (shape, len) in [
        (cond_shape, cond.len()),
        (a_shape, a.len()),
        (b_shape, b.len()),
    ] {
        check::len("where", shape, len)?;
        check::broadcasts("where", shape, out_shape)?;
    }
    let (sc, so) = (cond_shape, out_shape);
    out(match (a, b) {
        (View::F32(a), View::F32(b)) => HostData::F32(elementwise::where_cond(
            cond, sc, a, a_shape, b, b_shape, so,
        )?),
        (View::I64(a), View::I64(b)) => HostData::I64(elementwise::where_cond(
            cond, sc, a, a_shape, b, b_shape, so,
        )?),
        _ => return Err(dtype_err("where", b.dtype(), a.dtype())),
    })
}

/// The operands of a fused attention (`q`, `k`, `v` and the masks with their per-problem
/// index), their lengths checked against `spec`; `k` and `v` are `q` when packed.
#[allow(clippy::type_complexity)]
pub(super) fn attention_operands<'a>(
    op: &'static str,
    query: &'a CpuStorage,
    key: &'a dyn BackendStorage,
    value: &'a dyn BackendStorage,
    mask: Option<&'a dyn BackendStorage>,
    spec: &'a AttentionSpec,
) -> Result<(
    &'a [f32],
    &'a [f32],
    &'a [f32],
    Option<(&'a [f32], &'a [usize])>,
)> {
    let q = query.view().f32s(op)?;
    let k = cpu(op, key)?.f32s(op)?;
    let v = cpu(op, value)?.f32s(op)?;
    let AttentionSpec {
        batch, l, s, d, dv, ..
    } = *spec;
    let mask = match (mask, &spec.mask_batch) {
        (Some(m), Some(idx)) => {
            let m = cpu(op, m)?.f32s(op)?;
            let count = m.len() / (l * s).max(1);
            if idx.len() != batch || idx.iter().any(|&i| i >= count) {
                return Err(Error::mismatch(op, &[idx.len()], &[batch]));
            }
            check::len(op, &[count, l, s], m.len())?;
            Some((m, idx.as_slice()))
        }
        (None, None) => None,
        // the backward reads no mask (its weights are saved)
        (None, Some(_)) if op.ends_with("_backward") => None,
        (Some(_), None) => {
            return Err(Error::invalid_config(
                op,
                "mask_batch",
                "None",
                "a mask operand was given without its per-problem index (spec.mask_batch)",
            ))
        }
        (None, Some(_)) => {
            return Err(Error::invalid_config(
                op,
                "mask_batch",
                "Some",
                "spec.mask_batch indexes a mask, but no mask operand was given",
            ))
        }
    };
    if let Some(h) = spec.packed_heads {
        if h == 0 || batch % h != 0 || s != l || dv != d {
            return Err(Error::mismatch(op, &[batch, l, d], &[h, s, dv]));
        }
        check::len(op, &[batch / h, l, 3 * h * d], q.len())?;
    } else {
        check::len(op, &[batch, l, d], q.len())?;
        check::len(op, &[batch, s, d], k.len())?;
        check::len(op, &[batch, s, dv], v.len())?;
    }
    Ok((q, k, v, mask))
}

/// An optional `[batch, l, s]` operand of a fused attention (weights, dropout mask),
/// its length checked.
pub(super) fn weights_operand<'a>(
    op: &'static str,
    t: Option<&'a dyn BackendStorage>,
    spec: &AttentionSpec,
) -> Result<Option<&'a [f32]>> {
    t.map(|t| {
        let t = cpu(op, t)?.f32s(op)?;
        check::len(op, &[spec.batch, spec.l, spec.s], t.len())?;
        Ok(t)
    })
    .transpose()
}
