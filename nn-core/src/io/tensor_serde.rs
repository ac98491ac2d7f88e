//! serde for [`Tensor`] and [`StateDict`]: a tensor is `{dtype, shape, data}` with its
//! elements as one little-endian byte string, never element by element.
//!
//! Inside [`to_skeleton`] and [`from_skeleton`] (the native format's version 2) the
//! data is instead `(offset, length)` in a separate data section.
//!
//! Deserialization checks the byte length against `dtype` and `shape` (with overflow
//! checks) before it allocates, so a hostile input cannot ask for more memory than it
//! carries.

use super::bytes::{byte_len, dtype_from_str, le_bytes};
use crate::module::StateDict;
use crate::{DType, HostData, Tensor};
use serde::de::DeserializeOwned;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

thread_local! {
    static LAST: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// A deserialization error whose message survives formats that drop custom messages
/// (postcard reports them all as "Serde Deserialization Error"): see [`take_last_error`].
fn fail<E: de::Error>(msg: impl fmt::Display) -> E {
    let msg = msg.to_string();
    let e = E::custom(&msg);
    LAST.with(|l| *l.borrow_mut() = Some(msg));
    e
}

/// The message of the last error raised by a tensor deserializer on this thread.
pub(crate) fn take_last_error() -> Option<String> {
    LAST.with(|l| l.borrow_mut().take())
}

struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl Serialize for Tensor {
    /// `{dtype: "float32" | "int64", shape: [..], data: bytes}`; the data of a GPU tensor
    /// is copied to the host first. Autograd state is not saved.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Tensor", 3)?;
        st.serialize_field("dtype", self.dtype().as_str())?;
        st.serialize_field("shape", self.shape())?;
        if writing() {
            // a native version-2 save: the bytes go to the data section, the skeleton
            // holds where
            let at = place(self).map_err(serde::ser::Error::custom)?;
            st.serialize_field("data", &at)?;
        } else {
            let bytes = le_bytes(self).map_err(serde::ser::Error::custom)?;
            st.serialize_field("data", &Bytes(&bytes))?;
        }
        st.end()
    }
}

struct DTypeSeed;

impl<'de> DeserializeSeed<'de> for DTypeSeed {
    type Value = DType;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<DType, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for DTypeSeed {
    type Value = DType;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a dtype name (`float32` or `int64`)")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<DType, E> {
        dtype_from_str(v).ok_or_else(|| {
            fail(format_args!(
                "unknown dtype `{v}` (expected `float32` or `int64`)"
            ))
        })
    }
}

/// The data field: exactly `len` bytes, converted to storage of `dtype` as they arrive.
struct DataSeed {
    dtype: DType,
    len: usize,
}

impl<'de> DeserializeSeed<'de> for DataSeed {
    type Value = HostData;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<HostData, D::Error> {
        if reading() {
            return d.deserialize_tuple(2, DataRef(self));
        }
        d.deserialize_bytes(self)
    }
}

/// The data field of a native version-2 skeleton: `(offset, length)` in the data section.
struct DataRef(DataSeed);

impl<'de> Visitor<'de> for DataRef {
    type Value = HostData;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the offset and length of {} bytes of data", self.0.len)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<HostData, A::Error> {
        let off: u64 = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let len: u64 = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
        if len != self.0.len as u64 {
            return Err(fail(format_args!(
                "tensor data has {len} bytes, its dtype and shape need {}",
                self.0.len
            )));
        }
        with_data(off, len, |b| self.0.take(b)).map_err(|m| fail(format_args!("tensor {m}")))?
    }
}

impl DataSeed {
    fn take<E: de::Error>(&self, v: &[u8]) -> Result<HostData, E> {
        if v.len() != self.len {
            return Err(fail(format_args!(
                "tensor data has {} bytes, its dtype and shape need {}",
                v.len(),
                self.len
            )));
        }
        HostData::from_le_bytes(self.dtype, v).map_err(fail)
    }
}

impl<'de> Visitor<'de> for DataSeed {
    type Value = HostData;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes of {} data", self.len, self.dtype)
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<HostData, E> {
        self.take(v)
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<HostData, E> {
        self.take(&v)
    }
    // self-describing formats (JSON) write bytes as a sequence of numbers
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<HostData, A::Error> {
        // never trust a size hint: grow as elements actually arrive
        let mut v = Vec::with_capacity(self.len.min(1 << 16));
        while let Some(b) = seq.next_element::<u8>()? {
            if v.len() == self.len {
                return Err(fail(format_args!(
                    "tensor data longer than {} bytes",
                    self.len
                )));
            }
            v.push(b);
        }
        self.take(&v)
    }
}

fn build<E: de::Error>(shape: &[usize], data: HostData) -> Result<Tensor, E> {
    Tensor::from_host(data, shape).map_err(fail)
}

fn data_seed<E: de::Error>(dtype: DType, shape: &[usize]) -> Result<DataSeed, E> {
    let len = byte_len(dtype, shape).ok_or_else(|| {
        fail(format_args!(
            "tensor of shape {shape:?} and dtype {dtype} is too large"
        ))
    })?;
    Ok(DataSeed { dtype, len })
}

struct TensorVisitor;

impl<'de> Visitor<'de> for TensorVisitor {
    type Value = Tensor;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a tensor {dtype, shape, data}")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tensor, A::Error> {
        let dtype = seq
            .next_element_seed(DTypeSeed)?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let shape: Vec<usize> = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
        let seed = data_seed(dtype, &shape)?;
        let data = seq
            .next_element_seed(seed)?
            .ok_or_else(|| de::Error::invalid_length(2, &self))?;
        build(&shape, data)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tensor, A::Error> {
        let mut dtype = None;
        let mut shape: Option<Vec<usize>> = None;
        let mut data = None;
        while let Some(k) = map.next_key::<Cow<'de, str>>()? {
            match k.as_ref() {
                "dtype" => dtype = Some(map.next_value_seed(DTypeSeed)?),
                "shape" => shape = Some(map.next_value()?),
                "data" => {
                    let (Some(dt), Some(sh)) = (dtype, shape.as_deref()) else {
                        return Err(fail("tensor `data` must follow `dtype` and `shape`"));
                    };
                    data = Some(map.next_value_seed(data_seed(dt, sh)?)?);
                }
                other => return Err(de::Error::unknown_field(other, FIELDS)),
            }
        }
        match (shape, data) {
            (Some(shape), Some(data)) => build(&shape, data),
            _ => Err(de::Error::missing_field("data")),
        }
    }
}

const FIELDS: &[&str] = &["dtype", "shape", "data"];

impl<'de> Deserialize<'de> for Tensor {
    /// Reads what [`Tensor`]'s `Serialize` wrote, onto the CPU.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Tensor, D::Error> {
        d.deserialize_struct("Tensor", FIELDS, TensorVisitor)
    }
}

impl Serialize for StateDict {
    /// A map from name to tensor, in the state dict's order.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.len()))?;
        for (k, t) in self.iter() {
            m.serialize_entry(k, t)?;
        }
        m.end()
    }
}

struct StateDictVisitor;

impl<'de> Visitor<'de> for StateDictVisitor {
    type Value = StateDict;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map from names to tensors")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StateDict, A::Error> {
        let mut seen = HashSet::new();
        let mut entries = Vec::new();
        while let Some((k, t)) = map.next_entry::<String, Tensor>()? {
            if !seen.insert(k.clone()) {
                return Err(fail(format_args!("duplicate key `{k}`")));
            }
            entries.push((k, t));
        }
        Ok(StateDict::from_unique_entries(entries))
    }
}

impl<'de> Deserialize<'de> for StateDict {
    /// Reads a map from names to tensors (also what a `BTreeMap<String, Tensor>` or
    /// `HashMap<String, Tensor>` wrote); a duplicate key is an error.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<StateDict, D::Error> {
        d.deserialize_map(StateDictVisitor)
    }
}

// ---------------------------------------------------------------------------------------
// Tensors as references into a data section: the thread-local context Tensor's serde
// impl consults.

/// Checks a reference `(offset, length)` against a data section of `data_len` bytes whose
/// previous tensor ends at `next`; returns the reference's end or what is wrong.
pub(crate) type RefCheck = fn(u64, u64, u64, u64) -> std::result::Result<u64, String>;

struct WriteCtx {
    align: u64,
    cursor: u64,
    tensors: Vec<(Tensor, u64)>,
}

#[derive(Clone, Copy)]
struct ReadCtx {
    data: *const u8,
    len: usize,
    /// End of the last tensor read: tensors must come in file order, without overlap.
    next: u64,
    check: RefCheck,
}

enum Mode {
    Off,
    Write(WriteCtx),
    Read(ReadCtx),
}

thread_local! {
    static MODE: RefCell<Mode> = const { RefCell::new(Mode::Off) };
}

/// Restores the previous mode when an encode or decode ends, however it ends.
struct ModeGuard(Option<Mode>);

impl ModeGuard {
    fn set(m: Mode) -> ModeGuard {
        ModeGuard(Some(MODE.with(|c| c.replace(m))))
    }
    fn take_write(&mut self) -> Option<WriteCtx> {
        let prev = self.0.take()?;
        match MODE.with(|c| c.replace(prev)) {
            Mode::Write(w) => Some(w),
            _ => None,
        }
    }
}

impl Drop for ModeGuard {
    fn drop(&mut self) {
        if let Some(prev) = self.0.take() {
            MODE.with(|c| *c.borrow_mut() = prev);
        }
    }
}

/// Whether a [`to_skeleton`] is serializing on this thread (tensors then write a
/// reference, placed with [`place`]).
fn writing() -> bool {
    MODE.with(|c| matches!(*c.borrow(), Mode::Write(_)))
}

/// Whether a [`from_skeleton`] is deserializing on this thread.
fn reading() -> bool {
    MODE.with(|c| matches!(*c.borrow(), Mode::Read(_)))
}

/// Gives `t` the next aligned place in the data section; returns (offset, length).
fn place(t: &Tensor) -> std::result::Result<(u64, u64), String> {
    let len = byte_len(t.dtype(), t.shape())
        .ok_or_else(|| format!("tensor of shape {:?} is too large", t.shape()))?
        as u64;
    MODE.with(|c| match &mut *c.borrow_mut() {
        Mode::Write(w) => {
            let off = w
                .cursor
                .checked_next_multiple_of(w.align)
                .ok_or("data section too large")?;
            w.cursor = off.checked_add(len).ok_or("data section too large")?;
            w.tensors.push((t.clone(), off));
            Ok((off, len))
        }
        _ => Err("no version-2 save in progress".to_string()),
    })
}

/// Calls `f` on the `len` data bytes at `off` of the data section being decoded.
fn with_data<R>(off: u64, len: u64, f: impl FnOnce(&[u8]) -> R) -> std::result::Result<R, String> {
    let ctx = MODE.with(|c| match &*c.borrow() {
        Mode::Read(r) => Some(*r),
        _ => None,
    });
    let Some(ctx) = ctx else {
        return Err("no version-2 load in progress".into());
    };
    let end = (ctx.check)(off, len, ctx.len as u64, ctx.next)?;
    MODE.with(|c| {
        if let Mode::Read(r) = &mut *c.borrow_mut() {
            r.next = end;
        }
    });
    // SAFETY: `ctx` was set by `from_skeleton` from a slice `data` that it borrows for the
    // whole postcard call, and the guard resets the mode before it returns, so the
    // pointer is valid for `ctx.len` bytes here (we run inside that call, on its
    // thread); `check` verified `off..end` lies inside it; the bytes are only read.
    let data = unsafe { std::slice::from_raw_parts(ctx.data, ctx.len) };
    let (s, e) = (off as usize, end as usize);
    data.get(s..e)
        .map(f)
        .ok_or_else(|| format!("data at {off}+{len} lies outside the data section"))
}

/// A value's skeleton: postcard bytes whose tensors are `(offset, length)` references,
/// the tensors with their offsets, and the data section's length.
pub(crate) struct Skeleton {
    pub bytes: Vec<u8>,
    pub tensors: Vec<(Tensor, u64)>,
    pub data_len: u64,
}

/// Serializes `value` with postcard, each tensor's data placed at the next
/// `align`-multiple of a data section instead of written inline.
pub(crate) fn to_skeleton<T: Serialize + ?Sized>(
    value: &T,
    align: u64,
) -> std::result::Result<Skeleton, String> {
    let mut guard = ModeGuard::set(Mode::Write(WriteCtx {
        align,
        cursor: 0,
        tensors: Vec::new(),
    }));
    let bytes = postcard::to_stdvec(value);
    let ctx = guard.take_write();
    let bytes = bytes.map_err(|e| e.to_string())?;
    let ctx = ctx.ok_or_else(|| "the save's context was lost".to_string())?;
    Ok(Skeleton {
        bytes,
        tensors: ctx.tensors,
        data_len: ctx.cursor,
    })
}

/// Decodes a skeleton into `T`, tensors copying their bytes from `data` at the references
/// `check` accepts; returns the value and the count of skeleton bytes left over.
pub(crate) fn from_skeleton<T: DeserializeOwned>(
    skeleton: &[u8],
    data: &[u8],
    check: RefCheck,
) -> std::result::Result<(T, usize), postcard::Error> {
    let _guard = ModeGuard::set(Mode::Read(ReadCtx {
        data: data.as_ptr(),
        len: data.len(),
        next: 0,
        check,
    }));
    postcard::take_from_bytes::<T>(skeleton).map(|(v, rest)| (v, rest.len()))
}
