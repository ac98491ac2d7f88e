//! The host runtime, for nn's own tests only (feature `host-runtime`; never part of a
//! user's build): device memory is host memory behind the same [`DevBuf`] handles, every
//! launch runs the real kernel source compiled as C++ by build.rs (one fiber per CUDA
//! thread, `__syncthreads` a real per-block barrier, every buffer access bounds-checked,
//! two threads writing one element without an atomic reported as a race),
//! with exactly the grid, block and arguments nn-cuda computes, and GEMMs are a reference
//! SGEMM with cuBLAS's column-major, transpose and leading-dimension semantics.

pub(crate) mod comm;

use super::{foreign, Arg, DevBuf, Driver, Elem, Gemm, Launch};
use crate::compile::KernelModule;
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::ffi::{c_char, c_void};
use std::sync::Mutex;

static LAUNCHES: Mutex<BTreeMap<&'static str, u64>> = Mutex::new(BTreeMap::new());

/// How often each kernel has been launched on the host runtime in this process (the
/// coverage test checks every kernel of every module ran).
pub(crate) fn launch_counts() -> BTreeMap<&'static str, u64> {
    LAUNCHES.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// A kernel parameter's type, as the host entry reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Param {
    U64,
    I32,
    I64,
    F32,
    Layout3,
    Red,
    Im2Col,
    F32Ptr,
    I64Ptr,
}

/// `nn_launch` of `nn_host.h`.
#[repr(C)]
pub(super) struct HostLaunch {
    grid: [u32; 3],
    block: [u32; 3],
    shared_mem_bytes: u32,
}

/// `nn_hbuf` of `nn_host.h`.
#[repr(C)]
struct HostPtr {
    p: *mut c_void,
    n: u64,
}

type Entry = unsafe extern "C" fn(*const HostLaunch, *const *const c_void, *mut c_char, u64) -> i32;

/// One kernel compiled for the host: its module, name, parameters and entry point.
pub(super) struct HostKernel {
    module: &'static str,
    name: &'static str,
    params: &'static [Param],
    entry: Entry,
}

include!(concat!(env!("OUT_DIR"), "/host_kernels.rs"));

/// Host memory standing in for a device allocation: `len` elements behind a raw
/// pointer, so kernels may write through it while the handle is shared.
pub(crate) struct HostBuf<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: a `HostBuf` owns its allocation like a `Vec`; the host runtime runs a launch to
// completion on the calling thread, so no access outlives the borrow that started it.
unsafe impl<T: Send> Send for HostBuf<T> {}
// SAFETY: as above; shared handles only read, except inside a launch whose `&mut`
// argument excludes other users.
unsafe impl<T: Sync> Sync for HostBuf<T> {}

impl<T: Elem> HostBuf<T> {
    fn from_vec(v: Vec<T>) -> Self {
        let b: Box<[T]> = v.into_boxed_slice();
        let len = b.len();
        HostBuf {
            ptr: Box::into_raw(b) as *mut T,
            len,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn as_slice(&self) -> &[T] {
        // SAFETY: `ptr` holds `len` initialized elements owned by `self`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as above, and `&mut self` makes this the only access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl<T> Drop for HostBuf<T> {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` came from `Box::into_raw` of a boxed slice of that length.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.ptr, self.len)) });
    }
}

fn host<'a, T: Elem>(op: &'static str, b: &'a DevBuf<T>) -> Result<&'a HostBuf<T>> {
    match b {
        DevBuf::Host(h) => Ok(h),
        DevBuf::Cuda(_) => Err(foreign(op)),
    }
}

fn host_mut<'a, T: Elem>(op: &'static str, b: &'a mut DevBuf<T>) -> Result<&'a mut HostBuf<T>> {
    match b {
        DevBuf::Host(h) => Ok(h),
        DevBuf::Cuda(_) => Err(foreign(op)),
    }
}

fn kernel_err(kernel: &'static str, msg: String) -> Error {
    Error::Kernel { kernel, msg }
}

/// The host runtime. `mutant` swaps in the deliberately broken build of one module
/// (the mutation test: the device suite must fail on it).
pub(crate) struct HostRt {
    mutant: bool,
}

impl HostRt {
    pub(crate) fn new(mutant: bool) -> Self {
        HostRt { mutant }
    }

    fn kernel(&self, module: &str, name: &str) -> Option<&'static HostKernel> {
        let pick =
            |t: &'static [HostKernel]| t.iter().find(|k| k.module == module && k.name == name);
        if self.mutant {
            if let Some(k) = pick(MUTANT_KERNELS) {
                return Some(k);
            }
        }
        pick(KERNELS)
    }
}

/// CUDA's launch limits, checked as a GPU would reject the launch.
fn check_dims(kernel: &'static str, d: Launch) -> Result<()> {
    let (g, b) = (d.grid, d.block);
    let threads = u64::from(b.0) * u64::from(b.1) * u64::from(b.2);
    let bad = if g.0 == 0 || g.1 == 0 || g.2 == 0 || threads == 0 {
        Some("an empty grid or block (CUDA_ERROR_INVALID_VALUE)".to_string())
    } else if threads > 1024 || b.0 > 1024 || b.1 > 1024 || b.2 > 64 {
        Some(format!("block {b:?} exceeds CUDA's 1024 threads per block"))
    } else if g.1 > 65535 || g.2 > 65535 {
        Some(format!("grid {g:?} exceeds CUDA's 65535 blocks in y or z"))
    } else if d.shared_mem_bytes > 48 * 1024 {
        Some(format!(
            "{} bytes of dynamic shared memory (48 KiB without opt-in)",
            d.shared_mem_bytes
        ))
    } else {
        None
    };
    match bad {
        Some(msg) => Err(kernel_err(kernel, format!("invalid launch: {msg}"))),
        None => Ok(()),
    }
}

fn buf_ptr<T: Elem>(kernel: &'static str, b: &HostBuf<T>, off: usize) -> Result<HostPtr> {
    if off > b.len {
        return Err(kernel_err(
            kernel,
            format!("argument offset {off} past a buffer of {}", b.len),
        ));
    }
    // SAFETY: `off <= len`, so the pointer stays inside (or one past) the allocation.
    let p = unsafe { b.ptr.add(off) } as *mut c_void;
    Ok(HostPtr {
        p,
        n: (b.len - off) as u64,
    })
}

impl Driver for HostRt {
    fn alloc<T: Elem>(&self, n: usize, zeroed: bool) -> Result<DevBuf<T>> {
        let fill = if zeroed {
            // SAFETY: f32 and i64 (the only `Elem`s) are valid as all-zero bits.
            unsafe { std::mem::zeroed() }
        } else {
            T::POISON
        };
        Ok(DevBuf::Host(HostBuf::from_vec(vec![fill; n.max(1)])))
    }

    fn htod<T: Elem>(&self, src: &[T]) -> Result<DevBuf<T>> {
        if src.is_empty() {
            return self.alloc(0, true);
        }
        Ok(DevBuf::Host(HostBuf::from_vec(src.to_vec())))
    }

    fn write<T: Elem>(&self, dst: &mut DevBuf<T>, offset: usize, src: &[T]) -> Result<()> {
        let d = host_mut("write", dst)?.as_mut_slice();
        let part =
            d.get_mut(offset..offset.saturating_add(src.len()))
                .ok_or(Error::Unsupported {
                    op: "write",
                    msg: "offset outside the buffer".into(),
                })?;
        part.copy_from_slice(src);
        Ok(())
    }

    fn dtoh<T: Elem>(&self, src: &DevBuf<T>, len: usize) -> Result<Vec<T>> {
        let s = host("download", src)?.as_slice();
        Ok(s[..len.min(s.len())].to_vec())
    }

    fn dtod<T: Elem>(&self, src: &DevBuf<T>) -> Result<DevBuf<T>> {
        Ok(DevBuf::Host(HostBuf::from_vec(
            host("copy", src)?.as_slice().to_vec(),
        )))
    }

    unsafe fn launch(
        &self,
        module: &'static KernelModule,
        kernel: &'static str,
        dims: Launch,
        args: &mut [Arg<'_>],
    ) -> Result<()> {
        let k = self.kernel(module.name, kernel).ok_or_else(|| {
            kernel_err(
                kernel,
                format!("no host build of this kernel in module `{}`", module.name),
            )
        })?;
        check_dims(kernel, dims)?;
        if args.len() != k.params.len() {
            return Err(kernel_err(
                kernel,
                format!("{} arguments for {} parameters", args.len(), k.params.len()),
            ));
        }
        let mut bufs: Vec<HostPtr> = Vec::with_capacity(args.len());
        let mut ptrs: Vec<*const c_void> = Vec::with_capacity(args.len());
        // first the buffers (so `bufs` no longer moves), then the pointer table
        let mut slot = Vec::with_capacity(args.len());
        for (i, (a, &p)) in args.iter().zip(k.params).enumerate() {
            let got = match a {
                Arg::U64(_) => Param::U64,
                Arg::I32(_) => Param::I32,
                Arg::I64(_) => Param::I64,
                Arg::F32(_) => Param::F32,
                Arg::Layout3(_) => Param::Layout3,
                Arg::Red(_) => Param::Red,
                Arg::Im2Col(_) => Param::Im2Col,
                Arg::F32s(..) | Arg::F32sMut(..) => Param::F32Ptr,
                Arg::I64s(..) | Arg::I64sMut(..) => Param::I64Ptr,
            };
            if got != p {
                return Err(kernel_err(
                    kernel,
                    format!("argument {i} is {got:?}, the kernel's parameter is {p:?}"),
                ));
            }
            let b = match a {
                Arg::F32s(b, off) => Some(buf_ptr(kernel, host(kernel, b)?, *off)?),
                Arg::F32sMut(b, off) => Some(buf_ptr(kernel, host(kernel, b)?, *off)?),
                Arg::I64s(b, off) => Some(buf_ptr(kernel, host(kernel, b)?, *off)?),
                Arg::I64sMut(b, off) => Some(buf_ptr(kernel, host(kernel, b)?, *off)?),
                _ => None,
            };
            slot.push(b.map(|b| {
                bufs.push(b);
                bufs.len() - 1
            }));
        }
        for (a, s) in args.iter().zip(&slot) {
            let p: *const c_void = match (a, s) {
                (_, Some(j)) => &bufs[*j] as *const HostPtr as *const c_void,
                (Arg::U64(v), _) => v as *const u64 as *const c_void,
                (Arg::I32(v), _) => v as *const i32 as *const c_void,
                (Arg::I64(v), _) => v as *const i64 as *const c_void,
                (Arg::F32(v), _) => v as *const f32 as *const c_void,
                (Arg::Layout3(l), _) => *l as *const crate::layout::Layout3 as *const c_void,
                (Arg::Red(l), _) => *l as *const crate::layout::RedLayout as *const c_void,
                (Arg::Im2Col(l), _) => *l as *const crate::layout::Im2ColLayout as *const c_void,
                _ => std::ptr::null(),
            };
            ptrs.push(p);
        }
        let l = HostLaunch {
            grid: [dims.grid.0, dims.grid.1, dims.grid.2],
            block: [dims.block.0, dims.block.1, dims.block.2],
            shared_mem_bytes: dims.shared_mem_bytes,
        };
        *LAUNCHES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(kernel)
            .or_insert(0) += 1;
        let mut msg = vec![0u8; 1024];
        // SAFETY: the entry reads `ptrs.len()` arguments whose types were checked above
        // against the kernel's parameters; buffer arguments carry their element counts
        // and every access through them is bounds-checked; `msg` has the stated capacity.
        let rc = unsafe {
            (k.entry)(
                &l,
                ptrs.as_ptr(),
                msg.as_mut_ptr() as *mut c_char,
                msg.len() as u64,
            )
        };
        if rc != 0 {
            let end = msg.iter().position(|&c| c == 0).unwrap_or(msg.len());
            return Err(kernel_err(
                kernel,
                String::from_utf8_lossy(&msg[..end]).into_owned(),
            ));
        }
        Ok(())
    }

    unsafe fn gemm(
        &self,
        g: Gemm,
        a: (&DevBuf<f32>, usize),
        b: (&DevBuf<f32>, usize),
        c: (&mut DevBuf<f32>, usize),
    ) -> Result<()> {
        let (av, bv) = (host("gemm", a.0)?.as_slice(), host("gemm", b.0)?.as_slice());
        let cv = host_mut("gemm", c.0)?.as_mut_slice();
        sgemm(g, (av, a.1), (bv, b.1), (cv, c.1))
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
}

/// cuBLAS's `Sgemm(Strided)Batched` with alpha 1, beta 0 or 1, by definition:
/// `C(i,j) = sum_p op(A)(i,p) op(B)(p,j) (+ C(i,j))`, element `(r,c)` of a stored matrix at
/// `r + c*ld`, matrix `t` of a batch `stride` elements after matrix `t-1`. Arguments
/// cuBLAS rejects are errors; a read or write outside a buffer names the operand.
pub(crate) fn sgemm(
    g: Gemm,
    a: (&[f32], usize),
    b: (&[f32], usize),
    c: (&mut [f32], usize),
) -> Result<()> {
    let err = |msg: String| Error::Kernel {
        kernel: "cublasSgemmStridedBatched",
        msg,
    };
    let (m, n, k) = (g.m as i64, g.n as i64, g.k as i64);
    let rows_a = if g.transa { k } else { m };
    let rows_b = if g.transb { n } else { k };
    if m < 0 || n < 0 || k < 0 || g.batch < 0 {
        return Err(err(format!("negative size in {g:?}")));
    }
    if i64::from(g.lda) < rows_a.max(1)
        || i64::from(g.ldb) < rows_b.max(1)
        || i64::from(g.ldc) < m.max(1)
    {
        return Err(err(format!(
            "leading dimension too small (CUBLAS_STATUS_INVALID_VALUE): {g:?}"
        )));
    }
    let at = |buf: &[f32], base: usize, what: &str, idx: i64| -> Result<f32> {
        usize::try_from(idx)
            .ok()
            .and_then(|i| buf.get(base.checked_add(i)?).copied())
            .ok_or_else(|| {
                err(format!(
                    "{what} read out of bounds at element {idx} (+{base}) of {}",
                    buf.len()
                ))
            })
    };
    for t in 0..i64::from(g.batch) {
        // (checked: a stride near i64::MAX is an out-of-bounds error, not an overflow;
        // a saturated index below is past every buffer)
        let offsets = (
            t.checked_mul(g.stride_a),
            t.checked_mul(g.stride_b),
            t.checked_mul(g.stride_c),
        );
        let (Some(oa), Some(ob), Some(oc)) = offsets else {
            return Err(err(format!("matrix {t}'s offset overflows in {g:?}")));
        };
        for j in 0..n {
            for i in 0..m {
                let mut acc = 0.0f32;
                for p in 0..k {
                    let ai = if g.transa {
                        p + i * i64::from(g.lda)
                    } else {
                        i + p * i64::from(g.lda)
                    };
                    let bi = if g.transb {
                        j + p * i64::from(g.ldb)
                    } else {
                        p + j * i64::from(g.ldb)
                    };
                    acc += at(a.0, a.1, "A", oa.saturating_add(ai))?
                        * at(b.0, b.1, "B", ob.saturating_add(bi))?;
                }
                let ci = oc.saturating_add(i + j * i64::from(g.ldc));
                let len = c.0.len();
                let slot = usize::try_from(ci)
                    .ok()
                    .and_then(|x| c.0.get_mut(c.1.checked_add(x)?))
                    .ok_or_else(|| {
                        err(format!(
                            "C written out of bounds at element {ci} (+{}) of {len}",
                            c.1
                        ))
                    })?;
                *slot = if g.accumulate { *slot + acc } else { acc };
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
