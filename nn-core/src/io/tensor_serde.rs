//! serde for [`Tensor`] and [`StateDict`]: a tensor is `{dtype, shape, data}` with its
//! elements as one little-endian byte string, never element by element.
//!
//! A tensor goes to a serializer as a newtype struct named [`TOKEN`] around that
//! struct (the trick of serde_json's `RawValue`). Every serializer that is not ours
//! treats a newtype struct as its content (postcard, JSON, bincode: the bytes are those
//! of the plain struct); the native version-2 writer's serializer
//! (`io/skeleton/`) recognizes the name and writes the tensor as a reference
//! into its data section instead, reading the tables it needs from its own state, never
//! from a thread-local. Deserialization mirrors it.
//!
//! Deserialization checks the byte length against `dtype` and `shape` (with overflow
//! checks) before it allocates, so a hostile input cannot ask for more memory than it
//! carries.

use super::bytes::{byte_len, dtype_from_str, le_bytes};
use crate::module::StateDict;
use crate::{DType, HostData, Tensor};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

/// The name of the newtype struct a [`Tensor`] serializes as: a serializer or
/// deserializer of ours that meets it handles the tensor itself.
pub(crate) const TOKEN: &str = "$nn::private::Tensor";

/// A deserialization error with its message.
fn fail<E: de::Error>(msg: impl fmt::Display) -> E {
    E::custom(msg)
}

/// The dtype a tensor's `dtype` field names, or what is wrong with it.
pub(crate) fn parse_dtype(v: &str) -> std::result::Result<DType, String> {
    dtype_from_str(v).ok_or_else(|| format!("unknown dtype `{v}` (expected `float32` or `int64`)"))
}

/// The byte length `dtype` and `shape` need, or what is wrong with them.
pub(crate) fn need_len(dtype: DType, shape: &[usize]) -> std::result::Result<usize, String> {
    byte_len(dtype, shape)
        .ok_or_else(|| format!("tensor of shape {shape:?} and dtype {dtype} is too large"))
}

/// The message of a data field of `have` bytes where `need` are needed.
pub(crate) fn wrong_len(have: u64, need: usize) -> String {
    format!("tensor data has {have} bytes, its dtype and shape need {need}")
}

/// A tensor's data, converted to little-endian bytes only when serialized (the
/// version-2 writer's first pass never asks for them).
struct Data<'a>(&'a Tensor);

impl Serialize for Data<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bytes = le_bytes(self.0).map_err(serde::ser::Error::custom)?;
        s.serialize_bytes(&bytes)
    }
}

/// The struct a tensor is: `{dtype, shape, data}`.
struct Inline<'a>(&'a Tensor);

impl Serialize for Inline<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Tensor", 3)?;
        st.serialize_field("dtype", self.0.dtype().as_str())?;
        st.serialize_field("shape", self.0.shape())?;
        st.serialize_field("data", &Data(self.0))?;
        st.end()
    }
}

impl Serialize for Tensor {
    /// `{dtype: "float32" | "int64" | ..., shape: [..], data: bytes}` inside a newtype
    /// struct named `$nn::private::Tensor` (which postcard, JSON and most formats write
    /// as its content); the data of a GPU tensor is copied to the host first. Autograd
    /// state is not saved.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_newtype_struct(TOKEN, &Inline(self))
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
        parse_dtype(v).map_err(fail)
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
        d.deserialize_bytes(self)
    }
}

impl DataSeed {
    fn take<E: de::Error>(&self, v: &[u8]) -> Result<HostData, E> {
        if v.len() != self.len {
            return Err(fail(wrong_len(v.len() as u64, self.len)));
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
    let len = need_len(dtype, shape).map_err(fail)?;
    Ok(DataSeed { dtype, len })
}

struct TensorVisitor;

impl<'de> Visitor<'de> for TensorVisitor {
    type Value = Tensor;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a tensor {dtype, shape, data}")
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Tensor, D::Error> {
        d.deserialize_struct("Tensor", FIELDS, self)
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
    /// Reads what [`Tensor`]'s `Serialize` wrote, onto the CPU: the newtype struct
    /// `$nn::private::Tensor`, or the plain struct (from a format that drops newtypes).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Tensor, D::Error> {
        d.deserialize_newtype_struct(TOKEN, TensorVisitor)
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
