// Kernels that exercise the host runtime itself (its tests only; never compiled by NVRTC):
// a block-wide exchange through shared memory, which needs a real barrier, and a barrier
// only part of the block reaches, which the runtime must report.

extern "C" __global__ void nn_probe_reverse(u64 n, const float* x, float* y) {
    __shared__ float sh[256];
    u64 t = threadIdx.x;
    if (t < n) sh[t] = x[t] * 2.0f;
    __syncthreads();
    if (t < n) y[t] = sh[n - 1 - t];
}

extern "C" __global__ void nn_probe_divergent(float* y) {
    if (threadIdx.x < 16) __syncthreads();
    y[threadIdx.x] = 1.0f;
}

// Every thread writes element 0 without an atomic: a race the runtime must report.
extern "C" __global__ void nn_probe_race(float* y) {
    y[0] = (float)threadIdx.x;
}
