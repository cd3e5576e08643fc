
/*
 * Copyright (C) AILink
 *
 * What every store backend keeps in its shared-memory zone: the document
 * with its generation, and the write lock that serializes the writers of
 * one gateway (its workers).  The file store and the PostgreSQL store
 * differ in where the document is made durable, not in this.
 */


#include "ngx_ailink_store.h"


#define NGX_AILINK_STORE_STALE  30      /* seconds a dead writer holds */


ngx_int_t
ngx_ailink_store_shm_read(ngx_slab_pool_t *shpool, ngx_ailink_store_sh_t *sh,
    ngx_pool_t *pool, ngx_str_t *doc, ngx_uint_t *generation)
{
    ngx_shmtx_lock(&shpool->mutex);

    doc->len = sh->len;
    doc->data = ngx_pnalloc(pool, doc->len + 1);

    if (doc->data) {
        if (doc->len) {
            ngx_memcpy(doc->data, sh->doc, doc->len);
        }

        doc->data[doc->len] = '\0';
    }

    *generation = sh->generation;

    ngx_shmtx_unlock(&shpool->mutex);

    return doc->data ? NGX_OK : NGX_ERROR;
}


ngx_int_t
ngx_ailink_store_shm_lock(ngx_ailink_store_sh_t *sh)
{
    ngx_atomic_uint_t  old;

    old = sh->writer;

    if (old == 0) {
        if (ngx_atomic_cmp_set(&sh->writer, 0, ngx_pid)) {
            sh->writer_since = ngx_time();
            return NGX_OK;
        }

        return NGX_BUSY;
    }

    /* a writer that died (or hangs) does not hold the store forever */
    if (ngx_time() - sh->writer_since > NGX_AILINK_STORE_STALE
        && ngx_atomic_cmp_set(&sh->writer, old, ngx_pid))
    {
        sh->writer_since = ngx_time();
        return NGX_OK;
    }

    return NGX_BUSY;
}


void
ngx_ailink_store_shm_unlock(ngx_ailink_store_sh_t *sh)
{
    (void) ngx_atomic_cmp_set(&sh->writer, ngx_pid, 0);
}
