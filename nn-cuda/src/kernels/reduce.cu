// Reductions: one block per output element (grid-stride over outputs), a strided loop
// over the reduced index space per thread, then a shared-memory tree. blockDim.x must be
// a power of two no larger than NN_RED_THREADS.

#define NN_RED_THREADS 256

// op: 0 sum, 1 max, 2 min. NaN propagates through max/min, as on the CPU.
__device__ __forceinline__ float nn_red_f32(int op, float acc, float v) {
    if (op == 0) return acc + v;
    if (op == 1) return (v > acc || nn_isnan(v)) ? v : acc;
    return (v < acc || nn_isnan(v)) ? v : acc;
}

__device__ __forceinline__ i64 nn_red_i64(int op, i64 acc, i64 v) {
    if (op == 0) return (i64)((u64)acc + (u64)v);
    if (op == 1) return v > acc ? v : acc;
    return v < acc ? v : acc;
}

extern "C" __global__ void nn_reduce_f32(u64 n_out, u64 n_red, int op, RedLayout l, const float* x, float* y) {
    __shared__ float sh[NN_RED_THREADS];
    const float init = op == 0 ? 0.0f : (op == 1 ? -nn_inf() : nn_inf());
    for (u64 o = blockIdx.x; o < n_out; o += gridDim.x) {
        u64 base = nn_off(l.nk, l.dk, l.sk, o);
        float acc = init;
        for (u64 r = threadIdx.x; r < n_red; r += blockDim.x) {
            acc = nn_red_f32(op, acc, x[base + nn_off(l.nr, l.dr, l.sr, r)]);
        }
        sh[threadIdx.x] = acc;
        __syncthreads();
        for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
            if (threadIdx.x < s) sh[threadIdx.x] = nn_red_f32(op, sh[threadIdx.x], sh[threadIdx.x + s]);
            __syncthreads();
        }
        if (threadIdx.x == 0) y[o] = sh[0];
        __syncthreads();
    }
}

extern "C" __global__ void nn_reduce_i64(u64 n_out, u64 n_red, int op, RedLayout l, const i64* x, i64* y) {
    __shared__ i64 sh[NN_RED_THREADS];
    const i64 init = op == 0 ? 0 : (op == 1 ? NN_I64_MIN : NN_I64_MAX);
    for (u64 o = blockIdx.x; o < n_out; o += gridDim.x) {
        u64 base = nn_off(l.nk, l.dk, l.sk, o);
        i64 acc = init;
        for (u64 r = threadIdx.x; r < n_red; r += blockDim.x) {
            acc = nn_red_i64(op, acc, x[base + nn_off(l.nr, l.dr, l.sr, r)]);
        }
        sh[threadIdx.x] = acc;
        __syncthreads();
        for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
            if (threadIdx.x < s) sh[threadIdx.x] = nn_red_i64(op, sh[threadIdx.x], sh[threadIdx.x + s]);
            __syncthreads();
        }
        if (threadIdx.x == 0) y[o] = sh[0];
        __syncthreads();
    }
}

// Whether candidate (bv, bi) beats (av, ai): the first NaN wins, else the larger value,
// ties to the smaller index (the CPU's first-maximum rule). Index -1 means "none yet".
__device__ __forceinline__ bool nn_arg_better(float bv, i64 bi, float av, i64 ai) {
    if (bi < 0) return false;
    if (ai < 0) return true;
    bool an = nn_isnan(av), bn = nn_isnan(bv);
    if (an || bn) return (an && bn) ? bi < ai : bn;
    if (bv > av) return true;
    return bv == av && bi < ai;
}

// One reduced axis: the reduced index r is the position along it.
extern "C" __global__ void nn_argmax_f32(u64 n_out, u64 n_red, RedLayout l, const float* x, i64* y) {
    __shared__ float sv[NN_RED_THREADS];
    __shared__ i64 si[NN_RED_THREADS];
    for (u64 o = blockIdx.x; o < n_out; o += gridDim.x) {
        u64 base = nn_off(l.nk, l.dk, l.sk, o);
        float bv = -nn_inf();
        i64 bi = -1;
        for (u64 r = threadIdx.x; r < n_red; r += blockDim.x) {
            float v = x[base + nn_off(l.nr, l.dr, l.sr, r)];
            if (nn_arg_better(v, (i64)r, bv, bi)) { bv = v; bi = (i64)r; }
        }
        sv[threadIdx.x] = bv;
        si[threadIdx.x] = bi;
        __syncthreads();
        for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
            if (threadIdx.x < s && nn_arg_better(sv[threadIdx.x + s], si[threadIdx.x + s], sv[threadIdx.x], si[threadIdx.x])) {
                sv[threadIdx.x] = sv[threadIdx.x + s];
                si[threadIdx.x] = si[threadIdx.x + s];
            }
            __syncthreads();
        }
        if (threadIdx.x == 0) y[o] = si[0] < 0 ? 0 : si[0];
        __syncthreads();
    }
}
