
/*
 * Copyright (C) AILink
 *
 * An incremental reader of WebSocket frames (RFC 6455), for a tap on a
 * proxied stream: it is fed the bytes as they pass, in whatever pieces
 * they arrive, never changes or holds them, and hands over the text
 * messages it was asked to keep.
 */


#ifndef _NGX_AILINK_WS_H_INCLUDED_
#define _NGX_AILINK_WS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_AILINK_WS_CONT     0x0
#define NGX_AILINK_WS_TEXT     0x1
#define NGX_AILINK_WS_BINARY   0x2
#define NGX_AILINK_WS_CLOSE    0x8
#define NGX_AILINK_WS_PING     0x9
#define NGX_AILINK_WS_PONG     0xa


typedef void (*ngx_ailink_ws_message_pt)(void *data, ngx_str_t *text);


typedef struct {
    u_char                      header[14];
    size_t                      header_len;     /* header bytes so far */
    uint64_t                    remaining;      /* payload still to come */
    u_char                      mask[4];
    ngx_uint_t                  mask_pos;
    ngx_uint_t                  opcode;         /* the frame's */

    /* the text message being kept, in memory that grows up to max */
    u_char                     *buf;
    size_t                      len;
    size_t                      size;
    size_t                      max;
    ngx_pool_t                 *pool;

    /*
     * With type set, a message that begins {"type":"<other>" is let
     * pass unkept as soon as that much of it is seen; any other message
     * is kept whole (up to max) and the handler decides.
     */
    ngx_str_t                   type;

    ngx_ailink_ws_message_pt    handler;
    void                       *data;

    ngx_uint_t                  frames;
    ngx_uint_t                  messages;       /* data messages */
    ngx_uint_t                  unread;         /* text messages over max
                                                   or compressed */
    const char                 *error;          /* why reading stopped */

    unsigned                    in_frame:1;     /* header read */
    unsigned                    fin:1;
    unsigned                    masked:1;
    unsigned                    in_message:1;   /* a data message is open */
    unsigned                    keep:1;         /* its bytes are kept */
    unsigned                    decided:1;      /* its type was looked at */
    unsigned                    broken:1;       /* not a WebSocket stream */
} ngx_ailink_ws_t;


void ngx_ailink_ws_init(ngx_ailink_ws_t *ws, ngx_pool_t *pool, size_t max,
    ngx_str_t *type, ngx_ailink_ws_message_pt handler, void *data);

/*
 * NGX_OK; NGX_DECLINED once the bytes are not a WebSocket stream (ws->error
 * says why; later calls do nothing); NGX_ERROR when memory ran out.
 */
ngx_int_t ngx_ailink_ws_feed(ngx_ailink_ws_t *ws, u_char *p, u_char *last);


#endif /* _NGX_AILINK_WS_H_INCLUDED_ */
