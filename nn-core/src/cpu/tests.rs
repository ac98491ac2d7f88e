//! The CPU backend called through the public trait with hostile arguments: every bad
//! axis, shape, length or spec is an `Err`, never a panic; huge sizes are `OutOfMemory`.

use crate::backend::{AdamStep, BackendStorage, BinaryOp, MatmulSpec, ReduceOp, SgdStep, UnaryOp};
use crate::{DType, Device, Error, HostData, Result};

fn f32s(v: &[f32]) -> Result<crate::backend::Storage> {
    Device::Cpu.upload(HostData::F32(v.to_vec()))
}

fn spec(batch: usize, m: usize, n: usize, k: usize) -> MatmulSpec {
    MatmulSpec {
        batch,
        m,
        n,
        k,
        lhs_batch: vec![0; batch],
        rhs_batch: vec![0; batch],
        lhs_t: false,
        rhs_t: false,
    }
}

#[test]
fn bad_axes_shapes_and_lengths_are_errors() -> Result<()> {
    let x = f32s(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])?;
    let idx = Device::Cpu.upload(HostData::I64(vec![0, 1]))?;
    let bad_idx = Device::Cpu.upload(HostData::I64(vec![0, 7]))?;
    let x = x.as_ref();
    let cases: Vec<(&str, Result<crate::backend::Storage>)> = vec![
        ("reduce axis", x.reduce(ReduceOp::Sum, &[2, 3], &[2])),
        ("reduce unsorted", x.reduce(ReduceOp::Sum, &[2, 3], &[1, 0])),
        ("reduce len", x.reduce(ReduceOp::Max, &[4, 3], &[0])),
        ("argmax no axis", x.reduce(ReduceOp::ArgMax, &[6], &[])),
        ("argmax rank 0", x.reduce(ReduceOp::ArgMax, &[], &[0])),
        ("permute dup", x.permute(&[2, 3], &[0, 0])),
        ("permute rank", x.permute(&[2, 3], &[0])),
        ("permute len", x.permute(&[3, 3], &[1, 0])),
        ("narrow axis", x.narrow(&[2, 3], 2, 0, 1)),
        ("narrow range", x.narrow(&[2, 3], 1, 2, 2)),
        ("narrow overflow", x.narrow(&[2, 3], 1, usize::MAX, 2)),
        ("cat axis", x.cat(&[2, 3], &[(x, &[2, 3])], 5)),
        ("cat shapes", x.cat(&[2, 3], &[(x, &[3, 2])], 0)),
        ("cat len", x.cat(&[2, 3], &[(x, &[2, 4])], 1)),
        (
            "index_select axis",
            x.index_select(&[2, 3], 3, idx.as_ref()),
        ),
        (
            "index_select range",
            x.index_select(&[2, 3], 1, bad_idx.as_ref()),
        ),
        (
            "index_add axis",
            x.index_add(&[2, 3], 4, idx.as_ref(), &[2, 3]),
        ),
        (
            "index_add rank",
            x.index_add(&[2, 3], 0, idx.as_ref(), &[2]),
        ),
        (
            "index_add count",
            x.index_add(&[2, 3], 1, idx.as_ref(), &[2, 5]),
        ),
        ("binary len", x.binary(BinaryOp::Add, &[7], x, &[6], &[6])),
        (
            "binary broadcast",
            x.binary(BinaryOp::Add, &[6], x, &[2, 3], &[2, 3]),
        ),
        (
            "binary out",
            x.binary(BinaryOp::Mul, &[2, 3], x, &[2, 3], &[3]),
        ),
        (
            "binary overflow",
            x.binary(BinaryOp::Mul, &[2, 3], x, &[2, 3], &[usize::MAX, 2, 3]),
        ),
        (
            "where shapes",
            idx.where_cond(&[2], x, &[2, 3], x, &[2, 3], &[3, 2]),
        ),
        ("matmul short lhs", x.matmul(x, &spec(1, 3, 3, 3))),
        (
            "matmul batch",
            x.matmul(
                x,
                &MatmulSpec {
                    lhs_batch: vec![0],
                    ..spec(2, 1, 1, 3)
                },
            ),
        ),
        (
            "matmul batch index",
            x.matmul(
                x,
                &MatmulSpec {
                    lhs_batch: vec![9],
                    ..spec(1, 1, 1, 1)
                },
            ),
        ),
        ("matmul overflow", x.matmul(x, &spec(1, usize::MAX, 2, 2))),
        ("matmul_bias", x.matmul_bias(x, &spec(1, 2, 3, 3), x)),
        ("relu_backward", x.relu_backward(idx.as_ref())),
        ("unary i64", idx.unary(UnaryOp::Exp)),
    ];
    for (what, r) in cases {
        assert!(r.is_err(), "{what}: expected an error");
    }

    let mut p = crate::cpu::CpuStorage::new(HostData::F32(vec![0.0; 4]));
    let short = f32s(&[1.0; 3])?;
    let sgd = SgdStep {
        lr: 0.1,
        weight_decay: 0.0,
        momentum: 0.0,
        one_minus_dampening: 1.0,
        nesterov: false,
        first: false,
    };
    assert!(p.sgd_step(short.as_ref(), None, &sgd).is_err());
    let mut buf = crate::cpu::CpuStorage::new(HostData::F32(vec![0.0; 2]));
    let g = f32s(&[1.0; 4])?;
    assert!(p.sgd_step(g.as_ref(), Some(&mut buf), &sgd).is_err());
    let adam = AdamStep {
        one_minus_beta1: 0.1,
        beta2: 0.999,
        one_minus_beta2: 0.001,
        bias_correction2_sqrt: 1.0,
        neg_step_size: -0.1,
        eps: 1e-8,
        weight_decay: 0.0,
    };
    let mut m = crate::cpu::CpuStorage::new(HostData::F32(vec![0.0; 4]));
    let mut v = crate::cpu::CpuStorage::new(HostData::F32(vec![0.0; 5]));
    assert!(p.adam_step(g.as_ref(), &mut m, &mut v, &adam).is_err());
    assert!(p.write_at(3, &HostData::F32(vec![1.0, 2.0])).is_err());
    assert!(p.write_at(usize::MAX, &HostData::F32(vec![1.0])).is_err());
    assert!(p.write_at(0, &HostData::I64(vec![1])).is_err());
    // nothing above changed the parameter
    assert_eq!(p.data(), Some(&HostData::F32(vec![0.0; 4])));
    p.write_at(2, &HostData::F32(vec![7.0, 8.0]))?;
    assert_eq!(p.data(), Some(&HostData::F32(vec![0.0, 0.0, 7.0, 8.0])));
    Ok(())
}

#[test]
fn good_arguments_still_compute() -> Result<()> {
    let x = f32s(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])?;
    let s = x.reduce(ReduceOp::Sum, &[2, 3], &[1])?;
    assert_eq!(s.to_host()?, HostData::F32(vec![6.0, 15.0]));
    let a = x.reduce(ReduceOp::ArgMax, &[2, 3], &[0])?;
    assert_eq!(a.to_host()?, HostData::I64(vec![1, 1, 1]));
    let t = x.permute(&[2, 3], &[1, 0])?;
    assert_eq!(
        t.to_host()?,
        HostData::F32(vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0])
    );
    let n = x.narrow(&[2, 3], 1, 1, 2)?;
    assert_eq!(n.to_host()?, HostData::F32(vec![2.0, 3.0, 5.0, 6.0]));
    let xt = MatmulSpec {
        rhs_t: true,
        ..spec(1, 2, 2, 3)
    };
    let y = x.matmul(x.as_ref(), &xt)?;
    assert_eq!(y.to_host()?, HostData::F32(vec![14.0, 32.0, 32.0, 77.0]));
    Ok(())
}

/// 2^46 f32 (256 TiB): more than any machine here has, or than a 47-bit address space
/// holds, and no overflow in the byte count.
const HUGE: usize = 1 << 46;

#[test]
fn huge_allocations_are_out_of_memory_errors() -> Result<()> {
    for dtype in [DType::F32, DType::I64] {
        match Device::Cpu.zeros(HUGE, dtype) {
            Err(Error::OutOfMemory { bytes, op }) => {
                assert_eq!(bytes, HUGE as u128 * dtype.size_in_bytes() as u128);
                assert_eq!(op, "zeros");
            }
            other => panic!("expected OutOfMemory, got {other:?}"),
        }
    }
    // an op output sized from the arguments: a broadcast of one element to 2^46
    let one = f32s(&[1.0])?;
    let r = one.binary(BinaryOp::Add, &[1], one.as_ref(), &[1], &[HUGE]);
    assert!(
        matches!(r, Err(Error::OutOfMemory { op: "binary", .. })),
        "{r:?}"
    );
    let e = Device::Cpu
        .zeros(HUGE, DType::F32)
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        e.as_deref(),
        Some("zeros: out of memory allocating 281474976710656 bytes")
    );
    Ok(())
}

#[test]
fn reductions_over_scattered_axes_match_a_per_element_walk() -> Result<()> {
    // axis sets with reduced and kept dims interleaved (batch norm's [0, 2, 3]), size-1
    // dims, and rows longer and shorter than the eight running sums
    let cases: [(&[usize], &[usize]); 5] = [
        (&[2, 3, 4, 5], &[0, 2, 3]),
        (&[3, 1, 2, 9], &[0, 3]),
        (&[2, 3, 4], &[0, 2]),
        (&[4, 2, 3], &[1]),
        (&[1, 1, 1], &[0, 2]),
    ];
    for (shape, axes) in cases {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|i| ((i * 37 % 11) as f32) - 5.0).collect();
        let kept: Vec<usize> = (0..shape.len()).filter(|d| !axes.contains(d)).collect();
        let n_out: usize = kept.iter().map(|&d| shape[d]).product();
        let strides = crate::shape::strides(shape);
        for op in [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min] {
            let mut want = vec![Vec::new(); n_out];
            for (i, &x) in v.iter().enumerate() {
                let o = kept
                    .iter()
                    .fold(0, |o, &d| o * shape[d] + i / strides[d] % shape[d]);
                want[o].push(x);
            }
            let got = f32s(&v)?.reduce(op, shape, axes)?.to_host()?;
            let got = got.f32s("test")?;
            for (g, w) in got.iter().zip(&want) {
                let w = match op {
                    ReduceOp::Sum => w.iter().sum::<f32>(),
                    ReduceOp::Max => w.iter().copied().fold(f32::NEG_INFINITY, f32::max),
                    _ => w.iter().copied().fold(f32::INFINITY, f32::min),
                };
                assert_eq!(*g, w, "{shape:?} {axes:?} {op:?}");
            }
        }
    }
    Ok(())
}

/// A read-only mapping of a scratch file holding `bytes`.
fn mapping(tag: &str, bytes: &[u8]) -> Result<std::sync::Arc<memmap2::Mmap>> {
    let path = std::env::temp_dir().join(format!("nn-cpu-map-{tag}-{}", std::process::id()));
    std::fs::write(&path, bytes).map_err(|e| crate::Error::io(&path, e))?;
    let file = std::fs::File::open(&path).map_err(|e| crate::Error::io(&path, e))?;
    // SAFETY: a private scratch file that nothing else writes or truncates
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| crate::Error::io(&path, e))?;
    std::fs::remove_file(&path).map_err(|e| crate::Error::io(&path, e))?;
    Ok(std::sync::Arc::new(map))
}

#[test]
fn mapped_storage_computes_like_host_storage_and_copies_on_write() -> Result<()> {
    let vals = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    let mut bytes = vec![0u8; 8];
    bytes.extend(vals.iter().flat_map(|v| v.to_le_bytes()));
    bytes.extend([7i64, 0, 1].iter().flat_map(|v| v.to_le_bytes()));
    let map = mapping("ops", &bytes)?;
    let (Some(a), Some(idx)) = (
        super::mapped(&map, 8, 6, DType::F32),
        super::mapped(&map, 32, 3, DType::I64),
    ) else {
        panic!("aligned f32 and i64 ranges inside the mapping are borrowed");
    };
    let h = f32s(&vals)?;
    // as the left operand, the right operand, an index, in cat, cast and copies
    let spec = spec(1, 2, 2, 3);
    assert_eq!(
        a.matmul(h.as_ref(), &spec)?.to_host()?,
        h.matmul(h.as_ref(), &spec)?.to_host()?
    );
    assert_eq!(
        h.matmul(a.as_ref(), &spec)?.to_host()?,
        h.matmul(h.as_ref(), &spec)?.to_host()?
    );
    let sum = h.binary(BinaryOp::Add, &[6], a.as_ref(), &[6], &[6])?;
    assert_eq!(
        sum.to_host()?,
        HostData::F32(vals.iter().map(|v| 2.0 * v).collect())
    );
    assert_eq!(
        idx.cast(DType::F32)?.to_host()?,
        HostData::F32(vec![7.0, 0.0, 1.0])
    );
    let cat = a.cat(&[6], &[(h.as_ref(), &[6])], 0)?;
    assert_eq!(cat.len(), 12);
    assert_eq!(a.to_host()?, HostData::F32(vals.to_vec()));
    assert_eq!(a.dtype(), DType::F32);
    assert!(a.as_host().is_none());
    // writes copy the elements out first; the mapping is never written
    let mut w = super::CpuStorage::new(HostData::F32(Vec::new()));
    if let Some(m) = a.as_any().downcast_ref::<super::CpuStorage>() {
        assert!(m.is_mapped());
        w = m.clone();
    }
    assert!(w.is_mapped());
    w.write_at(0, &HostData::F32(vec![9.0]))?;
    assert!(!w.is_mapped());
    assert_eq!(
        w.data()
            .map(|d| d.f32s("t").map(|s| s[..2].to_vec()))
            .transpose()?,
        Some(vec![9.0, 2.0])
    );
    assert_eq!(a.to_host()?, HostData::F32(vals.to_vec()));
    assert_eq!(&map[8..12], &1.0f32.to_le_bytes());
    Ok(())
}

#[test]
fn mapping_refuses_what_it_cannot_borrow() -> Result<()> {
    let map = mapping("refuse", &[0u8; 64])?;
    // misaligned, past the end, overflowing, a dtype that is converted or normalized
    assert!(super::mapped(&map, 2, 4, DType::F32).is_none());
    assert!(super::mapped(&map, 4, 16, DType::F32).is_none());
    assert!(super::mapped(&map, 0, usize::MAX, DType::F32).is_none());
    assert!(super::mapped(&map, 0, 8, DType::Bool).is_none());
    assert!(super::mapped(&map, 0, 8, DType::F16).is_none());
    assert!(super::mapped(&map, 4, 15, DType::F32).is_some());
    assert!(super::mapped(&map, 0, 0, DType::I64).is_some());
    Ok(())
}

#[test]
fn attention_mask_and_its_index_come_together() -> Result<()> {
    let spec = |mask_batch: Option<Vec<usize>>| crate::backend::AttentionSpec {
        batch: 1,
        l: 2,
        s: 2,
        d: 1,
        dv: 1,
        scale: 1.0,
        causal: false,
        mask_batch,
        packed_heads: None,
    };
    let (q, mask) = (f32s(&[1.0, 2.0])?, f32s(&[0.0; 4])?);
    let (q, mask) = (q.as_ref(), mask.as_ref());
    // a mask without its index, and an index without a mask: both name the spec's field
    for (m, s) in [(Some(mask), spec(None)), (None, spec(Some(vec![0])))] {
        match q.attention(q, q, m, &s) {
            Err(e @ Error::InvalidConfig { .. }) => {
                assert!(e.to_string().contains("mask_batch"), "{e}")
            }
            other => panic!("expected InvalidConfig, got {:?}", other.map(|_| ())),
        }
    }
    // both, or neither: computed
    assert!(q
        .attention(q, q, Some(mask), &spec(Some(vec![0])))?
        .is_some());
    assert!(q.attention(q, q, None, &spec(None))?.is_some());
    Ok(())
}

#[test]
fn batch_norm_with_running_statistics_needs_them() -> Result<()> {
    let x = f32s(&[1.0, 2.0, 3.0, 4.0])?;
    let spec = crate::backend::BatchNormSpec {
        shape: [2, 2, 1],
        eps: 1e-5,
        relu: false,
        batch_stats: false,
    };
    let none = crate::backend::BatchNormOperands::default();
    match x.as_ref().batch_norm(&spec, &none) {
        Err(e @ Error::InvalidConfig { .. }) => assert!(e.to_string().contains("running"), "{e}"),
        other => panic!("expected InvalidConfig, got {:?}", other.map(|_| ())),
    }
    // a running mean of the wrong length is a length error
    let (m, v) = (f32s(&[0.0])?, f32s(&[1.0, 1.0])?);
    let short = crate::backend::BatchNormOperands {
        running: Some((m.as_ref(), v.as_ref())),
        ..none
    };
    assert!(x.as_ref().batch_norm(&spec, &short).is_err());
    Ok(())
}
