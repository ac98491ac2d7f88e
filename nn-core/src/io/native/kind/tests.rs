//! Tests of the typed answer to "what does this native file hold".

use crate::io::tests_support::small_dict;
use crate::io::*;
use crate::optim::{Optimizer, Sgd};
use crate::{Error, Forward, Linear, ModuleExt, Tensor};
use serde::Serialize;
use std::collections::BTreeMap;

fn kind_of<T: Serialize + ?Sized>(v: &T) -> Result<Option<NativeKind>> {
    let v2 = native_kind_from_bytes(&to_bytes(v)?)?;
    let v1 = native_kind_from_bytes(&to_bytes_v1(v)?)?;
    assert_eq!(v1, v2, "both versions say the same");
    Ok(v2)
}

#[test]
fn every_value_nn_writes_has_its_kind_in_both_versions() -> Result<()> {
    let (a, b) = (Tensor::zeros(&[2, 3]), Tensor::arange(0, 4));
    assert_eq!(kind_of(&small_dict()?)?, Some(NativeKind::StateDict));
    let m = BTreeMap::from([("a".to_string(), a.clone())]);
    assert_eq!(kind_of(&m)?, Some(NativeKind::StateDict));
    assert_eq!(kind_of(&a)?, Some(NativeKind::SingleTensor));
    let list = vec![a.clone(), b.clone(), a.clone()];
    assert_eq!(kind_of(&list)?, Some(NativeKind::List(3)));
    assert_eq!(
        kind_of(&(a.clone(), b.clone()))?,
        Some(NativeKind::Tuple(2))
    );
    assert_eq!(kind_of(&[b.clone(), b, a])?, Some(NativeKind::Tuple(3)));
    assert_eq!(kind_of(&(5u32, "hello"))?, Some(NativeKind::Other));
    // the texts a load of another type names
    assert_eq!(NativeKind::List(3).to_string(), "a Vec<Tensor> (3 tensors)");
    assert_eq!(NativeKind::Tuple(2).to_string(), "a tuple of 2 tensors");
    Ok(())
}

#[test]
fn training_checkpoints_of_both_layouts() -> Result<()> {
    let net = Linear::new(3, 2);
    let mut opt = Sgd::with_lr(net.parameters(), 0.1)?;
    let loss = net.forward(&Tensor::ones(&[4, 3]))?.square()?.mean()?;
    opt.zero_grad();
    loss.backward()?;
    opt.step()?;
    let ck = TrainingCheckpoint::capture(2, &net, &opt)?
        .with_meta("seed", 7)
        .with_meta("data", "digits")
        .with_tensor("loss", Tensor::ones(&[2]));
    let dir = std::env::temp_dir().join(format!("nn-kind-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let path = dir.join("ck.nn");
    ck.save(&path)?;
    let kind = native_kind(&path);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(kind?, Some(NativeKind::TrainingCheckpoint));

    // the first layout, without the scheduler's state dict
    #[derive(Serialize)]
    struct V1<'a> {
        format: &'a str,
        epoch: u64,
        rng_key: u64,
        rng_default_seed: u64,
        metadata: &'a BTreeMap<String, MetaValue>,
        model: &'a StateDict,
        optimizer: &'a StateDict,
        tensors: &'a StateDict,
    }
    let v1 = V1 {
        format: "nn-training-checkpoint/1",
        epoch: 1,
        rng_key: 2,
        rng_default_seed: 3,
        metadata: &ck.metadata,
        model: &ck.model,
        optimizer: &ck.optimizer,
        tensors: &ck.tensors,
    };
    assert_eq!(kind_of(&v1)?, Some(NativeKind::TrainingCheckpoint));
    Ok(())
}

#[test]
fn other_files_are_none_and_damaged_ones_the_load_error() -> Result<()> {
    assert_eq!(native_kind_from_bytes(b"{\"not\": \"native\"}")?, None);
    let sd = small_dict()?;
    assert_eq!(native_kind_from_bytes(&safetensors_to_bytes(&sd)?)?, None);
    for mut bytes in [to_bytes(&sd)?, to_bytes_v1(&sd)?] {
        if let Some(b) = bytes.last_mut() {
            *b ^= 1; // tensor data: under a checksum in both versions
        }
        let kind = native_kind_from_bytes(&bytes).map(|_| ());
        let load = from_bytes::<StateDict>(&bytes).map(|_| ());
        match (kind, load) {
            (Err(Error::Format { msg: k, .. }), Err(Error::Format { msg: l, .. })) => {
                assert!(k.contains("checksum mismatch"), "{k}");
                assert_eq!(k, l);
            }
            other => panic!("{other:?}"),
        }
    }
    Ok(())
}

#[test]
fn a_checkpoint_read_as_a_state_dict_says_what_it_is() -> Result<()> {
    let net = Linear::new(2, 1);
    let opt = Sgd::with_lr(net.parameters(), 0.1)?;
    let dir = std::env::temp_dir().join(format!("nn-kind-sd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let path = dir.join("ck.nn");
    TrainingCheckpoint::capture(1, &net, &opt)?.save(&path)?;
    let as_sd = load_state_dict_file(&path).map(|_| ());
    let back = TrainingCheckpoint::load(&path).map(|ck| ck.epoch);
    std::fs::remove_dir_all(&dir).ok();
    match as_sd {
        Err(Error::FileKind {
            found, expected, ..
        }) => assert_eq!(
            (found.as_str(), expected.as_str()),
            ("a TrainingCheckpoint", "a StateDict")
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(back?, 1);
    Ok(())
}
