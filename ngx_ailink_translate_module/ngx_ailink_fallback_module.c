
/*
 * Copyright (C) AILink
 *
 * Provider fallbacks.  A model with "fallbacks" in the config file gets
 * them tried in order when its upstream fails before anything was sent to
 * the client: a connection error or a timeout (nginx's own 502 or 504,
 * reached through the error page of conf-examples/ailink-errors.conf), a
 * 5xx or 429 status (seen here, by the first header filter, before any
 * other filter took the response), or an open circuit breaker (the
 * breaker module asks before it refuses).  Each target gets the client's
 * own request translated for its provider, with its credential.
 *
 * nginx's upstream machinery does every attempt: the location's content
 * handler (proxy_pass $ailink_upstream_url) is run again, in the request's
 * location and with the modules' request contexts as the first attempt
 * saw them, the way ngx_http_upstream_create() replaces an upstream.  A
 * response that passed this filter is the client's: streams fall back
 * only before their first byte.
 */


#include "ngx_ailink_fallback.h"


typedef struct {
    ngx_uint_t                  on;         /* NGX_AILINK_FALLBACK_* */
    ngx_uint_t                  tries;
    ngx_msec_t                  timeout;
} ngx_ailink_fallback_loc_conf_t;


typedef struct {
    ngx_ailink_fallback_rule_t *rule;
    ngx_uint_t                  next;       /* the next target to try */
    ngx_uint_t                  attempts;   /* upstreams contacted */
    ngx_msec_t                  start;      /* of the first attempt */
    ngx_str_t                   body;       /* the client's, guarded */
    ngx_str_t                   list;       /* attempts, JSON objects */

    /* as the first attempt found them */
    ngx_http_handler_pt         content;
    void                      **ctx;
    void                      **loc_conf;
    ngx_str_t                   uri;
    ngx_str_t                   args;
    ngx_uint_t                  method;     /* an error page makes a GET */
    ngx_str_t                   method_name;
    ngx_http_headers_out_t      headers_out;
    ngx_array_t                 headers;    /* ngx_table_elt_t */

    unsigned                    in_flight:1;
} ngx_ailink_fallback_ctx_t;


static ngx_int_t ngx_ailink_fallback_content(ngx_http_request_t *r);
static ngx_int_t ngx_ailink_fallback_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_ailink_fallback_error_page(ngx_http_request_t *r);
static void ngx_ailink_fallback_retry(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx, ngx_ailink_fallback_ctx_t *fb);
static ngx_int_t ngx_ailink_fallback_next(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx, ngx_ailink_fallback_ctx_t *fb);
static ngx_uint_t ngx_ailink_fallback_remains(ngx_ailink_fallback_ctx_t *fb,
    ngx_ailink_fallback_loc_conf_t *flcf);
static ngx_int_t ngx_ailink_fallback_record(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx, ngx_ailink_fallback_ctx_t *fb, ngx_uint_t status,
    ngx_str_t *why);
static void *ngx_ailink_fallback_create_loc_conf(ngx_conf_t *cf);
static char *ngx_ailink_fallback_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_ailink_fallback_tries(ngx_conf_t *cf, void *post,
    void *data);
static ngx_int_t ngx_ailink_fallback_postconfiguration(ngx_conf_t *cf);


ngx_int_t  (*ngx_ailink_fallback_error)(ngx_http_request_t *r);


static ngx_conf_bitmask_t  ngx_ailink_fallback_on_masks[] = {
    { ngx_string("error"), NGX_AILINK_FALLBACK_ERROR },
    { ngx_string("timeout"), NGX_AILINK_FALLBACK_TIMEOUT },
    { ngx_string("5xx"), NGX_AILINK_FALLBACK_5XX },
    { ngx_string("429"), NGX_AILINK_FALLBACK_429 },
    { ngx_string("circuit_open"), NGX_AILINK_FALLBACK_BREAKER },
    { ngx_string("off"), NGX_AILINK_FALLBACK_OFF },
    { ngx_null_string, 0 }
};


static ngx_conf_post_t  ngx_ailink_fallback_tries_post = {
    ngx_ailink_fallback_tries
};


static ngx_command_t  ngx_ailink_fallback_commands[] = {

    { ngx_string("ailink_fallback_on"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_conf_set_bitmask_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ailink_fallback_loc_conf_t, on),
      &ngx_ailink_fallback_on_masks },

    { ngx_string("ailink_fallback_tries"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ailink_fallback_loc_conf_t, tries),
      &ngx_ailink_fallback_tries_post },

    { ngx_string("ailink_fallback_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ailink_fallback_loc_conf_t, timeout),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_ailink_fallback_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_ailink_fallback_postconfiguration, /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_ailink_fallback_create_loc_conf,   /* create location configuration */
    ngx_ailink_fallback_merge_loc_conf     /* merge location configuration */
};


ngx_module_t  ngx_ailink_fallback_module = {
    NGX_MODULE_V1,
    &ngx_ailink_fallback_module_ctx,       /* module context */
    ngx_ailink_fallback_commands,          /* module directives */
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


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


/*
 * Called by routing once an LLM request is routed: a model with fallbacks
 * keeps the client's body and has the location's content handler wrapped.
 */

ngx_int_t
ngx_ailink_fallback_init(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx)
{
    ngx_ailink_fallback_ctx_t       *fb;
    ngx_ailink_fallback_rule_t      *rule;
    ngx_ailink_fallback_loc_conf_t  *flcf;

    flcf = ngx_http_get_module_loc_conf(r, ngx_ailink_fallback_module);

    if (flcf->on & NGX_AILINK_FALLBACK_OFF) {
        return NGX_OK;
    }

    rule = ngx_ailink_fallback_find(ngx_ailink_get_conf(r), &ctx->model);

    if (rule == NULL || r->content_handler == NULL) {
        return NGX_OK;
    }

    fb = ngx_pcalloc(r->pool, sizeof(ngx_ailink_fallback_ctx_t));
    if (fb == NULL) {
        return NGX_ERROR;
    }

    fb->rule = rule;
    fb->body = ctx->body;
    fb->content = r->content_handler;

    r->content_handler = ngx_ailink_fallback_content;
    ctx->fallback = fb;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ailink fallback: model \"%V\" has %ui target(s)",
                   &ctx->model, rule->targets.nelts);

    return NGX_OK;
}


/* the first attempt: what a retry restores is saved, then proxy_pass */

static ngx_int_t
ngx_ailink_fallback_content(ngx_http_request_t *r)
{
    size_t                      size;
    ngx_uint_t                  i;
    ngx_list_part_t            *part;
    ngx_table_elt_t            *h, *nh;
    ngx_ailink_ctx_t           *ctx;
    ngx_ailink_fallback_ctx_t  *fb;

    ctx = ngx_ailink_get_ctx(r);
    fb = ctx->fallback;

    size = sizeof(void *) * ngx_http_max_module;

    fb->ctx = ngx_palloc(r->pool, size);
    if (fb->ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(fb->ctx, r->ctx, size);

    fb->loc_conf = r->loc_conf;
    fb->uri = r->uri;
    fb->args = r->args;
    fb->method = r->method;
    fb->method_name = r->method_name;
    fb->headers_out = r->headers_out;
    fb->start = ngx_current_msec;

    if (ngx_array_init(&fb->headers, r->pool, 4, sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    part = &r->headers_out.headers.part;
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

        nh = ngx_array_push(&fb->headers);
        if (nh == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        *nh = h[i];
    }

    fb->attempts = 1;
    fb->in_flight = 1;

    return fb->content(r);
}


/*
 * The first header filter: an upstream's 5xx or 429 with a target left is
 * not the client's; that upstream is finalized, as ngx_http_upstream_create()
 * finalizes one it replaces, and the next target is tried.  NGX_ERROR
 * tells ngx_http_upstream_send_response() to finalize a request that is
 * already on its way elsewhere (it only finalizes it with NGX_DONE, once:
 * the retry counted that in).
 */

static ngx_int_t
ngx_ailink_fallback_header_filter(ngx_http_request_t *r)
{
    u_char                          *p;
    ngx_str_t                        why;
    ngx_uint_t                       status;
    ngx_ailink_ctx_t                *ctx;
    ngx_http_upstream_t             *u;
    ngx_ailink_fallback_ctx_t       *fb;
    ngx_ailink_fallback_loc_conf_t  *flcf;

    u = r->upstream;

    if (u == NULL || u->cleanup == NULL || r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_ailink_get_ctx(r);

    if (ctx == NULL || ctx->fallback == NULL) {
        return ngx_http_next_header_filter(r);
    }

    fb = ctx->fallback;

    if (!fb->in_flight) {
        return ngx_http_next_header_filter(r);
    }

    fb->in_flight = 0;

    flcf = ngx_http_get_module_loc_conf(r, ngx_ailink_fallback_module);
    status = u->headers_in.status_n;

    if (!((status >= 500 && status <= 599
           && (flcf->on & NGX_AILINK_FALLBACK_5XX))
          || (status == NGX_HTTP_TOO_MANY_REQUESTS
              && (flcf->on & NGX_AILINK_FALLBACK_429)))
        || !ngx_ailink_fallback_remains(fb, flcf))
    {
        return ngx_http_next_header_filter(r);
    }

    p = ngx_pnalloc(r->pool, sizeof("status ") + NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    why.data = p;
    why.len = ngx_sprintf(p, "status %ui", status) - p;

    if (ngx_ailink_fallback_record(r, ctx, fb, status, &why) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_ailink_breaker_attempt(r, ctx, status, &why);

    /* as ngx_http_upstream_create() does with an upstream it replaces */
    r->main->count++;
    (*u->cleanup)(r);

    ngx_ailink_fallback_retry(r, ctx, fb);

    return NGX_ERROR;
}


/*
 * Called by the error page (ailink_error_page) before it answers: nginx's
 * own 502 or 504 for the attempt in flight is a connection error or a
 * timeout of its upstream.
 */

static ngx_int_t
ngx_ailink_fallback_error_page(ngx_http_request_t *r)
{
    ngx_str_t                        why;
    ngx_ailink_ctx_t                *ctx;
    ngx_ailink_fallback_ctx_t       *fb;
    ngx_ailink_fallback_loc_conf_t  *flcf;

    ctx = ngx_ailink_get_ctx(r);

    if (ctx == NULL || ctx->fallback == NULL || r != r->main) {
        return NGX_DECLINED;
    }

    fb = ctx->fallback;

    if (!fb->in_flight || fb->loc_conf == NULL) {
        return NGX_DECLINED;
    }

    fb->in_flight = 0;

    flcf = fb->loc_conf[ngx_ailink_fallback_module.ctx_index];

    if (r->err_status == NGX_HTTP_BAD_GATEWAY
        && (flcf->on & NGX_AILINK_FALLBACK_ERROR))
    {
        ngx_str_set(&why, "connection error");

    } else if (r->err_status == NGX_HTTP_GATEWAY_TIME_OUT
               && (flcf->on & NGX_AILINK_FALLBACK_TIMEOUT))
    {
        ngx_str_set(&why, "timeout");

    } else {
        return NGX_DECLINED;
    }

    if (!ngx_ailink_fallback_remains(fb, flcf)) {
        return NGX_DECLINED;
    }

    if (ngx_ailink_fallback_record(r, ctx, fb, 0, &why) != NGX_OK) {
        return NGX_DECLINED;
    }

    ngx_ailink_breaker_attempt(r, ctx, r->err_status, &why);

    ngx_ailink_fallback_retry(r, ctx, fb);

    return NGX_DONE;
}


/*
 * The request is put back as the first attempt saw it (its location, the
 * modules' contexts an error page redirect cleared, its URI, the response
 * headers set before proxying), routed to the next target, and proxied.
 * The caller finalizes it once more: counted here.
 */

static void
ngx_ailink_fallback_retry(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_ailink_fallback_ctx_t *fb)
{
    u_char           *p;
    ngx_int_t         rc;
    ngx_uint_t        i;
    ngx_table_elt_t  *h, *nh;

    r->main->count++;

    ngx_memcpy(r->ctx, fb->ctx, sizeof(void *) * ngx_http_max_module);
    r->loc_conf = fb->loc_conf;
    ngx_http_update_location_config(r);

    r->uri = fb->uri;
    r->args = fb->args;
    r->method = fb->method;
    r->method_name = fb->method_name;
    r->error_page = 0;
    r->err_status = 0;

    r->headers_out = fb->headers_out;

    if (ngx_list_init(&r->headers_out.headers, r->pool, 20,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    h = fb->headers.elts;

    for (i = 0; i < fb->headers.nelts; i++) {
        nh = ngx_list_push(&r->headers_out.headers);
        if (nh == NULL) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        *nh = h[i];
    }

    rc = ngx_ailink_fallback_next(r, ctx, fb);

    if (rc == NGX_ERROR) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (rc == NGX_DECLINED) {
        p = ngx_pnalloc(r->pool, NGX_MAX_ERROR_STR);
        if (p == NULL) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        *ngx_snprintf(p, NGX_MAX_ERROR_STR - 1,
                      "every target of model \"%V\" failed or could not "
                      "take the request", &fb->rule->model) = '\0';

        ngx_ailink_finalize_error(r, NGX_HTTP_BAD_GATEWAY, "upstream_error",
                                  (char *) p, NULL);
        return;
    }

    /* the next target's own breaker; open, it may move on again */
    rc = ngx_ailink_breaker_check(r);

    if (rc == NGX_DONE) {
        return;
    }

    if (rc != NGX_DECLINED) {
        ngx_http_finalize_request(r, rc);
        return;
    }

    fb->attempts++;
    fb->in_flight = 1;

    r->write_event_handler = ngx_http_request_empty_handler;

    ngx_http_finalize_request(r, fb->content(r));
}


/* the first target that can take the request; NGX_DECLINED: none */

static ngx_int_t
ngx_ailink_fallback_next(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_ailink_fallback_ctx_t *fb)
{
    ngx_int_t                      rc;
    ngx_str_t                      why;
    ngx_ailink_fallback_target_t  *t;

    while (fb->next < fb->rule->targets.nelts) {
        t = fb->rule->targets.elts;
        t = &t[fb->next++];

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "ailink: fallback for token \"%V\" to \"%V\" "
                      "model \"%V\"", &ctx->token->id, &t->provider->name,
                      &t->model);

        rc = ngx_ailink_translate_reroute(r, ctx, &fb->body, &t->model,
                                          t->provider);

        if (rc == NGX_OK || rc == NGX_ERROR) {
            return rc;
        }

        /* this one cannot: no credential, a request it cannot take */

        ctx->provider = t->provider;
        ctx->model = t->model;

        why.data = (u_char *) ctx->error_message;
        why.len = why.data ? ngx_strlen(why.data) : 0;

        if (ngx_ailink_fallback_record(r, ctx, fb, 0, &why) != NGX_OK) {
            return NGX_ERROR;
        }

        ctx->error_code = NULL;
        ctx->error_param = NULL;
        ctx->error_message = NULL;
    }

    return NGX_DECLINED;
}


/*
 * Asked by the breaker module before it refuses with circuit_open: NGX_OK
 * when the request was routed to the next target instead.
 */

ngx_int_t
ngx_ailink_fallback_skip(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_str_t *why)
{
    ngx_ailink_fallback_ctx_t       *fb;
    ngx_ailink_fallback_loc_conf_t  *flcf;

    fb = ctx->fallback;

    if (fb == NULL) {
        return NGX_DECLINED;
    }

    flcf = ngx_http_get_module_loc_conf(r, ngx_ailink_fallback_module);

    if (!(flcf->on & NGX_AILINK_FALLBACK_BREAKER)
        || fb->next >= fb->rule->targets.nelts
        || (flcf->timeout && fb->start
            && ngx_current_msec - fb->start >= flcf->timeout))
    {
        return NGX_DECLINED;
    }

    if (ngx_ailink_fallback_record(r, ctx, fb, 0, why) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_ailink_fallback_next(r, ctx, fb);
}


static ngx_uint_t
ngx_ailink_fallback_remains(ngx_ailink_fallback_ctx_t *fb,
    ngx_ailink_fallback_loc_conf_t *flcf)
{
    if (fb->next >= fb->rule->targets.nelts || fb->attempts >= flcf->tries) {
        return 0;
    }

    if (flcf->timeout && ngx_current_msec - fb->start >= flcf->timeout) {
        return 0;
    }

    return 1;
}


/*
 * An attempt that did not answer, for the audit record:
 * ,"fallback_attempts":[{"provider","model","status","error"},...]
 */

static ngx_int_t
ngx_ailink_fallback_record(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_ailink_fallback_ctx_t *fb, ngx_uint_t status, ngx_str_t *why)
{
    u_char     *p;
    size_t      len;
    ngx_str_t  *provider;

    static ngx_str_t  none = ngx_string("");

    provider = ctx->provider ? &ctx->provider->name : &none;

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "ailink: upstream \"%V\" model \"%V\" failed (%V), "
                  "trying the next fallback", provider, &ctx->model, why);

    len = fb->list.len + sizeof(",{\"provider\":\"\",\"model\":\"\","
                                "\"status\":,\"error\":\"\"}")
          + ngx_ailink_json_escape_len(provider)
          + ngx_ailink_json_escape_len(&ctx->model)
          + NGX_INT_T_LEN + ngx_ailink_json_escape_len(why);

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (fb->list.len) {
        fb->list.data = ngx_cpymem(p, fb->list.data, fb->list.len);
        *fb->list.data++ = ',';

    } else {
        fb->list.data = p;
    }

    fb->list.data = ngx_cpymem(fb->list.data, "{\"provider\":\"",
                               sizeof("{\"provider\":\"") - 1);
    fb->list.data = ngx_ailink_json_escape(fb->list.data, provider);
    fb->list.data = ngx_cpymem(fb->list.data, "\",\"model\":\"",
                               sizeof("\",\"model\":\"") - 1);
    fb->list.data = ngx_ailink_json_escape(fb->list.data, &ctx->model);
    fb->list.data = ngx_cpymem(fb->list.data, "\",\"status\":",
                               sizeof("\",\"status\":") - 1);

    if (status) {
        fb->list.data = ngx_ailink_write_uint(fb->list.data, status);

    } else {
        fb->list.data = ngx_cpymem(fb->list.data, "null", 4);
    }

    fb->list.data = ngx_cpymem(fb->list.data, ",\"error\":\"",
                               sizeof(",\"error\":\"") - 1);
    fb->list.data = ngx_ailink_json_escape(fb->list.data, why);
    *fb->list.data++ = '"';
    *fb->list.data++ = '}';

    fb->list.len = fb->list.data - p;
    fb->list.data = p;

    len = sizeof(",\"fallback_attempts\":[]") - 1 + fb->list.len;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->fallback_audit.data = p;

    p = ngx_cpymem(p, ",\"fallback_attempts\":[",
                   sizeof(",\"fallback_attempts\":[") - 1);
    p = ngx_cpymem(p, fb->list.data, fb->list.len);
    *p++ = ']';

    ctx->fallback_audit.len = p - ctx->fallback_audit.data;

    return NGX_OK;
}


static void *
ngx_ailink_fallback_create_loc_conf(ngx_conf_t *cf)
{
    ngx_ailink_fallback_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_ailink_fallback_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /* conf->on = 0: unset (bitmask slots want 0) */
    conf->tries = NGX_CONF_UNSET_UINT;
    conf->timeout = NGX_CONF_UNSET_MSEC;

    return conf;
}


static char *
ngx_ailink_fallback_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_ailink_fallback_loc_conf_t *prev = parent;
    ngx_ailink_fallback_loc_conf_t *conf = child;

    ngx_conf_merge_bitmask_value(conf->on, prev->on,
                                 (NGX_CONF_BITMASK_SET
                                  |NGX_AILINK_FALLBACK_ERROR
                                  |NGX_AILINK_FALLBACK_TIMEOUT
                                  |NGX_AILINK_FALLBACK_5XX
                                  |NGX_AILINK_FALLBACK_429
                                  |NGX_AILINK_FALLBACK_BREAKER));

    if ((conf->on & NGX_AILINK_FALLBACK_OFF)
        && (conf->on & ~(NGX_CONF_BITMASK_SET|NGX_AILINK_FALLBACK_OFF)))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"ailink_fallback_on\": "
                           "\"off\" cannot be mixed with other values");
        return NGX_CONF_ERROR;
    }

    ngx_conf_merge_uint_value(conf->tries, prev->tries, 3);
    ngx_conf_merge_msec_value(conf->timeout, prev->timeout, 60000);

    return NGX_CONF_OK;
}


static char *
ngx_ailink_fallback_tries(ngx_conf_t *cf, void *post, void *data)
{
    ngx_uint_t  *np = data;

    if (*np < 1 || *np > NGX_AILINK_FALLBACK_MAX) {
        return "must be between 1 and 8";
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_ailink_fallback_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_ailink_fallback_header_filter;

    ngx_ailink_fallback_error = ngx_ailink_fallback_error_page;

    return NGX_OK;
}
