/* capacity's codegen: the launch plan, the parameter struct, the Cfg and the entry point — where
 * a capacity shape becomes CUDA source (kernel_templates/capacity.cuh is the code it configures). */
#include "ops/capacity/capacity.h"

#include <stddef.h>
#include <stdio.h>

#include "common/dtype.h"
#include "jit/codegen.h"

extern const char mj_template_capacity_cuh[];

static const mj_param_layout k_params = MJ_PARAM_LAYOUT(mj_capacity_params, "CapacityParams", MJ_CAPACITY_PARAMS);

MJ_DEFINE_SHAPE_OF(shape_of, mj_capacity_shape)

static moejit_status cap_normalize_desc(const moejit_kernel_desc *desc, mj_kernel_id *id)
{
    mj_capacity_shape s;
    return mj_kernel_id_result(mj_capacity_normalize(&desc->capacity, &s), id, &mj_op_capacity, &s, sizeof s);
}

static int cap_module_name(const mj_kernel_id *id, char *buf, size_t cap)
{
    const mj_capacity_shape s = shape_of(id);
    return mj_capacity_module_name(&s, buf, cap);
}

static int cap_describe(const mj_kernel_id *id, char *buf, size_t cap)
{
    const mj_capacity_shape s = shape_of(id);
    return snprintf(buf, cap, "E=%d K=%d S=%d policy=%s ids=%s", s.experts, s.topk, s.shared,
                    s.policy == MOEJIT_DROP_POSITION ? "position" : "probs", mj_index_dtype_name(s.id_dtype));
}

static void cap_plan(const mj_kernel_id *id, mj_kernel_plan *plan)
{
    (void)id;
    mj_plan_entry(plan, 0, "", MJ_CAP_THREADS, 1, 0); /* a block per expert; static shared memory */
}

static void cap_emit(mj_strbuf *sb, const mj_kernel_id *id, const mj_kernel_plan *plan)
{
    const mj_capacity_shape s = shape_of(id);
    mj_emit_params(sb, &k_params);
    mj_sb_puts(sb, mj_template_capacity_cuh);
    mj_sb_puts(sb, "\n// ---- this kernel's shape -------------------------------------------------\n");
    mj_sb_printf(sb,
                 "struct MoejitCapacityCfg {\n"
                 "    static constexpr int kExperts = %d;\n"
                 "    static constexpr int kTopK = %d;\n"
                 "    static constexpr int kShared = %d;\n"
                 "    typedef %s Id;\n"
                 "    static constexpr bool kByProbs = %s;\n"
                 "    static constexpr int kThreads = %d;\n"
                 "    static constexpr int kItems = %d;\n"
                 "};\n\n",
                 s.experts, s.topk, s.shared, mj_index_dtype_ctype(s.id_dtype),
                 s.policy == MOEJIT_DROP_PROBS ? "true" : "false", MJ_CAP_THREADS, MJ_CAP_ITEMS);
    mj_sb_printf(sb,
                 "extern \"C\" __global__ void __launch_bounds__(%d) %s(const mj::CapacityParams p)\n"
                 "{\n" MJ_ENTRY_PROLOGUE
                 "    mj::Capacity<MoejitCapacityCfg>::run(p);\n"
                 "}\n\n",
                 plan->entry[0].threads, plan->entry[0].name);
}

const mj_op mj_op_capacity = {
    .op = MOEJIT_OP_CAPACITY,
    .name = "capacity",
    .normalize = cap_normalize_desc,
    .module_name = cap_module_name,
    .describe = cap_describe,
    .plan = cap_plan,
    .emit = cap_emit,
};
