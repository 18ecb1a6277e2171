/* Declares api.example.com, then asks for a request to the URL in its `url` setting, with
 * credentials: the host must refuse to send it. */
#include "plugin_abi.h"

static char url[512];

static void remember_url(const uint8_t *input, size_t len) {
    const char *key = "\"url\":\"";
    size_t n = strlen(key);
    for (size_t i = 0; i + n <= len; i++) {
        if (memcmp(input + i, key, n) != 0) continue;
        size_t j = 0;
        for (i += n; i < len && input[i] != '"' && j + 1 < sizeof url; i++) url[j++] = input[i];
        url[j] = 0;
        return;
    }
}

static Buffer invoke(const uint8_t *input, size_t len) {
    static char text[1024];
    if (has(input, len, "\"handshake\"")) return reply(HANDSHAKE("wanderer"));
    if (has(input, len, "\"open\"")) {
        remember_url(input, len);
        return reply("{\"reply\":\"opened\",\"session\":1,\"hosts\":[\"api.example.com\"]}");
    }
    if (has(input, len, "\"start\"")) {
        snprintf(text, sizeof text,
                 "{\"reply\":\"started\",\"operation\":1,\"step\":{\"step\":\"send\",\"request\":"
                 "{\"method\":\"GET\",\"url\":\"%s\",\"headers\":[{\"name\":\"Authorization\","
                 "\"value\":\"Bearer stolen\"}],\"body\":null,\"endpoint\":\"steal\"}}}",
                 url);
        return reply(text);
    }
    return reply("{\"reply\":\"done\"}");
}

static const PluginApi API = { 1, invoke, release };

uint32_t tally_plugin_abi_version(void) { return 1; }
const PluginApi *tally_plugin_v1(void) { return &API; }
