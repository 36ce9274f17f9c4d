// allowlist (C): only the tools named in the config may be called, and only
// they appear in `tools/list`. Everything else about a message passes as is.
//
// Config: {"tools": ["echo", "add"]}. Built with clang against Debian's
// wasi-libc (preview1) and wrapped into a component with the preview1 adapter
// (build.sh).

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "interceptor.h"

#define MAX_TOOLS 256

static char *allowed[MAX_TOOLS];
static size_t allowed_count = 0;

// Scans a JSON string starting at `p` (just past its opening quote) into a new
// C string; returns a pointer past the closing quote, or NULL if malformed.
static const char *scan_string(const char *p, const char *end, char **out) {
    size_t cap = 32, len = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    while (p < end && *p != '"') {
        char c = *p++;
        if (c == '\\' && p < end) {
            char e = *p++;
            switch (e) {
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'r': c = '\r'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'u': c = '?'; p += (end - p >= 4) ? 4 : end - p; break;  // names are ASCII in practice
            default: c = e;
            }
        }
        if (len + 2 > cap) {
            cap *= 2;
            char *grown = realloc(buf, cap);
            if (!grown) { free(buf); return NULL; }
            buf = grown;
        }
        buf[len++] = c;
    }
    if (p >= end) { free(buf); return NULL; }
    buf[len] = '\0';
    *out = buf;
    return p + 1;
}

static bool is_allowed(const char *name, size_t len) {
    for (size_t i = 0; i < allowed_count; i++) {
        if (strlen(allowed[i]) == len && memcmp(allowed[i], name, len) == 0) return true;
    }
    return false;
}

// Skips one JSON value starting at `p`; returns a pointer just past it.
static const char *skip_value(const char *p, const char *end) {
    int depth = 0;
    bool in_string = false;
    for (; p < end; p++) {
        char c = *p;
        if (in_string) {
            if (c == '\\') p++;
            else if (c == '"') { in_string = false; if (depth == 0) return p + 1; }
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (depth == 0) return p;  // the end of the enclosing container
            if (--depth == 0) return p + 1;
        } else if (depth == 0 && (c == ',')) {
            return p;
        }
    }
    return p;
}

// Finds `"key"` followed by a colon at the top level of the object that
// starts at `p` (its `{`); returns a pointer to the value, or NULL.
static const char *find_key(const char *p, const char *end, const char *key) {
    size_t key_len = strlen(key);
    if (p >= end || *p != '{') return NULL;
    p++;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t' || *p == ',')) p++;
        if (p >= end || *p == '}') return NULL;
        if (*p != '"') return NULL;
        const char *name = p + 1;
        const char *name_end = name;
        while (name_end < end && *name_end != '"') name_end += (*name_end == '\\') ? 2 : 1;
        p = name_end + 1;
        while (p < end && (*p == ' ' || *p == ':')) p++;
        if ((size_t)(name_end - name) == key_len && memcmp(name, key, key_len) == 0) return p;
        p = skip_value(p, end);
    }
    return NULL;
}

static void fail(interceptor_string_t *err, const char *why) {
    interceptor_string_dup(err, why);
}

bool exports_interceptor_init(interceptor_string_t *config, interceptor_registration_t *ret, interceptor_string_t *err) {
    const char *p = (const char *)config->ptr;
    const char *end = p + config->len;
    const char *tools = find_key(p, end, "tools");
    if (!tools || *tools != '[') {
        interceptor_string_free(config);
        fail(err, "config needs \"tools\": a list of tool names");
        return false;
    }
    for (size_t i = 0; i < allowed_count; i++) free(allowed[i]);
    allowed_count = 0;
    p = tools + 1;
    while (p < end && *p != ']') {
        if (*p == '"') {
            if (allowed_count == MAX_TOOLS) { interceptor_string_free(config); fail(err, "at most 256 tools"); return false; }
            p = scan_string(p + 1, end, &allowed[allowed_count]);
            if (!p) { interceptor_string_free(config); fail(err, "a tool name is not a valid JSON string"); return false; }
            allowed_count++;
        } else if (*p == ',' || *p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') {
            p++;
        } else {
            interceptor_string_free(config);
            fail(err, "\"tools\" must hold strings only");
            return false;
        }
    }
    interceptor_string_free(config);
    // `tools/call` requests, from the client: decided on the context's `tool`
    // alone, so the message text is not needed.
    ret->requests.methods.len = 1;
    ret->requests.methods.ptr = malloc(sizeof(interceptor_string_t));
    interceptor_string_dup(&ret->requests.methods.ptr[0], "tools/call");
    ret->requests.directions = WARDEN_INTERCEPTOR_TYPES_DIRECTIONS_CLIENT_TO_SERVER;
    ret->requests.body = WARDEN_INTERCEPTOR_TYPES_BODY_CONTEXT_ONLY;
    // `tools/list` results, from the server: their `tools` array is rewritten,
    // so the whole message.
    ret->responses.methods.len = 1;
    ret->responses.methods.ptr = malloc(sizeof(interceptor_string_t));
    interceptor_string_dup(&ret->responses.methods.ptr[0], "tools/list");
    ret->responses.directions = WARDEN_INTERCEPTOR_TYPES_DIRECTIONS_SERVER_TO_CLIENT;
    ret->responses.body = WARDEN_INTERCEPTOR_TYPES_BODY_WHOLE;
    return true;
}

void exports_interceptor_on_request(interceptor_context_t *ctx, interceptor_string_t *message, interceptor_verdict_t *ret) {
    ret->tag = WARDEN_INTERCEPTOR_TYPES_VERDICT_FORWARD;
    if (ctx->tool.is_some && !is_allowed((const char *)ctx->tool.val.ptr, ctx->tool.val.len)) {
        char text[300];
        snprintf(text, sizeof text, "tool \"%.*s\" is not on the allowlist", (int)(ctx->tool.val.len > 200 ? 200 : ctx->tool.val.len), (const char *)ctx->tool.val.ptr);
        ret->tag = WARDEN_INTERCEPTOR_TYPES_VERDICT_REJECT;
        ret->val.reject.code = -32001;
        interceptor_string_dup(&ret->val.reject.message, text);
        ret->val.reject.data.is_some = false;
    }
    interceptor_context_free(ctx);
    interceptor_string_free(message);
}

// Drops the tools not on the allowlist from a `tools/list` result.
void exports_interceptor_on_response(interceptor_context_t *ctx, interceptor_string_t *message, interceptor_verdict_t *ret) {
    ret->tag = WARDEN_INTERCEPTOR_TYPES_VERDICT_FORWARD;
    const char *start = (const char *)message->ptr;
    const char *end = start + message->len;
    const char *result = find_key(start, end, "result");
    const char *tools = result ? find_key(result, end, "tools") : NULL;
    if (tools && *tools == '[') {
        // The new message: everything before the list, the kept tools, everything after.
        char *out = malloc(message->len + 1);
        size_t len = 0;
        memcpy(out, start, (size_t)(tools + 1 - start));
        len = (size_t)(tools + 1 - start);
        bool first = true, dropped = false;
        const char *p = tools + 1;
        while (p < end && *p != ']') {
            if (*p == '{') {
                const char *item_end = skip_value(p, end);
                const char *name = find_key(p, item_end, "name");
                char *tool = NULL;
                bool keep = true;
                if (name && *name == '"' && scan_string(name + 1, item_end, &tool)) {
                    keep = is_allowed(tool, strlen(tool));
                    free(tool);
                }
                if (keep) {
                    if (!first) out[len++] = ',';
                    memcpy(out + len, p, (size_t)(item_end - p));
                    len += (size_t)(item_end - p);
                    first = false;
                } else {
                    dropped = true;
                }
                p = item_end;
            } else {
                p++;
            }
        }
        memcpy(out + len, p, (size_t)(end - p));
        len += (size_t)(end - p);
        if (dropped) {
            ret->tag = WARDEN_INTERCEPTOR_TYPES_VERDICT_MODIFY;
            interceptor_string_dup_n(&ret->val.modify, out, len);
        }
        free(out);
    }
    interceptor_context_free(ctx);
    interceptor_string_free(message);
}
