// Fused softmax cross-entropy: per row the softmax probabilities and the row's loss
// (one block per row, shared-memory trees for the row's max and sum), and the backward
// g (p - onehot(t)) / rows. Targets were checked to lie in [0, classes) by the caller.

#define NN_XENT_THREADS 256

extern "C" __global__ void nn_softmax_xent_f32(u64 rows, u64 classes, const float* x, const i64* t,
                                               float* probs, float* row_loss) {
    __shared__ float sh[NN_XENT_THREADS];
    for (u64 r = blockIdx.x; r < rows; r += gridDim.x) {
        u64 base = r * classes;
        float m = -nn_inf();
        for (u64 c = threadIdx.x; c < classes; c += blockDim.x) m = fmaxf(m, x[base + c]);
        sh[threadIdx.x] = m;
        __syncthreads();
        for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
            if (threadIdx.x < s) sh[threadIdx.x] = fmaxf(sh[threadIdx.x], sh[threadIdx.x + s]);
            __syncthreads();
        }
        m = sh[0];
        __syncthreads();
        float sum = 0.0f;
        for (u64 c = threadIdx.x; c < classes; c += blockDim.x) {
            float e = expf(x[base + c] - m);
            probs[base + c] = e;
            sum += e;
        }
        sh[threadIdx.x] = sum;
        __syncthreads();
        for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
            if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
            __syncthreads();
        }
        sum = sh[0];
        float inv = 1.0f / sum;
        for (u64 c = threadIdx.x; c < classes; c += blockDim.x) probs[base + c] *= inv;
        if (threadIdx.x == 0) row_loss[r] = m + logf(sum) - x[base + (u64)t[r]];
        __syncthreads();
    }
}

// g[0] is the loss's gradient (one element).
extern "C" __global__ void nn_xent_backward_f32(u64 n, u64 rows, u64 classes, const float* p,
                                                const i64* t, const float* g, float* y) {
    NN_GRID_STRIDE(i, n) {
        float k = g[0] / (float)rows;
        u64 r = i / classes;
        float v = k * p[i];
        y[i] = (u64)t[r] == i % classes ? v - k : v;
    }
}
