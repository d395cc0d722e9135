/* Host-side number formats: bf16 / f16 conversions, as the kernels read them. */
#ifndef MOEJIT_NUMERIC_H
#define MOEJIT_NUMERIC_H

#include <stdint.h>

float mj_bf16_to_f32(uint16_t h);
float mj_f16_to_f32(uint16_t h);
uint16_t mj_f32_to_bf16(float f); /* round to nearest even; NaN stays NaN */
uint16_t mj_f32_to_f16(float f);  /* round to nearest even; overflow to inf */

/* Element i of a row of the given moejit_dtype, as f32. */
float mj_load_as_f32(const void *row, int dtype, int64_t i);

#endif
