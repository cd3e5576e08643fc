
/*
 * Copyright (C) AILink
 *
 * The metrics zone and what the log phase adds to it.  One request adds
 * to its "requests" series (status code, provider, model, project), its
 * "usage" series (tokens, cost, the latency and time-to-first-token
 * histograms), an "errors" series for the gateway's own error code, a
 * "policy" series per policy decision, and the cache's outcome.
 *
 * The zone's size follows from max_series: twice as many slots (a power
 * of two), so that probing stays short and the "other" series always
 * find room.  Counters are kept across reloads while the zone keeps its
 * name and max_series (nginx reuses a zone of the same name and size).
 */


#include "ngx_ailink_metrics.h"
#include "ngx_ailink_policy.h"


#define NGX_AILINK_METRICS_MAX_DEFAULT  1000
#define NGX_AILINK_METRICS_MAX_LIMIT    100000


typedef struct {
    ngx_flag_t                  count;      /* ailink_metrics_count */
} ngx_ailink_metrics_loc_conf_t;


typedef struct {
    ngx_uint_t                  kind;
    ngx_uint_t                  code;
    ngx_str_t                   label[NGX_AILINK_METRICS_LABELS];
    ngx_uint_t                  nlabels;
} ngx_ailink_metrics_key_t;


static ngx_int_t ngx_ailink_metrics_log_handler(ngx_http_request_t *r);
static void *ngx_ailink_metrics_create_main_conf(ngx_conf_t *cf);
static void *ngx_ailink_metrics_create_loc_conf(ngx_conf_t *cf);
static char *ngx_ailink_metrics_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_ailink_metrics_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_ailink_metrics_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_ailink_metrics_postconfiguration(ngx_conf_t *cf);


const ngx_msec_t  ngx_ailink_metrics_bounds[NGX_AILINK_METRICS_BUCKETS] = {
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000
};


static ngx_str_t  ngx_ailink_metrics_other = ngx_string("other");


static ngx_command_t  ngx_ailink_metrics_commands[] = {

    { ngx_string("ailink_metrics_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_ailink_metrics_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ailink_metrics_count"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ailink_metrics_loc_conf_t, count),
      NULL },

    { ngx_string("ailink_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_ailink_conf_set_handler,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      ngx_ailink_metrics_handler },

      ngx_null_command
};


static ngx_http_module_t  ngx_ailink_metrics_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_ailink_metrics_postconfiguration,  /* postconfiguration */

    ngx_ailink_metrics_create_main_conf,   /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_ailink_metrics_create_loc_conf,    /* create location configuration */
    ngx_ailink_metrics_merge_loc_conf      /* merge location configuration */
};


ngx_module_t  ngx_ailink_metrics_module = {
    NGX_MODULE_V1,
    &ngx_ailink_metrics_module_ctx,        /* module context */
    ngx_ailink_metrics_commands,           /* module directives */
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


/* the key as stored: each label its length and its bytes */

static size_t
ngx_ailink_metrics_key(ngx_ailink_metrics_key_t *k, u_char *buf)
{
    u_char      *p;
    ngx_uint_t   i;

    p = buf;

    for (i = 0; i < k->nlabels; i++) {
        *p++ = (u_char) k->label[i].len;

        if (k->label[i].len) {
            /* an empty label may have no data: never memcpy(NULL) */
            p = ngx_cpymem(p, k->label[i].data, k->label[i].len);
        }
    }

    return p - buf;
}


/* the key's hash mixed with what else tells series apart */

static ngx_inline uint32_t
ngx_ailink_metrics_hash(uint32_t base, ngx_uint_t kind, ngx_uint_t code)
{
    return base ^ (uint32_t) (kind * 0x9e3779b1u)
           ^ (uint32_t) (code * 0x85ebca6bu);
}


/* a lookup without a lock: slots are only ever added, never removed */

static ngx_ailink_metrics_series_t *
ngx_ailink_metrics_find(ngx_ailink_metrics_sh_t *sh, uint32_t hash,
    ngx_uint_t kind, ngx_uint_t code, u_char *key, size_t len,
    ngx_ailink_metrics_series_t **empty)
{
    ngx_uint_t                    i, mask;
    ngx_ailink_metrics_series_t  *s;

    mask = sh->nslots - 1;

    for (i = 0; i < sh->nslots; i++) {
        s = &sh->slots[(hash + i) & mask];

        /* acquire: the key written before "ready" is seen with it */
        if (!__atomic_load_n(&s->ready, __ATOMIC_ACQUIRE)) {
            *empty = s;
            return NULL;
        }

        if (s->hash == hash && s->kind == kind && s->code == code
            && s->key_len == len && ngx_memcmp(s->key, key, len) == 0)
        {
            return s;
        }
    }

    *empty = NULL;

    return NULL;
}


/* a label the exposition can show as it is: short, UTF-8, no NUL */

static ngx_uint_t
ngx_ailink_metrics_label_ok(ngx_str_t *s)
{
    u_char     *p, *last;
    ngx_int_t   n;

    if (s->len > NGX_AILINK_METRICS_LABEL_MAX) {
        return 0;
    }

    p = s->data;
    last = p + s->len;

    while (p < last) {
        if (*p < 0x80) {
            if (*p == '\0') {
                return 0;
            }

            p++;
            continue;
        }

        n = ngx_ailink_utf8_sequence(p, last);

        if (n < 0) {
            return 0;
        }

        p += n;
    }

    return 1;
}


static ngx_ailink_metrics_series_t *
ngx_ailink_metrics_insert(ngx_ailink_metrics_main_conf_t *mmcf,
    ngx_ailink_metrics_key_t *k, ngx_uint_t other)
{
    u_char                        key[NGX_AILINK_METRICS_KEY_MAX];
    size_t                        len;
    uint32_t                      hash;
    ngx_uint_t                    i;
    ngx_ailink_metrics_sh_t      *sh;
    ngx_ailink_metrics_series_t  *s, *empty;

    sh = mmcf->sh;

    if (other) {
        for (i = 0; i < k->nlabels; i++) {
            k->label[i] = ngx_ailink_metrics_other;
        }
    }

    len = ngx_ailink_metrics_key(k, key);
    hash = ngx_ailink_metrics_hash(ngx_murmur_hash2(key, len), k->kind,
                                   k->code);

    s = ngx_ailink_metrics_find(sh, hash, k->kind, k->code, key, len,
                                &empty);
    if (s) {
        return s;
    }

    ngx_shmtx_lock(&mmcf->shpool->mutex);

    /* another worker may have added it since */
    s = ngx_ailink_metrics_find(sh, hash, k->kind, k->code, key, len,
                                &empty);

    if (s == NULL && empty
        && sh->nseries < (other ? sh->nslots - sh->nslots / 8 : sh->max))
    {
        s = empty;
        s->hash = hash;
        s->kind = (uint16_t) k->kind;
        s->code = (uint16_t) k->code;
        s->key_len = (uint16_t) len;
        ngx_memcpy(s->key, key, len);
        ngx_memzero((void *) s->v, sizeof(s->v));

        ngx_memory_barrier();
        s->ready = 1;
        sh->nseries++;
    }

    ngx_shmtx_unlock(&mmcf->shpool->mutex);

    return s;
}


/* the stored key of k and its hash; NGX_DECLINED: a label is too long */

static ngx_int_t
ngx_ailink_metrics_prepare(ngx_ailink_metrics_key_t *k, u_char *key,
    size_t *len, uint32_t *base)
{
    ngx_uint_t  i;

    *len = 0;
    *base = 0;

    for (i = 0; i < k->nlabels; i++) {
        if (k->label[i].len > NGX_AILINK_METRICS_LABEL_MAX) {
            return NGX_DECLINED;
        }
    }

    *len = ngx_ailink_metrics_key(k, key);
    *base = ngx_murmur_hash2(key, *len);

    return NGX_OK;
}


/*
 * The series of k (its key and hash prepared, unless rc is NGX_DECLINED),
 * added when new; the "other" series of its kind when the table holds
 * max_series already or a label cannot be shown; NULL only when not even
 * that has room (counted in "dropped").
 */

static ngx_ailink_metrics_series_t *
ngx_ailink_metrics_series_key(ngx_ailink_metrics_main_conf_t *mmcf,
    ngx_ailink_metrics_key_t *k, ngx_int_t rc, u_char *key, size_t len,
    uint32_t base)
{
    uint32_t                      hash;
    ngx_uint_t                    i;
    ngx_ailink_metrics_sh_t      *sh;
    ngx_ailink_metrics_series_t  *s, *empty;

    sh = mmcf->sh;

    if (rc != NGX_OK) {
        goto other;
    }

    hash = ngx_ailink_metrics_hash(base, k->kind, k->code);

    s = ngx_ailink_metrics_find(sh, hash, k->kind, k->code, key, len,
                                &empty);
    if (s) {
        return s;
    }

    for (i = 0; i < k->nlabels; i++) {
        if (!ngx_ailink_metrics_label_ok(&k->label[i])) {
            goto other;
        }
    }

    if (empty && sh->nseries < sh->max) {
        s = ngx_ailink_metrics_insert(mmcf, k, 0);
        if (s) {
            return s;
        }
    }

other:

    (void) ngx_atomic_fetch_add(&sh->overflow, 1);

    s = ngx_ailink_metrics_insert(mmcf, k, 1);

    if (s == NULL) {
        (void) ngx_atomic_fetch_add(&sh->dropped, 1);
    }

    return s;
}


static ngx_ailink_metrics_series_t *
ngx_ailink_metrics_series(ngx_ailink_metrics_main_conf_t *mmcf,
    ngx_ailink_metrics_key_t *k)
{
    u_char     key[NGX_AILINK_METRICS_KEY_MAX];
    size_t     len;
    uint32_t   base;
    ngx_int_t  rc;

    rc = ngx_ailink_metrics_prepare(k, key, &len, &base);

    return ngx_ailink_metrics_series_key(mmcf, k, rc, key, len, base);
}


static ngx_uint_t
ngx_ailink_metrics_bucket(ngx_msec_int_t ms)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_AILINK_METRICS_BUCKETS; i++) {
        if ((ngx_msec_t) ms <= ngx_ailink_metrics_bounds[i]) {
            break;
        }
    }

    return i;
}


static void
ngx_ailink_metrics_policy(ngx_ailink_metrics_main_conf_t *mmcf,
    ngx_ailink_ctx_t *ctx)
{
    ngx_uint_t                     i;
    ngx_ailink_policy_ctx_t       *pctx;
    ngx_ailink_metrics_key_t       k;
    ngx_ailink_metrics_series_t   *s;
    ngx_ailink_policy_decision_t  *d;

    pctx = ctx->policy;

    if (pctx == NULL || pctx->decisions.elts == NULL) {
        return;
    }

    d = pctx->decisions.elts;

    for (i = 0; i < pctx->decisions.nelts; i++) {
        k.kind = NGX_AILINK_MK_POLICY;
        k.code = 0;
        k.nlabels = 3;
        k.label[0] = d[i].policy->name;
        k.label[1] = d[i].action->name;
        k.label[2].data = (u_char *) d[i].result;
        k.label[2].len = ngx_strlen(d[i].result);

        s = ngx_ailink_metrics_series(mmcf, &k);

        if (s) {
            (void) ngx_atomic_fetch_add(&s->v[0], 1);
        }
    }
}


static void
ngx_ailink_metrics_cache(ngx_ailink_metrics_sh_t *sh, ngx_ailink_ctx_t *ctx)
{
    ngx_str_t   *a;
    ngx_uint_t   which;

    /* ,"cache":"HIT"... as the cache module wrote it for the audit */
    a = &ctx->cache_audit;

    if (a->len <= sizeof(",\"cache\":\"") - 1
        || ngx_strncmp(a->data, ",\"cache\":\"", sizeof(",\"cache\":\"") - 1)
           != 0)
    {
        return;
    }

    switch (a->data[sizeof(",\"cache\":\"") - 1]) {
    case 'H':
        which = NGX_AILINK_METRICS_CACHE_HIT;
        break;
    case 'M':
        which = NGX_AILINK_METRICS_CACHE_MISS;
        break;
    case 'B':
        which = NGX_AILINK_METRICS_CACHE_BYPASS;
        break;
    default:
        return;
    }

    (void) ngx_atomic_fetch_add(&sh->cache[which], 1);
}


/*
 * Counted: main requests the gateway handled as API traffic, those that
 * presented a valid token and those it refused with an error code of its
 * own.  Health and readiness probes and the scrapes themselves are not.
 */

static ngx_int_t
ngx_ailink_metrics_log_handler(ngx_http_request_t *r)
{
    u_char                           key[NGX_AILINK_METRICS_KEY_MAX];
    size_t                           len;
    double                           cost;
    uint32_t                         base;
    ngx_int_t                        rc;
    ngx_str_t                        empty;
    ngx_uint_t                       status, b;
    ngx_time_t                      *tp;
    ngx_msec_int_t                   ms;
    ngx_ailink_ctx_t                *ctx;
    ngx_ailink_conf_t               *conf;
    ngx_ailink_metrics_sh_t         *sh;
    ngx_ailink_metrics_key_t         k;
    ngx_ailink_metrics_series_t     *s;
    ngx_ailink_metrics_loc_conf_t   *mlcf;
    ngx_ailink_metrics_main_conf_t  *mmcf;

    if (r != r->main) {
        return NGX_OK;
    }

    mmcf = ngx_http_get_module_main_conf(r, ngx_ailink_metrics_module);
    mlcf = ngx_http_get_module_loc_conf(r, ngx_ailink_metrics_module);
    sh = mmcf->sh;

    if (sh == NULL || !mlcf->count) {
        return NGX_OK;
    }

    ctx = ngx_ailink_get_ctx(r);

    if (ctx == NULL || (ctx->token == NULL && ctx->error_code == NULL)) {
        return NGX_OK;
    }

    if (ngx_ailink_log_hook) {
        /* post-phase policies: their decisions are counted too */
        ngx_ailink_log_hook(r, ctx);
    }

    status = r->err_status ? r->err_status : r->headers_out.status;

    if (status == 0 && r->connection->error) {
        status = NGX_HTTP_CLIENT_CLOSED_REQUEST;
    }

    if (status > 999) {
        status = 0;
    }

    ngx_str_null(&empty);

    k.kind = NGX_AILINK_MK_REQUESTS;
    k.code = status;
    k.nlabels = 3;
    k.label[0] = ctx->provider ? ctx->provider->name : empty;
    k.label[1] = ctx->model;
    k.label[2] = ctx->token ? ctx->token->project : empty;

    /* one key and hash for the requests and the usage series */
    rc = ngx_ailink_metrics_prepare(&k, key, &len, &base);

    s = ngx_ailink_metrics_series_key(mmcf, &k, rc, key, len, base);

    if (s) {
        (void) ngx_atomic_fetch_add(&s->v[0], 1);
    }

    /* the same labels: "other" again if the requests series was */
    k.kind = NGX_AILINK_MK_USAGE;
    k.code = 0;
    k.label[0] = ctx->provider ? ctx->provider->name : empty;
    k.label[1] = ctx->model;
    k.label[2] = ctx->token ? ctx->token->project : empty;

    s = ngx_ailink_metrics_series_key(mmcf, &k, rc, key, len, base);

    if (s) {
        tp = ngx_timeofday();
        ms = (ngx_msec_int_t) ((tp->sec - r->start_sec) * 1000
                               + (tp->msec - r->start_msec));
        ms = ngx_max(ms, 0);

        b = ngx_ailink_metrics_bucket(ms);
        (void) ngx_atomic_fetch_add(&s->v[NGX_AILINK_MV_LATENCY + b], 1);
        (void) ngx_atomic_fetch_add(&s->v[NGX_AILINK_MV_LATENCY_SUM], ms);

        if (ctx->ttft >= 0) {
            b = ngx_ailink_metrics_bucket(ctx->ttft);
            (void) ngx_atomic_fetch_add(&s->v[NGX_AILINK_MV_TTFT + b], 1);
            (void) ngx_atomic_fetch_add(&s->v[NGX_AILINK_MV_TTFT_SUM],
                                        ctx->ttft);
        }

        conf = ngx_ailink_get_conf(r);

        if (ctx->usage.known && !ctx->cache_hit && conf) {
            (void) ngx_atomic_fetch_add(&s->v[NGX_AILINK_MV_PROMPT],
                                        ctx->usage.prompt);
            (void) ngx_atomic_fetch_add(&s->v[NGX_AILINK_MV_COMPLETION],
                                        ctx->usage.completion);
            (void) ngx_atomic_fetch_add(&s->v[NGX_AILINK_MV_CACHED],
                                        ctx->usage.cached);

            /* the price the audit looked up is kept in ctx */
            cost = ngx_ailink_request_cost(conf, ctx);

            if (cost > 0) {
                (void) ngx_atomic_fetch_add(&s->v[NGX_AILINK_MV_COST],
                               (ngx_atomic_int_t) (cost * 1e9 + 0.5));
            }
        }
    }

    if (ctx->error_code) {
        k.kind = NGX_AILINK_MK_ERRORS;
        k.code = status;
        k.nlabels = 1;
        k.label[0].data = (u_char *) ctx->error_code;
        k.label[0].len = ngx_strlen(ctx->error_code);

        s = ngx_ailink_metrics_series(mmcf, &k);

        if (s) {
            (void) ngx_atomic_fetch_add(&s->v[0], 1);
        }
    }

    if (ctx->cache_audit.len) {
        ngx_ailink_metrics_cache(sh, ctx);
    }

    if (ctx->policy) {
        ngx_ailink_metrics_policy(mmcf, ctx);
    }

    return NGX_OK;
}


ngx_int_t
ngx_ailink_metrics_add_collector(ngx_conf_t *cf,
    ngx_ailink_metrics_collect_pt handler, void *data)
{
    ngx_ailink_metrics_collector_t  *c;
    ngx_ailink_metrics_main_conf_t  *mmcf;

    mmcf = ngx_http_conf_get_module_main_conf(cf, ngx_ailink_metrics_module);

    c = ngx_array_push(&mmcf->collectors);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->handler = handler;
    c->data = data;

    return NGX_OK;
}


static void *
ngx_ailink_metrics_create_main_conf(ngx_conf_t *cf)
{
    ngx_ailink_metrics_main_conf_t  *mmcf;

    mmcf = ngx_pcalloc(cf->pool, sizeof(ngx_ailink_metrics_main_conf_t));
    if (mmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&mmcf->collectors, cf->pool, 2,
                       sizeof(ngx_ailink_metrics_collector_t))
        != NGX_OK)
    {
        return NULL;
    }

    return mmcf;
}


static void *
ngx_ailink_metrics_create_loc_conf(ngx_conf_t *cf)
{
    ngx_ailink_metrics_loc_conf_t  *mlcf;

    mlcf = ngx_palloc(cf->pool, sizeof(ngx_ailink_metrics_loc_conf_t));
    if (mlcf == NULL) {
        return NULL;
    }

    mlcf->count = NGX_CONF_UNSET;

    return mlcf;
}


static char *
ngx_ailink_metrics_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_ailink_metrics_loc_conf_t *prev = parent;
    ngx_ailink_metrics_loc_conf_t *conf = child;

    ngx_conf_merge_value(conf->count, prev->count, 1);

    return NGX_CONF_OK;
}


/* ailink_metrics_zone name [max_series=N]; */

static char *
ngx_ailink_metrics_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_ailink_metrics_main_conf_t *mmcf = conf;

    size_t      size;
    ngx_int_t   n;
    ngx_str_t  *value;
    ngx_uint_t  nslots;

    if (mmcf->zone) {
        return "is duplicate";
    }

    value = cf->args->elts;
    mmcf->max = NGX_AILINK_METRICS_MAX_DEFAULT;

    if (cf->args->nelts == 3) {
        if (ngx_strncmp(value[2].data, "max_series=", 11) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[2]);
            return NGX_CONF_ERROR;
        }

        n = ngx_atoi(value[2].data + 11, value[2].len - 11);

        if (n < 1 || n > NGX_AILINK_METRICS_MAX_LIMIT) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid max_series \"%V\": 1 to %d",
                               &value[2], NGX_AILINK_METRICS_MAX_LIMIT);
            return NGX_CONF_ERROR;
        }

        mmcf->max = n;
    }

    /* twice max_series, a power of two, at least 64: room for "other" */
    for (nslots = 64; nslots < 2 * mmcf->max; nslots *= 2) {
        /* void */
    }

    size = sizeof(ngx_ailink_metrics_sh_t)
           + nslots * sizeof(ngx_ailink_metrics_series_t);

    /* the slab allocator's header and page table, the chunk's rounding */
    size = ngx_align(size, ngx_pagesize) + size / ngx_pagesize * 64
           + 8 * ngx_pagesize;

    mmcf->zone = ngx_shared_memory_add(cf, &value[1], size,
                                       &ngx_ailink_metrics_module);
    if (mmcf->zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (mmcf->zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is already used", &value[1]);
        return NGX_CONF_ERROR;
    }

    mmcf->zone->init = ngx_ailink_metrics_init_zone;
    mmcf->zone->data = mmcf;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_ailink_metrics_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_ailink_metrics_main_conf_t  *omcf = data;

    size_t                           size;
    ngx_uint_t                       nslots;
    ngx_slab_pool_t                 *shpool;
    ngx_ailink_metrics_main_conf_t  *mmcf;

    mmcf = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;
    mmcf->shpool = shpool;

    for (nslots = 64; nslots < 2 * mmcf->max; nslots *= 2) {
        /* void */
    }

    if (omcf && omcf->sh && omcf->sh->nslots == nslots) {
        /* a reload: the counters go on; max_series may have changed */
        mmcf->sh = omcf->sh;
        mmcf->sh->max = mmcf->max;
        return NGX_OK;
    }

    if (shm_zone->shm.exists) {
        mmcf->sh = shpool->data;
        return NGX_OK;
    }

    size = sizeof(ngx_ailink_metrics_sh_t)
           + (nslots - 1) * sizeof(ngx_ailink_metrics_series_t);

    mmcf->sh = ngx_slab_calloc(shpool, size);
    if (mmcf->sh == NULL) {
        return NGX_ERROR;
    }

    mmcf->sh->max = mmcf->max;
    mmcf->sh->nslots = nslots;
    shpool->data = mmcf->sh;
    shpool->log_nomem = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_metrics_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt             *h;
    ngx_http_core_main_conf_t       *cmcf;
    ngx_ailink_metrics_main_conf_t  *mmcf;

    mmcf = ngx_http_conf_get_module_main_conf(cf, ngx_ailink_metrics_module);

    if (mmcf->zone == NULL) {
        return NGX_OK;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_ailink_metrics_log_handler;

    return NGX_OK;
}
