#include "jit/loader.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "jit/build.h"
#include "jit/driver.h"
#include "jit/flight.h"

static int image_rejected(CUresult r)
{
    return r == CUDA_ERROR_INVALID_IMAGE || r == CUDA_ERROR_NO_BINARY_FOR_GPU || r == CUDA_ERROR_INVALID_PTX ||
           r == CUDA_ERROR_UNSUPPORTED_PTX_VERSION || r == CUDA_ERROR_INVALID_SOURCE;
}

/* Build the module for the node's arch and load it into the node (the flight's leader does). */
static moejit_status build_and_load(moejit_ctx *ctx, const mj_driver *d, mj_kernel *k)
{
    char arch[16];
    mj_arch_for_cc(k->lookup.cc, arch, sizeof arch);
    mj_built b;
    moejit_status st = mj_jit_build(ctx, &k->lookup.id, arch, 0, &b);
    if (st != MOEJIT_OK) return st;
    CUresult r = d->library_load_data(&k->library, b.cubin, NULL, NULL, 0, NULL, NULL, 0);
    if (r != CUDA_SUCCESS && b.from_disk && image_rejected(r)) {
        /* The entry verified but the driver refuses its image: treat it as bad, compile once. */
        atomic_fetch_add(&ctx->n_bad_entries, 1);
        mj_warn("driver rejected the cached cubin of %s (%s): recompiling", b.plan.module, b.key_hex);
        if (mj_cache_writable(ctx->cache)) mj_cache_remove(ctx->cache, b.key_hex);
        mj_built_free(&b);
        st = mj_jit_build(ctx, &k->lookup.id, arch, 1, &b);
        if (st != MOEJIT_OK) return st;
        r = d->library_load_data(&k->library, b.cubin, NULL, NULL, 0, NULL, NULL, 0);
    }
    if (r != CUDA_SUCCESS) {
        st = mj_cuda_fail(d, r, "cuLibraryLoadData", b.plan.module);
        mj_built_free(&b);
        return st;
    }
    for (int i = 0; i < b.plan.n_entries; i++) {
        r = d->library_get_kernel(&k->kernels[i], k->library, b.plan.entry[i].name);
        if (r != CUDA_SUCCESS) {
            st = mj_cuda_fail(d, r, "cuLibraryGetKernel", b.plan.entry[i].name);
            d->library_unload(k->library);
            k->library = NULL;
            mj_built_free(&b);
            return st;
        }
    }
    k->plan = b.plan;
    memcpy(k->key_hex, b.key_hex, sizeof k->key_hex);
    mj_built_free(&b);
    return MOEJIT_OK;
}

/* Errors that will not change by trying again: remembered in the registry, returned without
 * rebuilding. Others (out of memory, a driver error) are not: the next call tries again. */
static int permanent(moejit_status st)
{
    return st == MOEJIT_ERR_COMPILE || st == MOEJIT_ERR_UNSUPPORTED || st == MOEJIT_ERR_INVALID_SPEC;
}

static moejit_status node_error(const mj_kernel *k)
{
    return mj_fail(k->status, "%s", k->error_text ? k->error_text : "kernel build failed");
}

/* The leader of a first use: build, load and register a node (unless an earlier flight did). */
static moejit_status register_new(moejit_ctx *ctx, const mj_driver *d, const mj_lookup_key *lk, uint64_t hash,
                                  mj_kernel **out)
{
    if ((*out = mj_registry_find(&ctx->registry, lk, hash))) return MOEJIT_OK; /* landed just before we joined */
    mj_kernel *k = calloc(1, sizeof *k);
    if (!k) return mj_fail(MOEJIT_ERR_OUT_OF_MEMORY, "out of memory registering a kernel");
    k->lookup = *lk;
    k->hash = hash;
    atomic_init(&k->devices_ready, 0);
    k->pdl = ctx->cfg.pdl && mj_driver_pdl(d, lk->cc); /* the node is per (shape, arch): once per arch */
    moejit_status st = build_and_load(ctx, d, k);
    if (st != MOEJIT_OK && !permanent(st)) {
        free(k);
        return st;
    }
    k->status = st;
    if (st != MOEJIT_OK && !(k->error_text = strdup(mj_error_text()))) {
        free(k);
        return mj_fail(MOEJIT_ERR_OUT_OF_MEMORY, "out of memory");
    }
    mj_kernel *in = mj_registry_insert(&ctx->registry, k);
    if (in != k) { /* out of memory, or registered without a flight (no memory for one) */
        if (k->library) d->library_unload(k->library);
        free(k->error_text);
        free(k);
        if (!in) return mj_fail(MOEJIT_ERR_OUT_OF_MEMORY, "out of memory registering a kernel");
    }
    *out = in;
    return st;
}

/* First use of a (shape, device arch) in this context: one thread builds, the others wait. */
static moejit_status first_use(moejit_ctx *ctx, const mj_driver *d, const mj_lookup_key *lk, uint64_t hash,
                               mj_kernel **out)
{
    mj_flight *lead, *joined = mj_flight_join(&ctx->flights, lk, sizeof *lk, &lead);
    if (joined) {
        const void *node;
        size_t len;
        const moejit_status st = mj_flight_result(joined, &node, &len);
        *out = (mj_kernel *)(uintptr_t)node;
        mj_flight_leave(&ctx->flights, joined);
        return st;
    }
    *out = NULL;
    moejit_status st = register_new(ctx, d, lk, hash, out);
    if (lead) mj_flight_land(&ctx->flights, lead, st, *out, 0);
    return st;
}

/* Large dynamic shared memory must be allowed per device, once. */
static moejit_status prepare_device(const mj_driver *d, mj_kernel *k, CUdevice dev)
{
    const unsigned long long bit = 1ull << (unsigned)dev;
    if (atomic_load_explicit(&k->devices_ready, memory_order_acquire) & bit) return MOEJIT_OK;
    for (int i = 0; i < k->plan.n_entries; i++) {
        const mj_entry_plan *e = &k->plan.entry[i];
        if (e->smem_bytes <= 48 * 1024) continue;
        CUresult r = d->kernel_set_attribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, e->smem_bytes,
                                             k->kernels[i], dev);
        if (r != CUDA_SUCCESS) return mj_cuda_fail(d, r, "cuKernelSetAttribute(max dynamic shared memory)", e->name);
    }
    atomic_fetch_or(&k->devices_ready, bit);
    return MOEJIT_OK;
}

moejit_status mj_jit_kernel(moejit_ctx *ctx, const mj_kernel_id *id, const mj_kernel **out)
{
    const mj_driver *d;
    moejit_status st = mj_driver_get(&d);
    if (st != MOEJIT_OK) return st;
    CUdevice dev;
    int cc;
    if ((st = mj_ctx_current_device(ctx, d, &dev, &cc)) != MOEJIT_OK) return st;

    mj_lookup_key lk;
    memset(&lk, 0, sizeof lk);
    lk.id = *id;
    lk.cc = cc;
    const uint64_t hash = mj_lookup_hash(&lk);
    mj_kernel *k = mj_registry_find(&ctx->registry, &lk, hash);
    if (!k && (st = first_use(ctx, d, &lk, hash, &k)) != MOEJIT_OK) return st;
    if (k->status != MOEJIT_OK) return node_error(k);
    st = prepare_device(d, k, dev);
    *out = k;
    return st;
}
