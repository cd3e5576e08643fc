
/*
 * Copyright (C) AILink
 *
 * A validating scan of a JSON object that builds no tree.  Requests and
 * responses that pass through unchanged only need a few top-level fields
 * ("model", "stream", "usage"); building and freeing a cJSON tree of the
 * whole body for them cost several times what nginx spends on the request.
 * The scan checks the whole text is JSON (RFC 8259 grammar, nesting
 * bounded) and returns the raw text of the fields asked for; callers parse
 * just those with cJSON when they need more than a string.
 */


#include "ngx_ailink_common.h"


#define NGX_AILINK_JSON_MAX_DEPTH  512


typedef struct {
    u_char                    *p;
    u_char                    *last;
    ngx_uint_t                 depth;
} ngx_ailink_scan_t;


static ngx_int_t ngx_ailink_scan_value(ngx_ailink_scan_t *s);


static void
ngx_ailink_scan_space(ngx_ailink_scan_t *s)
{
    while (s->p < s->last
           && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n'
               || *s->p == '\r'))
    {
        s->p++;
    }
}


/* bytes that end a plain run inside a string: '"', '\\', controls */
static u_char  ngx_ailink_scan_special[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0
    /* the rest: 0 */
};


/*
 * Eight bytes at a time: whether any is '"', '\\' or below 0x20.  The
 * tests are exact for "some byte is" (see "Bit Twiddling Hacks", determine
 * if a word has a byte less than n), so a hit means the byte loop below
 * stops within these eight bytes.
 */

#define NGX_AILINK_ONES    0x0101010101010101ULL
#define NGX_AILINK_HIGHS   0x8080808080808080ULL
#define ngx_ailink_has_less(x, n)                                             \
    (((x) - NGX_AILINK_ONES * (n)) & ~(x) & NGX_AILINK_HIGHS)

static ngx_inline ngx_uint_t
ngx_ailink_scan_special8(u_char *p)
{
    uint64_t  v, q, b;

    ngx_memcpy(&v, p, sizeof(uint64_t));

    q = v ^ (NGX_AILINK_ONES * '"');
    b = v ^ (NGX_AILINK_ONES * '\\');

    return (ngx_ailink_has_less(q, 1) | ngx_ailink_has_less(b, 1)
            | ngx_ailink_has_less(v, 0x20)) != 0;
}


static ngx_int_t
ngx_ailink_scan_string(ngx_ailink_scan_t *s)
{
    u_char      *p, *last;
    ngx_uint_t   i;

    /* at the opening quote; a local cursor keeps the hot loop tight */
    p = s->p + 1;
    last = s->last;

    for ( ;; ) {

        while (last - p >= 8 && !ngx_ailink_scan_special8(p)) {
            p += 8;
        }

        while (p < last && !ngx_ailink_scan_special[*p]) {
            p++;
        }

        if (p == last || *p < 0x20) {
            return NGX_ERROR;
        }

        if (*p == '"') {
            s->p = p + 1;
            return NGX_OK;
        }

        /* a backslash */

        if (++p == last) {
            return NGX_ERROR;
        }

        switch (*p) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n':
        case 'r': case 't':
            p++;
            break;

        case 'u':
            if (last - p < 5) {
                return NGX_ERROR;
            }

            for (i = 1; i < 5; i++) {
                if (ngx_hextoi(&p[i], 1) == NGX_ERROR) {
                    return NGX_ERROR;
                }
            }

            p += 5;
            break;

        default:
            return NGX_ERROR;
        }
    }
}


static ngx_uint_t
ngx_ailink_scan_digits(ngx_ailink_scan_t *s)
{
    u_char  *start;

    for (start = s->p; s->p < s->last && *s->p >= '0' && *s->p <= '9'; s->p++)
    {
        /* void */
    }

    return s->p - start;
}


static ngx_int_t
ngx_ailink_scan_number(ngx_ailink_scan_t *s)
{
    if (*s->p == '-') {
        s->p++;
    }

    if (s->p < s->last && *s->p == '0') {
        s->p++;

    } else if (ngx_ailink_scan_digits(s) == 0) {
        return NGX_ERROR;
    }

    if (s->p < s->last && *s->p == '.') {
        s->p++;

        if (ngx_ailink_scan_digits(s) == 0) {
            return NGX_ERROR;
        }
    }

    if (s->p < s->last && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;

        if (s->p < s->last && (*s->p == '+' || *s->p == '-')) {
            s->p++;
        }

        if (ngx_ailink_scan_digits(s) == 0) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_scan_literal(ngx_ailink_scan_t *s, const char *word, size_t len)
{
    if ((size_t) (s->last - s->p) < len
        || ngx_strncmp(s->p, word, len) != 0)
    {
        return NGX_ERROR;
    }

    s->p += len;

    return NGX_OK;
}


/* an array or an object, its members scanned; at the opening bracket */

static ngx_int_t
ngx_ailink_scan_container(ngx_ailink_scan_t *s, ngx_ailink_json_field_t *f,
    ngx_uint_t n)
{
    u_char      close, *key;
    size_t      len;
    ngx_uint_t  i, object;

    object = (*s->p == '{');
    close = object ? '}' : ']';

    if (++s->depth > NGX_AILINK_JSON_MAX_DEPTH) {
        return NGX_ERROR;
    }

    s->p++;
    ngx_ailink_scan_space(s);

    if (s->p < s->last && *s->p == close) {
        s->p++;
        s->depth--;
        return NGX_OK;
    }

    for ( ;; ) {
        key = NULL;
        len = 0;

        if (object) {
            if (s->p == s->last || *s->p != '"') {
                return NGX_ERROR;
            }

            key = s->p + 1;

            if (ngx_ailink_scan_string(s) != NGX_OK) {
                return NGX_ERROR;
            }

            len = s->p - 1 - key;

            ngx_ailink_scan_space(s);

            if (s->p == s->last || *s->p != ':') {
                return NGX_ERROR;
            }

            s->p++;
            ngx_ailink_scan_space(s);
        }

        if (s->p == s->last) {
            return NGX_ERROR;
        }

        /* top-level members only: the fields callers ask for */
        for (i = 0; key && s->depth == 1 && i < n; i++) {
            if (f[i].key.len == len
                && ngx_strncmp(f[i].key.data, key, len) == 0)
            {
                f[i].value.data = s->p;
                break;
            }
        }

        if (ngx_ailink_scan_value(s) != NGX_OK) {
            return NGX_ERROR;
        }

        if (key && s->depth == 1 && i < n) {
            /* the last of duplicate keys wins, as in most parsers */
            f[i].value.len = s->p - f[i].value.data;
        }

        ngx_ailink_scan_space(s);

        if (s->p == s->last) {
            return NGX_ERROR;
        }

        if (*s->p == close) {
            s->p++;
            s->depth--;
            return NGX_OK;
        }

        if (*s->p != ',') {
            return NGX_ERROR;
        }

        s->p++;
        ngx_ailink_scan_space(s);
    }
}


static ngx_int_t
ngx_ailink_scan_value(ngx_ailink_scan_t *s)
{
    switch (*s->p) {

    case '{':
    case '[':
        return ngx_ailink_scan_container(s, NULL, 0);

    case '"':
        return ngx_ailink_scan_string(s);

    case 't':
        return ngx_ailink_scan_literal(s, "true", 4);

    case 'f':
        return ngx_ailink_scan_literal(s, "false", 5);

    case 'n':
        return ngx_ailink_scan_literal(s, "null", 4);

    default:
        return ngx_ailink_scan_number(s);
    }
}


/*
 * NGX_OK when the text is one JSON object; the fields found get the raw
 * text of their values (a missing field keeps value.len == 0).
 */

ngx_int_t
ngx_ailink_json_scan(ngx_str_t *text, ngx_ailink_json_field_t *fields,
    ngx_uint_t n)
{
    ngx_uint_t         i;
    ngx_ailink_scan_t  s;

    for (i = 0; i < n; i++) {
        ngx_str_null(&fields[i].value);
    }

    s.p = text->data;
    s.last = text->data + text->len;
    s.depth = 0;

    ngx_ailink_scan_space(&s);

    if (s.p == s.last || *s.p != '{') {
        return NGX_ERROR;
    }

    if (ngx_ailink_scan_container(&s, fields, n) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_ailink_scan_space(&s);

    return s.p == s.last ? NGX_OK : NGX_ERROR;
}


/* a scanned string value without escapes, as it is; else NGX_DECLINED */

ngx_int_t
ngx_ailink_json_plain_string(ngx_str_t *value, ngx_str_t *out)
{
    if (value->len < 2 || value->data[0] != '"'
        || ngx_strlchr(value->data, value->data + value->len, '\\'))
    {
        return NGX_DECLINED;
    }

    out->data = value->data + 1;
    out->len = value->len - 2;

    return NGX_OK;
}
