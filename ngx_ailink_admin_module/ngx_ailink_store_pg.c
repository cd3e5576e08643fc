
/*
 * Copyright (C) AILink
 *
 * The store in PostgreSQL ("ailink_store_pg"): several gateways share one
 * document.  Every commit is a row of the table "ailink_store"
 * (generation, doc, committed_at), inserted only if the newest row is the
 * generation the change was made on (optimistic concurrency: when another
 * gateway committed first, the insert adds nothing and the change is
 * refused as a conflict, never lost or merged).  Rows older than "keep"
 * generations are pruned.
 *
 * Each gateway keeps the newest document in a shared-memory zone, as the
 * file store does: generation() and read() are shared-memory reads and
 * nothing on the request path touches PostgreSQL.  One worker (worker 0)
 * follows the other gateways' commits: every "poll" it asks for the
 * newest generation, and loads a newer document into the zone, where
 * every worker finds it on its next request.
 *
 * libpq is used blocking, in nginx's thread pool only: each commit and
 * each poll is a thread task that owns its connection (one for the
 * poller, one for this worker's commits, kept open between tasks) while
 * it runs; the event loop never waits.  Connecting is bounded by
 * connect_timeout and tcp_user_timeout, each statement by
 * statement_timeout, all from "timeout=".  At startup the master loads
 * the document (blocking, before there are workers); when PostgreSQL
 * cannot be reached then, the gateway starts with an empty store (the
 * store's tokens are refused, never a revoked one accepted) and the
 * poller loads it as soon as PostgreSQL answers.
 */


#include "ngx_ailink_store.h"
#include "ngx_ailink_auth.h"
#include <ngx_thread_pool.h>
#include <libpq-fe.h>

#include "ngx_ailink_pg.h"


#define NGX_AILINK_STORE_PG_BACKOFF  2000   /* ms, the longest retry wait */
#define NGX_AILINK_STORE_PG_ERRLEN   256


enum {
    NGX_AILINK_STORE_PG_UNKNOWN = 0,
    NGX_AILINK_STORE_PG_UP,
    NGX_AILINK_STORE_PG_DOWN
};


typedef struct {
    const char                **keywords;   /* for PQconnectdbParams(), */
    const char                **values;     /* the password among them */
    ngx_str_t                   name;       /* host:port/dbname, for logs */
    ngx_msec_t                  poll;
    ngx_msec_t                  timeout;
    ngx_uint_t                  keep;
    char                        setup[512]; /* run on each new connection */

    ngx_shm_zone_t             *zone;
    ngx_slab_pool_t            *shpool;
    ngx_ailink_store_sh_t   *sh;
    ngx_thread_pool_t          *tp;

    /* this worker's */
    ngx_uint_t                  base;       /* the generation locked on */
    PGconn                     *commit_conn;
    ngx_uint_t                  committing;
    PGconn                     *poll_conn;
    ngx_uint_t                  polling;
    ngx_msec_t                  backoff;
    ngx_event_t                 poll_ev;
    ngx_log_t                  *log;
} ngx_ailink_store_pg_t;


/* a thread task: a commit or a poll */
typedef struct {
    ngx_ailink_store_t         *store;
    ngx_thread_task_t          *task;       /* a poll's, to free */
    ngx_http_request_t         *request;    /* a commit's */
    ngx_ailink_store_done_pt    done;
    char                       *doc;        /* a commit's, NUL-terminated */
    size_t                      len;
    ngx_uint_t                  generation; /* to commit; the one known */
    ngx_int_t                   rc;
    char                       *newer;      /* malloc()ed: a newer doc */
    size_t                      newer_len;
    ngx_uint_t                  newer_gen;
    char                        error[NGX_AILINK_STORE_PG_ERRLEN];
} ngx_ailink_store_pg_task_t;


static ngx_uint_t ngx_ailink_store_pg_generation(ngx_ailink_store_t *st);
static ngx_int_t ngx_ailink_store_pg_read(ngx_ailink_store_t *st,
    ngx_pool_t *pool, ngx_str_t *doc, ngx_uint_t *generation);
static ngx_int_t ngx_ailink_store_pg_lock(ngx_ailink_store_t *st);
static void ngx_ailink_store_pg_unlock(ngx_ailink_store_t *st);
static ngx_int_t ngx_ailink_store_pg_commit(ngx_ailink_store_t *st,
    ngx_http_request_t *r, ngx_str_t *doc, ngx_ailink_store_done_pt done);
static ngx_int_t ngx_ailink_store_pg_commit_now(ngx_ailink_store_t *st,
    ngx_str_t *doc, ngx_log_t *log);
static ngx_int_t ngx_ailink_store_pg_init_process(ngx_ailink_store_t *st,
    ngx_cycle_t *cycle);
static void ngx_ailink_store_pg_exit_process(ngx_ailink_store_t *st,
    ngx_cycle_t *cycle);
static ngx_int_t ngx_ailink_store_pg_init_zone(ngx_shm_zone_t *zone,
    void *data);
static void ngx_ailink_store_pg_poll_handler(ngx_event_t *ev);
static const char *ngx_ailink_store_pg_ready(ngx_http_request_t *r,
    void *data);


static ngx_ailink_store_ops_t  ngx_ailink_store_pg_ops = {
    ngx_ailink_store_pg_generation,
    ngx_ailink_store_pg_read,
    ngx_ailink_store_pg_lock,
    ngx_ailink_store_pg_unlock,
    ngx_ailink_store_pg_commit,
    ngx_ailink_store_pg_commit_now,
    ngx_ailink_store_pg_init_process,
    ngx_ailink_store_pg_exit_process
};


/*
 * Schema version 1, made by the first connection that finds it missing;
 * the advisory lock serializes gateways starting together (CREATE ... IF
 * NOT EXISTS alone may still collide).
 */

static const char  ngx_ailink_store_pg_schema[] =
    "SELECT pg_advisory_xact_lock(4107735121);"
    "CREATE TABLE IF NOT EXISTS ailink_store ("
        "generation bigint PRIMARY KEY,"
        "doc text NOT NULL,"
        "committed_at timestamptz NOT NULL DEFAULT now())";

/* generation N+1 only if the newest is N (the primary key settles a race) */
static const char  ngx_ailink_store_pg_insert[] =
    "INSERT INTO ailink_store (generation, doc) "
    "SELECT $1::bigint, $2::text "
    "WHERE (SELECT coalesce(max(generation), 0) FROM ailink_store) "
        "= $1::bigint - 1";

static const char  ngx_ailink_store_pg_prune[] =
    "DELETE FROM ailink_store WHERE generation <= $1::bigint - $2::bigint";

/* the newest generation, with its document when it is not the one known */
static const char  ngx_ailink_store_pg_newest[] =
    "SELECT generation, CASE WHEN generation <> $1::bigint THEN doc END "
    "FROM ailink_store ORDER BY generation DESC LIMIT 1";


/* libpq's message, one line, into a task's buffer */

static void
ngx_ailink_store_pg_error(char *dst, const char *what, const char *msg)
{
    size_t  len;

    (void) ngx_snprintf((u_char *) dst, NGX_AILINK_STORE_PG_ERRLEN - 1,
                        "%s: %s%Z", what,
                        (msg && *msg) ? msg : "unknown error");
    dst[NGX_AILINK_STORE_PG_ERRLEN - 1] = '\0';

    len = ngx_strlen(dst);

    while (len && (dst[len - 1] == LF || dst[len - 1] == CR
                   || dst[len - 1] == ' '))
    {
        dst[--len] = '\0';
    }

    for ( /* void */ ; len; len--) {
        if (dst[len - 1] == LF || dst[len - 1] == CR
            || dst[len - 1] == '\t')
        {
            dst[len - 1] = ' ';
        }
    }
}


static void
ngx_ailink_store_pg_notice(void *arg, const char *message)
{
    /* "relation already exists, skipping": nothing to report */
}


/*
 * A connection, made or kept (blocking: in a thread, or in the master at
 * startup); NULL with the reason in "err".
 */

static PGconn *
ngx_ailink_store_pg_connect(ngx_ailink_store_pg_t *pg, PGconn **cp,
    char *err)
{
    PGconn    *conn;
    PGresult  *res;

    conn = *cp;

    if (conn && PQstatus(conn) == CONNECTION_OK) {
        return conn;
    }

    if (conn) {
        PQfinish(conn);
        *cp = NULL;
    }

    conn = PQconnectdbParams(pg->keywords, pg->values, 0);

    if (conn == NULL) {
        ngx_ailink_store_pg_error(err, "connect", "out of memory");
        return NULL;
    }

    if (PQstatus(conn) != CONNECTION_OK) {
        ngx_ailink_store_pg_error(err, "connect", PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }

    /* libpq prints the server's notices on stderr by default */
    (void) PQsetNoticeProcessor(conn, ngx_ailink_store_pg_notice, NULL);

    res = PQexec(conn, pg->setup);

    if (PQresultStatus(res) != PGRES_COMMAND_OK
        && PQresultStatus(res) != PGRES_TUPLES_OK)
    {
        ngx_ailink_store_pg_error(err, "schema", PQresultErrorMessage(res));
        PQclear(res);
        PQfinish(conn);
        return NULL;
    }

    PQclear(res);

    *cp = conn;

    return conn;
}


/* the newest row into t->newer when it is not t->generation */

static ngx_int_t
ngx_ailink_store_pg_fetch(ngx_ailink_store_pg_t *pg, PGconn *conn,
    ngx_ailink_store_pg_task_t *t)
{
    char        known[NGX_INT_T_LEN + 1];
    ngx_int_t   gen;
    PGresult   *res;
    const char *values[1];

    (void) ngx_snprintf((u_char *) known, sizeof(known), "%ui%Z",
                        t->generation);
    values[0] = known;

    res = PQexecParams(conn, ngx_ailink_store_pg_newest, 1, NULL, values,
                       NULL, NULL, 0);

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        ngx_ailink_store_pg_error(t->error, "select",
                                  PQresultErrorMessage(res));
        PQclear(res);
        return NGX_ERROR;
    }

    t->newer_gen = 0;

    if (PQntuples(res) == 1) {
        gen = ngx_atoi((u_char *) PQgetvalue(res, 0, 0),
                       PQgetlength(res, 0, 0));

        if (gen == NGX_ERROR) {
            ngx_ailink_store_pg_error(t->error, "select",
                                      "a generation that is not a number");
            PQclear(res);
            return NGX_ERROR;
        }

        t->newer_gen = gen;

        if (!PQgetisnull(res, 0, 1)) {
            t->newer_len = PQgetlength(res, 0, 1);
            t->newer = malloc(t->newer_len + 1);

            if (t->newer == NULL) {
                ngx_ailink_store_pg_error(t->error, "select",
                                          "out of memory");
                PQclear(res);
                return NGX_ERROR;
            }

            ngx_memcpy(t->newer, PQgetvalue(res, 0, 1), t->newer_len);
            t->newer[t->newer_len] = '\0';
        }
    }

    PQclear(res);

    return NGX_OK;
}


/* the commit itself: blocking, in a thread (or the master at startup) */

static void
ngx_ailink_store_pg_commit_task(void *data, ngx_log_t *log)
{
    ngx_ailink_store_pg_task_t  *t = data;

    char                    gen[NGX_INT_T_LEN + 1], keep[NGX_INT_T_LEN + 1];
    int                     lengths[2];
    PGconn                 *conn;
    PGresult               *res;
    const char             *values[2], *state;
    ngx_ailink_store_pg_t  *pg;

    pg = t->store->data;

    conn = ngx_ailink_store_pg_connect(pg, &pg->commit_conn, t->error);
    if (conn == NULL) {
        t->rc = NGX_AILINK_STORE_UNAVAILABLE;
        return;
    }

    (void) ngx_snprintf((u_char *) gen, sizeof(gen), "%ui%Z", t->generation);
    values[0] = gen;
    values[1] = t->doc;
    lengths[0] = 0;
    lengths[1] = t->len;

    res = PQexecParams(conn, ngx_ailink_store_pg_insert, 2, NULL, values,
                       lengths, NULL, 0);

    if (PQresultStatus(res) == PGRES_COMMAND_OK) {
        t->rc = ngx_strcmp(PQcmdTuples(res), "1") == 0
                ? NGX_OK : NGX_AILINK_STORE_CONFLICT;

    } else {
        state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

        if (state && ngx_strcmp(state, "23505") == 0) {
            /* unique_violation: the same generation, committed first */
            t->rc = NGX_AILINK_STORE_CONFLICT;

        } else {
            ngx_ailink_store_pg_error(t->error, "insert",
                                      PQresultErrorMessage(res));
            t->rc = NGX_AILINK_STORE_UNAVAILABLE;
        }
    }

    PQclear(res);

    if (t->rc == NGX_OK) {
        if (pg->keep) {
            (void) ngx_snprintf((u_char *) keep, sizeof(keep), "%ui%Z",
                                pg->keep);
            values[1] = keep;

            /* a failed prune is retried by the next commit */
            PQclear(PQexecParams(conn, ngx_ailink_store_pg_prune, 2, NULL,
                                 values, NULL, NULL, 0));
        }

    } else if (t->rc == NGX_AILINK_STORE_CONFLICT) {
        /* the newer document, for this gateway to see before a retry */
        t->generation--;

        if (ngx_ailink_store_pg_fetch(pg, conn, t) != NGX_OK) {
            t->newer_gen = 0;
        }
    }

    if (PQstatus(conn) != CONNECTION_OK) {
        PQfinish(conn);
        pg->commit_conn = NULL;
    }
}


/* the poller's question: blocking, in a thread */

static void
ngx_ailink_store_pg_poll_task(void *data, ngx_log_t *log)
{
    ngx_ailink_store_pg_task_t  *t = data;

    PGconn                 *conn;
    ngx_ailink_store_pg_t  *pg;

    pg = t->store->data;

    conn = ngx_ailink_store_pg_connect(pg, &pg->poll_conn, t->error);
    if (conn == NULL) {
        t->rc = NGX_AILINK_STORE_UNAVAILABLE;
        return;
    }

    if (ngx_ailink_store_pg_fetch(pg, conn, t) != NGX_OK) {
        t->rc = NGX_AILINK_STORE_UNAVAILABLE;

        PQfinish(conn);
        pg->poll_conn = NULL;
        return;
    }

    t->rc = NGX_OK;
}


/* PostgreSQL's state, logged by the one who sees it change */

static void
ngx_ailink_store_pg_state(ngx_ailink_store_pg_t *pg, ngx_uint_t state,
    ngx_log_t *log, const char *why)
{
    ngx_atomic_uint_t  old;

    old = pg->sh->state;

    if (old == state || !ngx_atomic_cmp_set(&pg->sh->state, old, state)) {
        return;
    }

    if (state == NGX_AILINK_STORE_PG_UP) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "ailink store pg %V: connected, at generation %ui",
                      &pg->name, (ngx_uint_t) pg->sh->generation);
        return;
    }

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "ailink store pg %V: unavailable (%s); requests are served "
                  "from the store's generation %ui in shared memory, admin "
                  "changes are refused, retrying", &pg->name, why,
                  (ngx_uint_t) pg->sh->generation);
}


/* a document into the zone, when it is newer than the zone's */

static ngx_int_t
ngx_ailink_store_pg_publish(ngx_ailink_store_pg_t *pg, u_char *doc,
    size_t len, ngx_uint_t generation, ngx_log_t *log)
{
    u_char  *p;

    ngx_shmtx_lock(&pg->shpool->mutex);

    if (generation <= pg->sh->generation) {
        ngx_shmtx_unlock(&pg->shpool->mutex);
        return NGX_OK;
    }

    p = ngx_slab_alloc_locked(pg->shpool, len ? len : 1);

    if (p == NULL) {
        if (pg->sh->too_big != generation) {
            pg->sh->too_big = generation;
            ngx_shmtx_unlock(&pg->shpool->mutex);

            ngx_log_error(NGX_LOG_ALERT, log, 0,
                          "ailink store pg %V: the document of generation "
                          "%ui (%uz bytes) does not fit in the store's "
                          "shared memory (size=); generation %ui stays in "
                          "use", &pg->name, generation, len,
                          (ngx_uint_t) pg->sh->generation);
            return NGX_ERROR;
        }

        ngx_shmtx_unlock(&pg->shpool->mutex);
        return NGX_ERROR;
    }

    ngx_memcpy(p, doc, len);

    if (pg->sh->doc) {
        ngx_slab_free_locked(pg->shpool, pg->sh->doc);
    }

    pg->sh->doc = p;
    pg->sh->len = len;
    ngx_memory_barrier();
    pg->sh->generation = generation;

    ngx_shmtx_unlock(&pg->shpool->mutex);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                   "ailink store pg: generation %ui published, %uz bytes",
                   generation, len);

    return NGX_OK;
}


/* startup, in the master: the newest document, blocking */

static void
ngx_ailink_store_pg_load(ngx_ailink_store_pg_t *pg, ngx_log_t *log)
{
    PGconn                      *conn;
    ngx_ailink_store_pg_task_t   t;

    ngx_memzero(&t, sizeof(t));
    conn = NULL;

    if (ngx_ailink_store_pg_connect(pg, &conn, t.error) == NULL
        || ngx_ailink_store_pg_fetch(pg, conn, &t) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "ailink store pg %V: unavailable at start (%s); "
                      "starting with an empty store: its tokens, "
                      "credentials and services are unknown until "
                      "PostgreSQL answers, admin changes are refused",
                      &pg->name, t.error);
        pg->sh->state = NGX_AILINK_STORE_PG_DOWN;

        if (conn) {
            PQfinish(conn);
        }

        return;
    }

    PQfinish(conn);

    if (t.newer_gen) {
        (void) ngx_ailink_store_pg_publish(pg, (u_char *) t.newer,
                                           t.newer_len, t.newer_gen, log);
    }

    free(t.newer);

    pg->sh->state = NGX_AILINK_STORE_PG_UP;

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "ailink store pg %V: generation %ui loaded", &pg->name,
                  (ngx_uint_t) pg->sh->generation);
}


static ngx_int_t
ngx_ailink_store_pg_init_zone(ngx_shm_zone_t *zone, void *data)
{
    size_t                  len;
    ngx_ailink_store_t     *ost = data;
    ngx_ailink_store_t     *st;
    ngx_ailink_store_pg_t  *pg, *opg;

    st = zone->data;
    pg = st->data;

    if (ost) {
        /* a reload: the document in shared memory is the newest known */
        opg = ost->data;
        pg->shpool = opg->shpool;
        pg->sh = opg->sh;
        return NGX_OK;
    }

    pg->shpool = (ngx_slab_pool_t *) zone->shm.addr;

    if (zone->shm.exists) {
        pg->sh = pg->shpool->data;
        return NGX_OK;
    }

    pg->sh = ngx_slab_calloc(pg->shpool, sizeof(ngx_ailink_store_sh_t));
    if (pg->sh == NULL) {
        return NGX_ERROR;
    }

    pg->shpool->data = pg->sh;

    len = sizeof(" in ailink_store_pg zone \"\"") + zone->shm.name.len;

    pg->shpool->log_ctx = ngx_slab_alloc(pg->shpool, len);
    if (pg->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(pg->shpool->log_ctx, " in ailink_store_pg zone \"%V\"%Z",
                &zone->shm.name);

    ngx_ailink_store_pg_load(pg, zone->shm.log);

    return NGX_OK;
}


/* /readyz "store" (and ailink_backend_up): PostgreSQL as last seen */

static const char *
ngx_ailink_store_pg_ready(ngx_http_request_t *r, void *data)
{
    ngx_ailink_store_pg_t  *pg = data;

    return (pg->sh && pg->sh->state == NGX_AILINK_STORE_PG_UP) ? "ok"
                                                                : "down";
}


static ngx_uint_t
ngx_ailink_store_pg_generation(ngx_ailink_store_t *st)
{
    ngx_ailink_store_pg_t  *pg = st->data;

    return pg->sh->generation;
}


static ngx_int_t
ngx_ailink_store_pg_read(ngx_ailink_store_t *st, ngx_pool_t *pool,
    ngx_str_t *doc, ngx_uint_t *generation)
{
    ngx_ailink_store_pg_t  *pg = st->data;

    return ngx_ailink_store_shm_read(pg->shpool, pg->sh, pool, doc,
                                     generation);
}


/*
 * The writers of this gateway are serialized as in the file store; the
 * generation seen now is the one the change is made on: if the poller
 * loads a newer one meanwhile, the commit is a conflict, never a change
 * made on an old document.
 */

static ngx_int_t
ngx_ailink_store_pg_lock(ngx_ailink_store_t *st)
{
    ngx_ailink_store_pg_t  *pg = st->data;

    if (ngx_ailink_store_shm_lock(pg->sh) != NGX_OK) {
        return NGX_BUSY;
    }

    pg->base = pg->sh->generation;

    return NGX_OK;
}


static void
ngx_ailink_store_pg_unlock(ngx_ailink_store_t *st)
{
    ngx_ailink_store_pg_t  *pg = st->data;

    ngx_ailink_store_shm_unlock(pg->sh);
}


/* back on the event loop: publish, release the lock, answer */

static void
ngx_ailink_store_pg_committed(ngx_event_t *ev)
{
    ngx_connection_t            *c;
    ngx_http_request_t          *r;
    ngx_ailink_store_pg_t       *pg;
    ngx_ailink_store_pg_task_t  *t;

    t = ev->data;
    r = t->request;
    c = r->connection;
    pg = t->store->data;

    pg->committing = 0;
    r->main->blocked--;
    r->aio = 0;

    switch (t->rc) {

    case NGX_OK:
        ngx_ailink_store_pg_state(pg, NGX_AILINK_STORE_PG_UP, c->log, NULL);

        if (ngx_ailink_store_pg_publish(pg, (u_char *) t->doc, t->len,
                                        t->generation, c->log)
            != NGX_OK)
        {
            /* committed: the other gateways have it, this one keeps the
               generation before (logged); the client is told it worked */
        }

        break;

    case NGX_AILINK_STORE_CONFLICT:
        ngx_ailink_store_pg_state(pg, NGX_AILINK_STORE_PG_UP, c->log, NULL);

        ngx_log_error(NGX_LOG_WARN, c->log, 0,
                      "ailink store pg %V: generation %ui was committed by "
                      "another gateway first (now %ui); the change is "
                      "refused, nothing changed", &pg->name,
                      t->generation + 1, t->newer_gen);

        if (t->newer) {
            (void) ngx_ailink_store_pg_publish(pg, (u_char *) t->newer,
                                               t->newer_len, t->newer_gen,
                                               c->log);
        }

        break;

    default:
        ngx_ailink_store_pg_state(pg, NGX_AILINK_STORE_PG_DOWN, c->log,
                                  t->error);
        t->rc = NGX_AILINK_STORE_UNAVAILABLE;
        break;
    }

    free(t->newer);
    t->newer = NULL;

    ngx_ailink_store_pg_unlock(t->store);

    t->done(r, t->rc);

    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_ailink_store_pg_commit(ngx_ailink_store_t *st, ngx_http_request_t *r,
    ngx_str_t *doc, ngx_ailink_store_done_pt done)
{
    ngx_thread_task_t           *task;
    ngx_ailink_store_pg_t       *pg = st->data;
    ngx_ailink_store_pg_task_t  *t;

    if (pg->committing) {
        /* cannot happen under the lock; fail closed */
        goto failed;
    }

    task = ngx_thread_task_alloc(r->pool, sizeof(ngx_ailink_store_pg_task_t));
    if (task == NULL) {
        goto failed;
    }

    t = task->ctx;
    t->store = st;
    t->request = r;
    t->done = done;
    t->generation = pg->base + 1;
    t->len = doc->len;

    t->doc = ngx_pnalloc(r->pool, doc->len + 1);
    if (t->doc == NULL) {
        goto failed;
    }

    ngx_memcpy(t->doc, doc->data, doc->len);
    t->doc[doc->len] = '\0';

    task->handler = ngx_ailink_store_pg_commit_task;
    task->event.data = t;
    task->event.handler = ngx_ailink_store_pg_committed;

    if (ngx_thread_task_post(pg->tp, task) != NGX_OK) {
        goto failed;
    }

    pg->committing = 1;
    r->main->blocked++;
    r->aio = 1;

    return NGX_OK;

failed:

    ngx_ailink_store_pg_unlock(st);

    return NGX_ERROR;
}


/* the same commit, done in place: for the master at startup only */

static ngx_int_t
ngx_ailink_store_pg_commit_now(ngx_ailink_store_t *st, ngx_str_t *doc,
    ngx_log_t *log)
{
    ngx_int_t                    rc;
    ngx_ailink_store_pg_t       *pg = st->data;
    ngx_ailink_store_pg_task_t   t;

    ngx_memzero(&t, sizeof(t));
    t.store = st;
    t.generation = pg->sh->generation + 1;
    t.len = doc->len;

    t.doc = malloc(doc->len + 1);
    if (t.doc == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(t.doc, doc->data, doc->len);
    t.doc[doc->len] = '\0';

    ngx_ailink_store_pg_commit_task(&t, log);

    if (pg->commit_conn) {
        PQfinish(pg->commit_conn);
        pg->commit_conn = NULL;
    }

    free(t.newer);

    if (t.rc == NGX_OK) {
        rc = ngx_ailink_store_pg_publish(pg, (u_char *) t.doc, t.len,
                                         t.generation, log);

    } else {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "ailink store pg %V: the commit of generation %ui "
                      "failed (%s)", &pg->name, t.generation,
                      t.rc == NGX_AILINK_STORE_CONFLICT
                      ? "another gateway committed first" : t.error);
        rc = NGX_ERROR;
    }

    free(t.doc);

    return rc;
}


/* following the other gateways: worker 0 asks every "poll" */

static void
ngx_ailink_store_pg_polled(ngx_event_t *ev)
{
    ngx_msec_t                   next;
    ngx_ailink_store_pg_t       *pg;
    ngx_ailink_store_pg_task_t  *t;

    t = ev->data;
    pg = t->store->data;

    pg->polling = 0;

    if (t->rc == NGX_OK) {
        ngx_ailink_store_pg_state(pg, NGX_AILINK_STORE_PG_UP, pg->log, NULL);

        if (t->newer && t->newer_gen > pg->sh->generation) {
            if (ngx_ailink_store_pg_publish(pg, (u_char *) t->newer,
                                            t->newer_len, t->newer_gen,
                                            pg->log)
                == NGX_OK)
            {
                ngx_log_error(NGX_LOG_INFO, pg->log, 0,
                              "ailink store pg %V: generation %ui loaded",
                              &pg->name, t->newer_gen);
            }
        }

        pg->backoff = 0;
        next = pg->poll;

    } else {
        ngx_ailink_store_pg_state(pg, NGX_AILINK_STORE_PG_DOWN, pg->log,
                                  t->error);

        pg->backoff = pg->backoff ? ngx_min(2 * pg->backoff,
                                            NGX_AILINK_STORE_PG_BACKOFF)
                                  : ngx_min(pg->poll,
                                            NGX_AILINK_STORE_PG_BACKOFF);
        next = pg->backoff;
    }

    free(t->newer);
    ngx_free(t->task);

    if (!ngx_exiting && !ngx_quit && !ngx_terminate) {
        ngx_add_timer(&pg->poll_ev, next);
    }
}


static void
ngx_ailink_store_pg_poll_handler(ngx_event_t *ev)
{
    ngx_ailink_store_t          *st = ev->data;
    ngx_thread_task_t           *task;
    ngx_ailink_store_pg_t       *pg = st->data;
    ngx_ailink_store_pg_task_t  *t;

    if (pg->polling) {
        return;
    }

    /* not from a pool: the task outlives no request, freed when done */
    task = ngx_calloc(sizeof(ngx_thread_task_t)
                      + sizeof(ngx_ailink_store_pg_task_t), ev->log);
    if (task == NULL) {
        ngx_add_timer(ev, pg->poll);
        return;
    }

    t = (ngx_ailink_store_pg_task_t *) (task + 1);
    task->ctx = t;
    t->task = task;
    t->store = st;
    t->generation = pg->sh->generation;

    task->handler = ngx_ailink_store_pg_poll_task;
    task->event.data = t;
    task->event.handler = ngx_ailink_store_pg_polled;

    if (ngx_thread_task_post(pg->tp, task) != NGX_OK) {
        ngx_free(task);
        ngx_add_timer(ev, pg->poll);
        return;
    }

    pg->polling = 1;
}


static ngx_int_t
ngx_ailink_store_pg_init_process(ngx_ailink_store_t *st, ngx_cycle_t *cycle)
{
    ngx_ailink_store_pg_t  *pg = st->data;

    if (ngx_process != NGX_PROCESS_WORKER && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    if (ngx_worker != 0) {
        return NGX_OK;
    }

    pg->log = cycle->log;
    pg->poll_ev.handler = ngx_ailink_store_pg_poll_handler;
    pg->poll_ev.data = st;
    pg->poll_ev.log = cycle->log;
    pg->poll_ev.cancelable = 1;

    ngx_add_timer(&pg->poll_ev, pg->poll);

    return NGX_OK;
}


static void
ngx_ailink_store_pg_exit_process(ngx_ailink_store_t *st, ngx_cycle_t *cycle)
{
    ngx_ailink_store_pg_t  *pg = st->data;

    /* a task still running owns its connection: left to the exit */

    if (pg->poll_conn && !pg->polling) {
        PQfinish(pg->poll_conn);
        pg->poll_conn = NULL;
    }

    if (pg->commit_conn && !pg->committing) {
        PQfinish(pg->commit_conn);
        pg->commit_conn = NULL;
    }
}


static const char *
ngx_ailink_store_pg_number(ngx_conf_t *cf, ngx_msec_t n)
{
    u_char  *p;

    p = ngx_pnalloc(cf->pool, NGX_INT_T_LEN + 1);
    if (p == NULL) {
        return NULL;
    }

    (void) ngx_sprintf(p, "%M%Z", n);

    return (const char *) p;
}


/*
 * ailink_store_pg "conninfo" [password_file=path] [size=1m] [poll=200ms]
 *                 [timeout=5s] [keep=100];
 *
 * The connection string is parsed here (PQconninfoParse(), no network)
 * and never echoed: it may hold a password.
 */

char *
ngx_ailink_store_pg_create(ngx_conf_t *cf, ngx_ailink_store_t **store,
    void *module)
{
    char                      *password;
    ssize_t                    size;
    ngx_int_t                  n, rc;
    ngx_str_t                 *value, arg, name;
    ngx_uint_t                 i;
    const char                *defaults[7];
    ngx_ailink_store_t        *st;
    ngx_ailink_store_pg_t     *pg;
    ngx_ailink_pg_conninfo_t   ci;

    st = ngx_pcalloc(cf->pool, sizeof(ngx_ailink_store_t));
    pg = ngx_pcalloc(cf->pool, sizeof(ngx_ailink_store_pg_t));
    if (st == NULL || pg == NULL) {
        return NGX_CONF_ERROR;
    }

    st->ops = &ngx_ailink_store_pg_ops;
    st->data = pg;

    value = cf->args->elts;

    size = 1024 * 1024;
    pg->poll = 200;
    pg->timeout = 5000;
    pg->keep = 100;
    password = NULL;

    for (i = 2; i < cf->args->nelts; i++) {
        arg = value[i];

        rc = ngx_ailink_conf_password_arg(cf, "ailink_store_pg", &arg,
                                          &password);
        if (rc == NGX_ERROR) {
            return NGX_CONF_ERROR;
        }

        if (rc != NGX_DECLINED) {
            if (rc == NGX_ABORT) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(arg.data, "size=", 5) == 0) {
            size = ngx_parse_size(&(ngx_str_t) { arg.len - 5, arg.data + 5 });
            if (size < (ssize_t) (8 * ngx_pagesize)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "ailink_store_pg: invalid \"%V\" "
                                   "(at least 8 pages)", &arg);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(arg.data, "poll=", 5) == 0) {
            name.len = arg.len - 5;
            name.data = arg.data + 5;

            pg->poll = ngx_parse_time(&name, 0);
            if (pg->poll == (ngx_msec_t) NGX_ERROR || pg->poll < 10
                || pg->poll > 60000)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "ailink_store_pg: invalid \"%V\" "
                                   "(10ms to 60s)", &arg);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(arg.data, "timeout=", 8) == 0) {
            name.len = arg.len - 8;
            name.data = arg.data + 8;

            pg->timeout = ngx_parse_time(&name, 0);
            if (pg->timeout == (ngx_msec_t) NGX_ERROR || pg->timeout < 1000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "ailink_store_pg: invalid \"%V\" "
                                   "(1s at least)", &arg);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(arg.data, "keep=", 5) == 0) {
            n = ngx_atoi(arg.data + 5, arg.len - 5);
            if (n == NGX_ERROR) {
                goto invalid;
            }

            pg->keep = n;
            continue;
        }

        goto invalid;
    }

    /* the connection string, never echoed; each bound by timeout= */

    defaults[0] = "application_name";
    defaults[1] = "ailink-store";
    defaults[2] = "connect_timeout";
    defaults[3] = ngx_ailink_store_pg_number(cf,
                                             ngx_max(pg->timeout / 1000, 2));
    /* a server that vanished without a FIN does not hold a thread */
    defaults[4] = "tcp_user_timeout";
    defaults[5] = ngx_ailink_store_pg_number(cf, pg->timeout);
    defaults[6] = NULL;

    if (defaults[3] == NULL || defaults[5] == NULL
        || ngx_ailink_pg_conninfo(cf, "ailink_store_pg", &value[1], password,
                                  defaults, 0, &ci)
           != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    pg->keywords = ci.keywords;
    pg->values = ci.values;

    (void) ngx_snprintf((u_char *) pg->setup, sizeof(pg->setup),
                        "SET statement_timeout = %M;%s%Z", pg->timeout,
                        ngx_ailink_store_pg_schema);

    pg->name = ci.name;

    pg->tp = ngx_thread_pool_add(cf, NULL);
    if (pg->tp == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_str_set(&name, "ailink_store_pg");

    pg->zone = ngx_shared_memory_add(cf, &name, size, module);
    if (pg->zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (pg->zone->data) {
        return "is duplicate";
    }

    pg->zone->init = ngx_ailink_store_pg_init_zone;
    pg->zone->data = st;

    if (ngx_ailink_ready_add_check(cf, "store", ngx_ailink_store_pg_ready, pg)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    *store = st;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "ailink_store_pg: invalid parameter \"%V\"", &arg);

    return NGX_CONF_ERROR;
}
