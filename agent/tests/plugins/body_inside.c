/* A plugin without the optional body-beside entry: it probes the URL in its `url` setting and
 * says whether the response body came inside the JSON of the step call, escaped. */
#include "plugin_abi.h"

static char url[512];
static char host[256];

static void remember_url(const uint8_t *input, size_t len) {
    const char *key = "\"url\":\"";
    size_t n = strlen(key);
    for (size_t i = 0; i + n <= len; i++) {
        if (memcmp(input + i, key, n) != 0) continue;
        size_t j = 0;
        for (i += n; i < len && input[i] != '"' && j + 1 < sizeof url; i++) url[j++] = input[i];
        url[j] = 0;
        break;
    }
    const char *start = strstr(url, "//");
    start = start ? start + 2 : url;
    size_t k = 0;
    while (start[k] && start[k] != '/' && k + 1 < sizeof host) {
        host[k] = start[k];
        k++;
    }
    host[k] = 0;
}

static Buffer invoke(const uint8_t *input, size_t len) {
    static char text[1024];
    if (has(input, len, "\"handshake\"")) return reply(HANDSHAKE("inside"));
    if (has(input, len, "\"open\"")) {
        remember_url(input, len);
        snprintf(text, sizeof text, "{\"reply\":\"opened\",\"session\":1,\"hosts\":[\"%s\"]}", host);
        return reply(text);
    }
    if (has(input, len, "\"start\"")) {
        snprintf(text, sizeof text,
                 "{\"reply\":\"started\",\"operation\":1,\"step\":{\"step\":\"send\",\"request\":"
                 "{\"method\":\"GET\",\"url\":\"%s\",\"headers\":[],\"body\":null,"
                 "\"endpoint\":\"probe\"}}}",
                 url);
        return reply(text);
    }
    if (has(input, len, "\"response\"")) {
        const char *detail = has(input, len, "\"body\":\"[{\\\"id\\\":1}]\"") ? "body inside"
                                                                              : "no body inside";
        snprintf(text, sizeof text,
                 "{\"reply\":\"stepped\",\"step\":{\"step\":\"done\",\"result\":"
                 "{\"result\":\"probed\",\"detail\":\"%s\"}}}",
                 detail);
        return reply(text);
    }
    return reply("{\"reply\":\"done\"}");
}

static const PluginApi API = { 1, invoke, release };

uint32_t tally_plugin_abi_version(void) { return 1; }
const PluginApi *tally_plugin_v1(void) { return &API; }
