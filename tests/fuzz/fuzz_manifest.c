/* Fuzz the manifest parser (tools/manifest*.c over libjansson): any bytes; entries that come out
 * valid must pass the spec validator, invalid ones must say why. Messages for input that is not
 * JSON go to stderr (run libFuzzer with -close_fd_mask=2 to keep them quiet). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kernel_list l;
    memset(&l, 0, sizeof l);
    if (manifest_load_text("fuzz.json", (const char *)data, size, &l) == 0) {
        for (size_t i = 0; i < l.n; i++) {
            const kernel_item *it = &l.v[i];
            if (!it->origin) abort();
            if (it->invalid) {
                if (!it->error || !it->error[0]) abort();
                continue;
            }
            char name[128];
            (void)moejit_validate(&it->desc); /* valid or not, never a crash */
            (void)moejit_kernel_name(&it->desc, name, sizeof name);
        }
    }
    kernel_list_free(&l);
    return 0;
}
