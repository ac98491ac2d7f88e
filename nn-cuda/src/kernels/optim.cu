// Fused optimizer updates: one kernel per parameter and step, reading and writing each
// element of the parameter, its gradient and its state once. The formulas (and their
// f32 operation order) match nn-core's CPU loops in `cpu/optim.rs`, which follow PyTorch.

// SGD with optional momentum buffer `buf` (null when has_buf == 0). `first` marks the
// step that creates the buffer: it is overwritten with the gradient, not read.
extern "C" __global__ void nn_sgd_step_f32(u64 n, float lr, float wd, float mom, float damp,
                                           int nesterov, int first, int has_buf,
                                           float* p, const float* g, float* buf) {
    NN_GRID_STRIDE(i, n) {
        float pi = p[i];
        float d = wd != 0.0f ? g[i] + wd * pi : g[i];
        if (has_buf) {
            float b = first ? d : buf[i] * mom + damp * d;
            buf[i] = b;
            d = nesterov ? d + mom * b : b;
        }
        p[i] = pi + -lr * d;
    }
}

// Adam (bias-corrected, L2 weight decay), moments `m` and `v` updated in place.
extern "C" __global__ void nn_adam_step_f32(u64 n, float one_minus_b1, float b2,
                                            float one_minus_b2, float bc2_sqrt,
                                            float neg_step_size, float eps, float wd,
                                            float* p, const float* g, float* m, float* v) {
    NN_GRID_STRIDE(i, n) {
        float pi = p[i];
        float gi = wd != 0.0f ? g[i] + wd * pi : g[i];
        float mi = m[i];
        mi += one_minus_b1 * (gi - mi);
        float vi = v[i] * b2 + one_minus_b2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        p[i] = pi + neg_step_size * mi / denom;
    }
}
