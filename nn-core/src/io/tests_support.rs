//! Helpers shared by the io tests.

use crate::io::*;
use crate::layers::{Linear, ReLU, Sequential};
use crate::Tensor;

pub(crate) fn small_dict() -> Result<StateDict> {
    let mut sd = StateDict::new();
    sd.insert(
        "w",
        Tensor::from_vec(vec![1.5f32, -2.0, 3.25, 0.0], &[2, 2])?,
    );
    sd.insert("idx", Tensor::from_vec(vec![7i64, -1, 1 << 40], &[3])?);
    sd.insert("s", Tensor::scalar(9.0));
    Ok(sd)
}

/// Asserts `back` holds every entry of `sd`, in any order, with the same shape and data.
pub(crate) fn assert_holds(back: &StateDict, sd: &StateDict) -> Result<()> {
    for (k, t) in sd.iter() {
        let u = back.get(k).ok_or_else(|| Error::MissingKey {
            container: "decoded".into(),
            key: k.into(),
        })?;
        assert_eq!(t.shape(), u.shape(), "{k}");
        assert_eq!(t.to_host()?, u.to_host()?, "{k}");
    }
    Ok(())
}

pub(crate) fn assert_same(a: &StateDict, b: &StateDict) -> Result<()> {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for ((_, x), (_, y)) in a.iter().zip(b.iter()) {
        assert_eq!(x.shape(), y.shape());
        assert_eq!(x.dtype(), y.dtype());
        // bitwise (NaN payloads included)
        assert_eq!(
            crate::io::bytes::le_bytes(x)?,
            crate::io::bytes::le_bytes(y)?
        );
    }
    Ok(())
}

/// A small MLP whose state dict the tests save and load.
pub(crate) fn mlp() -> Sequential<(Linear, ReLU, Linear)> {
    Sequential::new((Linear::new(4, 8), ReLU, Linear::new(8, 3)))
}
