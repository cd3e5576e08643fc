
/*
 * Copyright (C) AILink
 *
 * Circuit breakers shared by the gateways on one Redis
 * (ailink_breaker_zone ... backend=redis).  Each gateway decides with its
 * own zone, as a single one does (a request through a breaker reads
 * shared memory only), and tells the others of each transition: Redis
 * keeps the last one of a scope as the record "bo:<scope>", "o <opened>
 * <cooldown> <failures>" when it opened, "c <time>" when a probe closed
 * it.  One worker of each gateway reads them every 250 ms and applies
 * what is newer than its zone's state: a breaker opened by one gateway
 * is open on all within about a quarter of a second, with the same
 * cooldown, and a probe's success on any closes it on all.  Consecutive
 * failures are counted by each gateway (the threshold is per gateway).
 * Redis unavailable: each gateway goes on alone, and catches up when
 * Redis is back.
 */


#include "ngx_ailink_breaker.h"


#define NGX_AILINK_BREAKER_SHARE_POLL  250      /* ms */
#define NGX_AILINK_BREAKER_SHARE_KEEP  86400    /* s, past the cooldown */


static void ngx_ailink_breaker_share_poll(ngx_event_t *ev);
static void ngx_ailink_breaker_share_read(void *data, ngx_int_t rc,
    ngx_str_t *value, ngx_array_t *records);


static ngx_event_t          ngx_ailink_breaker_share_ev;
static ngx_ailink_state_t  *ngx_ailink_breaker_share_redis;
static ngx_ailink_state_t  *ngx_ailink_breaker_share_zone;

static ngx_str_t  ngx_ailink_breaker_share_prefix = ngx_string("bo:");


/* a transition of this gateway, for the others (sent, not waited for) */

void
ngx_ailink_breaker_share_tell(ngx_ailink_state_t *redis, ngx_pool_t *pool,
    ngx_str_t *scope, time_t opened, time_t cooldown, int64_t failures)
{
    u_char     *p;
    ngx_str_t   key, value;

    key.len = sizeof("bo:") - 1 + scope->len;
    value.data = ngx_pnalloc(pool, key.len + 3 * NGX_INT64_LEN + 8);
    if (value.data == NULL) {
        return;
    }

    key.data = value.data + 3 * NGX_INT64_LEN + 8;
    ngx_memcpy(ngx_cpymem(key.data, "bo:", 3), scope->data, scope->len);

    if (opened) {
        p = ngx_sprintf(value.data, "o %T %T %L", opened, cooldown, failures);

    } else {
        p = ngx_sprintf(value.data, "c %T", ngx_time());
    }

    value.len = p - value.data;

    (void) ngx_ailink_state_cas_record_nowait(redis, &key, NULL, &value,
                                              cooldown
                                              + NGX_AILINK_BREAKER_SHARE_KEEP,
                                              NGX_AILINK_STATE_OVERWRITE);
}


/* one worker of the gateway follows the others */

ngx_int_t
ngx_ailink_breaker_share_init(ngx_cycle_t *cycle, ngx_ailink_state_t *redis,
    ngx_ailink_state_t *zone)
{
    if (ngx_worker != 0) {
        return NGX_OK;
    }

    ngx_ailink_breaker_share_redis = redis;
    ngx_ailink_breaker_share_zone = zone;

    ngx_memzero(&ngx_ailink_breaker_share_ev, sizeof(ngx_event_t));
    ngx_ailink_breaker_share_ev.handler = ngx_ailink_breaker_share_poll;
    ngx_ailink_breaker_share_ev.log = cycle->log;
    ngx_ailink_breaker_share_ev.data = cycle;
    ngx_ailink_breaker_share_ev.cancelable = 1;

    ngx_add_timer(&ngx_ailink_breaker_share_ev,
                  NGX_AILINK_BREAKER_SHARE_POLL);

    return NGX_OK;
}


static void
ngx_ailink_breaker_share_poll(ngx_event_t *ev)
{
    ngx_int_t     rc;
    ngx_pool_t   *pool;
    ngx_array_t   out;

    if (ngx_exiting) {
        return;
    }

    pool = ngx_create_pool(4096, ev->log);
    if (pool == NULL
        || ngx_array_init(&out, pool, 8, sizeof(ngx_keyval_t)) != NGX_OK)
    {
        if (pool) {
            ngx_destroy_pool(pool);
        }

        ngx_add_timer(ev, NGX_AILINK_BREAKER_SHARE_POLL);
        return;
    }

    rc = ngx_ailink_breaker_share_redis->ops->list_records_async(
             ngx_ailink_breaker_share_redis,
             &ngx_ailink_breaker_share_prefix, pool, &out,
             ngx_ailink_breaker_share_read, pool);

    if (rc == NGX_AGAIN) {
        return;
    }

    ngx_ailink_breaker_share_read(pool, rc, NULL, &out);
}


/* what another gateway told, applied when it is newer than ours */

static void
ngx_ailink_breaker_share_apply(ngx_pool_t *pool, ngx_str_t *scope,
    ngx_str_t *told)
{
    u_char              *p, *last, *sp;
    int64_t              n[3], value, local, opened;
    ngx_uint_t           i, fields;
    ngx_ailink_state_t  *st;

    if (told->len < 3 || (told->data[0] != 'o' && told->data[0] != 'c')) {
        return;
    }

    st = ngx_ailink_breaker_share_zone;
    p = told->data + 2;
    last = told->data + told->len;
    fields = (told->data[0] == 'o') ? 3 : 1;

    for (i = 0; i < fields; i++) {
        sp = ngx_strlchr(p, last, ' ');
        n[i] = ngx_atoof(p, (sp ? sp : last) - p);

        if (n[i] == NGX_ERROR) {
            return;
        }

        p = sp ? sp + 1 : last;
    }

    local = ngx_ailink_breaker_get(st, pool, 'v', scope);

    if (told->data[0] == 'o') {
        if (n[0] <= (local >> NGX_AILINK_BREAKER_SHIFT)) {
            return;
        }

        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "ailink: circuit \"%V\" opened by another gateway",
                      scope);

        value = (n[0] << NGX_AILINK_BREAKER_SHIFT)
                | (n[2] & NGX_AILINK_BREAKER_MASK);

        (void) ngx_ailink_breaker_set(st, pool, 'c', scope, n[1]);
        (void) ngx_ailink_breaker_set(st, pool, 'v', scope, value);
        (void) ngx_ailink_breaker_set(st, pool, 'p', scope, 0);
        return;
    }

    /* closed at n[0]: an opening up to then is over */

    opened = local >> NGX_AILINK_BREAKER_SHIFT;

    if (opened == 0 || opened > n[0]) {
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                  "ailink: circuit \"%V\" closed by another gateway", scope);

    (void) ngx_ailink_breaker_set(st, pool, 'v', scope, 0);
    (void) ngx_ailink_breaker_set(st, pool, 'p', scope, 0);
}


static void
ngx_ailink_breaker_share_read(void *data, ngx_int_t rc, ngx_str_t *value,
    ngx_array_t *records)
{
    ngx_pool_t *pool = data;

    ngx_str_t      scope;
    ngx_uint_t     i;
    ngx_keyval_t  *kv;

    if (rc == NGX_OK && records) {
        kv = records->elts;

        for (i = 0; i < records->nelts; i++) {
            scope.data = kv[i].key.data + 3;
            scope.len = kv[i].key.len - 3;

            ngx_ailink_breaker_share_apply(pool, &scope, &kv[i].value);
        }
    }

    ngx_destroy_pool(pool);

    if (!ngx_exiting && !ngx_ailink_breaker_share_ev.timer_set) {
        ngx_add_timer(&ngx_ailink_breaker_share_ev,
                      NGX_AILINK_BREAKER_SHARE_POLL);
    }
}
