// Window gathers of convolutions and pooling: im2col (image -> columns) and its adjoint
// col2im (columns -> image, each image element summing the column elements read from it,
// so no atomics are needed).

// The image position (b, ch) and window (p, q) / output position (oi, oj) of column
// element i.
__device__ __forceinline__ void nn_col_pos(const Im2ColLayout& g, u64 i, u64& b, u64& ch,
                                           u64& p, u64& q, u64& oi, u64& oj) {
    oj = i % g.ow; i /= g.ow;
    oi = i % g.oh; i /= g.oh;
    if (g.batch_inner) {
        b = i % g.n; i /= g.n;
        q = i % g.kw; i /= g.kw;
        p = i % g.kh; ch = i / g.kh;
    } else {
        q = i % g.kw; i /= g.kw;
        p = i % g.kh; i /= g.kh;
        ch = i % g.c; b = i / g.c;
    }
}

extern "C" __global__ void nn_im2col_f32(u64 total, Im2ColLayout g, float pad, const float* x, float* y) {
    NN_GRID_STRIDE(i, total) {
        u64 b, ch, p, q, oi, oj;
        nn_col_pos(g, i, b, ch, p, q, oi, oj);
        i64 r = (i64)(oi * g.sh + p * g.dh) - (i64)g.pt;
        i64 s = (i64)(oj * g.sw + q * g.dw) - (i64)g.pl;
        bool inside = r >= 0 && r < (i64)g.h && s >= 0 && s < (i64)g.w;
        y[i] = inside ? x[((b * g.c + ch) * g.h + (u64)r) * g.w + (u64)s] : pad;
    }
}

extern "C" __global__ void nn_col2im_f32(u64 total, Im2ColLayout g, const float* cols, float* img) {
    NN_GRID_STRIDE(i, total) {
        u64 s = i % g.w;
        u64 t = i / g.w;
        u64 r = t % g.h;
        t /= g.h;
        u64 ch = t % g.c;
        u64 b = t / g.c;
        float acc = 0.0f;
        for (u64 p = 0; p < g.kh; ++p) {
            i64 np = (i64)(r + g.pt) - (i64)(p * g.dh);
            if (np < 0 || np % (i64)g.sh != 0) continue;
            u64 oi = (u64)np / g.sh;
            if (oi >= g.oh) continue;
            for (u64 q = 0; q < g.kw; ++q) {
                i64 nq = (i64)(s + g.pl) - (i64)(q * g.dw);
                if (nq < 0 || nq % (i64)g.sw != 0) continue;
                u64 oj = (u64)nq / g.sw;
                if (oj >= g.ow) continue;
                u64 ci = g.batch_inner
                    ? ((((ch * g.kh + p) * g.kw + q) * g.n + b) * g.oh + oi) * g.ow + oj
                    : ((((b * g.c + ch) * g.kh + p) * g.kw + q) * g.oh + oi) * g.ow + oj;
                acc += cols[ci];
            }
        }
        img[i] = acc;
    }
}
