//! The version-2 writer's serializer: postcard, a tensor written as `{dtype, shape,
//! data: (offset, length)}` with its data placed at the next aligned offset of the data
//! section. The places live in the serializer's state. A save runs it twice over the
//! same value: first to lay the file out (no tensor data is read), then with a sink
//! that receives each tensor's bytes as its place comes round again.

use super::table::{Capture, Sink, State, Table};
use super::{Kept, Msg};
use crate::io::tensor_serde::TOKEN;
use serde::ser::{
    Serialize, SerializeMap, SerializeSeq, SerializeStruct, SerializeStructVariant, SerializeTuple,
    SerializeTupleStruct, SerializeTupleVariant, Serializer,
};
use std::cell::RefCell;
use std::fmt::Display;

/// A value's skeleton: postcard bytes whose tensors are `(offset, length)` references,
/// and the length of the data section they lie in.
pub(crate) struct Skeleton {
    pub bytes: Vec<u8>,
    pub data_len: u64,
}

/// Serializes `value` with postcard, each tensor placed at the next `align`-multiple of
/// a data section instead of written inline; `sink` (when given) receives the bytes of
/// each tensor at its place. An error is the message where it arose.
pub(crate) fn encode<T: Serialize + ?Sized>(
    value: &T,
    align: u64,
    sink: Option<Sink<'_>>,
) -> Result<Skeleton, String> {
    use postcard::ser_flavors::{Flavor, StdVec};
    let st = State {
        table: RefCell::new(Table {
            align,
            cursor: 0,
            sink,
        }),
        kept: Kept::default(),
    };
    let mut out = postcard::Serializer {
        output: StdVec::new(),
    };
    if let Err(e) = value.serialize(Ser {
        inner: &mut out,
        st: &st,
    }) {
        return Err(st.kept.or(e));
    }
    let data_len = st.table.borrow().cursor;
    let bytes = out.output.finalize().map_err(|e| e.to_string())?;
    Ok(Skeleton { bytes, data_len })
}

/// postcard's serializer (or any) with the encode's state.
struct Ser<'c, 's, S> {
    inner: S,
    st: &'c State<'s>,
}

/// A value to be serialized by a [`Ser`] around whatever serializer it is given.
struct Wrap<'c, 's, 'v, T: ?Sized> {
    value: &'v T,
    st: &'c State<'s>,
}

impl<T: ?Sized + Serialize> Serialize for Wrap<'_, '_, '_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(Ser {
            inner: s,
            st: self.st,
        })
    }
}

impl<'c, 's, S> Ser<'c, 's, S> {
    fn wrap<'v, T: ?Sized>(&self, value: &'v T) -> Wrap<'c, 's, 'v, T> {
        Wrap { value, st: self.st }
    }
}

impl<S: Serializer> Ser<'_, '_, S> {
    /// A tensor: its dtype and shape captured, its data placed (and, with a sink, sent
    /// there), the skeleton's form written.
    fn tensor<T: ?Sized + Serialize>(self, value: &T) -> Result<S::Ok, S::Error> {
        let mut cap = Capture {
            st: self.st,
            dtype: None,
            shape: Vec::new(),
            at: None,
        };
        if let Err(m) = value.serialize(&mut cap) {
            return Err(self.st.kept.ser(m));
        }
        let (Some(dtype), Some(at)) = (cap.dtype, cap.at) else {
            return Err(self.st.kept.ser(Msg("a tensor without its data".into())));
        };
        let mut s = self.inner.serialize_struct("Tensor", 3)?;
        s.serialize_field("dtype", &dtype)?;
        s.serialize_field("shape", &cap.shape)?;
        s.serialize_field("data", &at)?;
        s.end()
    }
}

macro_rules! forward {
    ($($f:ident($t:ty)),* $(,)?) => {
        $(fn $f(self, v: $t) -> Result<S::Ok, S::Error> {
            self.inner.$f(v)
        })*
    };
}

impl<'c, 's, S: Serializer> Serializer for Ser<'c, 's, S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Compound<'c, 's, S::SerializeSeq>;
    type SerializeTuple = Compound<'c, 's, S::SerializeTuple>;
    type SerializeTupleStruct = Compound<'c, 's, S::SerializeTupleStruct>;
    type SerializeTupleVariant = Compound<'c, 's, S::SerializeTupleVariant>;
    type SerializeMap = Compound<'c, 's, S::SerializeMap>;
    type SerializeStruct = Compound<'c, 's, S::SerializeStruct>;
    type SerializeStructVariant = Compound<'c, 's, S::SerializeStructVariant>;

    forward!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );

    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.inner.serialize_none()
    }

    fn serialize_some<T: ?Sized + Serialize>(self, v: &T) -> Result<S::Ok, S::Error> {
        let w = self.wrap(v);
        self.inner.serialize_some(&w)
    }

    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.inner.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        self.inner.serialize_unit_variant(name, index, variant)
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        name: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        if name == TOKEN {
            return self.tensor(v);
        }
        let w = self.wrap(v);
        self.inner.serialize_newtype_struct(name, &w)
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        let w = self.wrap(v);
        self.inner
            .serialize_newtype_variant(name, index, variant, &w)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        let c = self.inner.serialize_seq(len)?;
        Ok(Compound {
            inner: c,
            st: self.st,
        })
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        let st = self.st;
        Ok(Compound {
            inner: self.inner.serialize_tuple(len)?,
            st,
        })
    }

    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        let st = self.st;
        Ok(Compound {
            inner: self.inner.serialize_tuple_struct(name, len)?,
            st,
        })
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        let st = self.st;
        Ok(Compound {
            inner: self
                .inner
                .serialize_tuple_variant(name, index, variant, len)?,
            st,
        })
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        let st = self.st;
        Ok(Compound {
            inner: self.inner.serialize_map(len)?,
            st,
        })
    }

    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        let st = self.st;
        Ok(Compound {
            inner: self.inner.serialize_struct(name, len)?,
            st,
        })
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        let st = self.st;
        Ok(Compound {
            inner: self
                .inner
                .serialize_struct_variant(name, index, variant, len)?,
            st,
        })
    }

    fn collect_str<T: ?Sized + Display>(self, v: &T) -> Result<S::Ok, S::Error> {
        self.inner.collect_str(v)
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// A sequence, tuple, map or struct being serialized: its elements get the state too.
struct Compound<'c, 's, C> {
    inner: C,
    st: &'c State<'s>,
}

/// The compound serializers with one method beside `end`: each element or field is
/// handed on wrapped, so the tensors inside it are placed by the same state.
macro_rules! wrap_elements {
    ($($tr:ident :: $method:ident),* $(,)?) => {$(
        impl<C: $tr> $tr for Compound<'_, '_, C> {
            type Ok = C::Ok;
            type Error = C::Error;
            fn $method<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), C::Error> {
                self.inner.$method(&Wrap { value: v, st: self.st })
            }
            fn end(self) -> Result<C::Ok, C::Error> {
                self.inner.end()
            }
        }
    )*};
}

wrap_elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

impl<C: SerializeMap> SerializeMap for Compound<'_, '_, C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, k: &T) -> Result<(), C::Error> {
        let w = Wrap {
            value: k,
            st: self.st,
        };
        self.inner.serialize_key(&w)
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), C::Error> {
        let w = Wrap {
            value: v,
            st: self.st,
        };
        self.inner.serialize_value(&w)
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}

/// The struct serializers: named fields handed on wrapped, skipped fields passed through.
macro_rules! wrap_fields {
    ($($tr:ident),* $(,)?) => {$(
        impl<C: $tr> $tr for Compound<'_, '_, C> {
            type Ok = C::Ok;
            type Error = C::Error;
            fn serialize_field<T: ?Sized + Serialize>(
                &mut self,
                key: &'static str,
                v: &T,
            ) -> Result<(), C::Error> {
                self.inner.serialize_field(key, &Wrap { value: v, st: self.st })
            }
            fn skip_field(&mut self, key: &'static str) -> Result<(), C::Error> {
                self.inner.skip_field(key)
            }
            fn end(self) -> Result<C::Ok, C::Error> {
                self.inner.end()
            }
        }
    )*};
}

wrap_fields!(SerializeStruct, SerializeStructVariant);
