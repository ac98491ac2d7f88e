//! Parameter groups: an optimizer's parameters split into groups, each updated with its
//! own hyper-parameters (PyTorch's `param_groups`), and their place in the state dict.

use crate::{Error, Param, Result, StateDict, Tensor};
use std::collections::HashMap;
use std::ops::Range;

/// Parameters and the hyper-parameters they are updated with: one entry of PyTorch's
/// `param_groups` (`{"params": [...], "weight_decay": 0.0}`), written with Rust's
/// struct update syntax for the overrides.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::{partition_by_name, AdamW, AdamWConfig, Optimizer, ParamGroup};
/// use nn::{Linear, ModuleExt};
/// let net = Linear::new(3, 2);
/// let (no_decay, decay) = partition_by_name(net.named_parameters(), &["*.bias", "bias"])?;
/// let cfg = AdamWConfig { lr: 1e-3, ..Default::default() };
/// let opt = AdamW::with_groups(vec![
///     ParamGroup::new(decay, cfg),
///     ParamGroup::new(no_decay, AdamWConfig { weight_decay: 0.0, ..cfg }),
/// ])?;
/// assert_eq!(opt.num_groups(), 2);
/// # Ok::<(), nn::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ParamGroup<C> {
    /// The parameters (a tied parameter listed twice is kept once).
    pub params: Vec<Param>,
    /// Their hyper-parameters.
    pub config: C,
}

impl<C> ParamGroup<C> {
    /// A group of `params` updated with `config`.
    pub fn new(params: Vec<Param>, config: C) -> Self {
        ParamGroup { params, config }
    }
}

/// The hyper-parameters of one optimizer, as a group holds them.
pub(crate) trait GroupConfig: Clone + std::fmt::Debug + Send + Sync {
    /// PyTorch's class name (`AdamW`), for errors.
    const NAME: &'static str;
    /// Every value in range; an [`Error::InvalidConfig`] naming the first that is not.
    fn validate(&self) -> Result<()>;
    /// The learning rate.
    fn lr(&self) -> f64;
    /// Sets the learning rate (already validated).
    fn set_lr(&mut self, lr: f64);
    /// The momentum a scheduler cycles (`momentum`, or `betas.0`), if the rule has one.
    fn momentum(&self) -> Option<f64> {
        None
    }
    /// Sets that momentum; `false` when the rule has none.
    fn set_momentum(&mut self, _m: f64) -> bool {
        false
    }
    /// The hyper-parameters under PyTorch's `param_groups` keys (bools as 0 / 1).
    fn entries(&self) -> Vec<(&'static str, Vec<f64>)>;
    /// Takes one saved entry; unknown keys (`foreach`, `fused` ...) are ignored.
    fn read_entry(&mut self, key: &str, v: &[f64]) -> std::result::Result<(), String>;
}

/// One group: its hyper-parameters, where its parameters lie in the flat list, and the
/// `initial_lr` a scheduler recorded.
#[derive(Debug, Clone)]
pub(crate) struct Group<C> {
    pub cfg: C,
    pub range: Range<usize>,
    pub initial_lr: Option<f64>,
}

/// The groups of an optimizer over one flat parameter list (indices as PyTorch's:
/// group after group).
#[derive(Debug, Clone)]
pub(crate) struct Groups<C> {
    pub groups: Vec<Group<C>>,
    pub params: Vec<Param>,
}

impl<C: GroupConfig> Groups<C> {
    /// Groups from their specs: configs validated, a parameter listed twice in one
    /// group kept once, a parameter in two groups an error naming it.
    pub fn new(specs: Vec<ParamGroup<C>>) -> Result<Groups<C>> {
        let mut g = Groups {
            groups: Vec::new(),
            params: Vec::new(),
        };
        for s in specs {
            g.add(s)?;
        }
        Ok(g)
    }

    /// PyTorch's `add_param_group`; nothing changes on error.
    pub fn add(&mut self, spec: ParamGroup<C>) -> Result<()> {
        spec.config.validate()?;
        let params = super::dedupe(spec.params);
        for p in &params {
            if self.params.iter().any(|q| q.id() == p.id()) {
                return Err(Error::invalid_config(
                    C::NAME,
                    "param_groups",
                    format!("parameter `{}`", p.name()),
                    "appears in more than one parameter group",
                ));
            }
        }
        let start = self.params.len();
        self.params.extend(params);
        self.groups.push(Group {
            cfg: spec.config,
            range: start..self.params.len(),
            initial_lr: None,
        });
        Ok(())
    }

    /// Group `g`, or an error naming the index.
    pub fn get(&self, g: usize) -> Result<&Group<C>> {
        let n = self.groups.len();
        self.groups.get(g).ok_or_else(|| {
            Error::invalid_config(C::NAME, "param group", g, format!("there are {n} groups"))
        })
    }

    fn get_mut(&mut self, g: usize) -> Result<&mut Group<C>> {
        self.get(g)?;
        Ok(&mut self.groups[g])
    }

    /// Sets group `g`'s lr (finite, non-negative).
    pub fn set_lr(&mut self, g: usize, lr: f64) -> Result<()> {
        super::check_hyper(C::NAME, "lr", lr)?;
        self.get_mut(g)?.cfg.set_lr(lr);
        Ok(())
    }

    /// Sets group `g`'s momentum (finite, non-negative; an error when it has none).
    pub fn set_momentum(&mut self, g: usize, m: f64) -> Result<()> {
        super::check_hyper(C::NAME, "momentum", m)?;
        let group = self.get_mut(g)?;
        let mut cfg = group.cfg.clone();
        if !cfg.set_momentum(m) {
            return Err(Error::invalid_config(
                C::NAME,
                "momentum",
                m,
                "this optimizer has no momentum to set",
            ));
        }
        cfg.validate()?;
        group.cfg = cfg;
        Ok(())
    }

    /// Sets group `g`'s `initial_lr`.
    pub fn set_initial_lr(&mut self, g: usize, lr: Option<f64>) -> Result<()> {
        if let Some(lr) = lr {
            super::check_hyper(C::NAME, "initial_lr", lr)?;
        }
        self.get_mut(g)?.initial_lr = lr;
        Ok(())
    }

    /// Writes `param_groups.{g}.{key}` (f64; `params` int64) into `sd`.
    pub fn write(&self, sd: &mut StateDict) {
        for (g, group) in self.groups.iter().enumerate() {
            for (k, v) in group.cfg.entries() {
                sd.insert(
                    format!("param_groups.{g}.{k}"),
                    f64_tensor(&v, v.len() != 1),
                );
            }
            if let Some(lr) = group.initial_lr {
                sd.insert(
                    format!("param_groups.{g}.initial_lr"),
                    f64_tensor(&[lr], false),
                );
            }
            let ids: Vec<i64> = group.range.clone().map(|i| i as i64).collect();
            let n = ids.len();
            sd.insert(
                format!("param_groups.{g}.params"),
                Tensor::leaf(
                    crate::cpu::storage(crate::HostData::I64(ids)),
                    crate::shape::Dims::from_slice(&[n]),
                ),
            );
        }
    }

    /// Reads the `param_groups.*` entries of `sd` into new group configs, problems into
    /// `problems`; `None` when `sd` has no such entry (the hyper-parameters are kept).
    pub fn read(&self, sd: &StateDict, problems: &mut Vec<String>) -> Option<Vec<Group<C>>> {
        let mut out = self.groups.clone();
        let mut seen = vec![false; out.len()];
        let mut any = false;
        for (key, t) in sd.iter() {
            let Some(rest) = key.strip_prefix("param_groups.") else {
                continue;
            };
            any = true;
            let parsed = rest
                .split_once('.')
                .and_then(|(g, k)| Some((g.parse::<usize>().ok()?, k)));
            let Some((g, k)) = parsed.filter(|(g, _)| *g < out.len()) else {
                problems.push(format!(
                    "`{key}`: the optimizer has {} parameter groups",
                    out.len()
                ));
                continue;
            };
            seen[g] = true;
            let v = match read_f64s(t) {
                Some(v) => v,
                None => {
                    problems.push(format!("`{key}`: not a number or a list of numbers"));
                    continue;
                }
            };
            let group = &mut out[g];
            let r = match k {
                "params" => {
                    let want: Vec<f64> = group.range.clone().map(|i| i as f64).collect();
                    if v.len() != want.len() {
                        Err(format!(
                            "group {g} holds {} parameters, the saved group {}",
                            want.len(),
                            v.len()
                        ))
                    } else {
                        Ok(())
                    }
                }
                "initial_lr" => match v.as_slice() {
                    [lr] if lr.is_finite() && *lr >= 0.0 => {
                        group.initial_lr = Some(*lr);
                        Ok(())
                    }
                    _ => Err(format!("{v:?} is not a learning rate")),
                },
                _ => group.cfg.read_entry(k, &v),
            };
            if let Err(e) = r {
                problems.push(format!("`{key}`: {e}"));
            }
        }
        if !any {
            return None;
        }
        for (g, s) in seen.iter().enumerate() {
            if !s {
                problems.push(format!("no entry for parameter group {g}"));
            }
        }
        for (g, group) in out.iter().enumerate() {
            if let Err(e) = group.cfg.validate() {
                problems.push(format!("parameter group {g}: {e}"));
            }
        }
        Some(out)
    }
}

/// An f64 tensor: a scalar, or a list when `list`.
pub(crate) fn f64_tensor(v: &[f64], list: bool) -> Tensor {
    let dims = if list {
        crate::shape::Dims::from_slice(&[v.len()])
    } else {
        crate::shape::Dims::new()
    };
    Tensor::leaf(crate::cpu::storage(crate::HostData::F64(v.to_vec())), dims)
}

/// The values of a numeric tensor of at most one dimension, as f64.
pub(crate) fn read_f64s(t: &Tensor) -> Option<Vec<f64>> {
    if t.shape().len() > 1 {
        return None;
    }
    match t.to_host().ok()? {
        crate::HostData::F64(v) => Some(v),
        crate::HostData::F32(v) => Some(v.into_iter().map(f64::from).collect()),
        crate::HostData::I64(v) => Some(v.into_iter().map(|x| x as f64).collect()),
        _ => None,
    }
}

/// A saved boolean (0 / 1).
pub(crate) fn read_bool(v: &[f64]) -> std::result::Result<bool, String> {
    match v {
        [x] if *x == 0.0 => Ok(false),
        [x] if *x == 1.0 => Ok(true),
        _ => Err(format!("{v:?} is not a boolean")),
    }
}

/// A saved scalar.
pub(crate) fn read_scalar(v: &[f64]) -> std::result::Result<f64, String> {
    match v {
        [x] => Ok(*x),
        _ => Err(format!("{v:?} is not a number")),
    }
}

/// The per-parameter entries of a state dict, `state.{i}.{name}`, by parameter index;
/// keys outside `state.` and `param_groups.` are problems.
pub(crate) fn split_state<'s>(
    sd: &'s StateDict,
    n: usize,
    problems: &mut Vec<String>,
) -> Vec<HashMap<&'s str, (&'s str, &'s Tensor)>> {
    let mut out = vec![HashMap::new(); n];
    for (key, t) in sd.iter() {
        if key.starts_with("param_groups.") {
            continue;
        }
        let parsed = key
            .strip_prefix("state.")
            .and_then(|r| r.split_once('.'))
            .and_then(|(i, name)| Some((i.parse::<usize>().ok()?, name)));
        match parsed {
            Some((i, name)) if i < n => {
                out[i].insert(name, (key, t));
            }
            Some((i, _)) => problems.push(format!(
                "`{key}`: parameter index {i} but the optimizer has {n} parameters"
            )),
            None => problems.push(format!("unexpected key `{key}`")),
        }
    }
    out
}

/// Splits named parameters into those whose name matches one of `patterns` and the
/// rest, each in the given order: the usual "no weight decay for biases and norms"
/// split. A pattern is a name with `*` standing for any run of characters (`*.bias`,
/// `*norm*`, `pos`); an empty pattern is an error.
///
/// ```
/// # extern crate nn_core as nn;
/// use nn::optim::partition_by_name;
/// use nn::{Linear, ModuleExt};
/// let net = Linear::new(3, 2);
/// let (bias, rest) = partition_by_name(net.named_parameters(), &["bias"])?;
/// assert_eq!((bias.len(), rest.len()), (1, 1));
/// # Ok::<(), nn::Error>(())
/// ```
pub fn partition_by_name(
    named: Vec<(String, Param)>,
    patterns: &[&str],
) -> Result<(Vec<Param>, Vec<Param>)> {
    if let Some(p) = patterns.iter().find(|p| p.is_empty()) {
        return Err(Error::invalid_config(
            "partition_by_name",
            "pattern",
            format!("`{p}`"),
            "must not be empty",
        ));
    }
    let (mut hit, mut rest) = (Vec::new(), Vec::new());
    for (name, p) in named {
        if patterns.iter().any(|pat| glob(pat, &name)) {
            hit.push(p);
        } else {
            rest.push(p);
        }
    }
    Ok((hit, rest))
}

/// Whether `name` matches `pat`, where `*` matches any run of characters.
fn glob(pat: &str, name: &str) -> bool {
    let parts: Vec<&str> = pat.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pat == name;
    };
    if parts.len() == 1 {
        return pat == name;
    }
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    for m in middle {
        match rest.find(m) {
            Some(i) => rest = &rest[i + m.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The pieces every optimizer over [`Groups`] and a per-parameter state vector shares:
/// construction, `add_param_group`, the per-gradient step loop and the state-dict
/// plumbing. `S` is one parameter's state.
pub(crate) trait Grouped<C: GroupConfig + Copy, S: Clone + Default> {
    /// The groups.
    fn groups(&self) -> &Groups<C>;
    /// The groups and the per-parameter states, mutably.
    fn parts_mut(&mut self) -> (&mut Groups<C>, &mut Vec<S>);

    /// PyTorch's `add_param_group`: the group appended, the states extended with
    /// defaults; nothing changes on error.
    fn add_group(&mut self, spec: ParamGroup<C>) -> Result<()> {
        let (groups, state) = self.parts_mut();
        groups.add(spec)?;
        state.resize(groups.params.len(), S::default());
        Ok(())
    }

    /// `f(self, cfg, i, grad)` for every parameter `i` with a gradient, group after
    /// group, without allocating.
    fn for_each_grad(
        &mut self,
        mut f: impl FnMut(&mut Self, &C, usize, Tensor) -> Result<()>,
    ) -> Result<()>
    where
        Self: Sized,
    {
        for gi in 0..self.groups().groups.len() {
            let (c, range) = {
                let g = &self.groups().groups[gi];
                (g.cfg, g.range.clone())
            };
            for i in range {
                let Some(g) = self.groups().params[i].grad() else {
                    continue;
                };
                f(self, &c, i, g)?;
            }
        }
        Ok(())
    }

    /// The state dict: `save(i, state, sd)` for every parameter, then the groups.
    fn save_states(
        &self,
        states: &[S],
        mut save: impl FnMut(usize, &S, &mut StateDict) -> Result<()>,
    ) -> Result<StateDict> {
        let mut sd = StateDict::new();
        for (i, st) in states.iter().enumerate() {
            save(i, st, &mut sd)?;
        }
        self.groups().write(&mut sd);
        Ok(sd)
    }

    /// Loads a state dict: `read(i, param, entries, state, problems)` fills each
    /// parameter's fresh state from its `state.{i}.*` entries; nothing changes unless
    /// every entry reads (the error, from `op`, lists every problem).
    fn load_states(
        &mut self,
        op: &'static str,
        sd: &StateDict,
        mut read: impl FnMut(usize, &Param, &HashMap<&str, (&str, &Tensor)>, &mut S, &mut Vec<String>),
    ) -> Result<()> {
        let mut problems = Vec::new();
        let (groups, state) = self.parts_mut();
        let read_groups = groups.read(sd, &mut problems);
        let per = split_state(sd, state.len(), &mut problems);
        let mut out = vec![S::default(); state.len()];
        for (i, entries) in per.iter().enumerate() {
            read(i, &groups.params[i], entries, &mut out[i], &mut problems);
        }
        super::problems_to_result(op, problems)?;
        if let Some(g) = read_groups {
            groups.groups = g;
        }
        *state = out;
        Ok(())
    }
}

impl<C: GroupConfig> Groups<C> {
    /// Groups from their specs (as [`Groups::new`]) and a default state for each
    /// parameter.
    pub fn with_states<S: Clone + Default>(
        specs: Vec<ParamGroup<C>>,
    ) -> Result<(Groups<C>, Vec<S>)> {
        let groups = Groups::new(specs)?;
        let state = vec![S::default(); groups.params.len()];
        Ok((groups, state))
    }
}

/// `impl Grouped<$cfg, $state> for $ty` over its fields `groups` and `$field`.
macro_rules! grouped {
    ($ty:ty, $cfg:ty, $state:ty, $field:ident) => {
        impl super::group::Grouped<$cfg, $state> for $ty {
            fn groups(&self) -> &Groups<$cfg> {
                &self.groups
            }
            fn parts_mut(&mut self) -> (&mut Groups<$cfg>, &mut Vec<$state>) {
                (&mut self.groups, &mut self.$field)
            }
        }
    };
}
pub(crate) use grouped;

/// A [`GroupConfig`]'s `lr` / `set_lr` over its `lr` field and, given a field path
/// (`momentum`, `betas.0`), its `momentum` / `set_momentum` over that field.
macro_rules! lr_momentum {
    () => {
        fn lr(&self) -> f64 {
            self.lr
        }
        fn set_lr(&mut self, lr: f64) {
            self.lr = lr;
        }
    };
    ($($m:tt).+) => {
        super::group::lr_momentum!();
        fn momentum(&self) -> Option<f64> {
            Some(self.$($m).+)
        }
        fn set_momentum(&mut self, m: f64) -> bool {
            self.$($m).+ = m;
            true
        }
    };
}
pub(crate) use lr_momentum;

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn glob_matches_like_fnmatch() {
        assert!(glob("*.bias", "head.bias"));
        assert!(!glob("*.bias", "bias"));
        assert!(glob("*norm*", "blocks.0.norm1.weight"));
        assert!(glob("pos", "pos"));
        assert!(!glob("pos", "pos2"));
        assert!(glob("a*b*c", "aXbYc"));
        assert!(!glob("a*b*c", "acb"));
        assert!(glob("*", "anything"));
    }
}
