/* Spec validation, normalisation, naming and argument checks: every bad input gets its own status
 * and a message naming the field and value; nothing is compiled, written or launched. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/ops.h"
#include "common/dtype.h"
#include "jit/codegen.h"
#include "ops/route/route.h"
#include "support.h"

static moejit_route_spec valid_spec(void)
{
    moejit_route_spec s;
    memset(&s, 0, sizeof s);
    s.num_experts = 64;
    s.topk = 8;
    return s;
}

static void expect_spec_error(moejit_route_spec s, moejit_status want, const char *needle)
{
    moejit_kernel_desc d = {.op = MOEJIT_OP_ROUTE, .route = s};
    moejit_status st = moejit_validate(&d);
    if (st != want)
        fail_msg("expected %s, got %s (%s)", moejit_status_str(want), moejit_status_str(st), moejit_last_error(NULL));
    if (!strstr(moejit_last_error(NULL), needle))
        fail_msg("message \"%s\" does not mention \"%s\"", moejit_last_error(NULL), needle);
}

static void test_bad_specs(void **state)
{
    (void)state;
    moejit_route_spec s = valid_spec();
    s.topk = 9, s.num_experts = 8;
    expect_spec_error(s, MOEJIT_ERR_INVALID_SPEC, "topk = 9 exceeds num_experts = 8");
    s = valid_spec(), s.num_experts = 0;
    expect_spec_error(s, MOEJIT_ERR_INVALID_SPEC, "num_experts = 0");
    s = valid_spec(), s.num_experts = -5;
    expect_spec_error(s, MOEJIT_ERR_INVALID_SPEC, "num_experts = -5");
    s = valid_spec(), s.num_experts = MOEJIT_MAX_EXPERTS + 1;
    char want[64];
    snprintf(want, sizeof want, "num_experts = %d exceeds the maximum", MOEJIT_MAX_EXPERTS + 1);
    expect_spec_error(s, MOEJIT_ERR_UNSUPPORTED, want);
    s = valid_spec(), s.topk = 0;
    expect_spec_error(s, MOEJIT_ERR_INVALID_SPEC, "topk = 0");
    s = valid_spec(), s.num_experts = 1024, s.topk = MOEJIT_MAX_TOPK + 1;
    snprintf(want, sizeof want, "topk = %d exceeds the maximum", MOEJIT_MAX_TOPK + 1);
    expect_spec_error(s, MOEJIT_ERR_UNSUPPORTED, want);
    s = valid_spec(), s.dtype = (moejit_dtype)7;
    expect_spec_error(s, MOEJIT_ERR_INVALID_SPEC, "dtype = 7");
    s = valid_spec(), s.score = (moejit_score)9;
    expect_spec_error(s, MOEJIT_ERR_INVALID_SPEC, "score = 9");
    s = valid_spec(), s.score = (moejit_score)-1;
    expect_spec_error(s, MOEJIT_ERR_INVALID_SPEC, "score = -1");
    s = valid_spec(), s.num_groups = 3;
    expect_spec_error(s, MOEJIT_ERR_INVALID_SPEC, "num_groups = 3 does not divide num_experts = 64");
    s = valid_spec(), s.num_groups = 8, s.topk_groups = 9;
    expect_spec_error(s, MOEJIT_ERR_INVALID_SPEC, "topk_groups = 9 exceeds num_groups = 8");
    s = valid_spec(), s.num_groups = 8, s.topk_groups = 1, s.topk = 9;
    expect_spec_error(s, MOEJIT_ERR_INVALID_SPEC, "topk = 9 exceeds the 8 experts");
    s = valid_spec(), s.shared_slots = -1;
    expect_spec_error(s, MOEJIT_ERR_INVALID_SPEC, "shared_slots = -1");
    s = valid_spec(), s.softcap = -1.0f;
    expect_spec_error(s, MOEJIT_ERR_INVALID_SPEC, "softcap = -1");
    s = valid_spec(), s.routed_scaling_factor = -2.0f;
    expect_spec_error(s, MOEJIT_ERR_INVALID_SPEC, "routed_scaling_factor = -2");

    moejit_kernel_desc d = {.op = (moejit_op)42};
    assert_int_equal(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC);
    assert_non_null(strstr(moejit_last_error(NULL), "op = 42"));
    assert_int_equal(moejit_validate(NULL), MOEJIT_ERR_INVALID_ARGUMENT);
}

static void test_normalisation(void **state)
{
    (void)state;
    /* Defaults resolve, irrelevant fields are dropped: these specs are one kernel. */
    moejit_route_spec a = valid_spec(), b = valid_spec();
    b.num_groups = 1, b.topk_groups = 1, b.group_score = MOEJIT_GROUP_SCORE_TOP2_SUM;
    b.routed_scaling_factor = 2.5f; /* unused: no scaling, no shared slots */
    b.scale_output = 0;
    mj_route_shape ra, rb;
    assert_int_equal(mj_route_normalize(&a, &ra), MOEJIT_OK);
    assert_int_equal(mj_route_normalize(&b, &rb), MOEJIT_OK);
    assert_memory_equal(&ra, &rb, sizeof ra);
    assert_int_equal(ra.groups, 1);
    assert_int_equal(ra.topk_groups, 1);
    assert_true(ra.scaling_factor == 1.0f);
    /* A factor that is used is kept. */
    b.scale_output = 1;
    assert_int_equal(mj_route_normalize(&b, &rb), MOEJIT_OK);
    assert_true(rb.scaling_factor == 2.5f);
    assert_int_equal(rb.scale_output, 1);
    /* Booleans: any non-zero is true. */
    b = valid_spec(), b.renormalize = 7;
    assert_int_equal(mj_route_normalize(&b, &rb), MOEJIT_OK);
    assert_int_equal(rb.renormalize, 1);
}

static void test_names(void **state)
{
    (void)state;
    moejit_kernel_desc d = {.op = MOEJIT_OP_ROUTE, .route = valid_spec()};
    d.route.num_experts = 384, d.route.topk = 8, d.route.score = MOEJIT_SCORE_SIGMOID, d.route.dtype = MOEJIT_DTYPE_BF16;
    char name[96];
    assert_int_equal(moejit_kernel_name(&d, name, sizeof name), MOEJIT_OK);
    assert_string_equal(name, "moejit_route_sigmoid_e384_k8_bf16");
    d.route.has_bias = 1, d.route.renormalize = 1, d.route.scale_output = 1, d.route.routed_scaling_factor = 2.5f;
    assert_int_equal(moejit_kernel_name(&d, name, sizeof name), MOEJIT_OK);
    assert_string_equal(name, "moejit_route_sigmoid_e384_k8_bias_renorm_x2p5_bf16");
    /* Too small a buffer is an error, not a truncated name. */
    assert_int_equal(moejit_kernel_name(&d, name, 10), MOEJIT_ERR_INVALID_ARGUMENT);

    /* A name longer than the plan holds (found by fuzz_spec: the entry point in the source was
     * cut short and differed from this name) ends in a hash of the full name instead: the same
     * everywhere, unique, within 95 characters. */
    d.route = valid_spec();
    d.route.num_experts = 4096, d.route.topk = 64, d.route.score = MOEJIT_SCORE_SQRT_SOFTPLUS;
    d.route.num_groups = 2048, d.route.topk_groups = 2047, d.route.group_score = MOEJIT_GROUP_SCORE_TOP2_SUM;
    d.route.has_bias = 1, d.route.softcap = 1.17550e-38f, d.route.score_after_topk = 1, d.route.renormalize = 1;
    d.route.routed_scaling_factor = 3.40282e+38f, d.route.shared_slots = 64, d.route.dtype = MOEJIT_DTYPE_BF16;
    if (moejit_kernel_name(&d, name, sizeof name) != MOEJIT_OK) fail_msg("%s", moejit_last_error(NULL));
    assert_int_equal(strlen(name), 95);
    assert_non_null(strstr(name, "moejit_route_sqrt_softplus_e4096_k64_g2048_tg2047"));
    char other[96];
    d.route.softcap = 1.17551e-38f; /* another kernel: another hash */
    assert_int_equal(moejit_kernel_name(&d, other, sizeof other), MOEJIT_OK);
    assert_string_not_equal(name, other);
    char *src;
    assert_int_equal(moejit_source(NULL, &d, &src, NULL), MOEJIT_OK);
    char decl[128];
    snprintf(decl, sizeof decl, " %s(", other);
    assert_non_null(strstr(src, decl));
    moejit_free(src);
}

static void test_status_strings(void **state)
{
    (void)state;
    for (int s = MOEJIT_OK; s <= MOEJIT_ERR_AMBIGUOUS; s++)
        assert_null(strstr(moejit_status_str((moejit_status)s), "UNKNOWN"));
    assert_string_equal(moejit_status_str((moejit_status)999), "MOEJIT_ERR_UNKNOWN");
}

/* Bad launch arguments: the right status, a message naming the field, and no compile, no cache
 * write, no launch — checked on a fresh cache directory. */
static void test_bad_route_args(void **state)
{
    (void)state;
    char dir[4096];
    moejit_ctx *ctx = mjt_open_tmp(dir);
    moejit_route_spec s = valid_spec();
    /* Plausible-looking device pointers: the checks must not dereference them. */
    moejit_route_args good = {.logits = (void *)0x10000, .ids = (int32_t *)0x20000, .weights = (float *)0x30000,
                              .num_tokens = 4};
    struct {
        moejit_route_args args;
        int has_bias;
        const char *needle;
    } cases[] = {
        {{.ids = good.ids, .weights = good.weights, .num_tokens = 4}, 0, "logits is NULL"},
        {{.logits = good.logits, .weights = good.weights, .num_tokens = 4}, 0, "ids is NULL"},
        {{.logits = good.logits, .ids = good.ids, .num_tokens = 4}, 0, "weights is NULL"},
        {good, 1, "bias (spec.has_bias = 1) is NULL"},
        {{.logits = good.logits, .ids = good.ids, .weights = good.weights, .num_tokens = -3}, 0, "num_tokens = -3"},
        {{.logits = good.logits, .ids = good.ids, .weights = good.weights, .num_tokens = 4, .row_stride = 63}, 0,
         "row_stride = 63 is smaller than num_experts = 64"},
        {{.logits = (void *)0x10002, .ids = good.ids, .weights = good.weights, .num_tokens = 4}, 0,
         "logits = 0x10002 is not aligned to 4 bytes"},
        {{.logits = good.logits, .ids = (int32_t *)0x20001, .weights = good.weights, .num_tokens = 4}, 0,
         "ids = 0x20001 is not aligned"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        s.has_bias = cases[i].has_bias;
        moejit_status st = moejit_route(ctx, &s, &cases[i].args, NULL);
        if (st != MOEJIT_ERR_INVALID_ARGUMENT || !strstr(moejit_last_error(ctx), cases[i].needle))
            fail_msg("case %zu: %s: %s (wanted \"%s\")", i, moejit_status_str(st), moejit_last_error(ctx), cases[i].needle);
    }
    s.has_bias = 0;
    assert_int_equal(moejit_route(ctx, &s, NULL, NULL), MOEJIT_ERR_INVALID_ARGUMENT);
    assert_int_equal(moejit_route(NULL, &s, &good, NULL), MOEJIT_ERR_INVALID_ARGUMENT);
    assert_int_equal(moejit_route(ctx, NULL, &good, NULL), MOEJIT_ERR_INVALID_ARGUMENT);
    s.topk = 65;
    assert_int_equal(moejit_route(ctx, &s, &good, NULL), MOEJIT_ERR_INVALID_SPEC);
    /* An empty batch with NULL pointers is valid and launches nothing. */
    moejit_route_args empty = {.num_tokens = 0};
    s = valid_spec();
    assert_int_equal(moejit_route(ctx, &s, &empty, NULL), MOEJIT_OK);

    moejit_stats stats;
    assert_int_equal(moejit_ctx_stats(ctx, &stats), MOEJIT_OK);
    assert_int_equal(stats.compiles, 0);
    assert_int_equal(stats.launches, 0);
    assert_int_equal(stats.kernels, 0);
    assert_int_equal(mjt_count_files(dir), 0);
    moejit_close(ctx);
    mjt_rmtree(dir);
}

/* Without a GPU a valid launch reports the missing driver or device; with one it is not this test's business. */
static void test_no_driver_status(void **state)
{
    (void)state;
    if (mjt_gpu_available()) skip();
    moejit_ctx *ctx;
    moejit_config cfg = {.cache_mode = MOEJIT_CACHE_OFF};
    assert_int_equal(moejit_open(&cfg, &ctx), MOEJIT_OK);
    moejit_route_spec s = valid_spec();
    moejit_route_args a = {.logits = (void *)0x10000, .ids = (int32_t *)0x20000, .weights = (float *)0x30000,
                           .num_tokens = 1};
    moejit_status st = moejit_route(ctx, &s, &a, NULL);
    assert_true(st == MOEJIT_ERR_NO_DRIVER || st == MOEJIT_ERR_NO_DEVICE);
    assert_true(strlen(moejit_last_error(ctx)) > 10);
    char arch[16];
    assert_int_equal(moejit_ctx_device_arch(ctx, arch, sizeof arch), st);
    /* Source generation keeps working without a driver. */
    moejit_kernel_desc d = {.op = MOEJIT_OP_ROUTE, .route = s};
    char *src;
    assert_int_equal(moejit_source(ctx, &d, &src, NULL), MOEJIT_OK);
    moejit_free(src);
    moejit_close(ctx);
}

static void test_config_errors(void **state)
{
    (void)state;
    moejit_ctx *ctx = NULL;
    setenv("MOEJIT_CACHE", "sometimes", 1);
    assert_int_equal(moejit_open(NULL, &ctx), MOEJIT_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(moejit_last_error(NULL), "MOEJIT_CACHE = \"sometimes\""));
    assert_null(ctx);
    unsetenv("MOEJIT_CACHE");
    setenv("MOEJIT_NO_COMPILE", "maybe", 1);
    assert_int_equal(moejit_open(NULL, &ctx), MOEJIT_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(moejit_last_error(NULL), "MOEJIT_NO_COMPILE = \"maybe\""));
    unsetenv("MOEJIT_NO_COMPILE");
    moejit_config cfg = {.cache_mode = (moejit_cache_mode)9};
    assert_int_equal(moejit_open(&cfg, &ctx), MOEJIT_ERR_INVALID_ARGUMENT);
    assert_int_equal(moejit_open(NULL, NULL), MOEJIT_ERR_INVALID_ARGUMENT);
    /* Relative cache directories are made absolute. */
    cfg = (moejit_config){.cache_dir = "relative/dir"};
    assert_int_equal(moejit_open(&cfg, &ctx), MOEJIT_OK);
    assert_true(moejit_ctx_cache_dir(ctx)[0] == '/');
    assert_non_null(strstr(moejit_ctx_cache_dir(ctx), "/relative/dir"));
    moejit_close(ctx);
    /* XDG_CACHE_HOME, then HOME. */
    unsetenv("MOEJIT_CACHE_DIR");
    setenv("XDG_CACHE_HOME", "/somewhere/xdg", 1);
    assert_int_equal(moejit_open(NULL, &ctx), MOEJIT_OK);
    assert_string_equal(moejit_ctx_cache_dir(ctx), "/somewhere/xdg/moejit");
    moejit_close(ctx);
    unsetenv("XDG_CACHE_HOME");
    setenv("HOME", "/home/someone", 1);
    assert_int_equal(moejit_open(NULL, &ctx), MOEJIT_OK);
    assert_string_equal(moejit_ctx_cache_dir(ctx), "/home/someone/.cache/moejit");
    moejit_close(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_specs),      cmocka_unit_test(test_normalisation),
        cmocka_unit_test(test_names),          cmocka_unit_test(test_status_strings),
        cmocka_unit_test(test_bad_route_args), cmocka_unit_test(test_no_driver_status),
        cmocka_unit_test(test_config_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
