
/*
 * Copyright (C) AILink
 *
 * Shared state behind one small interface: counters (with a time window
 * and a TTL) and records (bytes with a TTL), keyed by strings.  Call sites
 * use only the functions below; the shared-memory backend is
 * ngx_ailink_state_shm.c, and a Redis backend would be another file that
 * fills the same table of operations.
 */


#ifndef _NGX_AILINK_STATE_H_INCLUDED_
#define _NGX_AILINK_STATE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/* the longest key a store takes */
#define NGX_AILINK_STATE_KEY_MAX    1024

/* counter flags */
#define NGX_AILINK_STATE_PERSIST    0x01    /* written to the data dir */
/* cas_record_async with expect NULL: write whether or not it is there */
#define NGX_AILINK_STATE_OVERWRITE  0x02


typedef struct ngx_ailink_state_s  ngx_ailink_state_t;

/*
 * the completion of an asynchronous counter operation: rc as the
 * synchronous operation's (NGX_OK, NGX_BUSY, NGX_DECLINED, NGX_ERROR)
 */
typedef void (*ngx_ailink_state_handler_pt)(void *data, ngx_int_t rc,
    int64_t value);

/*
 * the completion of an asynchronous record operation: rc as the
 * synchronous operation's; value is the record read (get_record_async),
 * records the ngx_keyval_t list (list_records_async), both in the
 * caller's pool
 */
typedef void (*ngx_ailink_state_record_pt)(void *data, ngx_int_t rc,
    ngx_str_t *value, ngx_array_t *records);

typedef struct {
    /*
     * adds delta unless the sum would pass limit (limit < 0: no limit);
     * NGX_OK with the new value, NGX_BUSY with the value left as it was,
     * NGX_ERROR when the store has no room
     */
    ngx_int_t  (*add)(ngx_ailink_state_t *st, ngx_str_t *key, int64_t delta,
                      int64_t limit, time_t ttl, ngx_uint_t flags,
                      int64_t *value);
    /* NGX_OK with the value, NGX_DECLINED when absent or expired */
    ngx_int_t  (*get)(ngx_ailink_state_t *st, ngx_str_t *key,
                      int64_t *value);
    ngx_int_t  (*set_record)(ngx_ailink_state_t *st, ngx_str_t *key,
                             ngx_str_t *value, time_t ttl);
    ngx_int_t  (*get_record)(ngx_ailink_state_t *st, ngx_str_t *key,
                             ngx_pool_t *pool, ngx_str_t *value);
    /*
     * compare-and-set of a record: with expect NULL, creates it only when
     * absent (or expired); otherwise replaces it only when it equals
     * expect.  NGX_OK when written, NGX_BUSY when the record is there
     * (expect NULL) or differs, NGX_DECLINED when absent (expect set),
     * NGX_ERROR when the store has no room.  Single-use claims and state
     * transitions go through it.
     */
    ngx_int_t  (*cas_record)(ngx_ailink_state_t *st, ngx_str_t *key,
                             ngx_str_t *expect, ngx_str_t *value, time_t ttl,
                             ngx_uint_t flags);
    /* the live records whose keys start with prefix: ngx_keyval_t */
    ngx_int_t  (*list_records)(ngx_ailink_state_t *st, ngx_str_t *prefix,
                               ngx_pool_t *pool, ngx_array_t *out);
    ngx_int_t  (*delete_record)(ngx_ailink_state_t *st, ngx_str_t *key);

    /*
     * asynchronous counters (NULL: the synchronous ones serve): done at
     * once with the synchronous return codes, or NGX_AGAIN when handler
     * will be called with data; a cleanup on pool (the caller's) makes
     * sure it is not called once the pool is gone.  With handler NULL,
     * add is fire-and-forget: NGX_OK once the command is sent.
     */
    ngx_int_t  (*add_async)(ngx_ailink_state_t *st, ngx_str_t *key,
                            int64_t delta, int64_t limit, time_t ttl,
                            ngx_uint_t flags, int64_t *value,
                            ngx_pool_t *pool,
                            ngx_ailink_state_handler_pt handler, void *data);
    ngx_int_t  (*get_async)(ngx_ailink_state_t *st, ngx_str_t *key,
                            int64_t *value, ngx_pool_t *pool,
                            ngx_ailink_state_handler_pt handler, void *data);
    /* pool NULL above: data outlives any reply (nothing to cancel) */

    /*
     * asynchronous records (NULL: the synchronous ones serve), on the
     * same terms: done at once into value or out, or NGX_AGAIN
     */
    ngx_int_t  (*get_record_async)(ngx_ailink_state_t *st, ngx_str_t *key,
                                   ngx_pool_t *pool, ngx_str_t *value,
                                   ngx_ailink_state_record_pt handler,
                                   void *data);
    /* value NULL: deletes the record when it equals expect */
    ngx_int_t  (*cas_record_async)(ngx_ailink_state_t *st, ngx_str_t *key,
                                   ngx_str_t *expect, ngx_str_t *value,
                                   time_t ttl, ngx_uint_t flags,
                                   ngx_pool_t *pool,
                                   ngx_ailink_state_record_pt handler,
                                   void *data);
    ngx_int_t  (*list_records_async)(ngx_ailink_state_t *st,
                                     ngx_str_t *prefix, ngx_pool_t *pool,
                                     ngx_array_t *out,
                                     ngx_ailink_state_record_pt handler,
                                     void *data);
} ngx_ailink_state_ops_t;


struct ngx_ailink_state_s {
    ngx_ailink_state_ops_t     *ops;
    void                       *data;       /* the backend's */
    ngx_str_t                   name;
};


/* a fixed window: its start and the seconds left in it */
typedef struct {
    time_t                      start;
    time_t                      left;
} ngx_ailink_state_window_t;


static ngx_inline void
ngx_ailink_state_window(time_t now, time_t length, time_t offset,
    ngx_ailink_state_window_t *w)
{
    /* windows are aligned on the epoch, shifted by a time zone offset */
    w->start = (now + offset) / length * length - offset;
    w->left = w->start + length - now;
}


#define ngx_ailink_state_add(st, key, delta, limit, ttl, flags, value)        \
    (st)->ops->add(st, key, delta, limit, ttl, flags, value)
/* the shared-memory backend has no async operations: one test of a NULL */
#define ngx_ailink_state_add_async(st, key, delta, limit, ttl, flags, value, \
                                   pool, handler, data)                       \
    ((st)->ops->add_async                                                     \
     ? (st)->ops->add_async(st, key, delta, limit, ttl, flags, value, pool,   \
                            handler, data)                                    \
     : (st)->ops->add(st, key, delta, limit, ttl, flags, value))
#define ngx_ailink_state_get_async(st, key, value, pool, handler, data)       \
    ((st)->ops->get_async                                                     \
     ? (st)->ops->get_async(st, key, value, pool, handler, data)              \
     : (st)->ops->get(st, key, value))
#define ngx_ailink_state_get(st, key, value)                                  \
    (st)->ops->get(st, key, value)
#define ngx_ailink_state_set_record(st, key, value, ttl)                      \
    (st)->ops->set_record(st, key, value, ttl)
#define ngx_ailink_state_get_record(st, key, pool, value)                     \
    (st)->ops->get_record(st, key, pool, value)
#define ngx_ailink_state_cas_record(st, key, expect, value, ttl, flags)       \
    (st)->ops->cas_record(st, key, expect, value, ttl, flags)
#define ngx_ailink_state_list_records(st, prefix, pool, out)                  \
    (st)->ops->list_records(st, prefix, pool, out)
#define ngx_ailink_state_delete_record(st, key)                               \
    (st)->ops->delete_record(st, key)


/*
 * a compare-and-set nobody waits for (value NULL: delete the record when
 * it equals expect), sent to an asynchronous store, done in the others:
 * NGX_OK when done or sent
 */

static ngx_inline ngx_int_t
ngx_ailink_state_cas_record_nowait(ngx_ailink_state_t *st, ngx_str_t *key,
    ngx_str_t *expect, ngx_str_t *value, time_t ttl, ngx_uint_t flags)
{
    if (st->ops->cas_record_async) {
        return st->ops->cas_record_async(st, key, expect, value, ttl, flags,
                                         NULL, NULL, NULL);
    }

    if (value && expect == NULL && (flags & NGX_AILINK_STATE_OVERWRITE)) {
        return st->ops->set_record(st, key, value, ttl);
    }

    if (value) {
        return st->ops->cas_record(st, key, expect, value, ttl, flags);
    }

    /* compare (the TTL cut to a second meanwhile), then delete */
    if (st->ops->cas_record(st, key, expect, expect, 1, 0) != NGX_OK) {
        return NGX_DECLINED;
    }

    return st->ops->delete_record(st, key);
}


/* ngx_ailink_state_shm.c */
ngx_ailink_state_t *ngx_ailink_state_shm_add(ngx_conf_t *cf, ngx_str_t *name,
    size_t size, void *tag);
void ngx_ailink_state_shm_persist(ngx_ailink_state_t *st, ngx_str_t *path);
ngx_int_t ngx_ailink_state_shm_save(ngx_ailink_state_t *st, ngx_log_t *log);

/*
 * ngx_ailink_state_redis.c: counters in Redis, and the records whose keys
 * start with one of prefixes (ended by an empty one); the other records
 * in the shared memory of shm
 */
ngx_ailink_state_t *ngx_ailink_state_redis_create(ngx_conf_t *cf,
    ngx_ailink_state_t *shm, ngx_str_t *prefixes);
ngx_int_t ngx_ailink_state_is_redis(ngx_ailink_state_t *st);

/* ngx_ailink_redis.c: the per-worker connection */
typedef void (*ngx_ailink_redis_reply_pt)(void *data, void *reply);

ngx_int_t ngx_ailink_redis_configured(ngx_conf_t *cf);
ngx_int_t ngx_ailink_redis_ready(ngx_str_t *why);
ngx_int_t ngx_ailink_redis_command(int argc, const char **argv,
    const size_t *argvlen, ngx_ailink_redis_reply_pt handler, void *data);
ngx_int_t ngx_ailink_redis_add_script(ngx_conf_t *cf, ngx_str_t *script,
    u_char *sha);


#endif /* _NGX_AILINK_STATE_H_INCLUDED_ */
