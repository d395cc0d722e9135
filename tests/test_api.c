/* Properties of the public API itself: the run-time version, reserved words that let structs grow
 * without breaking binaries, and the one rule for error detail. No GPU: every call here fails
 * before anything is compiled or launched, or needs no device. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

static void test_version(void **state)
{
    (void)state;
    assert_int_equal(moejit_version_number(), MOEJIT_VERSION_NUMBER);
    assert_string_equal(moejit_version_string(), MOEJIT_VERSION_STRING);
    char expect[32];
    snprintf(expect, sizeof expect, "%d.%d.%d", MOEJIT_VERSION_MAJOR, MOEJIT_VERSION_MINOR, MOEJIT_VERSION_PATCH);
    assert_string_equal(moejit_version_string(), expect);
    /* the header and the CMake project (package version, soname) say the same */
    assert_string_equal(MOEJIT_VERSION_STRING, MOEJIT_PROJECT_VERSION);
    assert_int_equal(MOEJIT_VERSION_NUMBER, MOEJIT_VERSION_MAJOR * 10000 + MOEJIT_VERSION_MINOR * 100 + MOEJIT_VERSION_PATCH);
}

/* A non-zero reserved word is a field this library does not know: MOEJIT_ERR_UNSUPPORTED naming
 * the struct and the word, before anything is compiled or launched. */
static void test_reserved_words(void **state)
{
    (void)state;
    char dir[4096];
    moejit_ctx *ctx = mjt_open_tmp(dir);
    const moejit_route_spec route = {.num_experts = 64, .topk = 8};
    moejit_route_spec r = route;
    r.reserved[8] = 1; /* the last word */
    mjt_expect_error(moejit_route(ctx, &r, NULL, NULL), MOEJIT_ERR_UNSUPPORTED, "route spec: reserved[8] = 0x1 must be 0");
    moejit_route_args ra = {.num_tokens = 0};
    ra.reserved[0] = 5;
    mjt_expect_error(moejit_route(ctx, &route, &ra, NULL), MOEJIT_ERR_UNSUPPORTED, "route args: reserved[0] = 0x5");

    moejit_align_spec as = {.num_experts = 8, .block_size = 16};
    as.reserved[2] = 9;
    mjt_expect_error(moejit_align(ctx, &as, NULL, NULL), MOEJIT_ERR_UNSUPPORTED, "align spec: reserved[2] = 0x9");
    as.reserved[2] = 0;
    moejit_align_args aa = {.num_tokens = 0, .topk = 1};
    aa.reserved[4] = 3;
    mjt_expect_error(moejit_align(ctx, &as, &aa, NULL), MOEJIT_ERR_UNSUPPORTED, "align args: reserved[4] = 0x3");
    aa.reserved[4] = 0;
    aa.out.reserved[6] = 2;
    mjt_expect_error(moejit_align(ctx, &as, &aa, NULL), MOEJIT_ERR_UNSUPPORTED, "align outputs: reserved[6] = 0x2");

    moejit_route_align_spec ras = {.route = route, .block_size = 16};
    ras.reserved[0] = 1;
    mjt_expect_error(moejit_route_align(ctx, &ras, NULL, NULL), MOEJIT_ERR_UNSUPPORTED, "route_align spec: reserved[0]");
    ras.reserved[0] = 0;
    moejit_route_align_args raa = {.route = {.num_tokens = 0}};
    raa.reserved[3] = 1;
    mjt_expect_error(moejit_route_align(ctx, &ras, &raa, NULL), MOEJIT_ERR_UNSUPPORTED, "route_align args: reserved[3]");

    moejit_mx_scales_spec ms = {.cols = 4};
    moejit_mx_scales_args ma = {.layout = MOEJIT_MX_3D};
    ma.reserved[7] = 1;
    mjt_expect_error(moejit_mx_scales(ctx, &ms, &ma, NULL), MOEJIT_ERR_UNSUPPORTED, "mx_scales args: reserved[7]");
    ms.reserved[1] = 1;
    mjt_expect_error(moejit_mx_scales(ctx, &ms, &ma, NULL), MOEJIT_ERR_UNSUPPORTED, "mx_scales spec: reserved[1]");

    moejit_permute_spec ps = {.hidden = 64};
    moejit_permute_args pa = {.topk = 1};
    pa.reserved[4] = 1;
    mjt_expect_error(moejit_permute(ctx, &ps, &pa, NULL), MOEJIT_ERR_UNSUPPORTED, "permute args: reserved[4]");
    ps.reserved[4] = 1;
    mjt_expect_error(moejit_permute(ctx, &ps, &pa, NULL), MOEJIT_ERR_UNSUPPORTED, "permute spec: reserved[4]");
    moejit_combine_spec cs = {.hidden = 64};
    cs.reserved[5] = 1;
    mjt_expect_error(moejit_combine(ctx, &cs, NULL, NULL), MOEJIT_ERR_UNSUPPORTED, "combine spec: reserved[5]");

    moejit_kernel_desc d = {.op = MOEJIT_OP_ROUTE, .route = route};
    d.reserved = 1;
    mjt_expect_error(moejit_validate(&d), MOEJIT_ERR_UNSUPPORTED, "kernel descriptor: reserved = 0x1");
    mjt_expect_nothing_ran(ctx, dir);

    moejit_config cfg = {.cache_mode = MOEJIT_CACHE_OFF};
    cfg.reserved[3] = 1;
    moejit_ctx *none = NULL;
    mjt_expect_error(moejit_open(&cfg, &none), MOEJIT_ERR_UNSUPPORTED, "moejit_config: reserved[3]");
    assert_null(none);
}

/* moejit_last_error() describes the thread's most recent call: "" after a success, whatever
 * failed before it. */
static void test_error_detail_rule(void **state)
{
    (void)state;
    moejit_kernel_desc bad = {.op = MOEJIT_OP_ROUTE, .route = {.num_experts = 0, .topk = 1}};
    moejit_kernel_desc good = {.op = MOEJIT_OP_ROUTE, .route = {.num_experts = 64, .topk = 8}};
    assert_int_equal(moejit_validate(&bad), MOEJIT_ERR_INVALID_SPEC);
    assert_non_null(strstr(moejit_last_error(NULL), "num_experts = 0"));
    assert_int_equal(moejit_validate(&good), MOEJIT_OK);
    assert_string_equal(moejit_last_error(NULL), "");
    /* reading the detail and the status name does not clear it */
    assert_int_equal(moejit_validate(&bad), MOEJIT_ERR_INVALID_SPEC);
    (void)moejit_status_str(MOEJIT_ERR_INVALID_SPEC);
    (void)moejit_version_string();
    assert_non_null(strstr(moejit_last_error(NULL), "num_experts = 0"));
    char name[128];
    assert_int_equal(moejit_kernel_name(&good, name, sizeof name), MOEJIT_OK);
    assert_string_equal(moejit_last_error(NULL), "");
    moejit_route_spec spec;
    assert_int_equal(moejit_route_preset("no-such-model", &spec), MOEJIT_ERR_NOT_FOUND);
    assert_int_equal(moejit_route_preset("kimi-k2", &spec), MOEJIT_OK);
    assert_string_equal(moejit_last_error(NULL), "");
}

/* The programmatic-dependent-launch switch (moejit_config.pdl, MOEJIT_PDL): on by default; the
 * field overrides the environment; bad values name the field or variable; reserved0 is checked.
 * moejit_ctx_pdl reports it without a GPU (*active needs one: the GPU suite test_gpu_pdl). */
static int pdl_requested(int field, const char *env)
{
    if (env) setenv("MOEJIT_PDL", env, 1);
    else unsetenv("MOEJIT_PDL");
    moejit_config cfg = {.cache_mode = MOEJIT_CACHE_OFF, .pdl = field};
    moejit_ctx *ctx = NULL;
    const moejit_status st = moejit_open(&cfg, &ctx);
    unsetenv("MOEJIT_PDL");
    if (st != MOEJIT_OK) fail_msg("moejit_open(pdl = %d, MOEJIT_PDL = %s): %s", field, env ? env : "unset",
                                  moejit_last_error(NULL));
    int requested = -1;
    assert_int_equal(moejit_ctx_pdl(ctx, &requested, NULL), MOEJIT_OK);
    assert_string_equal(moejit_last_error(NULL), "");
    moejit_close(ctx);
    return requested;
}

static void test_pdl_switch(void **state)
{
    (void)state;
    assert_int_equal(pdl_requested(0, NULL), 1); /* default on */
    assert_int_equal(pdl_requested(0, "0"), 0);
    assert_int_equal(pdl_requested(0, "off"), 0);
    assert_int_equal(pdl_requested(0, "1"), 1);
    assert_int_equal(pdl_requested(1, NULL), 1);
    assert_int_equal(pdl_requested(2, NULL), 0);
    assert_int_equal(pdl_requested(2, "1"), 0); /* the field wins over the environment */
    assert_int_equal(pdl_requested(1, "0"), 1);
    /* a NULL config reads the environment too */
    setenv("MOEJIT_PDL", "0", 1);
    setenv("MOEJIT_CACHE", "off", 1);
    moejit_ctx *ctx = NULL;
    assert_int_equal(moejit_open(NULL, &ctx), MOEJIT_OK);
    int requested = -1;
    assert_int_equal(moejit_ctx_pdl(ctx, &requested, NULL), MOEJIT_OK);
    assert_int_equal(requested, 0);
    moejit_close(ctx);
    unsetenv("MOEJIT_CACHE");

    /* malformed values fail moejit_open, naming them */
    setenv("MOEJIT_PDL", "sometimes", 1);
    moejit_config cfg = {.cache_mode = MOEJIT_CACHE_OFF};
    moejit_ctx *none = NULL;
    mjt_expect_error(moejit_open(&cfg, &none), MOEJIT_ERR_INVALID_ARGUMENT, "MOEJIT_PDL = \"sometimes\"");
    assert_null(none);
    unsetenv("MOEJIT_PDL");
    cfg.pdl = 3;
    mjt_expect_error(moejit_open(&cfg, &none), MOEJIT_ERR_INVALID_ARGUMENT, "moejit_config.pdl = 3");
    cfg.pdl = -1;
    mjt_expect_error(moejit_open(&cfg, &none), MOEJIT_ERR_INVALID_ARGUMENT, "moejit_config.pdl = -1");
    cfg.pdl = 0;
    cfg.reserved0 = 7;
    mjt_expect_error(moejit_open(&cfg, &none), MOEJIT_ERR_UNSUPPORTED, "moejit_config: reserved0 = 0x7");
    assert_null(none);

    /* the getter's arguments */
    mjt_expect_error(moejit_ctx_pdl(NULL, &requested, NULL), MOEJIT_ERR_INVALID_ARGUMENT,
                     "moejit_ctx_pdl: ctx is NULL");
    cfg.reserved0 = 0;
    assert_int_equal(moejit_open(&cfg, &ctx), MOEJIT_OK);
    mjt_expect_error(moejit_ctx_pdl(ctx, NULL, NULL), MOEJIT_ERR_INVALID_ARGUMENT, "requested is NULL");
    /* *active asks the driver: without a GPU it says why, and *requested is still set */
    int active = -1;
    requested = -1;
    const moejit_status st = moejit_ctx_pdl(ctx, &requested, &active);
    assert_int_equal(requested, 1);
    if (mjt_gpu_available()) {
        assert_int_equal(st, MOEJIT_OK);
        assert_true(active == 0 || active == 1);
    } else {
        assert_true(st == MOEJIT_ERR_NO_DRIVER || st == MOEJIT_ERR_NO_DEVICE);
        assert_int_equal(active, 0);
    }
    moejit_close(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_reserved_words),
        cmocka_unit_test(test_error_detail_rule),
        cmocka_unit_test(test_pdl_switch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
