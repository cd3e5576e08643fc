
/*
 * Copyright (C) AILink
 *
 * Circuit breakers, per upstream (the provider a request is routed to,
 * with the location's ailink_breaker_* settings) and per token and
 * upstream (the token's "circuit_breaker" in the config file, changed at
 * run time through PATCH /api/v1/tokens/<id>/circuit-breaker).
 *
 * closed -> open after failure_threshold consecutive failures (5xx, a
 * connection error or a timeout; 429 with ailink_breaker_429 on) -> after
 * the cooldown, half-open: up to half_open_max_requests probes go through
 * -> closed on a probe's success, open again on its failure.  Open answers
 * 503 circuit_open with Retry-After from the precontent phase (after the
 * cache: a hit needs no upstream), without touching the upstream.
 * Outcomes are recorded in the log phase from r->upstream_states.
 *
 * State lives in its own zone behind the state interface (counters with
 * no TTL, never evicted), shared by the workers and kept across reloads:
 *   bv:<scope>  when the breaker opened (0: closed) << 20 | consecutive
 *               failures: one counter, so that a request through a closed
 *               breaker reads one and, succeeding, writes none
 *   bc:<scope>  the cooldown it opened with (for the health API)
 *   bp:<scope>  probes let through since it became half-open
 *   be:<scope>  the last error, a record
 *   bs:<token>  a token's settings changed at run time, a record
 * where <scope> is "u:<provider>" or "t:<token id>:<provider>".  With
 * backend=redis the gateways tell each other when a breaker opens or
 * closes (ngx_ailink_breaker_share.c).
 */


#include "ngx_ailink_breaker.h"
#include "ngx_ailink_fallback.h"


#define NGX_AILINK_BREAKER_SCOPES  2


typedef struct {
    ngx_ailink_state_t         *state;
    ngx_ailink_state_t         *shared;     /* backend=redis: transitions */
} ngx_ailink_breaker_main_conf_t;


typedef struct {
    ngx_flag_t                  enable;
    ngx_ailink_breaker_conf_t   conf;       /* the per upstream settings */
    ngx_flag_t                  on_429;
} ngx_ailink_breaker_loc_conf_t;


typedef struct {
    ngx_str_t                   scope;
    ngx_ailink_breaker_conf_t   conf;
    int64_t                     value;      /* "bv" as the check read it */
    unsigned                    probe:1;
} ngx_ailink_breaker_scope_t;


typedef struct {
    ngx_ailink_breaker_scope_t  scopes[NGX_AILINK_BREAKER_SCOPES];
    ngx_uint_t                  n;
    ngx_flag_t                  on_429;
} ngx_ailink_breaker_ctx_t;


static ngx_int_t ngx_ailink_breaker_handler(ngx_http_request_t *r);
static ngx_int_t ngx_ailink_breaker_log_handler(ngx_http_request_t *r);
static void ngx_ailink_breaker_record(ngx_http_request_t *r,
    ngx_ailink_breaker_ctx_t *bc, ngx_ailink_state_t *st, ngx_int_t rc,
    ngx_str_t *why);
static void *ngx_ailink_breaker_create_main_conf(ngx_conf_t *cf);
static void *ngx_ailink_breaker_create_loc_conf(ngx_conf_t *cf);
static char *ngx_ailink_breaker_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_ailink_breaker_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_ailink_breaker_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_ailink_breaker_init_process(ngx_cycle_t *cycle);


static ngx_command_t  ngx_ailink_breaker_commands[] = {

    { ngx_string("ailink_breaker_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE23,
      ngx_ailink_breaker_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ailink_breaker"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ailink_breaker_loc_conf_t, enable),
      NULL },

    { ngx_string("ailink_breaker_threshold"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ailink_breaker_loc_conf_t, conf.threshold),
      NULL },

    { ngx_string("ailink_breaker_cooldown"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ailink_breaker_loc_conf_t, conf.cooldown),
      NULL },

    { ngx_string("ailink_breaker_half_open"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ailink_breaker_loc_conf_t, conf.half_open),
      NULL },

    { ngx_string("ailink_breaker_429"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ailink_breaker_loc_conf_t, on_429),
      NULL },

    { ngx_string("ailink_breaker_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_ailink_conf_set_handler,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      ngx_ailink_breaker_api_handler },

      ngx_null_command
};


static ngx_http_module_t  ngx_ailink_breaker_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_ailink_breaker_postconfiguration,  /* postconfiguration */

    ngx_ailink_breaker_create_main_conf,   /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_ailink_breaker_create_loc_conf,    /* create location configuration */
    ngx_ailink_breaker_merge_loc_conf      /* merge location configuration */
};


ngx_module_t  ngx_ailink_breaker_module = {
    NGX_MODULE_V1,
    &ngx_ailink_breaker_module_ctx,        /* module context */
    ngx_ailink_breaker_commands,           /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_ailink_breaker_init_process,       /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


ngx_ailink_breaker_conf_t *
ngx_ailink_breaker_loc_defaults(ngx_http_request_t *r)
{
    ngx_ailink_breaker_loc_conf_t  *blcf;

    blcf = ngx_http_get_module_loc_conf(r, ngx_ailink_breaker_module);

    return &blcf->conf;
}


ngx_ailink_state_t *
ngx_ailink_breaker_state(ngx_http_request_t *r)
{
    ngx_ailink_breaker_main_conf_t  *bmcf;

    bmcf = ngx_http_get_module_main_conf(r, ngx_ailink_breaker_module);

    return bmcf->state;
}


/* "b?:" + scope, in the request's pool */

ngx_int_t
ngx_ailink_breaker_key(ngx_pool_t *pool, char kind, ngx_str_t *scope,
    ngx_str_t *key)
{
    key->len = 3 + scope->len;
    key->data = ngx_pnalloc(pool, key->len);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    key->data[0] = 'b';
    key->data[1] = (u_char) kind;
    key->data[2] = ':';
    ngx_memcpy(key->data + 3, scope->data, scope->len);

    return NGX_OK;
}


int64_t
ngx_ailink_breaker_get(ngx_ailink_state_t *st, ngx_pool_t *pool, char kind,
    ngx_str_t *scope)
{
    int64_t    v;
    ngx_str_t  key;

    if (ngx_ailink_breaker_key(pool, kind, scope, &key) != NGX_OK
        || ngx_ailink_state_get(st, &key, &v) != NGX_OK)
    {
        return 0;
    }

    return v;
}


/* sets a counter to v (the interface adds: the difference is added) */

ngx_int_t
ngx_ailink_breaker_set(ngx_ailink_state_t *st, ngx_pool_t *pool, char kind,
    ngx_str_t *scope, int64_t v)
{
    int64_t    cur, out;
    ngx_str_t  key;

    if (ngx_ailink_breaker_key(pool, kind, scope, &key) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_ailink_state_get(st, &key, &cur) != NGX_OK) {
        cur = 0;
    }

    if (cur == v) {
        return NGX_OK;
    }

    return ngx_ailink_state_add(st, &key, v - cur, -1, 0,
                                NGX_AILINK_STATE_PERSIST, &out);
}


/*
 * The state of a scope: NGX_AILINK_BREAKER_CLOSED, _OPEN (with the
 * seconds left of its cooldown) or _HALF_OPEN.
 */

ngx_uint_t
ngx_ailink_breaker_status(ngx_ailink_state_t *st, ngx_pool_t *pool,
    ngx_str_t *scope, time_t cooldown, time_t *left, int64_t *value)
{
    time_t  opened, now;

    *value = ngx_ailink_breaker_get(st, pool, 'v', scope);
    opened = (time_t) (*value >> NGX_AILINK_BREAKER_SHIFT);

    if (opened == 0) {
        *left = 0;
        return NGX_AILINK_BREAKER_CLOSED;
    }

    if (cooldown < 0) {
        cooldown = (time_t) ngx_ailink_breaker_get(st, pool, 'c', scope);
    }

    now = ngx_time();

    if (opened + cooldown > now) {
        *left = opened + cooldown - now;
        return NGX_AILINK_BREAKER_OPEN;
    }

    *left = 0;
    return NGX_AILINK_BREAKER_HALF_OPEN;
}


static ngx_int_t
ngx_ailink_breaker_refuse(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    time_t retry)
{
    u_char           *p;
    ngx_table_elt_t  *h;

    if (retry < 1) {
        retry = 1;
    }

    p = ngx_pnalloc(r->pool, sizeof(",\"retry_after\":") + NGX_TIME_T_LEN
                             + NGX_TIME_T_LEN);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Retry-After");
    h->value.data = p;
    h->value.len = ngx_sprintf(p, "%T", retry) - p;

    p += h->value.len;
    ctx->error_extra.data = p;
    ctx->error_extra.len = ngx_sprintf(p, ",\"retry_after\":%T", retry) - p;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "ailink: circuit open for \"%V\"", &ctx->provider->name);

    ngx_ailink_finalize_error_extra(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    "circuit_open",
                                    "the circuit breaker for this upstream "
                                    "is open", NULL, &ctx->error_extra);
    return NGX_DONE;
}


/*
 * Open: a model with fallbacks is routed to its next target, whose own
 * breakers are checked in turn; else 503 circuit_open.
 */

static ngx_int_t
ngx_ailink_breaker_fallback(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    time_t retry)
{
    ngx_int_t  rc;
    ngx_str_t  why = ngx_string("circuit open");

    rc = ngx_ailink_fallback_skip(r, ctx, &why);

    if (rc == NGX_OK) {
        ctx->breaker = NULL;
        return ngx_ailink_breaker_handler(r);
    }

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_ailink_breaker_refuse(r, ctx, retry);
}


/* for a fallback's next target: its breakers, as the phase handler */

ngx_int_t
ngx_ailink_breaker_check(ngx_http_request_t *r)
{
    return ngx_ailink_breaker_handler(r);
}


static ngx_int_t
ngx_ailink_breaker_handler(ngx_http_request_t *r)
{
    time_t                          left;
    int64_t                         probes;
    ngx_str_t                       key;
    ngx_uint_t                      i, status;
    ngx_ailink_ctx_t               *ctx;
    ngx_ailink_state_t             *st;
    ngx_ailink_breaker_ctx_t       *bc;
    ngx_ailink_breaker_conf_t       tconf;
    ngx_ailink_breaker_scope_t     *s;
    ngx_ailink_breaker_loc_conf_t  *blcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    st = ngx_ailink_breaker_state(r);

    if (st == NULL) {
        return NGX_DECLINED;
    }

    ctx = ngx_ailink_get_ctx(r);

    if (ctx == NULL || !ctx->routed || ctx->provider == NULL
        || ctx->token == NULL || ctx->breaker)
    {
        return NGX_DECLINED;
    }

    blcf = ngx_http_get_module_loc_conf(r, ngx_ailink_breaker_module);

    if (ngx_ailink_breaker_token_conf(r, st, ctx->token, &blcf->conf,
                                      &tconf)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!blcf->enable && !tconf.enabled) {
        return NGX_DECLINED;
    }

    bc = ngx_pcalloc(r->pool, sizeof(ngx_ailink_breaker_ctx_t));
    if (bc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->breaker = bc;
    bc->on_429 = blcf->on_429;

    if (tconf.enabled) {
        s = &bc->scopes[bc->n++];
        s->conf = tconf;
        s->scope.len = sizeof("t::") - 1 + ctx->token->id.len
                       + ctx->provider->name.len;
        s->scope.data = ngx_pnalloc(r->pool, s->scope.len);
        if (s->scope.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_sprintf(s->scope.data, "t:%V:%V", &ctx->token->id,
                    &ctx->provider->name);
    }

    if (blcf->enable) {
        s = &bc->scopes[bc->n++];
        s->conf = blcf->conf;
        s->scope.len = sizeof("u:") - 1 + ctx->provider->name.len;
        s->scope.data = ngx_pnalloc(r->pool, s->scope.len);
        if (s->scope.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_sprintf(s->scope.data, "u:%V", &ctx->provider->name);
    }

    for (i = 0; i < bc->n; i++) {
        s = &bc->scopes[i];

        status = ngx_ailink_breaker_status(st, r->pool, &s->scope,
                                           s->conf.cooldown, &left,
                                           &s->value);

        if (status == NGX_AILINK_BREAKER_CLOSED) {
            continue;
        }

        if (status == NGX_AILINK_BREAKER_OPEN) {
            bc->n = 0;
            return ngx_ailink_breaker_fallback(r, ctx, left);
        }

        /* half-open: a bounded number of probes */
        if (ngx_ailink_breaker_key(r->pool, 'p', &s->scope, &key) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (ngx_ailink_state_add(st, &key, 1, s->conf.half_open, 0,
                                 NGX_AILINK_STATE_PERSIST, &probes)
            != NGX_OK)
        {
            bc->n = 0;
            return ngx_ailink_breaker_fallback(r, ctx, 1);
        }

        s->probe = 1;
    }

    return NGX_DECLINED;
}


/* what the upstream did: NGX_OK, NGX_ERROR (a failure), NGX_DECLINED */

static ngx_int_t
ngx_ailink_breaker_outcome(ngx_http_request_t *r,
    ngx_ailink_breaker_ctx_t *bc, ngx_str_t *why)
{
    ngx_uint_t                  status;
    ngx_http_upstream_state_t  *us;

    if (r->upstream_states == NULL || r->upstream_states->nelts == 0) {
        return NGX_DECLINED;
    }

    us = r->upstream_states->elts;
    status = us[r->upstream_states->nelts - 1].status;

    if (us[r->upstream_states->nelts - 1].header_time == (ngx_msec_t) -1) {
        /* no answer from the upstream: nginx's own 502 or 504 */
        if (status == NGX_HTTP_GATEWAY_TIME_OUT) {
            ngx_str_set(why, "timeout");

        } else {
            ngx_str_set(why, "connection error");
        }

        return NGX_ERROR;
    }

    if (status >= 500 || (status == 429 && bc->on_429)) {
        why->data = ngx_pnalloc(r->pool, sizeof("status ") + NGX_INT_T_LEN);
        if (why->data == NULL) {
            return NGX_ERROR;
        }

        why->len = ngx_sprintf(why->data, "status %ui", status) - why->data;
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_breaker_log_handler(ngx_http_request_t *r)
{
    ngx_int_t                  rc;
    ngx_str_t                  why;
    ngx_ailink_ctx_t          *ctx;
    ngx_ailink_state_t        *st;
    ngx_ailink_breaker_ctx_t  *bc;

    if (r != r->main) {
        return NGX_OK;
    }

    ctx = ngx_ailink_get_ctx(r);

    if (ctx == NULL || ctx->breaker == NULL) {
        return NGX_OK;
    }

    bc = ctx->breaker;
    st = ngx_ailink_breaker_state(r);

    if (bc->n == 0 || st == NULL) {
        return NGX_OK;
    }

    rc = ngx_ailink_breaker_outcome(r, bc, &why);

    ngx_ailink_breaker_record(r, bc, st, rc, &why);

    return NGX_OK;
}


/*
 * A fallback's failed attempt, before the next target is routed: its
 * breakers learn of it now, and the next target's are checked afresh.
 */

void
ngx_ailink_breaker_attempt(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_uint_t status, ngx_str_t *why)
{
    ngx_int_t                  rc;
    ngx_ailink_state_t        *st;
    ngx_ailink_breaker_ctx_t  *bc;

    bc = ctx->breaker;
    st = ngx_ailink_breaker_state(r);

    if (bc && bc->n && st) {
        rc = (status == NGX_HTTP_TOO_MANY_REQUESTS && !bc->on_429)
             ? NGX_OK : NGX_ERROR;

        ngx_ailink_breaker_record(r, bc, st, rc, why);
    }

    ctx->breaker = NULL;
}


/* an outcome (NGX_OK, NGX_ERROR: a failure, NGX_DECLINED) for each scope */

static void
ngx_ailink_breaker_record(ngx_http_request_t *r, ngx_ailink_breaker_ctx_t *bc,
    ngx_ailink_state_t *st, ngx_int_t rc, ngx_str_t *why)
{
    int64_t                          failures, value;
    ngx_str_t                        key;
    ngx_uint_t                       i;
    ngx_ailink_breaker_scope_t      *s;
    ngx_ailink_breaker_main_conf_t  *bmcf;

    bmcf = ngx_http_get_module_main_conf(r, ngx_ailink_breaker_module);

    for (i = 0; i < bc->n; i++) {
        s = &bc->scopes[i];

        if (rc == NGX_DECLINED) {
            /* never reached the upstream: give the probe back */
            if (s->probe
                && ngx_ailink_breaker_key(r->pool, 'p', &s->scope, &key)
                   == NGX_OK)
            {
                (void) ngx_ailink_state_add(st, &key, -1, -1, 0,
                                            NGX_AILINK_STATE_PERSIST,
                                            &failures);
            }

            continue;
        }

        if (rc == NGX_OK) {
            /* a closed breaker without failures: nothing to write */
            if (s->probe || s->value != 0) {
                (void) ngx_ailink_breaker_set(st, r->pool, 'v', &s->scope, 0);
            }

            if (s->probe) {
                /* a probe came back: closed */
                (void) ngx_ailink_breaker_set(st, r->pool, 'p', &s->scope, 0);
            }

            if (bmcf->shared
                && (s->probe || (s->value >> NGX_AILINK_BREAKER_SHIFT)))
            {
                ngx_ailink_breaker_share_tell(bmcf->shared, r->pool,
                                              &s->scope, 0, 0, 0);
            }

            continue;
        }

        /* a failure */

        if (ngx_ailink_breaker_key(r->pool, 'v', &s->scope, &key) != NGX_OK
            || ngx_ailink_state_add(st, &key, 1, -1, 0,
                                    NGX_AILINK_STATE_PERSIST, &value)
               != NGX_OK)
        {
            continue;
        }

        failures = value & NGX_AILINK_BREAKER_MASK;

        if (ngx_ailink_breaker_key(r->pool, 'e', &s->scope, &key)
            == NGX_OK)
        {
            (void) ngx_ailink_state_set_record(st, &key, why, 0);
        }

        if (s->probe
            || (failures >= (int64_t) s->conf.threshold
                && (value >> NGX_AILINK_BREAKER_SHIFT) == 0))
        {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "ailink: circuit \"%V\" opens after %L "
                          "failure(s), the last: %V", &s->scope, failures,
                          why);

            (void) ngx_ailink_breaker_set(st, r->pool, 'c', &s->scope,
                                          s->conf.cooldown);
            (void) ngx_ailink_breaker_set(st, r->pool, 'v', &s->scope,
                                          ((int64_t) ngx_time()
                                           << NGX_AILINK_BREAKER_SHIFT)
                                          | failures);
            (void) ngx_ailink_breaker_set(st, r->pool, 'p', &s->scope, 0);

            if (bmcf->shared) {
                ngx_ailink_breaker_share_tell(bmcf->shared, r->pool,
                                              &s->scope, ngx_time(),
                                              s->conf.cooldown, failures);
            }
        }
    }
}


static void *
ngx_ailink_breaker_create_main_conf(ngx_conf_t *cf)
{
    return ngx_pcalloc(cf->pool, sizeof(ngx_ailink_breaker_main_conf_t));
}


static void *
ngx_ailink_breaker_create_loc_conf(ngx_conf_t *cf)
{
    ngx_ailink_breaker_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_ailink_breaker_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->enable = NGX_CONF_UNSET;
    conf->conf.threshold = NGX_CONF_UNSET_UINT;
    conf->conf.cooldown = NGX_CONF_UNSET;
    conf->conf.half_open = NGX_CONF_UNSET_UINT;
    conf->on_429 = NGX_CONF_UNSET;

    return conf;
}


static char *
ngx_ailink_breaker_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_ailink_breaker_loc_conf_t  *prev = parent;
    ngx_ailink_breaker_loc_conf_t  *conf = child;

    ngx_ailink_breaker_main_conf_t  *bmcf;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_uint_value(conf->conf.threshold, prev->conf.threshold,
                              5);
    ngx_conf_merge_sec_value(conf->conf.cooldown, prev->conf.cooldown, 30);
    ngx_conf_merge_uint_value(conf->conf.half_open, prev->conf.half_open, 1);
    ngx_conf_merge_value(conf->on_429, prev->on_429, 0);

    conf->conf.enabled = conf->enable;

    if (conf->conf.threshold < 1 || conf->conf.threshold > 1000000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ailink_breaker_threshold\" must be between 1 "
                           "and 1000000");
        return NGX_CONF_ERROR;
    }

    if (conf->conf.half_open < 1 || conf->conf.half_open > 1000000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ailink_breaker_half_open\" must be between 1 "
                           "and 1000000");
        return NGX_CONF_ERROR;
    }

    bmcf = ngx_http_conf_get_module_main_conf(cf, ngx_ailink_breaker_module);

    if (conf->enable && bmcf->state == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ailink_breaker on\" needs "
                           "\"ailink_breaker_zone\"");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* backend=redis: the transitions gateways tell each other */
static ngx_str_t  ngx_ailink_breaker_records[] = {
    ngx_string("bo:"),
    ngx_null_string
};


static char *
ngx_ailink_breaker_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_ailink_breaker_main_conf_t  *bmcf = conf;

    ssize_t     size;
    ngx_str_t  *value;

    if (bmcf->state) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 4
        && ngx_strcmp(value[3].data, "backend=redis") != 0
        && ngx_strcmp(value[3].data, "backend=shm") != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ailink_breaker_zone: invalid parameter \"%V\"",
                           &value[3]);
        return NGX_CONF_ERROR;
    }

    size = ngx_parse_size(&value[2]);

    if (size == NGX_ERROR || size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid ailink_breaker_zone size \"%V\"",
                           &value[2]);
        return NGX_CONF_ERROR;
    }

    bmcf->state = ngx_ailink_state_shm_add(cf, &value[1], size,
                                           &ngx_ailink_breaker_module);
    if (bmcf->state == NULL) {
        return NGX_CONF_ERROR;
    }

    if (cf->args->nelts == 4
        && ngx_strcmp(value[3].data, "backend=redis") == 0)
    {
        bmcf->shared = ngx_ailink_state_redis_create(cf, bmcf->state,
                                               ngx_ailink_breaker_records);
        if (bmcf->shared == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_ailink_breaker_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_ailink_breaker_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_ailink_breaker_log_handler;

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_breaker_init_process(ngx_cycle_t *cycle)
{
    ngx_ailink_breaker_main_conf_t  *bmcf;

    bmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_ailink_breaker_module);

    if (bmcf == NULL || bmcf->shared == NULL) {
        return NGX_OK;
    }

    return ngx_ailink_breaker_share_init(cycle, bmcf->shared, bmcf->state);
}
