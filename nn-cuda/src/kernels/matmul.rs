//! Matrix products on cuBLAS: row-major `C = op(A) · op(B)` computed as the column-major
//! `Cᵀ = op(B)ᵀ · op(A)ᵀ`, one strided-batched SGEMM when the batch index maps are
//! arithmetic progressions (the usual case), one SGEMM per batch otherwise.

use super::copy;
use crate::error::{Error, Result};
use crate::layout::Layout3;
use crate::runtime::{DevBuf, Driver, Gemm, Runtime};
use nn_core::backend::MatmulSpec;

fn to_i32(op: &'static str, what: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::Unsupported {
        op,
        msg: format!("{what} = {v} exceeds cuBLAS's 32-bit sizes"),
    })
}

/// `(first, step)` when `map[i] == first + i*step` for every `i`.
fn progression(map: &[usize]) -> Option<(usize, isize)> {
    let first = *map.first()?;
    let step = match map.get(1) {
        Some(&s) => s as isize - first as isize,
        None => 0,
    };
    if step < 0 {
        return None;
    }
    let ok = map
        .iter()
        .enumerate()
        .all(|(i, &v)| v as isize == first as isize + i as isize * step);
    ok.then_some((first, step))
}

/// The column-major SGEMM that computes one row-major product of `s`: cuBLAS's A is our
/// rhs and its B our lhs, so `Cᵀ (n×m) = op(rhs)ᵀ · op(lhs)ᵀ` lands as row-major `C`.
pub(crate) fn gemm_config(s: &MatmulSpec) -> Result<Gemm> {
    const OP: &str = "matmul";
    let (m, n, k) = (s.m, s.n, s.k);
    Ok(Gemm {
        transa: s.rhs_t,
        transb: s.lhs_t,
        m: to_i32(OP, "n", n)?,
        n: to_i32(OP, "m", m)?,
        k: to_i32(OP, "k", k)?,
        lda: to_i32(OP, "lda", if s.rhs_t { k } else { n })?,
        ldb: to_i32(OP, "ldb", if s.lhs_t { m } else { k })?,
        ldc: to_i32(OP, "n", n.max(1))?,
        batch: 1,
        stride_a: 0,
        stride_b: 0,
        stride_c: 0,
        accumulate: false,
    })
}

/// The batched product described by `s`; `lhs` and `rhs` hold the matrices that the
/// spec's batch maps index (nn-core validated the maps against the storage lengths).
/// With `bias` (`n` elements), each output row starts as the bias and the product is
/// added to it (cuBLAS's beta = 1): a linear layer's forward in one GEMM.
pub(crate) fn matmul_f32(
    rt: &Runtime,
    lhs: &DevBuf<f32>,
    rhs: &DevBuf<f32>,
    s: &MatmulSpec,
    bias: Option<&DevBuf<f32>>,
) -> Result<DevBuf<f32>> {
    const OP: &str = "matmul";
    let (m, n, k) = (s.m, s.n, s.k);
    let out_len = s.batch * m * n;
    let mut out = match bias {
        Some(b) if out_len > 0 => {
            let mut out = rt.alloc::<f32>(out_len, false)?;
            let rows = Layout3::from_strides(OP, &[s.batch * m, n], &[&[0, 1], &[n, 1]])?;
            copy::copy(rt, &rows, (b, 0), (&mut out, 0), out_len)?;
            out
        }
        _ if out_len == 0 || k == 0 => return rt.alloc::<f32>(out_len, true),
        _ => rt.alloc::<f32>(out_len, false)?,
    };
    if out_len == 0 || k == 0 {
        return Ok(out);
    }
    let gemm = Gemm {
        accumulate: bias.is_some(),
        ..gemm_config(s)?
    };
    let (a_mat, b_mat, c_mat) = (k * n, m * k, m * n);
    let out_of_range = || Error::Unsupported {
        op: OP,
        msg: "batch index map points outside the operand".into(),
    };
    let fits = |map: &[usize], mat: usize, len: usize| {
        map.iter().max().is_none_or(|&mx| (mx + 1) * mat <= len)
    };
    if s.lhs_batch.len() != s.batch
        || s.rhs_batch.len() != s.batch
        || !fits(&s.lhs_batch, b_mat, lhs.len())
        || !fits(&s.rhs_batch, a_mat, rhs.len())
    {
        return Err(out_of_range());
    }
    match (progression(&s.rhs_batch), progression(&s.lhs_batch)) {
        (Some((ra, rstep)), Some((la, lstep))) => {
            let g = Gemm {
                batch: to_i32(OP, "batch", s.batch)?,
                stride_a: (rstep as i64) * a_mat as i64,
                stride_b: (lstep as i64) * b_mat as i64,
                stride_c: c_mat as i64,
                ..gemm
            };
            // SAFETY: with the row-major/column-major swap above, cuBLAS reads `batch`
            // matrices of k*n (rhs) and m*k (lhs) elements at the given strides from
            // the offsets, whose ranges the batch maps (checked against the operand
            // lengths above) keep in bounds; it writes batch*m*n elements of `out`.
            unsafe { rt.gemm(g, (rhs, ra * a_mat), (lhs, la * b_mat), (&mut out, 0)) }?;
        }
        _ => {
            for bi in 0..s.batch {
                let (ri, li) = (s.rhs_batch[bi], s.lhs_batch[bi]);
                // SAFETY: each offset starts one whole matrix of the size cuBLAS reads
                // (k*n, m*k) or writes (m*n) under `gemm`'s dims and leading dims, inside
                // its buffer (the batch maps were checked above).
                unsafe {
                    rt.gemm(
                        gemm,
                        (rhs, ri * a_mat),
                        (lhs, li * b_mat),
                        (&mut out, bi * c_mat),
                    )
                }?;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{gemm_config, progression};
    use crate::runtime::Gemm;
    use nn_core::backend::MatmulSpec;

    /// cuBLAS's column-major SGEMM, by definition: `C(i,j) = sum_p op(A)(i,p) op(B)(p,j)`
    /// with element `(r,c)` of a stored matrix at `r + c*ld`.
    fn sgemm_reference(g: &Gemm, a: &[f32], b: &[f32], c: &mut [f32]) {
        let t = |o: bool| o;
        let (m, n, k) = (g.m as usize, g.n as usize, g.k as usize);
        let (lda, ldb, ldc) = (g.lda as usize, g.ldb as usize, g.ldc as usize);
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0.0;
                for p in 0..k {
                    let av = if t(g.transa) {
                        a[p + i * lda]
                    } else {
                        a[i + p * lda]
                    };
                    let bv = if t(g.transb) {
                        b[j + p * ldb]
                    } else {
                        b[p + j * ldb]
                    };
                    acc += av * bv;
                }
                c[i + j * ldc] = acc;
            }
        }
    }

    /// The config computes row-major `op(lhs) @ op(rhs)` for every transpose combination.
    #[test]
    fn gemm_config_computes_the_row_major_product() -> crate::Result<()> {
        let (m, n, k) = (3usize, 4usize, 5usize);
        let lhs: Vec<f32> = (0..m * k).map(|v| v as f32 * 0.5 - 3.0).collect();
        let rhs: Vec<f32> = (0..k * n).map(|v| (v as f32).sin()).collect();
        for (lhs_t, rhs_t) in [(false, false), (true, false), (false, true), (true, true)] {
            // element (i, p) of op(lhs) and (p, j) of op(rhs), in their stored layouts
            let l = |i: usize, p: usize| {
                if lhs_t {
                    lhs[p * m + i]
                } else {
                    lhs[i * k + p]
                }
            };
            let r = |p: usize, j: usize| {
                if rhs_t {
                    rhs[j * k + p]
                } else {
                    rhs[p * n + j]
                }
            };
            let spec = MatmulSpec {
                batch: 1,
                m,
                n,
                k,
                lhs_batch: vec![0],
                rhs_batch: vec![0],
                lhs_t,
                rhs_t,
            };
            let g = gemm_config(&spec)?;
            let mut out = vec![0.0f32; m * n];
            sgemm_reference(&g, &rhs, &lhs, &mut out);
            for i in 0..m {
                for j in 0..n {
                    let want: f32 = (0..k).map(|p| l(i, p) * r(p, j)).sum();
                    let got = out[i * n + j];
                    assert!(
                        (got - want).abs() < 1e-4,
                        "t=({lhs_t},{rhs_t}) ({i},{j}): {got} vs {want}"
                    );
                }
            }
        }
        Ok(())
    }

    #[test]
    fn batch_maps() {
        assert_eq!(progression(&[0, 1, 2, 3]), Some((0, 1)));
        assert_eq!(progression(&[0, 0, 0]), Some((0, 0)));
        assert_eq!(progression(&[2]), Some((2, 0)));
        assert_eq!(progression(&[0, 1, 0, 1]), None);
        assert_eq!(progression(&[1, 0]), None);
    }
}
