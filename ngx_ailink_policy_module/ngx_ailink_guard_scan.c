
/*
 * Copyright (C) AILink
 *
 * A request body that pii_redaction alone guards is mostly clean: its
 * texts hold nothing any PII pattern could match.  Before the body is
 * parsed into a tree, one pass over the raw JSON glances at each string
 * value where it lies (the glance that picks the patterns worth running,
 * ngx_ailink_guard_pii_worth()); when none is worth a pattern the body
 * goes as it came, without the parse, the walk and the patterns.
 *
 * The pass is also a strict JSON validator, and is only ever an
 * answer "clean" or "in doubt": a body it cannot vouch for (not strict
 * JSON, not an object, nested deeper than it follows, a string with a
 * \u escape, whose decoded text the raw bytes do not show) takes the
 * full path, which parses, redacts or refuses as before.  A simple
 * escape (\n, \", ...) shows the glance nothing its decoded byte would
 * not: none of them is a byte the glance counts.
 */


#include "ngx_ailink_guard.h"


#define NGX_AILINK_GUARD_SCAN_DEPTH   64


/*
 * After the opening quote: the closing one, or NULL (in doubt).  What the
 * gateway's JSON scan refuses (a control byte, a byte that is not UTF-8)
 * is in doubt too, so that the full path refuses it as before.
 */

static u_char *
ngx_ailink_guard_scan_string(u_char *p, u_char *last)
{
    ngx_int_t  n;

    for ( ;; ) {
        p = ngx_ailink_json_ascii_end(p, last);

        if (p == last) {
            return NULL;
        }

        if (*p >= 0x80) {
            n = ngx_ailink_utf8_sequence(p, last);

            if (n < 0) {
                return NULL;
            }

            p += n;
            continue;
        }

        if (*p == '"') {
            return p;
        }

        if (*p < 0x20 || p + 1 == last) {
            return NULL;
        }

        /* a backslash */

        switch (p[1]) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            p += 2;
            break;

        default:
            /* \u: the glance would not see the byte it stands for */
            return NULL;
        }
    }
}


static u_char *
ngx_ailink_guard_scan_ws(u_char *p, u_char *last)
{
    while (p < last
           && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
    {
        p++;
    }

    return p;
}


/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */

static u_char *
ngx_ailink_guard_scan_number(u_char *p, u_char *last)
{
    u_char  *d;

    if (p < last && *p == '-') {
        p++;
    }

    if (p < last && *p == '0') {
        p++;

    } else {
        d = p;

        while (p < last && *p >= '0' && *p <= '9') {
            p++;
        }

        if (p == d) {
            return NULL;
        }
    }

    if (p < last && *p == '.') {
        d = ++p;

        while (p < last && *p >= '0' && *p <= '9') {
            p++;
        }

        if (p == d) {
            return NULL;
        }
    }

    if (p < last && (*p == 'e' || *p == 'E')) {
        p++;

        if (p < last && (*p == '+' || *p == '-')) {
            p++;
        }

        d = p;

        while (p < last && *p >= '0' && *p <= '9') {
            p++;
        }

        if (p == d) {
            return NULL;
        }
    }

    return p;
}


static u_char *
ngx_ailink_guard_scan_literal(u_char *p, u_char *last, const char *word,
    size_t len)
{
    if ((size_t) (last - p) < len || ngx_strncmp(p, word, len) != 0) {
        return NULL;
    }

    return p + len;
}


/*
 * NGX_OK: the body is a JSON object none of whose string values is worth
 * a PII pattern; NGX_DECLINED: it may be, or the pass is in doubt.  With
 * "only", the strings under other top-level members are passed over
 * unread: an answer's texts are all under "choices", and its "model" or
 * "id" hold digits enough to be worth a pattern.
 */

ngx_int_t
ngx_ailink_guard_scan_clean(ngx_ailink_guard_engine_t *engine,
    ngx_str_t *body, ngx_str_t *only)
{
    u_char      *p, *last, *q;
    u_char       stack[NGX_AILINK_GUARD_SCAN_DEPTH];
    ngx_uint_t   depth, glance;

    p = body->data;
    last = p + body->len;
    depth = 0;
    glance = 1;

    p = ngx_ailink_guard_scan_ws(p, last);

    if (p == last || *p != '{') {
        return NGX_DECLINED;
    }

value:

    p = ngx_ailink_guard_scan_ws(p, last);

    if (p == last) {
        return NGX_DECLINED;
    }

    switch (*p) {

    case '{':
    case '[':
        if (depth == NGX_AILINK_GUARD_SCAN_DEPTH) {
            return NGX_DECLINED;
        }

        stack[depth++] = *p++;
        p = ngx_ailink_guard_scan_ws(p, last);

        if (p < last && *p == (stack[depth - 1] == '{' ? '}' : ']')) {
            depth--;
            p++;
            goto next;
        }

        if (stack[depth - 1] == '{') {
            goto key;
        }

        goto value;

    case '"':
        q = ngx_ailink_guard_scan_string(p + 1, last);

        if (q == NULL
            || (glance
                && ngx_ailink_guard_pii_worth(engine, p + 1, q - p - 1)))
        {
            return NGX_DECLINED;
        }

        p = q + 1;
        goto next;

    case 't':
        p = ngx_ailink_guard_scan_literal(p, last, "true", 4);
        break;

    case 'f':
        p = ngx_ailink_guard_scan_literal(p, last, "false", 5);
        break;

    case 'n':
        p = ngx_ailink_guard_scan_literal(p, last, "null", 4);
        break;

    default:
        p = ngx_ailink_guard_scan_number(p, last);
        break;
    }

    if (p == NULL) {
        return NGX_DECLINED;
    }

next:

    if (depth == 0) {
        p = ngx_ailink_guard_scan_ws(p, last);
        return (p == last) ? NGX_OK : NGX_DECLINED;
    }

    p = ngx_ailink_guard_scan_ws(p, last);

    if (p == last) {
        return NGX_DECLINED;
    }

    if (*p == ',') {
        p++;

        if (stack[depth - 1] == '{') {
            goto key;
        }

        goto value;
    }

    if (*p == (stack[depth - 1] == '{' ? '}' : ']')) {
        depth--;
        p++;
        goto next;
    }

    return NGX_DECLINED;

key:

    /* keys are not texts the guardrails read: only passed over */
    p = ngx_ailink_guard_scan_ws(p, last);

    if (p == last || *p != '"') {
        return NGX_DECLINED;
    }

    q = ngx_ailink_guard_scan_string(p + 1, last);

    if (q == NULL) {
        return NGX_DECLINED;
    }

    if (only && depth == 1) {
        /* as written: a key with a \u escape was in doubt already */
        glance = ((size_t) (q - p - 1) == only->len
                  && ngx_memcmp(p + 1, only->data, only->len) == 0);
    }

    p = ngx_ailink_guard_scan_ws(q + 1, last);

    if (p == last || *p != ':') {
        return NGX_DECLINED;
    }

    p++;

    goto value;
}
