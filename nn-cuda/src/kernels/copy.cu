// Data movement: strided copies (permute, narrow, cat), gathers (index_select) and their
// adjoint scatter-add (index_add).

// y[offset1(i)] = x[offset0(i)]
extern "C" __global__ void nn_copy_f32(u64 n, Layout3 l, const float* x, float* y) {
    NN_GRID_STRIDE(i, n) {
        u64 ox, oy, unused;
        nn_off3(l, i, ox, oy, unused);
        y[oy] = x[ox];
    }
}

extern "C" __global__ void nn_copy_i64(u64 n, Layout3 l, const i64* x, i64* y) {
    NN_GRID_STRIDE(i, n) {
        u64 ox, oy, unused;
        nn_off3(l, i, ox, oy, unused);
        y[oy] = x[ox];
    }
}

// Output [outer, k, inner] from input [outer, d, inner]; indices already checked in [0, d).
template <typename T>
__device__ __forceinline__ void nn_index_select(u64 n, u64 k, u64 d, u64 inner, const i64* idx, const T* x, T* y) {
    NN_GRID_STRIDE(i, n) {
        u64 j = i % inner;
        u64 t = i / inner;
        u64 r = t % k;
        u64 o = t / k;
        y[i] = x[(o * d + (u64)idx[r]) * inner + j];
    }
}

extern "C" __global__ void nn_index_select_f32(u64 n, u64 k, u64 d, u64 inner, const i64* idx, const float* x, float* y) {
    nn_index_select<float>(n, k, d, inner, idx, x, y);
}

extern "C" __global__ void nn_index_select_i64(u64 n, u64 k, u64 d, u64 inner, const i64* idx, const i64* x, i64* y) {
    nn_index_select<i64>(n, k, d, inner, idx, x, y);
}

// y (zeroed, [outer, d_out, inner]) += x ([outer, k, inner]) scattered at idx along the middle dim.
extern "C" __global__ void nn_index_add_f32(u64 n, u64 k, u64 d_out, u64 inner, const i64* idx, const float* x, float* y) {
    NN_GRID_STRIDE(i, n) {
        u64 j = i % inner;
        u64 t = i / inner;
        u64 r = t % k;
        u64 o = t / k;
        atomicAdd(&y[(o * d_out + (u64)idx[r]) * inner + j], x[i]);
    }
}

// Indices in [-size, size) mapped to [0, size) (negative ones count from the end);
// status[0] (preset to all ones) gets the smallest position of an index out of range.
extern "C" __global__ void nn_check_indices(u64 n, i64 size, const i64* idx, i64* fixed, i64* status) {
    NN_GRID_STRIDE(i, n) {
        i64 v = idx[i];
        i64 j = v < 0 ? v + size : v;
        bool ok = j >= 0 && j < size;
        fixed[i] = ok ? j : 0;
        if (!ok) atomicMin((unsigned long long*)&status[0], (unsigned long long)i);
    }
}
