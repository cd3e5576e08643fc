
/*
 * Copyright (C) AILink
 *
 * GET /metrics: the metrics zone in the Prometheus text exposition format
 * (version 0.0.4).  Every family has its HELP and TYPE lines, label values
 * are escaped (backslash, double quote, line feed), histograms have
 * cumulative buckets, _sum and _count.  The counters are read without a
 * lock: a scrape concurrent with requests sees each counter at some value
 * it had, and a histogram's _count is its +Inf bucket.
 */


#include "ngx_ailink_metrics.h"
#include "ngx_ailink_breaker.h"
#include "ngx_ailink_auth.h"


#define NGX_AILINK_METRICS_CHUNK  65536


typedef struct {
    ngx_http_request_t         *r;
    ngx_chain_t                *out;
    ngx_chain_t               **last;
    ngx_buf_t                  *b;
} ngx_ailink_metrics_out_t;


/* the histogram buckets' upper bounds in seconds, as "le" shows them */
static const char  *ngx_ailink_metrics_le[NGX_AILINK_METRICS_BUCKETS] = {
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5",
    "5", "10", "30", "60"
};

static const char  *ngx_ailink_metrics_cache_names[] = {
    "hit", "miss", "bypass"
};

static const char  *ngx_ailink_metrics_breaker_names[] = {
    "closed", "open", "half_open"
};

static const char  *ngx_ailink_metrics_token_types[] = {
    "prompt", "completion", "cached"
};


/* room for n more bytes */

static u_char *
ngx_ailink_metrics_reserve(ngx_ailink_metrics_out_t *o, size_t n)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (o->b && (size_t) (o->b->end - o->b->last) >= n) {
        return o->b->last;
    }

    b = ngx_create_temp_buf(o->r->pool, ngx_max(n, NGX_AILINK_METRICS_CHUNK));
    if (b == NULL) {
        return NULL;
    }

    cl = ngx_alloc_chain_link(o->r->pool);
    if (cl == NULL) {
        return NULL;
    }

    cl->buf = b;
    cl->next = NULL;
    *o->last = cl;
    o->last = &cl->next;
    o->b = b;

    return b->last;
}


static ngx_int_t
ngx_ailink_metrics_family(ngx_ailink_metrics_out_t *o, const char *name,
    const char *type, const char *help)
{
    u_char  *p;
    size_t   n;

    n = 2 * ngx_strlen(name) + ngx_strlen(type) + ngx_strlen(help)
        + sizeof("# HELP  \n# TYPE  \n");

    p = ngx_ailink_metrics_reserve(o, n);
    if (p == NULL) {
        return NGX_ERROR;
    }

    o->b->last = ngx_sprintf(p, "# HELP %s %s\n# TYPE %s %s\n",
                             name, help, name, type);

    return NGX_OK;
}


/* a label value, escaped; p has room for twice its length */

static u_char *
ngx_ailink_metrics_escape(u_char *p, u_char *s, size_t len)
{
    u_char  *last;

    for (last = s + len; s < last; s++) {
        switch (*s) {
        case '\\':
            *p++ = '\\';
            *p++ = '\\';
            break;
        case '"':
            *p++ = '\\';
            *p++ = '"';
            break;
        case '\n':
            *p++ = '\\';
            *p++ = 'n';
            break;
        default:
            *p++ = *s;
        }
    }

    return p;
}


/* the label values of a series' key */

static void
ngx_ailink_metrics_labels(ngx_ailink_metrics_series_t *s, ngx_str_t *v,
    ngx_uint_t n)
{
    u_char      *p, *last;
    ngx_uint_t   i;

    p = s->key;
    last = s->key + s->key_len;

    for (i = 0; i < n; i++) {
        if (p < last) {
            v[i].len = *p++;
            v[i].data = p;
            p += v[i].len;

        } else {
            ngx_str_null(&v[i]);
        }
    }
}


/*
 * One sample: name{names[0]="v[0]",...,extra} value\n.  The name and
 * extra are literals of ours; extra is "" or more labels, ",k=\"v\"".
 */

static ngx_int_t
ngx_ailink_metrics_sample(ngx_ailink_metrics_out_t *o, const char *name,
    const char **names, ngx_str_t *v, ngx_uint_t n, const char *extra,
    const char *value)
{
    u_char      *p;
    size_t       len;
    ngx_uint_t   i;

    len = ngx_strlen(name) + ngx_strlen(extra) + ngx_strlen(value)
          + sizeof("{} \n");

    for (i = 0; i < n; i++) {
        len += ngx_strlen(names[i]) + sizeof(",=\"\"") + 2 * v[i].len;
    }

    p = ngx_ailink_metrics_reserve(o, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(p, name, ngx_strlen(name));
    *p++ = '{';

    for (i = 0; i < n; i++) {
        if (i) {
            *p++ = ',';
        }

        p = ngx_cpymem(p, names[i], ngx_strlen(names[i]));
        *p++ = '=';
        *p++ = '"';
        p = ngx_ailink_metrics_escape(p, v[i].data, v[i].len);
        *p++ = '"';
    }

    p = ngx_cpymem(p, extra, ngx_strlen(extra));
    *p++ = '}';
    *p++ = ' ';
    p = ngx_cpymem(p, value, ngx_strlen(value));
    *p++ = '\n';

    o->b->last = p;

    return NGX_OK;
}


static const char *
ngx_ailink_metrics_uint(u_char *buf, uint64_t n)
{
    *ngx_ailink_write_uint(buf, n) = '\0';

    return (const char *) buf;
}


/* n / 10^digits, as a decimal */

static const char *
ngx_ailink_metrics_fixed(u_char *buf, uint64_t n, ngx_uint_t digits)
{
    if (digits == 3) {
        *ngx_sprintf(buf, "%uL.%03uL", n / 1000, n % 1000) = '\0';

    } else {
        *ngx_sprintf(buf, "%uL.%09uL", n / 1000000000, n % 1000000000)
            = '\0';
    }

    return (const char *) buf;
}


static ngx_int_t
ngx_ailink_metrics_requests(ngx_ailink_metrics_out_t *o,
    ngx_ailink_metrics_sh_t *sh)
{
    u_char                        extra[64], num[NGX_INT64_LEN + 1];
    ngx_str_t                     v[3];
    ngx_uint_t                    i;
    ngx_ailink_metrics_series_t  *s;

    static const char  *names[] = { "provider", "model", "project" };

    if (ngx_ailink_metrics_family(o, "ailink_requests_total", "counter",
            "Requests the gateway handled, by status code, provider, "
            "model and token project.")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < sh->nslots; i++) {
        s = &sh->slots[i];

        if (!s->ready || s->kind != NGX_AILINK_MK_REQUESTS) {
            continue;
        }

        ngx_ailink_metrics_labels(s, v, 3);
        *ngx_sprintf(extra, ",code=\"%ui\",class=\"%uixx\"",
                     (ngx_uint_t) s->code, (ngx_uint_t) s->code / 100)
            = '\0';

        if (ngx_ailink_metrics_sample(o, "ailink_requests_total", names, v, 3,
                                      (char *) extra,
                                      ngx_ailink_metrics_uint(num, s->v[0]))
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_metrics_usage(ngx_ailink_metrics_out_t *o,
    ngx_ailink_metrics_sh_t *sh)
{
    u_char                        num[NGX_INT64_LEN + 16], extra[32];
    ngx_str_t                     v[3];
    ngx_uint_t                    i, t;
    ngx_ailink_metrics_series_t  *s;

    static const char  *names[] = { "provider", "model", "project" };

    if (ngx_ailink_metrics_family(o, "ailink_tokens_total", "counter",
            "Tokens the providers reported, by type (prompt, completion; "
            "cached is part of prompt), provider, model and token project.")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (t = 0; t < 3; t++) {
        for (i = 0; i < sh->nslots; i++) {
            s = &sh->slots[i];

            if (!s->ready || s->kind != NGX_AILINK_MK_USAGE) {
                continue;
            }

            ngx_ailink_metrics_labels(s, v, 3);
            *ngx_sprintf(extra, ",type=\"%s\"",
                         ngx_ailink_metrics_token_types[t]) = '\0';

            if (ngx_ailink_metrics_sample(o, "ailink_tokens_total", names, v,
                    3, (char *) extra,
                    ngx_ailink_metrics_uint(num,
                                            s->v[NGX_AILINK_MV_PROMPT + t]))
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    if (ngx_ailink_metrics_family(o, "ailink_cost_usd_total", "counter",
            "What the requests cost at the gateway's prices, in USD, by "
            "provider, model and token project (cache hits cost 0).")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < sh->nslots; i++) {
        s = &sh->slots[i];

        if (!s->ready || s->kind != NGX_AILINK_MK_USAGE) {
            continue;
        }

        ngx_ailink_metrics_labels(s, v, 3);

        if (ngx_ailink_metrics_sample(o, "ailink_cost_usd_total", names, v, 3,
                "", ngx_ailink_metrics_fixed(num, s->v[NGX_AILINK_MV_COST], 9))
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_metrics_histogram(ngx_ailink_metrics_out_t *o,
    ngx_ailink_metrics_sh_t *sh, const char *name, const char *help,
    ngx_uint_t base, ngx_uint_t sum, ngx_uint_t skip_empty)
{
    u_char                        num[NGX_INT64_LEN + 16], sname[64];
    u_char                        extra[32];
    uint64_t                      n, count;
    ngx_str_t                     v[3];
    ngx_uint_t                    i, b;
    ngx_ailink_metrics_series_t  *s;

    static const char  *names[] = { "provider", "model", "project" };

    if (ngx_ailink_metrics_family(o, name, "histogram", help) != NGX_OK) {
        return NGX_ERROR;
    }

    for (i = 0; i < sh->nslots; i++) {
        s = &sh->slots[i];

        if (!s->ready || s->kind != NGX_AILINK_MK_USAGE) {
            continue;
        }

        /* one read of each bucket: _count is what they add up to */
        count = 0;

        for (b = 0; b <= NGX_AILINK_METRICS_BUCKETS; b++) {
            count += s->v[base + b];
        }

        if (count == 0 && skip_empty) {
            continue;
        }

        ngx_ailink_metrics_labels(s, v, 3);
        *ngx_sprintf(sname, "%s_bucket", name) = '\0';

        n = 0;

        for (b = 0; b <= NGX_AILINK_METRICS_BUCKETS; b++) {
            n += s->v[base + b];

            if (b == NGX_AILINK_METRICS_BUCKETS) {
                /* +Inf: what was counted above, whatever came since */
                n = count;
            }

            *ngx_sprintf(extra, ",le=\"%s\"",
                         b < NGX_AILINK_METRICS_BUCKETS
                         ? ngx_ailink_metrics_le[b] : "+Inf") = '\0';

            if (ngx_ailink_metrics_sample(o, (char *) sname, names, v, 3,
                                          (char *) extra,
                                          ngx_ailink_metrics_uint(num, n))
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        *ngx_sprintf(sname, "%s_sum", name) = '\0';

        if (ngx_ailink_metrics_sample(o, (char *) sname, names, v, 3, "",
                ngx_ailink_metrics_fixed(num, s->v[sum], 3))
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        *ngx_sprintf(sname, "%s_count", name) = '\0';

        if (ngx_ailink_metrics_sample(o, (char *) sname, names, v, 3, "",
                                      ngx_ailink_metrics_uint(num, count))
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_metrics_errors(ngx_ailink_metrics_out_t *o,
    ngx_ailink_metrics_sh_t *sh)
{
    u_char                        num[NGX_INT64_LEN + 1], extra[32];
    ngx_str_t                     v[3];
    ngx_uint_t                    i;
    ngx_ailink_metrics_series_t  *s;

    static const char  *enames[] = { "error" };
    static const char  *pnames[] = { "policy", "action", "result" };

    if (ngx_ailink_metrics_family(o, "ailink_errors_total", "counter",
            "Requests answered with one of the gateway's own error codes "
            "(the envelope's error.code), by code and status.")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < sh->nslots; i++) {
        s = &sh->slots[i];

        if (!s->ready || s->kind != NGX_AILINK_MK_ERRORS) {
            continue;
        }

        ngx_ailink_metrics_labels(s, v, 1);
        *ngx_sprintf(extra, ",code=\"%ui\"", (ngx_uint_t) s->code) = '\0';

        if (ngx_ailink_metrics_sample(o, "ailink_errors_total", enames, v, 1,
                                      (char *) extra,
                                      ngx_ailink_metrics_uint(num, s->v[0]))
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (ngx_ailink_metrics_family(o, "ailink_policy_decisions_total",
            "counter",
            "Policy decisions, by policy, action (deny, rate_limit, "
            "spend_cap, ...) and result (as the audit record's "
            "policies[].result).")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < sh->nslots; i++) {
        s = &sh->slots[i];

        if (!s->ready || s->kind != NGX_AILINK_MK_POLICY) {
            continue;
        }

        ngx_ailink_metrics_labels(s, v, 3);

        if (ngx_ailink_metrics_sample(o, "ailink_policy_decisions_total",
                                      pnames, v, 3, "",
                                      ngx_ailink_metrics_uint(num, s->v[0]))
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_metrics_cache_breakers(ngx_ailink_metrics_out_t *o,
    ngx_ailink_metrics_sh_t *sh)
{
    u_char                 num[NGX_INT64_LEN + 1], extra[32];
    time_t                 left;
    int64_t                value;
    ngx_str_t              scope;
    ngx_uint_t             i, state;
    ngx_ailink_conf_t     *conf;
    ngx_ailink_state_t    *st;
    ngx_ailink_provider_t *prov;

    static const char  *unames[] = { "upstream" };

    if (ngx_ailink_metrics_family(o, "ailink_cache_requests_total",
            "counter",
            "Response cache lookups, by result (hit, miss, bypass).")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < 3; i++) {
        *ngx_sprintf(extra, "result=\"%s\"",
                     ngx_ailink_metrics_cache_names[i]) = '\0';

        if (ngx_ailink_metrics_sample(o, "ailink_cache_requests_total", NULL,
                                      NULL, 0, (char *) extra,
                                      ngx_ailink_metrics_uint(num,
                                                              sh->cache[i]))
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    st = ngx_ailink_breaker_state(o->r);
    conf = ngx_ailink_get_conf(o->r);

    if (st == NULL || conf == NULL) {
        return NGX_OK;
    }

    if (ngx_ailink_metrics_family(o, "ailink_breaker_state", "gauge",
            "Each upstream's circuit breaker: 1 for its current state "
            "(closed, open, half_open), 0 for the others.")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    prov = conf->providers.elts;

    for (i = 0; i < conf->providers.nelts; i++) {
        scope.len = sizeof("u:") - 1 + prov[i].name.len;
        scope.data = ngx_pnalloc(o->r->pool, scope.len);
        if (scope.data == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf(scope.data, "u:%V", &prov[i].name);

        state = ngx_ailink_breaker_status(st, o->r->pool, &scope, -1, &left,
                                          &value);

        for (value = 0; value < 3; value++) {
            *ngx_sprintf(extra, ",state=\"%s\"",
                         ngx_ailink_metrics_breaker_names[value]) = '\0';

            if (ngx_ailink_metrics_sample(o, "ailink_breaker_state", unames,
                                          &prov[i].name, 1, (char *) extra,
                                          (ngx_uint_t) value == state
                                          ? "1" : "0")
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


/* the readiness checks of the multi-node tier's connections, as gauges */

static ngx_int_t
ngx_ailink_metrics_backends(ngx_ailink_metrics_out_t *o)
{
    ngx_str_t           names[8];
    ngx_uint_t          up[8], i, n;
    static const char  *bnames[] = { "backend" };

    n = ngx_ailink_ready_backends(o->r, names, up, 8);

    if (n == 0) {
        return NGX_OK;
    }

    if (ngx_ailink_metrics_family(o, "ailink_backend_up", "gauge",
            "Each configured backend's connection in the worker that "
            "answered: 1 connected, 0 not.")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        if (ngx_ailink_metrics_sample(o, "ailink_backend_up", bnames,
                                      &names[i], 1, "", up[i] ? "1" : "0")
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_metrics_self(ngx_ailink_metrics_out_t *o,
    ngx_ailink_metrics_sh_t *sh)
{
    u_char  *p;

    p = ngx_ailink_metrics_reserve(o, 1024 + 4 * NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    o->b->last = ngx_sprintf(p,
        "# HELP ailink_metrics_series Series in the metrics zone.\n"
        "# TYPE ailink_metrics_series gauge\n"
        "ailink_metrics_series %uA\n"
        "# HELP ailink_metrics_series_max The zone's max_series: past it, "
        "new label sets are counted as \"other\".\n"
        "# TYPE ailink_metrics_series_max gauge\n"
        "ailink_metrics_series_max %ui\n"
        "# HELP ailink_metrics_overflow_total Series updates counted in an "
        "\"other\" series (past max_series, or a label value that is "
        "longer than 128 bytes or not UTF-8).\n"
        "# TYPE ailink_metrics_overflow_total counter\n"
        "ailink_metrics_overflow_total %uA\n"
        "# HELP ailink_metrics_dropped_total Series updates lost: the "
        "zone had no room even for \"other\".\n"
        "# TYPE ailink_metrics_dropped_total counter\n"
        "ailink_metrics_dropped_total %uA\n",
        sh->nseries, sh->max, sh->overflow, sh->dropped);

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_metrics_collect(ngx_ailink_metrics_out_t *o,
    ngx_ailink_metrics_main_conf_t *mmcf)
{
    u_char                          *p;
    ngx_str_t                        text;
    ngx_uint_t                       i;
    ngx_ailink_metrics_collector_t  *c;

    c = mmcf->collectors.elts;

    for (i = 0; i < mmcf->collectors.nelts; i++) {
        ngx_str_null(&text);

        if (c[i].handler(o->r, c[i].data, &text) != NGX_OK) {
            return NGX_ERROR;
        }

        if (text.len == 0) {
            continue;
        }

        p = ngx_ailink_metrics_reserve(o, text.len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        o->b->last = ngx_cpymem(p, text.data, text.len);
    }

    return NGX_OK;
}


ngx_int_t
ngx_ailink_metrics_handler(ngx_http_request_t *r)
{
    off_t                            len;
    ngx_int_t                        rc;
    ngx_chain_t                     *cl;
    ngx_ailink_metrics_sh_t         *sh;
    ngx_ailink_metrics_out_t         o;
    ngx_ailink_metrics_main_conf_t  *mmcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_ailink_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                     "method_not_allowed", "GET or HEAD",
                                     NULL);
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    mmcf = ngx_http_get_module_main_conf(r, ngx_ailink_metrics_module);
    sh = mmcf->sh;

    if (sh == NULL) {
        return ngx_ailink_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                     "service_unavailable",
                                     "no ailink_metrics_zone is configured",
                                     NULL);
    }

    o.r = r;
    o.out = NULL;
    o.last = &o.out;
    o.b = NULL;

    if (ngx_ailink_metrics_requests(&o, sh) != NGX_OK
        || ngx_ailink_metrics_usage(&o, sh) != NGX_OK
        || ngx_ailink_metrics_histogram(&o, sh,
               "ailink_request_duration_seconds",
               "Time from the request's first byte to its log phase, by "
               "provider, model and token project.",
               NGX_AILINK_MV_LATENCY, NGX_AILINK_MV_LATENCY_SUM, 0)
           != NGX_OK
        || ngx_ailink_metrics_histogram(&o, sh,
               "ailink_time_to_first_token_seconds",
               "Streams: time to the first event from the provider, by "
               "provider, model and token project.",
               NGX_AILINK_MV_TTFT, NGX_AILINK_MV_TTFT_SUM, 1)
           != NGX_OK
        || ngx_ailink_metrics_errors(&o, sh) != NGX_OK
        || ngx_ailink_metrics_cache_breakers(&o, sh) != NGX_OK
        || ngx_ailink_metrics_backends(&o) != NGX_OK
        || ngx_ailink_metrics_collect(&o, mmcf) != NGX_OK
        || ngx_ailink_metrics_self(&o, sh) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = 0;

    for (cl = o.out; cl; cl = cl->next) {
        len += cl->buf->last - cl->buf->pos;
        cl->buf->memory = 1;

        if (cl->next == NULL) {
            cl->buf->last_buf = 1;
            cl->buf->last_in_chain = 1;
        }
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = len;
    ngx_str_set(&r->headers_out.content_type,
                "text/plain; version=0.0.4; charset=utf-8");
    r->headers_out.content_type_len = sizeof("text/plain") - 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, o.out);
}
