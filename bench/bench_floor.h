/* The launch floor the C benchmarks print beside their rows: empty kernels compiled with the
 * library's own NVRTC wrapper for the current device — one plain, one opening with the generated
 * entry points' prologue (kernel_templates/common.cuh's mj::pdl_begin), the floor of a PDL launch. */
#ifndef MOEJIT_BENCH_FLOOR_H
#define MOEJIT_BENCH_FLOOR_H

#include <stdio.h>
#include <stdlib.h>

#include "common/strbuf.h"
#include "jit/codegen.h"
#include "jit/driver.h"
#include "jit/nvrtc.h"
#include "jit/nvrtc_locate.h"
#include "jit/templates.h"

/* Load both kernels (pdl may be NULL); returns the device's compute capability. Exits on failure. */
static inline int bench_empty_kernels(const mj_driver *d, CUfunction *plain, CUfunction *pdl)
{
    mj_nvrtc_identity id;
    mj_nvrtc *nv;
    mj_compile_options opt;
    mj_compile_output out;
    char arch[16];
    int cc = 0, retained;
    CUdevice dev;
    mj_strbuf src;
    mj_sb_init(&src);
    mj_sb_puts(&src, mj_template_common_cuh);
    mj_sb_puts(&src, "extern \"C\" __global__ void empty_kernel() {}\n"
                     "extern \"C\" __global__ void empty_pdl_kernel() { mj::pdl_begin(); }\n");
    if (mj_driver_current_device(d, 0, &dev, &retained) || mj_driver_device_cc(d, dev, &cc) || !mj_sb_ok(&src) ||
        mj_nvrtc_locate(&id) || mj_nvrtc_open(&id, &nv) ||
        (mj_arch_for_cc(cc, arch, sizeof arch), mj_compile_options_build(arch, NULL, &opt)) ||
        mj_nvrtc_compile(nv, src.data, "empty.cu", &opt, &out)) {
        fprintf(stderr, "empty kernel: %s\n", moejit_last_error(NULL));
        exit(1);
    }
    mj_sb_free(&src);
    CUmodule m;
    if (d->module_load_data(&m, out.cubin) != CUDA_SUCCESS || d->module_get_function(plain, m, "empty_kernel") != CUDA_SUCCESS ||
        (pdl && d->module_get_function(pdl, m, "empty_pdl_kernel") != CUDA_SUCCESS)) {
        fprintf(stderr, "empty kernel: the module did not load\n");
        exit(1);
    }
    mj_compile_output_free(&out);
    return cc;
}

#endif
