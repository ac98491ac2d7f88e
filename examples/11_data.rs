//! Training data as PyTorch's `torch.utils.data` shapes it (`nn::data`): an image folder
//! and a `.npy` file are read, augmented per sample, batched by worker threads, and one
//! epoch of each is trained.
//!
//! `cargo run --example 11_data --features image` (the image folder is the one
//! `tools/make_data_fixtures.py` wrote with Pillow: classes `Zebra`, `cat`, `dog`).

use nn::data::readers::{write_npy, ImageFolder, NpyFile};
use nn::data::{
    Compose, DataLoader, Dataset, Normalize, RandomHorizontalFlip, RandomResizedCrop,
    TensorDataset, ToTensor, Transformed,
};
use nn::optim::{Optimizer, Sgd};
use nn::{Flatten, Forward, Linear, ModuleExt, Result, Sequential, Tensor};
use std::path::PathBuf;

fn main() -> Result<()> {
    nn::manual_seed(0);

    // ImageFolder(root, transform=Compose([...])): u8 HWC images -> augmented f32 CHW
    let root = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/data/folder"
    ));
    let folder = ImageFolder::new(&root)?;
    println!("classes {:?}, {} images", folder.classes(), folder.len());
    let augment = Compose(vec![
        Box::new(ToTensor),
        Box::new(RandomResizedCrop::new(8)),
        Box::new(RandomHorizontalFlip::default()),
        Box::new(Normalize::new(vec![0.5; 3], vec![0.5; 3])?),
    ]);
    let images = Transformed::new(folder, augment, 42);
    let mut loader = DataLoader::builder(images)
        .batch_size(3)
        .shuffle(true)
        .seed(7)
        .num_workers(2)
        .build()?;

    let net = Sequential::new((Flatten::new(), Linear::new(3 * 8 * 8, 3)));
    let mut opt = Sgd::with_lr(net.parameters(), 0.1)?;
    loader.set_epoch(0);
    for (step, batch) in loader.iter().enumerate() {
        let (x, y) = batch?; // x [b, 3, 8, 8] f32, y [b] i64
        let loss = net.forward(&x)?.cross_entropy(&y)?;
        opt.zero_grad();
        loss.backward()?;
        opt.step()?;
        println!(
            "images step {step}: batch {:?}, loss {:.4}",
            x.shape(),
            loss.item()?
        );
    }

    // a .npy file of features (as np.save writes it), memory-mapped, rows as samples
    let path = std::env::temp_dir().join(format!("nn-11-data-{}.npy", std::process::id()));
    write_npy(&path, &Tensor::randn(&[40, 5]))?;
    let rows = NpyFile::open(&path)?;
    println!(
        "{}: {:?} {}",
        path.display(),
        rows.header().shape,
        rows.header().dtype
    );
    let features: Vec<Tensor> = (0..rows.len())
        .map(|i| rows.get(i))
        .collect::<Result<_>>()?;
    let x = Tensor::stack(&features, 0)?;
    let y = x.sum_dim(1, false)?; // a target the model can learn
    let data = TensorDataset::new((x, y))?;
    let loader = DataLoader::builder(data)
        .batch_size(8)
        .shuffle(true)
        .seed(1)
        .num_workers(2)
        .build()?;
    let reg = Linear::new(5, 1);
    let mut opt = Sgd::with_lr(reg.parameters(), 0.1)?;
    let mut losses = Vec::new();
    for batch in &loader {
        let (x, y) = batch?;
        let loss = reg.forward(&x)?.squeeze(-1)?.mse(&y)?;
        opt.zero_grad();
        loss.backward()?;
        opt.step()?;
        losses.push(loss.item()?);
    }
    println!(
        "npy epoch: {} batches, loss {:.4} -> {:.4}",
        loader.len(),
        losses[0],
        losses[losses.len() - 1]
    );
    std::fs::remove_file(&path).map_err(|e| nn::Error::io(&path, e))?;
    Ok(())
}
