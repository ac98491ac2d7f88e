//! Device cases about training: an MLP's SGD steps, the fused optimizer updates,
//! in-place parameter writes, moving a model with tied weights.

use super::{assert_same, close, seeded_randn};
use nn::{Device, Forward, Linear, ModuleExt, ReLU, Result, Sequential, Tensor};

/// A few SGD steps of a small MLP on `dev` track the same steps on the CPU.
pub(crate) fn mlp_train_step(dev: &Device) -> Result<()> {
    nn::manual_seed(17);
    let cpu_net = Sequential::new((Linear::new(20, 32), ReLU, Linear::new(32, 5)));
    let mut dev_net = cpu_net.deep_copy();
    dev_net.to_device(dev)?;
    nn::manual_seed(18);
    let x = Tensor::randn(&[16, 20]);
    let t = Tensor::randint(&[16], 0, 5)?;
    let (xd, td) = (x.to_device(dev)?, t.to_device(dev)?);
    let step = |net: &Sequential<(Linear, ReLU, Linear)>, x: &Tensor, t: &Tensor| -> Result<f32> {
        net.zero_grad();
        let loss = net.forward(x)?.cross_entropy(t)?;
        loss.backward()?;
        for p in net.parameters() {
            if let Some(g) = p.grad() {
                p.update(|d| d.sub(&g.mul_scalar(0.1)?))?;
            }
        }
        loss.item()
    };
    for i in 0..3 {
        let (lc, ld) = (step(&cpu_net, &x, &t)?, step(&dev_net, &xd, &td)?);
        assert!(close(ld, lc), "step {i}: loss {ld} on {dev} vs {lc} on cpu");
    }
    for ((name, pc), (_, pd)) in cpu_net
        .named_parameters()
        .into_iter()
        .zip(dev_net.named_parameters())
    {
        assert_same(
            &format!("parameter {name} after 3 steps"),
            dev,
            &pd.data()?,
            &pc.data()?,
        )?;
    }
    Ok(())
}

/// SGD (momentum, Nesterov, weight decay) and Adam on `dev` (the backend's fused
/// per-parameter update) track the same steps on the CPU, and never change a tensor the
/// user holds (copy-on-write).
pub(crate) fn optimizer_steps(dev: &Device) -> Result<()> {
    use nn::optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
    type Maker<'a> = &'a dyn Fn(Vec<nn::Param>) -> Result<Box<dyn Optimizer>>;
    let make: [Maker; 2] = [
        &|ps| {
            let cfg = SgdConfig {
                lr: 0.1,
                momentum: 0.9,
                weight_decay: 0.01,
                nesterov: true,
                ..Default::default()
            };
            Ok(Box::new(Sgd::new(ps, cfg)?))
        },
        &|ps| {
            let cfg = AdamConfig {
                lr: 0.05,
                weight_decay: 0.1,
                ..Default::default()
            };
            Ok(Box::new(Adam::new(ps, cfg)?))
        },
    ];
    for make in make {
        nn::manual_seed(3);
        let pc = nn::Param::new(Tensor::randn(&[3, 5]))?;
        let pd = pc.deep_copy();
        pd.to_device(dev)?;
        let (mut oc, mut od) = (make(vec![pc.clone()])?, make(vec![pd.clone()])?);
        let held = pd.data()?;
        let before = held.to_vec::<f32>()?;
        for s in 0..4 {
            let g = Tensor::randn(&[3, 5]).mul_scalar(s as f32 + 0.5)?;
            pc.set_grad(Some(g.clone()));
            pd.set_grad(Some(g.to_device(dev)?));
            oc.step()?;
            od.step()?;
        }
        assert_eq!(pd.device(), *dev);
        assert_eq!(
            held.to_vec::<f32>()?,
            before,
            "a held tensor changed on {dev}"
        );
        assert_same("optimizer steps", dev, &pd.data()?, &pc.data()?)?;
    }
    Ok(())
}

/// `Param::set_item` writes one element where the data lives, copying first when the
/// data is shared.
pub(crate) fn in_place_writes(dev: &Device) -> Result<()> {
    let p = nn::Param::new(Tensor::zeros(&[2, 3]))?;
    p.to_device(dev)?;
    let held = p.data()?;
    p.set_item(&[1, 2], 5.0)?;
    p.set_item(&[0, 0], -1.0)?;
    assert_eq!(p.device(), *dev);
    assert_eq!(held.to_vec::<f32>()?, vec![0.0; 6]);
    assert_eq!(
        p.data()?.to_vec::<f32>()?,
        vec![-1.0, 0.0, 0.0, 0.0, 0.0, 5.0]
    );
    assert!(p.set_item(&[2, 0], 1.0).is_err());
    Ok(())
}

/// Moving a model keeps tied parameters tied; gradients of a tied weight sum its uses.
pub(crate) fn model_move_keeps_ties(dev: &Device) -> Result<()> {
    nn::manual_seed(19);
    let shared = Linear::new(6, 6);
    let cpu_net = Sequential::new((
        Linear::new(4, 6),
        ReLU,
        shared.clone(),
        ReLU,
        shared,
        Linear::new(6, 2),
    ));
    let mut net = cpu_net.deep_copy();
    net.to_device(dev)?;
    assert!(net.2.weight.ptr_eq(&net.4.weight), "tie lost by the move");
    assert_eq!(net.parameters().len(), 6, "a tied parameter is listed once");
    assert!(net.parameters().iter().all(|p| &p.device() == dev));
    let x = seeded_randn(20, &[3, 4]);
    let (yc, yd) = (cpu_net.forward(&x)?, net.forward(&x.to_device(dev)?)?);
    assert_same("tied forward", dev, &yd, &yc)?;
    yc.sum()?.backward()?;
    yd.sum()?.backward()?;
    let (gc, gd) = (cpu_net.2.weight.grad(), net.4.weight.grad());
    match (gd, gc) {
        (Some(gd), Some(gc)) => assert_same("tied grad", dev, &gd, &gc)?,
        _ => panic!("tied weight has no gradient"),
    }
    // a write through one handle is seen through the other, on the device
    net.2.weight.set_item(&[0, 0], 42.0)?;
    assert_eq!(net.4.weight.data()?.to_vec::<f32>()?[0], 42.0);
    // and back to the host
    net.to_device(&Device::Cpu)?;
    assert!(net.2.weight.ptr_eq(&net.4.weight));
    assert_eq!(net.4.weight.device(), Device::Cpu);
    assert_eq!(
        net.0.weight.data()?.to_vec::<f32>()?,
        cpu_net.0.weight.data()?.to_vec::<f32>()?
    );
    Ok(())
}
