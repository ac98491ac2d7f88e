// Elementwise kernels: unary math, binary arithmetic and comparisons with broadcasting,
// where, casts. Op codes follow the order of nn_core::backend::{UnaryOp, BinaryOp}.

__device__ __forceinline__ float nn_unary(int op, float v, float p0, float p1) {
    switch (op) {
        case 0: return -v;
        case 1: return expf(v);
        case 2: return logf(v);
        case 3: return fabsf(v);
        case 4: return sqrtf(v);
        case 5: return v > 0.0f ? v : 0.0f;                       // relu (NaN -> 0, as on the CPU)
        case 6: return 1.0f / (1.0f + expf(-v));                  // sigmoid
        case 7: return tanhf(v);
        case 8: return v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : 0.0f); // sign
        case 9: return v > 0.0f ? 1.0f : 0.0f;                    // step
        case 10: return p0 == 2.0f ? v * v : powf(v, p0);         // powf
        case 11: return v * p0 + p1;                              // affine
        case 12: return erff(v);
        default: return v;
    }
}

extern "C" __global__ void nn_unary_f32(u64 n, int op, float p0, float p1, const float* x, float* y) {
    NN_GRID_STRIDE(i, n) { y[i] = nn_unary(op, x[i], p0, p1); }
}

__device__ __forceinline__ float nn_arith_f32(int op, float a, float b) {
    switch (op) {
        case 0: return a + b;
        case 1: return a - b;
        case 2: return a * b;
        case 3: return a / b;
        case 4: return fmaxf(a, b); // NaN-ignoring, like f32::max
        case 5: return fminf(a, b);
        default: return 0.0f;
    }
}

// Signed overflow is undefined in C++: wrap through unsigned, like Rust's wrapping ops.
__device__ __forceinline__ i64 nn_arith_i64(int op, i64 a, i64 b) {
    u64 ua = (u64)a, ub = (u64)b;
    switch (op) {
        case 0: return (i64)(ua + ub);
        case 1: return (i64)(ua - ub);
        case 2: return (i64)(ua * ub);
        case 3: return (b == 0 || (a == NN_I64_MIN && b == -1)) ? 0 : a / b; // checked_div or 0
        case 4: return a > b ? a : b;
        case 5: return a < b ? a : b;
        default: return 0;
    }
}

template <typename T>
__device__ __forceinline__ i64 nn_cmp(int op, T a, T b) {
    switch (op) {
        case 6: return a == b;
        case 7: return a != b;
        case 8: return a < b;
        case 9: return a <= b;
        case 10: return a > b;
        case 11: return a >= b;
        default: return 0;
    }
}

// Operand 0 = a, operand 1 = b of the layout.
extern "C" __global__ void nn_binary_f32(u64 n, int op, Layout3 l, const float* a, const float* b, float* y) {
    NN_GRID_STRIDE(i, n) {
        u64 oa, ob, unused;
        nn_off3(l, i, oa, ob, unused);
        y[i] = nn_arith_f32(op, a[oa], b[ob]);
    }
}

extern "C" __global__ void nn_cmp_f32(u64 n, int op, Layout3 l, const float* a, const float* b, i64* y) {
    NN_GRID_STRIDE(i, n) {
        u64 oa, ob, unused;
        nn_off3(l, i, oa, ob, unused);
        y[i] = nn_cmp<float>(op, a[oa], b[ob]);
    }
}

extern "C" __global__ void nn_binary_i64(u64 n, int op, Layout3 l, const i64* a, const i64* b, i64* y) {
    NN_GRID_STRIDE(i, n) {
        u64 oa, ob, unused;
        nn_off3(l, i, oa, ob, unused);
        y[i] = op >= 6 ? nn_cmp<i64>(op, a[oa], b[ob]) : nn_arith_i64(op, a[oa], b[ob]);
    }
}

// Operand 0 = cond, 1 = a, 2 = b.
extern "C" __global__ void nn_where_f32(u64 n, Layout3 l, const i64* c, const float* a, const float* b, float* y) {
    NN_GRID_STRIDE(i, n) {
        u64 oc, oa, ob;
        nn_off3(l, i, oc, oa, ob);
        y[i] = c[oc] != 0 ? a[oa] : b[ob];
    }
}

extern "C" __global__ void nn_where_i64(u64 n, Layout3 l, const i64* c, const i64* a, const i64* b, i64* y) {
    NN_GRID_STRIDE(i, n) {
        u64 oc, oa, ob;
        nn_off3(l, i, oc, oa, ob);
        y[i] = c[oc] != 0 ? a[oa] : b[ob];
    }
}

// Saturating, NaN -> 0: the semantics of Rust's `as i64`.
extern "C" __global__ void nn_cast_f32_i64(u64 n, const float* x, i64* y) {
    NN_GRID_STRIDE(i, n) {
        float v = x[i];
        y[i] = nn_isnan(v) ? 0
             : v >= 9223372036854775807.0f ? NN_I64_MAX
             : v <= -9223372036854775808.0f ? NN_I64_MIN
             : (i64)v;
    }
}

extern "C" __global__ void nn_cast_i64_f32(u64 n, const i64* x, float* y) {
    NN_GRID_STRIDE(i, n) { y[i] = (float)x[i]; }
}

// ReLU's backward from its input (or output) x: g where x > 0, else 0 (as the CPU).
extern "C" __global__ void nn_relu_backward_f32(u64 n, const float* x, const float* g, float* y) {
    NN_GRID_STRIDE(i, n) { y[i] = x[i] > 0.0f ? g[i] : 0.0f; }
}

// ReLU's backward over rows x cols fused with the column sums of the result (a linear
// layer's bias gradient): one thread per column walks the rows.
extern "C" __global__ void nn_relu_backward_colsum_f32(u64 rows, u64 cols, const float* x, const float* g,
                                                       float* y, float* sums) {
    NN_GRID_STRIDE(c, cols) {
        float acc = 0.0f;
        for (u64 r = 0; r < rows; ++r) {
            u64 i = r * cols + c;
            float v = x[i] > 0.0f ? g[i] : 0.0f;
            y[i] = v;
            acc += v;
        }
        sums[c] = acc;
    }
}
