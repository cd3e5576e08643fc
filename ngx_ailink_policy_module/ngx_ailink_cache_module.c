
/*
 * Copyright (C) AILink
 *
 * The exact-match response cache of LLM routes (chat completions,
 * completions, embeddings).
 *
 * Lookup runs in the precontent phase after routing and policies (this
 * module comes before policy in "config": handlers of a phase run in the
 * reverse order of their modules), so denials, limits and caps still
 * apply to a hit.  A hit is answered from the entry, with the gateway's
 * own response, and never reaches the upstream.  A miss goes on to the
 * upstream; the body filter, below translation and the response
 * guardrails, copies what the client is sent and stores it once it is
 * complete: a 2xx, not larger than ailink_cache_max_entry, and for a
 * stream only when it ended with "data: [DONE]".  A stored stream is
 * replayed as it was sent (chunks, the usage chunk if it was asked for,
 * [DONE]); stream and non-stream requests differ in their body, so in
 * their key.
 *
 * Key: "c:<generation>:<project>:<provider>:<sha256>", the digest over
 * the path, the guardrails header and the canonical body
 * (ngx_ailink_cache_key.c).  A flush moves the generation on; entries of
 * older generations are unreachable and leave through the zone's LRU.
 * Entry: a fixed header (the usage of the answer, for the saved cost,
 * whether it is a stream), the body, then the Content-Type it was sent
 * with.
 *
 * With "backend=redis" the entries and the generation are in Redis, so
 * every gateway on it shares them (and a flush): the lookup then runs
 * again on each reply (ngx_ailink_state_replay.h), an entry is stored
 * without waiting, and Redis unavailable is a BYPASS (the cache fails
 * open).  Statistics stay per gateway, in the zone.
 */


#include "ngx_ailink_cache.h"
#include "ngx_ailink_state_replay.h"


#define NGX_AILINK_CACHE_MAGIC      0x41494c43

#define NGX_AILINK_CACHE_NONE       0
#define NGX_AILINK_CACHE_HIT        1
#define NGX_AILINK_CACHE_MISS       2
#define NGX_AILINK_CACHE_BYPASS     3


typedef struct {
    uint32_t                    magic;
    uint32_t                    stream;
    uint64_t                    prompt;
    uint64_t                    completion;
    uint64_t                    total;
    uint64_t                    cached;
    uint32_t                    known;
    uint32_t                    type_len;   /* Content-Type, after the body */
} ngx_ailink_cache_entry_t;


typedef struct {
    ngx_ailink_state_t         *state;      /* statistics */
    ngx_ailink_state_t         *entries;    /* entries, the generation */
    ngx_str_t                   zone;
} ngx_ailink_cache_main_conf_t;


typedef struct {
    ngx_flag_t                  enable;
    time_t                      ttl;
    size_t                      max_entry;
    ngx_flag_t                  nondeterministic;
    ngx_flag_t                  shared;
} ngx_ailink_cache_loc_conf_t;


typedef struct {
    ngx_uint_t                  status;     /* NGX_AILINK_CACHE_* */
    ngx_str_t                   guardrails; /* X-AILink-Guardrails */
    ngx_str_t                   key;
    time_t                      ttl;
    u_char                     *buf;        /* what the client was sent */
    size_t                      len;
    size_t                      size;
    ngx_ailink_replay_t         replay;     /* Redis's answers */
    unsigned                    no_cache:1; /* X-AILink-No-Cache: true */
    unsigned                    looked:1;
    unsigned                    store:1;    /* a 2xx to capture */
    unsigned                    failed:1;   /* too large, or no memory */
} ngx_ailink_cache_ctx_t;


static ngx_int_t ngx_ailink_cache_rewrite_handler(ngx_http_request_t *r);
static ngx_int_t ngx_ailink_cache_handler(ngx_http_request_t *r);
static ngx_int_t ngx_ailink_cache_hit(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx, ngx_ailink_cache_ctx_t *cc, ngx_str_t *value);
static ngx_int_t ngx_ailink_cache_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_ailink_cache_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static void ngx_ailink_cache_store(ngx_http_request_t *r,
    ngx_ailink_cache_ctx_t *cc);
static void *ngx_ailink_cache_create_main_conf(ngx_conf_t *cf);
static void *ngx_ailink_cache_create_loc_conf(ngx_conf_t *cf);
static char *ngx_ailink_cache_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_ailink_cache_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_ailink_cache_postconfiguration(ngx_conf_t *cf);
static void ngx_ailink_cache_exit_process(ngx_cycle_t *cycle);


static ngx_command_t  ngx_ailink_cache_commands[] = {

    { ngx_string("ailink_cache_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE23,
      ngx_ailink_cache_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ailink_cache"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ailink_cache_loc_conf_t, enable),
      NULL },

    { ngx_string("ailink_cache_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ailink_cache_loc_conf_t, ttl),
      NULL },

    { ngx_string("ailink_cache_max_entry"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ailink_cache_loc_conf_t, max_entry),
      NULL },

    { ngx_string("ailink_cache_nondeterministic"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ailink_cache_loc_conf_t, nondeterministic),
      NULL },

    { ngx_string("ailink_cache_shared"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ailink_cache_loc_conf_t, shared),
      NULL },

    { ngx_string("ailink_cache_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_ailink_conf_set_handler,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      ngx_ailink_cache_api_handler },

      ngx_null_command
};


static ngx_http_module_t  ngx_ailink_cache_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_ailink_cache_postconfiguration,    /* postconfiguration */

    ngx_ailink_cache_create_main_conf,     /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_ailink_cache_create_loc_conf,      /* create location configuration */
    ngx_ailink_cache_merge_loc_conf        /* merge location configuration */
};


ngx_module_t  ngx_ailink_cache_module = {
    NGX_MODULE_V1,
    &ngx_ailink_cache_module_ctx,          /* module context */
    ngx_ailink_cache_commands,             /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_ailink_cache_exit_process,         /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


static ngx_str_t  ngx_ailink_cache_names[] = {
    ngx_null_string,
    ngx_string("HIT"),
    ngx_string("MISS"),
    ngx_string("BYPASS")
};

/* statistics and the generation: counters that are never evicted */
static ngx_str_t  ngx_ailink_cache_gen_key = ngx_string("cache:gen");

/* in Redis, the generation expires after a year unflushed */
#define NGX_AILINK_CACHE_GEN_TTL  (365 * 86400)

/* backend=redis: the entries */
static ngx_str_t  ngx_ailink_cache_records[] = {
    ngx_string("c:"),
    ngx_null_string
};
static ngx_str_t  ngx_ailink_cache_stat_keys[] = {
    ngx_null_string,
    ngx_string("cache:hits"),
    ngx_string("cache:misses"),
    ngx_string("cache:bypasses"),
    ngx_string("cache:stores"),
    ngx_string("cache:store_skips")
};

#define NGX_AILINK_CACHE_STORES       4
#define NGX_AILINK_CACHE_STORE_SKIPS  5


static void
ngx_ailink_cache_count(ngx_ailink_state_t *st, ngx_uint_t which)
{
    int64_t  v;

    (void) ngx_ailink_state_add(st, &ngx_ailink_cache_stat_keys[which], 1,
                                -1, 0, NGX_AILINK_STATE_PERSIST, &v);
}


static ngx_int_t
ngx_ailink_cache_set_status(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_ailink_cache_ctx_t *cc, ngx_uint_t status)
{
    ngx_str_t  *name;

    cc->status = status;
    name = &ngx_ailink_cache_names[status];

    if (status != NGX_AILINK_CACHE_HIT) {
        ctx->cache_audit.len = sizeof(",\"cache\":\"\"") - 1 + name->len;
        ctx->cache_audit.data = ngx_pnalloc(r->pool, ctx->cache_audit.len);
        if (ctx->cache_audit.data == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf(ctx->cache_audit.data, ",\"cache\":\"%V\"", name);
    }

    return NGX_OK;
}


/*
 * The X-AILink-* headers the key and the bypass read, taken before
 * routing drops them from the request (they never reach an upstream).
 */

static ngx_int_t
ngx_ailink_cache_rewrite_handler(ngx_http_request_t *r)
{
    ngx_table_elt_t              *h;
    ngx_ailink_cache_ctx_t       *cc;
    ngx_ailink_cache_loc_conf_t  *lcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_ailink_cache_module);

    if (!lcf->enable || ngx_http_get_module_ctx(r, ngx_ailink_cache_module)) {
        return NGX_DECLINED;
    }

    cc = ngx_pcalloc(r->pool, sizeof(ngx_ailink_cache_ctx_t));
    if (cc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, cc, ngx_ailink_cache_module);

    h = ngx_ailink_find_header(r, "X-AILink-No-Cache",
                               sizeof("X-AILink-No-Cache") - 1);

    if (h && h->value.len == 4
        && ngx_strncasecmp(h->value.data, (u_char *) "true", 4) == 0)
    {
        cc->no_cache = 1;
    }

    h = ngx_ailink_find_header(r, "X-AILink-Guardrails",
                               sizeof("X-AILink-Guardrails") - 1);
    if (h) {
        cc->guardrails = h->value;
    }

    return NGX_DECLINED;
}


/* Redis answered: the lookup runs again and finds its answers */

static void
ngx_ailink_cache_resume(ngx_http_request_t *r)
{
    ngx_ailink_cache_ctx_t  *cc;

    cc = ngx_http_get_module_ctx(r, ngx_ailink_cache_module);
    cc->looked = 0;

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


/*
 * the generation (gen) or an entry (value): shared memory answers at
 * once; Redis later (NGX_AGAIN), its answers kept for the next run
 */

static ngx_int_t
ngx_ailink_cache_read(ngx_http_request_t *r, ngx_ailink_cache_ctx_t *cc,
    ngx_ailink_state_t *st, int64_t *gen, ngx_str_t *value)
{
    ngx_int_t  rc;

    if (st->ops->get_record_async == NULL) {
        if (value) {
            return ngx_ailink_state_get_record(st, &cc->key, r->pool, value);
        }

        if (ngx_ailink_state_get(st, &ngx_ailink_cache_gen_key, gen)
            != NGX_OK)
        {
            *gen = 0;
        }

        return NGX_OK;
    }

    if (cc->replay.request == NULL
        && ngx_ailink_replay_init(&cc->replay, r, ngx_ailink_cache_resume)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (value) {
        return ngx_ailink_replay_get_record(&cc->replay, st, &cc->key, value);
    }

    rc = ngx_ailink_replay_get(&cc->replay, st, &ngx_ailink_cache_gen_key,
                               gen);

    if (rc == NGX_DECLINED) {
        *gen = 0;
        return NGX_OK;
    }

    return rc;
}


static ngx_int_t
ngx_ailink_cache_handler(ngx_http_request_t *r)
{
    u_char                         digest[NGX_AILINK_SHA256_LEN], *p;
    int64_t                        gen;
    ngx_int_t                      rc;
    ngx_str_t                      value, *project;
    ngx_uint_t                     random;
    ngx_ailink_ctx_t              *ctx;
    ngx_ailink_cache_ctx_t        *cc;
    ngx_ailink_cache_loc_conf_t   *lcf;
    ngx_ailink_cache_main_conf_t  *cmcf;
    static ngx_str_t               shared = ngx_string("*");

    if (r != r->main) {
        return NGX_DECLINED;
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_ailink_cache_module);
    cmcf = ngx_http_get_module_main_conf(r, ngx_ailink_cache_module);

    if (!lcf->enable || cmcf->state == NULL) {
        return NGX_DECLINED;
    }

    ctx = ngx_ailink_get_ctx(r);
    cc = ngx_http_get_module_ctx(r, ngx_ailink_cache_module);

    /* cache_audit: looked up already, before an internal redirect (an
       error page) that cleared the module's context */
    if (ctx == NULL || cc == NULL || cc->looked || ctx->cache_audit.len
        || !ctx->routed || ctx->route != NGX_AILINK_ROUTE_LLM
        || ctx->provider == NULL)
    {
        return NGX_DECLINED;
    }

    cc->looked = 1;

    cc->ttl = lcf->ttl;

    if (ctx->token->cache) {
        /* the token's own TTL; 0: never cached */
        cc->ttl = *(time_t *) ctx->token->cache;
    }

    if (cc->no_cache || cc->ttl == 0) {
        goto bypass;
    }

    rc = ngx_ailink_cache_digest(r, ctx, &cc->guardrails, digest, &random);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc != NGX_OK || (random && !lcf->nondeterministic)) {
        goto bypass;
    }

    rc = ngx_ailink_cache_read(r, cc, cmcf->entries, &gen, NULL);

    if (rc == NGX_AGAIN) {
        return NGX_DONE;
    }

    if (rc == NGX_ERROR) {
        /* Redis cannot say: the cache is not used (it fails open) */
        goto bypass;
    }

    project = lcf->shared ? &shared : &ctx->token->project;

    cc->key.len = sizeof("c:::::") - 1 + NGX_INT64_LEN + project->len
                  + ctx->provider->name.len + 2 * NGX_AILINK_SHA256_LEN;
    cc->key.data = ngx_pnalloc(r->pool, cc->key.len);
    if (cc->key.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(cc->key.data, "c:%L:%V:%V:", gen, project,
                    &ctx->provider->name);
    p = ngx_hex_dump(p, digest, NGX_AILINK_SHA256_LEN);
    cc->key.len = p - cc->key.data;

    rc = ngx_ailink_cache_read(r, cc, cmcf->entries, NULL, &value);

    if (rc == NGX_AGAIN) {
        return NGX_DONE;
    }

    if (rc == NGX_ERROR) {
        goto bypass;
    }

    if (rc == NGX_OK && value.len >= sizeof(ngx_ailink_cache_entry_t)) {
        ngx_ailink_cache_count(cmcf->state, NGX_AILINK_CACHE_HIT);

        rc = ngx_ailink_cache_hit(r, ctx, cc, &value);

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_http_finalize_request(r, rc);
        return NGX_DONE;
    }

    ngx_ailink_cache_count(cmcf->state, NGX_AILINK_CACHE_MISS);

    if (ngx_ailink_cache_set_status(r, ctx, cc, NGX_AILINK_CACHE_MISS)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cc->store = 1;

    return NGX_DECLINED;

bypass:

    ngx_ailink_cache_count(cmcf->state, NGX_AILINK_CACHE_BYPASS);

    if (ngx_ailink_cache_set_status(r, ctx, cc, NGX_AILINK_CACHE_BYPASS)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_DECLINED;
}


/* the entry as the gateway's own response */

static ngx_int_t
ngx_ailink_cache_hit(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_ailink_cache_ctx_t *cc, ngx_str_t *value)
{
    u_char                    *p;
    size_t                     body_len;
    double                     saved;
    ngx_int_t                  rc;
    ngx_buf_t                 *b;
    ngx_chain_t                out;
    ngx_table_elt_t           *h;
    ngx_ailink_conf_t         *conf;
    ngx_ailink_usage_t         usage;
    ngx_ailink_cache_entry_t   e;

    ngx_memcpy(&e, value->data, sizeof(ngx_ailink_cache_entry_t));

    if (e.magic != NGX_AILINK_CACHE_MAGIC
        || e.type_len > value->len - sizeof(ngx_ailink_cache_entry_t))
    {
        return NGX_ERROR;
    }

    body_len = value->len - sizeof(ngx_ailink_cache_entry_t) - e.type_len;

    cc->status = NGX_AILINK_CACHE_HIT;
    ctx->cache_hit = 1;
    ctx->own_response = 1;

    /* the audit: cost 0, and what the upstream would have cost */
    ngx_memzero(&usage, sizeof(ngx_ailink_usage_t));
    usage.prompt = e.prompt;
    usage.completion = e.completion;
    usage.total = e.total;
    usage.cached = e.cached;
    usage.known = e.known ? 1 : 0;

    conf = ngx_ailink_get_conf(r);
    saved = (conf && usage.known) ? ngx_ailink_cost(conf, &ctx->model, &usage)
                                  : 0;

    p = ngx_pnalloc(r->pool, sizeof(",\"cache\":\"HIT\",\"cache_saved_usd\":,"
                                    "\"cache_saved_tokens\":")
                             + 32 + NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->cache_audit.data = p;
    p = ngx_sprintf(p, ",\"cache\":\"HIT\",\"cache_saved_usd\":%.8f,"
                    "\"cache_saved_tokens\":%uL", saved, e.total);
    ctx->cache_audit.len = p - ctx->cache_audit.data;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = body_len;

    if (e.type_len) {
        r->headers_out.content_type.data = value->data
                                           + sizeof(ngx_ailink_cache_entry_t)
                                           + body_len;
        r->headers_out.content_type.len = e.type_len;

    } else if (e.stream) {
        ngx_str_set(&r->headers_out.content_type, "text/event-stream");

    } else {
        ngx_str_set(&r->headers_out.content_type, "application/json");
    }

    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "X-AILink-Provider");
    h->value = ctx->provider->name;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = value->data + sizeof(ngx_ailink_cache_entry_t);
    b->last = b->pos + body_len;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static ngx_int_t
ngx_ailink_cache_header_filter(ngx_http_request_t *r)
{
    ngx_table_elt_t         *h;
    ngx_ailink_ctx_t        *ctx;
    ngx_ailink_cache_ctx_t  *cc;

    cc = (r == r->main) ? ngx_http_get_module_ctx(r, ngx_ailink_cache_module)
                        : NULL;

    if (cc == NULL || cc->status == NGX_AILINK_CACHE_NONE) {
        return ngx_http_next_header_filter(r);
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "X-AILink-Cache");
    h->value = ngx_ailink_cache_names[cc->status];

    if (cc->store) {
        ctx = ngx_ailink_get_ctx(r);

        if (ctx == NULL || ctx->own_response
            || r->headers_out.status < 200 || r->headers_out.status > 299
            || r->header_only)
        {
            cc->store = 0;
        }
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_ailink_cache_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    u_char                       *p;
    size_t                        len, size;
    ngx_chain_t                  *cl;
    ngx_ailink_cache_ctx_t        *cc;
    ngx_ailink_cache_loc_conf_t   *lcf;
    ngx_ailink_cache_main_conf_t  *cmcf;

    cc = (r == r->main) ? ngx_http_get_module_ctx(r, ngx_ailink_cache_module)
                        : NULL;

    if (cc == NULL || !cc->store || cc->failed || in == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_ailink_cache_module);

    for (cl = in; cl; cl = cl->next) {

        if (!ngx_buf_special(cl->buf) && !ngx_buf_in_memory(cl->buf)) {
            cc->failed = 1;
            break;
        }

        len = ngx_buf_in_memory(cl->buf) ? cl->buf->last - cl->buf->pos : 0;

        if (len) {
            if (cc->len + len > lcf->max_entry) {
                cc->failed = 1;
                break;
            }

            if (cc->len + len > cc->size) {
                size = ngx_max(cc->size * 2, 4096);

                while (size < cc->len + len) {
                    size *= 2;
                }

                size = ngx_min(size, lcf->max_entry);
                size += sizeof(ngx_ailink_cache_entry_t);

                p = ngx_pnalloc(r->pool, size);
                if (p == NULL) {
                    cc->failed = 1;
                    break;
                }

                if (cc->buf) {
                    ngx_memcpy(p, cc->buf,
                               sizeof(ngx_ailink_cache_entry_t) + cc->len);
                    ngx_pfree(r->pool, cc->buf);
                }

                cc->buf = p;
                cc->size = size - sizeof(ngx_ailink_cache_entry_t);
            }

            ngx_memcpy(cc->buf + sizeof(ngx_ailink_cache_entry_t) + cc->len,
                       cl->buf->pos, len);
            cc->len += len;
        }

        if (cl->buf->last_buf) {
            ngx_ailink_cache_store(r, cc);
            cc->store = 0;
            break;
        }
    }

    if (cc->failed) {
        cmcf = ngx_http_get_module_main_conf(r, ngx_ailink_cache_module);
        ngx_ailink_cache_count(cmcf->state, NGX_AILINK_CACHE_STORE_SKIPS);
        cc->store = 0;
    }

    return ngx_http_next_body_filter(r, in);
}


static void
ngx_ailink_cache_store(ngx_http_request_t *r, ngx_ailink_cache_ctx_t *cc)
{
    u_char                        *body, *from, *p;
    time_t                         ttl;
    ngx_int_t                      rc;
    ngx_str_t                      value, *type;
    ngx_ailink_ctx_t              *ctx;
    ngx_ailink_cache_entry_t       e;
    ngx_ailink_cache_main_conf_t  *cmcf;
    static u_char                  done[] = "data: [DONE]";
    static u_char                  error[] = "data: {\"error\"";

    ctx = ngx_ailink_get_ctx(r);
    cmcf = ngx_http_get_module_main_conf(r, ngx_ailink_cache_module);

    if (ctx == NULL || cc->buf == NULL || cc->len == 0) {
        return;
    }

    body = cc->buf + sizeof(ngx_ailink_cache_entry_t);

    if (ctx->stream) {
        /* only a stream that came to its end */
        from = body + cc->len - ngx_min(cc->len, 32);

        if (ngx_strlcasestrn(from, body + cc->len, done, sizeof(done) - 2)
            == NULL)
        {
            ngx_ailink_cache_count(cmcf->state,
                                   NGX_AILINK_CACHE_STORE_SKIPS);
            return;
        }

        /* nor one that carries an error: the gateway ends a cut stream
           with an error event and [DONE] */
        if (ngx_strlcasestrn(body, body + cc->len, error, sizeof(error) - 2)
            != NULL)
        {
            ngx_ailink_cache_count(cmcf->state,
                                   NGX_AILINK_CACHE_STORE_SKIPS);
            return;
        }
    }

    type = &r->headers_out.content_type;

    if (type->len > 256) {
        type = NULL;
    }

    if (type && type->len > cc->size - cc->len) {
        p = ngx_pnalloc(r->pool, sizeof(ngx_ailink_cache_entry_t) + cc->len
                                 + type->len);
        if (p == NULL) {
            return;
        }

        ngx_memcpy(p, cc->buf, sizeof(ngx_ailink_cache_entry_t) + cc->len);
        cc->buf = p;
        cc->size = cc->len + type->len;
        body = cc->buf + sizeof(ngx_ailink_cache_entry_t);
    }

    if (type) {
        ngx_memcpy(body + cc->len, type->data, type->len);
    }

    ngx_memzero(&e, sizeof(ngx_ailink_cache_entry_t));
    e.magic = NGX_AILINK_CACHE_MAGIC;
    e.stream = ctx->stream;
    e.known = ctx->usage.known;
    e.prompt = ctx->usage.prompt;
    e.completion = ctx->usage.completion;
    e.total = ctx->usage.total;
    e.cached = ctx->usage.cached;
    e.type_len = type ? type->len : 0;

    ngx_memcpy(cc->buf, &e, sizeof(ngx_ailink_cache_entry_t));

    value.data = cc->buf;
    value.len = sizeof(ngx_ailink_cache_entry_t) + cc->len + e.type_len;

    ttl = cc->ttl;

    /* Redis: created when absent, sent without waiting */
    rc = cmcf->entries->ops->cas_record_async
         ? ngx_ailink_state_cas_record_nowait(cmcf->entries, &cc->key, NULL,
                                              &value, ttl, 0)
         : ngx_ailink_state_set_record(cmcf->entries, &cc->key, &value, ttl);

    if (rc == NGX_OK) {
        ngx_ailink_cache_count(cmcf->state, NGX_AILINK_CACHE_STORES);

    } else {
        ngx_ailink_cache_count(cmcf->state, NGX_AILINK_CACHE_STORE_SKIPS);
    }
}


/* "cache_ttl_secs" of each token in the file: token->cache */

ngx_int_t
ngx_ailink_cache_conf_load(ngx_conf_t *cf, ngx_ailink_conf_t *conf,
    cJSON *root)
{
    cJSON               *list, *item, *v, *id;
    time_t              *ttl;
    ngx_str_t            s;
    ngx_uint_t           i;
    ngx_ailink_token_t  *tok;

    list = ngx_ailink_json_get(root, "tokens");

    cJSON_ArrayForEach(item, list) {
        v = ngx_ailink_json_get(item, "cache_ttl_secs");
        id = ngx_ailink_json_get(item, "id");

        if (v == NULL || !cJSON_IsString(id)) {
            continue;
        }

        ngx_ailink_json_str(id, &s);

        if (!cJSON_IsNumber(v) || v->valuedouble < 0
            || v->valuedouble > 31536000
            || v->valuedouble != (double) (time_t) v->valuedouble)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "ailink_config \"%V\": token \"%V\": "
                               "cache_ttl_secs: seconds, 0 (never cached) "
                               "to 31536000", &conf->file, &s);
            return NGX_ERROR;
        }

        ttl = ngx_palloc(cf->pool, sizeof(time_t));
        if (ttl == NULL) {
            return NGX_ERROR;
        }

        *ttl = (time_t) v->valuedouble;

        tok = conf->tokens.elts;

        for (i = 0; i < conf->tokens.nelts; i++) {
            if (tok[i].id.len == s.len
                && ngx_strncmp(tok[i].id.data, s.data, s.len) == 0)
            {
                tok[i].cache = ttl;
            }
        }
    }

    return NGX_OK;
}


/* a token's "cache_ttl_secs" as the file has it (for the export), or NULL */

cJSON *
ngx_ailink_cache_conf_token_own(ngx_ailink_token_t *tok)
{
    if (tok->cache == NULL) {
        return NULL;
    }

    return cJSON_CreateNumber((double) *(time_t *) tok->cache);
}


/*
 * GET .../stats: statistics; POST .../flush (or DELETE): every entry is
 * dropped.
 * Guarded by an admin key; also the admin API's "cache" resource.
 */

ngx_int_t
ngx_ailink_cache_api_handler(ngx_http_request_t *r)
{
    u_char                        *p;
    int64_t                        v[6], gen;
    ngx_str_t                      json;
    ngx_uint_t                     i;
    ngx_ailink_cache_main_conf_t  *cmcf;

    if (ngx_ailink_admin_key_check(r) != NGX_OK) {
        return ngx_ailink_send_error(r, NGX_HTTP_UNAUTHORIZED,
                                     "invalid_token",
                                     "a valid admin key is required", NULL);
    }

    cmcf = ngx_http_get_module_main_conf(r, ngx_ailink_cache_module);

    if (cmcf->state == NULL) {
        return ngx_ailink_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                     "no \"ailink_cache_zone\"", NULL);
    }

    if ((r->method == NGX_HTTP_POST
         && r->uri.len >= sizeof("/flush") - 1
         && ngx_strncmp(r->uri.data + r->uri.len - (sizeof("/flush") - 1),
                        "/flush", sizeof("/flush") - 1) == 0)
        || r->method == NGX_HTTP_DELETE)
    {
        /* Redis: every gateway's entries (the zone counts this one's) */
        if ((cmcf->entries != cmcf->state
             && ngx_ailink_state_add_async(cmcf->entries,
                                           &ngx_ailink_cache_gen_key, 1, -1,
                                           NGX_AILINK_CACHE_GEN_TTL, 0, &gen,
                                           NULL, NULL, NULL)
                != NGX_OK)
            || ngx_ailink_state_add(cmcf->state, &ngx_ailink_cache_gen_key, 1,
                                    -1, 0, NGX_AILINK_STATE_PERSIST, &gen)
               != NGX_OK)
        {
            return ngx_ailink_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                         "state_unavailable",
                                         cmcf->entries != cmcf->state
                                         ? "the cache cannot be flushed now"
                                         : "the cache zone is full", NULL);
        }

    } else if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
        return ngx_ailink_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                     "method_not_allowed",
                                     "GET .../stats, POST .../flush",
                                     NULL);
    }

    for (i = 1; i < 6; i++) {
        if (ngx_ailink_state_get(cmcf->state, &ngx_ailink_cache_stat_keys[i],
                                 &v[i])
            != NGX_OK)
        {
            v[i] = 0;
        }
    }

    if (ngx_ailink_state_get(cmcf->state, &ngx_ailink_cache_gen_key, &gen)
        != NGX_OK)
    {
        gen = 0;
    }

    json.data = ngx_pnalloc(r->pool, 256 + 7 * NGX_INT64_LEN);
    if (json.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(json.data, "{\"zone\":\"%V\",\"hits\":%L,\"misses\":%L,"
                    "\"bypasses\":%L,\"stores\":%L,\"store_skips\":%L,"
                    "\"flushes\":%L}\n",
                    &cmcf->zone, v[1], v[2], v[3], v[4], v[5], gen);
    json.len = p - json.data;

    return ngx_ailink_send_json(r, NGX_HTTP_OK, &json);
}


static void *
ngx_ailink_cache_create_main_conf(ngx_conf_t *cf)
{
    return ngx_pcalloc(cf->pool, sizeof(ngx_ailink_cache_main_conf_t));
}


static void *
ngx_ailink_cache_create_loc_conf(ngx_conf_t *cf)
{
    ngx_ailink_cache_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_ailink_cache_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->enable = NGX_CONF_UNSET;
    conf->ttl = NGX_CONF_UNSET;
    conf->max_entry = NGX_CONF_UNSET_SIZE;
    conf->nondeterministic = NGX_CONF_UNSET;
    conf->shared = NGX_CONF_UNSET;

    return conf;
}


static char *
ngx_ailink_cache_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_ailink_cache_loc_conf_t  *prev = parent;
    ngx_ailink_cache_loc_conf_t  *conf = child;

    ngx_ailink_cache_main_conf_t  *cmcf;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_sec_value(conf->ttl, prev->ttl, 300);
    ngx_conf_merge_size_value(conf->max_entry, prev->max_entry,
                              256 * 1024);
    ngx_conf_merge_value(conf->nondeterministic, prev->nondeterministic, 0);
    ngx_conf_merge_value(conf->shared, prev->shared, 0);

    if (conf->max_entry < 1024 || conf->max_entry > 64 * 1024 * 1024) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ailink_cache_max_entry\" must be between 1k "
                           "and 64m");
        return NGX_CONF_ERROR;
    }

    if (conf->ttl <= 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ailink_cache_ttl\" must be at least 1s");
        return NGX_CONF_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_ailink_cache_module);

    if (conf->enable && cmcf->state == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ailink_cache on\" needs \"ailink_cache_zone\"");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_ailink_cache_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_ailink_cache_main_conf_t  *cmcf = conf;

    ssize_t     size;
    ngx_str_t  *value;

    if (cmcf->state) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 4
        && ngx_strcmp(value[3].data, "backend=redis") != 0
        && ngx_strcmp(value[3].data, "backend=shm") != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ailink_cache_zone: invalid parameter \"%V\"",
                           &value[3]);
        return NGX_CONF_ERROR;
    }

    size = ngx_parse_size(&value[2]);

    if (size == NGX_ERROR || size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid ailink_cache_zone size \"%V\"",
                           &value[2]);
        return NGX_CONF_ERROR;
    }

    cmcf->zone = value[1];
    cmcf->state = ngx_ailink_state_shm_add(cf, &value[1], size,
                                           &ngx_ailink_cache_module);
    if (cmcf->state == NULL) {
        return NGX_CONF_ERROR;
    }

    cmcf->entries = cmcf->state;

    if (cf->args->nelts == 4
        && ngx_strcmp(value[3].data, "backend=redis") == 0)
    {
        cmcf->entries = ngx_ailink_state_redis_create(cf, cmcf->state,
                                                  ngx_ailink_cache_records);
        if (cmcf->entries == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_ailink_cache_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_ailink_cache_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_REWRITE_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_ailink_cache_rewrite_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_ailink_cache_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_ailink_cache_body_filter;

    return NGX_OK;
}


static void
ngx_ailink_cache_exit_process(ngx_cycle_t *cycle)
{
    ngx_ailink_cache_key_free();
}
