//! Tests of the state-carrying serializer and deserializer: encodes and decodes nested
//! in one another or running on several threads at once each see their own table (what
//! a thread-local mode got wrong), and a serializer that is not ours gets the plain
//! `{dtype, shape, data}` form.

use crate::io::{from_bytes, to_bytes, to_bytes_v1};
use crate::{Error, Result, Tensor};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};
use std::fmt;

fn json_err(e: serde_json::Error) -> Error {
    Error::Format {
        path: "<json>".into(),
        msg: e.to_string(),
    }
}

fn pc_err(e: postcard::Error) -> Error {
    Error::Format {
        path: "<postcard>".into(),
        msg: e.to_string(),
    }
}

fn same(a: &Tensor, b: &Tensor) -> Result<()> {
    assert_eq!(a.dtype(), b.dtype());
    assert_eq!(a.shape(), b.shape());
    assert_eq!(a.to_host()?.to_le_bytes(), b.to_host()?.to_le_bytes());
    Ok(())
}

/// A user type whose serde impls encode a tensor with other serializers in the middle
/// of a native save or load: as JSON text, as a whole native file (nested), and as
/// itself.
struct Embeds {
    t: Tensor,
}

impl Serialize for Embeds {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let json = serde_json::to_string(&self.t).map_err(S::Error::custom)?;
        let file = to_bytes(&self.t).map_err(S::Error::custom)?;
        let mut st = s.serialize_struct("Embeds", 3)?;
        st.serialize_field("json", &json)?;
        st.serialize_field("file", &serde_bytes_like(&file))?;
        st.serialize_field("t", &self.t)?;
        st.end()
    }
}

/// A byte string (postcard writes it as a length and the bytes).
fn serde_bytes_like(b: &[u8]) -> impl Serialize + '_ {
    struct B<'a>(&'a [u8]);
    impl Serialize for B<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }
    B(b)
}

impl<'de> Deserialize<'de> for Embeds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Embeds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("Embeds")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Embeds, A::Error> {
                use de::Error as _;
                let missing = || A::Error::custom("missing field");
                let json: String = seq.next_element()?.ok_or_else(missing)?;
                let bytes: ByteBuf = seq.next_element()?.ok_or_else(missing)?;
                // decoded here, inside the outer decode, by other deserializers
                let from_json: Tensor = serde_json::from_str(&json).map_err(A::Error::custom)?;
                let from_file: Tensor = from_bytes(&bytes.0).map_err(A::Error::custom)?;
                let t: Tensor = seq.next_element()?.ok_or_else(missing)?;
                for other in [&from_json, &from_file] {
                    if other.to_host().map_err(A::Error::custom)?.to_le_bytes()
                        != t.to_host().map_err(A::Error::custom)?.to_le_bytes()
                    {
                        return Err(A::Error::custom("an embedded tensor differs"));
                    }
                }
                Ok(Embeds { t })
            }
            fn visit_map<A: MapAccess<'de>>(self, _: A) -> std::result::Result<Embeds, A::Error> {
                Err(de::Error::custom("postcard only"))
            }
        }
        d.deserialize_struct("Embeds", &["json", "file", "t"], V)
    }
}

struct ByteBuf(Vec<u8>);

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteBuf;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> std::result::Result<ByteBuf, E> {
                Ok(ByteBuf(v.to_vec()))
            }
        }
        d.deserialize_bytes(V)
    }
}

#[test]
fn encodes_and_decodes_nested_in_a_native_save_see_their_own_tables() -> Result<()> {
    let t = Tensor::from_vec((0..12).map(|i| i as f32 * 0.5).collect(), &[3, 4])?;
    let e = Embeds { t: t.clone() };
    for bytes in [to_bytes(&e)?, to_bytes_v1(&e)?] {
        let back: Embeds = from_bytes(&bytes)?;
        same(&back.t, &t)?;
    }
    // the JSON written inside the native save is the plain form, with the bytes inline
    let json = serde_json::to_string(&t).map_err(json_err)?;
    assert!(
        json.starts_with(r#"{"dtype":"float32","shape":[3,4],"data":[0,0,0,0,0,0,0,63,"#),
        "{json}"
    );
    // and the outer file holds only its own tensor in its data section: one 48-byte
    // tensor at offset 0 (the embedded file's tensor is inside the skeleton's bytes)
    let file = to_bytes(&e)?;
    let data_len = u64::from_le_bytes(file[32..40].try_into().unwrap_or_default());
    assert_eq!(data_len, 48);
    Ok(())
}

#[test]
fn saves_and_loads_on_several_threads_at_once_each_get_their_own_results() -> Result<()> {
    let a = Tensor::randn(&[64, 33]);
    let b = Tensor::arange(0, 1000);
    let want_v2 = to_bytes(&(a.clone(), b.clone()))?;
    let want_v1 = to_bytes_v1(&vec![b.clone(), a.clone()])?;
    let want_json = serde_json::to_string(&a).map_err(json_err)?;
    std::thread::scope(|s| -> Result<()> {
        let v2 = s.spawn(|| -> Result<()> {
            for _ in 0..200 {
                assert_eq!(to_bytes(&(a.clone(), b.clone()))?, want_v2);
                let (x, y): (Tensor, Tensor) = from_bytes(&want_v2)?;
                same(&x, &a)?;
                same(&y, &b)?;
            }
            Ok(())
        });
        let v1 = s.spawn(|| -> Result<()> {
            for _ in 0..200 {
                assert_eq!(to_bytes_v1(&vec![b.clone(), a.clone()])?, want_v1);
                let xs: Vec<Tensor> = from_bytes(&want_v1)?;
                same(&xs[1], &a)?;
                assert_eq!(serde_json::to_string(&a).map_err(json_err)?, want_json);
            }
            Ok(())
        });
        for h in [v2, v1] {
            h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))?;
        }
        Ok(())
    })
}

#[test]
fn a_foreign_serializer_gets_the_plain_struct() -> Result<()> {
    let t = Tensor::from_vec(vec![1.0f32, -2.0], &[2])?;
    // postcard used directly: the tensor's newtype is transparent, the struct's fields in
    // order, the data one byte string
    let pc = postcard::to_stdvec(&t).map_err(pc_err)?;
    let mut want = vec![7];
    want.extend_from_slice(b"float32");
    want.extend_from_slice(&[1, 2, 8]);
    want.extend_from_slice(&1.0f32.to_le_bytes());
    want.extend_from_slice(&(-2.0f32).to_le_bytes());
    assert_eq!(pc, want);
    let back: Tensor = postcard::from_bytes(&pc).map_err(pc_err)?;
    same(&back, &t)?;
    // JSON: an object of the three fields, the data as numbers
    let v = serde_json::to_value(&t).map_err(json_err)?;
    assert_eq!(
        v,
        serde_json::json!({"dtype": "float32", "shape": [2], "data": [0, 0, 128, 63, 0, 0, 0, 192]})
    );
    let back: Tensor =
        serde_json::from_str(&serde_json::to_string(&t).map_err(json_err)?).map_err(json_err)?;
    same(&back, &t)
}

#[test]
fn error_messages_survive_postcard_in_both_versions() {
    // an unknown dtype inside a list: the message where it arose, not postcard's text
    let mut body = vec![1, 4];
    body.extend_from_slice(b"nope");
    body.extend_from_slice(&[1, 1, 1, 0]);
    let v1 = from_bytes::<Vec<Tensor>>(&crate::io::frame(&body));
    let m = v1.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(m.contains("unknown dtype `nope`"), "{m}");
    // (a leading 0 that the state-dict scanner, which names a bad key, reads as empty)
    let sk = [0, 4, b'n', b'o', b'p', b'e', 1, 1, 0, 1];
    let v2 = from_bytes::<(u8, Tensor)>(&crate::io::frame_v2(&sk, &[0; 64], 4096));
    let m = v2.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(m.contains("unknown dtype `nope`"), "{m}");
}
