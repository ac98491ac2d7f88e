//! Launchers of `conv.cu`: im2col (the window gather of convolutions and pooling) and its
//! adjoint col2im.

use super::{grid, KernelModule};
use crate::error::Result;
use crate::layout::Im2ColLayout;
use crate::runtime::{Arg, DevBuf, Driver, Runtime};

const IM2COL_F32: &str = "nn_im2col_f32";
const COL2IM_F32: &str = "nn_col2im_f32";

/// The window-gather kernel module.
pub static MODULE: KernelModule = KernelModule {
    name: "conv",
    src: include_str!("conv.cu"),
    kernels: &[IM2COL_F32, COL2IM_F32],
};

/// The `cols` columns of image `x` under `g` (`pad` read outside the image).
pub(crate) fn im2col_f32(
    rt: &Runtime,
    g: &Im2ColLayout,
    pad: f32,
    x: &DevBuf<f32>,
    cols: usize,
) -> Result<DevBuf<f32>> {
    let mut y = rt.alloc::<f32>(cols, false)?;
    if cols == 0 {
        return Ok(y);
    }
    let mut args = [
        Arg::U64(cols as u64),
        Arg::Im2Col(g),
        Arg::F32(pad),
        Arg::F32s(x, 0),
        Arg::F32sMut(&mut y, 0),
    ];
    // SAFETY: the arguments match `nn_im2col_f32(u64, Im2ColLayout, float, const float*,
    // float*)`; `g` was checked against the spec whose image `x` holds, so every read
    // inside the image is in bounds, and `y` holds the `cols` outputs.
    unsafe { rt.launch(&MODULE, IM2COL_F32, grid(cols), &mut args) }?;
    Ok(y)
}

/// The image (`image` elements) with every column element of `c` added where it was
/// read from.
pub(crate) fn col2im_f32(
    rt: &Runtime,
    g: &Im2ColLayout,
    c: &DevBuf<f32>,
    image: usize,
) -> Result<DevBuf<f32>> {
    let mut y = rt.alloc::<f32>(image, true)?;
    if image == 0 {
        return Ok(y);
    }
    let mut args = [
        Arg::U64(image as u64),
        Arg::Im2Col(g),
        Arg::F32s(c, 0),
        Arg::F32sMut(&mut y, 0),
    ];
    // SAFETY: the arguments match `nn_col2im_f32(u64, Im2ColLayout, const float*,
    // float*)`; every column index the kernel forms is a valid position of the
    // `[.., oh, ow]` columns `c` holds, and `y` holds the `image` outputs.
    unsafe { rt.launch(&MODULE, COL2IM_F32, grid(image), &mut args) }?;
    Ok(y)
}
