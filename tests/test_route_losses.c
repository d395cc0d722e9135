/* The auxiliary losses' C references (route's statistics, route_losses, route_backward's gradient
 * of the losses): checked against a direct double implementation written from the formulas in
 * moejit.h, and the gradient against finite differences in double — every score, soft cap on and
 * off, one sequence and several of unequal lengths; spec and argument errors. No GPU. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

enum { T = 23, E = 12, K = 3, MAXS = 4 };

/* the aux scores of a row of double logits, direct from moejit.h route step 13 */
static void scores_direct(const moejit_route_spec *s, const double *x, double *p, double *lse)
{
    double f[E], m = -INFINITY, z = 0.0, n = 0.0;
    for (int e = 0; e < E; e++) {
        f[e] = s->softcap > 0 ? s->softcap * tanh(x[e] / s->softcap) : x[e];
        m = fmax(m, f[e]);
    }
    for (int e = 0; e < E; e++) z += exp(f[e] - m);
    *lse = m + log(z);
    for (int e = 0; e < E; e++) {
        if (s->score == MOEJIT_SCORE_SOFTMAX) p[e] = exp(f[e] - m) / z;
        else if (s->score == MOEJIT_SCORE_SIGMOID) p[e] = 1.0 / (1.0 + exp(-f[e]));
        else p[e] = sqrt(f[e] > 20 ? f[e] : log1p(exp(f[e])));
        n += p[e];
    }
    if (s->score != MOEJIT_SCORE_SOFTMAX)
        for (int e = 0; e < E; e++) p[e] /= n + 1e-20;
}

/* gl · (L_aux, L_seq, L_z) of logits x [T, E] with the counts c [S, E] held constant */
static double losses_direct(const moejit_route_spec *s, const double *x, const int32_t *c, const int32_t *off, int S,
                            const double *gl, double out[3])
{
    double P[MAXS][E] = {{0}}, z = 0.0;
    for (int t = 0; t < T; t++) {
        int q = 0;
        while (q + 1 < S && t >= off[q + 1]) q++;
        double p[E], lse;
        scores_direct(s, x + t * E, p, &lse);
        for (int e = 0; e < E; e++) P[q][e] += p[e];
        z += lse * lse;
    }
    double aux = 0.0, seq = 0.0;
    for (int e = 0; e < E; e++) {
        double Pe = 0.0, ce = 0.0;
        for (int q = 0; q < S; q++) Pe += P[q][e], ce += c[q * E + e];
        aux += Pe * ce;
    }
    aux *= (double)E / ((double)K * T * T);
    for (int q = 0; q < S; q++) {
        const double L = off[q + 1] - off[q];
        for (int e = 0; e < E; e++) seq += c[q * E + e] * E / (K * L) * (P[q][e] / L);
    }
    seq /= S;
    out[0] = aux, out[1] = seq, out[2] = z / T;
    return gl[0] * out[0] + gl[1] * out[1] + gl[2] * out[2];
}

typedef struct run {
    float logits[T * E];
    int32_t ids[T * K];
    float weights[T * K];
    uint64_t sums[MAXS * E];
    int32_t counts[MAXS * E];
    float lse[T];
    float losses[3];
    float grad[T * E];
} run;

static void check_case(int score, float cap, int S, mjt_rng *rng)
{
    static const int32_t offsets[][MAXS + 1] = {{0, T}, {0, 5, 6, 23}, {0, 10, 17, 20, 23}};
    const int32_t *off = S == 1 ? offsets[0] : S == 3 ? offsets[1] : offsets[2];
    const uint32_t flags = MOEJIT_AUX_Z_LOSS | (S == 1 ? MOEJIT_AUX_LOAD_BALANCE
                                                       : MOEJIT_AUX_LOAD_BALANCE | MOEJIT_AUX_SEQ_LOAD_BALANCE);
    moejit_route_spec spec = {.num_experts = E, .topk = K, .score = score, .softcap = cap, .aux_stats = flags};
    static run r;
    memset(&r, 0, sizeof r);
    for (int i = 0; i < T * E; i++) r.logits[i] = (float)(2.0 * mjt_normal(rng));
    moejit_aux_stats aux = {.prob_sums = r.sums, .counts = r.counts, .lse = r.lse, .seq_offsets = off, .num_seqs = S};
    moejit_route_args a = {.logits = r.logits, .ids = r.ids, .weights = r.weights, .num_tokens = T, .aux = &aux};
    assert_int_equal(moejit_route_reference(&spec, &a), MOEJIT_OK);
    /* counts: route's own picks, per sequence */
    const int N = (flags & MOEJIT_AUX_SEQ_LOAD_BALANCE) ? S : 1;
    int32_t c[MAXS * E] = {0};
    for (int t = 0; t < T; t++) {
        int q = 0;
        while (q + 1 < N && t >= off[q + 1]) q++;
        for (int k = 0; k < K; k++) c[q * E + r.ids[t * K + k]]++;
    }
    assert_memory_equal(c, r.counts, sizeof(int32_t) * (size_t)(N * E));
    /* prob sums and lse against the direct scores */
    double x[T * E], P[MAXS * E] = {0};
    for (int i = 0; i < T * E; i++) x[i] = r.logits[i];
    for (int t = 0; t < T; t++) {
        int q = 0;
        while (q + 1 < N && t >= off[q + 1]) q++;
        double p[E], lse;
        scores_direct(&spec, x + t * E, p, &lse);
        for (int e = 0; e < E; e++) P[q * E + e] += p[e];
        assert_true(fabs(r.lse[t] - lse) <= 1e-6 * fmax(1.0, fabs(lse)));
    }
    for (int i = 0; i < N * E; i++) assert_true(fabs(ldexp((double)r.sums[i], -32) - P[i]) <= 1e-9 * T);
    /* the losses */
    const double gl[3] = {0.7, (flags & MOEJIT_AUX_SEQ_LOAD_BALANCE) ? -1.3 : 0.0, 0.45};
    double direct[3];
    int32_t cs[MAXS * E] = {0}; /* per sequence, for the direct formulas (one sequence: the totals) */
    memcpy(cs, c, sizeof cs);
    const double L = losses_direct(&spec, x, cs, off, N, gl, direct);
    moejit_route_losses_spec ls = {.num_experts = E, .topk = K, .aux_stats = flags};
    moejit_route_losses_args la = {.aux = &aux, .losses = r.losses, .num_tokens = T};
    assert_int_equal(moejit_route_losses_reference(&ls, &la), MOEJIT_OK);
    for (int i = 0; i < 3; i++) {
        const double want = (i == 1 && !(flags & MOEJIT_AUX_SEQ_LOAD_BALANCE)) ? 0.0 : direct[i];
        if (fabs(r.losses[i] - want) > 1e-6 * fmax(1.0, fabs(want)))
            fail_msg("score %d cap %g S %d: loss %d = %.9g, direct %.9g", score, (double)cap, S, i, (double)r.losses[i],
                     want);
    }
    /* the gradient: grad_weights zero, so grad_logits is the losses' alone; finite differences */
    float gw[T * K] = {0}, glf[3] = {(float)gl[0], (float)gl[1], (float)gl[2]};
    moejit_route_backward_spec bs = {.route = spec};
    moejit_route_backward_args ba = {.logits = r.logits, .ids = r.ids, .grad_weights = gw, .grad_logits = r.grad,
                                     .num_tokens = T, .grad_losses = glf, .aux = &aux};
    assert_int_equal(moejit_route_backward_reference(&bs, &ba), MOEJIT_OK);
    (void)L;
    double scale = 0.0;
    double fd[T * E];
    for (int i = 0; i < T * E; i++) {
        const double h = 1e-5 * fmax(1.0, fabs(x[i]));
        double tmp[3];
        x[i] += h;
        const double up = losses_direct(&spec, x, cs, off, N, (const double[3]){gl[0], gl[1], gl[2]}, tmp);
        x[i] -= 2 * h;
        const double dn = losses_direct(&spec, x, cs, off, N, (const double[3]){gl[0], gl[1], gl[2]}, tmp);
        x[i] += h;
        fd[i] = (up - dn) / (2 * h);
        scale = fmax(scale, fabs(fd[i]));
    }
    for (int i = 0; i < T * E; i++)
        if (fabs(r.grad[i] - fd[i]) > 1e-5 * scale + 1e-9)
            fail_msg("score %d cap %g S %d: grad[%d] = %.9g, finite differences %.9g", score, (double)cap, S, i,
                     (double)r.grad[i], fd[i]);
    /* without grad_losses the statistics change nothing: zeros (grad_weights are zero) */
    ba.grad_losses = NULL;
    assert_int_equal(moejit_route_backward_reference(&bs, &ba), MOEJIT_OK);
    for (int i = 0; i < T * E; i++) assert_true(r.grad[i] == 0.0f);
}

static void test_losses_and_gradient(void **state)
{
    (void)state;
    mjt_rng rng;
    mjt_rng_init(&rng);
    const int scores[] = {MOEJIT_SCORE_SOFTMAX, MOEJIT_SCORE_SIGMOID, MOEJIT_SCORE_SQRT_SOFTPLUS};
    for (int i = 0; i < 3; i++)
        for (int capped = 0; capped < 2; capped++)
            for (int S = 1; S <= 4; S += (S == 1 ? 2 : 1)) check_case(scores[i], capped ? 3.0f : 0.0f, S, &rng);
}

static void expect(moejit_status got, moejit_status want, const char *needle)
{
    if (got != want) fail_msg("status %s, want %s (%s)", moejit_status_str(got), moejit_status_str(want), moejit_last_error(NULL));
    if (!strstr(moejit_last_error(NULL), needle)) fail_msg("message \"%s\" lacks \"%s\"", moejit_last_error(NULL), needle);
}

static void test_errors(void **state)
{
    (void)state;
    moejit_kernel_desc d = {.op = MOEJIT_OP_ROUTE, .route = {.num_experts = 64, .topk = 4, .aux_stats = 8}};
    expect(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC, "aux_stats = 0x8");
    d.route.aux_stats = MOEJIT_AUX_LOAD_BALANCE;
    d.route.padded = 1;
    expect(moejit_validate(&d), MOEJIT_ERR_UNSUPPORTED, "padded = 1");
    d.route.padded = 0;
    d.route.replay = MOEJIT_REPLAY_GIVEN;
    expect(moejit_validate(&d), MOEJIT_ERR_UNSUPPORTED, "replay = given");
    d.route.replay = 0;
    d.route.seq_offset_dtype = MOEJIT_INDEX_INT16;
    expect(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC, "seq_offset_dtype = 2");
    d.route.seq_offset_dtype = 0;
    assert_int_equal(moejit_validate(&d), MOEJIT_OK);
    moejit_kernel_desc ra = {.op = MOEJIT_OP_ROUTE_ALIGN, .route_align = {.route = d.route, .block_size = 16}};
    expect(moejit_validate(&ra), MOEJIT_ERR_UNSUPPORTED, "route.aux_stats = 0x1");
    moejit_kernel_desc l = {.op = MOEJIT_OP_ROUTE_LOSSES, .route_losses = {.num_experts = 64, .topk = 4}};
    expect(moejit_validate(&l), MOEJIT_ERR_INVALID_SPEC, "aux_stats = 0x0");
    l.route_losses.aux_stats = MOEJIT_AUX_Z_LOSS;
    l.route_losses.topk = 65;
    expect(moejit_validate(&l), MOEJIT_ERR_INVALID_SPEC, "topk = 65");
    l.route_losses.topk = 4;
    assert_int_equal(moejit_validate(&l), MOEJIT_OK);
    /* arguments */
    float logits[64] = {0}, w[4];
    int32_t ids[4];
    moejit_route_args a = {.logits = logits, .ids = ids, .weights = w, .num_tokens = 1};
    expect(moejit_route_reference(&d.route, &a), MOEJIT_ERR_INVALID_ARGUMENT, "aux is NULL");
    d.route.aux_stats = MOEJIT_AUX_SEQ_LOAD_BALANCE;
    uint64_t sums[64];
    int32_t counts[64], off[2] = {0, 1};
    moejit_aux_stats aux = {.prob_sums = sums, .counts = counts, .seq_offsets = off, .num_seqs = 0};
    a.aux = &aux;
    expect(moejit_route_reference(&d.route, &a), MOEJIT_ERR_INVALID_ARGUMENT, "aux->num_seqs = 0");
    aux.num_seqs = 1;
    aux.counts = NULL;
    expect(moejit_route_reference(&d.route, &a), MOEJIT_ERR_INVALID_ARGUMENT, "aux->counts");
    aux.counts = counts;
    memset(sums, 0, sizeof sums), memset(counts, 0, sizeof counts);
    assert_int_equal(moejit_route_reference(&d.route, &a), MOEJIT_OK);
    /* the backward's grad_losses without aux_stats */
    float gl[3] = {1, 1, 1}, gw[4] = {0}, g[64];
    moejit_route_backward_spec bs = {.route = {.num_experts = 64, .topk = 4}};
    moejit_route_backward_args ba = {.logits = logits, .ids = ids, .grad_weights = gw, .grad_logits = g,
                                     .num_tokens = 1, .grad_losses = gl};
    expect(moejit_route_backward_reference(&bs, &ba), MOEJIT_ERR_INVALID_ARGUMENT, "grad_losses is set");
    /* names */
    char name[160];
    assert_int_equal(moejit_kernel_name(&l, name, sizeof name), MOEJIT_OK);
    assert_string_equal(name, "moejit_route_losses_e64_k4_z");
    d.route.aux_stats = 7;
    d.route.seq_offset_dtype = MOEJIT_INDEX_INT64;
    assert_int_equal(moejit_kernel_name(&d, name, sizeof name), MOEJIT_OK);
    assert_string_equal(name, "moejit_route_softmax_e64_k4_auxlbseqz64_f32");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_losses_and_gradient),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
