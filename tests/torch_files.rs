//! PyTorch `torch.save` files (tests/fixtures/pt/, made by tools/make_pt_fixtures.py with
//! torch 2.15.0): state dicts in f32/f16/bf16, DataParallel names, a training
//! checkpoint, tied weights, views, every dtype; the legacy and TorchScript formats
//! (clear errors); hostile files (each refused, naming why); and `.pt` files we write.

use nn::io::{self, FileFormat, LoadOptions};
use nn::{DType, Error, Linear, ModuleExt, ReLU, Result, Sequential, StateDict, Tensor};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pt")).join(name)
}

fn mlp() -> Sequential<(Linear, ReLU, Linear)> {
    Sequential::new((Linear::new(4, 8), ReLU, Linear::new(8, 3)))
}

fn expect(name: &str) -> Result<StateDict> {
    io::load_safetensors(fixture(name))
}

/// Asserts that `model`'s state dict equals `want` key by key, bit for bit, after
/// converting `want` through `via` (the dtype the file stored).
fn assert_model_holds(model: &dyn nn::Module, want: &StateDict, via: DType) -> Result<()> {
    let got = model.state_dict()?;
    assert_eq!(got.len(), want.len());
    for (k, w) in want.iter() {
        let g = got.get(k).ok_or_else(|| Error::MissingKey {
            container: "model".into(),
            key: k.into(),
        })?;
        let w = w.to_dtype(via)?.to_dtype(DType::F32)?;
        assert_eq!(g.shape(), w.shape(), "{k}");
        assert_eq!(g.to_vec::<f32>()?, w.to_vec::<f32>()?, "{k}");
    }
    Ok(())
}

fn err_text<T>(r: Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn f32_state_dict_loads_strictly_with_pytorch_values() -> Result<()> {
    let net = mlp();
    let rep = net.load(fixture("mlp_f32.pt"))?;
    assert!(rep.is_clean(), "{rep}");
    assert_model_holds(&net, &expect("mlp.expect.safetensors")?, DType::F32)?;
    let sum = io::inspect(fixture("mlp_f32.pt"))?;
    assert_eq!(sum.format, FileFormat::Torch);
    let names: Vec<&str> = sum.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
    assert_eq!(sum.total_elements(), 32 + 8 + 24 + 3);
    assert_eq!(sum.total_bytes(), 4 * 67);
    Ok(())
}

#[test]
fn half_precision_files_convert_only_when_asked() -> Result<()> {
    let want = expect("mlp.expect.safetensors")?;
    for (file, dt) in [("mlp_f16.pt", DType::F16), ("mlp_bf16.pt", DType::BF16)] {
        let sd = io::load_state_dict_file(fixture(file))?;
        assert!(sd.iter().all(|(_, t)| t.dtype() == dt), "{file}");
        let net = mlp();
        let text = err_text(net.load(fixture(file)));
        assert!(
            text.contains(&format!("the model has float32, the file has {dt}")),
            "{text}"
        );
        let rep = net.load_with(fixture(file), &LoadOptions::strict().convert_dtypes(true))?;
        assert_eq!(rep.converted.len(), 4, "{file}");
        assert_model_holds(&net, &want, dt)?;
    }
    Ok(())
}

#[test]
fn dataparallel_prefix_is_stripped() -> Result<()> {
    let net = mlp();
    let text = err_text(net.load(fixture("mlp_dataparallel.pt")));
    assert!(text.contains("`module.0.weight`"), "{text}");
    net.load_with(
        fixture("mlp_dataparallel.pt"),
        &LoadOptions::strict().strip_prefix("module."),
    )?;
    assert_model_holds(&net, &expect("mlp.expect.safetensors")?, DType::F32)
}

#[test]
fn training_checkpoint_model_is_selected_by_key() -> Result<()> {
    let net = mlp();
    let rep = net.load_with(
        fixture("checkpoint.pt"),
        &LoadOptions::strict().prefix("model"),
    )?;
    assert!(rep.is_clean(), "{rep}");
    assert_model_holds(&net, &expect("checkpoint.expect.safetensors")?, DType::F32)?;
    let sum = io::inspect(fixture("checkpoint.pt"))?;
    let other = |k: &str| {
        sum.others
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(other("epoch"), Some("3"));
    assert_eq!(other("loss"), Some("0.25"));
    assert_eq!(other("optimizer.param_groups.0.lr"), Some("0.001"));
    assert_eq!(
        other("optimizer.param_groups.0.params"),
        Some("[0, 1, 2, 3]")
    );
    let adam: Vec<&str> = sum
        .tensors
        .iter()
        .map(|t| t.name.as_str())
        .filter(|n| n.starts_with("optimizer.state.0."))
        .collect();
    assert_eq!(
        adam,
        [
            "optimizer.state.0.step",
            "optimizer.state.0.exp_avg",
            "optimizer.state.0.exp_avg_sq"
        ]
    );
    Ok(())
}

#[derive(nn::Module)]
struct Tied {
    a: Linear,
    b: Linear,
}

#[test]
fn tied_weights_saved_once_load_into_a_tied_model() -> Result<()> {
    let a = Linear::new(4, 4);
    let mut b = Linear::new(4, 4);
    b.weight = a.weight.clone();
    let net = Tied { a, b };
    let rep = net.load(fixture("tied.pt"))?;
    assert!(rep.is_clean(), "{rep}");
    let sd = io::load_state_dict_file(fixture("tied.pt"))?;
    let w = sd.get("a.weight").map(Tensor::to_vec::<f32>).transpose()?;
    assert_eq!(Some(net.b.weight.data()?.to_vec::<f32>()?), w);
    // still one parameter
    assert!(net.a.weight.data()?.same_storage(&net.b.weight.data()?));
    // written back with the weight stored once: the bytes PyTorch loaded (verified.json:
    // a.weight and b.weight one storage again after torch.load)
    // (same file name: the archive inside is named after it)
    let dir = std::env::temp_dir().join(format!("nn-torch-tied-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let out = dir.join("tied.pt");
    net.save(&out)?;
    let bytes = std::fs::read(&out).map_err(|e| Error::io(&out, e))?;
    let _ = std::fs::remove_dir_all(&dir);
    let accepted = fixture("written/tied.pt");
    let want = std::fs::read(&accepted).map_err(|e| Error::io(&accepted, e))?;
    assert!(
        bytes == want,
        "tied.pt differs from the file PyTorch accepted"
    );
    Ok(())
}

#[test]
fn views_and_every_dtype_read_as_pytorch_wrote_them() -> Result<()> {
    let sd = io::load_state_dict_file(fixture("views.pt"))?;
    let want = expect("views.expect.safetensors")?;
    for (k, w) in want.iter() {
        let g = sd.get(k).ok_or_else(|| Error::MissingKey {
            container: "views.pt".into(),
            key: k.into(),
        })?;
        assert_eq!(g.shape(), w.shape(), "{k}");
        assert_eq!(g.to_vec::<f32>()?, w.to_vec::<f32>()?, "{k}");
    }
    assert_eq!(
        sd.get("slice").map(|t| t.to_vec::<f32>()).transpose()?,
        Some(vec![8.0, 9.0, 10.0, 14.0, 15.0, 16.0])
    );
    let dts = io::load_state_dict_file(fixture("dtypes.pt"))?;
    let x = Tensor::from_vec(vec![0.0f32, 1.0, -3.0, 7.5, 2.0, 0.5], &[6])?;
    for d in DType::ALL {
        let t = dts.get(d.as_str()).ok_or_else(|| Error::MissingKey {
            container: "dtypes.pt".into(),
            key: d.as_str().into(),
        })?;
        assert_eq!(t.dtype(), d);
        assert_eq!(t.to_host()?, x.to_dtype(d)?.to_host()?, "{d}");
    }
    Ok(())
}

#[test]
fn legacy_and_torchscript_files_say_what_they_are_and_how_to_convert() {
    let legacy = err_text(io::load_state_dict_file(fixture("legacy.pt")));
    assert!(legacy.contains("legacy PyTorch file"), "{legacy}");
    assert!(
        legacy.contains("torch.save(torch.load(path, weights_only=True)"),
        "{legacy}"
    );
    let ts = err_text(mlp().load(fixture("scripted.pt")));
    assert!(ts.contains("TorchScript archive"), "{ts}");
    assert!(ts.contains("torch.jit.load(path).state_dict()"), "{ts}");
}

#[test]
fn hostile_files_are_refused_with_the_reason() {
    for (file, needle) in [
        ("hostile_os_system.pt", "global `os.system` is not allowed"),
        ("hostile_eval.pt", "global `builtins.eval` is not allowed"),
        (
            "hostile_storage_too_large.pt",
            "claims 1099511627776 float32 elements but its entry holds 128 bytes",
        ),
        ("hostile_negative_stride.pt", "negative stride -8"),
        ("hostile_overlap.pt", "make elements overlap"),
        ("hostile_huge_dims.pt", "more elements than fit in memory"),
        ("hostile_deep.pt", "nested deeper than 1000"),
        ("hostile_zip_bomb.pt", "is compressed (method 8"),
    ] {
        let text = err_text(io::load_state_dict_file(fixture(file)));
        assert!(text.contains(needle), "{file}: {text}");
        // the model loader and the in-memory reader refuse it the same way
        assert!(mlp().load(fixture(file)).is_err(), "{file}");
        let bytes = std::fs::read(fixture(file)).unwrap_or_default();
        let mem = err_text(io::state_dict_from_bytes(&bytes));
        assert!(mem.contains(needle), "{file}: {mem}");
    }
}

#[test]
fn written_pt_round_trips_and_matches_the_file_pytorch_accepted() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("nn-torch-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let src = expect("mlp.expect.safetensors")?;
    for (name, dt) in [
        ("mlp_f32", DType::F32),
        ("mlp_f16", DType::F16),
        ("mlp_bf16", DType::BF16),
    ] {
        let sd = io::to_float_dtype(&src, dt)?;
        let path = dir.join(format!("{name}.pt"));
        io::save_state_dict(&sd, &path)?;
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        // tools/make_pt_fixtures.py --verify loaded these bytes in PyTorch
        // (weights_only=True, load_state_dict(strict=True)): see verified.json
        let accepted = fixture(&format!("written/{name}.pt"));
        let want = std::fs::read(&accepted).map_err(|e| Error::io(&accepted, e))?;
        assert!(
            bytes == want,
            "{name}.pt differs from the file PyTorch accepted: rerun the verification"
        );
        let back = io::load_state_dict_file(&path)?;
        for (k, t) in sd.iter() {
            assert_eq!(
                back.get(k).map(|b| b.to_host()).transpose()?,
                Some(t.to_host()?),
                "{k}"
            );
        }
    }
    // model.save / model.load pick the format by extension, then by magic bytes
    let net = mlp();
    for ext in ["pt", "pth", "bin", "safetensors", "nn"] {
        let path = dir.join(format!("model.{ext}"));
        net.save(&path)?;
        let other = mlp();
        other.load(&path)?;
        assert_eq!(
            other
                .state_dict()?
                .get("0.weight")
                .map(|t| t.to_vec::<f32>())
                .transpose()?,
            net.state_dict()?
                .get("0.weight")
                .map(|t| t.to_vec::<f32>())
                .transpose()?
        );
        let want = match ext {
            "pt" | "pth" | "bin" => FileFormat::Torch,
            "safetensors" => FileFormat::Safetensors,
            _ => FileFormat::Native,
        };
        assert_eq!(io::inspect(&path)?.format, want, "{ext}");
    }
    // a .pt name holding safetensors bytes still loads (magic first)
    let odd = dir.join("really-safetensors.pt");
    io::save_safetensors(&net.state_dict()?, &odd)?;
    mlp().load(&odd)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn is_mapped(t: &Tensor) -> bool {
    t.storage()
        .as_any()
        .downcast_ref::<nn::cpu::CpuStorage>()
        .is_some_and(nn::cpu::CpuStorage::is_mapped)
}

#[test]
fn files_pytorch_wrote_load_mapped_with_the_same_values() -> Result<()> {
    // a state dict: every f32 tensor borrows the zip entry PyTorch stored, 64-byte aligned
    let net = mlp();
    let mmap = LoadOptions::strict().mmap(true);
    assert!(net.load_with(fixture("mlp_f32.pt"), &mmap)?.is_clean());
    assert_model_holds(&net, &expect("mlp.expect.safetensors")?, DType::F32)?;
    for p in net.parameters() {
        assert!(is_mapped(&p.data()?), "{}", p.name());
    }
    // a checkpoint's model by key; f16 converted (so copied) when asked
    let ck = mlp();
    ck.load_with(fixture("checkpoint.pt"), &mmap.clone().prefix("model"))?;
    assert_model_holds(&ck, &expect("checkpoint.expect.safetensors")?, DType::F32)?;
    let half = mlp();
    half.load_with(fixture("mlp_f16.pt"), &mmap.clone().convert_dtypes(true))?;
    assert_model_holds(&half, &expect("mlp.expect.safetensors")?, DType::F16)?;
    assert!(half
        .parameters()
        .iter()
        .all(|p| p.data().is_ok_and(|d| !is_mapped(&d))));
    // views are gathered (copied); whole contiguous f32/i64 tensors are borrowed
    let sd = io::map_state_dict_file(fixture("views.pt"))?;
    let want = io::load_state_dict_file(fixture("views.pt"))?;
    for (k, w) in want.iter() {
        let g = sd.get(k).map(Tensor::to_host).transpose()?;
        assert_eq!(g, Some(w.to_host()?), "{k}");
    }
    assert_eq!(sd.get("slice").map(is_mapped), Some(false));
    let dts = io::map_state_dict_file(fixture("dtypes.pt"))?;
    for (k, t) in dts.iter() {
        let borrowable = matches!(t.dtype(), DType::F32 | DType::I64);
        assert_eq!(is_mapped(t), borrowable, "{k}");
    }
    Ok(())
}
