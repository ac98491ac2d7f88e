//! examples/10_training.rs's runs: the from-scratch run (groups, AdamW, warmup + cosine,
//! clipping, label smoothing, EMA) learns its task and, resumed from its mid-run
//! checkpoint, ends on the same weights; PyTorch's `resume.pt` continues here to
//! PyTorch's final weights.

#[allow(dead_code)]
#[path = "../examples/10_training.rs"]
mod training;

use nn::Result;

#[test]
fn the_example_trains_and_its_resumed_run_ends_on_the_same_weights() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("nn-10-training-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| nn::Error::io(&dir, e))?;
    let (whole, resumed) = training::from_scratch(&dir)?;
    std::fs::remove_dir_all(&dir).map_err(|e| nn::Error::io(&dir, e))?;
    assert_eq!(training::max_diff(&whole, &resumed)?, 0.0);

    // the trained weights beat chance (0.2) by far on the training set
    let model = training::Tiny::new()?;
    nn::ModuleExt::load_state_dict(&model, &whole, &nn::LoadOptions::strict())?;
    nn::manual_seed(0);
    let (x, y) = training::data(64)?;
    let acc = training::accuracy(&model, &x, &y)?;
    assert!(acc > 0.8, "accuracy {acc}");
    Ok(())
}

#[test]
fn the_pytorch_checkpoint_continues_to_pytorchs_final_weights() -> Result<()> {
    let off = training::resume_pytorch()?;
    assert!(off <= 1e-5, "off by {off}");
    Ok(())
}
