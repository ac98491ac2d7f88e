//! The `data.pkl` of a `torch.save` archive of a state dict: a pickle protocol 2 writer of
//! exactly what a state dict needs, as `torch.save(state_dict)` writes it.

use crate::module::StateDict;
use crate::DType;
use std::collections::HashMap;

fn storage_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "FloatStorage",
        DType::I64 => "LongStorage",
        DType::F16 => "HalfStorage",
        DType::BF16 => "BFloat16Storage",
        DType::F64 => "DoubleStorage",
        DType::I32 => "IntStorage",
        DType::U8 => "ByteStorage",
        DType::Bool => "BoolStorage",
    }
}

/// A pickle protocol 2 writer of exactly what a state dict needs.
struct PickleWriter {
    out: Vec<u8>,
    memo: HashMap<String, u32>,
    next: u32,
}

impl PickleWriter {
    fn op(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }
    /// Stores the top of the stack in the next memo slot; returns the slot.
    fn memoize(&mut self) -> u32 {
        let n = self.next;
        self.next += 1;
        if n < 256 {
            self.op(&[b'q', n as u8]);
        } else {
            self.op(b"r");
            self.op(&n.to_le_bytes());
        }
        n
    }
    fn get(&mut self, n: u32) {
        if n < 256 {
            self.op(&[b'h', n as u8]);
        } else {
            self.op(b"j");
            self.op(&n.to_le_bytes());
        }
    }
    /// A string or global, memoized so repeats cost two bytes (as CPython's pickler).
    fn shared(&mut self, key: String, write: impl FnOnce(&mut PickleWriter)) {
        if let Some(&n) = self.memo.get(&key) {
            return self.get(n);
        }
        write(self);
        let n = self.memoize();
        self.memo.insert(key, n);
    }
    fn str(&mut self, s: &str) {
        self.shared(format!("s:{s}"), |p| {
            p.op(b"X");
            p.op(&(s.len() as u32).to_le_bytes());
            p.op(s.as_bytes());
        })
    }
    fn global(&mut self, module: &str, name: &str) {
        self.shared(format!("g:{module}.{name}"), |p| {
            p.op(b"c");
            p.op(module.as_bytes());
            p.op(b"\n");
            p.op(name.as_bytes());
            p.op(b"\n");
        })
    }
    fn int(&mut self, v: u64) {
        if v < 256 {
            self.op(&[b'K', v as u8]);
        } else if v < 65536 {
            self.op(b"M");
            self.op(&(v as u16).to_le_bytes());
        } else if v < (1 << 31) {
            self.op(b"J");
            self.op(&(v as u32).to_le_bytes());
        } else {
            self.op(&[0x8a, 8]);
            self.op(&v.to_le_bytes());
        }
    }
    fn int_tuple(&mut self, v: &[usize]) {
        match v.len() {
            0 => self.op(b")"),
            1..=3 => {
                for &x in v {
                    self.int(x as u64);
                }
                self.op(&[0x84 + v.len() as u8]);
            }
            _ => {
                self.op(b"(");
                for &x in v {
                    self.int(x as u64);
                }
                self.op(b"t");
            }
        }
    }
}

/// For each tensor of `sd`, the index of the storage it is written to, and the tensor
/// holding each storage: tensors sharing memory (tied parameters) share one storage,
/// as `torch.save` writes them.
pub(crate) fn storage_ids(sd: &StateDict) -> (Vec<usize>, Vec<usize>) {
    let ts: Vec<&crate::Tensor> = sd.iter().map(|(_, t)| t).collect();
    let mut ids = Vec::with_capacity(ts.len());
    let mut owners: Vec<usize> = Vec::new();
    for (i, t) in ts.iter().enumerate() {
        let same = owners
            .iter()
            .position(|&o| ts[o].same_storage(t) && ts[o].shape() == t.shape());
        ids.push(same.unwrap_or_else(|| {
            owners.push(i);
            owners.len() - 1
        }));
    }
    (ids, owners)
}

/// The `data.pkl` of a state dict: an `OrderedDict` of `_rebuild_tensor_v2` calls on
/// storages `0`, `1`, ... (one per distinct storage), as `torch.save(state_dict)`
/// writes it. An error names a tensor whose row-major strides overflow (an empty tensor
/// with huge dims).
pub(crate) fn state_dict_pickle(
    sd: &StateDict,
    ids: &[usize],
) -> std::result::Result<Vec<u8>, String> {
    let mut p = PickleWriter {
        out: Vec::new(),
        memo: HashMap::new(),
        next: 0,
    };
    p.op(&[0x80, 2]);
    p.global("collections", "OrderedDict");
    p.op(b")R");
    p.memoize();
    p.op(b"(");
    for (i, (k, t)) in sd.iter().enumerate() {
        p.str(k);
        p.global("torch._utils", "_rebuild_tensor_v2");
        p.op(b"((");
        p.str("storage");
        p.global("torch", storage_name(t.dtype()));
        p.str(&ids[i].to_string());
        p.str("cpu");
        p.int(t.numel() as u64);
        p.op(b"tQ");
        p.int(0);
        p.int_tuple(t.shape());
        let mut strides = vec![1usize; t.shape().len()];
        for d in (0..t.shape().len().saturating_sub(1)).rev() {
            strides[d] = strides[d + 1]
                .checked_mul(t.shape()[d + 1])
                .ok_or_else(|| {
                    format!(
                        "tensor `{k}` of shape {:?}: its strides overflow",
                        t.shape()
                    )
                })?;
        }
        p.int_tuple(&strides);
        p.op(&[0x89]); // requires_grad False
        p.global("collections", "OrderedDict");
        p.op(b")R");
        p.op(b"tR");
        // SETITEMS in batches of 1000, as CPython does
        if i % 1000 == 999 {
            p.op(b"u(");
        }
    }
    p.op(b"u");
    p.op(b".");
    Ok(p.out)
}
