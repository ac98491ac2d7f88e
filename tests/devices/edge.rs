//! Device cases at the edges: operands on two devices, zero-size tensors.

use super::*;

/// Operands on two devices are an error naming both, never a silent copy.
pub(crate) fn device_mixing_is_an_error(dev: &Device) -> Result<()> {
    if dev.is_cpu() {
        return Ok(());
    }
    let a = Tensor::ones(&[2, 2]);
    let b = Tensor::ones(&[2, 2]).to_device(dev)?;
    let idx = Tensor::from_vec(vec![0i64], &[1])?;
    let errs = [
        a.add(&b).err(),
        b.mul(&a).err(),
        a.matmul(&b).err(),
        Tensor::cat(&[b.clone(), a.clone()], 0).err(),
        Tensor::where_cond(&a.gt_scalar(0.0)?, &b, &a).err(),
        b.index_select(0, &idx).err(),
        // targets left on the host
        b.cross_entropy(&Tensor::from_vec(vec![0i64, 1], &[2])?)
            .err(),
    ];
    for e in errs {
        let msg = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains("different devices")
                && msg.contains("cpu")
                && msg.contains(&dev.to_string()),
            "{msg}"
        );
    }
    let lin = Linear::new(2, 3);
    let e = lin
        .forward(&b)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("different devices"), "{e}");
    Ok(())
}

/// Zero-size tensors go through every op without a launch failing.
pub(crate) fn empty_tensors(dev: &Device) -> Result<()> {
    let e = Tensor::zeros(&[0, 3]);
    same_on(dev, "empty exp", &[e.clone()], |v| v[0].exp())?;
    same_on(dev, "empty add", &[e.clone(), Tensor::ones(&[3])], |v| {
        v[0].add(&v[1])
    })?;
    same_on(dev, "empty sum(0)", &[e.clone()], |v| {
        v[0].sum_dim(0, false)
    })?;
    same_on(dev, "empty sum(1)", &[e.clone()], |v| {
        v[0].sum_dim(1, false)
    })?;
    same_on(
        dev,
        "empty matmul k=0",
        &[Tensor::zeros(&[2, 0]), Tensor::zeros(&[0, 3])],
        |v| v[0].matmul(&v[1]),
    )?;
    same_on(
        dev,
        "empty matmul m=0",
        &[e.clone(), Tensor::ones(&[3, 2])],
        |v| v[0].matmul(&v[1]),
    )?;
    same_on(
        dev,
        "cat with empty",
        &[e.clone(), Tensor::ones(&[2, 3])],
        |v| Tensor::cat(v, 0),
    )?;
    same_on(dev, "narrow to nothing", &[Tensor::ones(&[2, 3])], |v| {
        v[0].narrow(1, 3, 0)
    })?;
    same_on(dev, "permute empty", &[e.clone()], |v| v[0].t())?;
    let none = Tensor::from_vec(Vec::<i64>::new(), &[0])?;
    same_on(
        dev,
        "index_select nothing",
        &[Tensor::ones(&[2, 3]), none],
        |v| v[0].index_select(1, &v[1]),
    )?;
    same_on(dev, "empty cast", &[e], |v| v[0].to_dtype(DType::I64))?;
    Ok(())
}
