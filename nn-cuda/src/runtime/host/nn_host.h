// What nn-cuda's kernels use of CUDA, for the host runtime (tests only): the kernel
// sources are compiled as C++ after this header. Each CUDA thread of a block is a fiber
// (ucontext) of one OS thread; `__syncthreads` switches to the block's scheduler, which
// resumes the next fiber, so a block's threads run concurrently and meet at barriers.
// Pointer parameters become `nn_gptr<T>` (build.rs rewrites the signatures): every
// element access is bounds-checked against the allocation and reported with the
// kernel's and the parameter's names.
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__
// one block at a time per OS thread, and its threads are fibers of that OS thread
#define __shared__ static thread_local

struct nn_dim3 {
    unsigned x, y, z;
};
extern thread_local nn_dim3 threadIdx, blockIdx, blockDim, gridDim;
static const int warpSize = 32;

void __syncthreads();

// Records an out-of-bounds access (the first one of a launch) and returns a scratch
// element, so the kernel runs on without touching memory it does not own.
void* nn_oob(const char* param, unsigned long long index, unsigned long long len, int write);

// The writer record of a buffer a kernel may write: for each element, the tag (linear
// thread index + 1) of the thread that last wrote it in this launch (0: none yet).
unsigned* nn_shadow_for(const void* base, unsigned long long n);
// The calling thread's tag.
unsigned nn_thread_tag();
// Records two threads writing one element without an atomic (a race on a GPU).
void nn_race(const char* param, unsigned long long index, unsigned first, unsigned second);

// One element of a writable buffer: reads pass through; writes are checked against the
// element's last writer; taking the address (as atomics do) is not a tracked write.
template <typename T>
struct nn_ref {
    T* p;
    unsigned* w;
    const char* name;
    unsigned long long i;
    void note() const {
        if (w == nullptr) return;
        unsigned me = nn_thread_tag();
        if (w[i] != 0 && w[i] != me) nn_race(name, i, w[i], me);
        w[i] = me;
    }
    operator T() const { return *p; }
    const nn_ref& operator=(T v) const { note(); *p = v; return *this; }
    const nn_ref& operator=(const nn_ref& o) const { T v = *o.p; note(); *p = v; return *this; }
    const nn_ref& operator+=(T v) const { note(); *p += v; return *this; }
    const nn_ref& operator-=(T v) const { note(); *p -= v; return *this; }
    const nn_ref& operator*=(T v) const { note(); *p *= v; return *this; }
    const nn_ref& operator/=(T v) const { note(); *p /= v; return *this; }
    T* operator&() const { return p; }
};

// A writable buffer parameter.
template <typename T>
struct nn_gptr {
    T* p;
    unsigned long long n;
    const char* name;
    unsigned* w;
    nn_gptr(T* p_, unsigned long long n_, const char* name_)
        : p(p_), n(n_), name(name_), w(nn_shadow_for(p_, n_)) {}
    nn_ref<T> operator[](unsigned long long i) const {
        if (i >= n) return nn_ref<T>{(T*)nn_oob(name, i, n, 0), nullptr, name, 0};
        return nn_ref<T>{p + i, w, name, i};
    }
};

// A read-only buffer parameter.
template <typename T>
struct nn_gptr<const T> {
    const T* p;
    unsigned long long n;
    const char* name;
    template <typename U>
    nn_gptr(const nn_gptr<U>& o) : p(o.p), n(o.n), name(o.name) {}
    nn_gptr(const T* p_, unsigned long long n_, const char* name_) : p(p_), n(n_), name(name_) {}
    const T& operator[](unsigned long long i) const {
        if (i >= n) return *(const T*)nn_oob(name, i, n, 0);
        return p[i];
    }
};

inline float __int_as_float(int v) { float f; memcpy(&f, &v, 4); return f; }
inline int __float_as_int(float v) { int i; memcpy(&i, &v, 4); return i; }
inline float __expf(float v) { return expf(v); }
inline float __logf(float v) { return logf(v); }
inline float rsqrtf(float v) { return 1.0f / sqrtf(v); }
inline float __fdividef(float a, float b) { return a / b; }

// A launch runs on one OS thread, so atomics need no hardware support here.
inline float atomicAdd(float* a, float v) { float o = *a; *a = o + v; return o; }
inline long long atomicAdd(long long* a, long long v) {
    long long o = *a; *a = (long long)((unsigned long long)o + (unsigned long long)v); return o;
}
inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) {
    unsigned long long o = *a; *a = o + v; return o;
}
inline int atomicAdd(int* a, int v) { int o = *a; *a = o + v; return o; }
inline unsigned long long atomicMin(unsigned long long* a, unsigned long long v) {
    unsigned long long o = *a; if (v < o) *a = v; return o;
}
inline float atomicMax(float* a, float v) { float o = *a; if (v > o) *a = v; return o; }
inline int atomicCAS(int* a, int cmp, int v) { int o = *a; if (o == cmp) *a = v; return o; }

// The grid and block of a launch, as the Rust side passes them.
struct nn_launch {
    unsigned grid[3];
    unsigned block[3];
    unsigned shared_mem_bytes;
};

// A buffer argument: its first element (after the launch's offset) and element count.
struct nn_hbuf {
    void* p;
    unsigned long long n;
};

template <typename T>
inline nn_gptr<T> nn_arg_ptr(const void* a, const char* name) {
    const nn_hbuf* b = (const nn_hbuf*)a;
    return nn_gptr<T>((T*)b->p, b->n, name);
}

// Runs `body` for every thread of every block of `l` (fibers when the kernel has
// barriers). Returns 0, or nonzero with a message in `msg` (an out-of-bounds access,
// a barrier in a kernel run without fibers, divergent barriers).
int nn_run(const nn_launch* l, const char* kernel, int fibers, void (*body)(void*), void* ctx,
           char* msg, unsigned long long msg_cap);
