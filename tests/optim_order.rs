//! `#[derive(Module)]` lists a module's own parameters and buffers before its children's,
//! as PyTorch does; checked against the order PyTorch prints
//! (`tests/fixtures/training/order.json`, made by `tools/make_training_fixtures.py`).

use nn::module::Buffer;
use nn::{Embedding, Linear, Module, ModuleExt, Param, Result, Tensor};

#[derive(Module)]
struct Order {
    tok: Embedding,
    pos: Param,
    head: Linear,
    scale: Buffer,
}

#[derive(Module)]
enum Either {
    Both { tok: Embedding, pos: Param },
}

fn fixture() -> serde_json::Value {
    let text = std::fs::read_to_string("tests/fixtures/training/order.json")
        .unwrap_or_else(|e| panic!("tests/fixtures/training/order.json: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("order.json: {e}"))
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn own_params_and_buffers_come_before_children_as_in_pytorch() -> Result<()> {
    let m = Order {
        tok: Embedding::new(5, 2)?,
        pos: Param::new(Tensor::zeros(&[3, 2]))?,
        head: Linear::new(2, 2),
        scale: Buffer::new(Tensor::ones(&[2])),
    };
    let want = fixture();
    let names: Vec<String> = m.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, strings(&want["named_parameters"]));
    let keys: Vec<String> = m.state_dict()?.keys().map(String::from).collect();
    assert_eq!(keys, strings(&want["state_dict"]));
    // the optimizer numbers parameters in that order too
    let opt = nn::optim::Sgd::with_lr(m.parameters(), 0.1)?;
    let ids: Vec<String> = nn::optim::Optimizer::params(&opt)
        .iter()
        .map(|p| p.name())
        .collect();
    assert_eq!(ids, names);
    Ok(())
}

#[test]
fn enum_variants_are_ordered_too() -> Result<()> {
    let m = Either::Both {
        tok: Embedding::new(5, 2)?,
        pos: Param::new(Tensor::zeros(&[3, 2]))?,
    };
    let names: Vec<String> = m.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["pos", "tok.weight"]);
    Ok(())
}
