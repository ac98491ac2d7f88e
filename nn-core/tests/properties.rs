//! Property tests over the public tensor API: random ranks 0-5, zero-size dims, negative
//! and out-of-range axes, mismatched shapes. Every call returns `Ok` with storage that
//! matches the shape, or `Err`; none panics. The case count is bounded (CI runs these in
//! every test run); `PROPTEST_CASES=20000 cargo test -p nn-core --test properties` digs
//! deeper.

use nn_core::{DType, Result, Tensor};
use proptest::prelude::*;

/// Shapes of rank 0-5 with dims 0-3 (zero-size dims included).
fn shape() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..4, 0..=5)
}

fn tensor(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| ((i as u64 * 2654435761 + seed) % 17) as f32 / 4.0 - 2.0)
        .collect();
    match Tensor::from_vec(v, shape) {
        Ok(t) => t,
        Err(e) => panic!("from_vec rejected a consistent shape {shape:?}: {e}"),
    }
}

/// An `Ok` result must hold exactly as many elements as its shape says.
fn consistent(what: &str, r: Result<Tensor>) {
    if let Ok(t) = r {
        let held = match t.dtype() {
            DType::F32 => t.to_vec::<f32>().map(|v| v.len()),
            DType::Bool => t.to_vec::<bool>().map(|v| v.len()),
            _ => t.to_vec::<i64>().map(|v| v.len()),
        };
        match held {
            Ok(n) => assert_eq!(n, t.numel(), "{what}: shape {:?} holds {n}", t.shape()),
            Err(e) => panic!("{what}: result unreadable: {e}"),
        }
        // printing is total too
        let _ = format!("{t} {t:?}");
    }
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(192);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn unary_and_reductions(s in shape(), axis in -7isize..7, seed in 0u64..1000) {
        let x = tensor(&s, seed);
        consistent("neg", x.neg());
        consistent("exp", x.exp());
        consistent("relu", x.relu());
        consistent("sigmoid", x.sigmoid());
        consistent("sum_all", x.sum());
        consistent("mean_all", x.mean());
        consistent("max_all", x.max());
        consistent("sum", x.sum_dim(axis, axis % 2 == 0));
        consistent("mean", x.mean_dim(axis, false));
        consistent("max", x.max_dim(axis, true));
        consistent("min", x.min_dim(axis, false));
        consistent("amax", x.amax(&[axis, -1], false));
        consistent("argmax", x.argmax(axis, false));
        consistent("softmax", x.softmax(axis));
        consistent("log_softmax", x.log_softmax(axis));
        consistent("flatten_from", x.flatten_from(axis));
        consistent("unsqueeze", x.unsqueeze(axis));
        consistent("squeeze", x.squeeze(axis));
        consistent("to_dtype", x.to_dtype(DType::I64));
    }

    #[test]
    fn binary_ops_broadcast_or_fail(a in shape(), b in shape(), seed in 0u64..1000) {
        let (x, y) = (tensor(&a, seed), tensor(&b, seed + 1));
        consistent("add", x.add(&y));
        consistent("sub", &x - &y);
        consistent("mul", &x * &y);
        consistent("div", x.div(&y));
        consistent("maximum", x.maximum(&y));
        consistent("lt", x.lt(&y));
        consistent("matmul", x.matmul(&y));
        consistent("broadcast_as", x.broadcast_as(&b));
        consistent("sum_to", x.sum_to(&b));
        consistent("reshape", x.reshape(&b));
        consistent("cat", Tensor::cat(&[x.clone(), y.clone()], -1));
        consistent("stack", Tensor::stack(&[x.clone(), y.clone()], 0));
        consistent("linear", x.linear(&y, None));
        consistent("where", Tensor::where_cond(&x.gt_scalar(0.0).unwrap_or(x.clone()), &x, &y));
        consistent("mse", x.mse(&y));
    }

    #[test]
    fn indexing_and_slicing(
        s in shape(),
        axis in -7isize..7,
        start in 0usize..5,
        len in 0usize..5,
        perm in prop::collection::vec(0usize..6, 0..=6),
        idx in prop::collection::vec(-2i64..5, 0..4),
        seed in 0u64..1000,
    ) {
        let x = tensor(&s, seed);
        consistent("narrow", x.narrow(axis, start, len));
        consistent("permute", x.permute(&perm));
        consistent("transpose", x.transpose(axis, -1));
        let n = idx.len();
        let Ok(i) = Tensor::from_vec(idx, &[n]) else { panic!("index tensor") };
        consistent("index_select", x.index_select(axis, &i));
        consistent("one_hot", i.one_hot(start));
        consistent("cross_entropy", x.cross_entropy(&i));
        if let Ok(parts) = x.chunk(len, axis) {
            for p in parts {
                consistent("chunk", Ok(p));
            }
        }
        consistent("reshape_infer", x.reshape_infer(&[-1, start as isize]));
    }

    #[test]
    fn gradients_of_valid_results_have_the_input_shape(s in shape(), axis in -3isize..3, seed in 0u64..1000) {
        let x = tensor(&s, seed).with_requires_grad(true);
        let y = x.mul_scalar(2.0).and_then(|y| y.max_dim(axis, false)).and_then(|y| y.sum());
        if let Ok(y) = y {
            if y.backward().is_ok() {
                if let Some(g) = x.grad() {
                    prop_assert_eq!(g.shape(), x.shape());
                    consistent("grad", Ok(g));
                }
            }
        }
    }
}
