/* Reports the right ABI version but exports no `tally_plugin_v1`. */
#include <stdint.h>

uint32_t tally_plugin_abi_version(void) { return 1; }
