#include "support.h"

#include "cache/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <elf.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "jit/driver.h"
#include "common/numeric.h"
#include "ops/route/route.h"
#include "ops/align/align.h"

/* ---- files ---- */

void mjt_tmpdir(char *path)
{
    const char *base = getenv("TMPDIR");
    snprintf(path, 4096, "%s/moejit-test-XXXXXX", base && *base ? base : "/tmp");
    assert_non_null(mkdtemp(path));
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    chmod(p, 0700); /* tests make directories read-only; removal needs write permission */
    return remove(p);
}

moejit_ctx *mjt_open_tmp(char *dir)
{
    mjt_tmpdir(dir);
    moejit_config cfg = {.cache_dir = dir};
    moejit_ctx *ctx = NULL;
    assert_int_equal(moejit_open(&cfg, &ctx), MOEJIT_OK);
    return ctx;
}

void mjt_rmtree(const char *path) { nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

void mjt_expect_compiles(const moejit_kernel_desc *descs, size_t n, const char *arch)
{
    char dir[4096];
    moejit_ctx *ctx = mjt_open_tmp(dir);
    moejit_prewarm_result *res = calloc(n, sizeof *res);
    assert_non_null(res);
    const moejit_status st = moejit_prewarm(ctx, descs, n, arch, res);
    if (st == MOEJIT_ERR_NO_NVRTC) {
        free(res), moejit_close(ctx), mjt_rmtree(dir);
        skip();
    }
    for (size_t i = 0; i < n; i++)
        if (res[i].status != MOEJIT_OK) fail_msg("%s: %s", res[i].name, res[i].error);
    free(res);
    assert_int_equal(st, MOEJIT_OK);
    moejit_close(ctx);
    mjt_rmtree(dir);
}

static int g_file_count;
static int count_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)p, (void)st, (void)ftw;
    if (flag == FTW_F) g_file_count++;
    return 0;
}

int mjt_count_files(const char *path)
{
    g_file_count = 0;
    nftw(path, count_one, 16, FTW_PHYS);
    return g_file_count;
}

/* ---- randomness ---- */

void mjt_rng_init(mjt_rng *r)
{
    static uint64_t seed;
    static int printed;
    if (!seed) {
        const char *s = getenv("MOEJIT_TEST_SEED");
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        seed = s && *s ? strtoull(s, NULL, 0) : ((uint64_t)t.tv_nsec * 0x9e3779b97f4a7c15ull) ^ (uint64_t)getpid();
        if (!seed) seed = 1;
    }
    if (!printed++) fprintf(stderr, "[ seed     ] MOEJIT_TEST_SEED=%llu\n", (unsigned long long)seed);
    r->s = seed;
    seed += 0x632be59bd9b4e019ull; /* the next generator of this run starts elsewhere */
}

uint64_t mjt_next(mjt_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double mjt_uniform(mjt_rng *r) { return (double)(mjt_next(r) >> 11) * (1.0 / 9007199254740992.0); }

double mjt_normal(mjt_rng *r)
{
    double u = mjt_uniform(r), v = mjt_uniform(r);
    if (u < 1e-300) u = 1e-300;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

int mjt_quick(void)
{
    const char *q = getenv("MOEJIT_TEST_QUICK");
    return q && *q && strcmp(q, "0");
}

int mjt_keep(int i, int every) { return !mjt_quick() || i % every == 0; }

int64_t mjt_quick_cap(int64_t n, int64_t cap) { return mjt_quick() && n > cap ? cap : n; }

/* ---- GPU ---- */

static const mj_driver *driver(void)
{
    const mj_driver *d = NULL;
    if (mj_driver_get(&d) != MOEJIT_OK) return NULL;
    return d;
}

int mjt_gpu_available(void)
{
    const mj_driver *d = driver();
    if (!d) return 0;
    CUdevice dev;
    int retained;
    return mj_driver_current_device(d, 0, &dev, &retained) == MOEJIT_OK;
}

int mjt_gpu_suite_status(int failed)
{
    if (failed) return failed;
    return mjt_gpu_available() ? 0 : MJT_SKIP_CODE;
}

#define CU_CHECK(call)                                                                                    \
    do {                                                                                                  \
        CUresult r_ = (call);                                                                             \
        if (r_ != CUDA_SUCCESS) fail_msg("%s failed with CUDA error %d", #call, (int)r_);                 \
    } while (0)

void *mjt_dev_alloc(size_t bytes)
{
    CUdeviceptr p = 0;
    CU_CHECK(driver()->mem_alloc(&p, bytes ? bytes : 4));
    return (void *)(uintptr_t)p;
}
void mjt_dev_free(void *p)
{
    if (p) driver()->mem_free((CUdeviceptr)(uintptr_t)p);
}
void mjt_h2d(void *dst, const void *src, size_t bytes)
{
    if (bytes) CU_CHECK(driver()->memcpy_htod((CUdeviceptr)(uintptr_t)dst, src, bytes));
}
void mjt_d2h(void *dst, const void *src, size_t bytes)
{
    if (bytes) CU_CHECK(driver()->memcpy_dtoh(dst, (CUdeviceptr)(uintptr_t)src, bytes));
}
void mjt_dev_fill(void *p, unsigned char byte, size_t bytes)
{
    if (bytes) CU_CHECK(driver()->memset_d8((CUdeviceptr)(uintptr_t)p, byte, bytes));
}
void mjt_sync(void) { CU_CHECK(driver()->ctx_synchronize()); }

/* ---- contexts ---- */


void mjt_expect_nothing_ran(moejit_ctx *ctx, const char *dir)
{
    moejit_stats stats;
    assert_int_equal(moejit_ctx_stats(ctx, &stats), MOEJIT_OK);
    assert_int_equal(stats.compiles, 0);
    assert_int_equal(stats.launches, 0);
    assert_int_equal(mjt_count_files(dir), 0);
    moejit_close(ctx);
    mjt_rmtree(dir);
}

void mjt_expect_error(moejit_status got, moejit_status want, const char *needle)
{
    if (got != want)
        fail_msg("expected %s, got %s (%s)", moejit_status_str(want), moejit_status_str(got), moejit_last_error(NULL));
    if (!strstr(moejit_last_error(NULL), needle))
        fail_msg("message \"%s\" does not mention \"%s\"", moejit_last_error(NULL), needle);
}

moejit_ctx *mjt_gpu_ctx;
static char g_gpu_cache[4096];

int mjt_gpu_setup(void **state)
{
    (void)state;
    if (!mjt_gpu_available()) return 0;
    mjt_tmpdir(g_gpu_cache);
    moejit_config cfg = {.cache_dir = g_gpu_cache};
    return moejit_open(&cfg, &mjt_gpu_ctx) == MOEJIT_OK ? 0 : -1;
}

int mjt_gpu_teardown(void **state)
{
    (void)state;
    moejit_close(mjt_gpu_ctx);
    mjt_gpu_ctx = NULL;
    if (g_gpu_cache[0]) mjt_rmtree(g_gpu_cache);
    return 0;
}

/* ---- processes ---- */

int mjt_run(char *const argv[], const char *const env_overrides[], char *out, size_t cap)
{
    int fds[2];
    if (pipe(fds) != 0) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        for (int i = 0; env_overrides && env_overrides[i]; i++) putenv((char *)env_overrides[i]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    const int status = mjt_collect(fds[0], pid, out, cap);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int mjt_collect(int fd, pid_t pid, char *out, size_t cap)
{
    size_t n = 0;
    char buf[4096];
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        for (ssize_t i = 0; i < r; i++)
            if (n + 1 < cap) out[n++] = buf[i];
    }
    if (cap) out[n] = '\0';
    close(fd);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return status;
}

int mjt_cli(const char *const env_overrides[], char *out, size_t cap, const char *first, ...)
{
#ifdef MOEJIT_CLI
    char *argv[64] = {MOEJIT_CLI};
    int n = 1;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && n < 63; a = va_arg(ap, const char *)) argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    return mjt_run(argv, env_overrides, out, cap);
#else
    (void)env_overrides, (void)out, (void)cap, (void)first;
    fail_msg("mjt_cli: the support library was built without MOEJIT_CLI");
    return -1;
#endif
}

/* ---- parallel loops (the GPU host has many cores; CI has two) ---- */

typedef struct par_job {
    void (*fn)(int64_t begin, int64_t end, void *user);
    void *user;
    int64_t n, chunk;
    int64_t next;
    pthread_mutex_t mu;
} par_job;

static void *par_worker(void *arg)
{
    par_job *j = arg;
    for (;;) {
        pthread_mutex_lock(&j->mu);
        const int64_t b = j->next;
        j->next += j->chunk;
        pthread_mutex_unlock(&j->mu);
        if (b >= j->n) return NULL;
        j->fn(b, b + j->chunk < j->n ? b + j->chunk : j->n, j->user);
    }
}

void mjt_parallel_for(int64_t n, void (*fn)(int64_t begin, int64_t end, void *user), void *user)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = cores < 1 ? 1 : cores > 32 ? 32 : (int)cores;
    par_job j = {fn, user, n, n / (threads * 4) + 1, 0, PTHREAD_MUTEX_INITIALIZER};
    pthread_t tid[32];
    int started = 0;
    for (; started < threads - 1; started++)
        if (pthread_create(&tid[started], NULL, par_worker, &j)) break;
    par_worker(&j);
    for (int i = 0; i < started; i++) pthread_join(tid[i], NULL);
}

/* ---- route inputs ---- */

typedef struct input_job {
    const moejit_route_spec *spec;
    mj_route_shape shape;
    unsigned char *logits;
    const float *bias;
    int64_t stride;
    uint64_t seed;
    int ordered; /* rows are permutations of an evenly spaced grid (mjt_route_inputs_ordered) */
} input_job;

/* Value k (0..E-1) of an ordered row: evenly spaced, exactly representable in the dtype, spaced
 * so that consecutive scores (sigmoid included) differ by > 1e-5 relative. */
static float grid_value(int k, int E, int dtype)
{
    const double step = dtype == MOEJIT_DTYPE_F32 ? 8.0 / E : 1.0 / 16; /* bf16/f16 hold k/16 up to |8| */
    return (float)((k - E / 2) * step);
}

/* Rows [b, e): each from its own generator (seed + row), so the result does not depend on threads. */
static void make_rows(int64_t b, int64_t e, void *user)
{
    const input_job *j = user;
    const int E = j->spec->num_experts, elem = j->spec->dtype == MOEJIT_DTYPE_F32 ? 4 : 2;
    float *x = malloc(sizeof(float) * (size_t)E);
    for (int64_t t = b; t < e; t++) {
        mjt_rng rng = {j->seed + 0x9e3779b97f4a7c15ull * (uint64_t)(t + 1)};
        unsigned char *row = j->logits + (size_t)(t * j->stride) * (size_t)elem;
        for (int attempt = 0;; attempt++) {
            if (attempt == 1000) {
                fprintf(stderr, "no input without near-ties after 1000 draws\n");
                abort();
            }
            if (j->ordered) /* a random permutation of the grid */
                for (int k = 0; k < E; k++) {
                    const int o = (int)(mjt_next(&rng) % (uint64_t)(k + 1));
                    x[k] = x[o];
                    x[o] = grid_value(k, E, j->spec->dtype);
                }
            for (int k = 0; k < E; k++) {
                float v = j->ordered ? x[k] : (float)(2.0 * mjt_normal(&rng));
                if (j->spec->dtype == MOEJIT_DTYPE_BF16) ((uint16_t *)row)[k] = mj_f32_to_bf16(v);
                else if (j->spec->dtype == MOEJIT_DTYPE_F16) ((uint16_t *)row)[k] = mj_f32_to_f16(v);
                else ((float *)row)[k] = v;
                x[k] = mj_load_as_f32(row, j->spec->dtype, k);
            }
            /* clear of f32 rounding at every decision the routing makes */
            if (mj_route_row_margin(&j->shape, x, j->bias) > 1e-5) break;
        }
    }
    free(x);
}

static void *route_inputs(mjt_rng *rng, const moejit_route_spec *spec, int64_t T, int64_t stride, float **bias_out,
                          int ordered);

void *mjt_route_inputs(mjt_rng *rng, const moejit_route_spec *spec, int64_t T, int64_t stride, float **bias_out)
{
    return route_inputs(rng, spec, T, stride, bias_out, 0);
}

void *mjt_route_inputs_ordered(mjt_rng *rng, const moejit_route_spec *spec, int64_t T, int64_t stride, float **bias_out)
{
    return route_inputs(rng, spec, T, stride, bias_out, 1);
}

static void *route_inputs(mjt_rng *rng, const moejit_route_spec *spec, int64_t T, int64_t stride, float **bias_out,
                          int ordered)
{
    const int E = spec->num_experts, elem = spec->dtype == MOEJIT_DTYPE_F32 ? 4 : 2;
    unsigned char *logits = malloc((size_t)(T * stride) * (size_t)elem + 16);
    float *bias = NULL;
    assert_non_null(logits);
    input_job j = {.spec = spec, .logits = logits, .stride = stride, .seed = mjt_next(rng), .ordered = ordered};
    assert_int_equal(mj_route_normalize(spec, &j.shape), MOEJIT_OK);
    if (spec->has_bias) {
        bias = malloc(sizeof(float) * (size_t)E);
        assert_non_null(bias);
        /* ordered rows: a bias far below the gaps between scores, so that it cannot reorder them */
        for (int e = 0; e < E; e++) bias[e] = (float)((ordered ? 1e-8 : 0.2) * (mjt_uniform(rng) - 0.5));
    }
    j.bias = bias;
    /* Padding between rows holds garbage that must never be read as logits. */
    for (size_t i = 0; i < (size_t)(T * stride) * (size_t)elem; i++) logits[i] = (unsigned char)mjt_next(rng);
    mjt_parallel_for(T, make_rows, &j);
    *bias_out = bias;
    return logits;
}

typedef struct reference_job {
    const moejit_route_spec *spec;
    const unsigned char *logits;
    int64_t stride;
    const float *bias;
    int32_t *ids;
    float *w;
} reference_job;

static void reference_rows(int64_t b, int64_t e, void *user)
{
    const reference_job *j = user;
    const int W = j->spec->topk + j->spec->shared_slots, elem = j->spec->dtype == MOEJIT_DTYPE_F32 ? 4 : 2;
    const moejit_route_args a = {.logits = j->logits + (size_t)(b * j->stride) * (size_t)elem, .bias = j->bias,
                                 .ids = j->ids + b * W, .weights = j->w + b * W, .num_tokens = e - b,
                                 .row_stride = j->stride};
    moejit_route_reference(j->spec, &a);
}

void mjt_route_reference_parallel(const moejit_route_spec *spec, const void *logits, int64_t T, int64_t stride,
                                  const float *bias, int32_t *ids, float *w)
{
    reference_job j = {spec, logits, stride, bias, ids, w};
    mjt_parallel_for(T, reference_rows, &j);
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static double g_max_rel_error;

double mjt_max_weight_error(void) { return g_max_rel_error; }

void mjt_check_route(const moejit_route_spec *spec, int64_t T, const int32_t *ref_ids, const float *ref_w,
                     const int32_t *ids, const float *w, double rel_tol, const char *what)
{
    const int E = spec->num_experts, K = spec->topk, S = spec->shared_slots, W = K + S;
    int32_t a[2 * MOEJIT_MAX_TOPK], b[2 * MOEJIT_MAX_TOPK];
    for (int64_t t = 0; t < T; t++) {
        const int32_t *ri = ref_ids + t * W, *gi = ids + t * W;
        const float *rw = ref_w + t * W, *gw = w + t * W;
        for (int j = 0; j < W; j++)
            if (gi[j] < 0 || gi[j] >= E + S)
                fail_msg("%s: row %lld slot %d: id %d outside [0, %d) (unwritten?)", what, (long long)t, j, gi[j], E + S);
        memcpy(a, ri, sizeof(int32_t) * (size_t)K);
        memcpy(b, gi, sizeof(int32_t) * (size_t)K);
        qsort(a, (size_t)K, sizeof *a, cmp_i32);
        qsort(b, (size_t)K, sizeof *b, cmp_i32);
        for (int j = 0; j < K; j++)
            if (a[j] != b[j])
                fail_msg("%s: row %lld: expert sets differ (reference has %d where the GPU has %d)", what, (long long)t,
                         a[j], b[j]);
        for (int j = 0; j < W; j++) {
            int r = -1;
            for (int q = 0; q < W && r < 0; q++)
                if (ri[q] == gi[j]) r = q;
            if (j >= K && gi[j] != E + (j - K))
                fail_msg("%s: row %lld: shared slot %d holds id %d, expected %d", what, (long long)t, j, gi[j], E + j - K);
            /* Weights are finite for any input (the poison is NaN: an unwritten slot shows here too). */
            if (!isfinite(rw[r]) || !isfinite(gw[j]))
                fail_msg("%s: row %lld slot %d: weight %g, reference %g: not finite", what, (long long)t, j,
                         (double)gw[j], (double)rw[r]);
            const double diff = fabs((double)gw[j] - (double)rw[r]);
            if (rw[r] != 0 && diff / fabs((double)rw[r]) > g_max_rel_error) g_max_rel_error = diff / fabs((double)rw[r]);
            if (!(diff <= rel_tol * fabs((double)rw[r]) + 1e-37))
                fail_msg("%s: row %lld slot %d (expert %d): weight %.9g, reference %.9g (relative error %.3g)", what,
                         (long long)t, j, gi[j], (double)gw[j], (double)rw[r], diff / fabs((double)rw[r]));
        }
    }
}

/* Divisors of e used as group counts: 1, the smallest > 1, one near sqrt(e), e itself. */
static int group_choices(int e, int *out)
{
    int n = 0, small = 0, mid = 0;
    out[n++] = 1;
    for (int d = 2; d <= e && !small; d++)
        if (e % d == 0) small = d;
    for (int d = 2; d * d <= e; d++)
        if (e % d == 0) mid = d;
    if (small && small != e) out[n++] = small;
    if (mid && mid != small) out[n++] = mid;
    if (e > 1) out[n++] = e;
    return n;
}

int mjt_route_edge_sweep(moejit_route_spec *out, int cap)
{
    static const int es[] = {1, 3, 60, 72, 160, 384, 1000, 1025, 2048, 4096};
    int n = 0, turn = 0;
    for (size_t a = 0; a < sizeof es / sizeof es[0]; a++) {
        const int E = es[a];
        int gs[4];
        const int ng = group_choices(E, gs);
        for (int b = 0; b < ng; b++) {
            const int G = gs[b];
            const int tgs[3] = {1, G / 2 > 1 ? G / 2 : 1, G}; /* TG = G keeps every group */
            for (int c = 0; c < 3; c++) {
                if (c > 0 && tgs[c] == tgs[c - 1]) continue;
                const int TG = tgs[c], kept = TG * (E / G);
                const int want[3] = {1, 8, 64};
                for (int d = 0; d < 3; d++) {
                    int K = want[d] < kept ? want[d] : kept; /* includes K = E when E is small */
                    if (d > 0 && K == (want[d - 1] < kept ? want[d - 1] : kept)) continue;
                    if (n == cap) return n;
                    moejit_route_spec s = {0};
                    s.num_experts = E, s.topk = K, s.num_groups = G, s.topk_groups = TG;
                    s.group_score = (E / G >= 2 && turn % 2) ? MOEJIT_GROUP_SCORE_TOP2_SUM : MOEJIT_GROUP_SCORE_MAX;
                    s.score = (moejit_score)(turn % 3);
                    s.dtype = (moejit_dtype)((turn / 3) % 3);
                    s.shared_slots = turn % 3;
                    s.routed_scaling_factor = s.shared_slots ? 2.5f : 0.0f;
                    s.has_bias = turn % 2;
                    s.renormalize = (turn / 2) % 2;
                    s.score_after_topk = turn % 7 == 3;
                    out[n++] = s;
                    turn++;
                }
            }
        }
    }
    return n;
}

/* ---- align outputs ---- */

static const char *const k_align_names[6] = {"counts", "offsets", "sorted_ids", "block_expert", "total_padded",
                                             "slot_of"};

mjt_align_bufs mjt_align_bufs_new(int E, int B, int64_t capacity, int64_t N, int on_device)
{
    mjt_align_bufs b = {.len = {(size_t)E, (size_t)E + 1, (size_t)capacity, (size_t)(capacity / B), 1, (size_t)N},
                        .on_device = on_device};
    for (int i = 0; i < 6; i++) {
        b.buf[i] = on_device ? mjt_dev_alloc(4 * b.len[i]) : malloc(4 * b.len[i] + 4);
        assert_non_null(b.buf[i]);
    }
    mjt_align_bufs_poison(&b);
    return b;
}

void mjt_align_bufs_poison(mjt_align_bufs *b)
{
    for (int i = 0; i < 6; i++) {
        if (b->on_device) mjt_dev_fill(b->buf[i], MJT_POISON, 4 * b->len[i]);
        else memset(b->buf[i], MJT_POISON, 4 * b->len[i]);
    }
}

void mjt_align_bufs_free(mjt_align_bufs *b)
{
    for (int i = 0; i < 6; i++) {
        if (b->on_device) mjt_dev_free(b->buf[i]);
        else free(b->buf[i]);
        b->buf[i] = NULL;
    }
}

moejit_align_outputs mjt_align_select(const mjt_align_bufs *b, unsigned want, int64_t capacity)
{
    int32_t *p[6];
    for (int i = 0; i < 6; i++) p[i] = want & (1u << i) ? b->buf[i] : NULL;
    return (moejit_align_outputs){.counts = p[0], .offsets = p[1], .sorted_ids = p[2], .sorted_capacity = capacity,
                                  .block_expert = p[3], .total_padded = p[4], .slot_of = p[5]};
}

int mjt_index_bytes(moejit_index_dtype t) { return t == MOEJIT_INDEX_INT64 ? 8 : t == MOEJIT_INDEX_INT16 ? 2 : 4; }

int64_t mjt_index_get(const void *ids, moejit_index_dtype t, int64_t i)
{
    if (t == MOEJIT_INDEX_INT64) return ((const int64_t *)ids)[i];
    if (t == MOEJIT_INDEX_INT16) return ((const int16_t *)ids)[i];
    return ((const int32_t *)ids)[i];
}

int64_t mjt_index_min(moejit_index_dtype t)
{
    return t == MOEJIT_INDEX_INT64 ? INT64_MIN : t == MOEJIT_INDEX_INT16 ? INT16_MIN : INT32_MIN;
}

int64_t mjt_index_max(moejit_index_dtype t)
{
    return t == MOEJIT_INDEX_INT64 ? INT64_MAX : t == MOEJIT_INDEX_INT16 ? INT16_MAX : INT32_MAX;
}

int32_t *mjt_align_draw_map(mjt_rng *rng, int E, int Eg)
{
    int32_t *map = malloc(sizeof *map * (size_t)Eg);
    assert_non_null(map);
    for (int g = 0; g < Eg; g++) {
        const uint64_t r = mjt_next(rng);
        const int32_t small = (int32_t)((r >> 20) % 5);
        switch (r % 20) {
        case 0:
        case 1:
        case 2:
        case 3:
        case 4: map[g] = -1; break;
        case 5: map[g] = E + small; break;  /* past the local experts */
        case 6: map[g] = -2 - small; break; /* negative, not -1 */
        case 7: map[g] = (r >> 8) % 2 ? INT32_MAX : INT32_MIN; break;
        default: map[g] = (int32_t)((r >> 8) % (uint64_t)E); break;
        }
    }
    return map;
}

void *mjt_align_draw_ids(mjt_rng *rng, const moejit_align_spec *spec, int32_t first_expert, int64_t N)
{
    const moejit_index_dtype t = spec->id_dtype;
    const int64_t lo = mjt_index_min(t), hi = mjt_index_max(t);
    /* the range of ids that are not dropped for lack of a local expert: [base, base + width) */
    const int64_t base = spec->global_experts ? 0 : first_expert;
    const int64_t width = spec->global_experts ? spec->global_experts : spec->num_experts;
    void *ids = malloc((size_t)mjt_index_bytes(t) * (size_t)(N ? N : 1));
    assert_non_null(ids);
    for (int64_t i = 0; i < N; i++) {
        const uint64_t r = mjt_next(rng);
        const int64_t in = base + (int64_t)((r >> 16) % (uint64_t)width), small = (int64_t)((r >> 8) % 4);
        int64_t v;
        switch (r % 20) {
        case 0: v = base - 1 - small; break;
        case 1: v = base + width + small; break;
        case 2: v = -1; break;
        case 3: v = (r >> 7) % 2 ? lo : hi; break;
        case 4:
        case 5: { /* int64: in range once truncated to 32 bits, and still dropped */
            const int64_t wraps = (r >> 40) % 2 ? 1 : -(int64_t)((r >> 41) % 9 + 1);
            v = t == MOEJIT_INDEX_INT64 ? in + wraps * ((int64_t)1 << 32) : in;
            break;
        }
        default: v = in; break;
        }
        v = v < lo ? lo : v > hi ? hi : v; /* what the type can hold (first_expert near its edges) */
        if (t == MOEJIT_INDEX_INT64) ((int64_t *)ids)[i] = v;
        else if (t == MOEJIT_INDEX_INT16) ((int16_t *)ids)[i] = (int16_t)v;
        else ((int32_t *)ids)[i] = (int32_t)v;
    }
    return ids;
}

int mjt_align_expected_local(const moejit_align_spec *spec, int32_t first_expert, const int32_t *map, int64_t id)
{
    const int E = spec->num_experts;
    if (spec->global_experts) {
        if (id < 0 || id >= spec->global_experts) return -1;
        return map[id] >= 0 && map[id] < E ? map[id] : -1;
    }
    return id >= first_expert && id < (int64_t)first_expert + E ? (int)(id - first_expert) : -1;
}

void mjt_align_compare(const mjt_align_bufs *dev, const mjt_align_bufs *ref, const char *what)
{
    for (int i = 0; i < 6; i++) {
        int32_t *got = malloc(4 * dev->len[i] + 4);
        assert_non_null(got);
        mjt_d2h(got, dev->buf[i], 4 * dev->len[i]);
        for (size_t j = 0; j < dev->len[i]; j++)
            if (got[j] != ref->buf[i][j]) {
                const int32_t g = got[j];
                free(got);
                fail_msg("%s: %s[%zu] = %d (0x%08x), reference %d (0x%08x)", what, k_align_names[i], j, g, (unsigned)g,
                         ref->buf[i][j], (unsigned)ref->buf[i][j]);
            }
        free(got);
    }
}

const moejit_route_align_spec mjt_route_align_shapes[] = {
    /* DeepSeek-V3 exactly: 8 groups, the best 4 by top2_sum */
    {.route = {.num_experts = 256, .topk = 8, .score = MOEJIT_SCORE_SIGMOID, .num_groups = 8, .topk_groups = 4,
      .group_score = MOEJIT_GROUP_SCORE_TOP2_SUM, .has_bias = 1, .renormalize = 1, .scale_output = 1,
      .routed_scaling_factor = 2.5f},
     .block_size = 64},
    /* DeepSeek-V3's scoring without groups, one shared slot; Kimi-K2 */
    {.route = {.num_experts = 256, .topk = 8, .score = MOEJIT_SCORE_SIGMOID, .has_bias = 1, .renormalize = 1,
      .scale_output = 1, .routed_scaling_factor = 2.5f, .shared_slots = 1},
     .block_size = 64},
    {.route = {.num_experts = 384, .topk = 8, .score = MOEJIT_SCORE_SIGMOID, .dtype = MOEJIT_DTYPE_BF16, .has_bias = 1,
      .renormalize = 1, .scale_output = 1, .routed_scaling_factor = 2.827f},
     .block_size = 16},
    /* groups, a shared slot, renormalised and scaled: the shared weight is 1.0 (issue 12) */
    {.route = {.num_experts = 128, .topk = 4, .score = MOEJIT_SCORE_SIGMOID, .num_groups = 4, .topk_groups = 2,
      .has_bias = 1, .renormalize = 1, .scale_output = 1, .routed_scaling_factor = 2.5f, .shared_slots = 1},
     .block_size = 32},
    /* gpt-oss, Llama-4 (top-k, then the score) */
    {.route = {.num_experts = 128, .topk = 4, .score_after_topk = 1, .dtype = MOEJIT_DTYPE_BF16}, .block_size = 16},
    {.route = {.num_experts = 16, .topk = 1, .score = MOEJIT_SCORE_SIGMOID, .score_after_topk = 1, .dtype = MOEJIT_DTYPE_BF16},
     .block_size = 128},
    /* Qwen3 (f16), Qwen3-Next with a shared slot, sqrt-softplus with the widest slot rows */
    {.route = {.num_experts = 128, .topk = 8, .renormalize = 1, .dtype = MOEJIT_DTYPE_F16}, .block_size = 64},
    {.route = {.num_experts = 512, .topk = 10, .renormalize = 1, .dtype = MOEJIT_DTYPE_BF16, .shared_slots = 1}, .block_size = 128},
    {.route = {.num_experts = 1024, .topk = 32, .score = MOEJIT_SCORE_SQRT_SOFTPLUS, .shared_slots = 32}, .block_size = 32},
    /* a soft cap (GLM-4.5's size), Mixtral */
    {.route = {.num_experts = 160, .topk = 6, .softcap = 30.0f, .renormalize = 1}, .block_size = 256},
    {.route = {.num_experts = 8, .topk = 2, .renormalize = 1, .dtype = MOEJIT_DTYPE_BF16}, .block_size = 16},
    /* the extreme block sizes on both of the fused kernel's align paths: the small one (E+S <=
     * 1024) at B = 1 (a block a row) and B = 1024 (mostly padding), the one-block one (E+S > 1024) */
    {.route = {.num_experts = 256, .topk = 8, .score = MOEJIT_SCORE_SIGMOID, .has_bias = 1, .renormalize = 1,
      .scale_output = 1, .routed_scaling_factor = 2.5f, .shared_slots = 1},
     .block_size = 1},
    {.route = {.num_experts = 8, .topk = 2, .renormalize = 1, .dtype = MOEJIT_DTYPE_BF16}, .block_size = 1024},
    {.route = {.num_experts = 1024, .topk = 8, .dtype = MOEJIT_DTYPE_BF16, .shared_slots = 1}, .block_size = 1},
    {.route = {.num_experts = 1024, .topk = 32, .score = MOEJIT_SCORE_SQRT_SOFTPLUS, .shared_slots = 32}, .block_size = 1024},
};
const size_t mjt_route_align_shape_count = sizeof mjt_route_align_shapes / sizeof mjt_route_align_shapes[0];

/* ---- cubins ---- */

void mjt_check_cubin(const void *cubin, size_t len, int sm, const char *what)
{
    if (len < sizeof(Elf64_Ehdr)) fail_msg("%s: cubin of %zu bytes", what, len);
    Elf64_Ehdr h;
    memcpy(&h, cubin, sizeof h);
    if (memcmp(h.e_ident, ELFMAG, SELFMAG) || h.e_machine != 190 /* EM_CUDA */)
        fail_msg("%s: not a CUDA ELF (machine %d)", what, h.e_machine);
    if (((h.e_flags >> 8) & 0xff) != (unsigned)sm) fail_msg("%s: e_flags 0x%x is not sm_%d", what, h.e_flags, sm);
}

void mjt_check_cached_cubin(const char *dir, const char *key, int sm)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/v1/%.2s/%s.mjc", dir, key, key + 2);
    mj_cache_blob b;
    assert_int_equal(mj_cache_read_file(path, &b), MOEJIT_OK);
    mjt_check_cubin(b.view.cubin, b.view.cubin_len, sm, key);
    mj_cache_blob_free(&b);
}
