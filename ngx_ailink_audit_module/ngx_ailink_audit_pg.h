
/*
 * Copyright (C) AILink
 *
 * The audit sink to PostgreSQL.  The audit module hands it each record it
 * makes (ngx_ailink_audit_pg_enabled(), ngx_ailink_audit_pg_add()); the
 * rest is shared by the sink's own files: the module
 * (ngx_ailink_audit_pg.c), the libpq connection (ngx_ailink_audit_pg_conn.c)
 * and the spool files (ngx_ailink_audit_pg_spool.c).
 */


#ifndef _NGX_AILINK_AUDIT_PG_H_INCLUDED_
#define _NGX_AILINK_AUDIT_PG_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <libpq-fe.h>


extern ngx_module_t  ngx_ailink_audit_pg_module;


/* whether "ailink_audit_pg" is configured */
ngx_int_t ngx_ailink_audit_pg_enabled(ngx_http_request_t *r);

/* one record, a JSON object and its "\n"; copied, never blocks */
void ngx_ailink_audit_pg_add(ngx_log_t *log, u_char *line, size_t len);


/* the sink's own */

#define NGX_AILINK_AUDIT_PG_BACKOFF_MIN  200
#define NGX_AILINK_AUDIT_PG_BACKOFF_MAX  2000
#define NGX_AILINK_AUDIT_PG_SCAN         1000
#define NGX_AILINK_AUDIT_PG_STREAM_LEN   200
#define NGX_AILINK_AUDIT_PG_READ         (256 * 1024)


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


/* the module: ngx_ailink_audit_pg.c */
void ngx_ailink_audit_pg_set_depth(ngx_ailink_audit_pg_t *pg);

/* the connection: ngx_ailink_audit_pg_conn.c */
void ngx_ailink_audit_pg_connect(ngx_ailink_audit_pg_t *pg);
void ngx_ailink_audit_pg_close(ngx_ailink_audit_pg_t *pg);
void ngx_ailink_audit_pg_send_next(ngx_ailink_audit_pg_t *pg,
    ngx_uint_t force);
u_char *ngx_ailink_audit_pg_copy(u_char *dst, u_char *src, size_t len);
ngx_int_t ngx_ailink_audit_pg_reserve(u_char **buf, size_t *size,
    size_t need, ngx_log_t *log);
void ngx_ailink_audit_pg_flush_handler(ngx_event_t *ev);
void ngx_ailink_audit_pg_reconnect_handler(ngx_event_t *ev);
void ngx_ailink_audit_pg_timeout_handler(ngx_event_t *ev);

/* the spool: ngx_ailink_audit_pg_spool.c */
ngx_int_t ngx_ailink_audit_pg_spool_write(ngx_ailink_audit_pg_t *pg,
    uint64_t seq, u_char *data, size_t len);
void ngx_ailink_audit_pg_spool_queue(ngx_ailink_audit_pg_t *pg);
ngx_int_t ngx_ailink_audit_pg_spool_batch(ngx_ailink_audit_pg_t *pg,
    ngx_ailink_audit_pg_spool_t *sp);
void ngx_ailink_audit_pg_spool_acked(ngx_ailink_audit_pg_t *pg,
    ngx_ailink_audit_pg_spool_t *sp);
void ngx_ailink_audit_pg_reject(ngx_ailink_audit_pg_t *pg);
void ngx_ailink_audit_pg_scan_dir(ngx_ailink_audit_pg_t *pg);
void ngx_ailink_audit_pg_scan_handler(ngx_event_t *ev);


#endif /* _NGX_AILINK_AUDIT_PG_H_INCLUDED_ */
