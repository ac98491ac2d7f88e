//! Helpers shared by the integration tests (each test crate includes this with
//! `mod common;` and uses what it needs).

// Each test crate uses a different part of this file.
#![allow(dead_code)]

use nn::{Result, Tensor};

/// Asserts `got` equals `want` in shape and, element by element, within
/// `tol + tol * |want|` (NaN matches NaN), naming `what` and the first bad index.
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f32) -> Result<()> {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let (g, w) = (got.to_vec::<f32>()?, want.to_vec::<f32>()?);
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let same = (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= tol + tol * b.abs();
        assert!(same, "{what}[{i}]: got {a}, expected {b}");
    }
    Ok(())
}
