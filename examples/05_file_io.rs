//! Section 5.5, file I/O: the book's cells in order. Save and load a tensor, a list and
//! a dict of tensors, then a model's parameters (`mlp.params`), reload them into a model
//! built from code, and compare outputs. Files go to a temporary directory.

use nn::io::{self, LoadOptions};
use nn::{sequential, Forward, Linear, Module, ModuleExt, ReLU, Result, Tensor};
use std::collections::BTreeMap;

/// In [41]: the book's MLP. Its parameters (`hidden.weight`, ...) are what gets saved.
#[derive(Module)]
#[allow(clippy::upper_case_acronyms)]
struct MLP {
    hidden: Linear,
    output: Linear,
}

impl MLP {
    fn new() -> MLP {
        MLP {
            hidden: Linear::new(20, 256),
            output: Linear::new(256, 10),
        }
    }
}

impl Forward for MLP {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.output.forward(&self.hidden.forward(x)?.relu()?)
    }
}

fn main() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("nn-05-file-io-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| nn::Error::io(&dir, e))?;

    // In [37]/[38]: one tensor
    let x = Tensor::arange(0, 4);
    io::save(&x, dir.join("x-file"))?;
    let x2: Tensor = io::load(dir.join("x-file"))?;
    println!("{x2}");

    // In [39]: a list of tensors
    let y = Tensor::zeros(&[4]);
    io::save(&(x.clone(), y.clone()), dir.join("x-files"))?;
    let (x2, y2): (Tensor, Tensor) = io::load(dir.join("x-files"))?;
    println!("({x2}, {y2})");

    // In [40]: a dict from string to tensor
    let mydict = BTreeMap::from([("x".to_string(), x), ("y".to_string(), y)]);
    io::save(&mydict, dir.join("mydict"))?;
    let mydict2: BTreeMap<String, Tensor> = io::load(dir.join("mydict"))?;
    let items: Vec<String> = mydict2.iter().map(|(k, v)| format!("'{k}': {v}")).collect();
    println!("{{{}}}", items.join(", "));

    // In [41]
    let net = MLP::new();
    let x = Tensor::randn(&[2, 20]);
    let y = net.forward(&x)?;

    // In [42]: save the parameters only; the architecture lives in code
    net.save(dir.join("mlp.params"))?;

    // In [44]: a fresh model from code, parameters from the file
    let mut clone = MLP::new();
    clone.load(dir.join("mlp.params"))?;
    clone.eval();
    println!("{}", clone.repr());

    // In [46]: same parameters, same outputs
    let y_clone = clone.forward(&x)?;
    println!("{}", y_clone.eq(&y)?);

    // Loading into the wrong architecture: one error listing every problem
    let seq = sequential![Linear::new(20, 256), ReLU, Linear::new(256, 10)];
    if let Err(e) = seq.load(dir.join("mlp.params")) {
        println!("strict load into a Sequential:\n{e}");
    }

    // Exercise 2: reuse the trained hidden layer in a new net with another head
    let new_net = MLP {
        hidden: Linear::new(20, 256),
        output: Linear::new(256, 3),
    };
    let report = new_net.load_with(dir.join("mlp.params"), &LoadOptions::non_strict())?;
    println!("non-strict load into a 3-class head:\n{report}");
    println!("loaded: {:?}", report.loaded);
    // ... or load just that layer from the file, by prefix
    let hidden = Linear::new(20, 256);
    hidden.load_with(
        dir.join("mlp.params"),
        &LoadOptions::strict().prefix("hidden"),
    )?;

    // PyTorch interop: the same state dict as safetensors
    net.save(dir.join("mlp.safetensors"))?;
    let from_st = MLP::new();
    from_st.load(dir.join("mlp.safetensors"))?;
    println!(
        "safetensors reload equal: {}",
        from_st.forward(&x)?.to_vec::<f32>()? == y.to_vec::<f32>()?
    );

    // A memory-mapped load (like `torch.load(mmap=True)`): the parameters borrow the
    // file's pages instead of being copied (the checksums are verified first, as in any
    // load), and the first write to one, such as an optimizer step, copies it out
    let mapped = MLP::new();
    mapped.load_with(dir.join("mlp.params"), &LoadOptions::strict().mmap(true))?;
    println!(
        "mapped reload equal: {}",
        mapped.forward(&x)?.to_vec::<f32>()? == y.to_vec::<f32>()?
    );

    std::fs::remove_dir_all(&dir).map_err(|e| nn::Error::io(&dir, e))?;
    Ok(())
}
