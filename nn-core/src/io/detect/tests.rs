//! Unit tests of what file errors say: the kind of file found, checksum before any
//! decoder message, only regular files read, the in-memory scanner twin.

use crate::io::tests_support::{assert_holds, assert_same, small_dict};
use crate::io::*;
use crate::layers::{Linear, ReLU, Sequential};
use crate::module::ModuleExt;
use crate::{Error, Tensor};

fn scratch(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("nn-io-files-{tag}-{}", std::process::id()))
}

fn write_raw(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

fn message<T: std::fmt::Debug>(r: Result<T>) -> String {
    match r {
        Ok(v) => format!("unexpectedly Ok: {v:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_file_in_neither_format_says_what_both_readers_found() -> Result<()> {
    let path = scratch("neither");
    write_raw(&path, b"hello, this is not a model file at all")?;
    let net = Linear::new(2, 1);
    let m = message(net.load(&path));
    assert!(
        m.contains("bad magic number") && m.contains("safetensors"),
        "{m}"
    );
    assert!(m.contains("neither an nn native file"), "{m}");
    let m = message(load_state_dict_file(&path));
    assert!(
        m.contains("bad magic number") && m.contains("safetensors"),
        "{m}"
    );
    // the in-memory twin says the same
    let m = message(state_dict_from_bytes(
        b"hello, this is not a model file at all",
    ));
    assert!(
        m.contains("bad magic number") && m.contains("safetensors"),
        "{m}"
    );
    let _ = std::fs::remove_file(&path);
    Ok(())
}

#[test]
fn a_tensor_file_loaded_as_a_state_dict_says_what_it_holds() -> Result<()> {
    let path = scratch("kind");
    save(&Tensor::arange(0, 3), &path)?;
    let want = "this file holds a Tensor, expected a StateDict";
    let m = message(load::<StateDict>(&path));
    assert!(m.contains(want), "{m}");
    let m = message(load_state_dict_file(&path));
    assert!(m.contains(want), "{m}");
    let net = Linear::new(2, 1);
    let r = net.load(&path);
    assert!(matches!(r, Err(Error::FileKind { .. })), "{r:?}");
    let m = message(from_bytes::<StateDict>(&to_bytes(&Tensor::arange(0, 3))?));
    assert!(m.contains(want), "{m}");
    // and the other way round, and a list
    save(&small_dict()?, &path)?;
    let m = message(load::<Tensor>(&path));
    assert!(m.contains("holds a StateDict, expected a Tensor"), "{m}");
    let two = vec![Tensor::zeros(&[2]), Tensor::ones(&[1])];
    let m = message(from_bytes::<Tensor>(&to_bytes(&two)?));
    assert!(m.contains("holds a Vec<Tensor> (2 tensors)"), "{m}");
    let _ = std::fs::remove_file(&path);
    Ok(())
}

#[test]
fn a_flipped_byte_anywhere_in_the_payload_is_a_checksum_mismatch() -> Result<()> {
    let path = scratch("flip");
    let net = Sequential::new((Linear::new(2, 2), ReLU));
    let v2 = to_bytes(&small_dict()?)?;
    let v1 = to_bytes_v1(&small_dict()?)?;
    for (bytes, header_len) in [(v2, HEADER_LEN_V2), (v1, HEADER_LEN)] {
        for pos in 0..bytes.len() {
            let mut b = bytes.clone();
            if let Some(x) = b.get_mut(pos) {
                *x ^= 0xff;
            }
            write_raw(&path, &b)?;
            let msgs = [
                message(load_state_dict_file(&path)),
                message(load::<StateDict>(&path)),
                message(from_bytes::<StateDict>(&b)),
                message(state_dict_from_bytes(&b)),
                message(net.load(&path)),
            ];
            for m in &msgs {
                if pos >= header_len {
                    assert!(m.contains("checksum mismatch"), "byte {pos}: {m}");
                    // a damaged data chunk names what it holds
                    if m.contains("data bytes") {
                        assert!(
                            m.contains("`w`") || m.contains("padding"),
                            "byte {pos}: {m}"
                        );
                    }
                } else {
                    // the header is not under the checksum; it is judged on its own
                    assert!(
                        !m.contains("bad payload") && !m.starts_with("unexpectedly"),
                        "byte {pos}: {m}"
                    );
                }
            }
        }
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

#[cfg(unix)]
#[test]
fn fifos_and_devices_are_refused_without_reading() -> Result<()> {
    let m = message(load::<Tensor>("/dev/zero"));
    assert!(
        m.contains("character device") && m.contains("only regular files"),
        "{m}"
    );
    let m = message(load_state_dict_file("/dev/zero"));
    assert!(m.contains("character device"), "{m}");
    let m = message(load_safetensors("/dev/zero"));
    assert!(m.contains("character device"), "{m}");
    let dir = std::env::temp_dir();
    let m = message(load::<Tensor>(&dir));
    assert!(m.contains("directory"), "{m}");

    let fifo = scratch("fifo");
    let _ = std::fs::remove_file(&fifo);
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes())
        .map_err(|e| Error::io(&fifo, std::io::Error::other(e)))?;
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo failed");
    // no writer: a blocking open would hang here forever
    let (tx, rx) = std::sync::mpsc::channel();
    let f2 = fifo.clone();
    std::thread::spawn(move || {
        let _ = tx.send((
            message(load::<Tensor>(&f2)),
            message(Linear::new(1, 1).load(&f2)),
        ));
    });
    let (a, b) = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .map_err(|_| Error::io(&fifo, std::io::ErrorKind::TimedOut.into()))?;
    assert!(a.contains("a FIFO") && b.contains("a FIFO"), "{a} / {b}");
    let _ = std::fs::remove_file(&fifo);
    Ok(())
}

#[test]
fn state_dict_from_bytes_agrees_with_the_file_reader() -> Result<()> {
    let sd = small_dict()?;
    let (native, st) = (to_bytes(&sd)?, safetensors_to_bytes(&sd)?);
    let refs = [
        from_bytes::<StateDict>(&native)?,
        safetensors_from_bytes(&st)?,
    ];
    for (bytes, want) in [native, st].iter().zip(&refs) {
        let back = state_dict_from_bytes(bytes)?;
        assert_same(&back, want)?;
        assert_holds(&back, &sd)?;
        for n in 0..bytes.len() {
            assert!(state_dict_from_bytes(&bytes[..n]).is_err(), "cut at {n}");
        }
    }
    Ok(())
}
