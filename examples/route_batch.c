/* route_batch — route a random batch on the GPU with moejit and check it against the C reference.
 *
 *   route_batch [--experts 384] [--topk 8] [--tokens 16] [--score sigmoid] [--dtype bf16] [--renormalize]
 *
 * Without a GPU it still generates the kernel's source and says so. This is the code an engine
 * writes: open a context once, then call moejit_route() with device pointers and a stream. */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* moejit_ctx_stats is in the experimental section (it may change between minor versions). */
#define MOEJIT_EXPERIMENTAL_API
#include "moejit.h"
#include "moejit_reference.h"

/* f32 → bf16 / f16 on the host (round to nearest even), to fill the logits. */
static unsigned short to_bf16(float f)
{
    unsigned u;
    memcpy(&u, &f, 4);
    return (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static int parse_args(int argc, char **argv, moejit_route_spec *spec, int *tokens)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--renormalize")) spec->renormalize = 1;
        else if (!strcmp(a, "--experts") && v) spec->num_experts = atoi(v), i++;
        else if (!strcmp(a, "--topk") && v) spec->topk = atoi(v), i++;
        else if (!strcmp(a, "--tokens") && v) *tokens = atoi(v), i++;
        else if (!strcmp(a, "--score") && v) {
            spec->score = !strcmp(v, "sigmoid") ? MOEJIT_SCORE_SIGMOID : !strcmp(v, "softmax") ? MOEJIT_SCORE_SOFTMAX
                                                                                               : (moejit_score)-1;
            i++;
        } else if (!strcmp(a, "--dtype") && v) {
            spec->dtype = !strcmp(v, "bf16") ? MOEJIT_DTYPE_BF16 : !strcmp(v, "f32") ? MOEJIT_DTYPE_F32 : (moejit_dtype)-1;
            i++;
        } else {
            fprintf(stderr, "usage: route_batch [--experts E] [--topk K] [--tokens T] [--score softmax|sigmoid] "
                            "[--dtype bf16|f32] [--renormalize]\n");
            return -1;
        }
    }
    if (*tokens < 1) {
        fprintf(stderr, "route_batch: --tokens must be >= 1\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    moejit_route_spec spec = {.num_experts = 384, .topk = 8, .score = MOEJIT_SCORE_SIGMOID, .dtype = MOEJIT_DTYPE_BF16,
                              .renormalize = 1};
    int T = 16;
    if (parse_args(argc, argv, &spec, &T)) return 2;

    moejit_ctx *ctx;
    moejit_status st = moejit_open(NULL, &ctx); /* configuration from the environment */
    if (st != MOEJIT_OK) {
        fprintf(stderr, "moejit_open: %s: %s\n", moejit_status_str(st), moejit_last_error(NULL));
        return 1;
    }
    moejit_kernel_desc desc = {.op = MOEJIT_OP_ROUTE, .route = spec};
    char name[96];
    if ((st = moejit_kernel_name(&desc, name, sizeof name)) != MOEJIT_OK) {
        fprintf(stderr, "bad spec: %s: %s\n", moejit_status_str(st), moejit_last_error(ctx));
        moejit_close(ctx);
        return 2;
    }
    printf("kernel %s (cache: %s)\n", name, moejit_ctx_cache_dir(ctx));

    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        char *src;
        size_t len;
        moejit_source(ctx, &desc, &src, &len);
        printf("no GPU here: generated %zu bytes of CUDA C++ for it (moejit source … prints it); nothing routed\n", len);
        moejit_free(src);
        moejit_close(ctx);
        return 0;
    }

    const int E = spec.num_experts, K = spec.topk, elem = spec.dtype == MOEJIT_DTYPE_F32 ? 4 : 2;
    void *h_logits = malloc((size_t)T * E * elem);
    int32_t *ids = malloc((size_t)T * K * 4), *ref_ids = malloc((size_t)T * K * 4);
    float *w = malloc((size_t)T * K * 4), *ref_w = malloc((size_t)T * K * 4);
    srand(12345);
    for (int i = 0; i < T * E; i++) {
        float x = 4.0f * ((float)rand() / (float)RAND_MAX - 0.5f);
        if (elem == 4) ((float *)h_logits)[i] = x;
        else ((unsigned short *)h_logits)[i] = to_bf16(x);
    }
    void *d_logits;
    int32_t *d_ids;
    float *d_w;
    cudaMalloc(&d_logits, (size_t)T * E * elem);
    cudaMalloc((void **)&d_ids, (size_t)T * K * 4);
    cudaMalloc((void **)&d_w, (size_t)T * K * 4);
    cudaMemcpy(d_logits, h_logits, (size_t)T * E * elem, cudaMemcpyHostToDevice);
    cudaStream_t stream;
    cudaStreamCreate(&stream);

    moejit_route_args args = {.logits = d_logits, .ids = d_ids, .weights = d_w, .num_tokens = T};
    st = moejit_route(ctx, &spec, &args, stream); /* first call: compile or load from the cache */
    if (st != MOEJIT_OK) {
        fprintf(stderr, "moejit_route: %s: %s\n", moejit_status_str(st), moejit_last_error(ctx));
        return 1;
    }
    cudaMemcpyAsync(ids, d_ids, (size_t)T * K * 4, cudaMemcpyDeviceToHost, stream);
    cudaMemcpyAsync(w, d_w, (size_t)T * K * 4, cudaMemcpyDeviceToHost, stream);
    cudaStreamSynchronize(stream);
    const moejit_route_args ref_args = {.logits = h_logits, .ids = ref_ids, .weights = ref_w, .num_tokens = T};
    moejit_route_reference(&spec, &ref_args);

    int mismatches = 0;
    for (int t = 0; t < T; t++) {
        if (t < 4) {
            printf("token %d:", t);
            for (int k = 0; k < K; k++) printf(" %d:%.4f", ids[t * K + k], (double)w[t * K + k]);
            printf("\n");
        }
        for (int k = 0; k < K; k++) {
            int found = 0;
            for (int j = 0; j < K; j++) found |= ref_ids[t * K + j] == ids[t * K + k];
            mismatches += !found;
        }
    }
    moejit_stats s;
    moejit_ctx_stats(ctx, &s);
    printf("routed %d tokens: %s the C reference (compiled %llu, from disk %llu)\n", T,
           mismatches ? "MISMATCHES" : "ids match", (unsigned long long)s.compiles, (unsigned long long)s.disk_hits);
    cudaFree(d_logits), cudaFree(d_ids), cudaFree(d_w), cudaStreamDestroy(stream);
    free(h_logits), free(ids), free(ref_ids), free(w), free(ref_w);
    moejit_close(ctx);
    return mismatches ? 1 : 0;
}
