
/*
 * Copyright (C) AILink
 *
 * An OpenAI chat.completions body through both request translators, as
 * ngx_ailink_translate_request() calls them: the body must be a JSON
 * object; the model is its "model" string (a default when it has none,
 * so that every body reaches the translators); each translator gets its
 * own parse, as it may take the tree apart.
 *
 * Checked: a body a translator returns serializes (with cJSON's printer
 * and with ours, whose text our strict parser must read back) and has
 * the shape the provider requires (Anthropic: model, max_tokens, messages
 * of user/assistant turns made of typed blocks, tool_use input an object;
 * Gemini: contents of user/model turns made of parts); a NULL return
 * carries x.error, a message for the 400 the client gets: without
 * allocation failures (the fuzzer has none) a NULL without it would be a
 * 500 for a bad request.
 *
 * The same bytes also go through the validating scan that pass-through
 * requests get instead of a parse (ngx_ailink_json_scan.c): it must stay
 * inside the input, and the fields it finds must lie within it.
 */


#include "ngx_ailink_translate.h"
#include "fuzz_json_check.h"


typedef cJSON *(*fuzz_request_pt)(ngx_ailink_xreq_t *x, cJSON *req);


static void
fuzz_check_anthropic(cJSON *body)
{
    cJSON  *msgs, *msg, *role, *content, *block, *type, *sys;

    ngx_fuzz_assert(cJSON_IsString(fuzz_json_get(body, "model")));
    ngx_fuzz_assert(cJSON_IsNumber(fuzz_json_get(body, "max_tokens")));

    msgs = fuzz_json_get(body, "messages");
    ngx_fuzz_assert(cJSON_IsArray(msgs));

    cJSON_ArrayForEach(msg, msgs) {
        ngx_fuzz_assert(cJSON_IsObject(msg));

        role = fuzz_json_get(msg, "role");
        ngx_fuzz_assert(fuzz_json_str_is(role, "user")
                        || fuzz_json_str_is(role, "assistant"));

        content = fuzz_json_get(msg, "content");
        ngx_fuzz_assert(cJSON_IsString(content) || cJSON_IsArray(content));

        if (!cJSON_IsArray(content)) {
            continue;
        }

        cJSON_ArrayForEach(block, content) {
            ngx_fuzz_assert(cJSON_IsObject(block));

            type = fuzz_json_get(block, "type");
            ngx_fuzz_assert(cJSON_IsString(type));

            if (fuzz_json_str_is(type, "text")) {
                ngx_fuzz_assert(cJSON_IsString(fuzz_json_get(block, "text")));

            } else if (fuzz_json_str_is(type, "tool_use")) {
                ngx_fuzz_assert(cJSON_IsString(fuzz_json_get(block, "id")));
                ngx_fuzz_assert(cJSON_IsString(fuzz_json_get(block, "name")));
                ngx_fuzz_assert(cJSON_IsObject(fuzz_json_get(block,
                                                             "input")));

            } else if (fuzz_json_str_is(type, "tool_result")) {
                ngx_fuzz_assert(cJSON_IsString(fuzz_json_get(block,
                                                            "tool_use_id")));
            }
        }
    }

    sys = fuzz_json_get(body, "system");
    ngx_fuzz_assert(sys == NULL || cJSON_IsString(sys) || cJSON_IsArray(sys));
}


static void
fuzz_check_gemini(cJSON *body)
{
    cJSON  *contents, *c, *role, *parts;

    contents = fuzz_json_get(body, "contents");
    ngx_fuzz_assert(cJSON_IsArray(contents));

    cJSON_ArrayForEach(c, contents) {
        ngx_fuzz_assert(cJSON_IsObject(c));

        role = fuzz_json_get(c, "role");
        ngx_fuzz_assert(fuzz_json_str_is(role, "user")
                        || fuzz_json_str_is(role, "model"));

        parts = fuzz_json_get(c, "parts");
        ngx_fuzz_assert(cJSON_IsArray(parts));
    }
}


static void
fuzz_request_one(fuzz_request_pt translate, void (*check)(cJSON *),
    const uint8_t *data, size_t size, ngx_ailink_provider_t *prov)
{
    cJSON              *json, *out, *back, *model;
    ngx_str_t           text, printed;
    ngx_pool_t         *pool;
    ngx_ailink_xreq_t   x;
    u_char              msg[NGX_MAX_ERROR_STR];

    text.data = (u_char *) data;
    text.len = size;

    json = ngx_ailink_json_parse(&text);

    if (!cJSON_IsObject(json)) {
        cJSON_Delete(json);
        return;
    }

    pool = ngx_fuzz_pool();

    ngx_memzero(&x, sizeof(ngx_ailink_xreq_t));
    x.pool = pool;
    x.log = &ngx_fuzz_log;
    x.provider = prov;

    model = fuzz_json_get(json, "model");
    if (cJSON_IsString(model) && !ngx_ailink_json_empty(model)) {
        ngx_ailink_json_str(model, &x.model);

    } else {
        ngx_str_set(&x.model, "fuzz-model");
    }

    x.stream = cJSON_IsTrue(fuzz_json_get(json, "stream"));

    out = translate(&x, json);

    if (out == NULL) {
        ngx_fuzz_assert(x.error != NULL);

        /* what ngx_ailink_translate_fail() does with it */
        (void) ngx_snprintf(msg, sizeof(msg), "%s %s", x.error,
                            x.error_param ? x.error_param : "");

    } else {
        back = fuzz_json_roundtrip(out);
        ngx_fuzz_assert(cJSON_IsObject(back));
        check(back);
        cJSON_Delete(back);

        /* what the gateway sends: our printer, read back strictly */
        if (ngx_ailink_json_to_str(pool, out, &printed) == NGX_OK) {
            back = ngx_ailink_json_parse(&printed);
            ngx_fuzz_assert(cJSON_IsObject(back));
            cJSON_Delete(back);
        }

        cJSON_Delete(out);
    }

    cJSON_Delete(json);
    ngx_destroy_pool(pool);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_uint_t               i;
    ngx_str_t                text;
    ngx_ailink_provider_t    prov;
    ngx_ailink_json_field_t  fields[] = {
        { ngx_string("model"), ngx_null_string },
        { ngx_string("stream"), ngx_null_string },
        { ngx_string("usage"), ngx_null_string }
    };

    /* a copy of exactly the input's size, so ASan sees any overread */
    text.len = size;
    text.data = malloc(size ? size : 1);
    ngx_fuzz_assert(text.data != NULL);
    ngx_memcpy(text.data, data, size);

    if (ngx_ailink_json_scan(&text, fields, 3) == NGX_OK) {
        for (i = 0; i < 3; i++) {
            ngx_fuzz_assert(fields[i].value.len == 0
                            || (fields[i].value.data >= text.data
                                && fields[i].value.data + fields[i].value.len
                                   <= text.data + text.len));
        }
    }

    free(text.data);

    ngx_memzero(&prov, sizeof(ngx_ailink_provider_t));
    prov.max_tokens = 4096;
    ngx_str_set(&prov.version, "2023-06-01");

    prov.type = NGX_AILINK_PROVIDER_ANTHROPIC;
    ngx_str_set(&prov.name, "anthropic");
    fuzz_request_one(ngx_ailink_anthropic_request, fuzz_check_anthropic,
                     data, size, &prov);

    prov.type = NGX_AILINK_PROVIDER_GEMINI;
    ngx_str_set(&prov.name, "gemini");

    /* odd sizes: a route with safety settings, as in t/ configs */
    if (size & 1) {
        ngx_str_set(&prov.safety_settings,
                    "[{\"category\":\"HARM_CATEGORY_HARASSMENT\","
                    "\"threshold\":\"BLOCK_NONE\"}]");
    }

    fuzz_request_one(ngx_ailink_gemini_request, fuzz_check_gemini,
                     data, size, &prov);

    return 0;
}
