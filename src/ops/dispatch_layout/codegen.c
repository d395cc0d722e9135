/* dispatch_layout's codegen: the launch plan, the parameter struct, the Cfg and the entry points —
 * where a dispatch_layout shape becomes CUDA source (kernel_templates/dispatch_layout.cuh is the
 * code it configures). */
#include "ops/dispatch_layout/dispatch_layout.h"

#include <stddef.h>
#include <stdio.h>

#include "common/dtype.h"
#include "jit/codegen.h"

extern const char mj_template_dispatch_layout_cuh[];

static const mj_param_layout k_params =
    MJ_PARAM_LAYOUT(mj_dispatch_layout_params, "DispatchLayoutParams", MJ_DISPATCH_LAYOUT_PARAMS);

MJ_DEFINE_SHAPE_OF(shape_of, mj_dispatch_layout_shape)

static moejit_status dl_normalize_desc(const moejit_kernel_desc *desc, mj_kernel_id *id)
{
    mj_dispatch_layout_shape s;
    return mj_kernel_id_result(mj_dispatch_layout_normalize(&desc->dispatch_layout, &s), id, &mj_op_dispatch_layout,
                               &s, sizeof s);
}

static int dl_module_name(const mj_kernel_id *id, char *buf, size_t cap)
{
    const mj_dispatch_layout_shape s = shape_of(id);
    return mj_dispatch_layout_module_name(&s, buf, cap);
}

static int dl_describe(const mj_kernel_id *id, char *buf, size_t cap)
{
    const mj_dispatch_layout_shape s = shape_of(id);
    return snprintf(buf, cap, "E=%d R=%d K=%d ranks_per_node=%d ids=%s", s.experts, s.ranks, s.topk, s.ranks_per_node,
                    mj_index_dtype_name(s.id_dtype));
}

static void dl_plan(const mj_kernel_id *id, mj_kernel_plan *plan)
{
    const mj_dispatch_layout_shape s = shape_of(id);
    mj_plan_entry(plan, MJ_DL_SMALL, "_small", MJ_DL_SMALL_THREADS, MJ_DL_SMALL_TOKENS, mj_dl_small_smem_bytes(&s));
    mj_plan_entry(plan, MJ_DL_GRID, "_grid", MJ_DL_THREADS, MJ_DL_THREADS, 0); /* static shared memory only */
}

static void dl_emit(mj_strbuf *sb, const mj_kernel_id *id, const mj_kernel_plan *plan)
{
    const mj_dispatch_layout_shape s = shape_of(id);
    mj_emit_params(sb, &k_params);
    mj_sb_puts(sb, mj_template_dispatch_layout_cuh);
    mj_sb_puts(sb, "\n// ---- this kernel's shape -------------------------------------------------\n");
    mj_sb_printf(sb,
                 "struct MoejitDispatchLayoutCfg {\n"
                 "    static constexpr int kExperts = %d;\n"
                 "    static constexpr int kRanks = %d;\n"
                 "    static constexpr int kNodes = %d;\n"
                 "    static constexpr int kTopK = %d;\n"
                 "    typedef %s Id;\n"
                 "    static constexpr int kSmallThreads = %d;\n"
                 "    static constexpr int kThreads = %d;\n"
                 "    static constexpr int kExpertSlice = %d;\n"
                 "    static constexpr int kGroupSlice = %d;\n"
                 "    static constexpr int kRowSlice = %d;\n"
                 "};\n\n",
                 s.experts, s.ranks, mj_dl_nodes(&s), s.topk, mj_index_dtype_ctype(s.id_dtype), MJ_DL_SMALL_THREADS,
                 MJ_DL_THREADS, MJ_DL_EXPERT_SLICE, MJ_DL_GROUP_SLICE, MJ_DL_ROW_SLICE);
    /* A minimum of one block an SM (the grids are a few dozen blocks): without it ptxas aims
     * the 1024-thread entry at two blocks an SM, 32 registers, and spills. */
    static const char *const calls[MJ_DL_ENTRIES] = {"small", "grid"};
    for (int i = 0; i < MJ_DL_ENTRIES; i++) {
        const mj_entry_plan *e = &plan->entry[i];
        mj_sb_printf(sb,
                     "extern \"C\" __global__ void __launch_bounds__(%d, 1) %s(const mj::DispatchLayoutParams p)\n"
                     "{\n" MJ_ENTRY_PROLOGUE
                     "    mj::DispatchLayout<MoejitDispatchLayoutCfg>::%s(p);\n"
                     "}\n\n",
                     e->threads, e->name, calls[i]);
    }
}

const mj_op mj_op_dispatch_layout = {
    .op = MOEJIT_OP_DISPATCH_LAYOUT,
    .name = "dispatch_layout",
    .normalize = dl_normalize_desc,
    .module_name = dl_module_name,
    .describe = dl_describe,
    .plan = dl_plan,
    .emit = dl_emit,
};
