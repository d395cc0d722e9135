#include "jit/flight.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"

struct mj_flight {
    mj_flight *next;
    void *key;
    size_t key_len;
    int refs; /* the leader and its waiters */
    int landed;
    pthread_cond_t cv;
    moejit_status status;
    char *error; /* the leader's failure detail */
    const void *value;
    void *owned; /* value, when it was copied in */
    size_t len;
};

void mj_flights_init(mj_flights *t)
{
    pthread_mutex_init(&t->mu, NULL);
    t->in_air = NULL;
}

void mj_flights_destroy(mj_flights *t) { pthread_mutex_destroy(&t->mu); }

static void unref(mj_flight *f) /* under t->mu */
{
    if (--f->refs) return;
    pthread_cond_destroy(&f->cv);
    free(f->error);
    free(f->owned);
    free(f->key);
    free(f);
}

mj_flight *mj_flight_join(mj_flights *t, const void *key, size_t n, mj_flight **lead)
{
    *lead = NULL;
    pthread_mutex_lock(&t->mu);
    mj_flight *f = t->in_air;
    while (f && !(f->key_len == n && !memcmp(f->key, key, n))) f = f->next;
    if (f) {
        f->refs++;
        while (!f->landed) pthread_cond_wait(&f->cv, &t->mu);
        pthread_mutex_unlock(&t->mu);
        return f;
    }
    f = calloc(1, sizeof *f);
    if (f && (f->key = malloc(n))) {
        memcpy(f->key, key, n);
        f->key_len = n;
        f->refs = 1;
        pthread_cond_init(&f->cv, NULL);
        f->next = t->in_air;
        t->in_air = f;
        *lead = f;
    } else {
        free(f);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

void mj_flight_land(mj_flights *t, mj_flight *f, moejit_status st, const void *value, size_t len)
{
    pthread_mutex_lock(&t->mu);
    for (mj_flight **p = &t->in_air; *p; p = &(*p)->next)
        if (*p == f) {
            *p = f->next; /* later arrivals start a new flight */
            break;
        }
    f->status = st;
    if (f->refs > 1) { /* someone waits: keep what they need */
        if (st != MOEJIT_OK) {
            f->error = strdup(mj_error_text());
        } else if (len > 0) {
            f->owned = malloc(len);
            if (f->owned) memcpy(f->owned, value, len);
            else f->status = MOEJIT_ERR_OUT_OF_MEMORY;
            f->value = f->owned;
        } else {
            f->value = value;
        }
        f->len = len;
    }
    f->landed = 1;
    pthread_cond_broadcast(&f->cv);
    unref(f);
    pthread_mutex_unlock(&t->mu);
}

moejit_status mj_flight_result(mj_flight *f, const void **value, size_t *len)
{
    *value = f->value;
    *len = f->len;
    if (f->status == MOEJIT_OK) return MOEJIT_OK;
    if (f->status == MOEJIT_ERR_OUT_OF_MEMORY && !f->error) return mj_fail(f->status, "out of memory");
    return mj_fail(f->status, "%s", f->error ? f->error : "the build this call waited for failed");
}

void mj_flight_leave(mj_flights *t, mj_flight *f)
{
    pthread_mutex_lock(&t->mu);
    unref(f);
    pthread_mutex_unlock(&t->mu);
}
