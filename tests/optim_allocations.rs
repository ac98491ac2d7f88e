//! Once the state exists, an optimizer step allocates no buffer (the fused updates run
//! in place; what remains are a few small records per parameter) and a scheduler step
//! allocates nothing at all (one lr per group, in vectors it reuses). A counting global allocator (this test binary's own) counts the
//! allocations of the thread running the steps.

use nn::optim::lr_scheduler::{CosineAnnealingLR, LinearLR, LrScheduler, SequentialLR};
use nn::optim::{
    Adagrad, AdagradConfig, AdamW, AdamWConfig, Optimizer, ParamGroup, RmsProp, RmsPropConfig,
};
use nn::{Param, Result, Tensor};
#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{count, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

fn params(n: usize) -> Result<Vec<Param>> {
    (0..n)
        .map(|i| Param::new(Tensor::rand(&[16, 8 + i])))
        .collect()
}

fn set_grads(opt: &dyn Optimizer) -> Result<()> {
    for p in opt.params() {
        p.set_grad(Some(p.data()?.ones_like()?));
    }
    Ok(())
}

/// Steps `opt` and `sched` twice to create the state, then counts a third step of each:
/// (buffers the optimizer step allocated, allocations of the scheduler step).
fn steady(opt: &mut dyn Optimizer, sched: &mut dyn LrScheduler) -> Result<(usize, usize)> {
    set_grads(opt)?;
    for _ in 0..2 {
        opt.step()?;
        sched.step(opt)?;
    }
    let (_, buffers) = count(|| opt.step())?;
    let (all, _) = count(|| sched.step(opt))?;
    Ok((buffers, all))
}

fn warmup_cosine(opt: &mut dyn Optimizer) -> Result<SequentialLR> {
    let warm = LinearLR::new(opt, 0.1, 1.0, 1)?;
    let cos = CosineAnnealingLR::new(opt, 10, 0.0)?;
    SequentialLR::new(opt, vec![Box::new(warm), Box::new(cos)], &[1])
}

#[test]
fn optimizer_and_scheduler_steps_allocate_nothing() -> Result<()> {
    let cfg = AdamWConfig::default();
    let mut adamw = AdamW::with_groups(vec![
        ParamGroup::new(params(3)?, cfg),
        ParamGroup::new(
            params(2)?,
            AdamWConfig {
                weight_decay: 0.0,
                amsgrad: true,
                ..cfg
            },
        ),
    ])?;
    let mut s = warmup_cosine(&mut adamw)?;
    assert_eq!(steady(&mut adamw, &mut s)?, (0, 0), "AdamW");
    let rc = RmsPropConfig {
        momentum: 0.9,
        centered: true,
        ..Default::default()
    };
    let mut rms = RmsProp::with_groups(vec![ParamGroup::new(params(3)?, rc)])?;
    let mut s = warmup_cosine(&mut rms)?;
    assert_eq!(steady(&mut rms, &mut s)?, (0, 0), "RMSprop");
    let mut ada = Adagrad::new(params(3)?, AdagradConfig::default())?;
    let mut s = warmup_cosine(&mut ada)?;
    assert_eq!(steady(&mut ada, &mut s)?, (0, 0), "Adagrad");
    Ok(())
}
