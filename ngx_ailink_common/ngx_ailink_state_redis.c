
/*
 * Copyright (C) AILink
 *
 * The state interface with its counters in Redis, so that every gateway
 * on the same Redis counts rate limits and spend together: check-and-add
 * is one EVALSHA of a small Lua script (atomic in Redis, the TTL set when
 * the counter is created), get is a GET, and adds whose result nobody
 * waits for (the log phase's) are sent without a reply handler.  Counters
 * are only asynchronous here: the synchronous add and get fail.  Records
 * (approvals, idempotency, ...) stay in the zone's shared memory for now.
 *
 * Keys are "ailink:<the state key>".
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <hiredis/hiredis.h>

#include "ngx_ailink_state.h"


#define NGX_AILINK_STATE_REDIS_PREFIX  "ailink:"


typedef struct {
    ngx_ailink_state_t            state;
    ngx_ailink_state_t           *shm;      /* records */
} ngx_ailink_state_redis_t;


/* one operation whose reply someone waits for (heap) */
typedef struct {
    ngx_ailink_state_handler_pt   handler;
    void                         *data;
    ngx_pool_cleanup_t           *cln;
    ngx_uint_t                    get;
} ngx_ailink_state_redis_op_t;


static ngx_int_t ngx_ailink_state_redis_add(ngx_ailink_state_t *st,
    ngx_str_t *key, int64_t delta, int64_t limit, time_t ttl,
    ngx_uint_t flags, int64_t *value);
static ngx_int_t ngx_ailink_state_redis_get(ngx_ailink_state_t *st,
    ngx_str_t *key, int64_t *value);
static ngx_int_t ngx_ailink_state_redis_set_record(ngx_ailink_state_t *st,
    ngx_str_t *key, ngx_str_t *value, time_t ttl);
static ngx_int_t ngx_ailink_state_redis_get_record(ngx_ailink_state_t *st,
    ngx_str_t *key, ngx_pool_t *pool, ngx_str_t *value);
static ngx_int_t ngx_ailink_state_redis_cas_record(ngx_ailink_state_t *st,
    ngx_str_t *key, ngx_str_t *expect, ngx_str_t *value, time_t ttl,
    ngx_uint_t flags);
static ngx_int_t ngx_ailink_state_redis_list_records(ngx_ailink_state_t *st,
    ngx_str_t *prefix, ngx_pool_t *pool, ngx_array_t *out);
static ngx_int_t ngx_ailink_state_redis_delete_record(ngx_ailink_state_t *st,
    ngx_str_t *key);
static ngx_int_t ngx_ailink_state_redis_add_async(ngx_ailink_state_t *st,
    ngx_str_t *key, int64_t delta, int64_t limit, time_t ttl,
    ngx_uint_t flags, int64_t *value, ngx_pool_t *pool,
    ngx_ailink_state_handler_pt handler, void *data);
static ngx_int_t ngx_ailink_state_redis_get_async(ngx_ailink_state_t *st,
    ngx_str_t *key, int64_t *value, ngx_pool_t *pool,
    ngx_ailink_state_handler_pt handler, void *data);
static ngx_int_t ngx_ailink_state_redis_send(ngx_uint_t argc,
    const char **argv, size_t *argvlen, ngx_str_t *key, ngx_uint_t get,
    ngx_pool_t *pool, ngx_ailink_state_handler_pt handler, void *data);
static void ngx_ailink_state_redis_reply(void *data, void *r);
static void ngx_ailink_state_redis_cancel(void *data);


static ngx_ailink_state_ops_t  ngx_ailink_state_redis_ops = {
    ngx_ailink_state_redis_add,
    ngx_ailink_state_redis_get,
    ngx_ailink_state_redis_set_record,
    ngx_ailink_state_redis_get_record,
    ngx_ailink_state_redis_cas_record,
    ngx_ailink_state_redis_list_records,
    ngx_ailink_state_redis_delete_record,
    ngx_ailink_state_redis_add_async,
    ngx_ailink_state_redis_get_async
};


/*
 * KEYS[1] the counter; ARGV delta, limit (< 0: none), TTL in seconds;
 * returns {1, new value} or {0, value as it was} when over the limit
 */
static ngx_str_t  ngx_ailink_state_redis_script = ngx_string(
    "local v = redis.call('GET', KEYS[1]) "
    "local n = tonumber(v or '0') "
    "local d = tonumber(ARGV[1]) "
    "local l = tonumber(ARGV[2]) "
    "if l >= 0 and n + d > l then return {0, n} end "
    "n = redis.call('INCRBY', KEYS[1], d) "
    "if not v then redis.call('EXPIRE', KEYS[1], ARGV[3]) end "
    "return {1, n}");

static u_char  ngx_ailink_state_redis_sha[41];


ngx_ailink_state_t *
ngx_ailink_state_redis_create(ngx_conf_t *cf, ngx_ailink_state_t *shm)
{
    ngx_ailink_state_redis_t  *rs;

    if (ngx_ailink_redis_configured(cf) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"backend=redis\" needs \"ailink_redis\" "
                           "before it");
        return NULL;
    }

    rs = ngx_pcalloc(cf->pool, sizeof(ngx_ailink_state_redis_t));
    if (rs == NULL) {
        return NULL;
    }

    if (ngx_ailink_state_redis_sha[0] == '\0') {
        if (ngx_ailink_redis_add_script(cf, &ngx_ailink_state_redis_script,
                                        ngx_ailink_state_redis_sha)
            != NGX_OK)
        {
            return NULL;
        }
    }

    rs->shm = shm;
    rs->state.ops = &ngx_ailink_state_redis_ops;
    rs->state.data = rs;
    rs->state.name = shm->name;

    return &rs->state;
}


ngx_int_t
ngx_ailink_state_is_redis(ngx_ailink_state_t *st)
{
    return st->ops == &ngx_ailink_state_redis_ops;
}


/* counters answer only asynchronously here */

static ngx_int_t
ngx_ailink_state_redis_add(ngx_ailink_state_t *st, ngx_str_t *key,
    int64_t delta, int64_t limit, time_t ttl, ngx_uint_t flags,
    int64_t *value)
{
    return NGX_ERROR;
}


static ngx_int_t
ngx_ailink_state_redis_get(ngx_ailink_state_t *st, ngx_str_t *key,
    int64_t *value)
{
    return NGX_ERROR;
}


static ngx_int_t
ngx_ailink_state_redis_add_async(ngx_ailink_state_t *st, ngx_str_t *key,
    int64_t delta, int64_t limit, time_t ttl, ngx_uint_t flags,
    int64_t *value, ngx_pool_t *pool, ngx_ailink_state_handler_pt handler,
    void *data)
{
    u_char       num[3][NGX_INT64_LEN];
    size_t       len[7];
    const char  *argv[7];

    argv[0] = "EVALSHA";
    len[0] = 7;
    argv[1] = (char *) ngx_ailink_state_redis_sha;
    len[1] = 40;
    argv[2] = "1";
    len[2] = 1;

    /* argv[3]: the key, by send */

    argv[4] = (char *) num[0];
    len[4] = ngx_sprintf(num[0], "%L", delta) - num[0];
    argv[5] = (char *) num[1];
    len[5] = ngx_sprintf(num[1], "%L", limit < 0 ? (int64_t) -1 : limit)
             - num[1];
    argv[6] = (char *) num[2];
    len[6] = ngx_sprintf(num[2], "%T", ngx_max(ttl, 1)) - num[2];

    return ngx_ailink_state_redis_send(7, argv, len, key, 0, pool, handler,
                                       data);
}


static ngx_int_t
ngx_ailink_state_redis_get_async(ngx_ailink_state_t *st, ngx_str_t *key,
    int64_t *value, ngx_pool_t *pool, ngx_ailink_state_handler_pt handler,
    void *data)
{
    size_t       len[2];
    const char  *argv[2];

    argv[0] = "GET";
    len[0] = 3;

    return ngx_ailink_state_redis_send(2, argv, len, key, 1, pool, handler,
                                       data);
}


/* the key is argv[argc == 2 ? 1 : 3]; hiredis copies it all at once */

static ngx_int_t
ngx_ailink_state_redis_send(ngx_uint_t argc, const char **argv,
    size_t *argvlen, ngx_str_t *key, ngx_uint_t get, ngx_pool_t *pool,
    ngx_ailink_state_handler_pt handler, void *data)
{
    u_char                       buf[sizeof(NGX_AILINK_STATE_REDIS_PREFIX)
                                     + NGX_AILINK_STATE_KEY_MAX];
    ngx_int_t                    rc;
    ngx_uint_t                   k;
    ngx_pool_cleanup_t          *cln;
    ngx_ailink_state_redis_op_t *op;

    if (key->len > NGX_AILINK_STATE_KEY_MAX) {
        return NGX_ERROR;
    }

    k = (argc == 2) ? 1 : 3;
    argv[k] = (char *) buf;
    argvlen[k] = ngx_cpymem(ngx_cpymem(buf, NGX_AILINK_STATE_REDIS_PREFIX,
                                       sizeof(NGX_AILINK_STATE_REDIS_PREFIX)
                                       - 1),
                            key->data, key->len)
                 - buf;

    if (handler == NULL) {
        return ngx_ailink_redis_command(argc, argv, argvlen, NULL, NULL);
    }

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    op = ngx_alloc(sizeof(ngx_ailink_state_redis_op_t), pool->log);
    if (op == NULL) {
        return NGX_ERROR;
    }

    op->handler = handler;
    op->data = data;
    op->cln = cln;
    op->get = get;

    rc = ngx_ailink_redis_command(argc, argv, argvlen,
                                  ngx_ailink_state_redis_reply, op);

    if (rc != NGX_AGAIN) {
        ngx_free(op);
        return NGX_ERROR;
    }

    /* the pool goes first: the reply is then dropped */
    cln->handler = ngx_ailink_state_redis_cancel;
    cln->data = op;

    return NGX_AGAIN;
}


static void
ngx_ailink_state_redis_cancel(void *data)
{
    ngx_ailink_state_redis_op_t *op = data;

    op->handler = NULL;
    op->cln = NULL;
}


static ngx_int_t
ngx_ailink_state_redis_int(redisReply *reply, int64_t *value)
{
    ngx_int_t  sign, n;

    switch (reply->type) {

    case REDIS_REPLY_INTEGER:
        *value = reply->integer;
        return NGX_OK;

    case REDIS_REPLY_STRING:
        sign = (reply->len > 0 && reply->str[0] == '-');

        n = ngx_atoof((u_char *) reply->str + sign, reply->len - sign);
        if (n == NGX_ERROR) {
            return NGX_ERROR;
        }

        *value = sign ? -n : n;
        return NGX_OK;

    default:
        return NGX_ERROR;
    }
}


static void
ngx_ailink_state_redis_reply(void *data, void *r)
{
    ngx_ailink_state_redis_op_t *op = data;

    int64_t                       value;
    ngx_int_t                     rc;
    ngx_uint_t                    get;
    redisReply                   *reply = r;
    ngx_ailink_state_handler_pt   handler;

    handler = op->handler;
    get = op->get;

    if (op->cln) {
        op->cln->handler = NULL;
    }

    data = op->data;
    ngx_free(op);

    if (handler == NULL) {
        return;
    }

    value = 0;
    rc = NGX_ERROR;

    if (reply == NULL) {
        /* no connection, or too late */

    } else if (get) {
        if (reply->type == REDIS_REPLY_NIL) {
            rc = NGX_DECLINED;

        } else if (ngx_ailink_state_redis_int(reply, &value) == NGX_OK) {
            rc = NGX_OK;
        }

    } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2
               && reply->element[0]->type == REDIS_REPLY_INTEGER
               && ngx_ailink_state_redis_int(reply->element[1], &value)
                  == NGX_OK)
    {
        rc = reply->element[0]->integer ? NGX_OK : NGX_BUSY;
    }

    if (rc == NGX_ERROR && reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "ailink redis: %*s", (size_t) reply->len, reply->str);
    }

    handler(data, rc, value);
}


/* records: the zone's shared memory */

static ngx_int_t
ngx_ailink_state_redis_set_record(ngx_ailink_state_t *st, ngx_str_t *key,
    ngx_str_t *value, time_t ttl)
{
    ngx_ailink_state_redis_t *rs = st->data;

    return ngx_ailink_state_set_record(rs->shm, key, value, ttl);
}


static ngx_int_t
ngx_ailink_state_redis_get_record(ngx_ailink_state_t *st, ngx_str_t *key,
    ngx_pool_t *pool, ngx_str_t *value)
{
    ngx_ailink_state_redis_t *rs = st->data;

    return ngx_ailink_state_get_record(rs->shm, key, pool, value);
}


static ngx_int_t
ngx_ailink_state_redis_cas_record(ngx_ailink_state_t *st, ngx_str_t *key,
    ngx_str_t *expect, ngx_str_t *value, time_t ttl, ngx_uint_t flags)
{
    ngx_ailink_state_redis_t *rs = st->data;

    return ngx_ailink_state_cas_record(rs->shm, key, expect, value, ttl,
                                       flags);
}


static ngx_int_t
ngx_ailink_state_redis_list_records(ngx_ailink_state_t *st,
    ngx_str_t *prefix, ngx_pool_t *pool, ngx_array_t *out)
{
    ngx_ailink_state_redis_t *rs = st->data;

    return ngx_ailink_state_list_records(rs->shm, prefix, pool, out);
}


static ngx_int_t
ngx_ailink_state_redis_delete_record(ngx_ailink_state_t *st, ngx_str_t *key)
{
    ngx_ailink_state_redis_t *rs = st->data;

    return ngx_ailink_state_delete_record(rs->shm, key);
}
