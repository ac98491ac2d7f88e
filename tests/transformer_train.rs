//! `examples/08_transformer.rs` on a short run: the loss falls well below chance, the
//! checkpoint it wrote restores a model that decodes exactly as the trained one, and a
//! sequence longer than the position table is an error naming the layer. The example's
//! file is compiled into this test, not copied.

#[allow(dead_code)]
#[path = "../examples/08_transformer.rs"]
mod example;

use example::{decode, Config, Reverser};
use nn::io::TrainingCheckpoint;
use nn::{Forward, LoadOptions, ModuleExt, Result, Tensor};

#[test]
fn short_run_learns_and_checkpoints() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("nn-08-transformer-test-{}", std::process::id()));
    let cfg = Config {
        steps: 60,
        batch: 32,
        eval_every: 30,
        held_out: 50,
        out_dir: dir.clone(),
        verbose: false,
        ..Config::default()
    };
    let out = example::run(&cfg)?;
    // chance: a uniform guess over the 11 tokens, ln 11 = 2.40 nats
    let chance = (11f32).ln();
    assert!(
        out.last_loss < 0.25 * chance && out.last_loss < out.first_loss,
        "loss {} -> {} (chance {chance})",
        out.first_loss,
        out.last_loss
    );
    let ck = TrainingCheckpoint::load(&out.checkpoint)?;
    assert_eq!(ck.epoch, 60);
    let restored = Reverser::new()?;
    restored.load_state_dict(&ck.model, &LoadOptions::strict())?;
    let some = &out.held_out[..8];
    assert_eq!(decode(&restored, some)?, decode(&out.model, some)?);
    // 13 tokens for a 12-entry position table
    let long = Tensor::from_vec(vec![1i64; 13], &[1, 13])?;
    let msg = restored
        .forward(&long)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(msg.starts_with("pos_emb (Embedding(12, 64))"), "{msg}");
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
