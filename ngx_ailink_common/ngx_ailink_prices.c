
/*
 * Copyright (C) AILink
 *
 * The price table: USD per million tokens, by model-name prefix.  Built-in
 * list prices of current OpenAI, Anthropic and Gemini models; the config
 * file's "prices" mapping adds models or overrides these.  The longest
 * matching prefix wins, so "gpt-4o-mini-2024-07-18" is priced as
 * "gpt-4o-mini", not as "gpt-4o".
 */


#include "ngx_ailink_common.h"


typedef struct {
    const char  *prefix;
    double       input;
    double       output;
    double       cached_input;
    double       cache_write;
} ngx_ailink_default_price_t;


static ngx_ailink_default_price_t  ngx_ailink_default_prices[] = {

    /* OpenAI */
    { "gpt-5",                  1.25,  10.00,  0.125,  0 },
    { "gpt-5-mini",             0.25,   2.00,  0.025,  0 },
    { "gpt-5-nano",             0.05,   0.40,  0.005,  0 },
    { "gpt-4.1",                2.00,   8.00,  0.50,   0 },
    { "gpt-4.1-mini",           0.40,   1.60,  0.10,   0 },
    { "gpt-4.1-nano",           0.10,   0.40,  0.025,  0 },
    { "gpt-4o",                 2.50,  10.00,  1.25,   0 },
    { "gpt-4o-mini",            0.15,   0.60,  0.075,  0 },
    { "gpt-4-turbo",           10.00,  30.00,  0,      0 },
    { "gpt-4",                 30.00,  60.00,  0,      0 },
    { "gpt-3.5-turbo",          0.50,   1.50,  0,      0 },
    { "o1",                    15.00,  60.00,  7.50,   0 },
    { "o1-mini",                1.10,   4.40,  0.55,   0 },
    { "o3",                     2.00,   8.00,  0.50,   0 },
    { "o3-mini",                1.10,   4.40,  0.55,   0 },
    { "o4-mini",                1.10,   4.40,  0.275,  0 },
    /* Realtime API: text token rates (audio tokens cost more: the audit
       record has them apart, see README "Realtime") */
    { "gpt-realtime",           4.00,  16.00,  0.40,   0 },
    { "gpt-realtime-mini",      0.60,   2.40,  0.06,   0 },
    { "gpt-4o-realtime",        5.00,  20.00,  2.50,   0 },
    { "gpt-4o-mini-realtime",   0.60,   2.40,  0.30,   0 },
    { "text-embedding-3-small", 0.02,   0,     0,      0 },
    { "text-embedding-3-large", 0.13,   0,     0,      0 },

    /* Anthropic: cache reads at 0.1x, 5-minute cache writes at 1.25x */
    { "claude-opus-4",         15.00,  75.00,  1.50,  18.75 },
    { "claude-sonnet-4",        3.00,  15.00,  0.30,   3.75 },
    { "claude-haiku-4",         1.00,   5.00,  0.10,   1.25 },
    { "claude-3-7-sonnet",      3.00,  15.00,  0.30,   3.75 },
    { "claude-3-5-sonnet",      3.00,  15.00,  0.30,   3.75 },
    { "claude-3-5-haiku",       0.80,   4.00,  0.08,   1.00 },
    { "claude-3-opus",         15.00,  75.00,  1.50,  18.75 },
    { "claude-3-haiku",         0.25,   1.25,  0.03,   0.30 },

    /* Gemini (prompts up to 200k tokens) */
    { "gemini-2.5-pro",         1.25,  10.00,  0.31,   0 },
    { "gemini-2.5-flash",       0.30,   2.50,  0.075,  0 },
    { "gemini-2.5-flash-lite",  0.10,   0.40,  0.025,  0 },
    { "gemini-2.0-flash",       0.10,   0.40,  0.025,  0 },
    { "gemini-2.0-flash-lite",  0.075,  0.30,  0,      0 },
    { "gemini-1.5-pro",         1.25,   5.00,  0,      0 },
    { "gemini-1.5-flash",       0.075,  0.30,  0,      0 },

    { NULL, 0, 0, 0, 0 }
};


static int ngx_libc_cdecl
ngx_ailink_price_cmp(const void *one, const void *two)
{
    const ngx_ailink_price_t  *a = one, *b = two;

    return (int) b->prefix.len - (int) a->prefix.len;
}


static ngx_ailink_price_t *
ngx_ailink_price_slot(ngx_array_t *prices, u_char *prefix, size_t len)
{
    ngx_uint_t           i;
    ngx_ailink_price_t  *p;

    p = prices->elts;

    for (i = 0; i < prices->nelts; i++) {
        if (p[i].prefix.len == len
            && ngx_strncmp(p[i].prefix.data, prefix, len) == 0)
        {
            return &p[i];
        }
    }

    p = ngx_array_push(prices);
    if (p == NULL) {
        return NULL;
    }

    ngx_memzero(p, sizeof(ngx_ailink_price_t));
    p->prefix.data = prefix;
    p->prefix.len = len;

    return p;
}


static ngx_int_t
ngx_ailink_price_field(ngx_conf_t *cf, cJSON *obj, const char *model,
    const char *key, double *out)
{
    cJSON  *v;

    v = ngx_ailink_json_get(obj, key);

    if (v == NULL) {
        return NGX_OK;
    }

    if (!cJSON_IsNumber(v) || v->valuedouble < 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ailink_config: prices.%s.%s must be a number "
                           "of USD per million tokens", model, key);
        return NGX_ERROR;
    }

    *out = v->valuedouble;

    return NGX_OK;
}


ngx_int_t
ngx_ailink_prices_init(ngx_conf_t *cf, ngx_array_t *prices, cJSON *overrides)
{
    cJSON                       *item, *v;
    ngx_str_t                    name;
    ngx_ailink_price_t          *p;
    ngx_ailink_default_price_t  *d;

    if (ngx_array_init(prices, cf->pool, 64, sizeof(ngx_ailink_price_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (d = ngx_ailink_default_prices; d->prefix; d++) {
        p = ngx_ailink_price_slot(prices, (u_char *) d->prefix,
                                  ngx_strlen(d->prefix));
        if (p == NULL) {
            return NGX_ERROR;
        }

        p->input = d->input;
        p->output = d->output;
        p->cached_input = d->cached_input;
        p->cache_write = d->cache_write;
    }

    if (overrides && !cJSON_IsObject(overrides)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ailink_config: prices must be a mapping of model "
                           "prefix to {input, output, cached_input, "
                           "cache_write}");
        return NGX_ERROR;
    }

    cJSON_ArrayForEach(item, overrides) {

        if (!cJSON_IsObject(item)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "ailink_config: prices.%s must be a mapping",
                               item->string);
            return NGX_ERROR;
        }

        cJSON_ArrayForEach(v, item) {
            if (strcmp(v->string, "input") && strcmp(v->string, "output")
                && strcmp(v->string, "cached_input")
                && strcmp(v->string, "cache_write"))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "ailink_config: prices.%s: unknown key "
                                   "\"%s\"", item->string, v->string);
                return NGX_ERROR;
            }
        }

        name.len = ngx_strlen(item->string);
        name.data = ngx_pstrdup(cf->pool, &(ngx_str_t) {
                                    name.len, (u_char *) item->string });
        if (name.data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_ailink_price_slot(prices, name.data, name.len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (ngx_ailink_price_field(cf, item, item->string, "input", &p->input)
            != NGX_OK
            || ngx_ailink_price_field(cf, item, item->string, "output",
                                      &p->output)
               != NGX_OK
            || ngx_ailink_price_field(cf, item, item->string, "cached_input",
                                      &p->cached_input)
               != NGX_OK
            || ngx_ailink_price_field(cf, item, item->string, "cache_write",
                                      &p->cache_write)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    ngx_qsort(prices->elts, prices->nelts, sizeof(ngx_ailink_price_t),
              ngx_ailink_price_cmp);

    return NGX_OK;
}


/*
 * Cached prompt tokens are part of the prompt count (OpenAI, Gemini) and
 * are charged at the cached rate instead of the input rate; Anthropic's
 * cache tokens are counted separately by the translator and added to the
 * prompt count the same way.  Without a price for a model the cost is 0.
 */

static ngx_ailink_price_t *
ngx_ailink_price_find(ngx_ailink_conf_t *conf, ngx_str_t *model)
{
    ngx_uint_t           i;
    ngx_ailink_price_t  *p;

    p = conf->prices.elts;

    for (i = 0; i < conf->prices.nelts; i++) {
        if (model->len >= p[i].prefix.len
            && ngx_strncmp(model->data, p[i].prefix.data, p[i].prefix.len)
               == 0)
        {
            return &p[i];
        }
    }

    return NULL;
}


static double
ngx_ailink_price_apply(ngx_ailink_price_t *p, ngx_ailink_usage_t *usage)
{
    double      cost;
    ngx_uint_t  plain;

    if (p == NULL) {
        return 0;
    }

    plain = usage->prompt;
    plain -= ngx_min(plain, usage->cached + usage->cache_write);

    cost = plain * p->input
           + usage->cached * (p->cached_input ? p->cached_input : p->input)
           + usage->cache_write * (p->cache_write ? p->cache_write : p->input)
           + usage->completion * p->output;

    return cost / 1000000.0;
}


double
ngx_ailink_cost(ngx_ailink_conf_t *conf, ngx_str_t *model,
    ngx_ailink_usage_t *usage)
{
    return ngx_ailink_price_apply(ngx_ailink_price_find(conf, model), usage);
}


/*
 * The cost of the request's usage so far; the log phase asks more than
 * once (the audit record, spend caps), so the price found for the model
 * is kept in the request's context
 */

double
ngx_ailink_request_cost(ngx_ailink_conf_t *conf, ngx_ailink_ctx_t *ctx)
{
    if (ctx->price_model != ctx->model.data || ctx->price_model == NULL) {
        ctx->price = ngx_ailink_price_find(conf, &ctx->model);
        ctx->price_model = ctx->model.data;
    }

    return ngx_ailink_price_apply(ctx->price, &ctx->usage);
}
