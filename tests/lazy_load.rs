//! A state dict loads into lazy convolutions and batch norms before their first forward
//! (PyTorch's lazy modules materialize from the loaded shapes): the shapes size them,
//! they must agree with what the layer already knows (out channels, kernel, groups) and
//! with each other, and a bad shape names its key and loads nothing.

use nn::layers::{BatchNorm2d, Conv2d};
use nn::{Forward, LoadOptions, ModuleExt, ReLU, Result, Sequential, StateDict, Tensor};

type Net = Sequential<(Conv2d, BatchNorm2d, ReLU, Conv2d, BatchNorm2d)>;

fn lazy() -> Net {
    Sequential::new((
        Conv2d::lazy(8, 3).padding(1),
        BatchNorm2d::lazy(),
        ReLU,
        Conv2d::lazy(4, 3).groups(2).no_bias(),
        BatchNorm2d::lazy().no_affine(),
    ))
}

/// The eager twin, trained one forward so its running statistics are not the defaults.
fn eager() -> Result<(Net, StateDict)> {
    let net = Sequential::new((
        Conv2d::new(3, 8, 3).padding(1),
        BatchNorm2d::new(8),
        ReLU,
        Conv2d::new(8, 4, 3).groups(2).no_bias(),
        BatchNorm2d::new(4).no_affine(),
    ));
    net.forward(&Tensor::randn(&[4, 3, 6, 6]))?;
    let sd = net.state_dict()?;
    Ok((net, sd))
}

fn load_error(net: &Net, sd: &StateDict) -> String {
    net.load_state_dict(sd, &LoadOptions::strict())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

fn untouched(net: &Net) -> bool {
    net.0.in_channels().is_none()
        && net.1.num_features().is_none()
        && net.3.in_channels().is_none()
        && net.4.num_features().is_none()
        && net.1.running_mean.as_ref().is_some_and(|b| b.is_deferred())
}

#[test]
fn a_state_dict_sizes_lazy_layers_before_the_first_forward() -> Result<()> {
    nn::manual_seed(3);
    let (mut twin, sd) = eager()?;
    let mut net = lazy();
    let report = net.load_state_dict(&sd, &LoadOptions::strict())?;
    assert!(report.is_clean(), "{report}");
    assert_eq!(net.0.in_channels(), Some(3));
    assert_eq!(net.1.num_features(), Some(8));
    assert_eq!(net.3.in_channels(), Some(8));
    assert_eq!(net.4.num_features(), Some(4)); // from its running statistics alone
    let keys = |m: &Net| -> Result<Vec<(String, Vec<usize>)>> {
        let sd = m.state_dict()?;
        Ok(sd
            .iter()
            .map(|(k, t)| (k.to_string(), t.shape().to_vec()))
            .collect())
    };
    assert_eq!(keys(&net)?, keys(&twin)?);
    // the loaded statistics are used, not replaced at the first forward
    net.eval();
    twin.eval();
    let x = Tensor::randn(&[2, 3, 6, 6]);
    let (a, b) = (net.forward(&x)?, twin.forward(&x)?);
    let diff = a.sub(&b)?.abs()?.max()?.item()?;
    assert!(diff < 1e-6, "lazy vs eager: {diff}");
    Ok(())
}

#[test]
fn a_bad_shape_names_the_key_and_loads_nothing() -> Result<()> {
    nn::manual_seed(4);
    let (_, sd) = eager()?;
    let net = lazy();
    let cases = [
        // the batch norm's channels disagree with each other
        ("1.running_var", Tensor::ones(&[5])),
        // the kernel is 3x3, not 5x5
        ("0.weight", Tensor::randn(&[8, 3, 5, 5])),
        // 4 output channels, not 6
        ("3.weight", Tensor::randn(&[6, 4, 3, 3])),
        // the no-affine batch norm's running statistics disagree
        ("4.running_mean", Tensor::zeros(&[3])),
    ];
    for (key, bad) in cases {
        let mut broken = sd.clone();
        broken.insert(key, bad);
        let err = load_error(&net, &broken);
        // named: the bad key itself, or the key it disagrees with (the first one seen)
        assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
        assert!(
            untouched(&net),
            "{key}: a strict load that failed changed the model"
        );
    }
    // non-strict loads what agrees and reports the rest
    let mut broken = sd.clone();
    broken.insert("1.running_var", Tensor::ones(&[5]));
    let report = net.load_state_dict(&broken, &LoadOptions::non_strict())?;
    assert_eq!(report.mismatched.len(), 1, "{report}");
    assert_eq!(net.1.num_features(), Some(8));
    Ok(())
}
