
/*
 * Copyright (C) AILink
 *
 * A provider's non-stream response body through its translator, as
 * ngx_ailink_response_filter.c calls it: the first byte picks Anthropic
 * (0 mod 3) or Gemini (1 mod 3), the rest is the body; a body that is not
 * JSON never reaches a translator.  2 mod 3 reads the body as an OpenAI
 * response or chunk for its usage, from the tree (what the filter does on
 * an OpenAI stream's events) and from the text (ngx_ailink_json_find_last()
 * and ngx_ailink_openai_usage_text(), what it does on a JSON response);
 * the two must agree.
 *
 * Checked: a translation serializes, parses back and is a chat.completion
 * (id, model, choices with an assistant message, OpenAI finish reasons,
 * tool calls with id, name and string arguments, non-negative usage
 * counts).
 */


#include "ngx_ailink_translate.h"
#include "fuzz_json_check.h"


/* keys unique at every level: where cJSON and the scan could differ */

static ngx_uint_t
fuzz_unique_keys(cJSON *item)
{
    cJSON  *a, *b;

    for (a = item ? item->child : NULL; a; a = a->next) {
        for (b = a->next; cJSON_IsObject(item) && b; b = b->next) {
            if (strcmp(a->string, b->string) == 0) {
                return 0;
            }
        }

        if (!fuzz_unique_keys(a)) {
            return 0;
        }
    }

    return 1;
}


/* the passthrough reads usage from the text: the same as from the tree */

static void
fuzz_usage_text_agrees(ngx_str_t *text, cJSON *json, ngx_ailink_usage_t *tree)
{
    ngx_str_t           value;
    ngx_ailink_usage_t  usage;
    static ngx_str_t    key = ngx_string("usage");

    ngx_memzero(&usage, sizeof(ngx_ailink_usage_t));

    if (ngx_ailink_json_find_last(text, &key, &value) == NGX_OK) {
        ngx_ailink_openai_usage_text(&usage, &value);

    } else {
        ngx_str_null(&value);
    }

    /* keys are compared as written: cJSON reads "a\u0000b" as "a", and
     * "\u0075sage" as "usage" */
    if (!cJSON_IsObject(json) || !fuzz_unique_keys(json)
        || ngx_strlchr(value.data ? value.data : text->data,
                       value.data ? value.data + value.len
                                  : text->data + text->len, '\\'))
    {
        return;
    }

    ngx_fuzz_assert(usage.known == tree->known);
    ngx_fuzz_assert(usage.prompt == tree->prompt);
    ngx_fuzz_assert(usage.completion == tree->completion);
    ngx_fuzz_assert(usage.total == tree->total);
    ngx_fuzz_assert(usage.cached == tree->cached);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON               *json, *out, *back;
    ngx_str_t            text;
    ngx_pool_t          *pool;
    ngx_ailink_xresp_t   x;
    ngx_ailink_usage_t   usage;

    if (size < 1) {
        return 0;
    }

    text.data = (u_char *) data + 1;
    text.len = size - 1;

    json = ngx_ailink_json_parse(&text);
    if (json == NULL) {
        return 0;
    }

    pool = ngx_fuzz_pool();

    ngx_memzero(&usage, sizeof(ngx_ailink_usage_t));
    ngx_memzero(&x, sizeof(ngx_ailink_xresp_t));
    x.pool = pool;
    x.log = &ngx_fuzz_log;
    ngx_str_set(&x.model, "fuzz-model");
    ngx_str_set(&x.id, "chatcmpl-fuzz");
    x.created = 1700000000;
    x.usage = &usage;

    switch (data[0] % 3) {
    case 0:
        out = ngx_ailink_anthropic_response(&x, json);
        break;
    case 1:
        out = ngx_ailink_gemini_response(&x, json);
        break;
    default:
        ngx_ailink_usage_from_openai(&usage, json);
        fuzz_usage_text_agrees(&text, json, &usage);
        out = NULL;
    }

    if (out) {
        back = fuzz_json_roundtrip(out);
        fuzz_check_completion(back);
        cJSON_Delete(back);
        cJSON_Delete(out);
    }

    cJSON_Delete(json);
    ngx_destroy_pool(pool);

    return 0;
}
