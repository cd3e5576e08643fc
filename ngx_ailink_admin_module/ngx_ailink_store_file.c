
/*
 * Copyright (C) AILink
 *
 * The embedded store: the document lives in a shared-memory zone (every
 * worker reads it there) and in a data directory (it survives restart).
 *
 * A commit writes the whole document to "store-<generation>.json.tmp",
 * fsync()s it, renames it to "store-<generation>.json", fsync()s the
 * directory and only then publishes it in shared memory and answers the
 * client: a crash at any point leaves either the previous snapshot or the
 * new one, never a torn file, and nothing acknowledged is lost.  Older
 * snapshots are removed after the rename (compaction: the directory holds
 * one snapshot, two for a moment).  At startup the snapshot with the
 * highest generation that parses is loaded; leftover ".tmp" files are
 * ignored.  The file work runs in nginx's thread pool, never on the event
 * loop.
 */


#include "ngx_ailink_store.h"
#include <ngx_thread_pool.h>
#include <dirent.h>


typedef struct {
    ngx_str_t                   dir;
    ngx_shm_zone_t             *zone;
    ngx_slab_pool_t            *shpool;
    ngx_ailink_store_sh_t      *sh;
    ngx_thread_pool_t          *tp;
} ngx_ailink_store_file_t;


typedef struct {
    ngx_ailink_store_t         *store;
    ngx_http_request_t         *request;
    ngx_ailink_store_done_pt    done;
    ngx_str_t                   doc;
    ngx_uint_t                  generation;
    u_char                     *tmp;        /* NUL-terminated paths */
    u_char                     *path;
    u_char                     *old;
    u_char                     *dir;
    ngx_err_t                   err;
    const char                 *what;
} ngx_ailink_store_write_t;


static ngx_uint_t ngx_ailink_store_file_generation(ngx_ailink_store_t *st);
static ngx_int_t ngx_ailink_store_file_read(ngx_ailink_store_t *st,
    ngx_pool_t *pool, ngx_str_t *doc, ngx_uint_t *generation);
static ngx_int_t ngx_ailink_store_file_lock(ngx_ailink_store_t *st);
static void ngx_ailink_store_file_unlock(ngx_ailink_store_t *st);
static ngx_int_t ngx_ailink_store_file_commit(ngx_ailink_store_t *st,
    ngx_http_request_t *r, ngx_str_t *doc, ngx_ailink_store_done_pt done);
static ngx_int_t ngx_ailink_store_file_commit_now(ngx_ailink_store_t *st,
    ngx_str_t *doc, ngx_log_t *log);
static ngx_int_t ngx_ailink_store_file_init_zone(ngx_shm_zone_t *zone,
    void *data);
static void ngx_ailink_store_file_write(void *data, ngx_log_t *log);


static ngx_ailink_store_ops_t  ngx_ailink_store_file_ops = {
    ngx_ailink_store_file_generation,
    ngx_ailink_store_file_read,
    ngx_ailink_store_file_lock,
    ngx_ailink_store_file_unlock,
    ngx_ailink_store_file_commit,
    ngx_ailink_store_file_commit_now,
    NULL,
    NULL
};


ngx_ailink_store_t *
ngx_ailink_store_file_create(ngx_conf_t *cf, ngx_str_t *dir, size_t size,
    void *module)
{
    ngx_str_t                 name;
    ngx_ailink_store_t       *st;
    ngx_ailink_store_file_t  *fs;

    st = ngx_pcalloc(cf->pool, sizeof(ngx_ailink_store_t));
    fs = ngx_pcalloc(cf->pool, sizeof(ngx_ailink_store_file_t));
    if (st == NULL || fs == NULL) {
        return NULL;
    }

    st->ops = &ngx_ailink_store_file_ops;
    st->data = fs;
    fs->dir = *dir;

    fs->tp = ngx_thread_pool_add(cf, NULL);
    if (fs->tp == NULL) {
        return NULL;
    }

    ngx_str_set(&name, "ailink_store");

    fs->zone = ngx_shared_memory_add(cf, &name, size, module);
    if (fs->zone == NULL) {
        return NULL;
    }

    if (fs->zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "is duplicate");
        return NULL;
    }

    fs->zone->init = ngx_ailink_store_file_init_zone;
    fs->zone->data = st;

    return st;
}


/* the newest snapshot of the directory, read at startup (not a worker) */

static ngx_int_t
ngx_ailink_store_file_load(ngx_ailink_store_file_t *fs, ngx_log_t *log)
{
    DIR          *d;
    u_char        path[NGX_MAX_PATH], *p;
    size_t        len;
    ssize_t       n;
    ngx_fd_t      fd;
    ngx_uint_t    gen, best;
    ngx_int_t     g;
    struct dirent *de;
    ngx_file_info_t  fi;

    if (ngx_create_dir(fs->dir.data, 0700) == NGX_FILE_ERROR
        && ngx_errno != NGX_EEXIST)
    {
        ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                      "ailink_store_dir: cannot create \"%V\"", &fs->dir);
        return NGX_ERROR;
    }

    d = opendir((char *) fs->dir.data);
    if (d == NULL) {
        ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                      "ailink_store_dir: cannot open \"%V\"", &fs->dir);
        return NGX_ERROR;
    }

    best = 0;

    while ((de = readdir(d)) != NULL) {
        len = ngx_strlen(de->d_name);

        if (len <= sizeof("store-.json") - 1
            || ngx_strncmp(de->d_name, "store-", 6) != 0
            || ngx_strcmp(de->d_name + len - 5, ".json") != 0)
        {
            continue;
        }

        g = ngx_atoi((u_char *) de->d_name + 6, len - 11);
        if (g > 0 && (ngx_uint_t) g > best) {
            best = g;
        }
    }

    closedir(d);

    fs->sh->generation = best;

    if (best == 0) {
        return NGX_OK;
    }

    gen = best;

    p = ngx_snprintf(path, sizeof(path) - 1, "%V/store-%ui.json", &fs->dir,
                     gen);
    *p = '\0';

    fd = ngx_open_file(path, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE || ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                      "ailink_store_dir: cannot read \"%s\"", path);
        if (fd != NGX_INVALID_FILE) {
            ngx_close_file(fd);
        }
        return NGX_ERROR;
    }

    len = ngx_file_size(&fi);

    fs->sh->doc = ngx_slab_alloc(fs->shpool, len ? len : 1);
    if (fs->sh->doc == NULL) {
        ngx_close_file(fd);
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "ailink_store_dir: \"%s\" is larger than the store's "
                      "shared memory", path);
        return NGX_ERROR;
    }

    n = ngx_read_fd(fd, fs->sh->doc, len);
    ngx_close_file(fd);

    if (n != (ssize_t) len) {
        ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                      "ailink_store_dir: short read of \"%s\"", path);
        return NGX_ERROR;
    }

    fs->sh->len = len;

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_store_file_init_zone(ngx_shm_zone_t *zone, void *data)
{
    ngx_ailink_store_t       *ost = data;
    ngx_ailink_store_t       *st;
    ngx_ailink_store_file_t  *fs, *ofs;

    st = zone->data;
    fs = st->data;

    if (ost) {
        /* a reload: the document in shared memory is the newest */
        ofs = ost->data;
        fs->shpool = ofs->shpool;
        fs->sh = ofs->sh;
        return NGX_OK;
    }

    fs->shpool = (ngx_slab_pool_t *) zone->shm.addr;

    if (zone->shm.exists) {
        fs->sh = fs->shpool->data;
        return NGX_OK;
    }

    fs->sh = ngx_slab_calloc(fs->shpool, sizeof(ngx_ailink_store_sh_t));
    if (fs->sh == NULL) {
        return NGX_ERROR;
    }

    fs->shpool->data = fs->sh;

    return ngx_ailink_store_file_load(fs, zone->shm.log);
}


static ngx_uint_t
ngx_ailink_store_file_generation(ngx_ailink_store_t *st)
{
    ngx_ailink_store_file_t  *fs = st->data;

    return fs->sh->generation;
}


static ngx_int_t
ngx_ailink_store_file_read(ngx_ailink_store_t *st, ngx_pool_t *pool,
    ngx_str_t *doc, ngx_uint_t *generation)
{
    ngx_ailink_store_file_t  *fs = st->data;

    return ngx_ailink_store_shm_read(fs->shpool, fs->sh, pool, doc,
                                     generation);
}


static ngx_int_t
ngx_ailink_store_file_lock(ngx_ailink_store_t *st)
{
    ngx_ailink_store_file_t  *fs = st->data;

    return ngx_ailink_store_shm_lock(fs->sh);
}


static void
ngx_ailink_store_file_unlock(ngx_ailink_store_t *st)
{
    ngx_ailink_store_file_t  *fs = st->data;

    ngx_ailink_store_shm_unlock(fs->sh);
}


/* in a thread of the pool: the durable part of a commit */

static void
ngx_ailink_store_file_write(void *data, ngx_log_t *log)
{
    ngx_ailink_store_write_t  *w = data;

    int      fd, dfd;
    size_t   off;
    ssize_t  n;

    fd = open((char *) w->tmp, O_WRONLY|O_CREAT|O_TRUNC, 0600);
    if (fd == -1) {
        w->what = "open()";
        goto failed;
    }

    for (off = 0; off < w->doc.len; off += n) {
        n = write(fd, w->doc.data + off, w->doc.len - off);

        if (n == -1) {
            if (errno == EINTR) {
                n = 0;
                continue;
            }

            w->what = "write()";
            close(fd);
            goto failed;
        }
    }

    if (fsync(fd) == -1) {
        w->what = "fsync()";
        close(fd);
        goto failed;
    }

    close(fd);

    if (rename((char *) w->tmp, (char *) w->path) == -1) {
        w->what = "rename()";
        goto failed;
    }

    dfd = open((char *) w->dir, O_RDONLY|O_DIRECTORY);
    if (dfd == -1 || fsync(dfd) == -1) {
        w->what = "fsync() of the directory";
        if (dfd != -1) {
            close(dfd);
        }
        goto failed;
    }

    close(dfd);

    /* compaction: the snapshot before this one is superseded */
    (void) unlink((char *) w->old);

    w->err = 0;
    return;

failed:

    w->err = errno ? errno : EIO;
    (void) unlink((char *) w->tmp);
}


/* back on the event loop: publish, release the lock, answer */

static void
ngx_ailink_store_file_written(ngx_event_t *ev)
{
    u_char                    *p;
    ngx_int_t                  rc;
    ngx_connection_t          *c;
    ngx_http_request_t        *r;
    ngx_ailink_store_write_t  *w;
    ngx_ailink_store_file_t   *fs;

    w = ev->data;
    r = w->request;
    c = r->connection;
    fs = w->store->data;

    r->main->blocked--;
    r->aio = 0;

    rc = NGX_ERROR;

    if (w->err) {
        ngx_log_error(NGX_LOG_ALERT, c->log, w->err,
                      "ailink store: %s of \"%s\" failed, nothing changed",
                      w->what, w->tmp);
        goto done;
    }

    ngx_shmtx_lock(&fs->shpool->mutex);

    p = ngx_slab_alloc_locked(fs->shpool, w->doc.len ? w->doc.len : 1);

    if (p) {
        ngx_memcpy(p, w->doc.data, w->doc.len);

        if (fs->sh->doc) {
            ngx_slab_free_locked(fs->shpool, fs->sh->doc);
        }

        fs->sh->doc = p;
        fs->sh->len = w->doc.len;
        ngx_memory_barrier();
        fs->sh->generation = w->generation;
        rc = NGX_OK;
    }

    ngx_shmtx_unlock(&fs->shpool->mutex);

    if (p == NULL) {
        /* on disk but not in memory: the next restart would show it */
        ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                      "ailink store: the document does not fit in the "
                      "store's shared memory; it is on disk and is loaded "
                      "at the next restart");
    }

done:

    ngx_ailink_store_file_unlock(w->store);

    w->done(r, rc);

    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_ailink_store_file_commit(ngx_ailink_store_t *st, ngx_http_request_t *r,
    ngx_str_t *doc, ngx_ailink_store_done_pt done)
{
    size_t                     len;
    ngx_thread_task_t         *task;
    ngx_ailink_store_write_t  *w;
    ngx_ailink_store_file_t   *fs = st->data;

    task = ngx_thread_task_alloc(r->pool, sizeof(ngx_ailink_store_write_t));
    if (task == NULL) {
        goto failed;
    }

    w = task->ctx;
    w->store = st;
    w->request = r;
    w->done = done;
    w->doc = *doc;
    w->generation = fs->sh->generation + 1;

    len = fs->dir.len + sizeof("/store-.json.tmp") + NGX_INT_T_LEN;

    w->tmp = ngx_pnalloc(r->pool, 4 * len);
    if (w->tmp == NULL) {
        goto failed;
    }

    w->path = w->tmp + len;
    w->old = w->path + len;
    w->dir = w->old + len;

    ngx_sprintf(w->tmp, "%V/store-%ui.json.tmp%Z", &fs->dir, w->generation);
    ngx_sprintf(w->path, "%V/store-%ui.json%Z", &fs->dir, w->generation);
    ngx_sprintf(w->old, "%V/store-%ui.json%Z", &fs->dir, w->generation - 1);
    ngx_sprintf(w->dir, "%V%Z", &fs->dir);

    task->handler = ngx_ailink_store_file_write;
    task->event.data = w;
    task->event.handler = ngx_ailink_store_file_written;

    if (ngx_thread_task_post(fs->tp, task) != NGX_OK) {
        goto failed;
    }

    r->main->blocked++;
    r->aio = 1;

    return NGX_OK;

failed:

    ngx_ailink_store_file_unlock(st);

    return NGX_ERROR;
}


/* the same write, done in place: for the master at startup only */

static ngx_int_t
ngx_ailink_store_file_commit_now(ngx_ailink_store_t *st, ngx_str_t *doc,
    ngx_log_t *log)
{
    u_char                    *p, buf[4 * NGX_MAX_PATH];
    size_t                     len;
    ngx_ailink_store_write_t   w;
    ngx_ailink_store_file_t   *fs = st->data;

    len = fs->dir.len + sizeof("/store-.json.tmp") + NGX_INT_T_LEN;

    if (4 * len > sizeof(buf)) {
        return NGX_ERROR;
    }

    ngx_memzero(&w, sizeof(w));
    w.doc = *doc;
    w.generation = fs->sh->generation + 1;
    w.tmp = buf;
    w.path = buf + len;
    w.old = w.path + len;
    w.dir = w.old + len;

    ngx_sprintf(w.tmp, "%V/store-%ui.json.tmp%Z", &fs->dir, w.generation);
    ngx_sprintf(w.path, "%V/store-%ui.json%Z", &fs->dir, w.generation);
    ngx_sprintf(w.old, "%V/store-%ui.json%Z", &fs->dir, w.generation - 1);
    ngx_sprintf(w.dir, "%V%Z", &fs->dir);

    ngx_ailink_store_file_write(&w, log);

    if (w.err) {
        ngx_log_error(NGX_LOG_EMERG, log, w.err,
                      "ailink store: %s of \"%s\" failed", w.what, w.tmp);
        return NGX_ERROR;
    }

    ngx_shmtx_lock(&fs->shpool->mutex);

    p = ngx_slab_alloc_locked(fs->shpool, doc->len ? doc->len : 1);

    if (p) {
        ngx_memcpy(p, doc->data, doc->len);

        if (fs->sh->doc) {
            ngx_slab_free_locked(fs->shpool, fs->sh->doc);
        }

        fs->sh->doc = p;
        fs->sh->len = doc->len;
        fs->sh->generation = w.generation;
    }

    ngx_shmtx_unlock(&fs->shpool->mutex);

    return p ? NGX_OK : NGX_ERROR;
}
