#include "jit/registry.h"

#include <stdlib.h>
#include <string.h>
#include "common/hash.h"

struct mj_table {
    size_t cap; /* power of two */
    _Atomic(mj_kernel *) slots[];
};

static mj_table *table_new(size_t cap)
{
    mj_table *t = calloc(1, sizeof *t + cap * sizeof(t->slots[0]));
    if (t) t->cap = cap;
    return t; /* calloc: every slot starts NULL */
}

int mj_registry_init(mj_registry *r)
{
    memset(r, 0, sizeof *r);
    mj_table *t = table_new(64);
    if (!t) return -1;
    atomic_init(&r->table, t);
    pthread_mutex_init(&r->write_mu, NULL);
    return 0;
}

void mj_registry_destroy(mj_registry *r, void (*unload)(mj_kernel *, void *), void *user)
{
    mj_table *t = atomic_load(&r->table);
    if (!t) return;
    for (size_t i = 0; i < t->cap; i++) {
        mj_kernel *k = atomic_load(&t->slots[i]);
        if (!k) continue;
        if (unload) unload(k, user);
        free(k->error_text);
        free(k);
    }
    free(t);
    for (size_t i = 0; i < r->n_retired; i++) free(r->retired[i]);
    free(r->retired);
    pthread_mutex_destroy(&r->write_mu);
    memset(r, 0, sizeof *r);
}

uint64_t mj_lookup_hash(const mj_lookup_key *key) { return XXH3_64bits(key, sizeof *key); }

static mj_kernel *probe(mj_table *t, const mj_lookup_key *key, uint64_t hash)
{
    const size_t mask = t->cap - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        mj_kernel *k = atomic_load_explicit(&t->slots[i], memory_order_acquire);
        if (!k) return NULL;
        if (k->hash == hash && !memcmp(&k->lookup, key, sizeof *key)) return k;
    }
}

mj_kernel *mj_registry_find(mj_registry *r, const mj_lookup_key *key, uint64_t hash)
{
    return probe(atomic_load_explicit(&r->table, memory_order_acquire), key, hash);
}

static void place(mj_table *t, mj_kernel *k)
{
    const size_t mask = t->cap - 1;
    size_t i = k->hash & mask;
    while (atomic_load_explicit(&t->slots[i], memory_order_relaxed)) i = (i + 1) & mask;
    atomic_store_explicit(&t->slots[i], k, memory_order_release);
}

/* Keep the load factor <= 1/2 so probes stay short (and always end at an empty slot). */
static int grow_if_needed(mj_registry *r)
{
    mj_table *old = atomic_load_explicit(&r->table, memory_order_relaxed);
    if ((r->count + 1) * 2 <= old->cap) return 0;
    mj_table **retired = realloc(r->retired, (r->n_retired + 1) * sizeof *retired);
    if (!retired) return -1;
    r->retired = retired;
    mj_table *t = table_new(old->cap * 2);
    if (!t) return -1;
    for (size_t i = 0; i < old->cap; i++) {
        mj_kernel *k = atomic_load_explicit(&old->slots[i], memory_order_relaxed);
        if (k) place(t, k);
    }
    atomic_store_explicit(&r->table, t, memory_order_release);
    r->retired[r->n_retired++] = old; /* readers may still be probing it */
    return 0;
}

mj_kernel *mj_registry_insert(mj_registry *r, mj_kernel *k)
{
    pthread_mutex_lock(&r->write_mu);
    mj_kernel *in = probe(atomic_load_explicit(&r->table, memory_order_relaxed), &k->lookup, k->hash);
    if (!in && grow_if_needed(r) == 0) {
        place(atomic_load_explicit(&r->table, memory_order_relaxed), k); /* published with a release store */
        r->count++;
        r->loaded += k->status == MOEJIT_OK;
        in = k;
    }
    pthread_mutex_unlock(&r->write_mu);
    return in;
}

size_t mj_registry_loaded(mj_registry *r)
{
    pthread_mutex_lock(&r->write_mu);
    size_t n = r->loaded;
    pthread_mutex_unlock(&r->write_mu);
    return n;
}
