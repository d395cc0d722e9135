/* Single flight: threads that need the same thing at once let one of them (the leader) make it
 * and wait for its result, instead of making it again. The one mechanism behind "concurrent first
 * uses compile once": builds join by cache key (jit/build.c), loads by registry key
 * (jit/loader.c). The table's mutex is held only to join and to land, never while the leader
 * works, so a flight waits only for its own key. */
#ifndef MOEJIT_JIT_FLIGHT_H
#define MOEJIT_JIT_FLIGHT_H

#include <pthread.h>
#include <stddef.h>

#include "moejit.h"

typedef struct mj_flight mj_flight;

typedef struct mj_flights {
    pthread_mutex_t mu;
    mj_flight *in_air; /* the flights not yet landed */
} mj_flights;

void mj_flights_init(mj_flights *t);
void mj_flights_destroy(mj_flights *t);

/* Join the flight of `key` (n bytes). Returns NULL when the caller is to lead it (*lead is then
 * the new flight, or NULL if none could be allocated: the caller works alone); otherwise the
 * landed flight, whose result the caller reads with mj_flight_result and then mj_flight_leave()s. */
mj_flight *mj_flight_join(mj_flights *t, const void *key, size_t n, mj_flight **lead);

/* The leader's result, for its waiters: a status (and, on failure, the thread's error detail),
 * and a value: `len` bytes copied into the flight (len > 0: the waiters copy them out), or a
 * pointer kept as it is (len == 0). Later arrivals start a new flight. Leaves the flight. */
void mj_flight_land(mj_flights *t, mj_flight *f, moejit_status st, const void *value, size_t len);

/* A landed flight's status (its failure detail made the caller's thread detail), value, length. */
moejit_status mj_flight_result(mj_flight *f, const void **value, size_t *len);

/* Done with a landed flight (the last one out frees it). */
void mj_flight_leave(mj_flights *t, mj_flight *f);

#endif
