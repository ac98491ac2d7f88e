//! The table of a version-2 save's data section (each tensor's place, and the sink that
//! receives the bytes when streaming), carried in the serializer's state, and the
//! capture of one tensor's `{dtype, shape, data}` that places it.

use super::{Kept, Msg};
use crate::io::tensor_serde::{need_len, parse_dtype};
use serde::ser::{Impossible, Serialize, SerializeSeq, SerializeStruct, Serializer};
use std::cell::RefCell;

/// Receives each tensor's little-endian bytes with their offset in the data section.
pub(crate) type Sink<'s> = &'s mut dyn FnMut(u64, &[u8]) -> Result<(), String>;

/// The data section being laid out.
pub(crate) struct Table<'s> {
    pub(super) align: u64,
    /// End of the last tensor placed.
    pub(super) cursor: u64,
    pub(super) sink: Option<Sink<'s>>,
}

impl Table<'_> {
    /// The next aligned place for `len` bytes.
    fn place(&mut self, len: u64) -> Result<u64, String> {
        let off = self
            .cursor
            .checked_next_multiple_of(self.align)
            .ok_or("data section too large")?;
        self.cursor = off.checked_add(len).ok_or("data section too large")?;
        Ok(off)
    }
}

/// The state one encode carries through every call.
pub(crate) struct State<'s> {
    pub(super) table: RefCell<Table<'s>>,
    pub(super) kept: Kept,
}

/// Reads a tensor's `{dtype, shape, data}` as `Tensor`'s serde impl writes it: the
/// dtype and shape kept, the data placed and, with a sink, sent there.
pub(crate) struct Capture<'c, 's> {
    pub(super) st: &'c State<'s>,
    pub(super) dtype: Option<String>,
    pub(super) shape: Vec<usize>,
    pub(super) at: Option<(u64, u64)>,
}

impl Capture<'_, '_> {
    fn data<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), Msg> {
        let dtype = parse_dtype(self.dtype.as_deref().unwrap_or("")).map_err(Msg)?;
        let len = need_len(dtype, &self.shape).map_err(Msg)? as u64;
        let streaming = {
            let mut t = self.st.table.borrow_mut();
            self.at = Some((t.place(len).map_err(Msg)?, len));
            t.sink.is_some()
        };
        if streaming {
            v.serialize(&mut *self)?;
        }
        Ok(())
    }
}

fn not_a_tensor() -> Msg {
    Msg("a tensor's serde form is not {dtype, shape, data}".into())
}

macro_rules! refuse {
    ($($f:ident($($t:ty),*)),* $(,)?) => {
        $(fn $f(self, $(_: $t),*) -> Result<(), Msg> {
            Err(not_a_tensor())
        })*
    };
}

impl Serializer for &mut Capture<'_, '_> {
    type Ok = ();
    type Error = Msg;
    type SerializeSeq = Self;
    type SerializeTuple = Impossible<(), Msg>;
    type SerializeTupleStruct = Impossible<(), Msg>;
    type SerializeTupleVariant = Impossible<(), Msg>;
    type SerializeMap = Impossible<(), Msg>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), Msg>;

    refuse!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );

    fn serialize_str(self, v: &str) -> Result<(), Msg> {
        self.dtype = Some(v.to_string());
        Ok(())
    }

    fn serialize_u64(self, v: u64) -> Result<(), Msg> {
        let d = usize::try_from(v).map_err(|_| Msg(format!("dim {v} too large")))?;
        self.shape.push(d);
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), Msg> {
        let (off, len) = self.at.ok_or_else(not_a_tensor)?;
        if v.len() as u64 != len {
            return Err(Msg("tensors changed size while being saved".into()));
        }
        match self.st.table.borrow_mut().sink.as_mut() {
            Some(sink) => sink(off, v).map_err(Msg),
            None => Ok(()),
        }
    }

    fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<(), Msg> {
        Err(not_a_tensor())
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<(), Msg> {
        Err(not_a_tensor())
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Msg> {
        Err(not_a_tensor())
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self, Msg> {
        Ok(self)
    }

    fn serialize_tuple(self, _: usize) -> Result<Impossible<(), Msg>, Msg> {
        Err(not_a_tensor())
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Impossible<(), Msg>, Msg> {
        Err(not_a_tensor())
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Impossible<(), Msg>, Msg> {
        Err(not_a_tensor())
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Impossible<(), Msg>, Msg> {
        Err(not_a_tensor())
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Msg> {
        Ok(self)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Impossible<(), Msg>, Msg> {
        Err(not_a_tensor())
    }
}

impl SerializeSeq for &mut Capture<'_, '_> {
    type Ok = ();
    type Error = Msg;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), Msg> {
        v.serialize(&mut **self)
    }
    fn end(self) -> Result<(), Msg> {
        Ok(())
    }
}

impl SerializeStruct for &mut Capture<'_, '_> {
    type Ok = ();
    type Error = Msg;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), Msg> {
        match key {
            "data" => self.data(v),
            _ => v.serialize(&mut **self),
        }
    }
    fn end(self) -> Result<(), Msg> {
        Ok(())
    }
}
