
/*
 * Copyright (C) AILink
 *
 * The audit sink's spool files: a worker's own, made and flock()ed while
 * it lives, appended to while PostgreSQL is away; a claimed one, a file
 * nobody holds, found by the directory scan and replayed; the batches
 * read from them; the truncate or removal once PostgreSQL has all of a
 * file; and "<stream>.rejected", the records PostgreSQL refused alone.
 * Kept apart from the connection (ngx_ailink_audit_pg_conn.c): only
 * files here, no libpq call.
 */


#include "ngx_ailink_common.h"
#include "ngx_ailink_audit_pg.h"

#include <sys/file.h>
#include <sys/uio.h>


#define NGX_AILINK_AUDIT_PG_READ_MAX     (64 * 1024 * 1024)


static ngx_int_t ngx_ailink_audit_pg_spool_open(ngx_ailink_audit_pg_t *pg);


/* the one record of the batch in flight ("[record]") to the side file */

void
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


/*
 * The next batch from a spool file, from what PostgreSQL acknowledged:
 * up to "batch" lines of consecutive seq.  NGX_DONE: nothing to send
 * (the end, or only lines that cannot be read, which are skipped).
 */

ngx_int_t
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


ngx_int_t
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

void
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

void
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


/*
 * PostgreSQL has all of a spool file: the worker's own is truncated (new
 * records may queue again), a claimed one is removed and the next claimed
 */

void
ngx_ailink_audit_pg_spool_acked(ngx_ailink_audit_pg_t *pg,
    ngx_ailink_audit_pg_spool_t *sp)
{
    if (sp == &pg->own) {
        /* all of it in PostgreSQL: new records may queue again */

        if (ftruncate(sp->fd, 0) == -1) {
            ngx_log_error(NGX_LOG_ALERT, pg->log, ngx_errno,
                          "ailink audit pg: ftruncate(\"%s\") failed",
                          sp->name);
            return;
        }

        sp->size = 0;
        sp->acked = 0;
        sp->sent = 0;
        sp->records = 0;
        pg->spooling = 0;

        return;
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
}


void
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
