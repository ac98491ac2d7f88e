// Shared by every nn-cuda kernel module (prepended to each source before NVRTC).
// NVRTC has no system headers: fixed-width types and limits are spelled out here.
typedef unsigned long long u64;
typedef long long i64;

#define NN_MAX_DIMS 8
#define NN_I64_MIN ((i64)0x8000000000000000ULL)
#define NN_I64_MAX ((i64)0x7fffffffffffffffULL)

// Index space `dims` and, for up to three operands, their strides (0 = broadcast).
// Field order matches `nn_cuda::layout::Layout3`.
struct Layout3 {
    u64 ndim;
    u64 dims[NN_MAX_DIMS];
    u64 st[3][NN_MAX_DIMS];
};

// Kept dims (one output each) and reduced dims of a reduction.
// Field order matches `nn_cuda::layout::RedLayout`.
struct RedLayout {
    u64 nk;
    u64 dk[NN_MAX_DIMS];
    u64 sk[NN_MAX_DIMS];
    u64 nr;
    u64 dr[NN_MAX_DIMS];
    u64 sr[NN_MAX_DIMS];
};

// Offset of row-major linear index `i` in a strided view.
__device__ __forceinline__ u64 nn_off(u64 nd, const u64* dims, const u64* st, u64 i) {
    if (nd == 1) return i * st[0];
    u64 o = 0;
    for (int d = (int)nd - 1; d >= 0; --d) {
        o += (i % dims[d]) * st[d];
        i /= dims[d];
    }
    return o;
}

// Offsets of linear index `i` in the three operands of `l`.
__device__ __forceinline__ void nn_off3(const Layout3& l, u64 i, u64& o0, u64& o1, u64& o2) {
    if (l.ndim == 1) {
        o0 = i * l.st[0][0];
        o1 = i * l.st[1][0];
        o2 = i * l.st[2][0];
        return;
    }
    o0 = 0; o1 = 0; o2 = 0;
    for (int d = (int)l.ndim - 1; d >= 0; --d) {
        u64 q = i % l.dims[d];
        i /= l.dims[d];
        o0 += q * l.st[0][d];
        o1 += q * l.st[1][d];
        o2 += q * l.st[2][d];
    }
}

__device__ __forceinline__ bool nn_isnan(float v) { return v != v; }
__device__ __forceinline__ float nn_inf() { return __int_as_float(0x7f800000); }

#define NN_GRID_STRIDE(i, n) \
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (u64)blockDim.x * gridDim.x)

// The window geometry of an im2col / col2im (all sizes in elements).
// Field order matches `nn_cuda::layout::Im2ColLayout`.
struct Im2ColLayout {
    u64 n, c, h, w;      // image [n, c, h, w]
    u64 kh, kw;          // window
    u64 sh, sw;          // stride (> 0)
    u64 pt, pl;          // padding before (top, left)
    u64 dh, dw;          // dilation
    u64 oh, ow;          // output positions
    u64 batch_inner;     // columns [c, kh, kw, n, oh, ow] when 1, [n, c, kh, kw, oh, ow] when 0
};
