
/*
 * Copyright (C) AILink
 *
 * The state interface with its counters in Redis, so that every gateway
 * on the same Redis counts rate limits and spend together: check-and-add
 * is one EVALSHA of a small Lua script (atomic in Redis, the TTL set when
 * the counter is created), get is a GET, and adds whose result nobody
 * waits for (the log phase's) are sent without a reply handler.  Counters
 * are only asynchronous here: the synchronous add and get fail.
 *
 * Records whose keys start with the prefixes the zone's owner gives are
 * in Redis too (approvals "apr:" and idempotency keys "idem:" of the state
 * zone, entries "c:" of the cache zone), so that an approval created on
 * one gateway is decided and claimed on any, a key taken on one is taken
 * on all, an answer cached by one is a hit on all: get is a GET,
 * compare-and-set a Lua script (atomic), list a script that SCANs their
 * keys.  Other records stay in the zone's shared memory: their callers
 * are synchronous.
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
    ngx_ailink_state_t           *shm;      /* the other records */
    ngx_str_t                    *prefixes; /* of the records in Redis */
} ngx_ailink_state_redis_t;


/* the records kept in Redis; the others stay in shared memory */
#define ngx_ailink_state_redis_record(st, key)                                \
    ngx_ailink_state_redis_prefixed((st)->data, key)


enum {
    NGX_AILINK_STATE_REDIS_ADD = 0,
    NGX_AILINK_STATE_REDIS_GET,
    NGX_AILINK_STATE_REDIS_GET_RECORD,
    NGX_AILINK_STATE_REDIS_CAS_RECORD,
    NGX_AILINK_STATE_REDIS_LIST_RECORDS
};


/* one operation whose reply someone waits for (heap) */
typedef struct {
    ngx_ailink_state_handler_pt   handler;
    ngx_ailink_state_record_pt    record;
    void                         *data;
    ngx_pool_t                   *pool;
    ngx_pool_cleanup_t           *cln;
    ngx_uint_t                    kind;
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
static ngx_int_t ngx_ailink_state_redis_get_record_async(
    ngx_ailink_state_t *st, ngx_str_t *key, ngx_pool_t *pool,
    ngx_str_t *value, ngx_ailink_state_record_pt handler, void *data);
static ngx_int_t ngx_ailink_state_redis_cas_record_async(
    ngx_ailink_state_t *st, ngx_str_t *key, ngx_str_t *expect,
    ngx_str_t *value, time_t ttl, ngx_uint_t flags, ngx_pool_t *pool,
    ngx_ailink_state_record_pt handler, void *data);
static ngx_int_t ngx_ailink_state_redis_list_records_async(
    ngx_ailink_state_t *st, ngx_str_t *prefix, ngx_pool_t *pool,
    ngx_array_t *out, ngx_ailink_state_record_pt handler, void *data);
static ngx_int_t ngx_ailink_state_redis_send(ngx_uint_t argc,
    const char **argv, size_t *argvlen, ngx_str_t *key,
    ngx_ailink_state_redis_op_t *tmpl);
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
    ngx_ailink_state_redis_get_async,
    ngx_ailink_state_redis_get_record_async,
    ngx_ailink_state_redis_cas_record_async,
    ngx_ailink_state_redis_list_records_async
};


/*
 * KEYS[1] the counter; ARGV delta, limit (< 0: none), TTL in seconds;
 * returns {1, new value} or {0, value as it was} when over the limit
 */
static ngx_str_t  ngx_ailink_state_redis_add_script = ngx_string(
    "local v = redis.call('GET', KEYS[1]) "
    "local n = tonumber(v or '0') "
    "local d = tonumber(ARGV[1]) "
    "local l = tonumber(ARGV[2]) "
    "if l >= 0 and n + d > l then return {0, n} end "
    "n = redis.call('INCRBY', KEYS[1], d) "
    "if not v then redis.call('EXPIRE', KEYS[1], ARGV[3]) end "
    "return {1, n}");

/*
 * KEYS[1] the record; ARGV "0" (create when absent), "1" (replace when
 * it equals ARGV[2]), "2" (delete when it equals ARGV[2]) or "3" (write),
 * the expected value, the new value, TTL in seconds; returns 1 done, 0
 * there (create) or different, -1 absent
 */
static ngx_str_t  ngx_ailink_state_redis_cas_script = ngx_string(
    "local v = redis.call('GET', KEYS[1]) "
    "if ARGV[1] == '0' then "
        "if v then return 0 end "
    "elseif ARGV[1] ~= '3' then "
        "if not v then return -1 end "
        "if v ~= ARGV[2] then return 0 end "
        "if ARGV[1] == '2' then redis.call('DEL', KEYS[1]) return 1 end "
    "end "
    "redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4]) "
    "return 1");

/*
 * ARGV[1] a SCAN pattern; returns {key, value, key, value, ...}: the
 * records of a prefix in one round trip (approvals are few: they expire)
 */
static ngx_str_t  ngx_ailink_state_redis_list_script = ngx_string(
    "local out = {} "
    "local c = '0' "
    "repeat "
        "local r = redis.call('SCAN', c, 'MATCH', ARGV[1], 'COUNT', 1000) "
        "c = r[1] "
        "for _, k in ipairs(r[2]) do "
            "local v = redis.call('GET', k) "
            "if v then out[#out + 1] = k; out[#out + 1] = v end "
        "end "
    "until c == '0' "
    "return out");

static u_char  ngx_ailink_state_redis_add_sha[41];
static u_char  ngx_ailink_state_redis_cas_sha[41];
static u_char  ngx_ailink_state_redis_list_sha[41];


static ngx_uint_t
ngx_ailink_state_redis_prefixed(ngx_ailink_state_redis_t *rs, ngx_str_t *key)
{
    ngx_str_t  *p;

    for (p = rs->prefixes; p->len; p++) {
        if (key->len >= p->len
            && ngx_strncmp(key->data, p->data, p->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


ngx_ailink_state_t *
ngx_ailink_state_redis_create(ngx_conf_t *cf, ngx_ailink_state_t *shm,
    ngx_str_t *prefixes)
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

    /*
     * every configuration lists its scripts: each connection loads them,
     * so a Redis restarted after a reload has them again
     */
    if (ngx_ailink_redis_add_script(cf, &ngx_ailink_state_redis_add_script,
                                    ngx_ailink_state_redis_add_sha)
        != NGX_OK
        || ngx_ailink_redis_add_script(cf, &ngx_ailink_state_redis_cas_script,
                                       ngx_ailink_state_redis_cas_sha)
           != NGX_OK
        || ngx_ailink_redis_add_script(cf,
                                       &ngx_ailink_state_redis_list_script,
                                       ngx_ailink_state_redis_list_sha)
           != NGX_OK)
    {
        return NULL;
    }

    rs->shm = shm;
    rs->prefixes = prefixes;
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


static void
ngx_ailink_state_redis_op(ngx_ailink_state_redis_op_t *op, ngx_uint_t kind,
    ngx_pool_t *pool, ngx_ailink_state_handler_pt handler,
    ngx_ailink_state_record_pt record, void *data)
{
    op->handler = handler;
    op->record = record;
    op->data = data;
    op->pool = pool;
    op->cln = NULL;
    op->kind = kind;
}


/* argv[0..2] of a script's call: EVALSHA, its SHA-1, how many keys */

static void
ngx_ailink_state_redis_evalsha(const char **argv, size_t *len, u_char *sha,
    ngx_uint_t keys)
{
    argv[0] = "EVALSHA";
    len[0] = 7;
    argv[1] = (char *) sha;
    len[1] = 40;
    argv[2] = keys ? "1" : "0";
    len[2] = 1;
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
    u_char                        num[3][NGX_INT64_LEN];
    size_t                        len[7];
    const char                   *argv[7];
    ngx_ailink_state_redis_op_t   op;

    ngx_ailink_state_redis_evalsha(argv, len, ngx_ailink_state_redis_add_sha,
                                   1);

    /* argv[3]: the key, by send */

    argv[4] = (char *) num[0];
    len[4] = ngx_sprintf(num[0], "%L", delta) - num[0];
    argv[5] = (char *) num[1];
    len[5] = ngx_sprintf(num[1], "%L", limit < 0 ? (int64_t) -1 : limit)
             - num[1];
    argv[6] = (char *) num[2];
    len[6] = ngx_sprintf(num[2], "%T", ngx_max(ttl, 1)) - num[2];

    ngx_ailink_state_redis_op(&op, NGX_AILINK_STATE_REDIS_ADD,
                              pool, handler, NULL, data);

    return ngx_ailink_state_redis_send(7, argv, len, key, &op);
}


static ngx_int_t
ngx_ailink_state_redis_get_async(ngx_ailink_state_t *st, ngx_str_t *key,
    int64_t *value, ngx_pool_t *pool, ngx_ailink_state_handler_pt handler,
    void *data)
{
    size_t                        len[2];
    const char                   *argv[2];
    ngx_ailink_state_redis_op_t   op;

    argv[0] = "GET";
    len[0] = 3;

    ngx_ailink_state_redis_op(&op, NGX_AILINK_STATE_REDIS_GET,
                              pool, handler, NULL, data);

    return ngx_ailink_state_redis_send(2, argv, len, key, &op);
}


static ngx_int_t
ngx_ailink_state_redis_get_record_async(ngx_ailink_state_t *st,
    ngx_str_t *key, ngx_pool_t *pool, ngx_str_t *value,
    ngx_ailink_state_record_pt handler, void *data)
{
    size_t                        len[2];
    const char                   *argv[2];
    ngx_ailink_state_redis_op_t   op;
    ngx_ailink_state_redis_t     *rs;

    if (!ngx_ailink_state_redis_record(st, key)) {
        rs = st->data;
        return ngx_ailink_state_get_record(rs->shm, key, pool, value);
    }

    argv[0] = "GET";
    len[0] = 3;

    ngx_ailink_state_redis_op(&op, NGX_AILINK_STATE_REDIS_GET_RECORD,
                              pool, NULL, handler, data);

    return ngx_ailink_state_redis_send(2, argv, len, key, &op);
}


static ngx_int_t
ngx_ailink_state_redis_cas_record_async(ngx_ailink_state_t *st,
    ngx_str_t *key, ngx_str_t *expect, ngx_str_t *value, time_t ttl,
    ngx_uint_t flags, ngx_pool_t *pool, ngx_ailink_state_record_pt handler,
    void *data)
{
    u_char                        num[NGX_INT64_LEN];
    size_t                        len[8];
    const char                   *argv[8];
    ngx_ailink_state_redis_op_t   op;
    ngx_ailink_state_redis_t     *rs;

    if (!ngx_ailink_state_redis_record(st, key)) {
        rs = st->data;
        return ngx_ailink_state_cas_record_nowait(rs->shm, key, expect, value,
                                                  ttl, flags);
    }

    ngx_ailink_state_redis_evalsha(argv, len, ngx_ailink_state_redis_cas_sha,
                                   1);
    argv[4] = expect ? (value ? "1" : "2")
              : (flags & NGX_AILINK_STATE_OVERWRITE) ? "3" : "0";
    len[4] = 1;
    argv[5] = expect ? (char *) expect->data : "";
    len[5] = expect ? expect->len : 0;
    argv[6] = value ? (char *) value->data : "";
    len[6] = value ? value->len : 0;
    argv[7] = (char *) num;
    len[7] = ngx_sprintf(num, "%T", ngx_max(ttl, 1)) - num;

    ngx_ailink_state_redis_op(&op, NGX_AILINK_STATE_REDIS_CAS_RECORD,
                              pool, NULL, handler, data);

    return ngx_ailink_state_redis_send(8, argv, len, key, &op);
}


static ngx_int_t
ngx_ailink_state_redis_list_records_async(ngx_ailink_state_t *st,
    ngx_str_t *prefix, ngx_pool_t *pool, ngx_array_t *out,
    ngx_ailink_state_record_pt handler, void *data)
{
    u_char                        pattern[NGX_AILINK_STATE_KEY_MAX];
    size_t                        len[4];
    ngx_str_t                     match;
    ngx_uint_t                    i;
    const char                   *argv[4];
    ngx_ailink_state_redis_op_t   op;
    ngx_ailink_state_redis_t     *rs;

    if (!ngx_ailink_state_redis_record(st, prefix)) {
        rs = st->data;
        return ngx_ailink_state_list_records(rs->shm, prefix, pool, out);
    }

    if (prefix->len * 2 + 1 > NGX_AILINK_STATE_KEY_MAX) {
        return NGX_ERROR;
    }

    /* the prefix as a glob: its own glob characters escaped */
    match.data = pattern;
    match.len = 0;

    for (i = 0; i < prefix->len; i++) {
        if (ngx_strchr("*?[]\\", prefix->data[i]) != NULL) {
            pattern[match.len++] = '\\';
        }

        pattern[match.len++] = prefix->data[i];
    }

    pattern[match.len++] = '*';

    ngx_ailink_state_redis_evalsha(argv, len, ngx_ailink_state_redis_list_sha,
                                   0);

    ngx_ailink_state_redis_op(&op, NGX_AILINK_STATE_REDIS_LIST_RECORDS,
                              pool, NULL, handler, data);

    /* the pattern, prefixed as a key is, goes in argv[3] */
    return ngx_ailink_state_redis_send(4, argv, len, &match, &op);
}


/*
 * the key is argv[argc == 2 ? 1 : 3]; hiredis copies it all at once.
 * With no handler, the command is fire-and-forget.
 */

static ngx_int_t
ngx_ailink_state_redis_send(ngx_uint_t argc, const char **argv,
    size_t *argvlen, ngx_str_t *key, ngx_ailink_state_redis_op_t *tmpl)
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

    if (tmpl->handler == NULL && tmpl->record == NULL) {
        return ngx_ailink_redis_command(argc, argv, argvlen, NULL, NULL);
    }

    cln = NULL;

    if (tmpl->pool) {
        cln = ngx_pool_cleanup_add(tmpl->pool, 0);
        if (cln == NULL) {
            return NGX_ERROR;
        }
    }

    op = ngx_alloc(sizeof(ngx_ailink_state_redis_op_t), ngx_cycle->log);
    if (op == NULL) {
        return NGX_ERROR;
    }

    *op = *tmpl;
    op->cln = cln;

    rc = ngx_ailink_redis_command(argc, argv, argvlen,
                                  ngx_ailink_state_redis_reply, op);

    if (rc != NGX_AGAIN) {
        ngx_free(op);
        return NGX_ERROR;
    }

    /* the pool goes first: the reply is then dropped */
    if (cln) {
        cln->handler = ngx_ailink_state_redis_cancel;
        cln->data = op;
    }

    return NGX_AGAIN;
}


static void
ngx_ailink_state_redis_cancel(void *data)
{
    ngx_ailink_state_redis_op_t *op = data;

    op->handler = NULL;
    op->record = NULL;
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


static ngx_int_t
ngx_ailink_state_redis_counter(ngx_ailink_state_redis_op_t *op,
    redisReply *reply, int64_t *value)
{
    if (op->kind == NGX_AILINK_STATE_REDIS_GET) {
        if (reply->type == REDIS_REPLY_NIL) {
            return NGX_DECLINED;
        }

        return ngx_ailink_state_redis_int(reply, value);
    }

    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2
        && reply->element[0]->type == REDIS_REPLY_INTEGER
        && ngx_ailink_state_redis_int(reply->element[1], value) == NGX_OK)
    {
        return reply->element[0]->integer ? NGX_OK : NGX_BUSY;
    }

    return NGX_ERROR;
}


static ngx_int_t
ngx_ailink_state_redis_copy(ngx_pool_t *pool, redisReply *reply,
    size_t skip, ngx_str_t *s)
{
    if (reply->type != REDIS_REPLY_STRING || reply->len < skip) {
        return NGX_ERROR;
    }

    s->len = reply->len - skip;
    s->data = ngx_pnalloc(pool, s->len + 1);
    if (s->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(s->data, reply->str + skip, s->len);
    s->data[s->len] = '\0';

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_state_redis_records(ngx_pool_t *pool, redisReply *reply,
    ngx_array_t **records)
{
    size_t         i;
    ngx_array_t   *out;
    ngx_keyval_t  *kv;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements % 2) {
        return NGX_ERROR;
    }

    out = ngx_array_create(pool, reply->elements / 2 + 1,
                           sizeof(ngx_keyval_t));
    if (out == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < reply->elements; i += 2) {
        kv = ngx_array_push(out);
        if (kv == NULL
            || ngx_ailink_state_redis_copy(pool, reply->element[i],
                                       sizeof(NGX_AILINK_STATE_REDIS_PREFIX)
                                       - 1, &kv->key)
               != NGX_OK
            || ngx_ailink_state_redis_copy(pool, reply->element[i + 1], 0,
                                           &kv->value)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    *records = out;

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_state_redis_record_reply(ngx_ailink_state_redis_op_t *op,
    redisReply *reply, ngx_str_t *value, ngx_array_t **records)
{
    switch (op->kind) {

    case NGX_AILINK_STATE_REDIS_GET_RECORD:
        if (reply->type == REDIS_REPLY_NIL) {
            return NGX_DECLINED;
        }

        return ngx_ailink_state_redis_copy(op->pool, reply, 0, value);

    case NGX_AILINK_STATE_REDIS_CAS_RECORD:
        if (reply->type != REDIS_REPLY_INTEGER) {
            return NGX_ERROR;
        }

        return reply->integer > 0 ? NGX_OK
               : reply->integer == 0 ? NGX_BUSY : NGX_DECLINED;

    default: /* NGX_AILINK_STATE_REDIS_LIST_RECORDS */
        return ngx_ailink_state_redis_records(op->pool, reply, records);
    }
}


static void
ngx_ailink_state_redis_reply(void *data, void *r)
{
    ngx_ailink_state_redis_op_t *op = data;

    int64_t                       value;
    ngx_int_t                     rc;
    ngx_str_t                     rec;
    redisReply                   *reply = r;
    ngx_array_t                  *records;
    ngx_ailink_state_redis_op_t   done;

    done = *op;

    if (op->cln) {
        op->cln->handler = NULL;
    }

    ngx_free(op);

    if (done.handler == NULL && done.record == NULL) {
        return;
    }

    value = 0;
    ngx_str_null(&rec);
    records = NULL;
    rc = NGX_ERROR;

    if (reply == NULL) {
        /* no connection, or too late */

    } else if (done.record) {
        rc = ngx_ailink_state_redis_record_reply(&done, reply, &rec,
                                                 &records);

    } else {
        rc = ngx_ailink_state_redis_counter(&done, reply, &value);
    }

    if (rc == NGX_ERROR && reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "ailink redis: %*s", (size_t) reply->len, reply->str);
    }

    if (done.record) {
        done.record(done.data, rc, &rec, records);

    } else {
        done.handler(done.data, rc, value);
    }
}


/*
 * the synchronous records: those kept in Redis answer only
 * asynchronously; the others are the zone's shared memory
 */

static ngx_int_t
ngx_ailink_state_redis_set_record(ngx_ailink_state_t *st, ngx_str_t *key,
    ngx_str_t *value, time_t ttl)
{
    ngx_ailink_state_redis_t *rs = st->data;

    if (ngx_ailink_state_redis_record(st, key)) {
        return NGX_ERROR;
    }

    return ngx_ailink_state_set_record(rs->shm, key, value, ttl);
}


static ngx_int_t
ngx_ailink_state_redis_get_record(ngx_ailink_state_t *st, ngx_str_t *key,
    ngx_pool_t *pool, ngx_str_t *value)
{
    ngx_ailink_state_redis_t *rs = st->data;

    if (ngx_ailink_state_redis_record(st, key)) {
        return NGX_ERROR;
    }

    return ngx_ailink_state_get_record(rs->shm, key, pool, value);
}


static ngx_int_t
ngx_ailink_state_redis_cas_record(ngx_ailink_state_t *st, ngx_str_t *key,
    ngx_str_t *expect, ngx_str_t *value, time_t ttl, ngx_uint_t flags)
{
    ngx_ailink_state_redis_t *rs = st->data;

    if (ngx_ailink_state_redis_record(st, key)) {
        return NGX_ERROR;
    }

    return ngx_ailink_state_cas_record(rs->shm, key, expect, value, ttl,
                                       flags);
}


static ngx_int_t
ngx_ailink_state_redis_list_records(ngx_ailink_state_t *st,
    ngx_str_t *prefix, ngx_pool_t *pool, ngx_array_t *out)
{
    ngx_ailink_state_redis_t *rs = st->data;

    if (ngx_ailink_state_redis_record(st, prefix)) {
        return NGX_ERROR;
    }

    return ngx_ailink_state_list_records(rs->shm, prefix, pool, out);
}


static ngx_int_t
ngx_ailink_state_redis_delete_record(ngx_ailink_state_t *st, ngx_str_t *key)
{
    ngx_ailink_state_redis_t *rs = st->data;

    if (ngx_ailink_state_redis_record(st, key)) {
        return NGX_ERROR;
    }

    return ngx_ailink_state_delete_record(rs->shm, key);
}
