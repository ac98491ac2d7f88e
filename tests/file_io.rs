//! Section 5.5 (file I/O) through the facade: tensors, lists and maps of tensors, model
//! parameters (`mlp.params`), strict/non-strict loading, PyTorch's safetensors, and crash
//! safety under kills.

use nn::io::{self, LoadOptions};
use nn::{Error, Forward, Linear, ModuleExt, ReLU, Result, Sequential, StateDict, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Result<TempDir> {
        let p = std::env::temp_dir().join(format!("nn-file-io-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))?;
        Ok(TempDir(p))
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

type Mlp = Sequential<(Linear, ReLU, Linear)>;

fn mlp() -> Mlp {
    Sequential::new((Linear::new(20, 256), ReLU, Linear::new(256, 10)))
}

#[test]
fn tensors_lists_and_dicts_roundtrip() -> Result<()> {
    let dir = TempDir::new("tensors")?;
    let x = Tensor::arange(0, 4);
    io::save(&x, dir.path("x-file"))?;
    let x2: Tensor = io::load(dir.path("x-file"))?;
    assert_eq!(x2.to_vec::<i64>()?, vec![0, 1, 2, 3]);

    let y = Tensor::zeros(&[4]);
    io::save(&(x.clone(), y.clone()), dir.path("x-files"))?;
    let (x2, y2): (Tensor, Tensor) = io::load(dir.path("x-files"))?;
    assert_eq!(x2.to_vec::<i64>()?, vec![0, 1, 2, 3]);
    assert_eq!(y2.to_vec::<f32>()?, vec![0.0; 4]);
    io::save(&vec![x.clone(), y.clone()], dir.path("x-vec"))?;
    let v: Vec<Tensor> = io::load(dir.path("x-vec"))?;
    assert_eq!(v.len(), 2);

    let mydict = HashMap::from([("x".to_string(), x), ("y".to_string(), y)]);
    io::save(&mydict, dir.path("mydict"))?;
    let back: BTreeMap<String, Tensor> = io::load(dir.path("mydict"))?;
    assert_eq!(back.keys().collect::<Vec<_>>(), ["x", "y"]);
    assert_eq!(back["y"].shape(), &[4]);
    // the wrong type is an error, not garbage
    assert!(io::load::<Tensor>(dir.path("mydict")).is_err());
    assert!(io::load::<Tensor>(dir.path("no-such-file")).is_err());
    Ok(())
}

#[test]
fn mlp_params_reload_bit_identical() -> Result<()> {
    let dir = TempDir::new("mlp")?;
    let net = mlp();
    let x = Tensor::randn(&[2, 20]);
    let y = net.forward(&x)?;
    net.save(dir.path("mlp.params"))?;

    let clone = mlp();
    assert_ne!(clone.forward(&x)?.to_vec::<f32>()?, y.to_vec::<f32>()?);
    let rep = clone.load(dir.path("mlp.params"))?;
    assert!(rep.is_clean());
    assert_eq!(rep.loaded, ["0.weight", "0.bias", "2.weight", "2.bias"]);
    let y_clone = clone.forward(&x)?;
    assert_eq!(
        y_clone
            .to_vec::<f32>()?
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>(),
        y.to_vec::<f32>()?
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>()
    );
    // the file is also a plain map of tensors
    let sd: BTreeMap<String, Tensor> = io::load(dir.path("mlp.params"))?;
    assert_eq!(sd.len(), 4);

    // a lazy model loads without a dummy forward: the file gives the shapes
    let lazy = Sequential::new((Linear::lazy(256), ReLU, Linear::lazy(10)));
    lazy.load(dir.path("mlp.params"))?;
    assert_eq!(lazy.forward(&x)?.to_vec::<f32>()?, y.to_vec::<f32>()?);
    Ok(())
}

#[test]
fn strict_error_lists_all_problems_and_non_strict_reuses_first_layers() -> Result<()> {
    let dir = TempDir::new("strict")?;
    let trained = mlp();
    trained.save(dir.path("mlp.params"))?;
    // the book's exercise: reuse the first two layers in a net with another head
    let other = Sequential::new((Linear::new(20, 256), ReLU, Linear::new(256, 3), ReLU));
    let err = other
        .load(dir.path("mlp.params"))
        .err()
        .ok_or_else(|| Error::MissingKey {
            container: "strict load result".into(),
            key: "error".into(),
        })?;
    let Error::StateDict(rep) = &err else {
        panic!("wrong error: {err}");
    };
    assert_eq!(rep.mismatched.len(), 2);
    let text = err.to_string();
    assert!(text.contains("2 problems"), "{text}");
    assert!(
        text.contains(
            "shape mismatch for `2.weight`: the model has [3, 256], the file has [10, 256]"
        ),
        "{text}"
    );
    let rep = other.load_with(dir.path("mlp.params"), &LoadOptions::non_strict())?;
    assert_eq!(rep.loaded, ["0.weight", "0.bias"]);
    let x = Tensor::randn(&[2, 20]);
    assert_eq!(
        other.0.forward(&x)?.to_vec::<f32>()?,
        trained.0.forward(&x)?.to_vec::<f32>()?
    );
    Ok(())
}

#[test]
fn pytorch_state_dict_loads_and_matches_pytorch_output() -> Result<()> {
    let net = Sequential::new((Linear::new(4, 8), ReLU, Linear::new(8, 1)));
    let rep = net.load(fixture("torch_state_dict_4_8_1.safetensors"))?;
    assert!(rep.is_clean(), "{rep}");
    let io_sd = io::load_safetensors(fixture("torch_state_dict_4_8_1.io.safetensors"))?;
    let (Some(x), Some(want)) = (io_sd.get("x"), io_sd.get("y")) else {
        panic!("fixture lacks x or y");
    };
    let got = net.forward(x)?.to_vec::<f32>()?;
    for (g, w) in got.iter().zip(want.to_vec::<f32>()?) {
        assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{g} vs {w}");
    }
    Ok(())
}

#[test]
fn our_safetensors_have_pytorch_names_dtypes_and_layouts() -> Result<()> {
    let dir = TempDir::new("st")?;
    let net = Sequential::new((Linear::new(4, 8), ReLU, Linear::new(8, 1)));
    let path = dir.path("net.safetensors");
    net.save(&path)?;
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    // read back with the safetensors crate itself, as PyTorch's loader would
    let st_err = |e: safetensors::SafeTensorError| Error::Format {
        path: path.display().to_string(),
        msg: e.to_string(),
    };
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(st_err)?;
    let mut names = st.names();
    names.sort();
    assert_eq!(names, ["0.bias", "0.weight", "2.bias", "2.weight"]);
    let w = st.tensor("0.weight").map_err(st_err)?;
    assert_eq!(w.dtype(), safetensors::Dtype::F32);
    assert_eq!(w.shape(), &[8, 4]);
    let ours = net.0.weight.data()?.to_vec::<f32>()?;
    let le: Vec<u8> = ours.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(w.data(), le.as_slice());
    // and our loader takes it back (format sniffed by content, not name)
    let copy = dir.path("renamed.bin");
    std::fs::copy(&path, &copy).map_err(|e| Error::io(&copy, e))?;
    let fresh = Sequential::new((Linear::new(4, 8), ReLU, Linear::new(8, 1)));
    fresh.load(&copy)?;
    assert_eq!(fresh.0.weight.data()?.to_vec::<f32>()?, ours);
    // optional: PyTorch itself, where installed
    let script = format!(
        "import torch, safetensors.torch as st\n\
         net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))\n\
         net.load_state_dict(st.load_file({:?}))\n",
        path.display().to_string()
    );
    if let Ok(out) = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
    {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No module named") {
            eprintln!("skipped: PyTorch check (torch/safetensors not installed)");
        } else {
            assert!(
                out.status.success(),
                "PyTorch could not load our file: {stderr}"
            );
        }
    }
    Ok(())
}

const CHILD_ENV: &str = "NN_FILE_IO_CRASH_CHILD";

fn big_dict(fill: f32) -> Result<StateDict> {
    let mut sd = StateDict::new();
    for i in 0..4 {
        sd.insert(format!("{i}.weight"), Tensor::full(&[256, 1024], fill));
    }
    Ok(sd)
}

/// Not a test on its own: the child process of `kill_during_save_never_damages_old_file`,
/// which saves in a loop until it is killed.
#[test]
fn crash_child_saves_until_killed() -> Result<()> {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return Ok(());
    };
    let sd = big_dict(2.0)?;
    let mut i = 0u32;
    loop {
        // alternate between the two formats so both writers are interrupted
        if i.is_multiple_of(2) {
            io::save(&sd, &path)?;
        } else {
            io::save_state_dict(&sd, format!("{path}.safetensors"))?;
        }
        i += 1;
    }
}

#[test]
fn kill_during_save_never_damages_old_file() -> Result<()> {
    let dir = TempDir::new("crash")?;
    let target = dir.path("model.params");
    let st_target = dir.path("model.params.safetensors");
    io::save(&big_dict(1.0)?, &target)?;
    io::save_state_dict(&big_dict(1.0)?, &st_target)?;
    let exe = std::env::current_exe()?;
    let temp_files = || -> Result<usize> {
        Ok(std::fs::read_dir(&dir.0)
            .map_err(|e| Error::io(&dir.0, e))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".nn-tmp."))
            .count())
    };
    let mut interrupted = 0;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut saw_new = 0;
    for _ in 0..40 {
        let mut child = std::process::Command::new(&exe)
            .args([
                "--exact",
                "crash_child_saves_until_killed",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &target)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(std::time::Duration::from_micros(2_000 + seed % 60_000));
        child.kill()?;
        child.wait()?;
        // each save removes what killed saves to its target left: at most the last
        // two children's temp files (one per target) are ever around
        let left = temp_files()?;
        assert!(left <= 4, "{left} temp files piled up");
        interrupted += left;
        for (sd, name) in [
            (io::load_state_dict_file(&target)?, "native"),
            (io::load_state_dict_file(&st_target)?, "safetensors"),
        ] {
            assert_eq!(sd.len(), 4, "{name}");
            for (_, t) in sd.iter() {
                let v = t.to_vec::<f32>()?;
                assert!(v[0] == 1.0 || v[0] == 2.0, "{name}");
                assert!(v.iter().all(|&e| e == v[0]), "{name}: torn file");
                saw_new += usize::from(v[0] == 2.0);
            }
        }
    }
    // the kills did land mid-save: interrupted saves left their temporary files
    eprintln!(
        "{interrupted} temp files of interrupted saves seen, {saw_new} tensors seen replaced"
    );
    assert!(interrupted > 0);
    // and the next saves cleaned every one of them up
    io::save(&big_dict(1.0)?, &target)?;
    io::save_state_dict(&big_dict(1.0)?, &st_target)?;
    assert_eq!(temp_files()?, 0);
    Ok(())
}

/// A derived model with a buffer (saved), a constant (not saved) and a layer used twice.
#[derive(nn::Module)]
struct Stats {
    body: Linear,
    again: Linear,
    running_mean: nn::Buffer,
    #[module(constant)]
    noise: Tensor,
}

fn stats() -> Stats {
    let body = Linear::new(3, 3);
    Stats {
        again: body.clone(),
        body,
        running_mean: nn::Buffer::new(Tensor::zeros(&[3])),
        noise: Tensor::rand(&[3]),
    }
}

#[test]
fn derived_model_saves_buffers_not_constants_and_stays_tied() -> Result<()> {
    let dir = TempDir::new("derived")?;
    let src = stats();
    src.running_mean
        .set(&Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3])?);
    src.save(dir.path("stats.params"))?;
    let sd = io::load_state_dict_file(dir.path("stats.params"))?;
    // PyTorch's order: the module's own buffer before its children's parameters
    assert_eq!(
        sd.keys().collect::<Vec<_>>(),
        [
            "running_mean",
            "body.weight",
            "body.bias",
            "again.weight",
            "again.bias"
        ]
    );
    let dst = stats();
    let noise = dst.noise.to_vec::<f32>()?;
    dst.load(dir.path("stats.params"))?;
    assert_eq!(dst.running_mean.get().to_vec::<f32>()?, vec![1.0, 2.0, 3.0]);
    assert_eq!(dst.noise.to_vec::<f32>()?, noise);
    assert!(dst.body.weight.ptr_eq(&dst.again.weight));
    assert_eq!(
        dst.again.weight.data()?.to_vec::<f32>()?,
        src.body.weight.data()?.to_vec::<f32>()?
    );
    Ok(())
}
