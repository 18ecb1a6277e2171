/* A plugin that opens sessions and then answers garbage. Built with -DGARBAGE_HANDSHAKE it
 * answers garbage to the handshake already. */
#include "plugin_abi.h"

static Buffer invoke(const uint8_t *input, size_t len) {
#ifdef GARBAGE_HANDSHAKE
    if (has(input, len, "\"handshake\"")) return reply("{\"reply\":\"handshake\",\"handsh");
#else
    if (has(input, len, "\"handshake\"")) return reply(HANDSHAKE("garbage"));
#endif
    if (has(input, len, "\"open\"")) return reply("{\"reply\":\"opened\",\"session\":1,\"hosts\":[]}");
    if (has(input, len, "\"start\"")) return reply("{\"reply\":\"started\",\"operation\":1,\"step\":");
    if (has(input, len, "\"step\"")) return reply("\xff\xfe not json at all");
    return reply("{\"reply\":\"done\"}");
}

static const PluginApi API = { 1, invoke, release };

uint32_t tally_plugin_abi_version(void) { return 1; }
const PluginApi *tally_plugin_v1(void) { return &API; }
