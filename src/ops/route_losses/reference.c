/* The C reference of route_losses (docs/DESIGN.md §2.1c): the formulas of moejit.h Operation 1c,
 * in double, in index order. */
#include <math.h>
#include <stdlib.h>

#include "common/error.h"
#include "moejit_reference.h"
#include "ops/route_losses/route_losses.h"

static int64_t load_offset(const void *base, int dtype, int64_t at)
{
    return dtype == MOEJIT_INDEX_INT64 ? ((const int64_t *)base)[at] : ((const int32_t *)base)[at];
}

moejit_status moejit_route_losses_reference(const moejit_route_losses_spec *spec, const moejit_route_losses_args *a)
{
    mj_error_clear();
    mj_route_losses_shape s;
    mj_route_losses_params p;
    moejit_status st = mj_route_losses_normalize(spec, &s);
    if (st == MOEJIT_OK) st = mj_route_losses_check_args(&s, a, &p);
    if (st != MOEJIT_OK) return st;
    const int E = s.experts;
    const double K = s.topk, T = (double)p.num_tokens;
    const int64_t N = p.num_seqs;
    const uint64_t *prob = p.prob_sums;
    double aux = 0.0, seq = 0.0, z = 0.0;
    if ((s.aux_stats & MOEJIT_AUX_LOAD_BALANCE) && p.num_tokens > 0) {
        for (int e = 0; e < E; e++) {
            double P = 0.0, c = 0.0;
            for (int64_t q = 0; q < N; q++) {
                P += ldexp((double)prob[q * E + e], -32);
                c += p.counts[q * E + e];
            }
            aux += P * c;
        }
        aux *= E / (K * T * T);
    }
    if (s.aux_stats & MOEJIT_AUX_SEQ_LOAD_BALANCE) {
        for (int64_t q = 0; q < N; q++) {
            const double L = (double)(load_offset(p.seq_offsets, s.seq_offset_dtype, q + 1) -
                                      load_offset(p.seq_offsets, s.seq_offset_dtype, q));
            if (!(L > 0.0)) continue;
            for (int e = 0; e < E; e++)
                seq += p.counts[q * E + e] * E / (K * L) * (ldexp((double)prob[q * E + e], -32) / L);
        }
        seq /= (double)N;
    }
    if ((s.aux_stats & MOEJIT_AUX_Z_LOSS) && p.num_tokens > 0) {
        for (int64_t t = 0; t < p.num_tokens; t++) z += (double)p.lse[t] * (double)p.lse[t];
        z /= T;
    }
    p.losses[0] = (float)aux;
    p.losses[1] = (float)seq;
    p.losses[2] = (float)z;
    return MOEJIT_OK;
}
