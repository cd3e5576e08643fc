
/*
 * Copyright (C) AILink
 *
 * The per-request context and the $ailink_* variables that expose it.
 */


#include "ngx_ailink_common.h"
#include <openssl/rand.h>


enum {
    NGX_AILINK_VAR_REQUEST_ID = 0,
    NGX_AILINK_VAR_TOKEN_ID,
    NGX_AILINK_VAR_TOKEN_NAME,
    NGX_AILINK_VAR_PROJECT,
    NGX_AILINK_VAR_AGENT_NAME,
    NGX_AILINK_VAR_SESSION_ID,
    NGX_AILINK_VAR_PROVIDER,
    NGX_AILINK_VAR_MODEL,
    NGX_AILINK_VAR_UPSTREAM,
    NGX_AILINK_VAR_UPSTREAM_URL,
    NGX_AILINK_VAR_UPSTREAM_HOST,
    NGX_AILINK_VAR_PROMPT_TOKENS,
    NGX_AILINK_VAR_COMPLETION_TOKENS,
    NGX_AILINK_VAR_TOTAL_TOKENS,
    NGX_AILINK_VAR_COST_USD
};


static void ngx_ailink_ctx_cleanup(void *data);
static ngx_int_t ngx_ailink_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_http_variable_t  ngx_ailink_vars[] = {

    { ngx_string("ailink_request_id"), NULL, ngx_ailink_variable,
      NGX_AILINK_VAR_REQUEST_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ailink_token_id"), NULL, ngx_ailink_variable,
      NGX_AILINK_VAR_TOKEN_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ailink_token_name"), NULL, ngx_ailink_variable,
      NGX_AILINK_VAR_TOKEN_NAME, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ailink_project"), NULL, ngx_ailink_variable,
      NGX_AILINK_VAR_PROJECT, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ailink_agent_name"), NULL, ngx_ailink_variable,
      NGX_AILINK_VAR_AGENT_NAME, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ailink_session_id"), NULL, ngx_ailink_variable,
      NGX_AILINK_VAR_SESSION_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ailink_provider"), NULL, ngx_ailink_variable,
      NGX_AILINK_VAR_PROVIDER, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ailink_model"), NULL, ngx_ailink_variable,
      NGX_AILINK_VAR_MODEL, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ailink_upstream"), NULL, ngx_ailink_variable,
      NGX_AILINK_VAR_UPSTREAM, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ailink_upstream_url"), NULL, ngx_ailink_variable,
      NGX_AILINK_VAR_UPSTREAM_URL, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ailink_upstream_host"), NULL, ngx_ailink_variable,
      NGX_AILINK_VAR_UPSTREAM_HOST, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ailink_prompt_tokens"), NULL, ngx_ailink_variable,
      NGX_AILINK_VAR_PROMPT_TOKENS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ailink_completion_tokens"), NULL, ngx_ailink_variable,
      NGX_AILINK_VAR_COMPLETION_TOKENS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ailink_total_tokens"), NULL, ngx_ailink_variable,
      NGX_AILINK_VAR_TOTAL_TOKENS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ailink_cost_usd"), NULL, ngx_ailink_variable,
      NGX_AILINK_VAR_COST_USD, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_ailink_log_hook_pt  ngx_ailink_log_hook;


/* request ids: a random prefix per process and a scrambled counter */
static ngx_pid_t  ngx_ailink_rid_pid;
static uint64_t   ngx_ailink_rid_prefix;
static uint64_t   ngx_ailink_rid_key;
static uint64_t   ngx_ailink_rid_count;


/*
 * An internal redirect (error_page, named locations) zeroes r->ctx, but the
 * audit record and the error envelope still need what auth and routing
 * found.  The context is therefore also kept in a pool cleanup and found
 * there again, the way lua-nginx-module keeps its ctx.
 */

ngx_ailink_ctx_t *
ngx_ailink_get_ctx(ngx_http_request_t *r)
{
    ngx_ailink_ctx_t    *ctx;
    ngx_pool_cleanup_t  *cln;

    ctx = ngx_http_get_module_ctx(r, ngx_ailink_auth_module);
    if (ctx) {
        return ctx;
    }

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_ailink_ctx_cleanup) {
            ctx = cln->data;
            ngx_http_set_ctx(r, ctx, ngx_ailink_auth_module);
            return ctx;
        }
    }

    return NULL;
}


/*
 * A 32-hex-digit id unique across processes and restarts: a random 64-bit
 * prefix drawn once per process, then a counter passed through a
 * bijective mixer (splitmix64's), so ids do not show how busy a worker is.
 * nginx's own $request_id draws 16 random bytes for every request, which
 * costs more than all of the gateway's auth.
 */

static ngx_int_t
ngx_ailink_request_id(ngx_pool_t *pool, ngx_str_t *id)
{
    uint64_t  x;

    if (ngx_ailink_rid_pid != ngx_pid) {
        if (RAND_bytes((u_char *) &ngx_ailink_rid_prefix, sizeof(uint64_t))
            != 1
            || RAND_bytes((u_char *) &ngx_ailink_rid_key, sizeof(uint64_t))
               != 1)
        {
            return NGX_ERROR;
        }

        ngx_ailink_rid_pid = ngx_pid;
        ngx_ailink_rid_count = 0;
    }

    x = ++ngx_ailink_rid_count ^ ngx_ailink_rid_key;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    x ^= x >> 31;

    id->data = ngx_pnalloc(pool, 32);
    if (id->data == NULL) {
        return NGX_ERROR;
    }

    id->len = ngx_sprintf(id->data, "%016xL%016xL", ngx_ailink_rid_prefix, x)
              - id->data;

    return NGX_OK;
}


ngx_ailink_ctx_t *
ngx_ailink_create_ctx(ngx_http_request_t *r)
{
    ngx_ailink_ctx_t    *ctx;
    ngx_pool_cleanup_t  *cln;

    ctx = ngx_ailink_get_ctx(r);
    if (ctx) {
        return ctx;
    }

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_ailink_ctx_t));
    if (cln == NULL) {
        return NULL;
    }

    ctx = cln->data;
    ngx_memzero(ctx, sizeof(ngx_ailink_ctx_t));
    cln->handler = ngx_ailink_ctx_cleanup;
    ctx->ttft = -1;

    if (ngx_ailink_request_id(r->pool, &ctx->request_id) != NGX_OK) {
        return NULL;
    }

    ctx->method = r->method_name;
    ctx->path = r->uri;

    ngx_http_set_ctx(r, ctx, ngx_ailink_auth_module);

    return ctx;
}


ngx_table_elt_t *
ngx_ailink_find_header(ngx_http_request_t *r, const char *name, size_t len)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i];
        }
    }
}


static void
ngx_ailink_ctx_cleanup(void *data)
{
    /* the context lives in the request pool; nothing to free */
}


ngx_int_t
ngx_ailink_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_ailink_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_variable_number(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    ngx_uint_t n)
{
    u_char  *p;

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_sprintf(p, "%ui", n) - p;
    v->data = p;

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    u_char             *p;
    ngx_str_t          *s;
    ngx_ailink_ctx_t   *ctx;
    ngx_ailink_conf_t  *conf;

    ctx = ngx_ailink_get_ctx(r);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    s = NULL;

    switch (data) {

    case NGX_AILINK_VAR_REQUEST_ID:
        s = &ctx->request_id;
        break;

    case NGX_AILINK_VAR_TOKEN_ID:
        s = ctx->token ? &ctx->token->id : NULL;
        break;

    case NGX_AILINK_VAR_TOKEN_NAME:
        s = ctx->token ? &ctx->token->name : NULL;
        break;

    case NGX_AILINK_VAR_PROJECT:
        s = ctx->token ? &ctx->token->project : NULL;
        break;

    case NGX_AILINK_VAR_AGENT_NAME:
        s = &ctx->agent_name;
        break;

    case NGX_AILINK_VAR_SESSION_ID:
        s = &ctx->session_id;
        break;

    case NGX_AILINK_VAR_PROVIDER:
        s = ctx->provider ? &ctx->provider->name : NULL;
        break;

    case NGX_AILINK_VAR_MODEL:
        s = &ctx->model;
        break;

    case NGX_AILINK_VAR_UPSTREAM:
        s = &ctx->upstream;
        break;

    case NGX_AILINK_VAR_UPSTREAM_URL:
        s = &ctx->upstream_url;
        break;

    case NGX_AILINK_VAR_UPSTREAM_HOST:
        s = &ctx->upstream_host;
        break;

    case NGX_AILINK_VAR_PROMPT_TOKENS:
    case NGX_AILINK_VAR_COMPLETION_TOKENS:
    case NGX_AILINK_VAR_TOTAL_TOKENS:

        if (!ctx->usage.known) {
            break;
        }

        return ngx_ailink_variable_number(r, v,
                   data == NGX_AILINK_VAR_PROMPT_TOKENS ? ctx->usage.prompt
                   : data == NGX_AILINK_VAR_COMPLETION_TOKENS
                     ? ctx->usage.completion : ctx->usage.total);

    case NGX_AILINK_VAR_COST_USD:

        if (!ctx->usage.known) {
            break;
        }

        conf = ngx_ailink_get_conf(r);
        if (conf == NULL) {
            break;
        }

        p = ngx_pnalloc(r->pool, 32);
        if (p == NULL) {
            return NGX_ERROR;
        }

        v->len = ngx_snprintf(p, 32, "%.6f",
                              ngx_ailink_cost(conf, &ctx->model, &ctx->usage))
                 - p;
        v->data = p;
        return NGX_OK;
    }

    if (s == NULL || s->len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = s->len;
    v->data = s->data;

    return NGX_OK;
}


ngx_int_t
ngx_ailink_rebuild_headers(ngx_http_request_t *r,
    ngx_ailink_header_keep_pt keep, void *data)
{
    ngx_int_t         rc;
    ngx_uint_t        i;
    ngx_list_t        headers;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *nh, elt;

    /*
     * a list points into itself: copy the old one, init the new in place;
     * the old elements stay where r->headers_in's pointers find them
     */
    headers = r->headers_in.headers;

    if (ngx_list_init(&r->headers_in.headers, r->pool, 20,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    part = &headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        elt = h[i];

        rc = keep(r, &elt, data);

        if (rc == NGX_DECLINED) {
            continue;
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }

        nh = ngx_list_push(&r->headers_in.headers);
        if (nh == NULL) {
            return NGX_ERROR;
        }

        *nh = elt;
    }

    return NGX_OK;
}
