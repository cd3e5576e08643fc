
/*
 * Copyright (C) AILink
 *
 * Rate limits and spend caps, over the state interface.
 *
 * Request limits count in fixed windows aligned on the clock (a second, a
 * minute, an hour): the check and the increment are one operation of the
 * store, so workers never let more requests through than the limit, and
 * a request refused by one window is taken back from the windows it
 * passed.  Token limits count the prompt and completion tokens of each
 * response when it ends (streams included) into the minute window of that
 * moment; a request is refused while its window is spent.
 *
 * Spend is counted in nano-dollars (integer sums are exact) per token and
 * per project, per day and per month in the cap's time zone, from the
 * cost the audit computes; those counters persist across restarts.
 */


#include "ngx_ailink_policy.h"


static time_t  ngx_ailink_policy_windows[] = { 1, 60, 3600, 60 };


/*
 * "<id><field>|<field>|..." from the request, into buf (the store's
 * longest key), with room left for a window
 */

static ngx_int_t
ngx_ailink_policy_limit_key(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_ailink_policy_ctx_t *pctx, ngx_ailink_policy_action_t *a,
    u_char *buf, ngx_str_t *key)
{
    u_char                     *p;
    size_t                      len;
    ngx_uint_t                  i;
    ngx_ailink_policy_value_t   v[8];

    len = a->id.len;

    for (i = 0; i < a->nkeys; i++) {
        if (!ngx_ailink_policy_field_str(r, ctx, a->key_fields[i], &v[i])
            && ngx_ailink_policy_field(r, ctx, pctx, a->key_fields[i],
                                       &a->key_args[i], NULL, &v[i])
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        len += v[i].found ? v[i].str.len + 1 : 1;
    }

    if (len + 2 + NGX_INT64_LEN > NGX_AILINK_STATE_KEY_MAX) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(buf, a->id.data, a->id.len);

    for (i = 0; i < a->nkeys; i++) {
        if (v[i].found) {
            p = ngx_cpymem(p, v[i].str.data, v[i].str.len);
        }

        *p++ = '|';
    }

    key->data = buf;
    key->len = p - buf;

    return NGX_OK;
}


/*
 * the key with its window: "<key><kind>@<start>", the start in 8 hex
 * digits (cheaper than decimal; the window's start until 2106), written
 * once per window of each kind and copied until the next
 */

static void
ngx_ailink_policy_window_key(ngx_str_t *key, ngx_uint_t kind, time_t start,
    ngx_str_t *out)
{
    u_char      *p, *h;
    uint32_t     t;
    ngx_uint_t   i;

    static u_char  hex[] = "0123456789abcdef";
    static time_t  starts[NGX_AILINK_RL_N];
    static u_char  texts[NGX_AILINK_RL_N][8];

    h = texts[kind];

    if (starts[kind] != start || start == 0) {
        t = (uint32_t) start;

        for (i = 8; i; i--) {
            h[i - 1] = hex[t & 0xf];
            t >>= 4;
        }

        starts[kind] = start;
    }

    /* the key may be in place already (rate limits build it there) */
    p = (out->data == key->data) ? out->data + key->len
                                 : ngx_cpymem(out->data, key->data, key->len);
    *p++ = (u_char) ('0' + kind);
    *p++ = '@';
    ngx_memcpy(p, h, 8);

    out->len = p + 8 - out->data;
}


ngx_int_t
ngx_ailink_policy_rate_limit(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_ailink_policy_ctx_t *pctx, ngx_ailink_state_t *st,
    ngx_ailink_policy_t *policy, ngx_ailink_policy_action_t *a,
    ngx_ailink_policy_limits_t *lim, const char **result)
{
    u_char                      buf[NGX_AILINK_STATE_KEY_MAX];
    time_t                      now, start;
    int64_t                     value, remaining;
    ngx_int_t                   rc, over;
    ngx_str_t                   key, wkey;
    ngx_uint_t                  i, j, kind;
    ngx_ailink_policy_tpm_t    *tpm;
    ngx_ailink_state_window_t   w[NGX_AILINK_RL_N];

    *result = "error";

    if (st == NULL) {
        return NGX_ERROR;
    }

    if (ngx_ailink_policy_limit_key(r, ctx, pctx, a, buf, &key) != NGX_OK) {
        return NGX_ERROR;
    }

    now = lim->now;
    wkey.data = buf;
    wkey.len = 0;
    start = 0;
    over = 0;

    /* after a reply of an asynchronous store: from the window it answers */
    for (i = lim->step; i < NGX_AILINK_RL_N; i++) {
        if (a->limits[i] == 0) {
            continue;
        }

        ngx_ailink_state_window(now, ngx_ailink_policy_windows[i], 0, &w[i]);

        if (wkey.len && w[i].start == start) {
            /* the same start as the window before: only its kind differs */
            buf[key.len] = (u_char) ('0' + i);

        } else {
            ngx_ailink_policy_window_key(&key, i, w[i].start, &wkey);
            start = w[i].start;
        }

        kind = (i == NGX_AILINK_RL_TOKENS_MINUTE);

        if (lim->replied) {
            lim->replied = 0;
            rc = lim->rc;
            value = lim->value;

        } else if (kind) {
            rc = ngx_ailink_state_get_async(st, &wkey, &value, r->pool,
                                            ngx_ailink_policy_limits_reply,
                                            r);
        } else {
            rc = ngx_ailink_state_add_async(st, &wkey, 1,
                                      policy->shadow ? -1 : a->limits[i],
                                      w[i].left + 1, 0, &value, r->pool,
                                      ngx_ailink_policy_limits_reply, r);
        }

        if (rc == NGX_AGAIN) {
            lim->step = i;
            return NGX_AGAIN;
        }

        if (kind) {
            if (rc == NGX_ERROR) {
                goto failed;
            }

            rc = (value >= a->limits[i]) ? NGX_BUSY : NGX_OK;

        } else {
            if (rc == NGX_ERROR) {
                goto failed;
            }

            if (policy->shadow && value > a->limits[i]) {
                rc = NGX_BUSY;
            }
        }

        remaining = a->limits[i] - value;
        remaining = ngx_max(remaining, 0);

        if (rc == NGX_BUSY) {
            over = 1;
            remaining = 0;

            if (!policy->shadow) {
                pctx->retry_after = ngx_max(pctx->retry_after, w[i].left);
            }
        }

        /* the headers show the enforced limit closest to its end */
        if (!policy->shadow
            && (!(pctx->rl_set & (1 << kind))
                || remaining < pctx->rl_remaining[kind]))
        {
            pctx->rl_limit[kind] = &a->limit_text[i];
            pctx->rl_remaining[kind] = remaining;
            pctx->rl_reset[kind] = w[i].left;
            pctx->rl_set |= (1 << kind);
        }

        if (over && !policy->shadow) {
            /* give back what the earlier windows of this limit took */
            for (j = 0; j < i; j++) {
                if (a->limits[j] == 0 || j == NGX_AILINK_RL_TOKENS_MINUTE) {
                    continue;
                }

                ngx_ailink_state_window(now, ngx_ailink_policy_windows[j],
                                        0, &w[j]);
                ngx_ailink_policy_window_key(&key, j, w[j].start, &wkey);
                (void) ngx_ailink_state_add_async(st, &wkey, -1, -1,
                                                  w[j].left + 1, 0, &value,
                                                  NULL, NULL, NULL);
            }

            break;
        }
    }

    lim->step = 0;

    if (a->limits[NGX_AILINK_RL_TOKENS_MINUTE] && !over) {
        if (pctx->tpm == NULL) {
            pctx->tpm = &pctx->tpm_array;
            pctx->tpm->elts = pctx->tpm_first;
            pctx->tpm->nelts = 0;
            pctx->tpm->size = sizeof(ngx_ailink_policy_tpm_t);
            pctx->tpm->nalloc = 2;
            pctx->tpm->pool = r->pool;
        }

        tpm = ngx_array_push(pctx->tpm);
        if (tpm == NULL) {
            return NGX_ERROR;
        }

        /* the key for the log phase: in the context, if it fits */
        if (tpm >= pctx->tpm_first && tpm < pctx->tpm_first + 2
            && key.len <= NGX_AILINK_POLICY_TPM_KEY)
        {
            tpm->key.data = pctx->tpm_keys[tpm - pctx->tpm_first];

        } else {
            tpm->key.data = ngx_pnalloc(r->pool, key.len);
            if (tpm->key.data == NULL) {
                return NGX_ERROR;
            }
        }

        ngx_memcpy(tpm->key.data, key.data, key.len);
        tpm->key.len = key.len;
        tpm->action = a;
    }

    *result = over ? "limited" : "allowed";

    return over ? NGX_BUSY : NGX_OK;

failed:

    lim->step = 0;

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "ailink policy \"%V\": the state store cannot count "
                  "rate limit \"%V\"", &policy->name, &key);

    return NGX_ERROR;
}


/*
 * "sp|<t|p>|<id>|<d|m><period>|<zone>": the zone is its offset in seconds
 * for UTC and fixed offsets, its name for an IANA zone (whose offset
 * changes with daylight saving time, its counters not).  In a zone of a
 * fixed offset the key stays the same for a day: the last one is kept.
 */

static ngx_int_t
ngx_ailink_policy_spend_key(ngx_ailink_ctx_t *ctx,
    ngx_ailink_policy_spend_t *sp, u_char *buf, ngx_str_t *key, time_t *ttl)
{
    u_char     *p;
    time_t      now, offset, day;
    ngx_tm_t    tm;
    ngx_str_t  *id;
    ngx_int_t   period;

    now = ngx_time();
    id = (sp->scope == NGX_AILINK_SPEND_TOKEN) ? &ctx->token->id
                                               : &ctx->token->project;

    *ttl = (sp->period == NGX_AILINK_SPEND_DAY) ? 3 * 86400 : 63 * 86400;

    if (now >= sp->key_from && now < sp->key_until
        && id->len == sp->key_id_len
        && ngx_memcmp(sp->key + sizeof("sp|t|") - 1, id->data, id->len) == 0)
    {
        /* the stores copy what they send or keep */
        key->data = sp->key;
        key->len = sp->key_len;
        return NGX_OK;
    }

    offset = ngx_ailink_policy_tz_offset(sp->tz, now);

    if (id->len > NGX_AILINK_STATE_KEY_MAX - 128) {
        return NGX_ERROR;
    }

    day = (now + offset) / 86400;

    if (sp->period == NGX_AILINK_SPEND_DAY) {
        period = day;

    } else {
        ngx_gmtime(now + offset, &tm);
        period = tm.ngx_tm_year * 12 + tm.ngx_tm_mon;
    }

    p = ngx_cpymem(buf, "sp|", 3);
    *p++ = (sp->scope == NGX_AILINK_SPEND_TOKEN) ? 't' : 'p';
    *p++ = '|';
    p = ngx_cpymem(p, id->data, id->len);
    *p++ = '|';
    *p++ = (sp->period == NGX_AILINK_SPEND_DAY) ? 'd' : 'm';
    p = ngx_ailink_write_int(p, period);
    *p++ = '|';

    if (sp->tz) {
        p = ngx_cpymem(p, sp->tz->key.data, sp->tz->key.len);

    } else {
        *p++ = '0';
    }

    key->data = buf;
    key->len = p - buf;

    if ((sp->tz == NULL || sp->tz->ntransitions == 0)
        && key->len <= NGX_AILINK_SPEND_KEY_LEN)
    {
        /* the day in that zone, when the key changes next */
        sp->key_from = day * 86400 - offset;
        sp->key_until = sp->key_from + 86400;
        sp->key_len = key->len;
        sp->key_id_len = id->len;
        ngx_memcpy(sp->key, buf, key->len);
    }

    return NGX_OK;
}


ngx_int_t
ngx_ailink_policy_spend_get(ngx_ailink_ctx_t *ctx, ngx_ailink_state_t *st,
    ngx_ailink_policy_spend_t *sp, double *usd)
{
    u_char     buf[NGX_AILINK_STATE_KEY_MAX];
    time_t     ttl;
    int64_t    value;
    ngx_str_t  key;

    if (st == NULL
        || ngx_ailink_policy_spend_key(ctx, sp, buf, &key, &ttl) != NGX_OK
        || ngx_ailink_state_get(st, &key, &value) == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    *usd = (double) value / NGX_AILINK_NANO_USD;

    return NGX_OK;
}


ngx_int_t
ngx_ailink_policy_spend_cap(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_ailink_state_t *st, ngx_ailink_policy_action_t *a,
    ngx_ailink_policy_limits_t *lim, double *spent)
{
    u_char     buf[NGX_AILINK_STATE_KEY_MAX];
    time_t     ttl;
    int64_t    value;
    ngx_int_t  rc;
    ngx_str_t  key;

    value = 0;

    if (lim->replied) {
        lim->replied = 0;
        rc = lim->rc;
        value = lim->value;

    } else if (st == NULL
               || ngx_ailink_policy_spend_key(ctx, &a->spend, buf, &key, &ttl)
                  != NGX_OK)
    {
        rc = NGX_ERROR;

    } else {
        rc = ngx_ailink_state_get_async(st, &key, &value, r->pool,
                                        ngx_ailink_policy_limits_reply, r);
        if (rc == NGX_AGAIN) {
            return NGX_AGAIN;
        }
    }

    *spent = (double) value / NGX_AILINK_NANO_USD;

    if (rc == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "ailink policy: the state store cannot read spend "
                      "for budget \"%V\"", &a->budget);
        return NGX_ERROR;
    }

    return (*spent >= a->limit_usd) ? NGX_BUSY : NGX_OK;
}


/* the log phase: tokens into their minute windows, cost into spend */

void
ngx_ailink_policy_count_usage(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_ailink_policy_ctx_t *pctx, ngx_ailink_state_t *st)
{
    u_char                      buf[NGX_AILINK_STATE_KEY_MAX];
    time_t                      ttl;
    double                      cost;
    int64_t                     nano, value;
    ngx_str_t                   key;
    ngx_uint_t                  i;
    ngx_ailink_conf_t          *conf;
    ngx_ailink_policy_tpm_t    *tpm;
    ngx_ailink_policy_set_t    *set;
    ngx_ailink_state_window_t   w;

    if (st == NULL || !ctx->usage.known) {
        return;
    }

    if (pctx && pctx->tpm && ctx->usage.total) {
        tpm = pctx->tpm->elts;
        ngx_ailink_state_window(ngx_time(), 60, 0, &w);

        for (i = 0; i < pctx->tpm->nelts; i++) {
            if (tpm[i].key.len + 2 + NGX_INT64_LEN > sizeof(buf)) {
                continue;
            }

            key.data = buf;
            ngx_ailink_policy_window_key(&tpm[i].key,
                                         NGX_AILINK_RL_TOKENS_MINUTE,
                                         w.start, &key);

            /* nobody waits for the sum: no reply handler */
            if (ngx_ailink_state_add_async(st, &key,
                                           (int64_t) ctx->usage.total, -1,
                                           w.left + 1, 0, &value,
                                           NULL, NULL, NULL)
                == NGX_ERROR)
            {
                ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                              "ailink policy: the state store cannot count "
                              "%ui tokens for \"%V\"", ctx->usage.total,
                              &tpm[i].key);
            }
        }
    }

    set = ctx->token->policies;
    conf = ngx_ailink_get_conf(r);

    if (set == NULL || set->nspend == 0 || conf == NULL) {
        return;
    }

    cost = ngx_ailink_request_cost(conf, ctx);
    nano = (int64_t) (cost * NGX_AILINK_NANO_USD + 0.5);

    if (nano <= 0) {
        return;
    }

    for (i = 0; i < set->nspend; i++) {
        if (ngx_ailink_policy_spend_key(ctx, &set->spend[i], buf, &key, &ttl)
            != NGX_OK
            || ngx_ailink_state_add_async(st, &key, nano, -1, ttl,
                                          NGX_AILINK_STATE_PERSIST, &value,
                                          NULL, NULL, NULL)
               == NGX_ERROR)
        {
            ngx_log_error(NGX_LOG_CRIT, r->connection->log, 0,
                          "ailink policy: spend of token \"%V\" not counted: "
                          "the state store did not take it",
                          &ctx->token->id);
            continue;
        }

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "ailink spend \"%V\": %L nano-USD", &key, value);
    }
}
