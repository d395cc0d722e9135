/* Cache keys: stable across processes and cache directories, different when any input differs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jit/key.h"
#include "support.h"

static mj_nvrtc_identity identity(const char *version, const char *build_id)
{
    mj_nvrtc_identity id;
    memset(&id, 0, sizeof id);
    snprintf(id.path, sizeof id.path, "/irrelevant/libnvrtc.so.13");
    snprintf(id.version, sizeof id.version, "%s", version);
    snprintf(id.build_id, sizeof id.build_id, "%s", build_id);
    return id;
}

static void key_of(const char *source, const char *arch, const char *flags, const mj_nvrtc_identity *nv, char *hex)
{
    mj_compile_options opt;
    assert_int_equal(mj_compile_options_build(arch, flags, &opt), MOEJIT_OK);
    mj_key k;
    assert_int_equal(mj_key_build(source, strlen(source), &opt, arch, nv, &k), MOEJIT_OK);
    assert_true(mj_entry_key_valid(k.hex));
    memcpy(hex, k.hex, 33);
    mj_key_free(&k);
}

static void test_key_inputs(void **state)
{
    (void)state;
    mj_nvrtc_identity nv = identity("13.0.88", "65be0db342ad51a06876e71e210bccc5aa8322cf");
    mj_nvrtc_identity nv_version = identity("13.1.0", "65be0db342ad51a06876e71e210bccc5aa8322cf");
    mj_nvrtc_identity nv_build = identity("13.0.88", "75be0db342ad51a06876e71e210bccc5aa8322cf");
    char keys[8][33];
    key_of("kernel source", "sm_90a", NULL, &nv, keys[0]);
    key_of("kernel source!", "sm_90a", NULL, &nv, keys[1]);
    key_of("kernel source", "sm_100a", NULL, &nv, keys[2]);
    key_of("kernel source", "sm_90a", "-lineinfo", &nv, keys[3]);
    key_of("kernel source", "sm_90a", NULL, &nv_version, keys[4]);
    key_of("kernel source", "sm_90a", NULL, &nv_build, keys[5]);
    key_of("kernel source", "sm_90a", "-DA=1 -DB=2", &nv, keys[6]);
    key_of("kernel source", "sm_90a", "-DA=1  -DB=2 ", &nv, keys[7]); /* same options, other spacing */
    for (int i = 0; i < 7; i++)
        for (int j = i + 1; j < 7; j++)
            if (!strcmp(keys[i], keys[j])) fail_msg("inputs %d and %d give the same key %s", i, j, keys[i]);
    assert_string_equal(keys[6], keys[7]);
    /* Deterministic. */
    char again[33];
    key_of("kernel source", "sm_90a", NULL, &nv, again);
    assert_string_equal(again, keys[0]);
    /* The path of the library is not part of the key (only its build). */
    mj_nvrtc_identity moved = nv;
    snprintf(moved.path, sizeof moved.path, "/elsewhere/libnvrtc.so.13");
    key_of("kernel source", "sm_90a", NULL, &moved, again);
    assert_string_equal(again, keys[0]);
}

/* Fields are length-prefixed: moving a byte from one field to the next changes the key. */
static void test_key_framing(void **state)
{
    (void)state;
    mj_nvrtc_identity a = identity("13.0", "ab"), b = identity("13.0a", "b");
    char ka[33], kb[33];
    key_of("s", "sm_90a", NULL, &a, ka);
    key_of("s", "sm_90a", NULL, &b, kb);
    assert_string_not_equal(ka, kb);
    /* The record names the schema and the library version. */
    mj_compile_options opt;
    mj_compile_options_build("sm_90a", NULL, &opt);
    mj_key k;
    assert_int_equal(mj_key_build("s", 1, &opt, "sm_90a", &a, &k), MOEJIT_OK);
    assert_non_null(memmem(k.record, k.record_len, MJ_KEY_SCHEMA, strlen(MJ_KEY_SCHEMA)));
    assert_non_null(memmem(k.record, k.record_len, MOEJIT_VERSION_STRING, strlen(MOEJIT_VERSION_STRING)));
    mj_key_free(&k);
}

/* Pull the key of the first "compiled"/"cached" line out of `moejit prewarm` output. */
static void key_from_cli_output(const char *out, char *key)
{
    const char *p = out;
    while ((p = strpbrk(p, "0123456789abcdef"))) {
        size_t n = strspn(p, "0123456789abcdef");
        if (n == 32) {
            memcpy(key, p, 32);
            key[32] = '\0';
            return;
        }
        p += n ? n : 1;
    }
    fail_msg("no key in CLI output:\n%s", out);
}

/* The same spec gives the same key in other processes (exec'd: other address layouts) and with
 * other cache directories. */
static void test_key_stable_across_processes(void **state)
{
    (void)state;
    char d1[4096], d2[4096], d3[4096], out[8192], k1[33], k2[33];
    mjt_tmpdir(d1), mjt_tmpdir(d2), mjt_tmpdir(d3);
    char *argv1[] = {MOEJIT_CLI, "prewarm", "--arch", "sm_90a", "--experts", "384", "--topk", "8", "--score",
                     "sigmoid", "--dtype", "bf16", "--cache-dir", d1, NULL};
    assert_int_equal(mjt_run(argv1, NULL, out, sizeof out), 0);
    key_from_cli_output(out, k1);
    char *argv2[] = {MOEJIT_CLI, "prewarm", "--arch", "sm_90a", "--experts", "384", "--topk", "8", "--score",
                     "sigmoid", "--dtype", "bf16", "--cache-dir", d2, NULL};
    assert_int_equal(mjt_run(argv2, NULL, out, sizeof out), 0);
    key_from_cli_output(out, k2);
    assert_string_equal(k1, k2);

    moejit_config cfg = {.cache_dir = d3};
    moejit_ctx *ctx;
    assert_int_equal(moejit_open(&cfg, &ctx), MOEJIT_OK);
    moejit_kernel_desc d = {.op = MOEJIT_OP_ROUTE};
    d.route.num_experts = 384, d.route.topk = 8, d.route.score = MOEJIT_SCORE_SIGMOID, d.route.dtype = MOEJIT_DTYPE_BF16;
    moejit_prewarm_result r;
    assert_int_equal(moejit_prewarm(ctx, &d, 1, "sm_90a", &r), MOEJIT_OK);
    assert_string_equal(r.key, k1);
    moejit_close(ctx);

    /* Extra NVRTC flags are part of the key. */
    const char *env[] = {"MOEJIT_EXTRA_NVRTC_FLAGS=-lineinfo", NULL};
    assert_int_equal(mjt_run(argv2, env, out, sizeof out), 0);
    key_from_cli_output(out, k2);
    assert_string_not_equal(k1, k2);
    mjt_rmtree(d1), mjt_rmtree(d2), mjt_rmtree(d3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_inputs),
        cmocka_unit_test(test_key_framing),
        cmocka_unit_test(test_key_stable_across_processes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
