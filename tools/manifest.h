/* Manifest entries for the per-op parsers (manifest_<op>.c).
 *
 * A manifest's kernel entry is a JSON object whose fields are named exactly like the fields of
 * the op's spec struct in moejit.h (route: num_experts, topk, score…; permute: hidden, dtype,
 * has_scale…). Each op has one parse function, in its own file, that reads its fields with the
 * readers below; manifest.c dispatches on "op" (or "model") and reports every field nobody read
 * as unknown. A field that is absent keeps the spec's default (the zero value, or the preset's).
 *
 * Adding an op: write manifest_<op>.c with `int manifest_<op>(mf_entry *e, moejit_kernel_desc *d)`
 * (set d->op and read each field of the spec), declare it here and add one line to the table in
 * manifest.c. */
#ifndef MOEJIT_MANIFEST_H
#define MOEJIT_MANIFEST_H

#include <jansson.h>

#include "cli.h"

typedef struct mf_entry {
    json_t *obj;
    const char *where;        /* "shapes.json: kernels[3]" */
    const char *op;           /* "route" */
    char error[512];          /* the first problem, naming the field */
    const char *read[48];     /* fields read so far */
    int n_read;
    int dtype;                /* >= 0: this pass's element of a "dtype" list (or of the model default) */
} mf_entry;

/* Each reader: an absent field leaves *out unchanged and returns 0; a present one is checked,
 * stored and returns 0; a bad one records the error (naming the field and the value) and
 * returns -1. */
int mf_int(mf_entry *e, const char *field, int32_t *out);   /* an integer in int32 range */
int mf_flag(mf_entry *e, const char *field, int32_t *out);  /* true/false or 0/1 */
int mf_float(mf_entry *e, const char *field, int zero_ok, float *out); /* a finite positive normal float (or 0) */
int mf_score(mf_entry *e, const char *field, moejit_score *out);             /* "softmax"… */
int mf_group_score(mf_entry *e, const char *field, moejit_group_score *out); /* "max", "top2_sum" */
int mf_dtype(mf_entry *e, const char *field, moejit_dtype *out);             /* "bf16"… (lists: see manifest.c) */
int mf_index_dtype(mf_entry *e, const char *field, moejit_index_dtype *out);  /* "int32", "int64", "int16" */
int mf_drop_policy(mf_entry *e, const char *field, moejit_drop_policy *out);    /* "probs", "position" */
int mf_load_counter(mf_entry *e, const char *field, moejit_load_counter *out); /* "none", "int32", "int64" */
int mf_replay(mf_entry *e, const char *field, moejit_replay *out);           /* "off", "record", "given" */
int mf_aux_stats(mf_entry *e, const char *field, uint32_t *out);  /* "lb,seq,z" or ["lb", "z"]: MOEJIT_AUX_* flags */
int mf_seq_offset_dtype(mf_entry *e, const char *field, moejit_index_dtype *out); /* "int32", "int64" */

int manifest_route(mf_entry *e, moejit_kernel_desc *d);
int manifest_route_align(mf_entry *e, moejit_kernel_desc *d);
int manifest_route_backward(mf_entry *e, moejit_kernel_desc *d);
int manifest_align(mf_entry *e, moejit_kernel_desc *d);
int manifest_mx_scales(mf_entry *e, moejit_kernel_desc *d);
int manifest_dispatch_layout(mf_entry *e, moejit_kernel_desc *d);
int manifest_capacity(mf_entry *e, moejit_kernel_desc *d);
int manifest_permute(mf_entry *e, moejit_kernel_desc *d);
int manifest_combine(mf_entry *e, moejit_kernel_desc *d);
int manifest_permute_backward(mf_entry *e, moejit_kernel_desc *d);
int manifest_combine_backward(mf_entry *e, moejit_kernel_desc *d);
int manifest_route_losses(mf_entry *e, moejit_kernel_desc *d);
/* A "model" entry of op route_losses: the preset's E and K (before the entry's own fields). */
void manifest_route_losses_preset(const moejit_route_spec *preset, moejit_kernel_desc *d);

#endif
