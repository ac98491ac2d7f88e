//! ResNet-18 as torchvision writes it, with PyTorch's weights: the `#[derive(Module)]`
//! definition (`examples/convnet/resnet.rs`), a strict load of a state dict exported by
//! PyTorch, the printed tree and parameter count, and one SGD train step.
//!
//! ```text
//! cargo run --release --example 07_convnet                 # the committed narrow fixture
//! cargo run --release --example 07_convnet -- DIR          # full model: DIR from
//!     python tools/make_convnet_fixtures.py --full DIR     # (resnet18.safetensors, .txt, _keys.txt)
//! cargo run --release --example 07_convnet -- model.pt     # or any resnet18(num_classes=10) state
//!     # dict: torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), "model.pt")
//! ```
//!
//! Without an argument the full model keeps its own (PyTorch-style) random init; the
//! full weights (45 MB) are not part of the repository.

#[allow(dead_code)]
#[path = "convnet/resnet.rs"]
pub mod resnet;

use nn::io::{self, LoadOptions};
use nn::optim::{Optimizer, Sgd};
use nn::{Forward, ModuleExt, Result, StateDict, Tensor};
use resnet::ResNet;
use std::path::{Path, PathBuf};

/// The committed narrow ResNet-18 (widths 4/8/16/32) and its PyTorch outputs.
pub fn narrow_fixture() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/resnet_narrow.safetensors"
    ))
}

/// Largest `|a - b|` over two tensors of one shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    a.sub(b)?.abs()?.max()?.item()
}

/// Loads `sd` strictly (keys under `prefix`, e.g. `sd` for the fixture files, or `""` for
/// a plain state dict) into `net`. When the file also holds an input `x` and PyTorch's
/// eval-mode output `eval_out`, runs `net` in eval mode on `x` and returns the largest
/// difference from PyTorch's output.
pub fn load_and_compare(net: &mut ResNet, sd: &StateDict, prefix: &str) -> Result<Option<f32>> {
    let report = net.load_state_dict(sd, &LoadOptions::strict().prefix(prefix))?;
    println!("{report}");
    let (Some(x), Some(want)) = (sd.get("x"), sd.get("eval_out")) else {
        return Ok(None);
    };
    net.eval();
    let y = nn::no_grad(|| net.forward(x))?;
    net.train();
    Ok(Some(max_abs_diff(&y, want)?))
}

/// One training step: forward (train mode), cross-entropy against `targets`, backward,
/// SGD with `lr`. Returns the loss before the step.
pub fn train_step(net: &ResNet, opt: &mut Sgd, x: &Tensor, targets: &Tensor) -> Result<f32> {
    opt.zero_grad();
    let loss = net.forward(x)?.cross_entropy(targets)?;
    loss.backward()?;
    opt.step()?;
    loss.item()
}

/// Reads a state dict from `arg`: a directory made by `make_convnet_fixtures.py --full`
/// (its `resnet18.safetensors`, keys under `sd.`) or a state dict file (`.pt`, `.pth`,
/// `.safetensors`, nn's format). Returns it with the key prefix to load it under.
fn read_weights(arg: &Path) -> Result<(StateDict, &'static str)> {
    let file = if arg.is_dir() {
        arg.join("resnet18.safetensors")
    } else {
        arg.to_path_buf()
    };
    let sd = io::load_state_dict_file(&file)?;
    let prefix = if sd.keys().any(|k| k.starts_with("sd.")) {
        "sd"
    } else {
        ""
    };
    println!("read {} ({} tensors)", file.display(), sd.len());
    Ok((sd, prefix))
}

/// Compares the tree and key order with the `.txt` files `--full` writes beside the weights.
fn compare_with_pytorch_files(net: &ResNet, dir: &Path) -> Result<()> {
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read_to_string(&p).map_err(|e| nn::Error::io(&p, e))
    };
    if let (Ok(repr), Ok(keys)) = (read("resnet18.txt"), read("resnet18_keys.txt")) {
        let ours: Vec<String> = net.state_dict()?.keys().map(String::from).collect();
        let same_keys = ours.iter().map(String::as_str).eq(keys.lines());
        let same_tree = net.repr() == repr.trim_end();
        println!("keys in PyTorch's order: {same_keys}; tree as PyTorch prints it: {same_tree}");
    }
    Ok(())
}

fn main() -> Result<()> {
    nn::manual_seed(0);
    let arg = std::env::args().nth(1).map(PathBuf::from);

    // 1. the narrow ResNet-18 (torchvision's classes, widths 4..32) against PyTorch
    let mut narrow = ResNet::with_widths([4, 8, 16, 32], 10);
    let sd = io::load_safetensors(narrow_fixture())?;
    if let Some(d) = load_and_compare(&mut narrow, &sd, "sd")? {
        println!("narrow ResNet-18, eval mode: max |ours - PyTorch| = {d:.2e}");
    }

    // 2. the full model: torchvision.models.resnet18(weights=None, num_classes=10)
    let mut net = ResNet::resnet18(10);
    if let Some(arg) = &arg {
        let (sd, prefix) = read_weights(arg)?;
        if let Some(d) = load_and_compare(&mut net, &sd, prefix)? {
            println!("ResNet-18, eval mode: max |ours - PyTorch| = {d:.2e}");
        }
        if arg.is_dir() {
            compare_with_pytorch_files(&net, arg)?;
        }
    }
    println!("{net}");
    println!("parameters: {}", net.num_parameters()); // 11181642 (11.2M), as PyTorch counts

    // 3. one train step: batch 8 of 3x64x64, cross-entropy, backward, SGD
    let x = Tensor::randn(&[8, 3, 64, 64]);
    let targets = Tensor::randint(&[8], 0, 10)?;
    let mut opt = Sgd::with_lr(net.parameters(), 0.01)?;
    let before = train_step(&net, &mut opt, &x, &targets)?;
    let after = nn::no_grad(|| net.forward(&x)?.cross_entropy(&targets)?.item())?;
    println!("train step: loss {before:.4} -> {after:.4} on the same batch");
    Ok(())
}
