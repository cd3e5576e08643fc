
/*
 * Copyright (C) AILink
 *
 * The audit sink's connection to PostgreSQL, one per worker, on nginx's
 * event loop: PQconnectStart()/PQconnectPoll(), the schema set up, a batch
 * built (from the queue here, from a spool file in
 * ngx_ailink_audit_pg_spool.c) and sent with PQsendQueryParams(), its
 * results read, the batch acknowledged or refused, the timeouts, and the
 * reconnect with its backoff.  A libpq call that would wait is left to
 * the socket's events instead.
 */


#include "ngx_ailink_common.h"
#include "ngx_ailink_audit_pg.h"


static void ngx_ailink_audit_pg_connect_step(ngx_ailink_audit_pg_t *pg);
static void ngx_ailink_audit_pg_connected(ngx_ailink_audit_pg_t *pg);
static ngx_int_t ngx_ailink_audit_pg_wrap(ngx_ailink_audit_pg_t *pg);
static void ngx_ailink_audit_pg_unwrap(ngx_ailink_audit_pg_t *pg);
static void ngx_ailink_audit_pg_fail(ngx_ailink_audit_pg_t *pg,
    const char *what, const char *why);
static void ngx_ailink_audit_pg_set_up(ngx_ailink_audit_pg_t *pg,
    ngx_uint_t up);
static ngx_int_t ngx_ailink_audit_pg_flush_out(ngx_ailink_audit_pg_t *pg);
static void ngx_ailink_audit_pg_read_handler(ngx_event_t *ev);
static void ngx_ailink_audit_pg_write_handler(ngx_event_t *ev);
static void ngx_ailink_audit_pg_done(ngx_ailink_audit_pg_t *pg);
static void ngx_ailink_audit_pg_ack(ngx_ailink_audit_pg_t *pg);
static void ngx_ailink_audit_pg_refused(ngx_ailink_audit_pg_t *pg);
static ngx_int_t ngx_ailink_audit_pg_send(ngx_ailink_audit_pg_t *pg,
    u_char *stream);
static ngx_int_t ngx_ailink_audit_pg_queue_batch(ngx_ailink_audit_pg_t *pg);
static void ngx_ailink_audit_pg_notice(void *arg, const char *message);


/*
 * Schema version 1.  The advisory lock serializes the workers (and the
 * gateways) that start together: concurrent CREATE TABLE IF NOT EXISTS
 * of one table can fail on the catalog's unique index.
 */

static const char  ngx_ailink_audit_pg_setup_sql[] =
    "BEGIN;"
    "SELECT pg_advisory_xact_lock(4107735120);"
    "CREATE TABLE IF NOT EXISTS ailink_audit_schema ("
        "version integer PRIMARY KEY,"
        "applied timestamptz NOT NULL DEFAULT now());"
    "CREATE TABLE IF NOT EXISTS ailink_audit ("
        "id bigserial PRIMARY KEY,"
        "stream text NOT NULL,"
        "seq bigint NOT NULL,"
        "ts timestamptz NOT NULL,"
        "request_id text,"
        "token_id text,"
        "project text,"
        "method text,"
        "path text,"
        "provider text,"
        "model text,"
        "status integer,"
        "total_tokens bigint,"
        "cost_usd numeric,"
        "record jsonb NOT NULL,"
        "UNIQUE (stream, seq));"
    "CREATE INDEX IF NOT EXISTS ailink_audit_ts ON ailink_audit (ts);"
    "CREATE INDEX IF NOT EXISTS ailink_audit_token ON ailink_audit "
        "(token_id, ts);"
    "INSERT INTO ailink_audit_schema (version) VALUES (1) "
        "ON CONFLICT DO NOTHING;"
    "COMMIT;";


/* $1 the stream, $2 the first record's seq, $3 the records, in order */

static const char  ngx_ailink_audit_pg_insert_sql[] =
    "INSERT INTO ailink_audit (stream, seq, ts, request_id, token_id,"
        " project, method, path, provider, model, status, total_tokens,"
        " cost_usd, record) "
    "SELECT $1, $2::bigint + t.o - 1, (t.r->>'time')::timestamptz,"
        " t.r->>'request_id', t.r->>'token_id', t.r->>'project',"
        " t.r->>'method', t.r->>'path', t.r->>'provider', t.r->>'model',"
        " (t.r->>'status')::integer, (t.r->>'total_tokens')::bigint,"
        " (t.r->>'cost_usd')::numeric, t.r "
    "FROM jsonb_array_elements($3::jsonb) WITH ORDINALITY AS t(r, o) "
    "ORDER BY t.o "
    "ON CONFLICT (stream, seq) DO NOTHING";


void
ngx_ailink_audit_pg_connect(ngx_ailink_audit_pg_t *pg)
{
    ngx_ailink_audit_pg_conf_t  *pcf;

    pcf = pg->conf;

    pg->conn = PQconnectStartParams(pcf->keywords, pcf->values, 0);

    if (pg->conn == NULL) {
        ngx_ailink_audit_pg_fail(pg, "connect", "out of memory");
        return;
    }

    if (PQstatus(pg->conn) == CONNECTION_BAD) {
        ngx_ailink_audit_pg_fail(pg, "connect", PQerrorMessage(pg->conn));
        return;
    }

    (void) PQsetNoticeProcessor(pg->conn, ngx_ailink_audit_pg_notice, pg);

    pg->state = NGX_AILINK_AUDIT_PG_CONNECTING;

    ngx_add_timer(&pg->timeout, pcf->timeout);

    /* libpq: poll as if PQconnectPoll() had asked for writing */

    if (ngx_ailink_audit_pg_wrap(pg) != NGX_OK
        || ngx_add_event(pg->c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT)
           != NGX_OK)
    {
        ngx_ailink_audit_pg_fail(pg, "connect", "no nginx connection");
    }
}


static void
ngx_ailink_audit_pg_connect_step(ngx_ailink_audit_pg_t *pg)
{
    ngx_int_t                  rc;
    PostgresPollingStatusType  st;

    /*
     * PQconnectPoll() may close the socket and open another (the next
     * address, SSL refused): the events go while the socket is still open
     */
    ngx_ailink_audit_pg_unwrap(pg);

    st = PQconnectPoll(pg->conn);

    switch (st) {

    case PGRES_POLLING_OK:
        ngx_ailink_audit_pg_connected(pg);
        return;

    case PGRES_POLLING_READING:
    case PGRES_POLLING_WRITING:

        if (ngx_ailink_audit_pg_wrap(pg) != NGX_OK) {
            ngx_ailink_audit_pg_fail(pg, "connect", "no nginx connection");
            return;
        }

        if (st == PGRES_POLLING_READING) {
            rc = ngx_add_event(pg->c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT);

        } else {
            rc = ngx_add_event(pg->c->write, NGX_WRITE_EVENT,
                               NGX_LEVEL_EVENT);
        }

        if (rc != NGX_OK) {
            ngx_ailink_audit_pg_fail(pg, "connect", "cannot add an event");
        }

        return;

    default:
        ngx_ailink_audit_pg_fail(pg, "connect", PQerrorMessage(pg->conn));
        return;
    }
}


static void
ngx_ailink_audit_pg_connected(ngx_ailink_audit_pg_t *pg)
{
    if (PQsetnonblocking(pg->conn, 1) != 0
        || ngx_ailink_audit_pg_wrap(pg) != NGX_OK)
    {
        ngx_ailink_audit_pg_fail(pg, "connect", PQerrorMessage(pg->conn));
        return;
    }

    /* level-triggered: PQconsumeInput() may leave data in the socket */

    if (ngx_add_event(pg->c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT)
        != NGX_OK)
    {
        ngx_ailink_audit_pg_fail(pg, "connect", "cannot add an event");
        return;
    }

    if (!PQsendQuery(pg->conn, ngx_ailink_audit_pg_setup_sql)) {
        ngx_ailink_audit_pg_fail(pg, "schema setup",
                                 PQerrorMessage(pg->conn));
        return;
    }

    pg->state = NGX_AILINK_AUDIT_PG_SETUP;
    pg->failed = 0;

    if (pg->timeout.timer_set) {
        ngx_del_timer(&pg->timeout);
    }

    ngx_add_timer(&pg->timeout, pg->conf->timeout);

    (void) ngx_ailink_audit_pg_flush_out(pg);
}


static ngx_int_t
ngx_ailink_audit_pg_wrap(ngx_ailink_audit_pg_t *pg)
{
    int                fd;
    ngx_connection_t  *c;

    fd = PQsocket(pg->conn);

    if (fd == -1) {
        return NGX_ERROR;
    }

    c = ngx_get_connection(fd, pg->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = pg;
    c->read->handler = ngx_ailink_audit_pg_read_handler;
    c->write->handler = ngx_ailink_audit_pg_write_handler;
    c->read->log = pg->log;
    c->write->log = pg->log;

    pg->c = c;

    return NGX_OK;
}


/*
 * the nginx connection goes; the socket stays libpq's.  libpq closes it
 * itself when the server went away: then the kernel forgot its events
 */

static void
ngx_ailink_audit_pg_unwrap(ngx_ailink_audit_pg_t *pg)
{
    ngx_uint_t         flags;
    ngx_connection_t  *c;

    c = pg->c;

    if (c == NULL) {
        return;
    }

    flags = (pg->conn && PQsocket(pg->conn) == c->fd) ? 0 : NGX_CLOSE_EVENT;

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, flags);
    }

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, flags);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    c->fd = (ngx_socket_t) -1;
    ngx_free_connection(c);

    pg->c = NULL;
}


void
ngx_ailink_audit_pg_close(ngx_ailink_audit_pg_t *pg)
{
    ngx_ailink_audit_pg_unwrap(pg);

    if (pg->conn) {
        PQfinish(pg->conn);
        pg->conn = NULL;
    }

    if (pg->timeout.timer_set) {
        ngx_del_timer(&pg->timeout);
    }

    pg->state = NGX_AILINK_AUDIT_PG_NONE;
}


/*
 * The connection is dropped, whatever failed: a batch is sent again on a
 * new one (its records skipped if it was committed after all), after a
 * backoff that also spares PostgreSQL a batch it refuses.  Meanwhile the
 * records go to the spool.
 */

static void
ngx_ailink_audit_pg_fail(ngx_ailink_audit_pg_t *pg, const char *what,
    const char *why)
{
    u_char  *p, *last;

    /* libpq's message (it goes with the connection), its first line */
    last = ngx_snprintf(pg->why, sizeof(pg->why) - 1, "%s: %s", what, why);

    for (p = pg->why; p < last && *p != LF && *p != CR; p++) {
        /* void */
    }

    *p = '\0';

    ngx_ailink_audit_pg_close(pg);

    switch (pg->source) {

    case NGX_AILINK_AUDIT_PG_FROM_OWN:
        pg->own.sent = pg->own.acked;
        break;

    case NGX_AILINK_AUDIT_PG_FROM_CLAIMED:
        pg->claimed.sent = pg->claimed.acked;
        break;

    default:
        break;
    }

    pg->source = NGX_AILINK_AUDIT_PG_FROM_NONE;
    pg->inflight = 0;
    pg->down = 1;

    if (!pg->exiting) {
        ngx_ailink_audit_pg_set_up(pg, 0);
        ngx_ailink_audit_pg_spool_queue(pg);
    }

    if (pg->exiting || ngx_exiting || ngx_terminate || ngx_quit
        || pg->reconnect.timer_set)
    {
        return;
    }

    ngx_add_timer(&pg->reconnect, pg->backoff);

    pg->backoff = ngx_min(pg->backoff * 2, NGX_AILINK_AUDIT_PG_BACKOFF_MAX);
}


/* each change of state logged once */

static void
ngx_ailink_audit_pg_set_up(ngx_ailink_audit_pg_t *pg, ngx_uint_t up)
{
    if (pg->logged == (ngx_int_t) up) {
        return;
    }

    pg->logged = up;

    if (up) {
        ngx_log_error(NGX_LOG_NOTICE, pg->log, 0,
                      "ailink audit pg %V: connected", &pg->conf->name);
        return;
    }

    ngx_log_error(NGX_LOG_ERR, pg->log, 0,
                  "ailink audit pg %V: unavailable (%s), records go to "
                  "the spool \"%V\", retrying",
                  &pg->conf->name, pg->why, &pg->conf->spool->name);
}


/* PQflush(): what libpq could not write waits for the socket */

static ngx_int_t
ngx_ailink_audit_pg_flush_out(ngx_ailink_audit_pg_t *pg)
{
    int                rc;
    ngx_connection_t  *c;

    rc = PQflush(pg->conn);

    if (rc == -1) {
        ngx_ailink_audit_pg_fail(pg, "send", PQerrorMessage(pg->conn));
        return NGX_ERROR;
    }

    c = pg->c;

    if (rc == 1) {
        if (!c->write->active
            && ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT)
               != NGX_OK)
        {
            ngx_ailink_audit_pg_fail(pg, "send", "cannot add an event");
            return NGX_ERROR;
        }

    } else if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }

    return NGX_OK;
}


static void
ngx_ailink_audit_pg_write_handler(ngx_event_t *ev)
{
    ngx_connection_t       *c;
    ngx_ailink_audit_pg_t  *pg;

    c = ev->data;
    pg = c->data;

    if (pg->state == NGX_AILINK_AUDIT_PG_CONNECTING) {
        ngx_ailink_audit_pg_connect_step(pg);
        return;
    }

    (void) ngx_ailink_audit_pg_flush_out(pg);
}


static void
ngx_ailink_audit_pg_read_handler(ngx_event_t *ev)
{
    char                   *msg, *state;
    u_char                 *p;
    PGresult               *res;
    ExecStatusType          st;
    ngx_connection_t       *c;
    ngx_ailink_audit_pg_t  *pg;

    c = ev->data;
    pg = c->data;

    if (pg->state == NGX_AILINK_AUDIT_PG_CONNECTING) {
        ngx_ailink_audit_pg_connect_step(pg);
        return;
    }

    if (!PQconsumeInput(pg->conn) || PQstatus(pg->conn) == CONNECTION_BAD) {
        ngx_ailink_audit_pg_fail(pg, "connection", PQerrorMessage(pg->conn));
        return;
    }

    if (pg->c->write->active && ngx_ailink_audit_pg_flush_out(pg) != NGX_OK)
    {
        return;
    }

    while (!PQisBusy(pg->conn)) {

        res = PQgetResult(pg->conn);

        if (res == NULL) {
            if (pg->state == NGX_AILINK_AUDIT_PG_SETUP
                || pg->state == NGX_AILINK_AUDIT_PG_BUSY)
            {
                ngx_ailink_audit_pg_done(pg);
            }

            return;
        }

        st = PQresultStatus(res);

        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK
            && !pg->failed)
        {
            pg->failed = 1;
            msg = PQresultErrorMessage(res);
            (void) ngx_cpystrn(pg->error, (u_char *) (msg ? msg : "?"),
                               sizeof(pg->error));

            /* its first line, for the log */
            for (p = pg->error; *p && *p != LF && *p != CR; p++) {
                /* void */
            }

            *p = '\0';

            state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
            (void) ngx_cpystrn(pg->sqlstate,
                               (u_char *) (state ? state : ""),
                               sizeof(pg->sqlstate));
        }

        PQclear(res);
    }
}


/* the query is complete: every result was read */

static void
ngx_ailink_audit_pg_done(ngx_ailink_audit_pg_t *pg)
{
    if (pg->timeout.timer_set) {
        ngx_del_timer(&pg->timeout);
    }

    if (pg->failed) {

        /* class 22 (data exception), 23 (a constraint): the records */
        if (pg->state == NGX_AILINK_AUDIT_PG_BUSY
            && pg->sqlstate[0] == '2'
            && (pg->sqlstate[1] == '2' || pg->sqlstate[1] == '3'))
        {
            ngx_ailink_audit_pg_refused(pg);
            return;
        }

        ngx_ailink_audit_pg_fail(pg, pg->state == NGX_AILINK_AUDIT_PG_SETUP
                                     ? "schema setup" : "insert",
                                 (char *) pg->error);
        return;
    }

    if (pg->state == NGX_AILINK_AUDIT_PG_SETUP) {
        pg->state = NGX_AILINK_AUDIT_PG_READY;
        pg->down = 0;
        pg->backoff = NGX_AILINK_AUDIT_PG_BACKOFF_MIN;
        ngx_ailink_audit_pg_set_up(pg, 1);

        if (pg->own.acked >= pg->own.size) {
            /* nothing came during the outage: records queue again */
            pg->spooling = 0;
        }

        if (pg->claimed.fd == NGX_INVALID_FILE) {
            ngx_ailink_audit_pg_scan_dir(pg);
        }

        ngx_ailink_audit_pg_send_next(pg, 1);
        return;
    }

    ngx_ailink_audit_pg_ack(pg);

    pg->state = NGX_AILINK_AUDIT_PG_READY;

    ngx_ailink_audit_pg_send_next(pg, 0);
}


/*
 * PostgreSQL refused a batch for what a record holds: the connection is
 * fine.  The batch's records go one by one; the one refused alone is
 * kept aside in "<stream>.rejected" (never lost, never replayed) and the
 * rest goes on, instead of the spool stopping at it.
 */

static void
ngx_ailink_audit_pg_refused(ngx_ailink_audit_pg_t *pg)
{
    pg->state = NGX_AILINK_AUDIT_PG_READY;

    if (pg->inflight > 1) {
        ngx_log_error(NGX_LOG_WARN, pg->log, 0,
                      "ailink audit pg %V: a batch of %ui records refused "
                      "(%s), sending them one by one",
                      &pg->conf->name, pg->inflight, pg->error);

        switch (pg->source) {

        case NGX_AILINK_AUDIT_PG_FROM_OWN:
            pg->own.sent = pg->own.acked;
            break;

        case NGX_AILINK_AUDIT_PG_FROM_CLAIMED:
            pg->claimed.sent = pg->claimed.acked;
            break;

        default:
            break;
        }

        pg->refused = pg->inflight;
        pg->source = NGX_AILINK_AUDIT_PG_FROM_NONE;
        pg->inflight = 0;

        ngx_ailink_audit_pg_send_next(pg, 1);
        return;
    }

    ngx_ailink_audit_pg_reject(pg);
    ngx_ailink_audit_pg_ack(pg);
    ngx_ailink_audit_pg_send_next(pg, 0);
}


/* PostgreSQL has the batch: it leaves the queue or the spool */

static void
ngx_ailink_audit_pg_ack(ngx_ailink_audit_pg_t *pg)
{
    ngx_uint_t                    i;
    ngx_ailink_audit_pg_rec_t    *rec;
    ngx_ailink_audit_pg_spool_t  *sp;

    pg->refused -= ngx_min(pg->refused, pg->inflight);

    switch (pg->source) {

    case NGX_AILINK_AUDIT_PG_FROM_QUEUE:

        for (i = 0; i < pg->inflight && pg->head; i++) {
            rec = pg->head;
            pg->head = rec->next;
            ngx_free(rec);
            pg->n--;
        }

        if (pg->head == NULL) {
            pg->tail = NULL;
        }

        break;

    case NGX_AILINK_AUDIT_PG_FROM_OWN:
    case NGX_AILINK_AUDIT_PG_FROM_CLAIMED:

        sp = (pg->source == NGX_AILINK_AUDIT_PG_FROM_OWN) ? &pg->own
                                                          : &pg->claimed;
        sp->acked = sp->sent;
        sp->records -= ngx_min(sp->records, pg->inflight);

        if (sp->acked < sp->size) {
            break;
        }

        ngx_ailink_audit_pg_spool_acked(pg, sp);

        break;

    default:
        /* the batch had moved to the spool: sent again from there */
        break;
    }

    pg->source = NGX_AILINK_AUDIT_PG_FROM_NONE;
    pg->inflight = 0;

    ngx_ailink_audit_pg_set_depth(pg);
}


/*
 * The next batch, when the connection is idle: a claimed spool file
 * first, then the worker's own spool (older than its queue), then the
 * queue when it holds a batch or the flush time came
 */

void
ngx_ailink_audit_pg_send_next(ngx_ailink_audit_pg_t *pg, ngx_uint_t force)
{
    ngx_int_t  rc;

    if (pg->state != NGX_AILINK_AUDIT_PG_READY) {
        return;
    }

    if (pg->claimed.fd != NGX_INVALID_FILE) {
        rc = ngx_ailink_audit_pg_spool_batch(pg, &pg->claimed);

        if (rc == NGX_OK) {
            pg->source = NGX_AILINK_AUDIT_PG_FROM_CLAIMED;
            (void) ngx_ailink_audit_pg_send(pg, pg->claimed.stream);
            return;
        }

        if (rc == NGX_DONE) {
            /* nothing left to send in it */
            pg->source = NGX_AILINK_AUDIT_PG_FROM_CLAIMED;
            pg->claimed.sent = pg->claimed.size;
            ngx_ailink_audit_pg_ack(pg);
        }
    }

    if (pg->own.fd != NGX_INVALID_FILE && pg->own.acked < pg->own.size) {
        rc = ngx_ailink_audit_pg_spool_batch(pg, &pg->own);

        if (rc == NGX_OK) {
            pg->source = NGX_AILINK_AUDIT_PG_FROM_OWN;
            (void) ngx_ailink_audit_pg_send(pg, pg->stream);
            return;
        }

        if (rc == NGX_DONE) {
            pg->source = NGX_AILINK_AUDIT_PG_FROM_OWN;
            pg->own.sent = pg->own.size;
            ngx_ailink_audit_pg_ack(pg);
        }

        if (pg->spooling) {
            return;
        }
    }

    if (pg->n == 0) {
        return;
    }

    if (!force && pg->n < pg->conf->batch) {
        if (!pg->flush.timer_set) {
            ngx_add_timer(&pg->flush, pg->conf->flush);
        }

        return;
    }

    if (ngx_ailink_audit_pg_queue_batch(pg) == NGX_OK) {
        pg->source = NGX_AILINK_AUDIT_PG_FROM_QUEUE;
        (void) ngx_ailink_audit_pg_send(pg, pg->stream);
    }
}


static ngx_int_t
ngx_ailink_audit_pg_send(ngx_ailink_audit_pg_t *pg, u_char *stream)
{
    const char  *values[3];

    pg->bstream = stream;

    values[0] = (const char *) stream;
    values[1] = (const char *) pg->first;
    values[2] = (const char *) pg->out;

    if (!PQsendQueryParams(pg->conn, ngx_ailink_audit_pg_insert_sql, 3,
                           NULL, values, NULL, NULL, 0))
    {
        ngx_ailink_audit_pg_fail(pg, "insert", PQerrorMessage(pg->conn));
        return NGX_ERROR;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_EVENT, pg->log, 0,
                   "ailink audit pg: %ui records of \"%s\" from %s sent",
                   pg->inflight, stream, pg->first);

    pg->state = NGX_AILINK_AUDIT_PG_BUSY;
    pg->failed = 0;
    pg->sqlstate[0] = '\0';

    if (pg->flush.timer_set && pg->source == NGX_AILINK_AUDIT_PG_FROM_QUEUE
        && pg->inflight == pg->n)
    {
        ngx_del_timer(&pg->flush);
    }

    ngx_add_timer(&pg->timeout, pg->conf->timeout);

    return ngx_ailink_audit_pg_flush_out(pg);
}


static ngx_int_t
ngx_ailink_audit_pg_queue_batch(ngx_ailink_audit_pg_t *pg)
{
    u_char                     *p;
    size_t                      len;
    ngx_uint_t                  n, max;
    ngx_ailink_audit_pg_rec_t  *rec;

    max = pg->refused ? 1 : pg->conf->batch;
    len = sizeof("[]");
    n = 0;

    for (rec = pg->head; rec && n < max; rec = rec->next) {
        len += rec->len + 1;
        n++;
    }

    if (ngx_ailink_audit_pg_reserve(&pg->out, &pg->out_size, len, pg->log)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    p = pg->out;
    *p++ = '[';
    n = 0;

    for (rec = pg->head; rec && n < max; rec = rec->next) {
        if (n) {
            *p++ = ',';
        }

        p = ngx_ailink_audit_pg_copy(p, rec->data, rec->len);
        n++;
    }

    *p++ = ']';
    *p = '\0';

    (void) ngx_sprintf(pg->first, "%uL%Z", pg->head->seq);
    pg->inflight = n;

    return NGX_OK;
}


/*
 * A record into the batch: jsonb refuses "\u0000", the escape the audit
 * writes for a NUL byte; it becomes U+FFFD, as invalid UTF-8 does
 */

u_char *
ngx_ailink_audit_pg_copy(u_char *dst, u_char *src, size_t len)
{
    u_char  *last;

    last = src + len;

    while (src < last) {

        if (*src != '\\') {
            *dst++ = *src++;
            continue;
        }

        if (last - src >= 6 && ngx_strncmp(src, "\\u0000", 6) == 0) {
            dst = ngx_cpymem(dst, "\\ufffd", 6);
            src += 6;
            continue;
        }

        /* an escape: the backslash and what it escapes */
        *dst++ = *src++;

        if (src < last) {
            *dst++ = *src++;
        }
    }

    return dst;
}


ngx_int_t
ngx_ailink_audit_pg_reserve(u_char **buf, size_t *size, size_t need,
    ngx_log_t *log)
{
    u_char  *p;
    size_t   n;

    if (*buf && *size >= need) {
        return NGX_OK;
    }

    n = ngx_max(need, (size_t) NGX_AILINK_AUDIT_PG_READ);

    p = ngx_alloc(n, log);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (*buf) {
        ngx_free(*buf);
    }

    *buf = p;
    *size = n;

    return NGX_OK;
}


void
ngx_ailink_audit_pg_flush_handler(ngx_event_t *ev)
{
    ngx_ailink_audit_pg_send_next(ev->data, 1);
}


void
ngx_ailink_audit_pg_reconnect_handler(ngx_event_t *ev)
{
    ngx_ailink_audit_pg_t *pg = ev->data;

    if (pg->conn == NULL && !pg->exiting) {
        ngx_ailink_audit_pg_connect(pg);
    }
}


void
ngx_ailink_audit_pg_timeout_handler(ngx_event_t *ev)
{
    ngx_ailink_audit_pg_t *pg = ev->data;

    ngx_ailink_audit_pg_fail(pg,
                             pg->state == NGX_AILINK_AUDIT_PG_CONNECTING
                             ? "connect" : "query", "timed out");
}


/* libpq would print notices ("relation exists, skipping") on stderr */

static void
ngx_ailink_audit_pg_notice(void *arg, const char *message)
{
    ngx_ailink_audit_pg_t *pg = arg;

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, pg->log, 0,
                   "ailink audit pg: %s", message);
}
