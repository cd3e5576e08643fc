
/*
 * Copyright (C) AILink
 *
 * WebSocket frames read as they pass (RFC 6455, section 5).  The state is
 * the header being collected (at most 14 bytes), what is left of the
 * current frame's payload, and the one text message being kept, which is
 * bounded by "max": a frame split across reads, a message fragmented
 * across frames and control frames between its fragments all cost nothing
 * more.  Frames of a server are not masked; a masked one is unmasked for
 * reading all the same.  A message compressed by an extension (RSV1) is
 * counted unread: the gateway does not let the extension be negotiated.
 */


#include "ngx_ailink_ws.h"


#define NGX_AILINK_WS_TYPE_PREFIX  "{\"type\":\""


void
ngx_ailink_ws_init(ngx_ailink_ws_t *ws, ngx_pool_t *pool, size_t max,
    ngx_str_t *type, ngx_ailink_ws_message_pt handler, void *data)
{
    ngx_memzero(ws, sizeof(ngx_ailink_ws_t));

    ws->pool = pool;
    ws->max = max;
    ws->handler = handler;
    ws->data = data;

    if (type) {
        ws->type = *type;
    }
}


static ngx_int_t
ngx_ailink_ws_fail(ngx_ailink_ws_t *ws, const char *why)
{
    ws->broken = 1;
    ws->error = why;

    return NGX_DECLINED;
}


/* the whole header's length, once its first two bytes are in */

static size_t
ngx_ailink_ws_header_size(ngx_ailink_ws_t *ws)
{
    size_t      size;
    ngx_uint_t  len7;

    len7 = ws->header[1] & 0x7f;

    size = 2 + ((len7 == 126) ? 2 : (len7 == 127) ? 8 : 0);

    if (ws->header[1] & 0x80) {
        size += 4;
    }

    return size;
}


static ngx_int_t
ngx_ailink_ws_header(ngx_ailink_ws_t *ws)
{
    u_char      *h, rsv;
    uint64_t     len;
    ngx_uint_t   i, len7, op;

    h = ws->header;

    ws->fin = (h[0] & 0x80) ? 1 : 0;
    rsv = h[0] & 0x70;
    op = h[0] & 0x0f;
    ws->masked = (h[1] & 0x80) ? 1 : 0;
    len7 = h[1] & 0x7f;

    i = 2;

    if (len7 == 126) {
        len = ((uint64_t) h[2] << 8) | h[3];
        i = 4;

    } else if (len7 == 127) {
        if (h[2] & 0x80) {
            return ngx_ailink_ws_fail(ws, "a frame length with its top bit "
                                          "set");
        }

        len = 0;

        for (i = 2; i < 10; i++) {
            len = (len << 8) | h[i];
        }

    } else {
        len = len7;
    }

    if (ws->masked) {
        ngx_memcpy(ws->mask, &h[i], 4);
    }

    ws->mask_pos = 0;

    if (op >= NGX_AILINK_WS_CLOSE) {

        if (op > NGX_AILINK_WS_PONG) {
            return ngx_ailink_ws_fail(ws, "a reserved control opcode");
        }

        if (!ws->fin || len > 125) {
            return ngx_ailink_ws_fail(ws, "a fragmented or long control "
                                          "frame");
        }

    } else if (op == NGX_AILINK_WS_CONT) {

        if (!ws->in_message) {
            return ngx_ailink_ws_fail(ws, "a continuation frame outside a "
                                          "message");
        }

    } else if (op == NGX_AILINK_WS_TEXT || op == NGX_AILINK_WS_BINARY) {

        if (ws->in_message) {
            return ngx_ailink_ws_fail(ws, "a new message inside a "
                                          "fragmented one");
        }

        ws->in_message = 1;
        ws->decided = 0;
        ws->len = 0;
        ws->keep = 0;

        if (op == NGX_AILINK_WS_TEXT) {
            if (rsv & 0x40) {
                /* permessage-deflate: not readable here */
                ws->unread++;

            } else {
                ws->keep = (ws->handler != NULL);
            }
        }

    } else {
        return ngx_ailink_ws_fail(ws, "a reserved data opcode");
    }

    ws->opcode = op;
    ws->remaining = len;
    ws->in_frame = 1;
    ws->frames++;

    return NGX_OK;
}


/* whether a kept message is one of the type asked for, when it can tell */

static void
ngx_ailink_ws_decide(ngx_ailink_ws_t *ws, ngx_uint_t last)
{
    size_t  pre, need;

    pre = sizeof(NGX_AILINK_WS_TYPE_PREFIX) - 1;
    need = pre + ws->type.len + 1;

    if (ws->len < need && !last) {
        return;
    }

    ws->decided = 1;

    if (ws->len < pre
        || ngx_memcmp(ws->buf, NGX_AILINK_WS_TYPE_PREFIX, pre) != 0)
    {
        /* another layout: kept whole, the handler looks */
        return;
    }

    if (ws->len < need
        || ngx_memcmp(ws->buf + pre, ws->type.data, ws->type.len) != 0
        || ws->buf[pre + ws->type.len] != '"')
    {
        ws->keep = 0;
    }
}


static ngx_int_t
ngx_ailink_ws_keep(ngx_ailink_ws_t *ws, u_char *p, size_t n)
{
    u_char      *nb, *d;
    size_t       size, i;

    if (ws->len + n > ws->max) {
        ws->keep = 0;
        ws->unread++;
        return NGX_OK;
    }

    if (ws->len + n > ws->size) {
        size = ngx_max(ngx_max(2 * ws->size, ws->len + n), 4096);
        size = ngx_min(size, ws->max);

        nb = ngx_pnalloc(ws->pool, size);
        if (nb == NULL) {
            return NGX_ERROR;
        }

        if (ws->len) {
            ngx_memcpy(nb, ws->buf, ws->len);
        }

        ws->buf = nb;
        ws->size = size;
    }

    d = ws->buf + ws->len;

    if (ws->masked) {
        for (i = 0; i < n; i++) {
            d[i] = p[i] ^ ws->mask[ws->mask_pos++ & 3];
        }

    } else {
        ngx_memcpy(d, p, n);
    }

    ws->len += n;

    if (ws->type.len && !ws->decided) {
        ngx_ailink_ws_decide(ws, 0);
    }

    return NGX_OK;
}


static void
ngx_ailink_ws_frame_end(ngx_ailink_ws_t *ws)
{
    ngx_str_t  text;

    ws->in_frame = 0;
    ws->header_len = 0;

    if (ws->opcode >= NGX_AILINK_WS_CLOSE || !ws->fin) {
        return;
    }

    /* the last frame of a data message */

    ws->in_message = 0;
    ws->messages++;

    if (ws->keep && ws->type.len && !ws->decided) {
        ngx_ailink_ws_decide(ws, 1);
    }

    if (ws->keep) {
        ws->keep = 0;
        text.data = ws->buf;
        text.len = ws->len;
        ws->handler(ws->data, &text);
    }
}


ngx_int_t
ngx_ailink_ws_feed(ngx_ailink_ws_t *ws, u_char *p, u_char *last)
{
    size_t  need, n;

    while (p < last) {

        if (ws->broken) {
            return NGX_DECLINED;
        }

        if (!ws->in_frame) {
            need = (ws->header_len < 2) ? 2 : ngx_ailink_ws_header_size(ws);

            n = ngx_min(need - ws->header_len, (size_t) (last - p));
            ngx_memcpy(ws->header + ws->header_len, p, n);
            ws->header_len += n;
            p += n;

            if (ws->header_len < need
                || (need == 2 && ngx_ailink_ws_header_size(ws) > 2))
            {
                continue;
            }

            if (ngx_ailink_ws_header(ws) != NGX_OK) {
                return NGX_DECLINED;
            }

            if (ws->remaining == 0) {
                ngx_ailink_ws_frame_end(ws);
            }

            continue;
        }

        n = (size_t) ngx_min(ws->remaining, (uint64_t) (last - p));

        if (ws->keep && ws->opcode < NGX_AILINK_WS_CLOSE) {
            if (ngx_ailink_ws_keep(ws, p, n) != NGX_OK) {
                return NGX_ERROR;
            }

        } else if (ws->masked) {
            ws->mask_pos += n;
        }

        p += n;
        ws->remaining -= n;

        if (ws->remaining == 0) {
            ngx_ailink_ws_frame_end(ws);
        }
    }

    return ws->broken ? NGX_DECLINED : NGX_OK;
}
