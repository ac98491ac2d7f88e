//! ResNet-18 by torchvision's own names, against PyTorch: a narrow copy (widths 4..32,
//! same classes and names; tools/make_convnet_fixtures.py) loads strictly, keeps
//! PyTorch's key order, prints PyTorch's tree, and matches in eval and train mode
//! (outputs, running statistics, counters, gradients of a sum loss).

mod common;

#[allow(dead_code)]
#[path = "../examples/convnet/resnet.rs"]
mod resnet;

use common::assert_close;
use nn::{io, DType, Forward, LoadOptions, ModuleExt, Result, StateDict, Tensor};
use resnet::ResNet;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");

fn fixtures() -> Result<StateDict> {
    io::load_safetensors(format!("{DIR}resnet_narrow.safetensors"))
}

fn get(sd: &StateDict, k: &str) -> Tensor {
    sd.get(k)
        .cloned()
        .unwrap_or_else(|| panic!("fixture has no `{k}`: rerun tools/make_convnet_fixtures.py"))
}

fn narrow() -> ResNet {
    ResNet::with_widths([4, 8, 16, 32], 10)
}

#[test]
fn keys_in_pytorch_order_and_printed_tree() -> Result<()> {
    let net = narrow();
    let ours: Vec<String> = net.state_dict()?.keys().map(String::from).collect();
    let theirs = std::fs::read_to_string(format!("{DIR}resnet_narrow_keys.txt"))?;
    let theirs: Vec<&str> = theirs.lines().collect();
    assert_eq!(ours, theirs);
    assert!(ours.contains(&"layer2.0.downsample.1.running_var".to_string()));
    let repr = std::fs::read_to_string(format!("{DIR}resnet_narrow.txt"))?;
    assert_eq!(net.repr(), repr.trim_end());
    Ok(())
}

#[test]
fn resnet18_prints_as_torchvisions() -> Result<()> {
    // repr(torchvision.models.resnet18()), unpatched (tools/make_repr_fixtures.py)
    let repr = std::fs::read_to_string(format!("{DIR}repr/resnet18.txt"))?;
    assert_eq!(ResNet::resnet18(1000).repr(), repr.trim_end());
    Ok(())
}

#[test]
fn loads_strictly_and_matches_in_eval_and_train() -> Result<()> {
    let sd = fixtures()?;
    let mut net = narrow();
    let report = net.load_state_dict(&sd, &LoadOptions::strict().prefix("sd"))?;
    assert!(report.missing.is_empty() && report.unexpected.is_empty());
    let x = get(&sd, "x");

    net.eval();
    let y = nn::no_grad(|| net.forward(&x))?;
    assert_close("eval_out", &y, &get(&sd, "eval_out"), 1e-4)?;

    net.train();
    let y = net.forward(&x)?;
    assert_close("train_out", &y, &get(&sd, "train_out"), 1e-4)?;
    y.sum()?.backward()?;
    let after = net.state_dict()?;
    for (k, want) in sd
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("after.")?, v)))
    {
        let got = after.get(k).unwrap_or_else(|| panic!("no buffer {k}"));
        if want.dtype() == DType::I64 {
            assert_eq!(
                (got.shape(), got.to_vec::<i64>()?),
                (want.shape(), want.to_vec::<i64>()?),
                "{k}"
            );
        } else {
            assert_close(k, got, want, 1e-4)?;
        }
    }
    let mut checked = 0;
    for (name, p) in net.named_parameters() {
        let g = p.grad().unwrap_or_else(|| panic!("no gradient for {name}"));
        assert_close(
            &format!("grad.{name}"),
            &g,
            &get(&sd, &format!("grad.{name}")),
            1e-3,
        )?;
        checked += 1;
    }
    assert_eq!(checked, 62);
    Ok(())
}

#[test]
fn a_bad_batch_norm_buffer_is_named_and_nothing_is_loaded() -> Result<()> {
    let sd = fixtures()?;
    let net = narrow();
    let before = net.layer1.0.conv1.weight.data()?.to_vec::<f32>()?;
    for (key, bad) in [
        ("sd.layer2.0.downsample.1.running_var", Tensor::zeros(&[3])),
        ("sd.bn1.num_batches_tracked", Tensor::scalar(3.0)),
    ] {
        let mut broken = sd.clone();
        broken.insert(key, bad);
        let err = net
            .load_state_dict(&broken, &LoadOptions::strict().prefix("sd"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(key.trim_start_matches("sd.")), "{err}");
        assert_eq!(net.layer1.0.conv1.weight.data()?.to_vec::<f32>()?, before);
    }
    Ok(())
}
