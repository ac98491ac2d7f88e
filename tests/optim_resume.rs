//! The proof that a PyTorch training run resumes here: PyTorch ran 12 AdamW steps with
//! two parameter groups (decay / no decay) under a LinearLR warmup then cosine
//! (SequentialLR), saving `{"model", "optimizer", "scheduler"}` at step 5; we load that
//! `.pt`, run steps 6..12 and land on PyTorch's final weights to 1e-5
//! (`tests/fixtures/training/resume.*`, made by `tools/make_training_fixtures.py`).

use nn::optim::lr_scheduler::{CosineAnnealingLR, LinearLR, LrScheduler, SequentialLR};
use nn::optim::{from_torch, AdamW, AdamWConfig, Optimizer, ParamGroup};
use nn::{
    Embedding, Forward, LayerNorm, Linear, LoadOptions, Module, ModuleExt, Param, Result,
    StateDict, Tensor,
};

const PT: &str = "tests/fixtures/training/resume.pt";

#[derive(Module)]
struct Tiny {
    tok: Embedding,
    pos: Param,
    norm: LayerNorm,
    head: Linear,
}

impl Forward for Tiny {
    fn forward(&self, idx: &Tensor) -> Result<Tensor> {
        let x = self.tok.forward(idx)?.add(&self.pos.tensor()?)?;
        self.head.forward(&self.norm.forward(&x)?)
    }
}

fn tiny() -> Result<Tiny> {
    Ok(Tiny {
        tok: Embedding::new(7, 4)?,
        pos: Param::new(Tensor::zeros(&[3, 4]))?,
        norm: LayerNorm::new(&[4])?,
        head: Linear::new(4, 5),
    })
}

/// PyTorch's groups: weights of two or more dimensions outside norms decay.
fn optimizer(model: &Tiny) -> Result<AdamW> {
    let (mut decay, mut no_decay) = (Vec::new(), Vec::new());
    for (name, p) in model.named_parameters() {
        let nd = p.shape().map_or(0, |s| s.len());
        if nd >= 2 && !name.contains("norm") {
            decay.push(p);
        } else {
            no_decay.push(p);
        }
    }
    let cfg = AdamWConfig {
        lr: 0.05,
        betas: (0.8, 0.99),
        weight_decay: 0.1,
        ..Default::default()
    };
    AdamW::with_groups(vec![
        ParamGroup::new(decay, cfg),
        ParamGroup::new(
            no_decay,
            AdamWConfig {
                weight_decay: 0.0,
                ..cfg
            },
        ),
    ])
}

fn scheduler(opt: &mut AdamW) -> Result<SequentialLR> {
    let warm = LinearLR::new(opt, 0.2, 1.0, 3)?;
    let cos = CosineAnnealingLR::new(opt, 9, 0.001)?;
    SequentialLR::new(opt, vec![Box::new(warm), Box::new(cos)], &[3])
}

fn fixture() -> Result<StateDict> {
    nn::io::load_state_dict_file("tests/fixtures/training/resume.safetensors")
}

fn train(
    model: &Tiny,
    opt: &mut AdamW,
    sched: &mut SequentialLR,
    fx: &StateDict,
    steps: std::ops::RangeInclusive<usize>,
) -> Result<()> {
    let get = |k: &str| {
        fx.get(k)
            .cloned()
            .unwrap_or_else(|| panic!("fixture has no {k}"))
    };
    let (idx, targets) = (get("idx"), get("targets"));
    for _ in steps {
        opt.zero_grad();
        let logits = model.forward(&idx)?.reshape(&[12, 5])?;
        logits.cross_entropy(&targets.reshape(&[12])?)?.backward()?;
        opt.step()?;
        sched.step(opt)?;
    }
    Ok(())
}

fn assert_final(model: &Tiny, fx: &StateDict) -> Result<()> {
    for (name, t) in model.state_dict()?.iter() {
        let want = fx
            .get(&format!("final.{name}"))
            .map(|w| w.to_vec::<f32>())
            .transpose()?
            .unwrap_or_else(|| panic!("no final.{name}"));
        let got = t.to_vec::<f32>()?;
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= 1e-5, "{name}: off by {worst}\n{got:?}\n{want:?}");
    }
    Ok(())
}

#[test]
fn a_pytorch_run_saved_at_step_5_resumes_here_to_pytorchs_final_weights() -> Result<()> {
    let fx = fixture()?;
    let model = tiny()?;
    let model_sd = nn::io::select(&nn::io::load_state_dict_file(PT)?, "model", "");
    model.load_state_dict(&model_sd, &LoadOptions::strict())?;
    let mut opt = optimizer(&model)?;
    let mut sched = scheduler(&mut opt)?;
    opt.load_state_dict(&from_torch(PT, "optimizer")?)?;
    sched.load_state_dict(&from_torch(PT, "scheduler")?)?;
    assert_eq!(sched.last_epoch(), 5);
    assert_eq!(opt.group_lr(0), Some(0.04426808885641496));
    assert_eq!(opt.group_initial_lr(1), Some(0.05));
    train(&model, &mut opt, &mut sched, &fx, 6..=12)?;
    assert_final(&model, &fx)
}

#[test]
fn the_whole_run_from_pytorchs_initial_weights_lands_there_too() -> Result<()> {
    let fx = fixture()?;
    let model = tiny()?;
    let init = nn::io::select(&fx, "init", "");
    model.load_state_dict(&init, &LoadOptions::strict())?;
    let mut opt = optimizer(&model)?;
    let mut sched = scheduler(&mut opt)?;
    train(&model, &mut opt, &mut sched, &fx, 1..=12)?;
    assert_final(&model, &fx)
}

#[test]
fn an_optimizer_state_that_does_not_fit_is_an_error_naming_it_and_changes_nothing() -> Result<()> {
    let model = tiny()?;
    let mut opt = optimizer(&model)?;
    let mut sd = from_torch(PT, "optimizer")?;
    // the embedding's moments given the shape of the head's
    let head = sd.get("state.2.exp_avg").cloned();
    if let Some(h) = head {
        sd.insert("state.1.exp_avg", h);
    }
    let before = opt.state_dict()?;
    let e = opt.load_state_dict(&sd).err().map(|e| e.to_string());
    assert!(
        e.as_deref()
            .is_some_and(|e| e.contains("state.1.exp_avg") && e.contains("tok.weight")),
        "{e:?}"
    );
    assert_eq!(opt.state_dict()?.keys().count(), before.keys().count());
    assert_eq!(opt.group_lr(0), Some(0.05));
    Ok(())
}
