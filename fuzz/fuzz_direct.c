
/*
 * Copyright (C) AILink
 *
 * The one-pass request translator (ngx_ailink_direct.c) against the tree
 * translators it stands in for, differentially: for any body the one-pass
 * reader takes and writes, the tree path must translate the same body
 * (parse, ngx_ailink_anthropic_request() or ngx_ailink_gemini_request(),
 * print) into the same bytes, and read the same model, "stream" and
 * "stream_options.include_usage".  A body the reader declines costs
 * nothing to check: the tree path does it.  Anthropic, Gemini, and
 * Gemini with a route's safety settings; a route's default max_tokens
 * from the input's size.  The same bytes also go through the one-pass
 * response translators (an Anthropic, a Gemini answer), against the
 * tree's.
 */


#include "ngx_ailink_translate.h"
#include "fuzz_json_check.h"

#include <stdio.h>


static void
fuzz_direct_one(ngx_str_t *text, ngx_ailink_provider_t *prov)
{
    cJSON                *json, *tree, *opts;
    ngx_int_t             rc;
    ngx_str_t             a, b;
    ngx_pool_t           *pool;
    ngx_ailink_direct_t   d;
    ngx_ailink_xreq_t     x;

    pool = ngx_fuzz_pool();

    rc = ngx_ailink_direct_read(&d, pool, text);
    ngx_fuzz_assert(rc == NGX_OK || rc == NGX_DECLINED);

    if (rc != NGX_OK) {
        ngx_destroy_pool(pool);
        return;
    }

    ngx_memzero(&x, sizeof(ngx_ailink_xreq_t));
    x.pool = pool;
    x.log = &ngx_fuzz_log;
    x.provider = prov;
    x.model = d.model;
    x.stream = d.stream;

    rc = ngx_ailink_direct_write(&d, &x, &b);
    ngx_fuzz_assert(rc == NGX_OK || rc == NGX_DECLINED);

    json = ngx_ailink_json_parse(text);

    if (rc == NGX_DECLINED) {
        /* no turn, Anthropic's first turn not the user's, a lone surrogate */
        tree = (json == NULL) ? NULL
               : (prov->type == NGX_AILINK_PROVIDER_ANTHROPIC)
               ? ngx_ailink_anthropic_request(&x, json)
               : ngx_ailink_gemini_request(&x, json);
        ngx_fuzz_assert(tree == NULL);
        cJSON_Delete(json);
        ngx_destroy_pool(pool);
        return;
    }

    /* what the reader took, the parse reads the same */
    ngx_fuzz_assert(cJSON_IsObject(json));
    ngx_fuzz_assert(cJSON_IsString(fuzz_json_get(json, "model"))
                    && strlen(fuzz_json_get(json, "model")->valuestring)
                       == d.model.len
                    && ngx_memcmp(fuzz_json_get(json, "model")->valuestring,
                                  d.model.data, d.model.len) == 0);
    ngx_fuzz_assert(cJSON_IsTrue(fuzz_json_get(json, "stream"))
                    == (cJSON_bool) d.stream);

    opts = fuzz_json_get(json, "stream_options");
    ngx_fuzz_assert(cJSON_IsTrue(fuzz_json_get(opts, "include_usage"))
                    == (cJSON_bool) d.include_usage);

    tree = (prov->type == NGX_AILINK_PROVIDER_ANTHROPIC)
           ? ngx_ailink_anthropic_request(&x, json)
           : ngx_ailink_gemini_request(&x, json);

    if (tree == NULL) {
        fprintf(stderr, "tree refused what the one pass wrote: %s\n",
                x.error ? x.error : "(no error)");
    }

    ngx_fuzz_assert(tree != NULL);
    ngx_fuzz_assert(ngx_ailink_json_to_str(pool, tree, &a) == NGX_OK);

    if (a.len != b.len || ngx_memcmp(a.data, b.data, a.len) != 0) {
        fprintf(stderr, "tree:     %.*s\none pass: %.*s\n",
                (int) ngx_min(a.len, 2000), a.data,
                (int) ngx_min(b.len, 2000), b.data);
    }

    ngx_fuzz_assert(a.len == b.len && ngx_memcmp(a.data, b.data, a.len) == 0);

    if (getenv("FUZZ_DIRECT_SHOW")) {
        /* what an input became: FUZZ_DIRECT_SHOW=1 fuzz/out/fuzz_direct F */
        fprintf(stderr, "%.*s\n", (int) b.len, b.data);
    }

    cJSON_Delete(tree);
    cJSON_Delete(json);
    ngx_destroy_pool(pool);
}


/*
 * The same bytes as an Anthropic and as a Gemini answer: the one-pass
 * response against ngx_ailink_anthropic_response() (or _gemini_) and the
 * printer, from a usage already holding counts (a stream's or a
 * fallback's), which both must leave the same.
 */

typedef ngx_int_t (*fuzz_direct_response_pt)(ngx_ailink_xresp_t *x,
    ngx_str_t *text, ngx_str_t *out);
typedef cJSON *(*fuzz_tree_response_pt)(ngx_ailink_xresp_t *x, cJSON *resp);


static void
fuzz_direct_response(ngx_str_t *text, size_t size,
    fuzz_direct_response_pt direct, fuzz_tree_response_pt translate)
{
    cJSON               *json, *tree;
    ngx_int_t            rc;
    ngx_str_t            a, b;
    ngx_pool_t          *pool;
    ngx_ailink_usage_t   ua, ub;
    ngx_ailink_xresp_t   x;

    pool = ngx_fuzz_pool();

    ngx_memzero(&ua, sizeof(ngx_ailink_usage_t));

    if (size & 4) {
        ua.prompt = 10;
        ua.completion = 3;
        ua.total = 13;
        ua.cached = 4;
        ua.cache_write = 2;
        ua.reasoning = (size & 8) ? 5 : 0;
    }

    ub = ua;

    ngx_memzero(&x, sizeof(ngx_ailink_xresp_t));
    x.pool = pool;
    x.log = &ngx_fuzz_log;
    ngx_str_set(&x.model, "claude-\"fuzz\"\n");
    ngx_str_set(&x.id, "chatcmpl-0123");
    x.created = 1700000000;
    x.usage = &ub;

    rc = direct(&x, text, &b);
    ngx_fuzz_assert(rc == NGX_OK || rc == NGX_DECLINED);

    if (rc != NGX_OK) {
        ngx_fuzz_assert(ub.prompt == ua.prompt && ub.total == ua.total);
        ngx_destroy_pool(pool);
        return;
    }

    json = ngx_ailink_json_parse(text);
    x.usage = &ua;
    tree = json ? translate(&x, json) : NULL;

    ngx_fuzz_assert(tree != NULL);

    a.len = ngx_ailink_json_print_len(tree) + 1;
    a.data = ngx_pnalloc(pool, a.len);
    ngx_fuzz_assert(a.data != NULL);
    *ngx_ailink_json_print(a.data, tree) = '\n';

    if (a.len != b.len || ngx_memcmp(a.data, b.data, a.len) != 0) {
        fprintf(stderr, "tree:     %.*s\none pass: %.*s\n",
                (int) ngx_min(a.len, 2000), a.data,
                (int) ngx_min(b.len, 2000), b.data);
    }

    ngx_fuzz_assert(a.len == b.len && ngx_memcmp(a.data, b.data, a.len) == 0);
    ngx_fuzz_assert(ua.prompt == ub.prompt && ua.completion == ub.completion
                    && ua.total == ub.total && ua.cached == ub.cached
                    && ua.cache_write == ub.cache_write
                    && ua.reasoning == ub.reasoning && ua.known == ub.known);

    if (getenv("FUZZ_DIRECT_SHOW")) {
        fprintf(stderr, "%.*s", (int) b.len, b.data);
    }

    cJSON_Delete(tree);
    cJSON_Delete(json);
    ngx_destroy_pool(pool);
}


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    /* the long-run scan of this CPU, as a worker has it */
    ngx_ailink_json_init();

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_str_t              text;
    ngx_ailink_provider_t  prov;

    /* a copy of exactly the input's size, so ASan sees any overread */
    text.len = size;
    text.data = malloc(size ? size : 1);
    ngx_fuzz_assert(text.data != NULL);
    ngx_memcpy(text.data, data, size);

    ngx_memzero(&prov, sizeof(ngx_ailink_provider_t));
    prov.max_tokens = (size & 2) ? 1000 : 0;
    ngx_str_set(&prov.version, "2023-06-01");

    prov.type = NGX_AILINK_PROVIDER_ANTHROPIC;
    ngx_str_set(&prov.name, "anthropic");
    fuzz_direct_one(&text, &prov);

    prov.type = NGX_AILINK_PROVIDER_GEMINI;
    ngx_str_set(&prov.name, "gemini");

    if (size & 1) {
        ngx_str_set(&prov.safety_settings,
                    "[ {\"category\": \"HARM_CATEGORY_HARASSMENT\","
                    " \"threshold\": \"BLOCK_NONE\"} ]");
    }

    fuzz_direct_one(&text, &prov);

    fuzz_direct_response(&text, size, ngx_ailink_direct_anthropic_response,
                         ngx_ailink_anthropic_response);
    fuzz_direct_response(&text, size, ngx_ailink_direct_gemini_response,
                         ngx_ailink_gemini_response);

    free(text.data);

    return 0;
}
