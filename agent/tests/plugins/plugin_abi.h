/* The tally plugin ABI (plugins/sdk/src/abi.rs) in C, for the host's test plugins. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

typedef struct {
    uint8_t *ptr;
    size_t len;
    size_t cap;
} Buffer;

typedef struct {
    uint32_t abi_version;
    Buffer (*invoke)(const uint8_t *input, size_t len);
    void (*free)(Buffer buffer);
} PluginApi;

static Buffer reply(const char *text) {
    size_t len = strlen(text);
    Buffer buffer = { malloc(len), len, len };
    memcpy(buffer.ptr, text, len);
    return buffer;
}

static void release(Buffer buffer) {
    free(buffer.ptr);
}

/* Whether the JSON call holds `needle` (enough to tell the calls apart). */
static int has(const uint8_t *input, size_t len, const char *needle) {
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++) {
        if (memcmp(input + i, needle, n) == 0) return 1;
    }
    return 0;
}

#define HANDSHAKE(NAME) \
    "{\"reply\":\"handshake\",\"handshake\":{\"abi_version\":1,\"name\":\"" NAME "\"," \
    "\"version\":\"0.0.1\",\"kind\":\"psa\",\"streams\":[],\"capabilities\":[]," \
    "\"quantity_writes\":\"absolute\",\"settings_schema\":{\"type\":\"object\"}," \
    "\"secret_settings\":[],\"limits\":{\"max_concurrency\":1,\"per_endpoint_concurrency\":null," \
    "\"requests_per_minute\":null,\"requests_per_hour\":null,\"max_page_size\":null}," \
    "\"build\":{\"sdk_version\":\"c\",\"compiler\":\"gcc\"}}}"
