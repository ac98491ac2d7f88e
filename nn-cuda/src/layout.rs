//! Host-side index layouts passed to kernels by value: broadcast strides of up to three
//! operands, and the kept/reduced split of a reduction, with dims merged where possible
//! so kernels do as little index arithmetic as they can.

use crate::error::{Error, Result};
use cudarc::driver::DeviceRepr;
use nn_core::shape::{broadcast_strides, strides};

/// Most dims a kernel layout holds (after merging).
pub const MAX_DIMS: usize = 8;

/// Dims of an index space and, for up to three operands, the element stride of each dim
/// (0 where an operand is broadcast). Mirrors `struct Layout3` in the kernel prelude.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Layout3 {
    /// Number of dims in use (at least 1).
    pub ndim: u64,
    /// Dim sizes, outermost first.
    pub dims: [u64; MAX_DIMS],
    /// Per-operand strides.
    pub st: [[u64; MAX_DIMS]; 3],
}

// SAFETY: `Layout3` is `repr(C)`, made only of `u64`s (no padding, no pointers), and its
// field order matches `struct Layout3` in `kernels/prelude.cuh`.
unsafe impl DeviceRepr for Layout3 {}

/// A reduction's index spaces: `k*` for the kept dims (one output each), `r*` for the
/// reduced dims. Mirrors `struct RedLayout` in the kernel prelude.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedLayout {
    /// Number of kept dims (0 when everything is reduced).
    pub nk: u64,
    /// Kept dim sizes.
    pub dk: [u64; MAX_DIMS],
    /// Kept dim strides in the input.
    pub sk: [u64; MAX_DIMS],
    /// Number of reduced dims (0 when the reduced size is 1).
    pub nr: u64,
    /// Reduced dim sizes.
    pub dr: [u64; MAX_DIMS],
    /// Reduced dim strides in the input.
    pub sr: [u64; MAX_DIMS],
}

// SAFETY: `RedLayout` is `repr(C)`, made only of `u64`s, and its field order matches
// `struct RedLayout` in `kernels/prelude.cuh`.
unsafe impl DeviceRepr for RedLayout {}

/// The window geometry of an im2col / col2im, as the kernels read it. Mirrors
/// `struct Im2ColLayout` in the kernel prelude.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Im2ColLayout {
    /// Samples.
    pub n: u64,
    /// Channels.
    pub c: u64,
    /// Image height.
    pub h: u64,
    /// Image width.
    pub w: u64,
    /// Window height.
    pub kh: u64,
    /// Window width.
    pub kw: u64,
    /// Vertical step (positive).
    pub sh: u64,
    /// Horizontal step (positive).
    pub sw: u64,
    /// Padding above.
    pub pt: u64,
    /// Padding on the left.
    pub pl: u64,
    /// Vertical tap spacing.
    pub dh: u64,
    /// Horizontal tap spacing.
    pub dw: u64,
    /// Output rows.
    pub oh: u64,
    /// Output columns.
    pub ow: u64,
    /// 1: columns `[c, kh, kw, n, oh, ow]`; 0: `[n, c, kh, kw, oh, ow]`.
    pub batch_inner: u64,
}

// SAFETY: `Im2ColLayout` is `repr(C)`, made only of `u64`s, and its field order matches
// `struct Im2ColLayout` in `kernels/prelude.cuh`.
unsafe impl DeviceRepr for Im2ColLayout {}

impl Im2ColLayout {
    /// The layout of `spec`, after checking what the kernels rely on: a positive
    /// stride, image and column sizes that fit `usize`, window positions that do not
    /// overflow. Returns it with the image and column lengths.
    pub fn new(
        op: &'static str,
        spec: &nn_core::backend::Im2ColSpec,
    ) -> Result<(Im2ColLayout, usize, usize)> {
        let [h, w] = spec.input;
        let [kh, kw] = spec.kernel;
        let [oh, ow] = spec.output;
        let bad = |msg: &str| Error::Unsupported {
            op,
            msg: format!("{msg}: {spec:?}"),
        };
        let prod = |v: &[usize]| v.iter().try_fold(1usize, |a, &b| a.checked_mul(b));
        let image =
            prod(&[spec.batch, spec.channels, h, w]).ok_or_else(|| bad("image size overflows"))?;
        let cols = prod(&[spec.batch, spec.channels, kh, kw, oh, ow])
            .ok_or_else(|| bad("column size overflows"))?;
        if spec.stride.contains(&0) {
            return Err(bad("stride must be positive"));
        }
        for d in 0..2 {
            let far = spec.output[d]
                .saturating_sub(1)
                .checked_mul(spec.stride[d])
                .and_then(|a| {
                    spec.kernel[d]
                        .saturating_sub(1)
                        .checked_mul(spec.dilation[d])
                        .and_then(|b| a.checked_add(b))
                })
                .and_then(|f| f.checked_add(spec.input[d] + spec.padding[d][0]))
                .filter(|&f| f < i64::MAX as usize);
            if far.is_none() {
                return Err(bad("window positions overflow"));
            }
        }
        let u = |v: usize| v as u64;
        let l = Im2ColLayout {
            n: u(spec.batch),
            c: u(spec.channels),
            h: u(h),
            w: u(w),
            kh: u(kh),
            kw: u(kw),
            sh: u(spec.stride[0]),
            sw: u(spec.stride[1]),
            pt: u(spec.padding[0][0]),
            pl: u(spec.padding[1][0]),
            dh: u(spec.dilation[0]),
            dw: u(spec.dilation[1]),
            oh: u(oh),
            ow: u(ow),
            batch_inner: u64::from(spec.batch_inner),
        };
        Ok((l, image, cols))
    }
}

/// Drops size-1 dims and merges neighbours that are contiguous in every operand
/// (`st[i] == st[i+1] * dims[i+1]`). Returns the merged dims and strides.
pub fn collapse(dims: &[usize], st: &[&[usize]]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut od: Vec<usize> = Vec::with_capacity(dims.len());
    let mut os: Vec<Vec<usize>> = vec![Vec::with_capacity(dims.len()); st.len()];
    for (i, &d) in dims.iter().enumerate() {
        if d == 1 {
            continue;
        }
        let mergeable = od.last().is_some_and(|_| {
            os.iter()
                .zip(st)
                .all(|(o, s)| o.last().is_some_and(|&prev| prev == s[i] * d))
        });
        if mergeable {
            if let Some(last) = od.last_mut() {
                *last *= d;
            }
            for (o, s) in os.iter_mut().zip(st) {
                if let Some(last) = o.last_mut() {
                    *last = s[i];
                }
            }
        } else {
            od.push(d);
            for (o, s) in os.iter_mut().zip(st) {
                o.push(s[i]);
            }
        }
    }
    (od, os)
}

fn too_many(op: &'static str, n: usize) -> Error {
    Error::Unsupported {
        op,
        msg: format!("{n} non-mergeable dims; the CUDA kernels handle at most {MAX_DIMS}"),
    }
}

impl Layout3 {
    /// The layout of operands of shapes `shapes` broadcast to `out` (operand `j` gets
    /// strides `st[j]`); unused operand slots get stride 0.
    pub fn broadcast(op: &'static str, out: &[usize], shapes: &[&[usize]]) -> Result<Layout3> {
        let sts: Vec<Vec<usize>> = shapes
            .iter()
            .map(|s| broadcast_strides(s, out).to_vec())
            .collect();
        let refs: Vec<&[usize]> = sts.iter().map(Vec::as_slice).collect();
        Self::from_strides(op, out, &refs)
    }

    /// The layout of an index space `dims` with explicit per-operand strides.
    pub fn from_strides(op: &'static str, dims: &[usize], st: &[&[usize]]) -> Result<Layout3> {
        let (d, s) = collapse(dims, st);
        let mut l = Layout3 {
            ndim: 1,
            dims: [1; MAX_DIMS],
            ..Default::default()
        };
        if d.is_empty() {
            return Ok(l);
        }
        if d.len() > MAX_DIMS || st.len() > 3 {
            return Err(too_many(op, d.len()));
        }
        l.ndim = d.len() as u64;
        for (i, &x) in d.iter().enumerate() {
            l.dims[i] = x as u64;
        }
        for (j, sj) in s.iter().enumerate() {
            for (i, &x) in sj.iter().enumerate() {
                l.st[j][i] = x as u64;
            }
        }
        Ok(l)
    }
}

impl RedLayout {
    /// The split of a contiguous `shape` into kept dims and reduced `axes`.
    pub fn new(op: &'static str, shape: &[usize], axes: &[usize]) -> Result<RedLayout> {
        let st = strides(shape);
        let (mut kd, mut ks, mut rd, mut rs) = (vec![], vec![], vec![], vec![]);
        for (i, &d) in shape.iter().enumerate() {
            if axes.contains(&i) {
                rd.push(d);
                rs.push(st[i]);
            } else {
                kd.push(d);
                ks.push(st[i]);
            }
        }
        let (kd, ks) = collapse(&kd, &[&ks]);
        let (rd, rs) = collapse(&rd, &[&rs]);
        if kd.len() > MAX_DIMS {
            return Err(too_many(op, kd.len()));
        }
        if rd.len() > MAX_DIMS {
            return Err(too_many(op, rd.len()));
        }
        let mut l = RedLayout {
            nk: kd.len() as u64,
            nr: rd.len() as u64,
            ..Default::default()
        };
        for (i, (&d, &s)) in kd.iter().zip(&ks[0]).enumerate() {
            l.dk[i] = d as u64;
            l.sk[i] = s as u64;
        }
        for (i, (&d, &s)) in rd.iter().zip(&rs[0]).enumerate() {
            l.dr[i] = d as u64;
            l.sr[i] = s as u64;
        }
        Ok(l)
    }
}

/// The copy `permute` does: the index space is the output; operand 0 addresses the
/// source, operand 1 the (contiguous) output.
pub fn permute(shape: &[usize], perm: &[usize]) -> Result<Layout3> {
    let st = strides(shape);
    let out: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let src: Vec<usize> = perm.iter().map(|&p| st[p]).collect();
    Layout3::from_strides("permute", &out, &[&src, &strides(&out)])
}

/// The copy `narrow` does: the layout, the source offset in elements, the output shape.
pub fn narrow(
    shape: &[usize],
    axis: usize,
    start: usize,
    len: usize,
) -> Result<(Layout3, usize, Vec<usize>)> {
    let mut out = shape.to_vec();
    out[axis] = len;
    let st = strides(shape);
    let l = Layout3::from_strides("narrow", &out, &[&st, &strides(&out)])?;
    // (strides of a shape with a zero dim may wrap, as `strides` documents: the offset
    // then addresses nothing; for any other shape it is below the element count)
    Ok((l, start.wrapping_mul(st[axis]), out))
}

/// The copy of one `cat` part of shape `part` into `out`, starting `at` along `axis`:
/// the layout and the destination offset in elements.
pub fn cat_part(part: &[usize], out: &[usize], axis: usize, at: usize) -> Result<(Layout3, usize)> {
    let ost = strides(out);
    let l = Layout3::from_strides("cat", part, &[&strides(part), &ost])?;
    // (as in `narrow`: only a shape with a zero dim can wrap, and it addresses nothing)
    Ok((l, at.wrapping_mul(ost[axis])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nn_core::shape::numel;
    use nn_core::Tensor;

    /// What `nn_copy_*` does, run serially: `y[dst_off + off1(i)] = x[src_off + off0(i)]`.
    fn emulate_copy(
        l: &Layout3,
        n: usize,
        x: &[f32],
        src_off: usize,
        y: &mut [f32],
        dst_off: usize,
    ) {
        for i in 0..n as u64 {
            let o0 = off(l.ndim, &l.dims, &l.st[0], i) as usize;
            let o1 = off(l.ndim, &l.dims, &l.st[1], i) as usize;
            y[dst_off + o1] = x[src_off + o0];
        }
    }

    fn data(shape: &[usize]) -> Vec<f32> {
        (0..numel(shape)).map(|v| v as f32).collect()
    }

    /// The permute, narrow and cat layouts reproduce the CPU backend's results.
    #[test]
    fn copy_layouts_match_the_cpu_backend() -> nn_core::Result<()> {
        let shape = [2usize, 3, 4, 5];
        let x = data(&shape);
        let t = Tensor::from_vec(x.clone(), &shape)?;
        for perm in [[3usize, 1, 0, 2], [0, 2, 1, 3], [1, 0, 2, 3], [3, 2, 1, 0]] {
            let l = permute(&shape, &perm).map_err(|e| e.into_core("test"))?;
            let mut y = vec![0.0; x.len()];
            emulate_copy(&l, x.len(), &x, 0, &mut y, 0);
            assert_eq!(y, t.permute(&perm)?.to_vec::<f32>()?, "permute {perm:?}");
        }
        for (axis, start, len) in [(0usize, 1usize, 1usize), (1, 1, 2), (2, 0, 3), (3, 2, 3)] {
            let (l, src, out) =
                narrow(&shape, axis, start, len).map_err(|e| e.into_core("test"))?;
            let mut y = vec![0.0; numel(&out)];
            emulate_copy(&l, y.len(), &x, src, &mut y, 0);
            let want = t.narrow(axis as isize, start, len)?.to_vec::<f32>()?;
            assert_eq!(y, want, "narrow {axis} {start} {len}");
        }
        for axis in 0..4 {
            let mut other = shape.to_vec();
            other[axis] = 2;
            let o = data(&other).iter().map(|v| -v).collect::<Vec<f32>>();
            let mut out = shape.to_vec();
            out[axis] += 2;
            let mut y = vec![0.0; numel(&out)];
            let (l, d) = cat_part(&shape, &out, axis, 0).map_err(|e| e.into_core("test"))?;
            emulate_copy(&l, x.len(), &x, 0, &mut y, d);
            let (l, d) =
                cat_part(&other, &out, axis, shape[axis]).map_err(|e| e.into_core("test"))?;
            emulate_copy(&l, o.len(), &o, 0, &mut y, d);
            let want = Tensor::cat(&[t.clone(), Tensor::from_vec(o, &other)?], axis as isize)?;
            assert_eq!(y, want.to_vec::<f32>()?, "cat {axis}");
        }
        Ok(())
    }

    /// The offset the kernels compute for linear index `i` (the prelude's `nn_off`).
    fn off(nd: u64, dims: &[u64], st: &[u64], mut i: u64) -> u64 {
        let mut o = 0;
        for d in (0..nd as usize).rev() {
            o += (i % dims[d]) * st[d];
            i /= dims[d];
        }
        o
    }

    #[test]
    fn contiguous_and_scalar_collapse_to_one_dim() -> Result<()> {
        let l = Layout3::broadcast("t", &[4, 5, 6], &[&[4, 5, 6], &[1]])?;
        assert_eq!((l.ndim, l.dims[0], l.st[0][0], l.st[1][0]), (1, 120, 1, 0));
        let s = Layout3::broadcast("t", &[], &[&[], &[]])?;
        assert_eq!((s.ndim, s.dims[0], s.st[0][0]), (1, 1, 0));
        Ok(())
    }

    #[test]
    fn broadcast_offsets_match_row_major_indexing() -> Result<()> {
        let (out, a, b) = ([2usize, 3, 4], [3usize, 1], [2usize, 1, 4]);
        let l = Layout3::broadcast("t", &out, &[&a, &b])?;
        let mut i = 0u64;
        for x in 0..2u64 {
            for y in 0..3u64 {
                for z in 0..4u64 {
                    assert_eq!(off(l.ndim, &l.dims, &l.st[0], i), y);
                    assert_eq!(off(l.ndim, &l.dims, &l.st[1], i), x * 4 + z);
                    i += 1;
                }
            }
        }
        Ok(())
    }

    #[test]
    fn reduce_split() -> Result<()> {
        // [2, 3, 4] reduced over axes 0 and 2: kept dim 1 (stride 4), reduced 0 and 2
        let l = RedLayout::new("t", &[2, 3, 4], &[0, 2])?;
        assert_eq!((l.nk, l.dk[0], l.sk[0]), (1, 3, 4));
        assert_eq!(
            (l.nr, &l.dr[..2], &l.sr[..2]),
            (2, &[2u64, 4][..], &[12u64, 1][..])
        );
        // all axes of a contiguous tensor merge into one reduced dim
        let l = RedLayout::new("t", &[2, 3, 4], &[0, 1, 2])?;
        assert_eq!((l.nk, l.nr, l.dr[0], l.sr[0]), (0, 1, 24, 1));
        Ok(())
    }

    #[test]
    fn too_many_dims_is_an_error() {
        // alternating broadcast pattern cannot merge
        let out = [2usize; 10];
        let a: Vec<usize> = (0..10).map(|i| if i % 2 == 0 { 2 } else { 1 }).collect();
        assert!(Layout3::broadcast("t", &out, &[&a]).is_err());
    }
}
