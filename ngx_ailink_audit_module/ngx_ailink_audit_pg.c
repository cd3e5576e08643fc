
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
 *
 * This file: the directive, the configuration, the zone of the workers'
 * depths, the worker's start and exit, the log-phase entry that queues a
 * record, the readiness check and the metrics collector.  The connection
 * is in ngx_ailink_audit_pg_conn.c, the spool in ngx_ailink_audit_pg_spool.c.
 */


#include "ngx_ailink_common.h"
#include "ngx_ailink_auth.h"
#include "ngx_ailink_metrics.h"
#include "ngx_ailink_audit_pg.h"
#include "ngx_ailink_pg.h"


#define NGX_AILINK_AUDIT_PG_SLOTS        256


typedef struct {
    ngx_ailink_audit_pg_slot_t  slots[NGX_AILINK_AUDIT_PG_SLOTS];
} ngx_ailink_audit_pg_sh_t;


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


void
ngx_ailink_audit_pg_set_depth(ngx_ailink_audit_pg_t *pg)
{
    if (pg->slot) {
        pg->slot->depth = pg->n + pg->own.records + pg->claimed.records;
    }
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


static const char  *ngx_ailink_audit_pg_defaults[] = {
    "application_name", "ailink-audit",
    NULL
};


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

    char                      *password;
    ngx_int_t                  n, rc;
    ngx_str_t                 *value, arg, name, spool, zone;
    ngx_uint_t                 i;
    ngx_path_t                *path;
    ngx_ailink_pg_conninfo_t   ci;

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

        rc = ngx_ailink_conf_password_arg(cf, "ailink_audit_pg", &arg,
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

    /* the connection string, never echoed; a host name resolved now */

    if (ngx_ailink_pg_conninfo(cf, "ailink_audit_pg", &value[1], password,
                               ngx_ailink_audit_pg_defaults, 1, &ci)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    pcf->keywords = ci.keywords;
    pcf->values = ci.values;
    pcf->name = ci.name;

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
