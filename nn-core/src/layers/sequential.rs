//! `Sequential<T>`: a statically typed chain, built by `sequential![...]`.
//!
//! A `Linear` immediately followed by a `ReLU` runs as one fused op ([`ChainRunner`],
//! through the fusion hooks of [`Forward`]).
//!
//! `T` is a tuple of layers; `net.2` reaches layer 2 with its concrete type (through
//! `Deref`), so `net.2.weight` compiles. forward(x) = layer_n(...layer_1(layer_0(x))).

use crate::module::Buffer;
use crate::module::{Forward, Module, Param, Visitor, VisitorMut};
use crate::{Result, Tensor};
use std::ops::{Deref, DerefMut};

/// A chain of layers of statically known types (usually written `sequential![...]`).
#[derive(Debug, Clone)]
pub struct Sequential<T> {
    layers: T,
    names: Option<&'static [&'static str]>,
}

impl<T: Module> Sequential<T> {
    /// Children named by position (`0`, `1`, ...). Their parameters learn their paths
    /// (`0.weight`), so errors name the layer from the start.
    pub fn new(layers: T) -> Self {
        Self::placed(Sequential {
            layers,
            names: None,
        })
    }
    /// Children with explicit names, in order (one per tuple element).
    pub fn named(layers: T, names: &'static [&'static str]) -> Self {
        Self::placed(Sequential {
            layers,
            names: Some(names),
        })
    }
    fn placed(s: Self) -> Self {
        crate::module::walk(&s, |_| {});
        s
    }
}

impl<T> Sequential<T> {
    /// The layer tuple.
    pub fn layers(&self) -> &T {
        &self.layers
    }
    /// Consumes into the layer tuple.
    pub fn into_inner(self) -> T {
        self.layers
    }
}

impl<T> Deref for Sequential<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.layers
    }
}

impl<T> DerefMut for Sequential<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.layers
    }
}

fn rename(names: &'static [&'static str], name: &str) -> String {
    name.parse::<usize>()
        .ok()
        .and_then(|i| names.get(i))
        .map(|s| s.to_string())
        .unwrap_or_else(|| name.to_string())
}

struct Rename<'v, 'a> {
    names: &'static [&'static str],
    inner: &'v mut dyn Visitor<'a>,
}

impl<'a> Visitor<'a> for Rename<'_, 'a> {
    fn param(&mut self, name: &str, p: &'a Param) {
        self.inner.param(&rename(self.names, name), p)
    }
    fn buffer(&mut self, name: &str, b: &'a Buffer) {
        self.inner.buffer(&rename(self.names, name), b)
    }
    fn constant(&mut self, name: &str, t: &'a Tensor) {
        self.inner.constant(&rename(self.names, name), t)
    }
    fn module(&mut self, name: &str, m: &'a dyn Module) {
        self.inner.module(&rename(self.names, name), m)
    }
}

struct RenameMut<'v> {
    names: &'static [&'static str],
    inner: &'v mut dyn VisitorMut,
}

impl VisitorMut for RenameMut<'_> {
    fn param(&mut self, name: &str, p: &mut Param) {
        self.inner.param(&rename(self.names, name), p)
    }
    fn buffer(&mut self, name: &str, b: &mut Buffer) {
        self.inner.buffer(&rename(self.names, name), b)
    }
    fn constant(&mut self, name: &str, t: &mut Tensor) {
        self.inner.constant(&rename(self.names, name), t)
    }
    fn module(&mut self, name: &str, m: &mut dyn Module) {
        self.inner.module(&rename(self.names, name), m)
    }
}

impl<T: Module> Module for Sequential<T> {
    fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>) {
        match self.names {
            None => self.layers.visit(v),
            Some(names) => self.layers.visit(&mut Rename { names, inner: v }),
        }
    }
    fn visit_mut(&mut self, v: &mut dyn VisitorMut) {
        match self.names {
            None => self.layers.visit_mut(v),
            Some(names) => self.layers.visit_mut(&mut RenameMut { names, inner: v }),
        }
    }
    fn module_name(&self) -> String {
        "Sequential".into()
    }
}

impl<T: Chain> Forward for Sequential<T> {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.layers.chain_named(x, self.names)
    }
}

/// Gives a layer error that does not say where it happened (a layer without
/// parameters, which has nothing to learn its path with) the child's name in its
/// container: `Flatten(..)` becomes `1 (Flatten(..))`. Errors that name a path already
/// (`0 (Linear(..))`, learned by the layer's parameters) pass unchanged.
pub(crate) fn locate(e: crate::Error, name: &str) -> crate::Error {
    match e {
        crate::Error::InputMismatch {
            layer,
            expected,
            actual,
        } => {
            let located = match (layer.find(" ("), layer.find('(')) {
                (Some(p), Some(q)) => p < q,
                _ => false,
            };
            crate::Error::InputMismatch {
                layer: if located {
                    layer
                } else {
                    format!("{name} ({layer})")
                },
                expected,
                actual,
            }
        }
        crate::Error::InLayer { layer, source } => {
            let located = match (layer.find(" ("), layer.find('(')) {
                (Some(p), Some(q)) => p < q,
                _ => false,
            };
            crate::Error::InLayer {
                layer: if located {
                    layer
                } else {
                    format!("{name} ({layer})")
                },
                source,
            }
        }
        other => other,
    }
}

impl<T: Module> std::fmt::Display for Sequential<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::module::repr(self))
    }
}

/// A tuple of blocks run one after the other.
pub trait Chain {
    /// Runs every element in order.
    fn chain(&self, x: &Tensor) -> Result<Tensor> {
        self.chain_named(x, None)
    }
    /// Runs every element in order; a layer error is located by the element's name
    /// (`names[i]`, or its position).
    fn chain_named(&self, x: &Tensor, names: Option<&[&str]>) -> Result<Tensor>;
}

/// Runs a chain's layers in order, fusing a layer with the activation after it where the
/// layer offers a fused form ([`Forward::fused_activation`], [`Forward::forward_fused`]):
/// a [`crate::layers::Linear`] followed by a [`crate::layers::ReLU`] runs as one
/// [`crate::layers::Linear::forward_relu`] (one recorded op instead of two, the same
/// values and gradients). A layer error is located by the layer's name; the fused pair's
/// by the first layer's (the activation runs inside its op).
pub(crate) struct ChainRunner<'a, L: ?Sized> {
    y: Tensor,
    /// The last layer fed, not yet run: the next one decides whether the two run fused.
    pending: Option<(&'a L, &'a str)>,
}

impl<'a, L: Forward + ?Sized> ChainRunner<'a, L> {
    /// A chain run on input `x`.
    pub(crate) fn new(x: &Tensor) -> Self {
        ChainRunner {
            y: x.clone(),
            pending: None,
        }
    }

    /// Feeds the next layer, named `name`.
    pub(crate) fn push(&mut self, name: &'a str, layer: &'a L) -> Result<()> {
        if let Some((prev, pname)) = self.pending.take() {
            let fused = layer
                .fused_activation()
                .and_then(|act| prev.forward_fused(&self.y, act));
            if let Some(y) = fused {
                self.y = y.map_err(|e| locate(e, pname))?;
                return Ok(());
            }
            self.y = prev.forward(&self.y).map_err(|e| locate(e, pname))?;
        }
        self.pending = Some((layer, name));
        Ok(())
    }

    /// The chain's output.
    pub(crate) fn finish(self) -> Result<Tensor> {
        match self.pending {
            Some((layer, name)) => layer.forward(&self.y).map_err(|e| locate(e, name)),
            None => Ok(self.y),
        }
    }
}

// Up to 16 elements, like the tuple `Module` impls (`sequential!` rejects more).
macro_rules! chain_tuple {
    ($($T:ident $i:tt),+) => {
        impl<$($T: Forward + 'static),+> Chain for ($($T,)+) {
            fn chain_named(&self, x: &Tensor, names: Option<&[&str]>) -> Result<Tensor> {
                let mut run = ChainRunner::<dyn Forward>::new(x);
                $({
                    let name = names.and_then(|n| n.get($i)).copied();
                    run.push(name.unwrap_or(stringify!($i)), &self.$i)?;
                })+
                run.finish()
            }
        }
    };
}

chain_tuple!(A 0);
chain_tuple!(A 0, B 1);
chain_tuple!(A 0, B 1, C 2);
chain_tuple!(A 0, B 1, C 2, D 3);
chain_tuple!(A 0, B 1, C 2, D 3, E 4);
chain_tuple!(A 0, B 1, C 2, D 3, E 4, F 5);
chain_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
chain_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
chain_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8);
chain_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9);
chain_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10);
chain_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11);
chain_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12);
chain_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13);
chain_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13, O 14);
chain_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13, O 14, P 15);

#[cfg(test)]
mod tests {
    use crate::layers::{DynSequential, Linear, ReLU, Sequential, Tanh};
    use crate::module::{Forward, FusedActivation, ModuleExt};
    use crate::{Result, Tensor};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The output and every parameter's gradient, for the output gradient `r`.
    fn run(
        net: &impl ModuleExt,
        f: impl Fn() -> Result<Tensor>,
        r: &Tensor,
    ) -> Result<Vec<Vec<f32>>> {
        net.zero_grad();
        let y = f()?;
        y.mul(r)?.sum()?.backward()?;
        let mut out = vec![y.to_vec::<f32>()?];
        for p in net.parameters() {
            out.push(
                p.grad()
                    .map(|g| g.to_vec::<f32>())
                    .transpose()?
                    .unwrap_or_default(),
            );
        }
        Ok(out)
    }

    fn close(a: &[Vec<f32>], b: &[Vec<f32>]) {
        assert_eq!(a.len(), b.len());
        for (a, b) in a.iter().zip(b) {
            assert_eq!(a.len(), b.len());
            assert!(
                a.iter().zip(b).all(|(a, b)| (a - b).abs() < 1e-5),
                "{a:?} vs {b:?}"
            );
        }
    }

    #[test]
    fn fused_linear_relu_pairs_match_the_layers_run_one_by_one() -> Result<()> {
        // Linear+ReLU pairs fuse; a ReLU first, a Linear before Tanh and a trailing
        // Linear do not
        let net = Sequential::new((
            ReLU,
            Linear::new(5, 6),
            ReLU,
            Linear::new(6, 4),
            Tanh,
            Linear::new(4, 3),
        ));
        let mut dyn_net = DynSequential::new();
        dyn_net.push(ReLU);
        dyn_net.push(net.1.clone());
        dyn_net.push(ReLU);
        dyn_net.push(net.3.clone());
        dyn_net.push(Tanh);
        dyn_net.push(net.5.clone());
        let x = Tensor::randn(&[3, 5]);
        let r = Tensor::randn(&[3, 3]);
        let fused = run(&net, || net.forward(&x), &r)?;
        let fused_dyn = run(&dyn_net, || dyn_net.forward(&x), &r)?;
        let by_hand = run(
            &net,
            || {
                let h = ReLU.forward(&x)?;
                let h = ReLU.forward(&net.1.forward(&h)?)?;
                let h = Tanh.forward(&net.3.forward(&h)?)?;
                net.5.forward(&h)
            },
            &r,
        )?;
        close(&fused, &by_hand);
        close(&fused_dyn, &by_hand);
        Ok(())
    }

    /// A layer of one's own with a fused form: the chains fuse through the hook, not
    /// by knowing `Linear`.
    #[derive(Default)]
    struct Doubler(AtomicUsize);
    crate::__leaf_module!(Doubler, "Doubler");
    impl Forward for Doubler {
        fn forward(&self, x: &Tensor) -> Result<Tensor> {
            x.mul_scalar(2.0)
        }
        fn forward_fused(&self, x: &Tensor, act: FusedActivation) -> Option<Result<Tensor>> {
            self.0.fetch_add(1, Ordering::Relaxed);
            match act {
                FusedActivation::Relu => Some(x.mul_scalar(2.0).and_then(|y| y.relu())),
            }
        }
    }

    #[test]
    fn chains_fuse_through_the_hook() -> Result<()> {
        let x = Tensor::from_vec(vec![-1.0f32, 3.0], &[1, 2])?;
        let net = Sequential::new((Doubler::default(), ReLU, Doubler::default(), Tanh));
        assert_eq!(net.forward(&x)?.to_vec::<f32>()?, [0.0, 12f32.tanh()]);
        // fused before the ReLU, not before the Tanh
        assert_eq!(net.0 .0.load(Ordering::Relaxed), 1);
        assert_eq!(net.2 .0.load(Ordering::Relaxed), 0);
        let mut dyn_net = DynSequential::new();
        dyn_net.push(Doubler::default()).push(ReLU).push(ReLU);
        assert_eq!(dyn_net.forward(&x)?.to_vec::<f32>()?, [0.0, 6.0]);
        assert_eq!(dyn_net.layer::<Doubler>(0)?.0.load(Ordering::Relaxed), 1);
        Ok(())
    }
}
