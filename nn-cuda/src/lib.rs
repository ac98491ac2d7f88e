//! nn-cuda: the CUDA backend for `nn`, on cudarc.
