/* Helpers shared by the C benchmarks: exit-on-error checks, a clock, medians. */
#ifndef MOEJIT_BENCH_COMMON_H
#define MOEJIT_BENCH_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "moejit.h"

#define CHECK(x)                                                                                            \
    do {                                                                                                    \
        moejit_status s_ = (x);                                                                             \
        if (s_ != MOEJIT_OK) {                                                                              \
            fprintf(stderr, "%s: %s: %s\n", #x, moejit_status_str(s_), moejit_last_error(NULL));            \
            exit(1);                                                                                        \
        }                                                                                                   \
    } while (0)

#define CU(x)                                                                                               \
    do {                                                                                                    \
        CUresult r_ = (x);                                                                                  \
        if (r_ != CUDA_SUCCESS) {                                                                           \
            fprintf(stderr, "%s failed: %d\n", #x, (int)r_);                                                \
            exit(1);                                                                                        \
        }                                                                                                   \
    } while (0)

static inline double bench_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of n values (sorts them). */
static inline double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return v[n / 2];
}

#endif
