// {{name}}: a Warden plugin in C. It denies one tool, named in its config as
// {"deny": "tool_name"}, and forwards everything else. Build: ./build.sh
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "interceptor.h"

static char deny[256] = "";

bool exports_interceptor_init(interceptor_string_t *config, interceptor_registration_t *ret, interceptor_string_t *err) {
    // A tiny reader for {"deny": "name"}; use a JSON library for more.
    const char *text = (const char *)config->ptr;
    const char *key = strstr(text, "\"deny\"");
    const char *open = key ? strchr(key + 6, '"') : NULL;
    const char *close = open ? strchr(open + 1, '"') : NULL;
    if (open && close && (size_t)(close - open - 1) < sizeof deny) {
        memcpy(deny, open + 1, (size_t)(close - open - 1));
        deny[close - open - 1] = '\0';
    }
    interceptor_string_free(config);
    // What reaches on_request. Methods: exact names, "prefix*", or "*".
    ret->requests.methods.len = 1;
    ret->requests.methods.ptr = malloc(sizeof(interceptor_string_t));
    interceptor_string_dup(&ret->requests.methods.ptr[0], "tools/call");
    // Which ways: either flag, or both or-ed together.
    ret->requests.directions = WARDEN_INTERCEPTOR_TYPES_DIRECTIONS_CLIENT_TO_SERVER |
                               WARDEN_INTERCEPTOR_TYPES_DIRECTIONS_SERVER_TO_CLIENT;
    // CONTEXT_ONLY: `message` is empty (this plugin reads only ctx->tool);
    // WHOLE if on_request reads or rewrites the message text.
    ret->requests.body = WARDEN_INTERCEPTOR_TYPES_BODY_CONTEXT_ONLY;
    // What reaches on_response: nothing (no methods, no directions).
    ret->responses.methods.len = 0;
    ret->responses.methods.ptr = NULL;
    ret->responses.directions = 0;
    ret->responses.body = WARDEN_INTERCEPTOR_TYPES_BODY_CONTEXT_ONLY;
    return true;
}

void exports_interceptor_on_request(interceptor_context_t *ctx, interceptor_string_t *message, interceptor_verdict_t *ret) {
    ret->tag = WARDEN_INTERCEPTOR_TYPES_VERDICT_FORWARD;
    if (deny[0] && ctx->tool.is_some && ctx->tool.val.len == strlen(deny) &&
        memcmp(ctx->tool.val.ptr, deny, ctx->tool.val.len) == 0) {
        char text[320];
        snprintf(text, sizeof text, "%s is denied by {{name}}", deny);
        ret->tag = WARDEN_INTERCEPTOR_TYPES_VERDICT_REJECT;
        ret->val.reject.code = -32001;
        interceptor_string_dup(&ret->val.reject.message, text);
        ret->val.reject.data.is_some = false;
    }
    interceptor_context_free(ctx);
    interceptor_string_free(message);
}

void exports_interceptor_on_response(interceptor_context_t *ctx, interceptor_string_t *message, interceptor_verdict_t *ret) {
    ret->tag = WARDEN_INTERCEPTOR_TYPES_VERDICT_FORWARD;
    interceptor_context_free(ctx);
    interceptor_string_free(message);
}
