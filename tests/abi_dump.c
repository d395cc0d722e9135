/* abi_dump: the layout the C compiler gives moejit.h, as JSON — every public struct's size and
 * alignment, every field's offset and size, every enum constant, the limits and the version.
 * python/tests/test_abi.py compares the Python binding's ctypes mirrors with it (DESIGN §3.3).
 * Includes the header only; links nothing. Add a line here for every field added to moejit.h. */
#define MOEJIT_EXPERIMENTAL_API
#include <moejit.h>

#include <stdalign.h>
#include <stddef.h>
#include <stdio.h>

static int first;

#define BEGIN(T) (printf("%s\n    \"" #T "\": {\"size\": %zu, \"align\": %zu, \"fields\": [", first ? "" : ",", \
                         sizeof(T), alignof(T)), first = 0)
#define FIELD(T, f, last) printf("[\"" #f "\", %zu, %zu]%s", offsetof(T, f), sizeof(((T *)0)->f), (last) ? "" : ", ")
#define END() printf("]}")
#define ENUM(e) (printf("%s\n    \"" #e "\": %d", first ? "" : ",", (int)(e)), first = 0)

int main(void)
{
    printf("{\n  \"version\": \"%s\",\n  \"structs\": {", MOEJIT_VERSION_STRING);
    first = 1;

    BEGIN(moejit_config);
    FIELD(moejit_config, cache_dir, 0); FIELD(moejit_config, cache_mode, 0); FIELD(moejit_config, no_compile, 0);
    FIELD(moejit_config, always_compile, 0); FIELD(moejit_config, dump_dir, 0);
    FIELD(moejit_config, extra_nvrtc_flags, 0); FIELD(moejit_config, log_level, 0); FIELD(moejit_config, device, 0);
    FIELD(moejit_config, compile_jobs, 0); FIELD(moejit_config, cache_max_bytes, 0);
    FIELD(moejit_config, cache_lock_timeout_ms, 0); FIELD(moejit_config, pdl, 0);
    FIELD(moejit_config, reserved0, 0); FIELD(moejit_config, reserved, 1);
    END();

    BEGIN(moejit_route_spec);
    FIELD(moejit_route_spec, num_experts, 0); FIELD(moejit_route_spec, topk, 0); FIELD(moejit_route_spec, score, 0);
    FIELD(moejit_route_spec, dtype, 0); FIELD(moejit_route_spec, num_groups, 0);
    FIELD(moejit_route_spec, topk_groups, 0); FIELD(moejit_route_spec, group_score, 0);
    FIELD(moejit_route_spec, has_bias, 0); FIELD(moejit_route_spec, softcap, 0);
    FIELD(moejit_route_spec, score_after_topk, 0); FIELD(moejit_route_spec, renormalize, 0);
    FIELD(moejit_route_spec, scale_output, 0); FIELD(moejit_route_spec, routed_scaling_factor, 0);
    FIELD(moejit_route_spec, shared_slots, 0); FIELD(moejit_route_spec, padded, 0);
    FIELD(moejit_route_spec, id_dtype, 0); FIELD(moejit_route_spec, max_replicas, 0);
    FIELD(moejit_route_spec, num_physical_experts, 0); FIELD(moejit_route_spec, load_counter, 0);
    FIELD(moejit_route_spec, replay, 0); FIELD(moejit_route_spec, logical_id_dtype, 0);
    FIELD(moejit_route_spec, aux_stats, 0); FIELD(moejit_route_spec, seq_offset_dtype, 0);
    FIELD(moejit_route_spec, reserved, 1);
    END();

    BEGIN(moejit_route_args);
    FIELD(moejit_route_args, logits, 0); FIELD(moejit_route_args, bias, 0); FIELD(moejit_route_args, ids, 0);
    FIELD(moejit_route_args, weights, 0); FIELD(moejit_route_args, num_tokens, 0);
    FIELD(moejit_route_args, row_stride, 0); FIELD(moejit_route_args, num_valid, 0);
    FIELD(moejit_route_args, logical_to_physical, 0); FIELD(moejit_route_args, replica_count, 0);
    FIELD(moejit_route_args, expert_load, 0); FIELD(moejit_route_args, logical_ids, 0);
    FIELD(moejit_route_args, aux, 0); FIELD(moejit_route_args, reserved, 1);
    END();

    BEGIN(moejit_aux_stats);
    FIELD(moejit_aux_stats, prob_sums, 0); FIELD(moejit_aux_stats, counts, 0); FIELD(moejit_aux_stats, lse, 0);
    FIELD(moejit_aux_stats, seq_offsets, 0); FIELD(moejit_aux_stats, num_seqs, 0);
    FIELD(moejit_aux_stats, reserved, 1);
    END();

    BEGIN(moejit_route_backward_spec);
    FIELD(moejit_route_backward_spec, route, 0); FIELD(moejit_route_backward_spec, reserved, 1);
    END();

    BEGIN(moejit_route_backward_args);
    FIELD(moejit_route_backward_args, logits, 0); FIELD(moejit_route_backward_args, ids, 0);
    FIELD(moejit_route_backward_args, grad_weights, 0); FIELD(moejit_route_backward_args, grad_logits, 0);
    FIELD(moejit_route_backward_args, num_tokens, 0); FIELD(moejit_route_backward_args, row_stride, 0);
    FIELD(moejit_route_backward_args, grad_losses, 0); FIELD(moejit_route_backward_args, aux, 0);
    FIELD(moejit_route_backward_args, reserved, 1);
    END();

    BEGIN(moejit_route_losses_spec);
    FIELD(moejit_route_losses_spec, num_experts, 0); FIELD(moejit_route_losses_spec, topk, 0);
    FIELD(moejit_route_losses_spec, aux_stats, 0); FIELD(moejit_route_losses_spec, seq_offset_dtype, 0);
    FIELD(moejit_route_losses_spec, reserved, 1);
    END();

    BEGIN(moejit_route_losses_args);
    FIELD(moejit_route_losses_args, aux, 0); FIELD(moejit_route_losses_args, losses, 0);
    FIELD(moejit_route_losses_args, num_tokens, 0); FIELD(moejit_route_losses_args, reserved, 1);
    END();

    BEGIN(moejit_align_spec);
    FIELD(moejit_align_spec, num_experts, 0); FIELD(moejit_align_spec, block_size, 0);
    FIELD(moejit_align_spec, id_dtype, 0); FIELD(moejit_align_spec, global_experts, 0);
    FIELD(moejit_align_spec, expert_capacity, 0); FIELD(moejit_align_spec, reserved, 1);
    END();

    BEGIN(moejit_align_outputs);
    FIELD(moejit_align_outputs, counts, 0); FIELD(moejit_align_outputs, offsets, 0);
    FIELD(moejit_align_outputs, sorted_ids, 0); FIELD(moejit_align_outputs, sorted_capacity, 0);
    FIELD(moejit_align_outputs, block_expert, 0); FIELD(moejit_align_outputs, total_padded, 0);
    FIELD(moejit_align_outputs, slot_of, 0); FIELD(moejit_align_outputs, workspace, 0);
    FIELD(moejit_align_outputs, workspace_bytes, 0); FIELD(moejit_align_outputs, reserved, 1);
    END();

    BEGIN(moejit_align_args);
    FIELD(moejit_align_args, ids, 0); FIELD(moejit_align_args, num_tokens, 0); FIELD(moejit_align_args, topk, 0);
    FIELD(moejit_align_args, first_expert, 0); FIELD(moejit_align_args, out, 0);
    FIELD(moejit_align_args, expert_map, 0); FIELD(moejit_align_args, reserved, 1);
    END();

    BEGIN(moejit_route_align_spec);
    FIELD(moejit_route_align_spec, route, 0); FIELD(moejit_route_align_spec, block_size, 0);
    FIELD(moejit_route_align_spec, reserved, 1);
    END();

    BEGIN(moejit_route_align_args);
    FIELD(moejit_route_align_args, route, 0); FIELD(moejit_route_align_args, align, 0);
    FIELD(moejit_route_align_args, reserved, 1);
    END();

    BEGIN(moejit_mx_scales_spec);
    FIELD(moejit_mx_scales_spec, cols, 0); FIELD(moejit_mx_scales_spec, reserved, 1);
    END();

    BEGIN(moejit_mx_scales_args);
    FIELD(moejit_mx_scales_args, layout, 0); FIELD(moejit_mx_scales_args, in, 0); FIELD(moejit_mx_scales_args, out, 0);
    FIELD(moejit_mx_scales_args, groups, 0); FIELD(moejit_mx_scales_args, rows, 0);
    FIELD(moejit_mx_scales_args, group_ends, 0); FIELD(moejit_mx_scales_args, row_stride, 0);
    FIELD(moejit_mx_scales_args, group_stride, 0); FIELD(moejit_mx_scales_args, reserved, 1);
    END();

    BEGIN(moejit_dispatch_layout_spec);
    FIELD(moejit_dispatch_layout_spec, num_experts, 0); FIELD(moejit_dispatch_layout_spec, num_ranks, 0);
    FIELD(moejit_dispatch_layout_spec, topk, 0); FIELD(moejit_dispatch_layout_spec, id_dtype, 0);
    FIELD(moejit_dispatch_layout_spec, ranks_per_node, 0); FIELD(moejit_dispatch_layout_spec, reserved, 1);
    END();

    BEGIN(moejit_dispatch_layout_args);
    FIELD(moejit_dispatch_layout_args, ids, 0); FIELD(moejit_dispatch_layout_args, num_tokens, 0);
    FIELD(moejit_dispatch_layout_args, tokens_per_rank, 0); FIELD(moejit_dispatch_layout_args, tokens_per_node, 0);
    FIELD(moejit_dispatch_layout_args, tokens_per_expert, 0);
    FIELD(moejit_dispatch_layout_args, is_token_in_rank, 0); FIELD(moejit_dispatch_layout_args, reserved, 1);
    END();

    BEGIN(moejit_capacity_spec);
    FIELD(moejit_capacity_spec, num_experts, 0); FIELD(moejit_capacity_spec, topk, 0);
    FIELD(moejit_capacity_spec, shared_slots, 0); FIELD(moejit_capacity_spec, id_dtype, 0);
    FIELD(moejit_capacity_spec, policy, 0); FIELD(moejit_capacity_spec, reserved, 1);
    END();

    BEGIN(moejit_capacity_args);
    FIELD(moejit_capacity_args, ids, 0); FIELD(moejit_capacity_args, weights, 0);
    FIELD(moejit_capacity_args, num_tokens, 0); FIELD(moejit_capacity_args, capacity_factor, 0);
    FIELD(moejit_capacity_args, capacity, 0); FIELD(moejit_capacity_args, min_capacity, 0);
    FIELD(moejit_capacity_args, tokens_per_expert, 0); FIELD(moejit_capacity_args, kept, 0);
    FIELD(moejit_capacity_args, reserved, 1);
    END();

    BEGIN(moejit_permute_spec);
    FIELD(moejit_permute_spec, hidden, 0); FIELD(moejit_permute_spec, dtype, 0);
    FIELD(moejit_permute_spec, has_scale, 0); FIELD(moejit_permute_spec, reserved, 1);
    END();

    BEGIN(moejit_permute_args);
    FIELD(moejit_permute_args, x, 0); FIELD(moejit_permute_args, sorted_ids, 0); FIELD(moejit_permute_args, ids, 0);
    FIELD(moejit_permute_args, scale, 0); FIELD(moejit_permute_args, out, 0);
    FIELD(moejit_permute_args, num_tokens, 0); FIELD(moejit_permute_args, topk, 0);
    FIELD(moejit_permute_args, num_experts, 0); FIELD(moejit_permute_args, num_rows, 0);
    FIELD(moejit_permute_args, reserved, 1);
    END();

    BEGIN(moejit_combine_spec);
    FIELD(moejit_combine_spec, hidden, 0); FIELD(moejit_combine_spec, dtype, 0);
    FIELD(moejit_combine_spec, reserved, 1);
    END();

    BEGIN(moejit_combine_args);
    FIELD(moejit_combine_args, y, 0); FIELD(moejit_combine_args, slot_of, 0); FIELD(moejit_combine_args, weights, 0);
    FIELD(moejit_combine_args, out, 0); FIELD(moejit_combine_args, num_tokens, 0);
    FIELD(moejit_combine_args, topk, 0); FIELD(moejit_combine_args, reserved0, 0);
    FIELD(moejit_combine_args, num_rows, 0); FIELD(moejit_combine_args, reserved, 1);
    END();

    BEGIN(moejit_permute_backward_spec);
    FIELD(moejit_permute_backward_spec, hidden, 0); FIELD(moejit_permute_backward_spec, dtype, 0);
    FIELD(moejit_permute_backward_spec, has_scale, 0); FIELD(moejit_permute_backward_spec, reserved, 1);
    END();

    BEGIN(moejit_permute_backward_args);
    FIELD(moejit_permute_backward_args, grad_out, 0); FIELD(moejit_permute_backward_args, slot_of, 0);
    FIELD(moejit_permute_backward_args, ids, 0); FIELD(moejit_permute_backward_args, scale, 0);
    FIELD(moejit_permute_backward_args, grad_x, 0); FIELD(moejit_permute_backward_args, num_tokens, 0);
    FIELD(moejit_permute_backward_args, topk, 0); FIELD(moejit_permute_backward_args, num_experts, 0);
    FIELD(moejit_permute_backward_args, num_rows, 0); FIELD(moejit_permute_backward_args, reserved, 1);
    END();

    BEGIN(moejit_combine_backward_spec);
    FIELD(moejit_combine_backward_spec, hidden, 0); FIELD(moejit_combine_backward_spec, dtype, 0);
    FIELD(moejit_combine_backward_spec, reserved, 1);
    END();

    BEGIN(moejit_combine_backward_args);
    FIELD(moejit_combine_backward_args, grad_out, 0); FIELD(moejit_combine_backward_args, y, 0);
    FIELD(moejit_combine_backward_args, slot_of, 0); FIELD(moejit_combine_backward_args, weights, 0);
    FIELD(moejit_combine_backward_args, sorted_ids, 0); FIELD(moejit_combine_backward_args, grad_y, 0);
    FIELD(moejit_combine_backward_args, grad_weights, 0); FIELD(moejit_combine_backward_args, num_tokens, 0);
    FIELD(moejit_combine_backward_args, topk, 0); FIELD(moejit_combine_backward_args, reserved0, 0);
    FIELD(moejit_combine_backward_args, num_rows, 0); FIELD(moejit_combine_backward_args, reserved, 1);
    END();

    /* the anonymous union's members share one offset */
    BEGIN(moejit_kernel_desc);
    FIELD(moejit_kernel_desc, op, 0); FIELD(moejit_kernel_desc, reserved, 0); FIELD(moejit_kernel_desc, route, 0);
    FIELD(moejit_kernel_desc, align, 0); FIELD(moejit_kernel_desc, route_align, 0);
    FIELD(moejit_kernel_desc, mx_scales, 0); FIELD(moejit_kernel_desc, dispatch_layout, 0);
    FIELD(moejit_kernel_desc, permute, 0); FIELD(moejit_kernel_desc, combine, 0);
    FIELD(moejit_kernel_desc, permute_backward, 0); FIELD(moejit_kernel_desc, combine_backward, 0);
    FIELD(moejit_kernel_desc, route_backward, 0); FIELD(moejit_kernel_desc, capacity, 0);
    FIELD(moejit_kernel_desc, route_losses, 1);
    END();

    BEGIN(moejit_prewarm_result);
    FIELD(moejit_prewarm_result, status, 0); FIELD(moejit_prewarm_result, outcome, 0);
    FIELD(moejit_prewarm_result, key, 0); FIELD(moejit_prewarm_result, name, 0);
    FIELD(moejit_prewarm_result, arch, 0); FIELD(moejit_prewarm_result, seconds, 0);
    FIELD(moejit_prewarm_result, error, 0); FIELD(moejit_prewarm_result, reserved, 1);
    END();

    BEGIN(moejit_stats);
    FIELD(moejit_stats, kernels, 0); FIELD(moejit_stats, compiles, 0); FIELD(moejit_stats, disk_hits, 0);
    FIELD(moejit_stats, disk_misses, 0); FIELD(moejit_stats, disk_writes, 0); FIELD(moejit_stats, bad_entries, 0);
    FIELD(moejit_stats, launches, 0); FIELD(moejit_stats, build_waits, 0); FIELD(moejit_stats, lock_waits, 0);
    FIELD(moejit_stats, lock_timeouts, 0); FIELD(moejit_stats, lock_failures, 0);
    FIELD(moejit_stats, disk_write_errors, 0); FIELD(moejit_stats, temps_swept, 0); FIELD(moejit_stats, reserved, 1);
    END();

    printf("\n  },\n  \"enums\": {");
    first = 1;
    ENUM(MOEJIT_OK); ENUM(MOEJIT_ERR_INVALID_ARGUMENT); ENUM(MOEJIT_ERR_INVALID_SPEC); ENUM(MOEJIT_ERR_UNSUPPORTED);
    ENUM(MOEJIT_ERR_OUT_OF_MEMORY); ENUM(MOEJIT_ERR_NO_NVRTC); ENUM(MOEJIT_ERR_COMPILE); ENUM(MOEJIT_ERR_NO_DRIVER);
    ENUM(MOEJIT_ERR_NO_DEVICE); ENUM(MOEJIT_ERR_CUDA); ENUM(MOEJIT_ERR_CACHE_MISS); ENUM(MOEJIT_ERR_IO);
    ENUM(MOEJIT_ERR_NOT_FOUND); ENUM(MOEJIT_ERR_CORRUPT); ENUM(MOEJIT_ERR_AMBIGUOUS);
    ENUM(MOEJIT_CACHE_FROM_ENV); ENUM(MOEJIT_CACHE_RW); ENUM(MOEJIT_CACHE_RO); ENUM(MOEJIT_CACHE_OFF);
    ENUM(MOEJIT_LOG_FROM_ENV); ENUM(MOEJIT_LOG_SILENT); ENUM(MOEJIT_LOG_WARN); ENUM(MOEJIT_LOG_INFO);
    ENUM(MOEJIT_LOG_DEBUG);
    ENUM(MOEJIT_DTYPE_F32); ENUM(MOEJIT_DTYPE_BF16); ENUM(MOEJIT_DTYPE_F16);
    ENUM(MOEJIT_SCORE_SOFTMAX); ENUM(MOEJIT_SCORE_SIGMOID); ENUM(MOEJIT_SCORE_SQRT_SOFTPLUS);
    ENUM(MOEJIT_GROUP_SCORE_MAX); ENUM(MOEJIT_GROUP_SCORE_TOP2_SUM);
    ENUM(MOEJIT_MX_3D); ENUM(MOEJIT_MX_2D_GROUPS); ENUM(MOEJIT_MX_2D_K_GROUPS);
    ENUM(MOEJIT_INDEX_INT32); ENUM(MOEJIT_INDEX_INT64); ENUM(MOEJIT_INDEX_INT16);
    ENUM(MOEJIT_REPLAY_OFF); ENUM(MOEJIT_REPLAY_RECORD); ENUM(MOEJIT_REPLAY_GIVEN);
    ENUM(MOEJIT_LOAD_NONE); ENUM(MOEJIT_LOAD_INT32); ENUM(MOEJIT_LOAD_INT64);
    ENUM(MOEJIT_OP_ROUTE); ENUM(MOEJIT_OP_ALIGN); ENUM(MOEJIT_OP_ROUTE_ALIGN); ENUM(MOEJIT_OP_MX_SCALES);
    ENUM(MOEJIT_OP_DISPATCH_LAYOUT);
    ENUM(MOEJIT_OP_PERMUTE); ENUM(MOEJIT_OP_COMBINE); ENUM(MOEJIT_OP_PERMUTE_BACKWARD); ENUM(MOEJIT_OP_COMBINE_BACKWARD);
    ENUM(MOEJIT_OP_ROUTE_BACKWARD); ENUM(MOEJIT_OP_CAPACITY); ENUM(MOEJIT_OP_ROUTE_LOSSES);
    ENUM(MOEJIT_DROP_PROBS); ENUM(MOEJIT_DROP_POSITION);
    ENUM(MOEJIT_AUX_LOAD_BALANCE); ENUM(MOEJIT_AUX_SEQ_LOAD_BALANCE); ENUM(MOEJIT_AUX_Z_LOSS); /* flags (#define) */
    ENUM(MOEJIT_PREWARM_FAILED); ENUM(MOEJIT_PREWARM_COMPILED); ENUM(MOEJIT_PREWARM_CACHED);
    ENUM(MOEJIT_PREWARM_NOT_STORED);

    printf("\n  },\n  \"limits\": {");
    first = 1;
    ENUM(MOEJIT_MAX_EXPERTS); ENUM(MOEJIT_MAX_TOPK); ENUM(MOEJIT_MAX_ALIGN_EXPERTS); ENUM(MOEJIT_ALIGN_MIN_BLOCK);
    ENUM(MOEJIT_ALIGN_MAX_BLOCK); ENUM(MOEJIT_MAX_MX_COLS); ENUM(MOEJIT_MAX_HIDDEN);
    printf("\n  }\n}\n");
    return 0;
}
