
/*
 * Copyright (C) AILink
 *
 * Checks on what a translator produced: it serializes, the text parses
 * back as JSON, and it has the shape its reader requires.
 */


#ifndef _FUZZ_JSON_CHECK_H_INCLUDED_
#define _FUZZ_JSON_CHECK_H_INCLUDED_


#include "ngx_fuzz.h"
#include <cjson/cJSON.h>


/* serializes, parses back; returns the re-parsed tree (caller frees) */

static cJSON *
fuzz_json_roundtrip(cJSON *json)
{
    char   *s;
    cJSON  *back;

    s = cJSON_PrintUnformatted(json);
    ngx_fuzz_assert(s != NULL);

    back = cJSON_Parse(s);
    ngx_fuzz_assert(back != NULL);

    cJSON_free(s);

    return back;
}


static ngx_inline ngx_uint_t
fuzz_json_str_is(cJSON *item, const char *s)
{
    return cJSON_IsString(item) && strcmp(item->valuestring, s) == 0;
}


static ngx_inline cJSON *
fuzz_json_get(cJSON *obj, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}


/* the OpenAI finish reasons */

static ngx_inline ngx_uint_t
fuzz_finish_reason_ok(cJSON *r)
{
    return cJSON_IsNull(r)
           || fuzz_json_str_is(r, "stop") || fuzz_json_str_is(r, "length")
           || fuzz_json_str_is(r, "tool_calls")
           || fuzz_json_str_is(r, "content_filter");
}


/* an OpenAI "usage" object: non-negative integer counts */

static void
fuzz_check_usage(cJSON *u)
{
    const char  **k;
    cJSON        *n;
    static const char  *keys[] = { "prompt_tokens", "completion_tokens",
                                   "total_tokens", NULL };

    ngx_fuzz_assert(cJSON_IsObject(u));

    for (k = keys; *k; k++) {
        n = fuzz_json_get(u, *k);
        ngx_fuzz_assert(cJSON_IsNumber(n));
        ngx_fuzz_assert(n->valuedouble >= 0);
    }
}


/* an OpenAI chat.completion */

static void
fuzz_check_completion(cJSON *c)
{
    cJSON  *choices, *choice, *msg, *calls, *call, *fn;

    ngx_fuzz_assert(cJSON_IsObject(c));
    ngx_fuzz_assert(fuzz_json_str_is(fuzz_json_get(c, "object"),
                                     "chat.completion"));
    ngx_fuzz_assert(cJSON_IsString(fuzz_json_get(c, "id")));
    ngx_fuzz_assert(cJSON_IsString(fuzz_json_get(c, "model")));

    choices = fuzz_json_get(c, "choices");
    ngx_fuzz_assert(cJSON_IsArray(choices));

    cJSON_ArrayForEach(choice, choices) {
        ngx_fuzz_assert(cJSON_IsNumber(fuzz_json_get(choice, "index")));
        ngx_fuzz_assert(fuzz_finish_reason_ok(
                                     fuzz_json_get(choice, "finish_reason")));

        msg = fuzz_json_get(choice, "message");
        ngx_fuzz_assert(cJSON_IsObject(msg));
        ngx_fuzz_assert(fuzz_json_str_is(fuzz_json_get(msg, "role"),
                                         "assistant"));

        calls = fuzz_json_get(msg, "tool_calls");
        if (calls == NULL) {
            continue;
        }

        ngx_fuzz_assert(cJSON_IsArray(calls));

        cJSON_ArrayForEach(call, calls) {
            ngx_fuzz_assert(cJSON_IsString(fuzz_json_get(call, "id")));
            ngx_fuzz_assert(fuzz_json_str_is(fuzz_json_get(call, "type"),
                                             "function"));
            fn = fuzz_json_get(call, "function");
            ngx_fuzz_assert(cJSON_IsString(fuzz_json_get(fn, "name")));
            /* arguments are a JSON text in a string */
            ngx_fuzz_assert(cJSON_IsString(fuzz_json_get(fn, "arguments")));
        }
    }

    if (fuzz_json_get(c, "usage")) {
        fuzz_check_usage(fuzz_json_get(c, "usage"));
    }
}


#endif /* _FUZZ_JSON_CHECK_H_INCLUDED_ */
