//! Runs the `nn` binary on every kind of file the library writes (native state dicts v1
//! and v2, training checkpoints, tensor and tensor-list files, safetensors, `.pt`),
//! made here with the library's public API, and asserts it says what each file is.

mod common;

use common::{fixture, nn, tmp};
use nn_core::io::{self, TrainingCheckpoint};
use nn_core::optim::{Adam, Optimizer};
use nn_core::{Forward, Linear, ModuleExt, Result, StateDict, Tensor};

fn write(path: &str, bytes: &[u8]) {
    if let Err(e) = std::fs::write(path, bytes) {
        panic!("{path}: {e}");
    }
}

/// A training checkpoint as the main job writes one: model, Adam's state after a step,
/// epoch, metadata, a tensor of its own and a scheduler state.
fn training_checkpoint(path: &str, epoch: u64) -> Result<()> {
    nn_core::manual_seed(0);
    let net = Linear::new(3, 2);
    let mut opt = Adam::with_lr(net.parameters(), 1e-2)?;
    let loss = net.forward(&Tensor::ones(&[4, 3]))?.square()?.mean()?;
    opt.zero_grad();
    loss.backward()?;
    opt.step()?;
    let mut sched = StateDict::new();
    sched.insert("last_epoch", Tensor::from_vec(vec![3.0f32], &[])?);
    TrainingCheckpoint::capture(epoch, &net, &opt)?
        .with_meta("seed", 7)
        .with_meta("data", "digits")
        .with_tensor("loss", Tensor::from_vec(vec![0.5f32, 0.25], &[2])?)
        .with_scheduler(sched)
        .save(path)
}

#[test]
fn training_checkpoints_show_every_part_under_load_keys() -> Result<()> {
    let ck = tmp("train.nn");
    training_checkpoint(&ck, 3)?;
    let (code, out, err) = nn(&["inspect", &ck]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("nn training checkpoint (native format v2), "),
        "{out}"
    );
    for line in [
        "\n  epoch ",
        "= 3\n",
        "\n  metadata.seed ",
        "= 7\n",
        "\n  metadata.data ",
        "= \"digits\"\n",
        "\n  model.weight ",
        "float32   [2, 3]",
        "\n  model.bias ",
        "\n  optimizer.state.0.exp_avg ",
        "\n  tensors.loss ",
        "\n  scheduler.last_epoch ",
    ] {
        assert!(out.contains(line), "{line:?} in {out}");
    }

    let (code, out, _) = nn(&["inspect", "--tree", &ck]);
    assert_eq!(code, 0);
    assert!(out.contains("\n  model/\n    weight "), "{out}");
    let (code, out, _) = nn(&["inspect", "--json", &ck]);
    assert_eq!(code, 0);
    assert!(out.contains("\"kind\":\"training_checkpoint\""), "{out}");

    // the model alone, as the state dict `ModuleExt::load` reads
    let model = tmp("train-model.safetensors");
    let (code, out, err) = nn(&["convert", &ck, &model, "--key", "model"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 tensors"), "{out}");
    let (code, out, _) = nn(&["inspect", &model]);
    assert_eq!(code, 0);
    assert!(out.contains("\n  weight "), "{out}");

    // a later epoch: the values that changed are named
    let later = tmp("train-later.nn");
    training_checkpoint(&later, 4)?;
    let (code, out, _) = nn(&["diff", &ck, &later]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("value epoch: 3 -> 4"), "{out}");
    let (code, out, _) = nn(&["diff", &ck, &ck]);
    assert_eq!(code, 0, "{out}");
    Ok(())
}

#[test]
fn damaged_and_foreign_native_files_are_one_line_errors() -> Result<()> {
    let ck = tmp("damaged.nn");
    training_checkpoint(&ck, 1)?;
    let mut bytes = std::fs::read(&ck).map_err(|e| nn_core::Error::io(&ck, e))?;
    if let Some(b) = bytes.last_mut() {
        *b ^= 0xff;
    }
    write(&ck, &bytes);
    let (code, out, err) = nn(&["inspect", &ck]);
    assert_eq!(code, 3);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("checksum"), "{err}");
    assert!(err.contains("damaged.nn"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    // a value of the user's own type: sound, but not one nn's tools know
    let own = tmp("own.nn");
    io::save(&(5u32, "hello".to_string()), &own)?;
    let (code, _, err) = nn(&["inspect", &own]);
    assert_eq!(code, 3);
    assert!(
        err.contains(
            "own.nn: an nn native file (format v2, checksums verified) holding a value that is not"
        ),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    Ok(())
}

#[test]
fn native_state_dicts_of_both_versions() -> Result<()> {
    let mut sd = StateDict::new();
    sd.insert("0.weight", Tensor::randn(&[4, 3]));
    sd.insert("0.bias", Tensor::randn(&[4]));
    let v2 = tmp("sd-v2.nn");
    io::save_state_dict(&sd, &v2)?;
    let v1 = tmp("sd-v1.nn");
    write(&v1, &io::to_bytes_v1(&sd)?);
    let (code, out, _) = nn(&["inspect", &v2]);
    assert_eq!(code, 0);
    assert!(
        out.contains("nn state dict (native format v2), 2 tensors, 16 elements, 64 B"),
        "{out}"
    );
    let (code, out, _) = nn(&["inspect", &v1]);
    assert_eq!(code, 0);
    assert!(out.contains("nn state dict (native format v1)"), "{out}");
    let (code, out, _) = nn(&["diff", &v1, &v2]);
    assert_eq!(code, 0, "{out}");
    Ok(())
}

#[test]
fn tensor_and_tensor_list_files() -> Result<()> {
    let (a, b) = (Tensor::randn(&[2, 2]), Tensor::randn(&[3]));
    for (name, kind, keys) in [
        (
            "t.nn",
            "nn tensor (native format v2), 1 tensors",
            vec!["tensor"],
        ),
        ("l.nn", "nn list of 2 tensors", vec!["0", "1"]),
        ("p.nn", "nn tuple of 2 tensors", vec!["0", "1"]),
    ] {
        let path = tmp(name);
        match name {
            "t.nn" => io::save(&a, &path)?,
            "l.nn" => io::save(&vec![a.clone(), b.clone()], &path)?,
            _ => io::save(&(a.clone(), b.clone()), &path)?,
        }
        let (code, out, err) = nn(&["inspect", &path]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(kind), "{out}");
        for k in keys {
            assert!(out.contains(&format!("\n  {k} ")), "{k} in {out}");
        }
    }
    let st = tmp("l.safetensors");
    let (code, out, err) = nn(&["convert", &tmp("l.nn"), &st]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 tensors"), "{out}");
    Ok(())
}

#[test]
fn tied_tensors_are_marked_and_counted_once_in_every_format() -> Result<()> {
    let w = Tensor::randn(&[5, 4]);
    let mut sd = StateDict::new();
    sd.insert("embed.weight", w.clone());
    sd.insert("head.weight", w);
    // constant tensors are alike by chance, not tied
    sd.insert("a.bias", Tensor::zeros(&[5]));
    sd.insert("head.bias", Tensor::zeros(&[5]));
    for name in ["tied.nn", "tied.safetensors", "tied.pt"] {
        let path = tmp(name);
        io::save_state_dict(&sd, &path)?;
        let (code, out, err) = nn(&["inspect", &path]);
        assert_eq!(code, 0, "{name}: {err}");
        assert!(
            out.contains("3 tensors (+1 tied, counted once), 30 elements, 120 B"),
            "{name}: {out}"
        );
        assert!(
            out.contains("80 B  tied to embed.weight\n"),
            "{name}: {out}"
        );
        assert_eq!(out.matches("tied to").count(), 1, "{name}: {out}");
    }
    Ok(())
}

#[test]
fn other_formats_say_what_they_are() {
    let (code, out, _) = nn(&["inspect", &fixture("mlp.expect.safetensors")]);
    assert_eq!(code, 0);
    assert!(out.contains(": safetensors state dict, "), "{out}");
    let (code, out, _) = nn(&["inspect", &fixture("mlp_f32.pt")]);
    assert_eq!(code, 0);
    assert!(
        out.contains(": PyTorch torch.save archive (state dict), "),
        "{out}"
    );
}

#[test]
fn a_native_file_under_a_text_name_warns() {
    let txt = tmp("weights.txt");
    let (code, _, err) = nn(&["convert", &fixture("mlp_f32.pt"), &txt]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("nn: warning: "), "{err}");
    assert!(
        err.contains("weights.txt: writing nn's binary native format to a `.txt` name"),
        "{err}"
    );
    let (code, _, err) = nn(&["convert", &fixture("mlp_f32.pt"), &tmp("weights.nn")]);
    assert_eq!(code, 0, "{err}");
    assert!(err.is_empty(), "{err}");
    // what was written is a state dict all the same
    let (code, out, _) = nn(&["inspect", &txt]);
    assert_eq!(code, 0);
    assert!(out.contains("nn state dict (native format v2)"), "{out}");
}

#[test]
fn kinds_come_from_the_library_typed_and_damage_wins() -> Result<()> {
    // an array of three tensors is a tuple of three
    let t = tmp("arr.nn");
    io::save(
        &[
            Tensor::randn(&[2]),
            Tensor::randn(&[3]),
            Tensor::randn(&[4]),
        ],
        &t,
    )?;
    assert_eq!(io::native_kind(&t)?, Some(io::NativeKind::Tuple(3)));
    let (code, out, err) = nn(&["inspect", &t]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("nn tuple of 3 tensors (native format v2)"),
        "{out}"
    );
    // a damaged tensor or list file says so (its kind is never guessed from a message)
    for (name, v1) in [("dl.nn", false), ("dl1.nn", true)] {
        let path = tmp(name);
        let list = vec![Tensor::randn(&[8]), Tensor::randn(&[8])];
        let mut bytes = match v1 {
            true => io::to_bytes_v1(&list)?,
            false => io::to_bytes(&list)?,
        };
        if let Some(b) = bytes.last_mut() {
            *b ^= 0x10;
        }
        write(&path, &bytes);
        let (code, out, err) = nn(&["inspect", &path]);
        assert_eq!(code, 3, "{out}");
        assert!(err.contains("checksum mismatch"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    Ok(())
}
