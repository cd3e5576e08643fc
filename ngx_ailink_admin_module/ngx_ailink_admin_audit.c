
/*
 * Copyright (C) AILink
 *
 * GET /audit: the audit records of "ailink_admin_audit_source", newest
 * first, filtered by token_id, agent_name, session_id, status, since and
 * until (RFC 3339, compared as text), paged with limit (at most 1000) and
 * offset.  The file is read in nginx's thread pool, never on the event
 * loop, and only its last 4 MB: older records are not searched (the
 * embedded default keeps no index).  "ailink_admin_audit_source
 * postgresql" asks PostgreSQL instead: ngx_ailink_admin_audit_pg.c.
 */


#include "ngx_ailink_admin.h"
#include <ngx_thread_pool.h>


/* in the thread pool: the last NGX_AILINK_AUDIT_TAIL bytes of the file */

void
ngx_ailink_admin_audit_read(void *data, ngx_log_t *log)
{
    ngx_ailink_admin_audit_read_t  *t = data;

    int          fd;
    off_t        size, from;
    ssize_t      n;
    struct stat  st;

    fd = open((char *) t->path.data, O_RDONLY);
    if (fd == -1 || fstat(fd, &st) == -1) {
        t->err = errno;
        if (fd != -1) {
            close(fd);
        }
        return;
    }

    size = st.st_size;
    from = size > NGX_AILINK_AUDIT_TAIL ? size - NGX_AILINK_AUDIT_TAIL : 0;

    t->cut = (from > 0);
    t->data.len = 0;

    while (from + (off_t) t->data.len < size) {
        n = pread(fd, t->data.data + t->data.len,
                  (size_t) (size - from) - t->data.len,
                  from + t->data.len);
        if (n <= 0) {
            break;
        }

        t->data.len += n;
    }

    close(fd);
    t->err = 0;
}


static ngx_uint_t
ngx_ailink_admin_audit_match(cJSON *rec, const char *key, ngx_str_t *want)
{
    cJSON  *v;
    u_char  buf[32];

    if (want->len == 0) {
        return 1;
    }

    v = ngx_ailink_json_get(rec, key);

    if (cJSON_IsString(v)) {
        return ngx_strlen(v->valuestring) == want->len
               && ngx_strncmp(v->valuestring, want->data, want->len) == 0;
    }

    if (cJSON_IsNumber(v)) {
        return (size_t) (ngx_sprintf(buf, "%i", (ngx_int_t) v->valuedouble)
                         - buf) == want->len
               && ngx_strncmp(buf, want->data, want->len) == 0;
    }

    return 0;
}


static void
ngx_ailink_admin_audit_done(ngx_event_t *ev)
{
    u_char                         *p, *first, *last, *line;
    cJSON                          *out, *list, *rec, *t;
    ngx_str_t                       token, agent, session, status, since,
                                    until, arg;
    ngx_int_t                       limit, offset, skipped, n;
    ngx_connection_t               *c;
    ngx_http_request_t             *r;
    ngx_ailink_admin_req_t         *ar;
    ngx_ailink_admin_audit_read_t  *rd;

    rd = ev->data;
    r = rd->request;
    c = r->connection;

    r->main->blocked--;
    r->aio = 0;

    ar = ngx_http_get_module_ctx(r, ngx_ailink_admin_module);

    if (rd->err) {
        ngx_log_error(NGX_LOG_ERR, c->log, rd->err,
                      "ailink admin: cannot read the audit file \"%V\"",
                      &rd->path);
        ngx_http_finalize_request(r,
            ngx_ailink_send_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                  "audit_unavailable", "the audit file "
                                  "cannot be read", NULL));
        ngx_http_run_posted_requests(c);
        return;
    }

#define ngx_ailink_admin_audit_arg(name, var)                                 \
    if (ngx_http_arg(r, (u_char *) name, sizeof(name) - 1, &var) != NGX_OK) { \
        ngx_str_null(&var);                                                   \
    }

    ngx_ailink_admin_audit_arg("token_id", token);
    ngx_ailink_admin_audit_arg("agent_name", agent);
    ngx_ailink_admin_audit_arg("session_id", session);
    ngx_ailink_admin_audit_arg("status", status);
    ngx_ailink_admin_audit_arg("since", since);
    ngx_ailink_admin_audit_arg("until", until);

    limit = 100;
    offset = 0;

    if (ngx_http_arg(r, (u_char *) "limit", 5, &arg) == NGX_OK) {
        limit = ngx_atoi(arg.data, arg.len);
    }

    if (ngx_http_arg(r, (u_char *) "offset", 6, &arg) == NGX_OK) {
        offset = ngx_atoi(arg.data, arg.len);
    }

    if (limit <= 0 || limit > 1000 || offset < 0) {
        ngx_http_finalize_request(r,
            ngx_ailink_send_error(r, NGX_HTTP_BAD_REQUEST, "invalid_request",
                                  "limit is 1 to 1000, offset 0 or more",
                                  NULL));
        ngx_http_run_posted_requests(c);
        return;
    }

    out = cJSON_CreateObject();
    list = cJSON_AddArrayToObject(out, "data");

    skipped = 0;
    n = 0;
    first = rd->data.data;
    last = first + rd->data.len;

    /* the tail may start inside a record: from the first whole line */
    if (rd->cut) {
        first = ngx_strlchr(first, last, '\n');
        first = first ? first + 1 : last;
    }

    /* newest first: the lines from the end */
    while (last > first && n < limit) {
        p = last - 1;

        while (p > first && p[-1] != '\n') {
            p--;
        }

        line = p;
        p = last;
        last = (line > first) ? line - 1 : first;

        if (p - line < 2 || line[0] != '{') {
            continue;
        }

        *(p[-1] == '\n' ? p - 1 : p) = '\0';

        rec = cJSON_Parse((char *) line);
        if (rec == NULL) {
            continue;
        }

        t = ngx_ailink_json_get(rec, "time");

        if (!ngx_ailink_admin_audit_match(rec, "token_id", &token)
            || !ngx_ailink_admin_audit_match(rec, "agent_name", &agent)
            || !ngx_ailink_admin_audit_match(rec, "session_id", &session)
            || !ngx_ailink_admin_audit_match(rec, "status", &status)
            || (since.len && (!cJSON_IsString(t)
                              || ngx_strncmp(t->valuestring, since.data,
                                             since.len) < 0))
            || (until.len && (!cJSON_IsString(t)
                              || ngx_strncmp(t->valuestring, until.data,
                                             until.len) > 0))
            || skipped++ < offset)
        {
            cJSON_Delete(rec);
            continue;
        }

        cJSON_AddItemToArray(list, rec);
        n++;
    }

    cJSON_AddNumberToObject(out, "limit", limit);
    cJSON_AddNumberToObject(out, "offset", offset);

    ngx_ailink_admin_reply(ar, NGX_HTTP_OK, out);
    ngx_http_finalize_request(r, ar->sent_rc);
    ngx_http_run_posted_requests(c);
}


ngx_int_t
ngx_ailink_admin_audit(ngx_ailink_admin_req_t *ar)
{
    ngx_http_request_t             *r;
    ngx_thread_task_t              *task;
    ngx_ailink_admin_audit_read_t  *rd;

    r = ar->request;

    if (r->method != NGX_HTTP_GET || ar->id.len) {
        return ngx_ailink_admin_fail(ar, NGX_HTTP_NOT_ALLOWED,
                                     "method_not_allowed",
                                     "GET /audit?token_id=&agent_name=&"
                                     "session_id=&status=&since=&until=&"
                                     "limit=&offset=");
    }

    if (ar->amcf->audit_pg) {
        return ngx_ailink_admin_audit_pg(ar);
    }

    if (ar->amcf->audit_file.len == 0 || ar->amcf->tp == NULL) {
        return ngx_ailink_admin_fail(ar, NGX_HTTP_NOT_FOUND, "not_found",
                                     "no \"ailink_admin_audit_source\" is "
                                     "configured");
    }

    task = ngx_thread_task_alloc(r->pool,
                                 sizeof(ngx_ailink_admin_audit_read_t));
    if (task == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rd = task->ctx;
    rd->request = r;
    rd->path = ar->amcf->audit_file;

    /* the buffer is taken before the thread runs: the pool is not its */
    rd->data.data = ngx_pnalloc(r->pool, NGX_AILINK_AUDIT_TAIL + 1);
    if (rd->data.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    task->handler = ngx_ailink_admin_audit_read;
    task->event.data = rd;
    task->event.handler = ngx_ailink_admin_audit_done;

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
