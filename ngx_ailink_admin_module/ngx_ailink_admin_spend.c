
/*
 * Copyright (C) AILink
 *
 * GET /spend?group_by=token|project|model|day&since=&until=&token_id=
 *           &project=&model=
 *
 * Totals per group (requests, prompt_tokens, completion_tokens,
 * cost_usd) of the data plane's audit records (those with a token_id),
 * read from "ailink_admin_audit_source" like GET /audit: its last 4 MB,
 * read and summed in nginx's thread pool, never on the event loop.  The
 * thread builds no tree and allocates nothing: the lines are scanned in
 * place (ngx_ailink_json_scan()) into a table taken beforehand.  since
 * and until compare the records' "time" as text (RFC 3339 prefixes: a
 * day "2026-12-04" or an instant).  With "ailink_admin_audit_source
 * postgresql" the arguments checked here go to PostgreSQL, which sums
 * (ngx_ailink_admin_audit_pg.c).
 */


#include "ngx_ailink_admin.h"
#include <ngx_thread_pool.h>


#define NGX_AILINK_SPEND_GROUPS  4096           /* at most, per answer */
#define NGX_AILINK_SPEND_SLOTS   8192           /* the hash table */


enum {
    NGX_AILINK_SPEND_TIME = 0,
    NGX_AILINK_SPEND_TOKEN,
    NGX_AILINK_SPEND_PROJECT,
    NGX_AILINK_SPEND_MODEL,
    NGX_AILINK_SPEND_PROMPT,
    NGX_AILINK_SPEND_COMPLETION,
    NGX_AILINK_SPEND_COST,
    NGX_AILINK_SPEND_NFIELDS
};


typedef struct {
    ngx_str_t                   key;        /* raw: a JSON value's text */
    ngx_uint_t                  requests;
    uint64_t                    prompt;
    uint64_t                    completion;
    double                      cost;
} ngx_ailink_spend_group_t;


typedef struct {
    ngx_ailink_admin_audit_read_t  read;    /* first: the reader's */

    ngx_uint_t                  by;         /* a field above: the group */
    ngx_str_t                   since;
    ngx_str_t                   until;
    ngx_str_t                   token;
    ngx_str_t                   project;
    ngx_str_t                   model;

    ngx_ailink_spend_group_t   *groups;
    ngx_uint_t                  ngroups;
    ngx_ailink_spend_group_t  **slots;
    ngx_ailink_spend_group_t    total;
    ngx_uint_t                  truncated;  /* more groups than fit */
} ngx_ailink_spend_t;


static const char  *ngx_ailink_spend_names[] = {
    "day", "token_id", "project", "model"
};


/* a raw JSON string value "..." equals s (ids carry no escapes) */

static ngx_uint_t
ngx_ailink_spend_is(ngx_str_t *raw, ngx_str_t *s)
{
    return raw->len == s->len + 2 && raw->data[0] == '"'
           && ngx_strncmp(raw->data + 1, s->data, s->len) == 0;
}


static uint64_t
ngx_ailink_spend_uint(ngx_str_t *raw)
{
    ngx_int_t  n;

    if (raw->len == 0 || raw->data[0] < '0' || raw->data[0] > '9') {
        return 0;
    }

    n = ngx_atoi(raw->data, raw->len);

    return n == NGX_ERROR ? 0 : (uint64_t) n;
}


static double
ngx_ailink_spend_double(ngx_str_t *raw)
{
    u_char  *p, *last;
    double   v, scale;

    /* "%.8f" as the audit writes it: digits, a point, digits */
    v = 0;
    p = raw->data;
    last = p + raw->len;

    while (p < last && *p >= '0' && *p <= '9') {
        v = v * 10 + (*p++ - '0');
    }

    if (p < last && *p == '.') {
        for (p++, scale = 0.1; p < last && *p >= '0' && *p <= '9';
             p++, scale /= 10)
        {
            v += (*p - '0') * scale;
        }
    }

    return v;
}


static ngx_ailink_spend_group_t *
ngx_ailink_spend_group(ngx_ailink_spend_t *sp, ngx_str_t *key)
{
    ngx_uint_t                  h, i;
    ngx_ailink_spend_group_t   *g;

    h = ngx_hash_key(key->data, key->len) % NGX_AILINK_SPEND_SLOTS;

    for (i = 0; i < NGX_AILINK_SPEND_SLOTS; i++) {
        g = sp->slots[(h + i) % NGX_AILINK_SPEND_SLOTS];

        if (g == NULL) {
            break;
        }

        if (g->key.len == key->len
            && ngx_memcmp(g->key.data, key->data, key->len) == 0)
        {
            return g;
        }
    }

    if (sp->ngroups == NGX_AILINK_SPEND_GROUPS) {
        sp->truncated = 1;
        return NULL;
    }

    g = &sp->groups[sp->ngroups++];
    g->key = *key;
    sp->slots[(h + i) % NGX_AILINK_SPEND_SLOTS] = g;

    return g;
}


static void
ngx_ailink_spend_add(ngx_ailink_spend_group_t *g, ngx_ailink_json_field_t *f)
{
    g->requests++;
    g->prompt += ngx_ailink_spend_uint(&f[NGX_AILINK_SPEND_PROMPT].value);
    g->completion += ngx_ailink_spend_uint(
                         &f[NGX_AILINK_SPEND_COMPLETION].value);
    g->cost += ngx_ailink_spend_double(&f[NGX_AILINK_SPEND_COST].value);
}


/* in the thread pool: read the tail, then sum it, line by line */

static void
ngx_ailink_spend_thread(void *data, ngx_log_t *log)
{
    ngx_ailink_spend_t *sp = data;

    u_char                    *p, *last, *line;
    ngx_str_t                  text, key, *t;
    ngx_ailink_spend_group_t  *g;
    ngx_ailink_json_field_t    f[NGX_AILINK_SPEND_NFIELDS];

    ngx_ailink_admin_audit_read(&sp->read, log);

    if (sp->read.err) {
        return;
    }

    ngx_str_set(&f[NGX_AILINK_SPEND_TIME].key, "time");
    ngx_str_set(&f[NGX_AILINK_SPEND_TOKEN].key, "token_id");
    ngx_str_set(&f[NGX_AILINK_SPEND_PROJECT].key, "project");
    ngx_str_set(&f[NGX_AILINK_SPEND_MODEL].key, "model");
    ngx_str_set(&f[NGX_AILINK_SPEND_PROMPT].key, "prompt_tokens");
    ngx_str_set(&f[NGX_AILINK_SPEND_COMPLETION].key, "completion_tokens");
    ngx_str_set(&f[NGX_AILINK_SPEND_COST].key, "cost_usd");

    p = sp->read.data.data;
    last = p + sp->read.data.len;

    /* the tail may start inside a record: from the first whole line */
    if (sp->read.cut) {
        p = ngx_strlchr(p, last, '\n');
        p = p ? p + 1 : last;
    }

    for ( /* void */ ; p < last; p = line + 1) {
        line = ngx_strlchr(p, last, '\n');
        if (line == NULL) {
            line = last;
        }

        text.data = p;
        text.len = line - p;

        if (text.len < 2 || p[0] != '{'
            || ngx_ailink_json_scan(&text, f, NGX_AILINK_SPEND_NFIELDS)
               != NGX_OK)
        {
            continue;
        }

        /* the data plane's records: those of a token */
        if (f[NGX_AILINK_SPEND_TOKEN].value.len < 2
            || f[NGX_AILINK_SPEND_TOKEN].value.data[0] != '"')
        {
            continue;
        }

        t = &f[NGX_AILINK_SPEND_TIME].value;

        if (t->len < 12 || t->data[0] != '"') {
            continue;
        }

        if ((sp->since.len
             && ngx_strncmp(t->data + 1, sp->since.data,
                            ngx_min(sp->since.len, t->len - 2)) < 0)
            || (sp->until.len
                && ngx_strncmp(t->data + 1, sp->until.data,
                               ngx_min(sp->until.len, t->len - 2)) > 0)
            || (sp->token.len
                && !ngx_ailink_spend_is(&f[NGX_AILINK_SPEND_TOKEN].value,
                                        &sp->token))
            || (sp->project.len
                && !ngx_ailink_spend_is(&f[NGX_AILINK_SPEND_PROJECT].value,
                                        &sp->project))
            || (sp->model.len
                && !ngx_ailink_spend_is(&f[NGX_AILINK_SPEND_MODEL].value,
                                        &sp->model)))
        {
            continue;
        }

        if (sp->by == NGX_AILINK_SPEND_TIME) {
            /* "YYYY-MM-DD: the day, its closing quote added on output */
            key.data = t->data;
            key.len = 11;

        } else {
            key = f[sp->by].value;

            if (key.len == 0) {
                ngx_str_set(&key, "null");
            }
        }

        g = ngx_ailink_spend_group(sp, &key);

        if (g) {
            ngx_ailink_spend_add(g, f);
        }

        ngx_ailink_spend_add(&sp->total, f);
    }
}


static int ngx_libc_cdecl
ngx_ailink_spend_cmp(const void *one, const void *two)
{
    const ngx_ailink_spend_group_t  *a = one, *b = two;
    int                              rc;

    rc = ngx_memcmp(a->key.data, b->key.data, ngx_min(a->key.len,
                                                      b->key.len));

    return rc ? rc : (int) a->key.len - (int) b->key.len;
}


static u_char *
ngx_ailink_spend_totals(u_char *p, ngx_ailink_spend_group_t *g)
{
    return ngx_sprintf(p, "\"requests\":%ui,\"prompt_tokens\":%uL,"
                       "\"completion_tokens\":%uL,\"cost_usd\":%.8f}",
                       g->requests, g->prompt, g->completion, g->cost);
}


static void
ngx_ailink_spend_done(ngx_event_t *ev)
{
    u_char                    *p;
    size_t                     len;
    ngx_str_t                  json;
    ngx_uint_t                 i;
    ngx_connection_t          *c;
    ngx_http_request_t        *r;
    ngx_ailink_spend_t        *sp;
    ngx_ailink_spend_group_t  *g;

    sp = ev->data;
    r = sp->read.request;
    c = r->connection;

    r->main->blocked--;
    r->aio = 0;

    if (sp->read.err) {
        ngx_log_error(NGX_LOG_ERR, c->log, sp->read.err,
                      "ailink admin: cannot read the audit file \"%V\"",
                      &sp->read.path);
        ngx_http_finalize_request(r,
            ngx_ailink_send_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                  "audit_unavailable", "the audit file "
                                  "cannot be read", NULL));
        ngx_http_run_posted_requests(c);
        return;
    }

    g = sp->groups;

    ngx_qsort(g, sp->ngroups, sizeof(ngx_ailink_spend_group_t),
              ngx_ailink_spend_cmp);

    len = sizeof("{\"object\":\"spend\",\"group_by\":\"token_id\","
                 "\"since\":,\"until\":,\"data\":[],\"total\":{},"
                 "\"window_bytes\":,\"truncated\":false}\n")
          + 2 * NGX_INT_T_LEN + 2 * 128;

    for (i = 0; i <= sp->ngroups; i++) {
        len += 160 + 3 * NGX_INT64_LEN + (i < sp->ngroups ? g[i].key.len : 0);
    }

    json.data = ngx_pnalloc(r->pool, len);
    if (json.data == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        ngx_http_run_posted_requests(c);
        return;
    }

    p = ngx_sprintf(json.data, "{\"object\":\"spend\",\"group_by\":\"%s\","
                    "\"data\":[", ngx_ailink_spend_names[sp->by]);

    for (i = 0; i < sp->ngroups; i++) {
        p = ngx_sprintf(p, "%s{\"%s\":%V%s,", i ? "," : "",
                        ngx_ailink_spend_names[sp->by], &g[i].key,
                        sp->by == NGX_AILINK_SPEND_TIME ? "\"" : "");
        p = ngx_ailink_spend_totals(p, &g[i]);
    }

    p = ngx_cpymem(p, "],\"total\":{", sizeof("],\"total\":{") - 1);
    p = ngx_ailink_spend_totals(p, &sp->total);
    p = ngx_sprintf(p, ",\"window_bytes\":%uz,\"truncated\":%s}\n",
                    (size_t) NGX_AILINK_AUDIT_TAIL,
                    sp->truncated ? "true" : "false");

    json.len = p - json.data;

    ngx_http_finalize_request(r, ngx_ailink_send_json(r, NGX_HTTP_OK, &json));
    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_ailink_spend_arg(ngx_http_request_t *r, const char *name, ngx_str_t *v,
    size_t max)
{
    if (ngx_http_arg(r, (u_char *) name, ngx_strlen(name), v) != NGX_OK) {
        ngx_str_null(v);
        return NGX_OK;
    }

    return v->len <= max ? NGX_OK : NGX_ERROR;
}


ngx_int_t
ngx_ailink_admin_spend(ngx_ailink_admin_req_t *ar)
{
    ngx_str_t            by, f[5];
    ngx_uint_t           i;
    ngx_http_request_t  *r;
    ngx_thread_task_t   *task;
    ngx_ailink_spend_t  *sp;

    r = ar->request;

    if ((r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD)
        || ar->id.len)
    {
        return ngx_ailink_admin_fail(ar, NGX_HTTP_NOT_ALLOWED,
                                     "method_not_allowed",
                                     "GET /spend?group_by=token|project|"
                                     "model|day&since=&until=&token_id=&"
                                     "project=&model=");
    }

    if ((ar->amcf->audit_file.len == 0 && !ar->amcf->audit_pg)
        || ar->amcf->tp == NULL)
    {
        return ngx_ailink_admin_fail(ar, NGX_HTTP_NOT_FOUND, "not_found",
                                     "no \"ailink_admin_audit_source\" is "
                                     "configured");
    }

    task = ngx_thread_task_alloc(r->pool, sizeof(ngx_ailink_spend_t));
    if (task == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    sp = task->ctx;

    ngx_str_null(&by);
    (void) ngx_ailink_spend_arg(r, "group_by", &by, 16);

    sp->by = NGX_AILINK_SPEND_TOKEN;

    if (by.len) {
        static ngx_str_t  names[] = {
            ngx_string("day"), ngx_string("token"), ngx_string("project"),
            ngx_string("model")
        };

        for (i = 0; i < 4; i++) {
            if (by.len == names[i].len
                && ngx_strncmp(by.data, names[i].data, by.len) == 0)
            {
                break;
            }
        }

        if (i == 4) {
            return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request",
                                         "group_by is token, project, "
                                         "model or day");
        }

        sp->by = i;
    }

    if (ngx_ailink_spend_arg(r, "since", &sp->since, 64) != NGX_OK
        || ngx_ailink_spend_arg(r, "until", &sp->until, 64) != NGX_OK
        || ngx_ailink_spend_arg(r, "token_id", &sp->token, 256) != NGX_OK
        || ngx_ailink_spend_arg(r, "project", &sp->project, 256) != NGX_OK
        || ngx_ailink_spend_arg(r, "model", &sp->model, 256) != NGX_OK)
    {
        return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                     "invalid_request",
                                     "a filter is too long");
    }

    if (ar->amcf->audit_pg) {
        f[0] = sp->since;
        f[1] = sp->until;
        f[2] = sp->token;
        f[3] = sp->project;
        f[4] = sp->model;

        return ngx_ailink_admin_spend_pg(ar, sp->by, f);
    }

    sp->read.request = r;
    sp->read.path = ar->amcf->audit_file;

    /* everything the thread uses is taken now: the pool is not its */
    sp->read.data.data = ngx_pnalloc(r->pool, NGX_AILINK_AUDIT_TAIL + 1);
    sp->groups = ngx_pcalloc(r->pool, NGX_AILINK_SPEND_GROUPS
                                      * sizeof(ngx_ailink_spend_group_t));
    sp->slots = ngx_pcalloc(r->pool, NGX_AILINK_SPEND_SLOTS
                                     * sizeof(ngx_ailink_spend_group_t *));

    if (sp->read.data.data == NULL || sp->groups == NULL
        || sp->slots == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    task->handler = ngx_ailink_spend_thread;
    task->event.data = sp;
    task->event.handler = ngx_ailink_spend_done;

    if (ngx_thread_task_post(ar->amcf->tp, task) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->main->blocked++;
    r->main->count++;
    r->aio = 1;

    /* answered from the event handler, which finalizes the extra count */
    ar->sent_rc = NGX_DONE;

    return NGX_DECLINED;
}
