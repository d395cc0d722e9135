/* JIT latencies of one route shape (default E=384 K=8 sigmoid bf16): cold compile, disk-cache
 * hit in a fresh context, in-memory hit. Needs a GPU.
 *   bench_jit [--experts E --topk K --dtype bf16|f32|f16 --score softmax|sigmoid] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "driver.h"
#include "moejit.h"
#include "spec.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#define CHECK(x)                                                                                            \
    do {                                                                                                    \
        moejit_status s_ = (x);                                                                             \
        if (s_ != MOEJIT_OK) {                                                                              \
            fprintf(stderr, "%s: %s: %s\n", #x, moejit_status_str(s_), moejit_last_error(NULL));            \
            exit(1);                                                                                        \
        }                                                                                                   \
    } while (0)

int main(int argc, char **argv)
{
    moejit_route_spec spec = {.num_experts = 384, .topk = 8, .score = MOEJIT_SCORE_SIGMOID, .dtype = MOEJIT_DTYPE_BF16};
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--experts")) spec.num_experts = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--topk")) spec.topk = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--dtype")) spec.dtype = (moejit_dtype)mj_dtype_parse(argv[i + 1]);
        else if (!strcmp(argv[i], "--score")) spec.score = (moejit_score)mj_score_parse(argv[i + 1]);
        else {
            fprintf(stderr, "usage: bench_jit [--experts E] [--topk K] [--dtype D] [--score S]\n");
            return 2;
        }
    }
    const mj_driver *d;
    CHECK(mj_driver_get(&d));
    CUdevice dev;
    int retained;
    CHECK(mj_driver_current_device(d, 0, &dev, &retained));
    const int T = 128, W = spec.topk;
    CUdeviceptr logits, ids, w;
    d->mem_alloc(&logits, (size_t)T * (size_t)spec.num_experts * 4);
    d->mem_alloc(&ids, (size_t)T * W * 4);
    d->mem_alloc(&w, (size_t)T * W * 4);
    d->memset_d8(logits, 0x3c, (size_t)T * (size_t)spec.num_experts * 4);
    moejit_route_args args = {(void *)logits, NULL, (int32_t *)ids, (float *)w, T, 0};

    char dir[] = "/tmp/moejit-bench-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    moejit_config cfg = {.cache_dir = dir};
    moejit_ctx *ctx;

    /* 1. Cold: nothing on disk, NVRTC not loaded yet in this context. */
    CHECK(moejit_open(&cfg, &ctx));
    double t0 = now();
    CHECK(moejit_route(ctx, &spec, &args, NULL));
    d->ctx_synchronize();
    const double cold = now() - t0;
    moejit_close(ctx);

    /* 2. Disk hit: a fresh context (empty registry), the entry on disk, page cache warm. */
    double disk = 1e9;
    for (int rep = 0; rep < 5; rep++) {
        CHECK(moejit_open(&cfg, &ctx));
        t0 = now();
        CHECK(moejit_route(ctx, &spec, &args, NULL));
        d->ctx_synchronize();
        double t = now() - t0;
        if (t < disk) disk = t;
        moejit_stats s;
        moejit_get_stats(ctx, &s);
        if (s.disk_hits != 1 || s.compiles != 0) fprintf(stderr, "warning: expected a disk hit\n");
        if (rep < 4) moejit_close(ctx);
    }

    /* 3. In-memory hit: host time per call, launches queued back to back. */
    const int N = 100000;
    for (int i = 0; i < 1000; i++) moejit_route(ctx, &spec, &args, NULL);
    d->ctx_synchronize();
    t0 = now();
    for (int i = 0; i < N; i++) moejit_route(ctx, &spec, &args, NULL);
    const double host = (now() - t0) / N;
    d->ctx_synchronize();
    moejit_close(ctx);

    moejit_kernel_desc desc = {.op = MOEJIT_OP_ROUTE, .route = spec};
    char name[96];
    moejit_kernel_name(&desc, name, sizeof name);
    printf("%-44s %14s %14s %18s\n", "kernel", "cold compile", "disk hit", "memory hit (host)");
    printf("%-44s %11.1f ms %11.3f ms %15.2f us\n", name, cold * 1e3, disk * 1e3, host * 1e6);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : 1;
}
