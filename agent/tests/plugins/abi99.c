/* Speaks ABI 99. A host must stop at the version: touching the entry symbol aborts. */
#include <stdint.h>
#include <stdlib.h>

uint32_t tally_plugin_abi_version(void) { return 99; }

const void *tally_plugin_v1(void) {
    abort();
}
