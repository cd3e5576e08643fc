
/*
 * Copyright (C) AILink
 *
 * The store of runtime-mutable objects (what the admin API creates):
 * one JSON document of tokens, credentials (encrypted) and services, with
 * a generation number that changes on every commit.  A worker compares
 * the generation (one shared-memory read) before it uses its compiled
 * copy, and recompiles when it changed, so a change is seen by every
 * worker on its next request.
 *
 * The interface is what a backend implements: the embedded default
 * (ngx_ailink_store_file.c: a data directory plus a shared-memory zone)
 * or PostgreSQL (ngx_ailink_store_pg.c: the document in a table shared by
 * several gateways, followed into the same kind of zone).  Writers are
 * serialized: lock() is taken before the current document is read and is
 * released by commit() (or unlock() when nothing is written); commit()
 * returns at once and calls "done" on the event loop once the document is
 * durable and published, with NGX_OK, NGX_ERROR (nothing changed),
 * NGX_AILINK_STORE_CONFLICT (another gateway committed first: nothing
 * changed, read again and retry) or NGX_AILINK_STORE_UNAVAILABLE (the
 * database cannot be reached).
 */


#ifndef _NGX_AILINK_STORE_H_INCLUDED_
#define _NGX_AILINK_STORE_H_INCLUDED_


#include "ngx_ailink_common.h"


#define NGX_AILINK_STORE_CONFLICT     NGX_DECLINED
#define NGX_AILINK_STORE_UNAVAILABLE  NGX_BUSY


typedef void (*ngx_ailink_store_done_pt)(ngx_http_request_t *r,
    ngx_int_t rc);

typedef struct ngx_ailink_store_s  ngx_ailink_store_t;

typedef struct {
    ngx_uint_t  (*generation)(ngx_ailink_store_t *store);
    ngx_int_t   (*read)(ngx_ailink_store_t *store, ngx_pool_t *pool,
                        ngx_str_t *doc, ngx_uint_t *generation);
    ngx_int_t   (*lock)(ngx_ailink_store_t *store);     /* NGX_BUSY */
    void        (*unlock)(ngx_ailink_store_t *store);
    ngx_int_t   (*commit)(ngx_ailink_store_t *store, ngx_http_request_t *r,
                          ngx_str_t *doc, ngx_ailink_store_done_pt done);
    /* at startup only (the master, before workers): a blocking commit */
    ngx_int_t   (*commit_now)(ngx_ailink_store_t *store, ngx_str_t *doc,
                              ngx_log_t *log);
    /* optional: a worker starts and exits (a backend's own timers) */
    ngx_int_t   (*init_process)(ngx_ailink_store_t *store,
                                ngx_cycle_t *cycle);
    void        (*exit_process)(ngx_ailink_store_t *store,
                                ngx_cycle_t *cycle);
} ngx_ailink_store_ops_t;


struct ngx_ailink_store_s {
    ngx_ailink_store_ops_t     *ops;
    void                       *data;       /* the backend's */
};


/* ngx_ailink_store_shm.c: the document and the write lock in a zone */
typedef struct {
    ngx_atomic_t                generation;
    ngx_atomic_t                writer;     /* pid, 0 when free */
    time_t                      writer_since;
    size_t                      len;
    u_char                     *doc;
    /* the PostgreSQL backend's (after the file store's, which a reload
       from an older build keeps) */
    ngx_atomic_t                state;      /* of PostgreSQL, last seen */
    ngx_uint_t                  too_big;    /* a generation that did not
                                               fit, logged once */
} ngx_ailink_store_sh_t;


ngx_int_t ngx_ailink_store_shm_read(ngx_slab_pool_t *shpool,
    ngx_ailink_store_sh_t *sh, ngx_pool_t *pool, ngx_str_t *doc,
    ngx_uint_t *generation);
ngx_int_t ngx_ailink_store_shm_lock(ngx_ailink_store_sh_t *sh);
void ngx_ailink_store_shm_unlock(ngx_ailink_store_sh_t *sh);


/* ngx_ailink_store_file.c: the embedded backend */
ngx_ailink_store_t *ngx_ailink_store_file_create(ngx_conf_t *cf,
    ngx_str_t *dir, size_t size, void *module);

/* ngx_ailink_store_pg.c: "ailink_store_pg", the directive's arguments */
char *ngx_ailink_store_pg_create(ngx_conf_t *cf, ngx_ailink_store_t **store,
    void *module);


#endif /* _NGX_AILINK_STORE_H_INCLUDED_ */
