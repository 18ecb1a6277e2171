/* Aborts the process as soon as it is loaded: proves a refused file was never opened. */
#include <stdlib.h>

__attribute__((constructor)) static void boom(void) { abort(); }
