/* The C reference of route_align (docs/DESIGN.md §2.3): by definition route's reference, then align's on
 * its ids, over E+S experts. */
#include "common/error.h"
#include "moejit_reference.h"
#include "ops/route_align/route_align.h"

moejit_status moejit_route_align_reference(const moejit_route_align_spec *spec, const moejit_route_align_args *args)
{
    mj_error_clear();
    mj_route_align_shape s;
    moejit_status st = mj_route_align_normalize(spec, &s);
    if (st != MOEJIT_OK) return st;
    if (!args) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "route_align args: args is NULL");
    if ((st = MJ_CHECK_RESERVED("route_align args", args)) != MOEJIT_OK) return st;
    const mj_route_shape *r = &s.route;
    const moejit_route_args *ra = &args->route;
    const mj_align_shape a = mj_route_align_fallback_shape(&s);
    mj_align_layout l;
    mj_align_params p;
    if ((st = mj_align_layout_for("route_align", a.experts, a.block_size, ra->num_tokens, r->topk + r->shared_slots, 0,
                                  MJ_ALIGN_PATH_AUTO, &l)) != MOEJIT_OK ||
        (st = mj_align_check_outputs("route_align", &l, ra->ids, a.id_dtype, &args->align, 0, &p)) != MOEJIT_OK)
        return st;
    st = moejit_route_reference(&spec->route, ra);
    return st == MOEJIT_OK ? mj_align_reference_run(&a, &p) : st;
}
