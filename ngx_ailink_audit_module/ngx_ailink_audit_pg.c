
/*
 * Copyright (C) AILink
 *
 * Audit records to PostgreSQL.  Each worker queues the records it makes
 * and inserts them in batches on one libpq connection driven by nginx's
 * event loop: PQconnectStart()/PQconnectPoll(), PQsendQueryParams(),
 * PQflush() and PQconsumeInput() on an nginx connection that wraps
 * PQsocket().  Nothing waits.  The first query on every connection
 * creates the tables when they are missing.
 *
 * Nothing is lost.  While PostgreSQL is down, slow or refuses a batch, and
 * when the queue is full, the worker's records go to its spool file
 * ("<stream>.spool" in the spool directory, flock()ed while the worker
 * lives) and are sent from there, in order, once PostgreSQL answers; the
 * file is truncated only after PostgreSQL acknowledged all of it.  An
 * exiting worker spools its queue; a worker claims any spool file nobody
 * holds (a previous worker's, a previous run's) and replays it.
 *
 * Exactly once: a record carries its worker's stream name and a sequence
 * number, unique together in the table, and an insert skips the pairs
 * already there, so a batch sent again (its commit was not seen, a spool
 * replayed after a crash) adds nothing twice.
 */


#include "ngx_ailink_common.h"
#include "ngx_ailink_auth.h"
#include "ngx_ailink_metrics.h"
#include "ngx_ailink_audit_pg.h"

#include <sys/file.h>
#include <sys/uio.h>
#include <libpq-fe.h>


#define NGX_AILINK_AUDIT_PG_BACKOFF_MIN  200
#define NGX_AILINK_AUDIT_PG_BACKOFF_MAX  2000
#define NGX_AILINK_AUDIT_PG_SCAN         1000
#define NGX_AILINK_AUDIT_PG_SLOTS        256
#define NGX_AILINK_AUDIT_PG_STREAM_LEN   200
#define NGX_AILINK_AUDIT_PG_READ         (256 * 1024)
#define NGX_AILINK_AUDIT_PG_READ_MAX     (64 * 1024 * 1024)


enum {
    NGX_AILINK_AUDIT_PG_NONE = 0,          /* no connection */
    NGX_AILINK_AUDIT_PG_CONNECTING,
    NGX_AILINK_AUDIT_PG_SETUP,             /* the tables being created */
    NGX_AILINK_AUDIT_PG_READY,
    NGX_AILINK_AUDIT_PG_BUSY               /* a batch in flight */
};


/* where the batch in flight came from */
enum {
    NGX_AILINK_AUDIT_PG_FROM_NONE = 0,
    NGX_AILINK_AUDIT_PG_FROM_QUEUE,
    NGX_AILINK_AUDIT_PG_FROM_OWN,
    NGX_AILINK_AUDIT_PG_FROM_CLAIMED
};


/* records waiting, per worker, summed by /metrics in any worker */
typedef struct {
    ngx_atomic_t                pid;
    ngx_atomic_t                depth;
} ngx_ailink_audit_pg_slot_t;


typedef struct {
    ngx_ailink_audit_pg_slot_t  slots[NGX_AILINK_AUDIT_PG_SLOTS];
} ngx_ailink_audit_pg_sh_t;


typedef struct {
    ngx_flag_t                  configured;
    const char                **keywords;   /* for PQconnectStartParams(), */
    const char                **values;     /* the password among them */
    ngx_str_t                   name;       /* host:port/dbname, for logs */
    ngx_path_t                 *spool;
    ngx_uint_t                  batch;
    ngx_uint_t                  queue;
    ngx_msec_t                  flush;
    ngx_msec_t                  timeout;
    ngx_shm_zone_t             *zone;
} ngx_ailink_audit_pg_conf_t;


typedef struct ngx_ailink_audit_pg_rec_s  ngx_ailink_audit_pg_rec_t;

struct ngx_ailink_audit_pg_rec_s {
    ngx_ailink_audit_pg_rec_t  *next;
    uint64_t                    seq;
    size_t                      len;
    u_char                      data[1];    /* the JSON, no "\n" */
};


/* a spool file: lines "<seq>\t<record>\n" */
typedef struct {
    ngx_fd_t                    fd;
    u_char                     *name;       /* its path */
    u_char                      stream[NGX_AILINK_AUDIT_PG_STREAM_LEN];
    off_t                       size;       /* bytes in it */
    off_t                       acked;      /* bytes PostgreSQL has */
    off_t                       sent;       /* the end of the batch sent */
    ngx_uint_t                  records;    /* lines not acknowledged */
} ngx_ailink_audit_pg_spool_t;


/* the worker's sink */
typedef struct {
    ngx_ailink_audit_pg_conf_t *conf;
    ngx_cycle_t                *cycle;
    ngx_log_t                  *log;
    PGconn                     *conn;
    ngx_connection_t           *c;
    ngx_uint_t                  state;
    ngx_int_t                   logged;     /* -1 not yet, 0 down, 1 up */
    ngx_uint_t                  down;       /* failed, not yet back */
    ngx_uint_t                  exiting;
    ngx_uint_t                  failed;     /* the query got an error */
    ngx_msec_t                  backoff;

    ngx_event_t                 flush;
    ngx_event_t                 reconnect;
    ngx_event_t                 timeout;
    ngx_event_t                 scan;

    u_char                      stream[NGX_AILINK_AUDIT_PG_STREAM_LEN];
    uint64_t                    seq;        /* the last one given */

    ngx_ailink_audit_pg_rec_t  *head;       /* the queue */
    ngx_ailink_audit_pg_rec_t  *tail;
    ngx_uint_t                  n;

    ngx_uint_t                  spooling;   /* new records to the spool */
    ngx_ailink_audit_pg_spool_t own;
    ngx_ailink_audit_pg_spool_t claimed;

    ngx_uint_t                  source;     /* of the batch in flight */
    ngx_uint_t                  inflight;   /* its records */
    u_char                      first[NGX_INT64_LEN + 1];
    u_char                     *bstream;    /* its stream */
    ngx_uint_t                  refused;    /* to send one by one */

    u_char                     *out;        /* the batch: a JSON array */
    size_t                      out_size;
    u_char                     *in;         /* spool lines read */
    size_t                      in_size;

    ngx_ailink_audit_pg_slot_t *slot;
    u_char                      why[256];
    u_char                      error[256];
    u_char                      sqlstate[6];
} ngx_ailink_audit_pg_t;


static void ngx_ailink_audit_pg_connect(ngx_ailink_audit_pg_t *pg);
static void ngx_ailink_audit_pg_connect_step(ngx_ailink_audit_pg_t *pg);
static void ngx_ailink_audit_pg_connected(ngx_ailink_audit_pg_t *pg);
static ngx_int_t ngx_ailink_audit_pg_wrap(ngx_ailink_audit_pg_t *pg);
static void ngx_ailink_audit_pg_unwrap(ngx_ailink_audit_pg_t *pg);
static void ngx_ailink_audit_pg_close(ngx_ailink_audit_pg_t *pg);
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
static void ngx_ailink_audit_pg_reject(ngx_ailink_audit_pg_t *pg);
static void ngx_ailink_audit_pg_send_next(ngx_ailink_audit_pg_t *pg,
    ngx_uint_t force);
static ngx_int_t ngx_ailink_audit_pg_send(ngx_ailink_audit_pg_t *pg,
    u_char *stream);
static ngx_int_t ngx_ailink_audit_pg_queue_batch(ngx_ailink_audit_pg_t *pg);
static ngx_int_t ngx_ailink_audit_pg_spool_batch(ngx_ailink_audit_pg_t *pg,
    ngx_ailink_audit_pg_spool_t *sp);
static ngx_int_t ngx_ailink_audit_pg_spool_open(ngx_ailink_audit_pg_t *pg);
static ngx_int_t ngx_ailink_audit_pg_spool_write(ngx_ailink_audit_pg_t *pg,
    uint64_t seq, u_char *data, size_t len);
static void ngx_ailink_audit_pg_spool_queue(ngx_ailink_audit_pg_t *pg);
static void ngx_ailink_audit_pg_scan_dir(ngx_ailink_audit_pg_t *pg);
static void ngx_ailink_audit_pg_set_depth(ngx_ailink_audit_pg_t *pg);
static u_char *ngx_ailink_audit_pg_copy(u_char *dst, u_char *src,
    size_t len);
static ngx_int_t ngx_ailink_audit_pg_reserve(u_char **buf, size_t *size,
    size_t need, ngx_log_t *log);
static void ngx_ailink_audit_pg_flush_handler(ngx_event_t *ev);
static void ngx_ailink_audit_pg_reconnect_handler(ngx_event_t *ev);
static void ngx_ailink_audit_pg_timeout_handler(ngx_event_t *ev);
static void ngx_ailink_audit_pg_scan_handler(ngx_event_t *ev);
static void ngx_ailink_audit_pg_notice(void *arg, const char *message);
static const char *ngx_ailink_audit_pg_ready(ngx_http_request_t *r,
    void *data);
static ngx_int_t ngx_ailink_audit_pg_collect(ngx_http_request_t *r,
    void *data, ngx_str_t *out);
static ngx_int_t ngx_ailink_audit_pg_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_ailink_audit_pg_init_process(ngx_cycle_t *cycle);
static void ngx_ailink_audit_pg_exit_process(ngx_cycle_t *cycle);
static void *ngx_ailink_audit_pg_create_main_conf(ngx_conf_t *cf);
static char *ngx_ailink_audit_pg_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);


static ngx_command_t  ngx_ailink_audit_pg_commands[] = {

    { ngx_string("ailink_audit_pg"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_ailink_audit_pg_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_ailink_audit_pg_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_ailink_audit_pg_create_main_conf,  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_ailink_audit_pg_module = {
    NGX_MODULE_V1,
    &ngx_ailink_audit_pg_module_ctx,       /* module context */
    ngx_ailink_audit_pg_commands,          /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_ailink_audit_pg_init_process,      /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_ailink_audit_pg_exit_process,      /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


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


static ngx_ailink_audit_pg_t  ngx_ailink_audit_pg;


ngx_int_t
ngx_ailink_audit_pg_enabled(ngx_http_request_t *r)
{
    ngx_ailink_audit_pg_conf_t  *pcf;

    pcf = ngx_http_get_module_main_conf(r, ngx_ailink_audit_pg_module);

    return pcf->configured;
}


void
ngx_ailink_audit_pg_add(ngx_log_t *log, u_char *line, size_t len)
{
    ngx_ailink_audit_pg_t      *pg;
    ngx_ailink_audit_pg_rec_t  *rec;

    pg = &ngx_ailink_audit_pg;

    if (pg->conf == NULL || pg->exiting) {
        return;
    }

    if (pg->cycle != (ngx_cycle_t *) ngx_cycle) {
        /* a reload without a master process: the sink went with its
         * configuration */
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "ailink audit pg: reloaded without master_process, "
                      "record not sent");
        return;
    }

    if (len && line[len - 1] == LF) {
        len--;
    }

    pg->seq++;

    if (!pg->spooling && (pg->down || pg->n >= pg->conf->queue)) {
        ngx_ailink_audit_pg_spool_queue(pg);
    }

    if (pg->spooling) {
        if (ngx_ailink_audit_pg_spool_write(pg, pg->seq, line, len)
            == NGX_OK)
        {
            ngx_ailink_audit_pg_set_depth(pg);
            ngx_ailink_audit_pg_send_next(pg, 0);
            return;
        }
    }

    /* the spool cannot take it: memory, while there is some room */

    if (pg->n >= 2 * pg->conf->queue) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "ailink audit pg: spool and queue full, "
                      "record %uL of stream \"%s\" lost",
                      pg->seq, pg->stream);
        return;
    }

    rec = ngx_alloc(offsetof(ngx_ailink_audit_pg_rec_t, data) + len, log);
    if (rec == NULL) {
        return;
    }

    rec->next = NULL;
    rec->seq = pg->seq;
    rec->len = len;
    ngx_memcpy(rec->data, line, len);

    if (pg->tail) {
        pg->tail->next = rec;

    } else {
        pg->head = rec;
    }

    pg->tail = rec;
    pg->n++;

    ngx_ailink_audit_pg_set_depth(pg);

    if (pg->n >= pg->conf->batch) {
        ngx_ailink_audit_pg_send_next(pg, 1);

    } else if (!pg->flush.timer_set) {
        ngx_add_timer(&pg->flush, pg->conf->flush);
    }
}


static void
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


static void
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


/* the one record of the batch in flight ("[record]") to the side file */

static void
ngx_ailink_audit_pg_reject(ngx_ailink_audit_pg_t *pg)
{
    u_char        *name;
    size_t         len;
    ssize_t        n;
    ngx_fd_t       fd;
    ngx_str_t     *dir;
    struct iovec   iov[4];

    dir = &pg->conf->spool->name;
    len = dir->len + 1 + ngx_strlen(pg->bstream) + sizeof(".rejected");

    name = ngx_alloc(len, pg->log);
    if (name == NULL) {
        return;
    }

    (void) ngx_sprintf(name, "%V/%s.rejected%Z", dir, pg->bstream);

    fd = open((char *) name, O_WRONLY|O_CREAT|O_APPEND, 0600);

    if (fd == -1) {
        ngx_log_error(NGX_LOG_ALERT, pg->log, ngx_errno,
                      "ailink audit pg: open(\"%s\") failed", name);
        ngx_free(name);
        return;
    }

    len = ngx_strlen(pg->out);

    iov[0].iov_base = pg->first;
    iov[0].iov_len = ngx_strlen(pg->first);
    iov[1].iov_base = "\t";
    iov[1].iov_len = 1;
    iov[2].iov_base = pg->out + 1;
    iov[2].iov_len = len - 2;
    iov[3].iov_base = "\n";
    iov[3].iov_len = 1;

    n = writev(fd, iov, 4);

    if (n != (ssize_t) (iov[0].iov_len + len)) {
        ngx_log_error(NGX_LOG_ALERT, pg->log, ngx_errno,
                      "ailink audit pg: writev(\"%s\") failed", name);
    }

    (void) ngx_close_file(fd);

    ngx_log_error(NGX_LOG_ERR, pg->log, 0,
                  "ailink audit pg %V: record %s of stream \"%s\" refused "
                  "(%s), kept in \"%s\"", &pg->conf->name, pg->first,
                  pg->bstream, pg->error, name);

    ngx_free(name);
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

        if (sp == &pg->own) {
            /* all of it in PostgreSQL: new records may queue again */

            if (ftruncate(sp->fd, 0) == -1) {
                ngx_log_error(NGX_LOG_ALERT, pg->log, ngx_errno,
                              "ailink audit pg: ftruncate(\"%s\") failed",
                              sp->name);
                break;
            }

            sp->size = 0;
            sp->acked = 0;
            sp->sent = 0;
            sp->records = 0;
            pg->spooling = 0;

            break;
        }

        ngx_log_error(NGX_LOG_NOTICE, pg->log, 0,
                      "ailink audit pg: spool file \"%s\" replayed",
                      sp->name);

        if (ngx_delete_file(sp->name) == NGX_FILE_ERROR) {
            ngx_log_error(NGX_LOG_ALERT, pg->log, ngx_errno,
                          ngx_delete_file_n " \"%s\" failed", sp->name);
        }

        (void) ngx_close_file(sp->fd);
        ngx_free(sp->name);
        ngx_memzero(sp, sizeof(ngx_ailink_audit_pg_spool_t));
        sp->fd = NGX_INVALID_FILE;

        /* the next one now, not at the next scan */
        ngx_ailink_audit_pg_scan_dir(pg);

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

static void
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
 * The next batch from a spool file, from what PostgreSQL acknowledged:
 * up to "batch" lines of consecutive seq.  NGX_DONE: nothing to send
 * (the end, or only lines that cannot be read, which are skipped).
 */

static ngx_int_t
ngx_ailink_audit_pg_spool_batch(ngx_ailink_audit_pg_t *pg,
    ngx_ailink_audit_pg_spool_t *sp)
{
    u_char      *p, *q, *nl, *last, *o;
    off_t        base;
    size_t       want;
    ssize_t      n;
    uint64_t     seq, first;
    ngx_uint_t   count;

    for ( ;; ) {

        if (sp->acked >= sp->size) {
            return NGX_DONE;
        }

        if (pg->in == NULL
            && ngx_ailink_audit_pg_reserve(&pg->in, &pg->in_size,
                                           NGX_AILINK_AUDIT_PG_READ, pg->log)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        want = (size_t) ngx_min((off_t) pg->in_size, sp->size - sp->acked);

        base = sp->acked;
        n = pread(sp->fd, pg->in, want, base);

        if (n == -1) {
            ngx_log_error(NGX_LOG_ALERT, pg->log, ngx_errno,
                          "ailink audit pg: pread(\"%s\") failed", sp->name);
            return NGX_ERROR;
        }

        if (n == 0) {
            sp->size = sp->acked;
            return NGX_DONE;
        }

        if (ngx_ailink_audit_pg_reserve(&pg->out, &pg->out_size, n + 3,
                                        pg->log)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        p = pg->in;
        last = pg->in + n;
        o = pg->out;
        *o++ = '[';
        count = 0;
        first = 0;

        while (p < last && count < (pg->refused ? 1 : pg->conf->batch)) {

            nl = ngx_strlchr(p, last, LF);
            if (nl == NULL) {
                break;
            }

            seq = 0;

            for (q = p; q < nl && *q >= '0' && *q <= '9'; q++) {
                seq = seq * 10 + (*q - '0');
            }

            if (q == p || q == nl || *q != '\t' || q + 1 == nl
                || q[1] != '{')
            {
                if (count) {
                    break;
                }

                ngx_log_error(NGX_LOG_ALERT, pg->log, 0,
                              "ailink audit pg: a line that is not a record "
                              "in \"%s\" at %O skipped", sp->name,
                              base + (p - pg->in));

                sp->acked = base + (nl + 1 - pg->in);
                sp->sent = sp->acked;
                sp->records -= ngx_min(sp->records, 1);
                p = nl + 1;
                continue;
            }

            if (count == 0) {
                first = seq;

            } else if (seq != first + count) {
                break;
            }

            if (count) {
                *o++ = ',';
            }

            o = ngx_ailink_audit_pg_copy(o, q + 1, nl - (q + 1));
            count++;
            p = nl + 1;
        }

        if (count) {
            *o++ = ']';
            *o = '\0';

            (void) ngx_sprintf(pg->first, "%uL%Z", first);
            pg->inflight = count;

            sp->sent = base + (p - pg->in);

            return NGX_OK;
        }

        if (p != pg->in) {
            /* only skipped lines: read on */
            continue;
        }

        if ((size_t) n < pg->in_size || base + n >= sp->size) {
            /* a last line without its end: cut by a crash */
            ngx_log_error(NGX_LOG_ALERT, pg->log, 0,
                          "ailink audit pg: an incomplete line at the end "
                          "of \"%s\" skipped", sp->name);
            sp->records -= ngx_min(sp->records, 1);
            sp->acked = sp->size;
            sp->sent = sp->size;
            return NGX_DONE;
        }

        /* a record larger than the buffer */

        if (pg->in_size >= NGX_AILINK_AUDIT_PG_READ_MAX) {
            ngx_log_error(NGX_LOG_ALERT, pg->log, 0,
                          "ailink audit pg: a line longer than %uz bytes "
                          "in \"%s\"", pg->in_size, sp->name);
            return NGX_ERROR;
        }

        if (ngx_ailink_audit_pg_reserve(&pg->in, &pg->in_size,
                                        pg->in_size * 2, pg->log)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }
}


/*
 * The worker's spool file, made under another name and renamed once
 * locked: a worker scanning the directory never sees it unlocked
 */

static ngx_int_t
ngx_ailink_audit_pg_spool_open(ngx_ailink_audit_pg_t *pg)
{
    u_char                       *tmp;
    size_t                        len;
    ngx_fd_t                      fd;
    ngx_str_t                    *dir;
    ngx_ailink_audit_pg_spool_t  *sp;

    sp = &pg->own;
    dir = &pg->conf->spool->name;

    len = dir->len + 1 + ngx_strlen(pg->stream) + sizeof(".spool");

    if (sp->name == NULL) {
        sp->name = ngx_alloc(len, pg->log);
        if (sp->name == NULL) {
            return NGX_ERROR;
        }

        (void) ngx_sprintf(sp->name, "%V/%s.spool%Z", dir, pg->stream);
    }

    tmp = ngx_alloc(len, pg->log);
    if (tmp == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_sprintf(tmp, "%V/%s.tmp%Z", dir, pg->stream);

    fd = open((char *) tmp, O_RDWR|O_CREAT|O_TRUNC|O_APPEND, 0600);

    if (fd == -1) {
        ngx_log_error(NGX_LOG_ALERT, pg->log, ngx_errno,
                      "ailink audit pg: open(\"%s\") failed", tmp);
        ngx_free(tmp);
        return NGX_ERROR;
    }

    if (flock(fd, LOCK_EX|LOCK_NB) == -1
        || ngx_rename_file(tmp, sp->name) == NGX_FILE_ERROR)
    {
        ngx_log_error(NGX_LOG_ALERT, pg->log, ngx_errno,
                      "ailink audit pg: cannot lock and rename \"%s\"", tmp);
        (void) ngx_delete_file(tmp);
        (void) ngx_close_file(fd);
        ngx_free(tmp);
        return NGX_ERROR;
    }

    ngx_free(tmp);

    sp->fd = fd;
    sp->size = 0;
    sp->acked = 0;
    sp->sent = 0;
    sp->records = 0;
    (void) ngx_cpystrn(sp->stream, pg->stream, sizeof(sp->stream));

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_audit_pg_spool_write(ngx_ailink_audit_pg_t *pg, uint64_t seq,
    u_char *data, size_t len)
{
    ssize_t        n;
    struct iovec   iov[3];
    u_char         head[NGX_INT64_LEN + 1];

    if (pg->own.fd == NGX_INVALID_FILE
        && ngx_ailink_audit_pg_spool_open(pg) != NGX_OK)
    {
        return NGX_ERROR;
    }

    iov[0].iov_base = head;
    iov[0].iov_len = ngx_sprintf(head, "%uL\t", seq) - head;
    iov[1].iov_base = data;
    iov[1].iov_len = len;
    iov[2].iov_base = "\n";
    iov[2].iov_len = 1;

    n = writev(pg->own.fd, iov, 3);

    if (n == (ssize_t) (iov[0].iov_len + len + 1)) {
        pg->own.size += n;
        pg->own.records++;
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_ALERT, pg->log, n == -1 ? ngx_errno : 0,
                  "ailink audit pg: writev(\"%s\") failed", pg->own.name);

    if (n > 0 && ftruncate(pg->own.fd, pg->own.size) == -1) {
        ngx_log_error(NGX_LOG_ALERT, pg->log, ngx_errno,
                      "ailink audit pg: ftruncate(\"%s\") failed",
                      pg->own.name);
    }

    return NGX_ERROR;
}


/* the queue to the spool, in order; new records follow it there */

static void
ngx_ailink_audit_pg_spool_queue(ngx_ailink_audit_pg_t *pg)
{
    ngx_ailink_audit_pg_rec_t  *rec;

    while (pg->head) {
        rec = pg->head;

        if (ngx_ailink_audit_pg_spool_write(pg, rec->seq, rec->data,
                                            rec->len)
            != NGX_OK)
        {
            return;
        }

        pg->head = rec->next;
        pg->n--;
        ngx_free(rec);
    }

    pg->tail = NULL;
    pg->spooling = 1;

    if (pg->source == NGX_AILINK_AUDIT_PG_FROM_QUEUE) {
        /* the batch in flight is in the spool now: its answer frees
         * nothing */
        pg->source = NGX_AILINK_AUDIT_PG_FROM_NONE;
    }

    if (pg->flush.timer_set) {
        ngx_del_timer(&pg->flush);
    }

    ngx_ailink_audit_pg_set_depth(pg);
}


/*
 * A spool file nobody holds (its worker exited, or died, or a previous
 * run's): claimed with the lock, replayed, removed once all of it is in
 * PostgreSQL.  One at a time, so the workers share them.
 */

static void
ngx_ailink_audit_pg_scan_dir(ngx_ailink_audit_pg_t *pg)
{
    u_char                       *name, *path, *p, *last;
    size_t                        len;
    ssize_t                       n;
    ngx_fd_t                      fd;
    ngx_str_t                    *spool;
    ngx_dir_t                     dir;
    ngx_uint_t                    records;
    ngx_file_info_t               fi;
    ngx_ailink_audit_pg_spool_t  *sp;

    sp = &pg->claimed;
    spool = &pg->conf->spool->name;

    if (ngx_open_dir(spool, &dir) == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, pg->log, ngx_errno,
                      ngx_open_dir_n " \"%V\" failed", spool);
        return;
    }

    path = NULL;

    while (sp->fd == NGX_INVALID_FILE && ngx_read_dir(&dir) == NGX_OK) {

        name = ngx_de_name(&dir);
        len = ngx_de_namelen(&dir);

        if (len <= sizeof(".spool") - 1
            || len - (sizeof(".spool") - 1) >= NGX_AILINK_AUDIT_PG_STREAM_LEN
            || ngx_strcmp(name + len - (sizeof(".spool") - 1), ".spool") != 0
            || (ngx_strncmp(name, pg->stream, len - (sizeof(".spool") - 1))
                == 0
                && pg->stream[len - (sizeof(".spool") - 1)] == '\0'))
        {
            continue;
        }

        path = ngx_alloc(spool->len + 1 + len + 1, pg->log);
        if (path == NULL) {
            break;
        }

        (void) ngx_sprintf(path, "%V/%s%Z", spool, name);

        fd = open((char *) path, O_RDWR);

        if (fd == -1) {
            goto next;
        }

        /* held: its worker lives, or another replays it */
        if (flock(fd, LOCK_EX|LOCK_NB) == -1
            || ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
            || fi.st_nlink == 0)
        {
            (void) ngx_close_file(fd);
            goto next;
        }

        if (ngx_file_size(&fi) == 0) {
            (void) ngx_delete_file(path);
            (void) ngx_close_file(fd);
            goto next;
        }

        /* its lines, for the depth reported */

        records = 0;
        p = NULL;

        if (pg->in == NULL
            && ngx_ailink_audit_pg_reserve(&pg->in, &pg->in_size,
                                           NGX_AILINK_AUDIT_PG_READ, pg->log)
               != NGX_OK)
        {
            (void) ngx_close_file(fd);
            goto next;
        }

        for (len = 0; /* void */; len += n) {
            n = pread(fd, pg->in, pg->in_size, len);

            if (n <= 0) {
                break;
            }

            last = pg->in + n;

            for (p = pg->in; p < last; p++) {
                if (*p == LF) {
                    records++;
                }
            }
        }

        sp->fd = fd;
        sp->name = path;
        sp->size = ngx_file_size(&fi);
        sp->acked = 0;
        sp->sent = 0;
        sp->records = records;
        (void) ngx_cpystrn(sp->stream, name,
                           ngx_de_namelen(&dir) - (sizeof(".spool") - 1) + 1);

        ngx_log_error(NGX_LOG_NOTICE, pg->log, 0,
                      "ailink audit pg: replaying spool file \"%s\" "
                      "(%ui records)", path, records);

        ngx_ailink_audit_pg_set_depth(pg);

        break;

    next:

        ngx_free(path);
        path = NULL;
    }

    (void) ngx_close_dir(&dir);
}


static void
ngx_ailink_audit_pg_set_depth(ngx_ailink_audit_pg_t *pg)
{
    if (pg->slot) {
        pg->slot->depth = pg->n + pg->own.records + pg->claimed.records;
    }
}


/*
 * A record into the batch: jsonb refuses "\u0000", the escape the audit
 * writes for a NUL byte; it becomes U+FFFD, as invalid UTF-8 does
 */

static u_char *
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


static ngx_int_t
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


static void
ngx_ailink_audit_pg_flush_handler(ngx_event_t *ev)
{
    ngx_ailink_audit_pg_send_next(ev->data, 1);
}


static void
ngx_ailink_audit_pg_reconnect_handler(ngx_event_t *ev)
{
    ngx_ailink_audit_pg_t *pg = ev->data;

    if (pg->conn == NULL && !pg->exiting) {
        ngx_ailink_audit_pg_connect(pg);
    }
}


static void
ngx_ailink_audit_pg_timeout_handler(ngx_event_t *ev)
{
    ngx_ailink_audit_pg_t *pg = ev->data;

    ngx_ailink_audit_pg_fail(pg,
                             pg->state == NGX_AILINK_AUDIT_PG_CONNECTING
                             ? "connect" : "query", "timed out");
}


static void
ngx_ailink_audit_pg_scan_handler(ngx_event_t *ev)
{
    ngx_ailink_audit_pg_t *pg = ev->data;

    if (pg->state == NGX_AILINK_AUDIT_PG_READY
        && pg->claimed.fd == NGX_INVALID_FILE)
    {
        ngx_ailink_audit_pg_scan_dir(pg);
        ngx_ailink_audit_pg_send_next(pg, 0);
    }

    if (!pg->exiting) {
        ngx_add_timer(ev, NGX_AILINK_AUDIT_PG_SCAN);
    }
}


/* libpq would print notices ("relation exists, skipping") on stderr */

static void
ngx_ailink_audit_pg_notice(void *arg, const char *message)
{
    ngx_ailink_audit_pg_t *pg = arg;

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, pg->log, 0,
                   "ailink audit pg: %s", message);
}


static const char *
ngx_ailink_audit_pg_ready(ngx_http_request_t *r, void *data)
{
    ngx_ailink_audit_pg_t  *pg;

    pg = &ngx_ailink_audit_pg;

    return (pg->state == NGX_AILINK_AUDIT_PG_READY
            || pg->state == NGX_AILINK_AUDIT_PG_BUSY) ? "ok" : "down";
}


/*
 * ailink_audit_spool_depth sums every worker's records waiting (queue and
 * spool); ailink_backend_up{backend="postgresql"} comes from the
 * readiness check, with the other backends'
 */

static ngx_int_t
ngx_ailink_audit_pg_collect(ngx_http_request_t *r, void *data,
    ngx_str_t *out)
{
    ngx_ailink_audit_pg_conf_t *pcf = data;

    u_char                    *p;
    ngx_uint_t                 i, depth;
    ngx_ailink_audit_pg_sh_t  *sh;

    static const char  head[] =
        "# HELP ailink_audit_spool_depth Audit records waiting for "
        "PostgreSQL, queued or spooled.\n"
        "# TYPE ailink_audit_spool_depth gauge\n"
        "ailink_audit_spool_depth ";

    depth = 0;
    sh = pcf->zone->data;

    for (i = 0; i < NGX_AILINK_AUDIT_PG_SLOTS; i++) {
        if (sh->slots[i].pid) {
            depth += sh->slots[i].depth;
        }
    }

    p = ngx_pnalloc(r->pool, sizeof(head) + NGX_INT_T_LEN + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;

    p = ngx_cpymem(p, head, sizeof(head) - 1);
    p = ngx_sprintf(p, "%ui\n", depth);

    out->len = p - out->data;

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_audit_pg_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t           *shpool;
    ngx_ailink_audit_pg_sh_t  *sh;

    if (data) {
        /* a reload: the workers' counts go on */
        shm_zone->data = data;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        shm_zone->data = shpool->data;
        return NGX_OK;
    }

    sh = ngx_slab_calloc(shpool, sizeof(ngx_ailink_audit_pg_sh_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    shpool->data = sh;
    shm_zone->data = sh;

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_audit_pg_init_process(ngx_cycle_t *cycle)
{
    ngx_pid_t                    pid;
    ngx_uint_t                   i;
    ngx_ailink_audit_pg_t       *pg;
    ngx_ailink_audit_pg_sh_t    *sh;
    ngx_ailink_audit_pg_conf_t  *pcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    pcf = ngx_http_cycle_get_module_main_conf(cycle,
                                              ngx_ailink_audit_pg_module);

    if (pcf == NULL || !pcf->configured) {
        return NGX_OK;
    }

    pg = &ngx_ailink_audit_pg;
    ngx_memzero(pg, sizeof(ngx_ailink_audit_pg_t));

    pg->conf = pcf;
    pg->cycle = cycle;
    pg->log = cycle->log;
    pg->logged = -1;
    pg->backoff = NGX_AILINK_AUDIT_PG_BACKOFF_MIN;
    pg->own.fd = NGX_INVALID_FILE;
    pg->claimed.fd = NGX_INVALID_FILE;
    (void) ngx_cpystrn(pg->why, (u_char *) "connecting", sizeof(pg->why));

    /* the worker's records: a name no other worker, node or run has */
    (void) ngx_snprintf(pg->stream, sizeof(pg->stream) - 1,
                        "%V-%P-%M%Z", &cycle->hostname, ngx_pid,
                        (ngx_msec_t) (ngx_time() * 1000
                                      + ngx_timeofday()->msec));

    pg->flush.handler = ngx_ailink_audit_pg_flush_handler;
    pg->reconnect.handler = ngx_ailink_audit_pg_reconnect_handler;
    pg->timeout.handler = ngx_ailink_audit_pg_timeout_handler;
    pg->scan.handler = ngx_ailink_audit_pg_scan_handler;

    pg->flush.data = pg;
    pg->reconnect.data = pg;
    pg->timeout.data = pg;
    pg->scan.data = pg;

    pg->flush.log = cycle->log;
    pg->reconnect.log = cycle->log;
    pg->timeout.log = cycle->log;
    pg->scan.log = cycle->log;

    /* exit_process() spools what they would have sent */
    pg->flush.cancelable = 1;
    pg->reconnect.cancelable = 1;
    pg->timeout.cancelable = 1;
    pg->scan.cancelable = 1;

    /* a slot for the depth; those of workers gone without a word freed */

    sh = pcf->zone->data;

    for (i = 0; i < NGX_AILINK_AUDIT_PG_SLOTS; i++) {
        pid = (ngx_pid_t) sh->slots[i].pid;

        if (pid && kill(pid, 0) == -1 && ngx_errno == NGX_ESRCH) {
            sh->slots[i].depth = 0;
            (void) ngx_atomic_cmp_set(&sh->slots[i].pid, pid, 0);
        }
    }

    for (i = 0; i < NGX_AILINK_AUDIT_PG_SLOTS; i++) {
        if (ngx_atomic_cmp_set(&sh->slots[i].pid, 0, ngx_pid)) {
            pg->slot = &sh->slots[i];
            pg->slot->depth = 0;
            break;
        }
    }

    ngx_add_timer(&pg->scan, NGX_AILINK_AUDIT_PG_SCAN);

    ngx_ailink_audit_pg_connect(pg);

    return NGX_OK;
}


/* a reload, a stop: the queue goes to the spool, the next workers send it */

static void
ngx_ailink_audit_pg_exit_process(ngx_cycle_t *cycle)
{
    ngx_ailink_audit_pg_t  *pg;

    pg = &ngx_ailink_audit_pg;

    if (pg->conf == NULL) {
        return;
    }

    pg->exiting = 1;

    if (pg->n) {
        ngx_ailink_audit_pg_spool_queue(pg);

        if (pg->n) {
            ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                          "ailink audit pg: %ui records of stream \"%s\" "
                          "lost: the spool cannot be written",
                          pg->n, pg->stream);
        }
    }

    ngx_ailink_audit_pg_close(pg);

    if (pg->flush.timer_set) {
        ngx_del_timer(&pg->flush);
    }

    if (pg->reconnect.timer_set) {
        ngx_del_timer(&pg->reconnect);
    }

    if (pg->scan.timer_set) {
        ngx_del_timer(&pg->scan);
    }

    if (pg->own.fd != NGX_INVALID_FILE) {
        if (pg->own.acked >= pg->own.size) {
            (void) ngx_delete_file(pg->own.name);
        }

        (void) ngx_close_file(pg->own.fd);
    }

    if (pg->claimed.fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(pg->claimed.fd);
    }

    if (pg->slot) {
        pg->slot->depth = 0;
        pg->slot->pid = 0;
    }
}


static void *
ngx_ailink_audit_pg_create_main_conf(ngx_conf_t *cf)
{
    ngx_ailink_audit_pg_conf_t  *pcf;

    pcf = ngx_pcalloc(cf->pool, sizeof(ngx_ailink_audit_pg_conf_t));
    if (pcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     pcf->configured = 0;
     *     pcf->keywords = NULL;
     *     pcf->spool = NULL;
     */

    return pcf;
}


/* a password from a file: its first line, never logged */

static ngx_int_t
ngx_ailink_audit_pg_password_file(ngx_conf_t *cf, ngx_str_t *name,
    char **password)
{
    u_char       *p, *last;
    ssize_t       n;
    ngx_fd_t      fd;
    ngx_file_t    file;
    u_char        buf[1024];

    if (ngx_conf_full_name(cf->cycle, name, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    fd = ngx_open_file(name->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "ailink_audit_pg: cannot open password_file "
                           "\"%V\"", name);
        return NGX_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.fd = fd;
    file.name = *name;
    file.log = cf->log;

    n = ngx_read_file(&file, buf, sizeof(buf), 0);

    (void) ngx_close_file(fd);

    if (n == NGX_ERROR) {
        return NGX_ERROR;
    }

    last = buf + n;

    for (p = buf; p < last && *p != CR && *p != LF; p++) {
        /* void */
    }

    if (p == buf) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ailink_audit_pg: password_file \"%V\" is empty",
                           name);
        return NGX_ERROR;
    }

    *password = ngx_pnalloc(cf->pool, p - buf + 1);
    if (*password == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_cpystrn((u_char *) *password, buf, p - buf + 1);

    ngx_explicit_memzero(buf, sizeof(buf));

    return NGX_OK;
}


static char *
ngx_ailink_audit_pg_cstr(ngx_conf_t *cf, const char *s)
{
    size_t   len;
    u_char  *p;

    len = ngx_strlen(s);

    p = ngx_pnalloc(cf->pool, len + 1);
    if (p == NULL) {
        return NULL;
    }

    (void) ngx_cpystrn(p, (u_char *) s, len + 1);

    return (char *) p;
}


/*
 * ailink_audit_pg "conninfo" [password_file=path] [spool=dir] [batch=N]
 *                 [queue=N] [flush=time] [timeout=time];
 *
 * The connection string is parsed here (PQconninfoParse(), no network);
 * a host name is resolved here too, into hostaddr, so that connecting
 * never waits for DNS in a worker.
 */

static char *
ngx_ailink_audit_pg_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_ailink_audit_pg_conf_t *pcf = conf;

    char                 *err, *password, *host, *hostaddr, *port, *dbname;
    char                 *appname, *s;
    u_char               *conninfo;
    size_t                len;
    ngx_int_t             n;
    ngx_str_t            *value, arg, name, spool, zone;
    ngx_url_t             u;
    ngx_uint_t            i, k, nopts, gssenc;
    ngx_path_t           *path;
    PQconninfoOption     *opts, *o;
    u_char                addr[NGX_SOCKADDR_STRLEN + 1];

    if (pcf->configured) {
        return "is duplicate";
    }

    value = cf->args->elts;

    pcf->batch = 500;
    pcf->queue = 10000;
    pcf->flush = 1000;
    pcf->timeout = 5000;
    password = NULL;
    ngx_str_set(&spool, "ailink_audit_spool");

    for (i = 2; i < cf->args->nelts; i++) {

        arg = value[i];

        if (ngx_strncmp(arg.data, "password_file=", 14) == 0) {
            name.len = arg.len - 14;
            name.data = ngx_pnalloc(cf->pool, name.len + 1);
            if (name.len == 0 || name.data == NULL) {
                goto invalid;
            }

            (void) ngx_cpystrn(name.data, arg.data + 14, name.len + 1);

            if (ngx_ailink_audit_pg_password_file(cf, &name, &password)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(arg.data, "spool=", 6) == 0) {
            spool.len = arg.len - 6;
            spool.data = arg.data + 6;

            if (spool.len == 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(arg.data, "batch=", 6) == 0) {
            n = ngx_atoi(arg.data + 6, arg.len - 6);
            if (n == NGX_ERROR || n < 1 || n > 10000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "ailink_audit_pg: invalid \"%V\" "
                                   "(1 to 10000)", &arg);
                return NGX_CONF_ERROR;
            }

            pcf->batch = n;
            continue;
        }

        if (ngx_strncmp(arg.data, "queue=", 6) == 0) {
            n = ngx_atoi(arg.data + 6, arg.len - 6);
            if (n == NGX_ERROR || n < 1 || n > 1000000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "ailink_audit_pg: invalid \"%V\" "
                                   "(1 to 1000000)", &arg);
                return NGX_CONF_ERROR;
            }

            pcf->queue = n;
            continue;
        }

        if (ngx_strncmp(arg.data, "flush=", 6) == 0) {
            name.len = arg.len - 6;
            name.data = arg.data + 6;

            pcf->flush = ngx_parse_time(&name, 0);
            if (pcf->flush == (ngx_msec_t) NGX_ERROR || pcf->flush == 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(arg.data, "timeout=", 8) == 0) {
            name.len = arg.len - 8;
            name.data = arg.data + 8;

            pcf->timeout = ngx_parse_time(&name, 0);
            if (pcf->timeout == (ngx_msec_t) NGX_ERROR || pcf->timeout == 0) {
                goto invalid;
            }

            continue;
        }

        goto invalid;
    }

    /* the connection string: its options, never echoed (a password) */

    conninfo = ngx_pnalloc(cf->pool, value[1].len + 1);
    if (conninfo == NULL) {
        return NGX_CONF_ERROR;
    }

    (void) ngx_cpystrn(conninfo, value[1].data, value[1].len + 1);

    err = NULL;
    opts = PQconninfoParse((char *) conninfo, &err);

    if (opts == NULL) {
        if (err) {
            /* libpq's message ends with a newline */
            len = ngx_strlen(err);

            while (len && (err[len - 1] == LF || err[len - 1] == CR)) {
                err[--len] = '\0';
            }
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ailink_audit_pg: invalid connection string "
                           "(%s)", err ? err : "out of memory");
        if (err) {
            PQfreemem(err);
        }

        return NGX_CONF_ERROR;
    }

    nopts = 0;

    for (o = opts; o->keyword; o++) {
        if (o->val) {
            nopts++;
        }
    }

    /* and password, application_name, hostaddr, gssencmode, NULL */
    pcf->keywords = ngx_pcalloc(cf->pool, (nopts + 5) * sizeof(char *));
    pcf->values = ngx_pcalloc(cf->pool, (nopts + 5) * sizeof(char *));
    if (pcf->keywords == NULL || pcf->values == NULL) {
        PQconninfoFree(opts);
        return NGX_CONF_ERROR;
    }

    host = NULL;
    hostaddr = NULL;
    port = NULL;
    dbname = NULL;
    appname = NULL;
    gssenc = 0;
    k = 0;

    for (o = opts; o->keyword; o++) {
        if (o->val == NULL) {
            continue;
        }

        if (password && ngx_strcmp(o->keyword, "password") == 0) {
            continue;
        }

        pcf->keywords[k] = ngx_ailink_audit_pg_cstr(cf, o->keyword);
        pcf->values[k] = ngx_ailink_audit_pg_cstr(cf, o->val);

        if (pcf->keywords[k] == NULL || pcf->values[k] == NULL) {
            PQconninfoFree(opts);
            return NGX_CONF_ERROR;
        }

        s = (char *) pcf->values[k];

        if (ngx_strcmp(o->keyword, "host") == 0) {
            host = s;

        } else if (ngx_strcmp(o->keyword, "hostaddr") == 0) {
            hostaddr = s;

        } else if (ngx_strcmp(o->keyword, "port") == 0) {
            port = s;

        } else if (ngx_strcmp(o->keyword, "dbname") == 0) {
            dbname = s;

        } else if (ngx_strcmp(o->keyword, "application_name") == 0) {
            appname = s;

        } else if (ngx_strcmp(o->keyword, "gssencmode") == 0) {
            gssenc = 1;
        }

        k++;
    }

    PQconninfoFree(opts);

    if (password) {
        pcf->keywords[k] = "password";
        pcf->values[k++] = password;
    }

    if (appname == NULL) {
        pcf->keywords[k] = "application_name";
        pcf->values[k++] = "ailink-audit";
    }

    if (!gssenc) {
        /* GSSAPI negotiation may ask a Kerberos server, blocking */
        pcf->keywords[k] = "gssencmode";
        pcf->values[k++] = "disable";
    }

    /* a host name resolved now: no resolver in the workers */

    if (host && hostaddr == NULL && host[0] != '/' && host[0] != '@'
        && ngx_strchr(host, ',') == NULL && ngx_strchr(host, ':') == NULL
        && ngx_inet_addr((u_char *) host, ngx_strlen(host)) == INADDR_NONE)
    {
        ngx_memzero(&u, sizeof(ngx_url_t));
        u.url.data = (u_char *) host;
        u.url.len = ngx_strlen(host);
        u.default_port = 5432;

        if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "ailink_audit_pg: host \"%s\" not found: %s",
                               host, u.err ? u.err : "no address");
            return NGX_CONF_ERROR;
        }

        len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen, addr,
                            NGX_SOCKADDR_STRLEN, 0);
        addr[len] = '\0';

        hostaddr = ngx_ailink_audit_pg_cstr(cf, (char *) addr);
        if (hostaddr == NULL) {
            return NGX_CONF_ERROR;
        }

        pcf->keywords[k] = "hostaddr";
        pcf->values[k++] = hostaddr;
    }

    pcf->keywords[k] = NULL;
    pcf->values[k] = NULL;

    /* its name in the logs: where, never who with what password */

    len = 64 + (host ? ngx_strlen(host) : 0)
          + (hostaddr ? ngx_strlen(hostaddr) : 0)
          + (port ? ngx_strlen(port) : 0)
          + (dbname ? ngx_strlen(dbname) : 0);

    pcf->name.data = ngx_pnalloc(cf->pool, len);
    if (pcf->name.data == NULL) {
        return NGX_CONF_ERROR;
    }

    pcf->name.len = ngx_snprintf(pcf->name.data, len, "%s:%s/%s",
                                 host ? host : (hostaddr ? hostaddr
                                                         : "localhost"),
                                 port ? port : "5432",
                                 dbname ? dbname : "(default)")
                    - pcf->name.data;

    /* the spool directory: made by the master, the workers' user's */

    path = ngx_pcalloc(cf->pool, sizeof(ngx_path_t));
    if (path == NULL) {
        return NGX_CONF_ERROR;
    }

    path->name = spool;

    if (ngx_conf_full_name(cf->cycle, &path->name, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (path->name.len > 1 && path->name.data[path->name.len - 1] == '/') {
        path->name.len--;
    }

    path->conf_file = cf->conf_file->file.name.data;
    path->line = cf->conf_file->line;

    pcf->spool = path;

    if (ngx_add_path(cf, &pcf->spool) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_str_set(&zone, "ailink_audit_pg");

    pcf->zone = ngx_shared_memory_add(cf, &zone, 8 * ngx_pagesize,
                                      &ngx_ailink_audit_pg_module);
    if (pcf->zone == NULL) {
        return NGX_CONF_ERROR;
    }

    pcf->zone->init = ngx_ailink_audit_pg_init_zone;

    if (ngx_ailink_ready_add_check(cf, "postgresql",
                                   ngx_ailink_audit_pg_ready, pcf)
        != NGX_OK
        || ngx_ailink_metrics_add_collector(cf, ngx_ailink_audit_pg_collect,
                                            pcf)
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    pcf->configured = 1;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "ailink_audit_pg: invalid parameter \"%V\"",
                       &value[i]);
    return NGX_CONF_ERROR;
}
