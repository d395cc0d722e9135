/* route_losses' codegen: the plan (one block), the parameter struct, the Cfg and the entry point
 * (kernel_templates/route_losses.cuh). */
#include "ops/route_losses/route_losses.h"

#include <stddef.h>
#include <stdio.h>

#include "common/dtype.h"
#include "jit/codegen.h"

extern const char mj_template_route_losses_cuh[];

MJ_DEFINE_SHAPE_OF(shape_of, mj_route_losses_shape)

static moejit_status route_losses_normalize_desc(const moejit_kernel_desc *desc, mj_kernel_id *id)
{
    mj_route_losses_shape s;
    return mj_kernel_id_result(mj_route_losses_normalize(&desc->route_losses, &s), id, &mj_op_route_losses, &s,
                               sizeof s);
}

static int route_losses_module_name(const mj_kernel_id *id, char *buf, size_t cap)
{
    const mj_route_losses_shape s = shape_of(id);
    return mj_route_losses_module_name(&s, buf, cap);
}

static int route_losses_describe(const mj_kernel_id *id, char *buf, size_t cap)
{
    const mj_route_losses_shape s = shape_of(id);
    return mj_route_losses_describe(&s, buf, cap);
}

static void route_losses_plan(const mj_kernel_id *id, mj_kernel_plan *plan)
{
    (void)id;
    plan->n_entries = 1;
    mj_entry_plan *e = &plan->entry[0];
    snprintf(e->name, sizeof e->name, "%s", plan->module);
    e->threads = MJ_ROUTE_LOSSES_THREADS;
    e->items_per_block = 1;
    e->smem_bytes = 0;
}

static const mj_param_layout k_params =
    MJ_PARAM_LAYOUT(mj_route_losses_params, "RouteLossesParams", MJ_ROUTE_LOSSES_PARAMS);

static void route_losses_emit(mj_strbuf *sb, const mj_kernel_id *id, const mj_kernel_plan *plan)
{
    const mj_route_losses_shape s = shape_of(id);
    mj_emit_params(sb, &k_params);
    mj_sb_puts(sb, mj_template_route_losses_cuh);
    mj_sb_printf(sb,
                 "\n// ---- this kernel's shape -------------------------------------------------\n"
                 "struct MoejitRouteLossesCfg {\n"
                 "    static constexpr int kExperts = %d;\n"
                 "    static constexpr int kTopK = %d;\n"
                 "    static constexpr int kAuxStats = %d; // 1 load balance, 2 per sequence, 4 z-loss\n"
                 "    typedef %s SeqOffT;\n"
                 "    static constexpr int kThreads = %d;\n"
                 "};\n\n"
                 "extern \"C\" __global__ void __launch_bounds__(%d) %s(const mj::RouteLossesParams p)\n"
                 "{\n" MJ_ENTRY_PROLOGUE
                 "    mj::route_losses_kernel<MoejitRouteLossesCfg>(p);\n"
                 "}\n",
                 s.experts, s.topk, s.aux_stats, mj_index_dtype_ctype(s.seq_offset_dtype), plan->entry[0].threads,
                 plan->entry[0].threads, plan->entry[0].name);
}

const mj_op mj_op_route_losses = {
    .op = MOEJIT_OP_ROUTE_LOSSES,
    .name = "route_losses",
    .normalize = route_losses_normalize_desc,
    .module_name = route_losses_module_name,
    .describe = route_losses_describe,
    .plan = route_losses_plan,
    .emit = route_losses_emit,
};
