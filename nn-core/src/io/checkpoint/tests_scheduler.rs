//! A training checkpoint keeps the lr scheduler's state; version 1 files still load.

use super::*;
use crate::optim::lr_scheduler::{LrScheduler, StepLR};
use crate::optim::{Optimizer, Sgd};
use crate::{Linear, ModuleExt};

#[test]
fn the_scheduler_state_round_trips_and_version_1_files_still_load() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("nn-ckpt-sched-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let net = Linear::new(2, 1);
    let mut opt = Sgd::with_lr(net.parameters(), 0.1)?;
    let mut sched = StepLR::new(&mut opt, 2, 0.5)?;
    for _ in 0..3 {
        sched.step(&mut opt)?;
    }
    let path = dir.join("v2.nn");
    TrainingCheckpoint::capture(3, &net, &opt)?
        .with_scheduler(sched.state_dict())
        .save(&path)?;
    let ck = TrainingCheckpoint::load(&path)?;
    let mut opt2 = Sgd::with_lr(net.parameters(), 0.1)?;
    let mut sched2 = StepLR::new(&mut opt2, 2, 0.5)?;
    ck.restore_into(&net, &mut opt2)?;
    sched2.load_state_dict(&ck.scheduler)?;
    assert_eq!(sched2.last_epoch(), 3);
    assert_eq!(opt2.lr(), opt.lr());
    // a version 1 payload: no scheduler
    let (empty, sd) = (BTreeMap::<String, MetaValue>::new(), StateDict::new());
    #[derive(Serialize)]
    struct V1<'a> {
        format: &'a str,
        epoch: u64,
        rng_key: u64,
        rng_default_seed: u64,
        metadata: &'a BTreeMap<String, MetaValue>,
        model: &'a StateDict,
        optimizer: &'a StateDict,
        tensors: &'a StateDict,
    }
    let v1 = dir.join("v1.nn");
    let w = V1 {
        format: FORMAT_V1,
        epoch: 7,
        rng_key: 0,
        rng_default_seed: 0,
        metadata: &empty,
        model: &sd,
        optimizer: &sd,
        tensors: &sd,
    };
    super::super::save(&w, &v1)?;
    let old = TrainingCheckpoint::load(&v1)?;
    assert_eq!((old.epoch, old.scheduler.len()), (7, 0));
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
