//! Unit tests of loads that borrow a file's memory mapping (`LoadOptions::mmap`,
//! `map_state_dict_file`): same values as a copying load, storage borrowed only where it
//! can be, copy-on-write on every way a parameter is written, files replaced under a
//! live mapping, damaged files refused before anything changes.

use crate::io::*;
use crate::layers::{BatchNorm1d, DynSequential, Linear, ReLU};
use crate::module::{ModuleExt, Param};
use crate::optim::{Optimizer, Sgd, SgdConfig};
use crate::{DType, Error, Forward, HostData, Tensor};
use std::path::PathBuf;

fn scratch(tag: &str, ext: &str) -> PathBuf {
    std::env::temp_dir().join(format!("nn-io-mmap-{tag}-{}.{ext}", std::process::id()))
}

fn remove(paths: &[&PathBuf]) -> Result<()> {
    for p in paths {
        std::fs::remove_file(p).map_err(|e| Error::io(p, e))?;
    }
    Ok(())
}

fn model() -> DynSequential {
    DynSequential::new()
        .with(Linear::new(6, 5))
        .with(BatchNorm1d::new(5))
        .with(ReLU)
        .with(Linear::new(5, 3))
}

/// Whether `t`'s elements are borrowed from a mapping.
fn is_mapped(t: &Tensor) -> bool {
    crate::cpu::is_mapped(t)
}

fn mapped_params(m: &DynSequential) -> Result<Vec<bool>> {
    m.parameters()
        .iter()
        .map(|p| Ok(is_mapped(&p.data()?)))
        .collect()
}

fn values(m: &DynSequential) -> Result<Vec<Vec<f32>>> {
    m.state_dict()?
        .iter()
        .map(|(_, t)| t.to_dtype(DType::F32)?.to_vec::<f32>())
        .collect()
}

#[test]
fn a_mapped_load_equals_a_copying_load_and_borrows_every_tensor() -> Result<()> {
    for ext in ["nn", "safetensors", "pt"] {
        let path = scratch("equal", ext);
        let src = model();
        src.save(&path)?;
        let (copied, mapped) = (model(), model());
        copied.load(&path)?;
        let report = mapped.load_with(&path, &LoadOptions::strict().mmap(true))?;
        assert!(report.is_clean(), "{ext}: {report}");
        assert_eq!(values(&mapped)?, values(&src)?, "{ext}");
        assert_eq!(mapped_params(&mapped)?, vec![true; 6], "{ext}");
        assert!(mapped_params(&copied)?.iter().all(|m| !m), "{ext}");
        // the batch-norm buffers (f32 running stats, i64 batch count) are borrowed too;
        // safetensors does not align its tensors, and this i64 lies after 5 f32s there
        let sd = mapped.state_dict()?;
        let tracked = sd.get("1.num_batches_tracked").map(is_mapped);
        assert_eq!(tracked, Some(ext != "safetensors"), "{ext}");
        assert!(sd.get("1.running_var").is_some_and(is_mapped), "{ext}");
        let x = Tensor::randn(&[4, 6]);
        assert_eq!(
            mapped.forward(&x)?.to_vec::<f32>()?,
            copied.forward(&x)?.to_vec::<f32>()?,
            "{ext}"
        );
        let sd = map_state_dict_file(&path)?;
        let borrowed = sd.iter().filter(|(_, t)| is_mapped(t)).count();
        assert_eq!(
            borrowed,
            sd.len() - usize::from(ext == "safetensors"),
            "{ext}"
        );
        let want = load_state_dict_file(&path)?;
        for (k, t) in want.iter() {
            let got = sd.get(k).map(|t| t.to_host());
            assert_eq!(got.transpose()?, Some(t.to_host()?), "{ext} {k}");
        }
        // a mapped model saves from the mapping, even over the file it maps (the new
        // file is renamed over the old one, whose mapping stays intact); the forward in
        // training mode above updated (so copied) the batch-norm buffers, not the weights
        assert_eq!(mapped_params(&mapped)?, vec![true; 6], "{ext}");
        let held = values(&mapped)?;
        assert_ne!(held, values(&src)?, "{ext}");
        let other = scratch("equal-resaved", ext);
        for out in [&other, &path] {
            mapped.save(out)?;
            let back = model();
            back.load(out)?;
            assert_eq!(values(&back)?, held, "{ext}: {}", out.display());
        }
        assert_eq!(values(&mapped)?, held, "{ext}");
        remove(&[&path, &other])?;
    }
    Ok(())
}

#[test]
fn writing_a_mapped_parameter_copies_it_and_leaves_the_file_alone() -> Result<()> {
    let path = scratch("cow", "nn");
    let src = model();
    src.save(&path)?;
    let before = values(&src)?;
    let net = model();
    net.load_with(&path, &LoadOptions::strict().mmap(true))?;

    // an optimizer step (the fused in-place update)
    let x = Tensor::randn(&[4, 6]);
    net.forward(&x)?.sum()?.backward()?;
    let cfg = SgdConfig {
        lr: 0.5,
        momentum: 0.9,
        ..Default::default()
    };
    let mut opt = Sgd::new(net.parameters(), cfg)?;
    opt.step()?;
    assert!(mapped_params(&net)?.iter().all(|m| !m));
    assert_ne!(values(&net)?, before);

    // with_data_mut on another model that borrows the same mapping
    let other = model();
    other.load_with(&path, &LoadOptions::strict().mmap(true))?;
    let p: Param = other.parameters()[0].clone();
    p.with_data_mut(|d| d.fill(7.0))?;
    assert!(!is_mapped(&p.data()?));
    assert_eq!(p.data()?.to_vec::<f32>()?, vec![7.0; 30]);

    // a copying load into a mapped model, in place
    let third = model();
    third.load_with(&path, &LoadOptions::strict().mmap(true))?;
    third.load(&path)?;
    assert!(mapped_params(&third)?.iter().all(|m| !m));

    // the file and a fresh mapped load still hold the saved values
    let fresh = model();
    fresh.load_with(&path, &LoadOptions::strict().mmap(true))?;
    assert_eq!(values(&fresh)?, before);
    assert_eq!(values(&third)?, before);
    remove(&[&path])?;
    Ok(())
}

#[test]
fn a_file_replaced_by_a_save_keeps_the_mapped_values() -> Result<()> {
    let path = scratch("replace", "nn");
    let first = model();
    first.save(&path)?;
    let net = model();
    net.load_with(&path, &LoadOptions::strict().mmap(true))?;
    let sd = map_state_dict_file(&path)?;
    // nn's writers rename a new file over the old one: the mappings keep the old inode
    model().save(&path)?;
    assert_eq!(values(&net)?, values(&first)?);
    let got: Vec<Vec<f32>> = sd
        .iter()
        .map(|(_, t)| t.to_dtype(DType::F32)?.to_vec::<f32>())
        .collect::<Result<_>>()?;
    assert_eq!(got, values(&first)?);
    remove(&[&path])?;
    Ok(())
}

#[test]
fn what_cannot_be_borrowed_is_copied() -> Result<()> {
    // f16 converted to the model's f32, and bool / f16 tensors of a state dict
    let path = scratch("dtypes", "safetensors");
    let src = model();
    let sd = to_float_dtype(&src.state_dict()?, DType::F16)?;
    save_state_dict(&sd, &path)?;
    let net = model();
    let opts = LoadOptions::strict().convert_dtypes(true).mmap(true);
    let report = net.load_with(&path, &opts)?;
    assert!(!report.converted.is_empty());
    assert!(mapped_params(&net)?.iter().all(|m| !m));
    let want: Vec<Vec<f32>> = sd
        .iter()
        .map(|(_, t)| t.to_dtype(DType::F32)?.to_vec::<f32>())
        .collect::<Result<_>>()?;
    assert_eq!(values(&net)?, want);
    let mapped = map_state_dict_file(&path)?;
    for (k, t) in mapped.iter() {
        // f16 is never borrowed (the i64 may be, where it lies aligned)
        assert!(
            !is_mapped(t) || t.dtype() == DType::I64,
            "{k}: {:?}",
            t.dtype()
        );
    }

    let mut sd = StateDict::new();
    sd.insert(
        "mask",
        Tensor::from_host(HostData::Bool(vec![1, 0, 1]), &[3])?,
    );
    sd.insert("w", Tensor::from_vec(vec![1.0f32, 2.0], &[2])?);
    let path2 = scratch("bool", "nn");
    save_state_dict(&sd, &path2)?;
    let got = map_state_dict_file(&path2)?;
    let (mask, w) = (got.get("mask"), got.get("w"));
    assert_eq!(mask.map(is_mapped), Some(false));
    assert_eq!(w.map(is_mapped), Some(true));
    assert_eq!(
        mask.map(|t| t.to_host()).transpose()?,
        Some(HostData::Bool(vec![1, 0, 1]))
    );
    remove(&[&path, &path2])?;
    Ok(())
}

#[test]
fn a_damaged_or_mismatched_file_changes_nothing() -> Result<()> {
    let path = scratch("damaged", "nn");
    model().save(&path)?;
    let mut bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&path, &bytes).map_err(|e| Error::io(&path, e))?;
    let net = model();
    let before = values(&net)?;
    let e = net.load_with(&path, &LoadOptions::strict().mmap(true));
    assert!(matches!(e, Err(Error::Format { .. })), "{e:?}");
    assert!(map_state_dict_file(&path).is_err());
    assert_eq!(values(&net)?, before);
    assert!(mapped_params(&net)?.iter().all(|m| !m));

    // a strict load with a wrong shape borrows nothing either
    DynSequential::new()
        .with(Linear::new(6, 4))
        .with(BatchNorm1d::new(5))
        .with(ReLU)
        .with(Linear::new(5, 3))
        .save(&path)?;
    let e = net.load_with(&path, &LoadOptions::strict().mmap(true));
    assert!(matches!(e, Err(Error::StateDict(_))), "{e:?}");
    assert_eq!(values(&net)?, before);
    assert!(mapped_params(&net)?.iter().all(|m| !m));
    remove(&[&path])?;
    Ok(())
}
