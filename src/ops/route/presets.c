/* Built-in routing presets of well-known models. The dtype is bf16; engines override it. */
#include <string.h>

#include "common/error.h"
#include "moejit.h"

typedef struct preset {
    const char *name;
    moejit_route_spec spec;
} preset;

static const preset k_presets[] = {
    /* softmax over all experts, top-2, renormalised (= softmax over the two chosen logits) */
    {"mixtral", {.num_experts = 8, .topk = 2, .score = MOEJIT_SCORE_SOFTMAX, .renormalize = 1}},
    {"qwen3-moe", {.num_experts = 128, .topk = 8, .score = MOEJIT_SCORE_SOFTMAX, .renormalize = 1}},
    {"qwen3-next", {.num_experts = 512, .topk = 10, .score = MOEJIT_SCORE_SOFTMAX, .renormalize = 1}},
    /* top-4 on raw logits, then softmax over those four */
    {"gpt-oss", {.num_experts = 128, .topk = 4, .score = MOEJIT_SCORE_SOFTMAX, .score_after_topk = 1}},
    /* sigmoid + correction bias, 8 groups of 32, best 4 groups by the sum of their top-2 */
    {"deepseek-v3",
     {.num_experts = 256, .topk = 8, .score = MOEJIT_SCORE_SIGMOID, .num_groups = 8, .topk_groups = 4,
      .group_score = MOEJIT_GROUP_SCORE_TOP2_SUM, .has_bias = 1, .renormalize = 1, .scale_output = 1,
      .routed_scaling_factor = 2.5f}},
    {"kimi-k2",
     {.num_experts = 384, .topk = 8, .score = MOEJIT_SCORE_SIGMOID, .num_groups = 1, .topk_groups = 1, .has_bias = 1,
      .renormalize = 1, .scale_output = 1, .routed_scaling_factor = 2.827f}},
    {"glm-4.5",
     {.num_experts = 160, .topk = 8, .score = MOEJIT_SCORE_SIGMOID, .has_bias = 1, .renormalize = 1,
      .scale_output = 1, .routed_scaling_factor = 2.5f}},
    /* top-1 on raw logits, then sigmoid of it */
    {"llama-4", {.num_experts = 16, .topk = 1, .score = MOEJIT_SCORE_SIGMOID, .score_after_topk = 1}},
};

moejit_status moejit_route_preset(const char *model, moejit_route_spec *spec)
{
    mj_error_clear();
    if (!model || !spec)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_route_preset: %s is NULL", model ? "spec" : "model");
    for (size_t i = 0; i < sizeof k_presets / sizeof k_presets[0]; i++)
        if (!strcmp(model, k_presets[i].name)) {
            *spec = k_presets[i].spec;
            spec->dtype = MOEJIT_DTYPE_BF16;
            return MOEJIT_OK;
        }
    return mj_fail(MOEJIT_ERR_NOT_FOUND,
                   "model = \"%s\" is not a preset (mixtral, qwen3-moe, qwen3-next, gpt-oss, deepseek-v3, kimi-k2, "
                   "glm-4.5, llama-4)",
                   model);
}

const char *moejit_route_preset_name(size_t i)
{
    return i < sizeof k_presets / sizeof k_presets[0] ? k_presets[i].name : NULL;
}
