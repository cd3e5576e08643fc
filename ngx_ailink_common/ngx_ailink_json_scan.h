
/*
 * Copyright (C) AILink
 *
 * The JSON grammar's pieces, for the readers that check text as they go:
 * the scan, the parse (ngx_ailink_json_scan.c) and the one-pass request
 * translator (ngx_ailink_direct.c).  Each one reads a token at s->p and
 * leaves s->p after it, or returns NGX_ERROR.
 */


#ifndef _NGX_AILINK_JSON_SCAN_H_INCLUDED_
#define _NGX_AILINK_JSON_SCAN_H_INCLUDED_


#include "ngx_ailink_common.h"


#define NGX_AILINK_JSON_MAX_DEPTH  512


typedef struct {
    u_char                    *p;
    u_char                    *last;
    ngx_uint_t                 depth;
    ngx_uint_t                 escaped;    /* the last string's escapes */
    ngx_uint_t                 nul;        /* ... and one was "\u0000" */
} ngx_ailink_scan_t;


/*
 * What escapes the last string had: only those the printer writes the
 * same way (\" \\ \b \f \n \r \t), or also "\/" or "\u...", which it
 * writes otherwise ("/", UTF-8): a text with none of the latter is
 * printed as it was read.
 */

#define NGX_AILINK_SCAN_ESCAPED  0x01
#define NGX_AILINK_SCAN_REWRITE  0x02


#define ngx_ailink_json_space(c)                                              \
    ((c) == ' ' || (c) == '\t' || (c) == '\n' || (c) == '\r')


/* compact JSON has no whitespace: one test is the usual cost */

static ngx_inline void
ngx_ailink_scan_space(ngx_ailink_scan_t *s)
{
    u_char  *p;

    for (p = s->p;
         p < s->last && *p <= ' ' && ngx_ailink_json_space(*p);
         p++)
    {
        /* void */
    }

    s->p = p;
}


/*
 * Strings must be UTF-8 (RFC 8259, section 8.1): a body that is not is
 * refused on every route alike, the OpenAI pass-through included, rather
 * than forwarded to a provider that would refuse it or translated into
 * text that changed.
 */

static ngx_inline ngx_int_t
ngx_ailink_scan_string(ngx_ailink_scan_t *s)
{
    u_char      *p, *last;
    ngx_int_t    n;
    ngx_uint_t   i;

    /* at the opening quote; a local cursor keeps the hot loop tight */
    p = s->p + 1;
    last = s->last;
    s->escaped = 0;

    for ( ;; ) {

        p = ngx_ailink_json_ascii_end(p, last);

        if (p == last) {
            return NGX_ERROR;
        }

        if (*p >= 0x80) {
            /* a run of non-ASCII text: one sequence after another */
            do {
                n = ngx_ailink_utf8_sequence(p, last);

                if (n < 0) {
                    return NGX_ERROR;
                }

                p += n;

            } while (p < last && *p >= 0x80);

            continue;
        }

        if (*p < 0x20) {
            return NGX_ERROR;
        }

        if (*p == '"') {
            s->p = p + 1;
            return NGX_OK;
        }

        /* a backslash */

        s->escaped |= NGX_AILINK_SCAN_ESCAPED;

        if (++p == last) {
            return NGX_ERROR;
        }

        switch (*p) {
        case '"': case '\\': case 'b': case 'f': case 'n': case 'r': case 't':
            p++;
            break;

        case '/':
            s->escaped |= NGX_AILINK_SCAN_REWRITE;
            p++;
            break;

        case 'u':
            s->escaped |= NGX_AILINK_SCAN_REWRITE;

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


static ngx_inline ngx_uint_t
ngx_ailink_scan_digits(ngx_ailink_scan_t *s)
{
    u_char  *start;

    for (start = s->p; s->p < s->last && *s->p >= '0' && *s->p <= '9'; s->p++)
    {
        /* void */
    }

    return s->p - start;
}


static ngx_inline ngx_int_t
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


/* true, false or null, told by the first byte */

static ngx_inline ngx_int_t
ngx_ailink_scan_literal(ngx_ailink_scan_t *s)
{
    ngx_str_t         *word;
    static ngx_str_t   words[] = {
        ngx_string("true"), ngx_string("false"), ngx_string("null")
    };

    word = (*s->p == 't') ? &words[0] : (*s->p == 'f') ? &words[1] : &words[2];

    if ((size_t) (s->last - s->p) < word->len
        || ngx_strncmp(s->p, word->data, word->len) != 0)
    {
        return NGX_ERROR;
    }

    s->p += word->len;

    return NGX_OK;
}


u_char *ngx_ailink_json_unescape(u_char **pp, u_char *last, u_char *dst);
ngx_int_t ngx_ailink_scan_skip(ngx_ailink_scan_t *s);


#endif /* _NGX_AILINK_JSON_SCAN_H_INCLUDED_ */
