//! Matrix products on cuBLAS: row-major `C = op(A) · op(B)` computed as the column-major
//! `Cᵀ = op(B)ᵀ · op(A)ᵀ`, one strided-batched SGEMM when the batch index maps are
//! arithmetic progressions (the usual case), one SGEMM per batch otherwise.

use crate::device::CudaDevice;
use crate::error::{Error, Result};
use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{Gemm, GemmConfig, StridedBatchedConfig};
use cudarc::driver::CudaSlice;
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

/// The batched product described by `s`; `lhs` and `rhs` hold the matrices that the
/// spec's batch maps index (nn-core validated the maps against the storage lengths).
pub(crate) fn matmul_f32(
    dev: &CudaDevice,
    lhs: &CudaSlice<f32>,
    rhs: &CudaSlice<f32>,
    s: &MatmulSpec,
) -> Result<CudaSlice<f32>> {
    const OP: &str = "matmul";
    let (m, n, k) = (s.m, s.n, s.k);
    let out_len = s.batch * m * n;
    if out_len == 0 || k == 0 {
        return dev.alloc_zeros::<f32>(out_len);
    }
    let mut out = dev.alloc::<f32>(out_len)?;
    // cuBLAS's A is our rhs, its B our lhs (column-major view of row-major data).
    let gemm = GemmConfig {
        transa: if s.rhs_t {
            cublasOperation_t::CUBLAS_OP_T
        } else {
            cublasOperation_t::CUBLAS_OP_N
        },
        transb: if s.lhs_t {
            cublasOperation_t::CUBLAS_OP_T
        } else {
            cublasOperation_t::CUBLAS_OP_N
        },
        m: to_i32(OP, "n", n)?,
        n: to_i32(OP, "m", m)?,
        k: to_i32(OP, "k", k)?,
        alpha: 1.0f32,
        lda: to_i32(OP, "lda", if s.rhs_t { k } else { n })?,
        ldb: to_i32(OP, "ldb", if s.lhs_t { m } else { k })?,
        beta: 0.0f32,
        ldc: to_i32(OP, "n", n)?,
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
    // cuBLAS, unlike cudarc's own calls, does not make the context current itself
    dev.bind()?;
    let blas = dev.blas();
    match (progression(&s.rhs_batch), progression(&s.lhs_batch)) {
        (Some((ra, rstep)), Some((la, lstep))) => {
            let a = rhs.try_slice(ra * a_mat..).ok_or_else(out_of_range)?;
            let b = lhs.try_slice(la * b_mat..).ok_or_else(out_of_range)?;
            let cfg = StridedBatchedConfig {
                gemm,
                batch_size: to_i32(OP, "batch", s.batch)?,
                stride_a: (rstep as i64) * a_mat as i64,
                stride_b: (lstep as i64) * b_mat as i64,
                stride_c: c_mat as i64,
            };
            // SAFETY: with the row-major/column-major swap above, cuBLAS reads
            // `batch` matrices of k*n (rhs) and m*k (lhs) elements at the given strides
            // from the views, whose ranges the batch maps (checked against the
            // operand lengths above) keep in bounds; it writes batch*m*n elements of `out`.
            unsafe { blas.gemm_strided_batched(cfg, &a, &b, &mut out) }?;
        }
        _ => {
            for bi in 0..s.batch {
                let (ri, li) = (s.rhs_batch[bi], s.lhs_batch[bi]);
                let a = rhs
                    .try_slice(ri * a_mat..(ri + 1) * a_mat)
                    .ok_or_else(out_of_range)?;
                let b = lhs
                    .try_slice(li * b_mat..(li + 1) * b_mat)
                    .ok_or_else(out_of_range)?;
                let mut c = out
                    .try_slice_mut(bi * c_mat..(bi + 1) * c_mat)
                    .ok_or_else(out_of_range)?;
                // SAFETY: each view holds exactly one matrix of the size cuBLAS reads
                // (k*n, m*k) or writes (m*n) under `gemm`'s dims and leading dims.
                unsafe { blas.gemm(gemm, &a, &b, &mut c) }?;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::progression;

    #[test]
    fn batch_maps() {
        assert_eq!(progression(&[0, 1, 2, 3]), Some((0, 1)));
        assert_eq!(progression(&[0, 0, 0]), Some((0, 0)));
        assert_eq!(progression(&[2]), Some((2, 0)));
        assert_eq!(progression(&[0, 1, 0, 1]), None);
        assert_eq!(progression(&[1, 0]), None);
    }
}
