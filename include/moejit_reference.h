/*
 * moejit_reference.h — the C references that define what each moejit operation computes.
 *
 * Each reference takes the operation's spec and its argument struct, exactly as the launch does,
 * with every pointer in host memory (workspaces are ignored), and performs the same validation
 * with the same statuses and messages. They are written for clarity, not speed: the GPU test
 * suites compare every kernel with them on fresh random inputs, and callers can do the same.
 *
 * route's reference computes each score exactly (in double) and rounds it to f32; the kernels use
 * f32 math functions, so selections agree except between scores within about 1e-6 relative of
 * each other, and weights agree to about 1e-6 relative. Every other reference is bit-identical to
 * its kernel.
 */
#ifndef MOEJIT_REFERENCE_H
#define MOEJIT_REFERENCE_H

#include "moejit.h"

#ifdef __cplusplus
extern "C" {
#endif

/* route (moejit.h, Operation 1). args->logits is host memory of spec->dtype; args->bias may be
 * NULL unless spec->has_bias; num_valid, the placement maps, expert_load and logical_ids are host
 * memory too. */
MOEJIT_API moejit_status moejit_route_reference(const moejit_route_spec *spec, const moejit_route_args *host_args);

/* route_backward (Operation 1b), in double: grad_logits of host logits, ids and grad_weights. */
MOEJIT_API moejit_status moejit_route_backward_reference(const moejit_route_backward_spec *spec,
                                                         const moejit_route_backward_args *host_args);

/* route_losses (Operation 1c), in double: losses [3] from host statistics. route's reference also
 * fills the statistics (spec.aux_stats, args.aux of host buffers; prob_sums gets the exact double
 * sums, rounded once to 2^-32 units), and route_backward's adds the losses' gradient. */
MOEJIT_API moejit_status moejit_route_losses_reference(const moejit_route_losses_spec *spec,
                                                       const moejit_route_losses_args *host_args);

/* align (Operation 2). */
MOEJIT_API moejit_status moejit_align_reference(const moejit_align_spec *spec, const moejit_align_args *host_args);

/* route_align (Operation 3): by definition route's reference, then align's on its ids over E+S
 * experts and K+S ids a token. */
MOEJIT_API moejit_status moejit_route_align_reference(const moejit_route_align_spec *spec,
                                                      const moejit_route_align_args *host_args);

/* mx_scales (Operation 4): torchao's to_blocked and its inverse. They reject group_ends that
 * decrease or pass M (the kernels, which cannot report them, clamp instead). */
MOEJIT_API moejit_status moejit_mx_scales_reference(const moejit_mx_scales_spec *spec,
                                                    const moejit_mx_scales_args *host_args);
MOEJIT_API moejit_status moejit_mx_scales_inverse_reference(const moejit_mx_scales_spec *spec,
                                                            const moejit_mx_scales_args *host_args);

/* dispatch_layout (Operation 5): ids and every output in host memory; written token by token, the
 * definition the kernels are compared with byte for byte. */
MOEJIT_API moejit_status moejit_dispatch_layout_reference(const moejit_dispatch_layout_spec *spec,
                                                          const moejit_dispatch_layout_args *host_args);

/* capacity (Operation 6): ids and weights in host memory, changed in place as the kernel does;
 * the counts too. Bit-identical to the kernel. */
MOEJIT_API moejit_status moejit_capacity_reference(const moejit_capacity_spec *spec,
                                                   const moejit_capacity_args *host_args);

/* permute and combine. */
MOEJIT_API moejit_status moejit_permute_reference(const moejit_permute_spec *spec,
                                                  const moejit_permute_args *host_args);
MOEJIT_API moejit_status moejit_combine_reference(const moejit_combine_spec *spec,
                                                  const moejit_combine_args *host_args);

/* permute and combine backward: their gradients, bit for bit what the kernels write (grad_weights'
 * sum in the kernels' order, DESIGN.md §2.4). */
MOEJIT_API moejit_status moejit_permute_backward_reference(const moejit_permute_backward_spec *spec,
                                                           const moejit_permute_backward_args *host_args);
MOEJIT_API moejit_status moejit_combine_backward_reference(const moejit_combine_backward_spec *spec,
                                                           const moejit_combine_backward_args *host_args);

#ifdef __cplusplus
}
#endif
#endif /* MOEJIT_REFERENCE_H */
