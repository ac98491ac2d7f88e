// The host runtime's launcher (tests only): runs a kernel's grid block by block, the
// threads of a block as fibers that meet at `__syncthreads`, and records the first
// out-of-bounds access or barrier misuse of the launch.
#include "nn_host.h"
#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>
#include <vector>

thread_local nn_dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace {

const size_t kStack = 64 * 1024;

struct Fiber {
    ucontext_t ctx;
    bool done;
    unsigned long long barriers;
    nn_dim3 tid;
};

struct Run {
    const char* kernel;
    void (*body)(void*);
    void* ctx;
    bool fibers;
    bool failed;
    char msg[512];
    std::vector<Fiber> fs;
    std::vector<char*> stacks;
    std::vector<std::pair<const void*, unsigned*>> shadows;
    ucontext_t sched;
    size_t cur;
};

thread_local Run* run_ = nullptr;
thread_local unsigned char scratch_[64];

void fail(const char* fmt_what) {
    Run* r = run_;
    if (r == nullptr || r->failed) return;
    r->failed = true;
    snprintf(r->msg, sizeof r->msg,
             "%s (block (%u,%u,%u), thread (%u,%u,%u))", fmt_what, blockIdx.x, blockIdx.y,
             blockIdx.z, threadIdx.x, threadIdx.y, threadIdx.z);
}

void fiber_main(unsigned lo, unsigned hi) {
    size_t i = (size_t)(((unsigned long long)hi << 32) | lo);
    Run* r = run_;
    r->body(r->ctx);
    r->fs[i].done = true;
    // returning resumes `uc_link`, the scheduler
}

}  // namespace

unsigned* nn_shadow_for(const void* base, unsigned long long n) {
    Run* r = run_;
    if (r == nullptr || n == 0) return nullptr;
    for (auto& s : r->shadows)
        if (s.first == base) return s.second;
    unsigned* w = (unsigned*)calloc((size_t)n, sizeof(unsigned));
    r->shadows.emplace_back(base, w);
    return w;
}

unsigned nn_thread_tag() {
    unsigned long long b = ((unsigned long long)blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    unsigned long long t = ((unsigned long long)threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    unsigned long long per = (unsigned long long)blockDim.x * blockDim.y * blockDim.z;
    return (unsigned)(b * per + t + 1);
}

void nn_race(const char* param, unsigned long long index, unsigned first, unsigned second) {
    char what[256];
    snprintf(what, sizeof what,
             "threads %u and %u both write element %llu of `%s` without an atomic (a race on a GPU)",
             first - 1, second - 1, index, param);
    fail(what);
}

void* nn_oob(const char* param, unsigned long long index, unsigned long long len, int write) {
    char what[256];
    snprintf(what, sizeof what, "out-of-bounds %s of `%s`: index %llu of %llu elements",
             write ? "write" : "access", param, index, len);
    fail(what);
    memset(scratch_, 0, sizeof scratch_);
    return scratch_;
}

void __syncthreads() {
    Run* r = run_;
    if (r == nullptr) return;
    if (!r->fibers) {
        fail("__syncthreads in a kernel the host runtime ran without fibers (build.rs did not see the barrier)");
        return;
    }
    Fiber& f = r->fs[r->cur];
    f.barriers++;
    swapcontext(&f.ctx, &r->sched);
}

int nn_run(const nn_launch* l, const char* kernel, int fibers, void (*body)(void*), void* ctx,
           char* msg, unsigned long long msg_cap) {
    Run r;
    r.kernel = kernel;
    r.body = body;
    r.ctx = ctx;
    r.fibers = fibers != 0;
    r.failed = false;
    r.msg[0] = 0;
    r.cur = 0;
    Run* saved = run_;
    run_ = &r;
    gridDim = nn_dim3{l->grid[0], l->grid[1], l->grid[2]};
    blockDim = nn_dim3{l->block[0], l->block[1], l->block[2]};
    const size_t nt = (size_t)l->block[0] * l->block[1] * l->block[2];
    if (r.fibers) {
        r.fs.resize(nt);
        r.stacks.resize(nt);
        for (size_t i = 0; i < nt; ++i) r.stacks[i] = (char*)malloc(kStack);
    }
    for (unsigned bz = 0; bz < l->grid[2] && !r.failed; ++bz)
    for (unsigned by = 0; by < l->grid[1] && !r.failed; ++by)
    for (unsigned bx = 0; bx < l->grid[0] && !r.failed; ++bx) {
        blockIdx = nn_dim3{bx, by, bz};
        if (!r.fibers) {
            for (unsigned tz = 0; tz < l->block[2]; ++tz)
            for (unsigned ty = 0; ty < l->block[1]; ++ty)
            for (unsigned tx = 0; tx < l->block[0]; ++tx) {
                threadIdx = nn_dim3{tx, ty, tz};
                body(ctx);
            }
            continue;
        }
        size_t i = 0;
        for (unsigned tz = 0; tz < l->block[2]; ++tz)
        for (unsigned ty = 0; ty < l->block[1]; ++ty)
        for (unsigned tx = 0; tx < l->block[0]; ++tx, ++i) {
            Fiber& f = r.fs[i];
            f.done = false;
            f.barriers = 0;
            f.tid = nn_dim3{tx, ty, tz};
            getcontext(&f.ctx);
            f.ctx.uc_stack.ss_sp = r.stacks[i];
            f.ctx.uc_stack.ss_size = kStack;
            f.ctx.uc_link = &r.sched;
            unsigned long long ii = i;
            makecontext(&f.ctx, (void (*)())fiber_main, 2, (unsigned)(ii & 0xffffffffu),
                        (unsigned)(ii >> 32));
        }
        // rounds: every live fiber runs to its next barrier (or its end); all of them
        // must then wait at the same barrier count, or the barrier diverged
        // the threads run in ascending order in one round and descending in the next
        // (and the other way round in odd blocks), so a read of another thread's shared
        // memory without a barrier between sees the wrong value in one of them
        size_t live = nt;
        size_t round = (bx + by + bz) & 1;
        while (live > 0) {
            bool rev = (round++ & 1) != 0;
            for (size_t jj = 0; jj < nt; ++jj) {
                size_t j = rev ? nt - 1 - jj : jj;
                if (r.fs[j].done) continue;
                r.cur = j;
                threadIdx = r.fs[j].tid;
                swapcontext(&r.sched, &r.fs[j].ctx);
            }
            live = 0;
            unsigned long long want = 0;
            bool first = true, diverged = false;
            for (size_t j = 0; j < nt; ++j) {
                if (r.fs[j].done) continue;
                if (first) { want = r.fs[j].barriers; first = false; }
                diverged |= r.fs[j].barriers != want;
                ++live;
            }
            if (live > 0 && live < nt && !r.failed) {
                // some threads ended while others wait at a barrier: CUDA leaves this
                // undefined (it can hang); here it is an error
                threadIdx = nn_dim3{0, 0, 0};
                fail("__syncthreads reached by only part of the block");
            }
            if (diverged) fail("threads of one block wait at different __syncthreads");
            if (r.failed && live > 0) {
                // let the waiting fibers run to their ends so their stacks are unused
                for (size_t j = 0; j < nt; ++j) {
                    int guard = 0;
                    while (!r.fs[j].done && guard++ < 1000000) {
                        r.cur = j;
                        threadIdx = r.fs[j].tid;
                        swapcontext(&r.sched, &r.fs[j].ctx);
                    }
                }
                live = 0;
            }
        }
    }
    for (char* s : r.stacks) free(s);
    for (auto& s : r.shadows) free(s.second);
    run_ = saved;
    if (r.failed) {
        snprintf(msg, (size_t)msg_cap, "%s: %s", kernel, r.msg);
        return 1;
    }
    return 0;
}
