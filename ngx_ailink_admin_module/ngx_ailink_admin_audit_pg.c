
/*
 * Copyright (C) AILink
 *
 * GET /audit and GET /spend answered from PostgreSQL
 * ("ailink_admin_audit_source postgresql"): the table the audit sink
 * ailink_audit_pg fills with every node's records, so one node's admin
 * API sees them all, without the file's 4 MB window.  The parameters,
 * filters, paging, answers and errors are those of the file's
 * (ngx_ailink_admin_audit.c, ngx_ailink_admin_spend.c); PostgreSQL
 * filters, orders, pages and, for /spend, groups and sums.
 *
 * The query runs in nginx's thread pool on a blocking libpq connection of
 * its own, opened and closed by the task (an admin query is rare; the
 * event loop never waits), with the sink's connection parameters and
 * password, connect_timeout and statement_timeout from the sink's
 * timeout=.  Only fixed SQL with parameters (PQexecParams()).  PostgreSQL
 * down or failing: 503 audit_store_unavailable, logged with libpq's
 * message (never the password).
 */


#include "ngx_ailink_admin.h"
#include "ngx_ailink_audit_pg.h"
#include <ngx_thread_pool.h>


#define NGX_AILINK_ADMIN_PG_PARAMS  8


typedef struct {
    ngx_http_request_t         *request;
    ngx_ailink_admin_main_conf_t *amcf;
    const char                 *sql;
    int                         nparams;
    const char                 *params[NGX_AILINK_ADMIN_PG_PARAMS];
    ngx_uint_t                  spend;      /* else /audit */
    ngx_uint_t                  by;
    ngx_int_t                   limit;
    ngx_int_t                   offset;
    PGresult                   *res;        /* the rows, or NULL */
    ngx_uint_t                  empty;      /* no table yet: no rows */
    u_char                      error[256]; /* the first line, or "" */
} ngx_ailink_admin_pg_query_t;


static void ngx_ailink_admin_pg_thread(void *data, ngx_log_t *log);
static void ngx_ailink_admin_pg_error(ngx_ailink_admin_pg_query_t *q,
    const char *what, const char *msg);
static void ngx_ailink_admin_pg_done(ngx_event_t *ev);
static void ngx_ailink_admin_pg_audit_answer(ngx_ailink_admin_pg_query_t *q);
static void ngx_ailink_admin_pg_spend_answer(ngx_ailink_admin_pg_query_t *q);
static ngx_int_t ngx_ailink_admin_pg_post(ngx_ailink_admin_req_t *ar,
    ngx_thread_task_t *task);
static ngx_int_t ngx_ailink_admin_pg_param(ngx_http_request_t *r,
    ngx_str_t *v, const char **param);


/*
 * /audit: the filters as the file's: exact values, and "time" prefixes
 * compared as bytes (COLLATE "C"); $1..$6 NULL when not given
 */

static const char  ngx_ailink_admin_pg_audit_sql[] =
    "SELECT record::text FROM ailink_audit"
    " WHERE ($1::text IS NULL OR token_id = $1)"
    " AND ($2::text IS NULL OR record->>'agent_name' = $2)"
    " AND ($3::text IS NULL OR record->>'session_id' = $3)"
    " AND ($4::text IS NULL OR record->>'status' = $4)"
    " AND ($5::text IS NULL"
         " OR left(record->>'time', length($5)) COLLATE \"C\" >= $5)"
    " AND ($6::text IS NULL"
         " OR left(record->>'time', length($6)) COLLATE \"C\" <= $6)"
    " ORDER BY ts DESC, id DESC LIMIT $7::bigint OFFSET $8::bigint";


/*
 * /spend: the data plane's records (a string token_id), the group's key
 * as the JSON text of its value (ordered as bytes, as the file's), the
 * totals over every group and the number of groups with window sums
 */

#define ngx_ailink_admin_pg_spend_sql(key)                                    \
    "SELECT k, count(*), sum(p), sum(q), round(sum(c), 8),"                   \
    " sum(count(*)) OVER (), sum(sum(p)) OVER (), sum(sum(q)) OVER (),"       \
    " round(sum(sum(c)) OVER (), 8), count(*) OVER () FROM ("                 \
    "SELECT " key " AS k,"                                                    \
    " CASE WHEN jsonb_typeof(record->'prompt_tokens') = 'number'"             \
        " THEN greatest((record->>'prompt_tokens')::numeric, 0)::bigint"      \
        " ELSE 0 END AS p,"                                                   \
    " CASE WHEN jsonb_typeof(record->'completion_tokens') = 'number'"         \
        " THEN greatest((record->>'completion_tokens')::numeric, 0)::bigint"  \
        " ELSE 0 END AS q,"                                                   \
    " CASE WHEN jsonb_typeof(record->'cost_usd') = 'number'"                  \
        " THEN greatest((record->>'cost_usd')::numeric, 0)"                   \
        " ELSE 0 END AS c"                                                    \
    " FROM ailink_audit"                                                      \
    " WHERE jsonb_typeof(record->'token_id') = 'string'"                      \
    " AND length(record->>'time') >= 10"                                      \
    " AND ($1::text IS NULL"                                                  \
         " OR left(record->>'time', length($1)) COLLATE \"C\" >= $1)"         \
    " AND ($2::text IS NULL"                                                  \
         " OR left(record->>'time', length($2)) COLLATE \"C\" <= $2)"         \
    " AND ($3::text IS NULL OR token_id = $3)"                                \
    " AND ($4::text IS NULL OR record->>'project' = $4)"                      \
    " AND ($5::text IS NULL OR model = $5)"                                   \
    ") s GROUP BY k ORDER BY k COLLATE \"C\" LIMIT 4096"


/* by: 0 day, 1 token, 2 project, 3 model (ngx_ailink_admin_spend.c) */

static const char  *ngx_ailink_admin_pg_spend_sqls[] = {
    ngx_ailink_admin_pg_spend_sql("to_jsonb(left(record->>'time', 10))::text"),
    ngx_ailink_admin_pg_spend_sql("(record->'token_id')::text"),
    ngx_ailink_admin_pg_spend_sql("coalesce((record->'project')::text,"
                                  " 'null')"),
    ngx_ailink_admin_pg_spend_sql("coalesce((record->'model')::text, 'null')")
};


static const char  *ngx_ailink_admin_pg_spend_names[] = {
    "day", "token_id", "project", "model"
};


ngx_int_t
ngx_ailink_admin_audit_pg(ngx_ailink_admin_req_t *ar)
{
    ngx_str_t                     arg;
    ngx_uint_t                    i;
    ngx_http_request_t           *r;
    ngx_thread_task_t            *task;
    ngx_ailink_admin_pg_query_t  *q;

    static const char  *names[] = {
        "token_id", "agent_name", "session_id", "status", "since", "until"
    };

    r = ar->request;

    task = ngx_thread_task_alloc(r->pool,
                                 sizeof(ngx_ailink_admin_pg_query_t));
    if (task == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    q = task->ctx;
    q->limit = 100;
    q->offset = 0;

    if (ngx_http_arg(r, (u_char *) "limit", 5, &arg) == NGX_OK) {
        q->limit = ngx_atoi(arg.data, arg.len);
    }

    if (ngx_http_arg(r, (u_char *) "offset", 6, &arg) == NGX_OK) {
        q->offset = ngx_atoi(arg.data, arg.len);
    }

    if (q->limit <= 0 || q->limit > 1000 || q->offset < 0) {
        return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                     "invalid_request",
                                     "limit is 1 to 1000, offset 0 or more");
    }

    for (i = 0; i < 6; i++) {
        if (ngx_http_arg(r, (u_char *) names[i], ngx_strlen(names[i]), &arg)
            != NGX_OK)
        {
            arg.len = 0;
        }

        if (ngx_ailink_admin_pg_param(r, &arg, &q->params[i]) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    q->params[6] = ngx_pnalloc(r->pool, 2 * (NGX_INT_T_LEN + 1));
    if (q->params[6] == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    q->params[7] = (char *) ngx_sprintf((u_char *) q->params[6], "%i%Z",
                                        q->limit);
    (void) ngx_sprintf((u_char *) q->params[7], "%i%Z", q->offset);

    q->sql = ngx_ailink_admin_pg_audit_sql;
    q->nparams = 8;

    return ngx_ailink_admin_pg_post(ar, task);
}


ngx_int_t
ngx_ailink_admin_spend_pg(ngx_ailink_admin_req_t *ar, ngx_uint_t by,
    ngx_str_t *f)
{
    ngx_uint_t                    i;
    ngx_http_request_t           *r;
    ngx_thread_task_t            *task;
    ngx_ailink_admin_pg_query_t  *q;

    r = ar->request;

    task = ngx_thread_task_alloc(r->pool,
                                 sizeof(ngx_ailink_admin_pg_query_t));
    if (task == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    q = task->ctx;
    q->spend = 1;
    q->by = by;

    for (i = 0; i < 5; i++) {
        if (ngx_ailink_admin_pg_param(r, &f[i], &q->params[i]) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    q->sql = ngx_ailink_admin_pg_spend_sqls[by];
    q->nparams = 5;

    return ngx_ailink_admin_pg_post(ar, task);
}


/* a filter: NULL when not given (or empty), else a C string of the pool */

static ngx_int_t
ngx_ailink_admin_pg_param(ngx_http_request_t *r, ngx_str_t *v,
    const char **param)
{
    u_char  *p;

    *param = NULL;

    if (v->len == 0) {
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, v->len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_cpystrn(p, v->data, v->len + 1);
    *param = (const char *) p;

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_admin_pg_post(ngx_ailink_admin_req_t *ar, ngx_thread_task_t *task)
{
    ngx_http_request_t           *r;
    ngx_ailink_admin_pg_query_t  *q;

    r = ar->request;
    q = task->ctx;

    q->request = r;
    q->amcf = ar->amcf;

    task->handler = ngx_ailink_admin_pg_thread;
    task->event.data = q;
    task->event.handler = ngx_ailink_admin_pg_done;

    if (ngx_thread_task_post(ar->amcf->tp, task) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ailink admin: %s query posted to PostgreSQL",
                   q->spend ? "spend" : "audit");

    r->main->blocked++;
    r->main->count++;
    r->aio = 1;

    /* answered from the event handler, which finalizes the extra count */
    ar->sent_rc = NGX_DONE;

    return NGX_DECLINED;
}


/* in the thread pool: connect, query, keep the result, disconnect */

static void
ngx_ailink_admin_pg_thread(void *data, ngx_log_t *log)
{
    ngx_ailink_admin_pg_query_t *q = data;

    char      *state;
    PGconn    *conn;
    PGresult  *res;

    conn = PQconnectdbParams(q->amcf->pg_keywords, q->amcf->pg_values, 0);

    if (conn == NULL) {
        ngx_ailink_admin_pg_error(q, "connect", "out of memory");
        return;
    }

    if (PQstatus(conn) != CONNECTION_OK) {
        ngx_ailink_admin_pg_error(q, "connect", PQerrorMessage(conn));
        PQfinish(conn);
        return;
    }

    res = PQexecParams(conn, q->sql, q->nparams, NULL, q->params, NULL, NULL,
                       0);

    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
        q->res = res;
        PQfinish(conn);
        return;
    }

    state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

    if (state && ngx_strcmp(state, "42P01") == 0) {
        /* no table yet: the sink has not connected; nothing to read */
        q->empty = 1;

    } else {
        ngx_ailink_admin_pg_error(q, "query",
                                  res ? PQresultErrorMessage(res)
                                      : PQerrorMessage(conn));
    }

    PQclear(res);
    PQfinish(conn);
}


/* libpq's message (it goes with the connection), its first line */

static void
ngx_ailink_admin_pg_error(ngx_ailink_admin_pg_query_t *q, const char *what,
    const char *msg)
{
    u_char  *p, *last;

    last = ngx_snprintf(q->error, sizeof(q->error) - 1, "%s: %s", what,
                        (msg && *msg) ? msg : "unknown error");

    for (p = q->error; p < last && *p != LF && *p != CR; p++) {
        /* void */
    }

    *p = '\0';
}


static void
ngx_ailink_admin_pg_done(ngx_event_t *ev)
{
    PGresult                     *res;
    ngx_connection_t             *c;
    ngx_http_request_t           *r;
    ngx_ailink_admin_pg_query_t  *q;

    q = ev->data;
    r = q->request;
    c = r->connection;

    r->main->blocked--;
    r->aio = 0;

    if (q->error[0]) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "ailink admin: audit store %V unavailable (%s)",
                      &q->amcf->pg_name, q->error);
        ngx_http_finalize_request(r,
            ngx_ailink_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "audit_store_unavailable",
                                  "the audit store (PostgreSQL) cannot be "
                                  "read", NULL));
        ngx_http_run_posted_requests(c);
        return;
    }

    /* q is the request's: gone once the answer finalized the request */
    res = q->res;

    if (q->spend) {
        ngx_ailink_admin_pg_spend_answer(q);

    } else {
        ngx_ailink_admin_pg_audit_answer(q);
    }

    PQclear(res);

    ngx_http_run_posted_requests(c);
}


static void
ngx_ailink_admin_pg_audit_answer(ngx_ailink_admin_pg_query_t *q)
{
    int                      i, n;
    cJSON                   *out, *list, *rec;
    ngx_http_request_t      *r;
    ngx_ailink_admin_req_t  *ar;

    r = q->request;
    ar = ngx_http_get_module_ctx(r, ngx_ailink_admin_module);

    out = cJSON_CreateObject();
    list = cJSON_AddArrayToObject(out, "data");

    if (list == NULL) {
        cJSON_Delete(out);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    n = q->res ? PQntuples(q->res) : 0;

    for (i = 0; i < n; i++) {
        rec = cJSON_Parse(PQgetvalue(q->res, i, 0));

        if (rec) {
            cJSON_AddItemToArray(list, rec);
        }
    }

    cJSON_AddNumberToObject(out, "limit", q->limit);
    cJSON_AddNumberToObject(out, "offset", q->offset);

    ngx_ailink_admin_reply(ar, NGX_HTTP_OK, out);
    ngx_http_finalize_request(r, ar->sent_rc);
}


#define ngx_ailink_admin_pg_v(row, col)                                       \
    (PQgetisnull(q->res, row, col) ? "0" : PQgetvalue(q->res, row, col))


static u_char *
ngx_ailink_admin_pg_totals(u_char *p, const char *requests,
    const char *prompt, const char *completion, const char *cost)
{
    return ngx_sprintf(p, "\"requests\":%s,\"prompt_tokens\":%s,"
                       "\"completion_tokens\":%s,\"cost_usd\":%s}",
                       requests, prompt, completion, cost);
}


static void
ngx_ailink_admin_pg_spend_answer(ngx_ailink_admin_pg_query_t *q)
{
    int                  i, j, n;
    u_char              *p;
    size_t               len;
    ngx_str_t            json;
    ngx_http_request_t  *r;

    r = q->request;
    n = q->res ? PQntuples(q->res) : 0;

    if (n && PQnfields(q->res) != 10) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    len = sizeof("{\"object\":\"spend\",\"group_by\":\"token_id\","
                 "\"data\":[],\"total\":{},"
                 "\"window_bytes\":null,\"truncated\":false}\n")
          + 160 + 4 * NGX_INT64_LEN;

    for (i = 0; i < n; i++) {
        len += 160;

        for (j = 0; j < 5; j++) {
            len += PQgetlength(q->res, i, j);
        }
    }

    if (n) {
        for (j = 5; j < 9; j++) {
            len += PQgetlength(q->res, 0, j);
        }
    }

    json.data = ngx_pnalloc(r->pool, len);
    if (json.data == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = ngx_sprintf(json.data, "{\"object\":\"spend\",\"group_by\":\"%s\","
                    "\"data\":[", ngx_ailink_admin_pg_spend_names[q->by]);

    for (i = 0; i < n; i++) {
        p = ngx_sprintf(p, "%s{\"%s\":%s,", i ? "," : "",
                        ngx_ailink_admin_pg_spend_names[q->by],
                        PQgetvalue(q->res, i, 0));
        p = ngx_ailink_admin_pg_totals(p, ngx_ailink_admin_pg_v(i, 1),
                                       ngx_ailink_admin_pg_v(i, 2),
                                       ngx_ailink_admin_pg_v(i, 3),
                                       ngx_ailink_admin_pg_v(i, 4));
    }

    p = ngx_cpymem(p, "],\"total\":{", sizeof("],\"total\":{") - 1);

    if (n) {
        p = ngx_ailink_admin_pg_totals(p, ngx_ailink_admin_pg_v(0, 5),
                                       ngx_ailink_admin_pg_v(0, 6),
                                       ngx_ailink_admin_pg_v(0, 7),
                                       ngx_ailink_admin_pg_v(0, 8));

    } else {
        p = ngx_ailink_admin_pg_totals(p, "0", "0", "0", "0.00000000");
    }

    /* no window: the whole table; truncated past 4096 groups */
    p = ngx_sprintf(p, ",\"window_bytes\":null,\"truncated\":%s}\n",
                    (n && ngx_atoi((u_char *) ngx_ailink_admin_pg_v(0, 9),
                                   PQgetlength(q->res, 0, 9))
                          > 4096)
                    ? "true" : "false");

    json.len = p - json.data;

    ngx_http_finalize_request(r, ngx_ailink_send_json(r, NGX_HTTP_OK, &json));
}


/*
 * At postconfiguration: the sink's connection parameters (its password
 * among them) and this module's bounds, connect_timeout and
 * statement_timeout, both from the sink's timeout=
 */

char *
ngx_ailink_admin_audit_pg_init(ngx_conf_t *cf,
    ngx_ailink_admin_main_conf_t *amcf)
{
    u_char                      *p;
    ngx_uint_t                   i, k, n;
    ngx_ailink_audit_pg_conf_t  *pcf;

    pcf = ngx_http_conf_get_module_main_conf(cf, ngx_ailink_audit_pg_module);

    if (pcf == NULL || !pcf->configured) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"ailink_admin_audit_source postgresql\" in line %ui "
                      "reads the PostgreSQL of \"ailink_audit_pg\", which "
                      "is not configured", amcf->pg_line);
        return NGX_CONF_ERROR;
    }

    for (n = 0; pcf->keywords[n]; n++) { /* void */ }

    amcf->pg_keywords = ngx_pcalloc(cf->pool, (n + 3) * sizeof(char *));
    amcf->pg_values = ngx_pcalloc(cf->pool, (n + 3) * sizeof(char *));
    p = ngx_pnalloc(cf->pool, 2 * NGX_INT_T_LEN + 64);

    if (amcf->pg_keywords == NULL || amcf->pg_values == NULL || p == NULL) {
        return NGX_CONF_ERROR;
    }

    k = 0;

    for (i = 0; i < n; i++) {
        if (ngx_strcmp(pcf->keywords[i], "connect_timeout") == 0
            || ngx_strcmp(pcf->keywords[i], "options") == 0)
        {
            continue;
        }

        amcf->pg_keywords[k] = pcf->keywords[i];
        amcf->pg_values[k++] = pcf->values[i];
    }

    /* libpq's connect_timeout counts whole seconds, 2 at least */
    amcf->pg_keywords[k] = "connect_timeout";
    amcf->pg_values[k++] = (char *) p;
    p = ngx_sprintf(p, "%M%Z", ngx_max((pcf->timeout + 999) / 1000, 2));

    amcf->pg_keywords[k] = "options";
    amcf->pg_values[k++] = (char *) p;
    (void) ngx_sprintf(p, "-c statement_timeout=%M%Z", pcf->timeout);

    amcf->pg_name = pcf->name;

    return NGX_CONF_OK;
}
