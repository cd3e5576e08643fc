
/*
 * Copyright (C) AILink
 *
 * Routing.  In the precontent phase, after auth accepted a token, a request
 * is sent on its way: a token bound to an upstream base URL forwards the
 * path verbatim (the action gateway); a token bound to the LLM router has
 * its JSON body read and parsed and goes to the provider its model names.
 * Either way the upstream URL and Host are left in $ailink_upstream_url and
 * $ailink_upstream_host for proxy_pass, and the credential is injected.
 */


#include "ngx_ailink_translate.h"
#include "ngx_ailink_guard.h"
#include "ngx_ailink_fallback.h"


static ngx_int_t ngx_ailink_translate_handler(ngx_http_request_t *r);
static void ngx_ailink_translate_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_ailink_translate_service(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx);

ngx_ailink_service_find_pt  ngx_ailink_service_find;

static ngx_int_t ngx_ailink_translate_route(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx);
static ngx_int_t ngx_ailink_translate_upstream(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx);
static ngx_int_t ngx_ailink_reroute_keep_header(ngx_http_request_t *r,
    ngx_table_elt_t *h, void *data);
static ngx_int_t ngx_ailink_translate_direct(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx, ngx_str_t *body);
static ngx_int_t ngx_ailink_translate_tree(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx, ngx_str_t *body);
static ngx_int_t ngx_ailink_translate_target(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx);
static void ngx_ailink_translate_xreq(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx, ngx_ailink_xreq_t *x);
static ngx_int_t ngx_ailink_translate_send(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx, ngx_str_t *text);
static ngx_int_t ngx_ailink_translate_scanned(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx, ngx_str_t *body, ngx_str_t *hint,
    ngx_ailink_provider_t *hint_provider);
static ngx_int_t ngx_cdecl ngx_ailink_translate_fail(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx, ngx_uint_t status, const char *code,
    const char *param, const char *fmt, ...);
static u_char *ngx_ailink_translate_log_error(ngx_http_request_t *r,
    ngx_http_request_t *sr, u_char *buf, size_t len);
static void *ngx_ailink_translate_create_loc_conf(ngx_conf_t *cf);
static char *ngx_ailink_translate_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static ngx_int_t ngx_ailink_translate_postconfiguration(ngx_conf_t *cf);


static char *ngx_ailink_translate_check_size(ngx_conf_t *cf, void *post,
    void *data);

static ngx_conf_post_t  ngx_ailink_translate_size_bounds = {
    ngx_ailink_translate_check_size
};


static ngx_command_t  ngx_ailink_translate_commands[] = {

    { ngx_string("ailink_response_buffer_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ailink_translate_loc_conf_t, response_buffer_size),
      &ngx_ailink_translate_size_bounds },

    { ngx_string("ailink_stream_event_max_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ailink_translate_loc_conf_t, stream_event_max_size),
      &ngx_ailink_translate_size_bounds },

      ngx_null_command
};


static ngx_http_module_t  ngx_ailink_translate_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_ailink_translate_postconfiguration, /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_ailink_translate_create_loc_conf,  /* create location configuration */
    ngx_ailink_translate_merge_loc_conf    /* merge location configuration */
};


ngx_module_t  ngx_ailink_translate_module = {
    NGX_MODULE_V1,
    &ngx_ailink_translate_module_ctx,      /* module context */
    ngx_ailink_translate_commands,         /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* OpenAI endpoints whose JSON body names the model that picks a provider */
static ngx_str_t  ngx_ailink_model_paths[] = {
    ngx_string("/v1/chat/completions"),
    ngx_string("/v1/completions"),
    ngx_string("/v1/embeddings"),
    ngx_null_string
};


/* OpenAI endpoints passed through to OpenAI as they are */
static ngx_str_t  ngx_ailink_openai_paths[] = {
    ngx_string("/v1/models"),
    ngx_string("/v1/files"),
    ngx_string("/v1/batches"),
    ngx_string("/v1/fine_tuning"),
    ngx_string("/v1/uploads"),
    ngx_string("/v1/audio"),
    ngx_string("/v1/images"),
    ngx_string("/v1/moderations"),
    ngx_string("/v1/responses"),
    ngx_string("/v1/vector_stores"),
    ngx_string("/v1/assistants"),
    ngx_string("/v1/threads"),
    ngx_null_string
};


static ngx_uint_t
ngx_ailink_path_in(ngx_str_t *uri, ngx_str_t *paths, ngx_uint_t exact)
{
    ngx_str_t  *p;

    for (p = paths; p->len; p++) {
        if (uri->len < p->len
            || ngx_strncmp(uri->data, p->data, p->len) != 0)
        {
            continue;
        }

        if (uri->len == p->len || (!exact && uri->data[p->len] == '/')) {
            return 1;
        }
    }

    return 0;
}


static ngx_int_t
ngx_ailink_translate_handler(ngx_http_request_t *r)
{
    ngx_int_t          rc;
    ngx_ailink_ctx_t  *ctx;

    if (r != r->main || !ngx_ailink_auth_enabled(r)) {
        /* not a gateway location, such as the error page's */
        return NGX_DECLINED;
    }

    ctx = ngx_ailink_get_ctx(r);

    if (ctx == NULL || ctx->token == NULL || ctx->routed) {
        return NGX_DECLINED;
    }

    if (ctx->body_read) {
        rc = ctx->body_rc;

    } else if (r->uri.len > sizeof(NGX_AILINK_SERVICES_PREFIX) - 1
               && ngx_strncmp(r->uri.data, NGX_AILINK_SERVICES_PREFIX,
                              sizeof(NGX_AILINK_SERVICES_PREFIX) - 1) == 0)
    {
        ctx->route = NGX_AILINK_ROUTE_ACTION;
        rc = ngx_ailink_translate_service(r, ctx);

        if (rc == NGX_OK) {
            rc = ngx_ailink_translate_route(r, ctx);
        }

    } else if (!ctx->token->llm) {
        ctx->route = NGX_AILINK_ROUTE_ACTION;
        rc = ngx_ailink_translate_route(r, ctx);

    } else if (ngx_ailink_realtime_request(r)) {
        /* GET /v1/realtime: a WebSocket, routed by its "model" argument */
        ctx->route = NGX_AILINK_ROUTE_REALTIME;
        rc = ngx_ailink_realtime_route(r, ctx);

        if (rc == NGX_OK) {
            rc = ngx_ailink_translate_route(r, ctx);
        }

    } else if (r->method == NGX_HTTP_POST
               && ngx_ailink_path_in(&r->uri, ngx_ailink_model_paths, 1))
    {
        ctx->route = NGX_AILINK_ROUTE_LLM;
        r->request_body_in_single_buf = 1;

        rc = ngx_http_read_client_request_body(r,
                                            ngx_ailink_translate_body_handler);

        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            return rc;
        }

        ngx_http_finalize_request(r, NGX_DONE);
        return NGX_DONE;

    } else if (ngx_ailink_path_in(&r->uri, ngx_ailink_openai_paths, 0)) {
        ctx->route = NGX_AILINK_ROUTE_LLM_PASS;
        rc = ngx_ailink_translate_route(r, ctx);

    } else {
        rc = ngx_ailink_translate_fail(r, ctx, NGX_HTTP_NOT_FOUND,
                                       "not_found", NULL,
                                       "unknown route for an LLM token");
    }

    if (rc == NGX_OK) {
        ctx->routed = 1;

        if (ctx->route == NGX_AILINK_ROUTE_LLM
            && ngx_ailink_get_conf(r)->fallbacks
            && ngx_ailink_fallback_init(r, ctx) != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return NGX_DECLINED;
    }

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_ailink_finalize_error(r, rc, ctx->error_code, ctx->error_message,
                              ctx->error_param);
    return NGX_DONE;
}


/*
 * Runs once the body is in, possibly from within
 * ngx_http_read_client_request_body() itself; either way the phases are
 * run again and the handler above picks up the outcome, as the mirror
 * module does.
 */

static void
ngx_ailink_translate_body_handler(ngx_http_request_t *r)
{
    ngx_ailink_ctx_t  *ctx;

    ctx = ngx_ailink_get_ctx(r);

    ctx->body_read = 1;
    ctx->body_rc = ngx_ailink_translate_route(r, ctx);

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


/* records a refusal for the phase handler to send; returns its status */

static ngx_int_t ngx_cdecl
ngx_ailink_translate_fail(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_uint_t status, const char *code, const char *param,
    const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    p = ngx_pnalloc(r->pool, NGX_MAX_ERROR_STR);
    if (p == NULL) {
        return NGX_ERROR;
    }

    va_start(args, fmt);
    *ngx_vslprintf(p, p + NGX_MAX_ERROR_STR - 1, fmt, args) = '\0';
    va_end(args);

    ctx->error_code = code;
    ctx->error_param = param;
    ctx->error_message = (char *) p;

    return status;
}


/* the request body as one piece of memory, reading a temp file if need be */

static ngx_int_t
ngx_ailink_request_body(ngx_http_request_t *r, ngx_str_t *body)
{
    u_char       *p;
    size_t        len;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    ngx_str_null(body);

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    cl = r->request_body->bufs;

    if (cl->next == NULL && !cl->buf->in_file) {
        body->data = cl->buf->pos;
        body->len = cl->buf->last - cl->buf->pos;
        return NGX_OK;
    }

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        len += ngx_buf_size(cl->buf);
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_size(b) == 0) {
            /* a chunked body ends in a buffer with no memory at all */
            continue;
        }

        if (b->in_file) {
            n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                              b->file_pos);
            if (n != b->file_last - b->file_pos) {
                return NGX_ERROR;
            }

            p += n;

        } else {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
        }
    }

    body->len = p - body->data;

    return NGX_OK;
}


/* replaces the body the proxy module will send (also the guardrails') */

ngx_int_t
ngx_ailink_set_request_body_text(ngx_http_request_t *r, ngx_str_t *text)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    b = ngx_calloc_buf(r->pool);
    cl = ngx_alloc_chain_link(r->pool);

    if (b == NULL || cl == NULL) {
        return NGX_ERROR;
    }

    b->pos = text->data;
    b->last = text->data + text->len;
    b->memory = 1;
    b->last_buf = 1;

    cl->buf = b;
    cl->next = NULL;

    r->request_body->bufs = cl;
    r->request_body->temp_file = NULL;

    /* the proxy module sends Content-Length from this, never chunked */
    r->headers_in.content_length_n = text->len;
    r->headers_in.chunked = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_set_request_body(ngx_http_request_t *r, cJSON *json)
{
    ngx_str_t  text;

    if (ngx_ailink_json_to_str(r->pool, json, &text) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_ailink_set_request_body_text(r, &text);
}


/* sets a request header for the upstream, replacing the client's */

static ngx_int_t
ngx_ailink_set_request_header(ngx_http_request_t *r, ngx_str_t *name,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_ailink_find_header(r, (char *) name->data, name->len);

    if (h == NULL) {
        h = ngx_list_push(&r->headers_in.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        h->hash = 1;
        h->key = *name;

        h->lowcase_key = ngx_pnalloc(r->pool, name->len);
        if (h->lowcase_key == NULL) {
            return NGX_ERROR;
        }

        ngx_strlow(h->lowcase_key, name->data, name->len);
    }

    h->value = *value;

    return NGX_OK;
}


/*
 * OpenAI streams report usage only when asked; the gateway needs it for
 * every call, so it asks, and the response filter removes the usage chunk
 * the client did not ask for.  The body passes through otherwise as the
 * client wrote it: without "stream_options" the member is spliced in after
 * the opening brace; only a client's own "stream_options" is rewritten
 * through a parse.
 */

static ngx_int_t
ngx_ailink_openai_stream_usage(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_str_t *body, ngx_str_t *options)
{
    u_char     *brace;
    cJSON      *json, *opts;
    ngx_int_t   rc;
    ngx_buf_t   b;
    ngx_str_t   member = ngx_string("\"stream_options\":"
                                    "{\"include_usage\":true},");

    opts = NULL;

    if (options->len) {
        opts = ngx_ailink_json_parse(options);
        ctx->include_usage = cJSON_IsTrue(
                     ngx_ailink_json_get(opts, "include_usage"));
    }

    if (!ctx->stream || ctx->include_usage) {
        ngx_ailink_json_delete(opts);
        return NGX_OK;
    }

    ctx->strip_usage = 1;

    if (options->len == 0) {
        brace = ngx_strlchr(body->data, body->data + body->len, '{');

        ngx_memzero(&b, sizeof(ngx_buf_t));
        b.start = ngx_pnalloc(r->pool, body->len + member.len);
        if (b.start == NULL) {
            return NGX_ERROR;
        }

        b.last = ngx_cpymem(b.start, body->data, brace + 1 - body->data);
        b.last = ngx_cpymem(b.last, member.data, member.len);
        b.last = ngx_cpymem(b.last, brace + 1,
                            body->data + body->len - (brace + 1));

        body->data = b.start;
        body->len = b.last - b.start;

        return ngx_ailink_set_request_body_text(r, body);
    }

    ngx_ailink_json_delete(opts);

    json = ngx_ailink_json_parse(body);
    opts = ngx_ailink_json_get(json, "stream_options");

    if (!cJSON_IsObject(opts)) {
        cJSON_DeleteItemFromObjectCaseSensitive(json, "stream_options");
        opts = cJSON_AddObjectToObject(json, "stream_options");
    }

    cJSON_DeleteItemFromObjectCaseSensitive(opts, "include_usage");

    rc = (cJSON_AddTrueToObject(opts, "include_usage") != NULL)
         ? ngx_ailink_set_request_body(r, json) : NGX_ERROR;

    ngx_ailink_json_delete(json);

    return rc;
}


/* the provider body, path and headers of a translated chat completion */

static ngx_int_t
ngx_ailink_translate_request(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    cJSON *json)
{
    cJSON              *out, *opts;
    ngx_int_t           rc;
    ngx_str_t           text;
    ngx_ailink_xreq_t   x;

    rc = ngx_ailink_translate_target(r, ctx);
    if (rc != NGX_OK) {
        return rc;
    }

    opts = ngx_ailink_json_get(json, "stream_options");
    ctx->include_usage = cJSON_IsTrue(
                     ngx_ailink_json_get(opts, "include_usage"));

    ngx_ailink_translate_xreq(r, ctx, &x);

    out = (ctx->provider->type == NGX_AILINK_PROVIDER_ANTHROPIC)
          ? ngx_ailink_anthropic_request(&x, json)
          : ngx_ailink_gemini_request(&x, json);

    if (out == NULL) {
        if (x.error == NULL) {
            return NGX_ERROR;
        }

        return ngx_ailink_translate_fail(r, ctx, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request", x.error_param,
                                         "%s", x.error);
    }

    rc = ngx_ailink_json_to_str(r->pool, out, &text);

    ngx_ailink_json_delete(out);

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_ailink_translate_send(r, ctx, &text);
}


/*
 * The usual chat request (a model, messages of text, a few numbers) is
 * translated in one pass over the body, without a tree
 * (ngx_ailink_direct.c); NGX_DECLINED for any other.
 */

static ngx_int_t
ngx_ailink_translate_direct(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_str_t *body)
{
    ngx_int_t             rc;
    ngx_str_t             text;
    ngx_ailink_xreq_t     x;
    ngx_ailink_direct_t   d;

    rc = ngx_ailink_direct_read(&d, r->pool, body);
    if (rc != NGX_OK) {
        return rc;
    }

    ctx->provider = ngx_ailink_route_model(ngx_ailink_get_conf(r), &d.model);

    if (ctx->provider == NULL
        || ctx->provider->type == NGX_AILINK_PROVIDER_OPENAI)
    {
        ctx->provider = NULL;
        return NGX_DECLINED;
    }

    /* the name lies in the client's body, which lives as long */
    ctx->model = d.model;
    ctx->stream = d.stream;

    rc = ngx_ailink_translate_target(r, ctx);
    if (rc != NGX_OK) {
        return rc;
    }

    ngx_ailink_translate_xreq(r, ctx, &x);

    rc = ngx_ailink_direct_write(&d, &x, &text);

    if (rc != NGX_OK) {
        /* the tree translator says why not */
        ngx_str_null(&ctx->model);
        ctx->provider = NULL;
        ctx->stream = 0;
        return rc;
    }

    ctx->include_usage = d.include_usage;

    return ngx_ailink_translate_send(r, ctx, &text);
}


/*
 * What a translation of the routed request goes to: a chat completion's
 * URI is required, and the provider's path is set (Gemini's names the
 * model, whose characters are checked for that).
 */

static ngx_int_t
ngx_ailink_translate_target(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx)
{
    u_char                 *p, c;
    ngx_uint_t              i;
    ngx_ailink_provider_t  *prov;

    prov = ctx->provider;

    if (r->uri.len != sizeof("/v1/chat/completions") - 1) {
        return ngx_ailink_translate_fail(r, ctx, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request", "model",
                                         "model \"%V\" is served by %V, "
                                         "which only chat completions reach",
                                         &ctx->model, &prov->name);
    }

    if (prov->type == NGX_AILINK_PROVIDER_ANTHROPIC) {
        ngx_str_set(&ctx->upstream_path, "/messages");
        return NGX_OK;
    }

    for (i = 0; i < ctx->model.len; i++) {
        c = ctx->model.data[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '-' || c == '.'
              || c == '_'))
        {
            return ngx_ailink_translate_fail(r, ctx, NGX_HTTP_BAD_REQUEST,
                                             "invalid_request", "model",
                                             "invalid model name \"%V\"",
                                             &ctx->model);
        }
    }

    p = ngx_pnalloc(r->pool, sizeof("/models/:streamGenerateContent?alt=sse")
                             + ctx->model.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->upstream_path.data = p;

    p = ngx_cpymem(p, "/models/", sizeof("/models/") - 1);
    p = ngx_cpymem(p, ctx->model.data, ctx->model.len);
    p = ctx->stream ? ngx_cpymem(p, ":streamGenerateContent?alt=sse",
                                 sizeof(":streamGenerateContent?alt=sse") - 1)
                    : ngx_cpymem(p, ":generateContent",
                                 sizeof(":generateContent") - 1);

    ctx->upstream_path.len = p - ctx->upstream_path.data;

    return NGX_OK;
}


static void
ngx_ailink_translate_xreq(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_ailink_xreq_t *x)
{
    ngx_memzero(x, sizeof(ngx_ailink_xreq_t));
    x->pool = r->pool;
    x->log = r->connection->log;
    x->provider = ctx->provider;
    x->model = ctx->model;
    x->stream = ctx->stream;
}


/* the provider's body and headers, for the proxy module */

static ngx_int_t
ngx_ailink_translate_send(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_str_t *text)
{
    ngx_str_t  name, value;

    if (ngx_ailink_set_request_body_text(r, text) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_str_set(&name, "Content-Type");
    ngx_str_set(&value, "application/json");

    if (ngx_ailink_set_request_header(r, &name, &value) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ctx->provider->type == NGX_AILINK_PROVIDER_ANTHROPIC) {
        ngx_str_set(&name, "anthropic-version");
        return ngx_ailink_set_request_header(r, &name,
                                             &ctx->provider->version);
    }

    return NGX_OK;
}


/*
 * Reads the model from an LLM request body and picks the provider.
 *
 * A body to translate is checked by the parse that reads it; a body that
 * passes through, by the scan.  The model, found first without checking
 * anything, tells which is due, so that no body is read twice; it is only
 * a hint: each path routes on what it read itself.
 */

static ngx_int_t
ngx_ailink_translate_llm(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx)
{
    ngx_int_t               rc;
    ngx_str_t               body, value, model;
    ngx_ailink_provider_t  *prov;
    static ngx_str_t        key = ngx_string("model");

    if (ngx_ailink_request_body(r, &body) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the model, for the policies that say which guardrails it needs */
    if (ngx_ailink_json_find(&body, &key, &value) == NGX_OK
        && ngx_ailink_json_plain_string(&value, &model) == NGX_OK)
    {
        ctx->model = model;
        ctx->provider = ngx_ailink_route_model(ngx_ailink_get_conf(r),
                                               &model);
    }

    /* guardrails: redacted before any provider's body is made of it */
    rc = ngx_ailink_guard_request(r, ctx, &body);

    ngx_str_null(&ctx->model);
    ctx->provider = NULL;

    if (rc != NGX_OK) {
        return rc;
    }

    /* for policies that look into it: what the provider will be sent */
    ctx->body = body;

    prov = NULL;

    if (ngx_ailink_json_find(&body, &key, &value) == NGX_OK
        && ngx_ailink_json_plain_string(&value, &model) == NGX_OK)
    {
        prov = ngx_ailink_route_model(ngx_ailink_get_conf(r), &model);

        if (prov && prov->type != NGX_AILINK_PROVIDER_OPENAI) {
            rc = ngx_ailink_translate_direct(r, ctx, &body);

            if (rc == NGX_DECLINED) {
                rc = ngx_ailink_translate_tree(r, ctx, &body);
            }

            if (rc != NGX_DECLINED) {
                return rc;
            }

            prov = NULL;
        }
    }

    return ngx_ailink_translate_scanned(r, ctx, &body, prov ? &model : NULL,
                                        prov);
}


/* parsed, routed and translated; NGX_DECLINED if not to be translated */

static ngx_int_t
ngx_ailink_translate_tree(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_str_t *body)
{
    cJSON      *json, *model;
    ngx_int_t   rc;

    /* every tree of the translation is built and dropped here */
    ngx_ailink_json_arena(r->pool);

    json = ngx_ailink_json_parse(body);
    model = ngx_ailink_json_get(json, "model");

    rc = NGX_DECLINED;

    if (cJSON_IsObject(json) && cJSON_IsString(model)
        && !ngx_ailink_json_empty(model))
    {
        /* the arena is the request pool: the name lives as long */
        ngx_ailink_json_str(model, &ctx->model);
        ctx->provider = ngx_ailink_route_model(ngx_ailink_get_conf(r),
                                               &ctx->model);

        if (ctx->provider
            && ctx->provider->type != NGX_AILINK_PROVIDER_OPENAI)
        {
            ctx->stream = cJSON_IsTrue(ngx_ailink_json_get(json, "stream"));
            rc = ngx_ailink_translate_request(r, ctx, json);
        }
    }

    ngx_ailink_json_delete(json);
    ngx_ailink_json_arena(NULL);

    if (rc == NGX_DECLINED) {
        ngx_str_null(&ctx->model);
        ctx->provider = NULL;
        ctx->stream = 0;
    }

    return rc;
}


/*
 * scanned, routed (the hint's route stands when the scan read the same
 * model); passed through, or parsed and translated
 */

static ngx_int_t
ngx_ailink_translate_scanned(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_str_t *body, ngx_str_t *hint, ngx_ailink_provider_t *hint_provider)
{
    cJSON                    *json;
    ngx_int_t                 rc;
    ngx_ailink_conf_t        *conf;
    ngx_ailink_json_field_t   fields[] = {
        { ngx_string("model"), ngx_null_string },
        { ngx_string("stream"), ngx_null_string },
        { ngx_string("stream_options"), ngx_null_string }
    };

    if (ngx_ailink_json_scan(body, fields, 3) != NGX_OK) {
        return ngx_ailink_translate_fail(r, ctx, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request", NULL,
                                         "the request body is not a JSON "
                                         "object");
    }

    if (ngx_ailink_json_plain_string(&fields[0].value, &ctx->model)
        != NGX_OK)
    {
        /* a model name with escapes is rare enough to parse */
        json = fields[0].value.len ? ngx_ailink_json_parse(&fields[0].value)
                                   : NULL;

        if (cJSON_IsString(json)) {
            ngx_ailink_json_str(json, &ctx->model);
            ctx->model.data = ngx_pstrdup(r->pool, &ctx->model);
        }

        ngx_ailink_json_delete(json);
    }

    if (ctx->model.len == 0) {
        return ngx_ailink_translate_fail(r, ctx, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request", "model",
                                         "\"model\" is required and must "
                                         "be a string");
    }

    if (ctx->model.data == NULL) {
        return NGX_ERROR;
    }

    ctx->stream = (fields[1].value.len == 4
                   && ngx_strncmp(fields[1].value.data, "true", 4) == 0);

    if (hint && hint->len == ctx->model.len
        && ngx_memcmp(hint->data, ctx->model.data, hint->len) == 0)
    {
        ctx->provider = hint_provider;

    } else {
        conf = ngx_ailink_get_conf(r);
        ctx->provider = ngx_ailink_route_model(conf, &ctx->model);
    }

    if (ctx->provider == NULL) {
        return ngx_ailink_translate_fail(r, ctx, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request", "model",
                                         "no provider route for model "
                                         "\"%V\"", &ctx->model);
    }

    if (ctx->provider->type == NGX_AILINK_PROVIDER_OPENAI) {
        return ngx_ailink_openai_stream_usage(r, ctx, body, &fields[2].value);
    }

    ngx_ailink_json_arena(r->pool);

    json = ngx_ailink_json_parse(body);

    if (json) {
        rc = ngx_ailink_translate_request(r, ctx, json);

    } else {
        /* scanned, yet not readable: a lone surrogate, a key with NUL */
        rc = ngx_ailink_translate_fail(r, ctx, NGX_HTTP_BAD_REQUEST,
                                       "invalid_request", NULL,
                                       "the request body is not JSON the "
                                       "gateway can translate");
    }

    ngx_ailink_json_delete(json);
    ngx_ailink_json_arena(NULL);

    return rc;
}


/*
 * What an OpenAI passthrough path forwards after the provider's "/v1": the
 * URI nginx parsed and the route was chosen on (merged slashes, dot
 * segments resolved), escaped again, and the query.  The raw request line
 * could say "//v1/models" and still match "/v1/models".
 */

static ngx_int_t
ngx_ailink_passthrough_path(ngx_http_request_t *r, ngx_str_t *rest)
{
    u_char     *p;
    size_t      len;
    uintptr_t   escape;
    ngx_str_t   uri;

    uri.data = r->uri.data + sizeof("/v1") - 1;
    uri.len = r->uri.len - (sizeof("/v1") - 1);

    escape = 2 * ngx_escape_uri(NULL, uri.data, uri.len, NGX_ESCAPE_URI);
    len = uri.len + escape + 1 + r->args.len;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    rest->data = p;

    p = escape ? (u_char *) ngx_escape_uri(p, uri.data, uri.len,
                                           NGX_ESCAPE_URI)
               : ngx_cpymem(p, uri.data, uri.len);

    if (r->args.len) {
        *p++ = '?';
        p = ngx_cpymem(p, r->args.data, r->args.len);
    }

    rest->len = p - rest->data;

    return NGX_OK;
}


/*
 * The action gateway forwards the path (here without its query) as the
 * client wrote it, so that the encodings an API signs or expects survive.
 * An upstream that decodes or normalises more than nginx does must still
 * not be led outside the token's base URL: a path with a backslash or a
 * '#', or a segment that decodes, once or several times over, to ".",
 * "..", or something holding a slash or backslash, is refused.  A
 * segment's ";parameters" are ignored for the dot test, as servlet
 * containers do.
 */

#define NGX_AILINK_PATH_DECODE_ROUNDS  4

static ngx_uint_t
ngx_ailink_action_path_safe(ngx_http_request_t *r, ngx_str_t *path)
{
    u_char      *p, *last, *seg, *buf, *dst, *src, *semi;
    size_t       len;
    ngx_uint_t   round;

    last = path->data + path->len;
    buf = NULL;

    for (seg = path->data; seg < last; seg = p + 1) {
        p = ngx_strlchr(seg, last, '/');
        if (p == NULL) {
            p = last;
        }

        if (p == seg) {
            continue;
        }

        if (buf == NULL) {
            buf = ngx_pnalloc(r->pool, path->len);
            if (buf == NULL) {
                return 0;
            }
        }

        len = p - seg;
        ngx_memcpy(buf, seg, len);

        for (round = 0; /* void */; round++) {

            if (ngx_strlchr(buf, buf + len, '\\')
                || ngx_strlchr(buf, buf + len, '#')
                || (round && ngx_strlchr(buf, buf + len, '/')))
            {
                return 0;
            }

            semi = ngx_strlchr(buf, buf + len, ';');
            semi = semi ? semi : buf + len;

            if ((semi - buf == 1 && buf[0] == '.')
                || (semi - buf == 2 && buf[0] == '.' && buf[1] == '.'))
            {
                return 0;
            }

            if (ngx_strlchr(buf, buf + len, '%') == NULL) {
                break;
            }

            if (round == NGX_AILINK_PATH_DECODE_ROUNDS) {
                /* still encoded after this many decodings: not a path */
                return 0;
            }

            dst = buf;
            src = buf;
            ngx_unescape_uri(&dst, &src, len, 0);

            if ((size_t) (dst - buf) == len) {
                /* nothing decoded: a '%' of no escape */
                break;
            }

            len = dst - buf;
        }
    }

    return 1;
}


/*
 * "/v1/proxy/services/<name>/<rest>": any token may call a registered
 * service; the request is forwarded below the service's base URL with the
 * service's credential, confined as the action gateway's are.
 */

static ngx_int_t
ngx_ailink_translate_service(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx)
{
    u_char     *p, *last;
    ngx_str_t   name;

    /* the name as the client wrote it: a plain segment, nothing encoded */
    p = r->unparsed_uri.data;
    last = p + r->unparsed_uri.len;

    if (r->unparsed_uri.len <= sizeof(NGX_AILINK_SERVICES_PREFIX) - 1
        || ngx_strncmp(p, NGX_AILINK_SERVICES_PREFIX,
                       sizeof(NGX_AILINK_SERVICES_PREFIX) - 1) != 0)
    {
        goto invalid;
    }

    name.data = p + sizeof(NGX_AILINK_SERVICES_PREFIX) - 1;

    for (p = name.data; p < last && *p != '/' && *p != '?'; p++) {
        if (*p == '%' || *p == '\\' || *p == ';') {
            goto invalid;
        }
    }

    name.len = p - name.data;

    if (name.len == 0 || (name.len <= 2 && name.data[0] == '.')) {
        goto invalid;
    }

    if (ngx_ailink_service_find == NULL
        || ngx_ailink_service_find(r, &name, &ctx->service_base,
                                   &ctx->service_credential)
           != NGX_OK)
    {
        return ngx_ailink_translate_fail(r, ctx, NGX_HTTP_NOT_FOUND,
                                         "not_found", NULL,
                                         "no service \"%V\" is registered",
                                         &name);
    }

    return NGX_OK;

invalid:

    return ngx_ailink_translate_fail(r, ctx, NGX_HTTP_BAD_REQUEST,
                                     "invalid_request", NULL,
                                     "the service name must be written "
                                     "plainly: /v1/proxy/services/<name>/...");
}


/*
 * A fallback: the request goes to another model and provider.  The body is
 * made again from the client's own (as the guardrails left it), never from
 * the previous translation; the previous provider's credential and
 * version headers go, the new provider's are set.  NGX_OK, NGX_ERROR, or
 * the status of a refusal (ctx->error_message): that target cannot take
 * this request.
 */

ngx_int_t
ngx_ailink_translate_reroute(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_str_t *body, ngx_str_t *model, ngx_ailink_provider_t *provider)
{
    cJSON                  *json, *name;
    ngx_int_t               rc;
    ngx_str_t               text;
    ngx_ailink_provider_t  *prev;

    prev = ctx->provider;

    ngx_str_null(&ctx->upstream_path);
    ngx_str_null(&ctx->model);
    ctx->provider = NULL;
    ctx->stream = 0;
    ctx->include_usage = 0;
    ctx->strip_usage = 0;

    if (provider == NULL) {
        return ngx_ailink_translate_fail(r, ctx, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request", "model",
                                         "no provider route for model "
                                         "\"%V\"", model);
    }

    if (ngx_ailink_rebuild_headers(r, ngx_ailink_reroute_keep_header, prev)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_ailink_json_arena(r->pool);

    json = ngx_ailink_json_parse(body);
    name = ngx_ailink_json_string(model);

    rc = NGX_ERROR;

    if (cJSON_IsObject(json) && name) {
        if (ngx_ailink_json_get(json, "model")) {
            rc = cJSON_ReplaceItemInObjectCaseSensitive(json, "model", name)
                 ? NGX_OK : NGX_ERROR;

        } else {
            rc = cJSON_AddItemToObject(json, "model", name)
                 ? NGX_OK : NGX_ERROR;
        }

        if (rc == NGX_OK) {
            rc = ngx_ailink_json_to_str(r->pool, json, &text);
        }
    }

    ngx_ailink_json_delete(json);
    ngx_ailink_json_arena(NULL);

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_ailink_set_request_body_text(r, &text) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_ailink_translate_scanned(r, ctx, &text, model, provider);

    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_ailink_translate_upstream(r, ctx);
}


/* the headers a previous provider was sent that the next must not get */

static ngx_int_t
ngx_ailink_reroute_keep_header(ngx_http_request_t *r, ngx_table_elt_t *h,
    void *data)
{
    ngx_ailink_provider_t  *prev = data;

    if ((h->key.len == sizeof("anthropic-version") - 1
         && ngx_strncasecmp(h->key.data, (u_char *) "anthropic-version",
                            h->key.len) == 0)
        || (prev && prev->inject.scheme == NGX_AILINK_SCHEME_HEADER
            && h->key.len == prev->inject.name.len
            && ngx_strncasecmp(h->key.data, prev->inject.name.data,
                               h->key.len) == 0))
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_translate_route(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx)
{
    ngx_int_t  rc;

    if (ctx->route != NGX_AILINK_ROUTE_LLM) {
        /* asked to be guarded where no guardrail reads the body */
        rc = ngx_ailink_guard_unguarded_route(r, ctx);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    if (ctx->route == NGX_AILINK_ROUTE_LLM) {
        rc = ngx_ailink_translate_llm(r, ctx);
        if (rc != NGX_OK) {
            return rc;
        }

    } else if (ctx->route == NGX_AILINK_ROUTE_LLM_PASS) {
        ctx->provider = ngx_ailink_provider_find(ngx_ailink_get_conf(r),
                                                 &(ngx_str_t)
                                                 ngx_string("openai"));
    }

    return ngx_ailink_translate_upstream(r, ctx);
}


/* the upstream URL and Host of the route chosen, the credential injected */

static ngx_int_t
ngx_ailink_translate_upstream(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx)
{
    u_char                   *p, c;
    size_t                    len;
    uintptr_t                 escape;
    ngx_str_t                 rest, secret, value, query;
    ngx_int_t                 rc;
    ngx_uint_t                llm;
    ngx_ailink_inject_t      *inject;
    ngx_ailink_base_url_t    *base;
    ngx_ailink_credential_t  *cred;

    llm = (ctx->route != NGX_AILINK_ROUTE_ACTION);

    if (llm) {
        /* provider base URLs carry the API version: ".../v1" */
        base = &ctx->provider->base;

        if (ctx->upstream_path.len) {
            rest = ctx->upstream_path;

        } else if (ngx_ailink_passthrough_path(r, &rest) != NGX_OK) {
            return NGX_ERROR;
        }

        query = ctx->provider->query;

        cred = ngx_ailink_token_credential(ctx->token, ctx->provider);
        inject = &ctx->provider->inject;

    } else {
        base = &ctx->token->upstream;
        rest = r->unparsed_uri;

        /* the audit records the path as it is forwarded (a service's
           with its /v1/proxy/services/<name> prefix) */
        p = ngx_strlchr(rest.data, rest.data + rest.len, '?');
        ctx->path.data = rest.data;
        ctx->path.len = (p ? p : rest.data + rest.len) - rest.data;

        if (!ngx_ailink_action_path_safe(r, &ctx->path)) {
            return ngx_ailink_translate_fail(r, ctx, NGX_HTTP_BAD_REQUEST,
                                             "invalid_request", NULL,
                                             "the path may not hold "
                                             "backslashes, encoded slashes "
                                             "or dot segments");
        }

        if (ctx->service_base) {
            /* "/v1/proxy/services/<name>" off, the rest below the base */
            base = ctx->service_base;
            len = sizeof(NGX_AILINK_SERVICES_PREFIX) - 1;
            p = ngx_strlchr(rest.data + len, rest.data + rest.len, '/');

            if (p == NULL) {
                /* ".../<name>" or ".../<name>?q": the base URL itself */
                p = ngx_strlchr(rest.data + len, rest.data + rest.len, '?');
                p = p ? p : rest.data + rest.len;
            }

            rest.len -= p - rest.data;
            rest.data = p;
        }

        cred = ctx->service_base ? ctx->service_credential
                                 : ctx->token->credential;
        inject = cred ? &cred->inject : &ctx->token->byok;
        ngx_str_null(&query);
    }

    if (cred) {
        secret = cred->secret;

    } else {
        rc = ngx_ailink_byok_key(r, &secret);

        if (rc == NGX_ABORT) {
            /* never the key itself, at any level */
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "ailink: X-AILink-Upstream-Key refused: it holds "
                          "a control character");

            return ngx_ailink_translate_fail(r, ctx, NGX_HTTP_BAD_REQUEST,
                                             "invalid_request", NULL,
                                             "X-AILink-Upstream-Key holds a "
                                             "control character");
        }

        if (rc != NGX_OK
            && llm && inject->scheme != NGX_AILINK_SCHEME_NONE
            && base->scheme.len == sizeof("https://") - 1)
        {
            /*
             * A hosted provider (reached over https) is not sent a request
             * without a key: the client is told which provider lacks one.
             */
            return ngx_ailink_translate_fail(r, ctx, NGX_HTTP_UNAUTHORIZED,
                                             "missing_credential", NULL,
                                             "no credential for provider "
                                             "\"%V\": the token has none "
                                             "for it and the request has no "
                                             "X-AILink-Upstream-Key",
                                             &ctx->provider->name);
        }

        if (rc != NGX_OK) {
            /* keyless upstreams (a local model server) need none */
            ngx_str_null(&secret);
        }
    }

    escape = 0;
    len = base->scheme.len + base->target.len + base->path.len + rest.len
          + 1 + query.len;

    if (secret.len && inject->scheme == NGX_AILINK_SCHEME_QUERY) {
        escape = 2 * ngx_escape_uri(NULL, secret.data, secret.len,
                                    NGX_ESCAPE_ARGS);
        len += 2 + inject->name.len + secret.len + escape;
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->upstream_url.data = p;

    p = ngx_cpymem(p, base->scheme.data, base->scheme.len);
    p = ngx_cpymem(p, base->target.data, base->target.len);
    p = ngx_cpymem(p, base->path.data, base->path.len);
    p = ngx_cpymem(p, rest.data, rest.len);

    if (query.len) {
        /* e.g. Azure OpenAI's "api-version=..." */
        *p++ = ngx_strlchr(rest.data, rest.data + rest.len, '?') ? '&' : '?';
        p = ngx_cpymem(p, query.data, query.len);
    }

    if (secret.len && inject->scheme == NGX_AILINK_SCHEME_QUERY) {
        c = ngx_strlchr(ctx->upstream_url.data, p, '?') ? '&' : '?';
        *p++ = c;
        p = ngx_cpymem(p, inject->name.data, inject->name.len);
        *p++ = '=';

        /* what error log lines would show is what gets masked */
        value = secret;
        secret.data = p;
        p = (u_char *) ngx_escape_uri(p, value.data, value.len,
                                      NGX_ESCAPE_ARGS);
        secret.len = p - secret.data;
    }

    ctx->upstream_url.len = p - ctx->upstream_url.data;
    ctx->upstream_host = base->host;
    ctx->upstream = base->url;

    if (ngx_ailink_inject_credential(r, ctx, inject, &secret, llm) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ctx->secret.len && ctx->log_handler == NULL) {
        ctx->log_handler = r->log_handler;
        r->log_handler = ngx_ailink_translate_log_error;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ailink route: token \"%V\" to \"%V\" model \"%V\"",
                   &ctx->token->id, &ctx->upstream, &ctx->model);

    return NGX_OK;
}


/* masks the injected secret in any error log line about this request */

static u_char *
ngx_ailink_translate_log_error(ngx_http_request_t *r, ngx_http_request_t *sr,
    u_char *buf, size_t len)
{
    u_char            *p, *last, *s;
    ngx_ailink_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_ailink_auth_module);

    if (ctx == NULL) {
        ctx = ngx_ailink_get_ctx(r);
    }

    last = ctx->log_handler(r, sr, buf, len);

    for (p = buf; p < last; p = s + ctx->secret.len) {
        s = memmem(p, last - p, ctx->secret.data, ctx->secret.len);
        if (s == NULL) {
            break;
        }

        ngx_memset(s, '*', ctx->secret.len);
    }

    return last;
}


static void *
ngx_ailink_translate_create_loc_conf(ngx_conf_t *cf)
{
    ngx_ailink_translate_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_ailink_translate_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->response_buffer_size = NGX_CONF_UNSET_SIZE;
    conf->stream_event_max_size = NGX_CONF_UNSET_SIZE;

    return conf;
}


static char *
ngx_ailink_translate_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_ailink_translate_loc_conf_t *prev = parent;
    ngx_ailink_translate_loc_conf_t *conf = child;

    ngx_conf_merge_size_value(conf->response_buffer_size,
                              prev->response_buffer_size, 1024 * 1024);
    ngx_conf_merge_size_value(conf->stream_event_max_size,
                              prev->stream_event_max_size, 1024 * 1024);

    return NGX_CONF_OK;
}


static char *
ngx_ailink_translate_check_size(ngx_conf_t *cf, void *post, void *data)
{
    size_t  *sp = data;

    if (*sp < 1024 || *sp > 64 * 1024 * 1024) {
        return "must be between 1k and 64m";
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_ailink_translate_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_ailink_translate_handler;

    return ngx_ailink_response_filter_init(cf);
}
