
/*
 * Copyright (C) AILink
 *
 * An incremental text/event-stream parser.  Bytes arrive split anywhere:
 * inside a line, inside a UTF-8 character, several events per buffer.  A
 * line that spans buffers is carried over; the event being assembled is
 * kept until its blank line.  Every carried piece is bounded by "max", so
 * a stream costs the same memory whatever its length; an event larger than
 * that is dropped instead of growing memory, and counted in sse->oversized
 * as soon as it is found too large, for the caller to say so.
 */


#include "ngx_ailink_common.h"


ngx_int_t
ngx_ailink_sse_init(ngx_ailink_sse_t *sse, ngx_pool_t *pool, size_t max,
    ngx_ailink_sse_event_pt handler, void *data)
{
    ngx_memzero(sse, sizeof(ngx_ailink_sse_t));

    sse->pool = pool;
    sse->max = max;
    sse->handler = handler;
    sse->handler_data = data;

    return NGX_OK;
}


/* appends to a buffer that grows geometrically up to sse->max */

static ngx_int_t
ngx_ailink_sse_append(ngx_ailink_sse_t *sse, ngx_str_t *buf, size_t *size,
    u_char *p, size_t len)
{
    u_char  *n;
    size_t   want;

    if (buf->len + len > sse->max) {
        if (!sse->overflow) {
            sse->overflow = 1;
            sse->oversized++;
        }

        return NGX_DECLINED;
    }

    if (buf->len + len > *size) {
        want = ngx_max(*size * 2, 256);

        while (want < buf->len + len) {
            want *= 2;
        }

        want = ngx_min(want, sse->max);

        n = ngx_pnalloc(sse->pool, want);
        if (n == NULL) {
            return NGX_ERROR;
        }

        if (buf->len) {
            ngx_memcpy(n, buf->data, buf->len);
        }

        buf->data = n;
        *size = want;
    }

    if (len) {
        ngx_memcpy(buf->data + buf->len, p, len);
    }

    buf->len += len;

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_sse_line(ngx_ailink_sse_t *sse, u_char *p, size_t len)
{
    u_char    *colon, *value, *last;
    size_t     nlen;
    ngx_int_t  rc;

    if (len == 0) {
        /* a blank line ends the event */

        if (!sse->overflow && (sse->data.len || sse->event.len)) {
            sse->handler(sse->handler_data, &sse->event, &sse->data);
        }

        sse->event.len = 0;
        sse->data.len = 0;
        sse->overflow = 0;

        return NGX_OK;
    }

    if (sse->overflow || p[0] == ':') {
        return NGX_OK;
    }

    last = p + len;
    colon = ngx_strlchr(p, last, ':');

    if (colon) {
        nlen = colon - p;
        value = colon + 1;

        if (value < last && *value == ' ') {
            value++;
        }

    } else {
        nlen = len;
        value = last;
    }

    if (nlen == 4 && ngx_strncmp(p, "data", 4) == 0) {

        if (sse->data.len) {
            rc = ngx_ailink_sse_append(sse, &sse->data, &sse->data_size,
                                       (u_char *) "\n", 1);
            if (rc != NGX_OK) {
                return rc == NGX_ERROR ? NGX_ERROR : NGX_OK;
            }
        }

        rc = ngx_ailink_sse_append(sse, &sse->data, &sse->data_size,
                                   value, last - value);

        return rc == NGX_ERROR ? NGX_ERROR : NGX_OK;
    }

    if (nlen == 5 && ngx_strncmp(p, "event", 5) == 0) {
        sse->event.len = 0;

        rc = ngx_ailink_sse_append(sse, &sse->event, &sse->event_size,
                                   value, last - value);

        return rc == NGX_ERROR ? NGX_ERROR : NGX_OK;
    }

    /* "id", "retry" and unknown fields carry nothing we use */

    return NGX_OK;
}


ngx_int_t
ngx_ailink_sse_feed(ngx_ailink_sse_t *sse, u_char *p, u_char *last)
{
    u_char     *eol;
    ngx_int_t   rc;

    while (p < last) {

        /* "\r\n" split across two buffers */
        if (sse->skip_lf) {
            sse->skip_lf = 0;

            if (*p == '\n') {
                p++;
                continue;
            }
        }

        for (eol = p; eol < last && *eol != '\n' && *eol != '\r'; eol++) {
            /* void */
        }

        if (sse->skip_line) {
            /* the rest of a line too long to carry: its end ends it, it
             * is not a blank line of its own */

            if (eol == last) {
                return NGX_OK;
            }

            sse->skip_line = 0;
            rc = NGX_OK;

        } else if (eol == last) {
            /* an incomplete line: carry it over, bounded */
            rc = ngx_ailink_sse_append(sse, &sse->line, &sse->line_size,
                                       p, last - p);

            if (rc == NGX_DECLINED) {
                sse->line.len = 0;
                sse->skip_line = 1;
            }

            return rc == NGX_ERROR ? NGX_ERROR : NGX_OK;

        } else if (sse->line.len) {
            rc = ngx_ailink_sse_append(sse, &sse->line, &sse->line_size,
                                       p, eol - p);
            if (rc == NGX_ERROR) {
                return NGX_ERROR;
            }

            rc = ngx_ailink_sse_line(sse, sse->line.data, sse->line.len);
            sse->line.len = 0;

        } else {
            rc = ngx_ailink_sse_line(sse, p, eol - p);
        }

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (*eol == '\r') {
            if (eol + 1 == last) {
                sse->skip_lf = 1;

            } else if (eol[1] == '\n') {
                eol++;
            }
        }

        p = eol + 1;
    }

    return NGX_OK;
}
