//! The native readers' deserializer: postcard, with a version-2 file's data section in
//! its state. A tensor (the newtype struct `TOKEN`) is read as `{dtype, shape, data:
//! (offset, length)}`, checked in that order (dtype known, size representable, length
//! agreeing, reference inside the section, aligned, after the previous tensor), and
//! handed to `Tensor`'s visitor as the plain struct with the section's bytes. Without a
//! section (version 1) tensors are read inline, as plain postcard reads them.

use super::{Kept, Msg};
use crate::io::tensor_serde::{need_len, parse_dtype, wrong_len, TOKEN};
use serde::de::value::{BytesDeserializer, SeqDeserializer, StrDeserializer};
use serde::de::{
    DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};
use std::cell::Cell;
use std::fmt;

/// Checks a reference `(offset, length)` against a data section of `data_len` bytes whose
/// previous tensor ends at `next`; returns the reference's end or what is wrong.
pub(crate) type RefCheck = fn(u64, u64, u64, u64) -> Result<u64, String>;

/// A version-2 data section and the check its references must pass.
pub(crate) struct Section<'d> {
    pub data: &'d [u8],
    pub check: RefCheck,
}

/// The state one decode carries through every call.
struct State<'d> {
    section: Option<Section<'d>>,
    /// End of the last tensor read: tensors must come in file order, without overlap.
    next: Cell<u64>,
    kept: Kept,
}

/// Decodes `bytes` (postcard) into `T`, tensors read from `section` when there is one,
/// else inline; returns the value and the count of bytes left over, or the message of
/// the error where it arose.
pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    section: Option<Section<'_>>,
) -> Result<(T, usize), String> {
    let st = State {
        section,
        next: Cell::new(0),
        kept: Kept::default(),
    };
    let mut d = postcard::Deserializer::from_bytes(bytes);
    match T::deserialize(De {
        inner: &mut d,
        st: &st,
    }) {
        Ok(v) => Ok((v, d.finalize().map_err(|e| e.to_string())?.len())),
        Err(e) => Err(st.kept.or(e)),
    }
}

/// postcard's deserializer (or any) with the decode's state.
struct De<'c, 'd, D> {
    inner: D,
    st: &'c State<'d>,
}

/// A visitor, a seed or an access of the caller's, with the decode's state.
struct Wrap<'c, 'd, X> {
    x: X,
    st: &'c State<'d>,
}

impl<'c, 'd, D> De<'c, 'd, D> {
    fn wrap<X>(&self, x: X) -> Wrap<'c, 'd, X> {
        Wrap { x, st: self.st }
    }
}

fn msg(e: impl fmt::Display) -> Msg {
    Msg(e.to_string())
}

macro_rules! forward {
    ($($f:ident),* $(,)?) => {
        $(fn $f<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
            let w = self.wrap(v);
            self.inner.$f(w)
        })*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for De<'_, '_, D> {
    type Error = D::Error;

    forward!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, D::Error> {
        let w = self.wrap(v);
        self.inner.deserialize_unit_struct(name, w)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, D::Error> {
        if name == TOKEN && self.st.section.is_some() {
            let t = SkeletonTensor { v, st: self.st };
            return self.inner.deserialize_struct("Tensor", FIELDS, t);
        }
        let w = self.wrap(v);
        self.inner.deserialize_newtype_struct(name, w)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, D::Error> {
        let w = self.wrap(v);
        self.inner.deserialize_tuple(len, w)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        v: V,
    ) -> Result<V::Value, D::Error> {
        let w = self.wrap(v);
        self.inner.deserialize_tuple_struct(name, len, w)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, D::Error> {
        let w = self.wrap(v);
        self.inner.deserialize_struct(name, fields, w)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, D::Error> {
        let w = self.wrap(v);
        self.inner.deserialize_enum(name, variants, w)
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

const FIELDS: &[&str] = &["dtype", "shape", "data"];

macro_rules! visit {
    ($($f:ident($t:ty)),* $(,)?) => {
        $(fn $f<E: serde::de::Error>(self, v: $t) -> Result<V::Value, E> {
            let st = self.st;
            self.x.$f::<Msg>(v).map_err(|m| st.kept.de(m))
        })*
    };
}

// The caller's visitor sees errors of our own type, which keep their messages; they
// are kept in the state as they go back into postcard's.
impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, '_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.x.expecting(f)
    }

    visit!(
        visit_bool(bool),
        visit_i8(i8),
        visit_i16(i16),
        visit_i32(i32),
        visit_i64(i64),
        visit_i128(i128),
        visit_u8(u8),
        visit_u16(u16),
        visit_u32(u32),
        visit_u64(u64),
        visit_u128(u128),
        visit_f32(f32),
        visit_f64(f64),
        visit_char(char),
        visit_str(&str),
        visit_borrowed_str(&'de str),
        visit_string(String),
        visit_bytes(&[u8]),
        visit_borrowed_bytes(&'de [u8]),
        visit_byte_buf(Vec<u8>),
    );

    fn visit_none<E: serde::de::Error>(self) -> Result<V::Value, E> {
        let st = self.st;
        self.x.visit_none::<Msg>().map_err(|m| st.kept.de(m))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<V::Value, E> {
        let st = self.st;
        self.x.visit_unit::<Msg>().map_err(|m| st.kept.de(m))
    }

    fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<V::Value, D2::Error> {
        self.x.visit_some(De {
            inner: d,
            st: self.st,
        })
    }

    fn visit_newtype_struct<D2: Deserializer<'de>>(self, d: D2) -> Result<V::Value, D2::Error> {
        self.x.visit_newtype_struct(De {
            inner: d,
            st: self.st,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        let st = self.st;
        self.x
            .visit_seq(Wrap { x: seq, st })
            .map_err(|m| st.kept.de(m))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        let st = self.st;
        self.x
            .visit_map(Wrap { x: map, st })
            .map_err(|m| st.kept.de(m))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        let st = self.st;
        self.x
            .visit_enum(Wrap { x: data, st })
            .map_err(|m| st.kept.de(m))
    }
}

impl<'de, T: DeserializeSeed<'de>> DeserializeSeed<'de> for Wrap<'_, '_, T> {
    type Value = T::Value;
    fn deserialize<D2: Deserializer<'de>>(self, d: D2) -> Result<T::Value, D2::Error> {
        self.x.deserialize(De {
            inner: d,
            st: self.st,
        })
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Wrap<'_, '_, A> {
    type Error = Msg;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Msg> {
        let w = Wrap {
            x: seed,
            st: self.st,
        };
        self.x.next_element_seed(w).map_err(msg)
    }
    fn size_hint(&self) -> Option<usize> {
        self.x.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Wrap<'_, '_, A> {
    type Error = Msg;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Msg> {
        let w = Wrap {
            x: seed,
            st: self.st,
        };
        self.x.next_key_seed(w).map_err(msg)
    }
    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Msg> {
        let w = Wrap {
            x: seed,
            st: self.st,
        };
        self.x.next_value_seed(w).map_err(msg)
    }
    fn size_hint(&self) -> Option<usize> {
        self.x.size_hint()
    }
}

impl<'c, 'd, 'de, A: EnumAccess<'de>> EnumAccess<'de> for Wrap<'c, 'd, A> {
    type Error = Msg;
    type Variant = Wrap<'c, 'd, A::Variant>;
    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), Msg> {
        let st = self.st;
        let (v, x) = self.x.variant_seed(Wrap { x: seed, st }).map_err(msg)?;
        Ok((v, Wrap { x, st }))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Wrap<'_, '_, A> {
    type Error = Msg;
    fn unit_variant(self) -> Result<(), Msg> {
        self.x.unit_variant().map_err(msg)
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Msg> {
        let st = self.st;
        self.x
            .newtype_variant_seed(Wrap { x: seed, st })
            .map_err(msg)
    }
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, Msg> {
        let st = self.st;
        self.x.tuple_variant(len, Wrap { x: v, st }).map_err(msg)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Msg> {
        let st = self.st;
        self.x
            .struct_variant(fields, Wrap { x: v, st })
            .map_err(msg)
    }
}

/// `Tensor`'s visitor, to be given a tensor read from the skeleton.
struct SkeletonTensor<'c, 'd, V> {
    v: V,
    st: &'c State<'d>,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for SkeletonTensor<'_, '_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a tensor {dtype, shape, (offset, length)}")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<V::Value, A::Error> {
        let st = self.st;
        let fail = |m: String| st.kept.de::<A::Error>(Msg(m));
        let short = || fail("a tensor without its dtype, shape or data".into());
        let dtype: String = seq.next_element()?.ok_or_else(short)?;
        let dt = parse_dtype(&dtype).map_err(fail)?;
        let shape: Vec<usize> = seq.next_element()?.ok_or_else(short)?;
        let need = need_len(dt, &shape).map_err(fail)?;
        let (off, len): (u64, u64) = seq.next_element()?.ok_or_else(short)?;
        if len != need as u64 {
            return Err(fail(wrong_len(len, need)));
        }
        let Some(sec) = &st.section else {
            return Err(short());
        };
        let end = (sec.check)(off, len, sec.data.len() as u64, st.next.get())
            .map_err(|m| fail(format!("tensor {m}")))?;
        st.next.set(end);
        let data = usize::try_from(off)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(s, e)| sec.data.get(s..e))
            .ok_or_else(|| {
                fail(format!(
                    "tensor data at {off}+{len} lies outside the data section"
                ))
            })?;
        let plain = Plain {
            dtype: &dtype,
            shape: &shape,
            data,
        };
        self.v
            .visit_newtype_struct(plain)
            .map_err(|m| st.kept.de(m))
    }
}

/// A tensor as the plain struct `{dtype, shape, data}`, its data borrowed.
struct Plain<'a> {
    dtype: &'a str,
    shape: &'a [usize],
    data: &'a [u8],
}

impl<'de> Deserializer<'de> for Plain<'_> {
    type Error = Msg;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Msg> {
        v.visit_seq(Fields { t: self, at: 0 })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map struct
        enum identifier ignored_any
    }
}

/// The three fields of a [`Plain`] tensor, in order.
struct Fields<'a> {
    t: Plain<'a>,
    at: usize,
}

impl<'de> SeqAccess<'de> for Fields<'_> {
    type Error = Msg;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Msg> {
        self.at += 1;
        match self.at {
            1 => seed
                .deserialize(StrDeserializer::new(self.t.dtype))
                .map(Some),
            2 => {
                let dims = SeqDeserializer::new(self.t.shape.iter().copied());
                seed.deserialize(dims).map(Some)
            }
            3 => seed
                .deserialize(BytesDeserializer::new(self.t.data))
                .map(Some),
            _ => Ok(None),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(3usize.saturating_sub(self.at))
    }
}
