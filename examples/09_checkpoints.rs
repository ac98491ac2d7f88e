//! PyTorch checkpoints: load a `torch.save` state dict (f32, then f16 converted on
//! load), pick the model out of a whole training checkpoint, strip DataParallel's
//! `module.` prefix, list a file's contents, and write `.pt` files that PyTorch loads
//! with `torch.load(path, weights_only=True)`.
//!
//! `cargo run --example 09_checkpoints [DIR]` writes its `.pt` files to DIR (default: a
//! temporary directory); `tools/make_pt_fixtures.py --verify DIR` then loads them in
//! PyTorch.

use nn::io::{self, LoadOptions};
use nn::{DType, Forward, Linear, Module, ModuleExt, ReLU, Result, Sequential, Tensor};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pt")).join(name)
}

/// Two layers sharing one weight (PyTorch: `self.b.weight = self.a.weight`).
#[derive(Module)]
struct Tied {
    a: Linear,
    b: Linear,
}

fn main() -> Result<()> {
    let given = std::env::args().nth(1);
    let keep = given.is_some();
    let out = given.map(PathBuf::from).unwrap_or_else(|| {
        std::env::temp_dir().join(format!("nn-09-checkpoints-{}", std::process::id()))
    });
    std::fs::create_dir_all(&out).map_err(|e| nn::Error::io(&out, e))?;

    // torch.save(net.state_dict(), "mlp_f32.pt") from Sequential(Linear(4, 8), ReLU, Linear(8, 3))
    let net = Sequential::new((Linear::new(4, 8), ReLU, Linear::new(8, 3)));
    println!("{}", net.load(fixture("mlp_f32.pt"))?);
    let x = Tensor::ones(&[1, 4]);
    println!("f32 output: {:?}", net.forward(&x)?.to_vec::<f32>()?);

    // an f16 file into an f32 model: refused unless asked to convert
    if let Err(e) = net.load(fixture("mlp_f16.pt")) {
        println!(
            "refused: {}",
            e.to_string().lines().nth(1).unwrap_or_default().trim()
        );
    }
    let rep = net.load_with(
        fixture("mlp_f16.pt"),
        &LoadOptions::strict().convert_dtypes(true),
    )?;
    println!("{rep}; f16 output: {:?}", net.forward(&x)?.to_vec::<f32>()?);

    // a whole training checkpoint: {"model": ..., "optimizer": ..., "epoch": 3}
    let ckpt = io::inspect(fixture("checkpoint.pt"))?;
    println!(
        "checkpoint.pt: {} tensors ({} bytes), {} other values, e.g.:",
        ckpt.tensors.len(),
        ckpt.total_bytes(),
        ckpt.others.len()
    );
    for (k, v) in ckpt
        .others
        .iter()
        .filter(|(k, _)| !k.starts_with("optimizer"))
    {
        println!("  {k} = {v}");
    }
    net.load_with(
        fixture("checkpoint.pt"),
        &LoadOptions::strict().prefix("model"),
    )?;
    // nn.DataParallel(net).state_dict() names every key `module.<name>`
    net.load_with(
        fixture("mlp_dataparallel.pt"),
        &LoadOptions::strict().strip_prefix("module."),
    )?;

    // writing: .pt (also .pth, .bin) by extension; f16 and bf16 on request. The
    // `.expect.safetensors` twins are what tools/make_pt_fixtures.py --verify compares.
    let sd = io::load_safetensors(fixture("mlp.expect.safetensors"))?;
    for (name, dt) in [
        ("mlp_f32", DType::F32),
        ("mlp_f16", DType::F16),
        ("mlp_bf16", DType::BF16),
    ] {
        let half = io::to_float_dtype(&sd, dt)?;
        io::save_state_dict(&half, out.join(format!("{name}.pt")))?;
        io::save_safetensors(&half, out.join(format!("{name}.expect.safetensors")))?;
    }
    net.save(out.join("model.pt"))?;
    // a tied weight is one storage in the file, and one tensor again in PyTorch
    let a = Linear::new(4, 4);
    let mut b = Linear::new(4, 4);
    b.weight = a.weight.clone();
    let tied = Tied { a, b };
    tied.load(fixture("tied.pt"))?;
    tied.save(out.join("tied.pt"))?;
    io::save_safetensors(&tied.state_dict()?, out.join("tied.expect.safetensors"))?;
    io::save_safetensors(&net.state_dict()?, out.join("model.expect.safetensors"))?;
    for t in io::inspect(out.join("mlp_bf16.pt"))?.tensors {
        println!(
            "  mlp_bf16.pt {:10} {:8} {:?}",
            t.name,
            t.dtype.to_string(),
            t.shape
        );
    }
    if keep {
        println!("wrote {}", out.display());
    } else {
        std::fs::remove_dir_all(&out).map_err(|e| nn::Error::io(&out, e))?;
    }
    Ok(())
}
