/* route_probe — per-launch GPU time of route kernels in CUDA graphs, beside an empty kernel
 * launched the same way. Inputs rotate through 8 buffers (large batches come from DRAM).
 *
 *   route_probe --model deepseek-v3 [--dtype f32|bf16] [--tokens 1,128,16384]
 *   route_probe --experts 512 --topk 8 --score sigmoid [--bias] [--renormalize] …
 *
 * Prints one line per T: kernel, T, µs per launch, multiple of the empty-kernel floor, GB/s moved. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jit/nvrtc.h"
#include "jit/driver.h"
#include "moejit.h"
#include "jit/nvrtc_locate.h"
#include "common/numeric.h"
#include "api/ops.h"
#include "common/dtype.h"
#include "jit/codegen.h"
#include "ops/route/route.h"

#include "bench_common.h"

enum { ROTATE = 8, INNER = 20, REPLAYS = 50 };

static const mj_driver *d;
static CUstream stream;

/* Median per-launch time of `launch(i)` captured INNER times in one graph. */
static float graph_us(void (*launch)(int, void *), void *user)
{
    for (int i = 0; i < ROTATE; i++) launch(i, user); /* warm up (and compile) outside the graph */
    CU(d->stream_synchronize(stream));
    CUgraph g;
    CUgraphExec ge;
    CU(d->stream_begin_capture(stream, CU_STREAM_CAPTURE_MODE_GLOBAL));
    for (int i = 0; i < INNER; i++) launch(i % ROTATE, user);
    CU(d->stream_end_capture(stream, &g));
    CU(d->graph_instantiate(&ge, g, 0));
    CUevent a, b;
    CU(d->event_create(&a, 0));
    CU(d->event_create(&b, 0));
    double t[REPLAYS];
    CU(d->graph_launch(ge, stream));
    for (int r = 0; r < REPLAYS; r++) {
        CU(d->event_record(a, stream));
        CU(d->graph_launch(ge, stream));
        CU(d->event_record(b, stream));
        CU(d->event_synchronize(b));
        float ms;
        CU(d->event_elapsed_time(&ms, a, b));
        t[r] = ms * 1000.0 / INNER;
    }
    d->graph_exec_destroy(ge);
    d->graph_destroy(g);
    d->event_destroy(a);
    d->event_destroy(b);
    return (float)bench_median(t, REPLAYS);
}

static CUfunction g_empty;
static void launch_empty(int i, void *user)
{
    (void)i, (void)user;
    CU(d->launch_kernel(g_empty, 1, 1, 1, 32, 1, 1, 0, stream, NULL, NULL));
}

/* An empty kernel, compiled with the library's own NVRTC wrapper, for the floor. */
static void load_empty_kernel(void)
{
    mj_nvrtc_identity id;
    mj_nvrtc *nv;
    mj_compile_options opt;
    mj_compile_output out;
    char arch[16];
    int cc;
    CUdevice dev;
    int retained;
    CU(mj_driver_current_device(d, 0, &dev, &retained) == MOEJIT_OK ? CUDA_SUCCESS : CUDA_ERROR_UNKNOWN);
    mj_driver_device_cc(d, dev, &cc);
    mj_arch_for_cc(cc, arch, sizeof arch);
    if (mj_nvrtc_locate(&id) || mj_nvrtc_open(&id, &nv) || mj_compile_options_build(arch, NULL, &opt) ||
        mj_nvrtc_compile(nv, "extern \"C\" __global__ void empty_kernel() {}\n", "empty.cu", &opt, &out)) {
        fprintf(stderr, "empty kernel: %s\n", moejit_last_error(NULL));
        exit(1);
    }
    CUmodule m;
    CU(d->module_load_data(&m, out.cubin));
    CU(d->module_get_function(&g_empty, m, "empty_kernel"));
}

typedef struct route_run {
    moejit_ctx *ctx;
    moejit_route_spec spec;
    moejit_route_args args[ROTATE];
} route_run;

static void launch_route(int i, void *user)
{
    route_run *r = user;
    moejit_status st = moejit_route(r->ctx, &r->spec, &r->args[i], (moejit_stream)stream);
    if (st != MOEJIT_OK) {
        fprintf(stderr, "moejit_route: %s: %s\n", moejit_status_str(st), moejit_last_error(r->ctx));
        exit(1);
    }
}

static int parse_args(int argc, char **argv, moejit_route_spec *s, char *tokens, size_t cap)
{
    const char *model = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--model")) model = v, i++;
        else if (!strcmp(a, "--experts")) s->num_experts = atoi(v), i++;
        else if (!strcmp(a, "--topk")) s->topk = atoi(v), i++;
        else if (!strcmp(a, "--score")) s->score = (moejit_score)mj_score_parse(v), i++;
        else if (!strcmp(a, "--groups")) s->num_groups = atoi(v), i++;
        else if (!strcmp(a, "--topk-groups")) s->topk_groups = atoi(v), i++;
        else if (!strcmp(a, "--top2-sum")) s->group_score = MOEJIT_GROUP_SCORE_TOP2_SUM;
        else if (!strcmp(a, "--bias")) s->has_bias = 1;
        else if (!strcmp(a, "--renormalize")) s->renormalize = 1;
        else if (!strcmp(a, "--tokens")) snprintf(tokens, cap, "%s", v), i++;
        else if (!strcmp(a, "--dtype")) s->dtype = (moejit_dtype)mj_dtype_parse(v), i++;
        else {
            fprintf(stderr, "route_probe: unknown argument %s\n", a);
            return -1;
        }
    }
    if (model) {
        moejit_dtype dt = s->dtype;
        if (moejit_route_preset(model, s) != MOEJIT_OK) {
            fprintf(stderr, "%s\n", moejit_last_error(NULL));
            return -1;
        }
        s->dtype = dt;
    }
    return 0;
}

int main(int argc, char **argv)
{
    route_run run = {0};
    char tokens[256] = "1,16,128,1024,4096,16384";
    if (parse_args(argc, argv, &run.spec, tokens, sizeof tokens)) return 2;
    if (mj_driver_get(&d) != MOEJIT_OK) {
        fprintf(stderr, "route_probe: %s\n", moejit_last_error(NULL));
        return 1;
    }
    load_empty_kernel();
    CU(d->stream_create(&stream, 1 /* non-blocking */));
    if (moejit_open(NULL, &run.ctx) != MOEJIT_OK) return 1;
    const float floor = graph_us(launch_empty, NULL);
    moejit_kernel_desc desc = {.op = MOEJIT_OP_ROUTE, .route = run.spec};
    char name[96];
    if (moejit_kernel_name(&desc, name, sizeof name) != MOEJIT_OK) {
        fprintf(stderr, "route_probe: %s\n", moejit_last_error(NULL));
        return 2;
    }
    const int E = run.spec.num_experts, W = run.spec.topk + run.spec.shared_slots;
    const size_t elem = run.spec.dtype == MOEJIT_DTYPE_F32 ? 4 : 2;
    srand(1);
    CUdeviceptr bias = 0;
    if (run.spec.has_bias) {
        float *hb = malloc(sizeof(float) * (size_t)E);
        for (int e = 0; e < E; e++) hb[e] = 0.2f * ((float)rand() / (float)RAND_MAX - 0.5f);
        CU(d->mem_alloc(&bias, sizeof(float) * (size_t)E));
        CU(d->memcpy_htod(bias, hb, sizeof(float) * (size_t)E));
        free(hb);
    }
    for (char *save = NULL, *tok = strtok_r(tokens, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        const long T = atol(tok);
        const size_t in_bytes = (size_t)T * (size_t)E * elem;
        unsigned char *host = malloc(in_bytes);
        CUdeviceptr in[ROTATE], ids[ROTATE], w[ROTATE];
        for (int r = 0; r < ROTATE; r++) {
            for (size_t i = 0; i < (size_t)T * (size_t)E; i++) {
                const float v = 4.0f * ((float)rand() / (float)RAND_MAX) - 2.0f;
                if (elem == 4) ((float *)host)[i] = v;
                else ((uint16_t *)host)[i] = run.spec.dtype == MOEJIT_DTYPE_BF16 ? mj_f32_to_bf16(v) : mj_f32_to_f16(v);
            }
            CU(d->mem_alloc(&in[r], in_bytes));
            CU(d->mem_alloc(&ids[r], (size_t)T * W * 4));
            CU(d->mem_alloc(&w[r], (size_t)T * W * 4));
            CU(d->memcpy_htod(in[r], host, in_bytes));
            run.args[r] = (moejit_route_args){.logits = (void *)in[r], .bias = (float *)bias, .ids = (int32_t *)ids[r],
                                                .weights = (float *)w[r], .num_tokens = T};
        }
        const float us = graph_us(launch_route, &run);
        const double moved = (double)in_bytes + (double)T * W * 8;
        printf("%-58s %-5s T=%-6ld %8.2f us  %5.2fx floor  %7.0f GB/s\n", name, mj_dtype_name(run.spec.dtype), T, us,
               us / floor, moved / (us * 1e-6) / 1e9);
        fflush(stdout);
        for (int r = 0; r < ROTATE; r++) d->mem_free(in[r]), d->mem_free(ids[r]), d->mem_free(w[r]);
        free(host);
    }
    printf("%-58s floor (empty kernel, same graph method): %.2f us\n", "", floor);
    moejit_close(run.ctx);
    return 0;
}
