
/*
 * Copyright (C) AILink
 *
 * JSON helpers: string escaping for records we write by hand, and small
 * conveniences over cJSON for what we parse.
 */


#include "ngx_ailink_common.h"


/*
 * cJSON allocates through hooks.  While an arena is open, trees come from
 * a request pool and free() does nothing: the pool releases them all at
 * once.  An arena is opened only around work that builds and drops its
 * trees in one go (translating a request or a whole response), never
 * around a stream, whose memory must not grow with its length.
 */

static ngx_pool_t  *ngx_ailink_json_pool;


static void *
ngx_ailink_json_malloc(size_t size)
{
    if (ngx_ailink_json_pool) {
        return ngx_palloc(ngx_ailink_json_pool, size);
    }

    return malloc(size);
}


static void
ngx_ailink_json_free(void *p)
{
    if (ngx_ailink_json_pool == NULL) {
        free(p);
    }
}


void
ngx_ailink_json_init(void)
{
    cJSON_Hooks  hooks = { ngx_ailink_json_malloc, ngx_ailink_json_free };

    cJSON_InitHooks(&hooks);
}


void
ngx_ailink_json_arena(ngx_pool_t *pool)
{
    ngx_ailink_json_pool = pool;
}


static ngx_inline ngx_uint_t
ngx_ailink_json_needs_escape(u_char c)
{
    return c < 0x20 || c == '"' || c == '\\' || c == 0x7f;
}


size_t
ngx_ailink_json_escape_len(ngx_str_t *s)
{
    size_t   len;
    u_char  *p, *last;

    len = s->len;

    for (p = s->data, last = p + s->len; p < last; p++) {
        if (ngx_ailink_json_needs_escape(*p)) {
            len += 5;   /* worst case: \u00XX */
        }
    }

    return len;
}


u_char *
ngx_ailink_json_escape(u_char *dst, ngx_str_t *s)
{
    u_char         c, *p, *last;
    static u_char  hex[] = "0123456789abcdef";

    for (p = s->data, last = p + s->len; p < last; p++) {
        c = *p;

        if (!ngx_ailink_json_needs_escape(c)) {
            *dst++ = c;
            continue;
        }

        *dst++ = '\\';

        switch (c) {
        case '"':
        case '\\':
            *dst++ = c;
            break;
        case '\n':
            *dst++ = 'n';
            break;
        case '\r':
            *dst++ = 'r';
            break;
        case '\t':
            *dst++ = 't';
            break;
        default:
            *dst++ = 'u';
            *dst++ = '0';
            *dst++ = '0';
            *dst++ = hex[c >> 4];
            *dst++ = hex[c & 0xf];
        }
    }

    return dst;
}


cJSON *
ngx_ailink_json_parse(ngx_str_t *text)
{
    return cJSON_ParseWithLengthOpts((const char *) text->data, text->len,
                                     NULL, 0);
}


/* serializes into the pool; the cJSON tree stays the caller's */

ngx_int_t
ngx_ailink_json_to_str(ngx_pool_t *pool, cJSON *json, ngx_str_t *out)
{
    char  *s;

    s = cJSON_PrintUnformatted(json);
    if (s == NULL) {
        return NGX_ERROR;
    }

    out->len = ngx_strlen(s);
    out->data = ngx_pnalloc(pool, out->len);

    if (out->data == NULL) {
        cJSON_free(s);
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, s, out->len);
    cJSON_free(s);

    return NGX_OK;
}


/*
 * A count from a provider (tokens, a status code): a non-negative number,
 * clamped, since a cast of a double beyond the integer range is undefined.
 * NGX_DECLINED when the key holds no number.
 */

#define NGX_AILINK_JSON_COUNT_MAX  1e12

ngx_int_t
ngx_ailink_json_count(cJSON *obj, const char *key, ngx_uint_t *value)
{
    cJSON  *item;
    double  d;

    item = cJSON_GetObjectItemCaseSensitive(obj, key);

    if (!cJSON_IsNumber(item)) {
        return NGX_DECLINED;
    }

    d = item->valuedouble;

    if (!(d > 0)) {
        /* negative and NaN alike */
        d = 0;

    } else if (d > NGX_AILINK_JSON_COUNT_MAX) {
        d = NGX_AILINK_JSON_COUNT_MAX;
    }

    *value = (ngx_uint_t) d;

    return NGX_OK;
}


ngx_uint_t
ngx_ailink_json_uint(cJSON *obj, const char *key)
{
    ngx_uint_t  n;

    return ngx_ailink_json_count(obj, key, &n) == NGX_OK ? n : 0;
}


/* an OpenAI usage object: {"prompt_tokens", "completion_tokens", ...} */

void
ngx_ailink_openai_usage(ngx_ailink_usage_t *usage, cJSON *u)
{
    if (!cJSON_IsObject(u)) {
        return;
    }

    usage->prompt = ngx_ailink_json_uint(u, "prompt_tokens");
    usage->completion = ngx_ailink_json_uint(u, "completion_tokens");
    usage->total = ngx_ailink_json_uint(u, "total_tokens");

    if (usage->total == 0) {
        usage->total = usage->prompt + usage->completion;
    }

    usage->cached = ngx_ailink_json_uint(
        cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens_details"),
        "cached_tokens");

    usage->known = 1;
}


/* an OpenAI response or chunk: {"usage": {...}} */

void
ngx_ailink_usage_from_openai(ngx_ailink_usage_t *usage, cJSON *json)
{
    ngx_ailink_openai_usage(usage,
                            cJSON_GetObjectItemCaseSensitive(json, "usage"));
}
