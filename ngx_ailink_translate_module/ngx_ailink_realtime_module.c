
/*
 * Copyright (C) AILink
 *
 * GET /v1/realtime?model=...: the Realtime API's WebSocket through the
 * gateway.  The upgrade request is authenticated like any other (the
 * token as "Authorization: Bearer", or, from browsers, which cannot set
 * headers on a WebSocket, as the Sec-WebSocket-Protocol entry
 * "openai-insecure-api-key.<token>", which is never forwarded), routed by
 * its model to an OpenAI-compatible provider, given the real credential
 * and proxied by nginx's own upgrade support ($ailink_upgrade and
 * $ailink_connection give the proxy its Upgrade and Connection headers).
 *
 * Once the provider answers 101, nginx copies bytes both ways itself
 * (ngx_http_upstream_process_upgraded), calling each connection's recv().
 * The tap wraps those two recv() pointers: the bytes are counted each way
 * and the provider's frames are read as they pass, for the usage of its
 * "response.done" events, without holding or changing a byte.  The
 * session is audited as one record when it closes.
 */


#include "ngx_ailink_translate.h"
#include "ngx_ailink_ws.h"


#define NGX_AILINK_REALTIME_PATH         "/v1/realtime"
#define NGX_AILINK_REALTIME_KEY_PROTO    "openai-insecure-api-key."


typedef struct {
    ngx_http_request_t         *request;
    ngx_connection_t           *client;
    ngx_connection_t           *upstream;
    ngx_recv_pt                 client_recv;
    ngx_recv_pt                 upstream_recv;

    ngx_msec_t                  start;          /* the 101 */
    off_t                       from_client;
    off_t                       from_upstream;
    ngx_uint_t                  responses;      /* response.done events */
    ngx_uint_t                  usage_events;   /* ... with a usage */
    ngx_uint_t                  audio_in;       /* tokens, of the usage */
    ngx_uint_t                  audio_out;

    ngx_ailink_ws_t             ws;             /* provider → client */
    unsigned                    reported:1;     /* stream errors logged */
} ngx_ailink_realtime_t;


static ngx_int_t ngx_ailink_realtime_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_ailink_realtime_tap(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx);
static ssize_t ngx_ailink_realtime_client_recv(ngx_connection_t *c,
    u_char *buf, size_t size);
static ssize_t ngx_ailink_realtime_upstream_recv(ngx_connection_t *c,
    u_char *buf, size_t size);
static void ngx_ailink_realtime_read(ngx_ailink_realtime_t *rt, u_char *p,
    u_char *last);
static void ngx_ailink_realtime_message(void *data, ngx_str_t *text);
static ngx_int_t ngx_ailink_realtime_log_handler(ngx_http_request_t *r);
static ngx_int_t ngx_ailink_realtime_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_ailink_realtime_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_ailink_realtime_postconfiguration(ngx_conf_t *cf);


static ngx_http_module_t  ngx_ailink_realtime_module_ctx = {
    ngx_ailink_realtime_preconfiguration,  /* preconfiguration */
    ngx_ailink_realtime_postconfiguration, /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_ailink_realtime_module = {
    NGX_MODULE_V1,
    &ngx_ailink_realtime_module_ctx,       /* module context */
    NULL,                                  /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_variable_t  ngx_ailink_realtime_vars[] = {

    /* for "proxy_set_header Upgrade/Connection": empty (not sent) unless
       the request is a realtime upgrade */

    { ngx_string("ailink_upgrade"), NULL, ngx_ailink_realtime_variable,
      (uintptr_t) "websocket", NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ailink_connection"), NULL, ngx_ailink_realtime_variable,
      (uintptr_t) "upgrade", NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;

static ngx_str_t  ngx_ailink_realtime_done = ngx_string("response.done");


ngx_uint_t
ngx_ailink_realtime_request(ngx_http_request_t *r)
{
    return r->uri.len == sizeof(NGX_AILINK_REALTIME_PATH) - 1
           && ngx_strncmp(r->uri.data, NGX_AILINK_REALTIME_PATH,
                          sizeof(NGX_AILINK_REALTIME_PATH) - 1) == 0;
}


static ngx_uint_t
ngx_ailink_realtime_is_header(ngx_table_elt_t *h, const char *name,
    size_t len)
{
    return h->key.len == len
           && ngx_strncasecmp(h->key.data, (u_char *) name, len) == 0;
}


/* the next comma-separated entry of a header value, blanks trimmed */

static u_char *
ngx_ailink_realtime_entry(u_char *p, u_char *last, ngx_str_t *entry)
{
    u_char  *e;

    while (p < last && (*p == ' ' || *p == '\t' || *p == ',')) {
        p++;
    }

    e = p;

    while (e < last && *e != ',') {
        e++;
    }

    entry->data = p;
    entry->len = e - p;

    while (entry->len
           && (entry->data[entry->len - 1] == ' '
               || entry->data[entry->len - 1] == '\t'))
    {
        entry->len--;
    }

    return e;
}


static ngx_uint_t
ngx_ailink_realtime_key_entry(ngx_str_t *entry)
{
    return entry->len >= sizeof(NGX_AILINK_REALTIME_KEY_PROTO) - 1
           && ngx_strncmp(entry->data, NGX_AILINK_REALTIME_KEY_PROTO,
                          sizeof(NGX_AILINK_REALTIME_KEY_PROTO) - 1) == 0;
}


/*
 * The token a browser sends: "Sec-WebSocket-Protocol: realtime,
 * openai-insecure-api-key.<token>", only on a realtime upgrade (the auth
 * handler asks when there is no Authorization header).
 */

ngx_int_t
ngx_ailink_realtime_token(ngx_http_request_t *r, ngx_str_t *token)
{
    u_char           *p, *last;
    ngx_str_t         entry;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    if (r->headers_in.upgrade == NULL || !ngx_ailink_realtime_request(r)) {
        return NGX_DECLINED;
    }

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (!ngx_ailink_realtime_is_header(&h[i], "Sec-WebSocket-Protocol",
                                    sizeof("Sec-WebSocket-Protocol") - 1))
        {
            continue;
        }

        p = h[i].value.data;
        last = p + h[i].value.len;

        while (p < last) {
            p = ngx_ailink_realtime_entry(p, last, &entry);

            if (ngx_ailink_realtime_key_entry(&entry)) {
                token->data = entry.data
                              + sizeof(NGX_AILINK_REALTIME_KEY_PROTO) - 1;
                token->len = entry.len
                             - (sizeof(NGX_AILINK_REALTIME_KEY_PROTO) - 1);
                return NGX_OK;
            }
        }
    }

    return NGX_DECLINED;
}


/*
 * The upgrade request's headers for the provider: every
 * "openai-insecure-api-key.*" entry of Sec-WebSocket-Protocol removed (the
 * virtual token), and Sec-WebSocket-Extensions removed, so that no
 * compression is negotiated and the provider's frames stay readable.
 */

static ngx_int_t
ngx_ailink_realtime_keep_header(ngx_http_request_t *r, ngx_table_elt_t *h,
    void *data)
{
    u_char     *p, *last, *d;
    ngx_str_t   entry;

    if (ngx_ailink_realtime_is_header(h, "Sec-WebSocket-Extensions",
                                sizeof("Sec-WebSocket-Extensions") - 1))
    {
        return NGX_DECLINED;
    }

    if (!ngx_ailink_realtime_is_header(h, "Sec-WebSocket-Protocol",
                                 sizeof("Sec-WebSocket-Protocol") - 1))
    {
        return NGX_OK;
    }

    d = ngx_pnalloc(r->pool, h->value.len);
    if (d == NULL) {
        return NGX_ERROR;
    }

    p = h->value.data;
    last = p + h->value.len;
    h->value.data = d;

    while (p < last) {
        p = ngx_ailink_realtime_entry(p, last, &entry);

        if (entry.len == 0 || ngx_ailink_realtime_key_entry(&entry)) {
            continue;
        }

        if (d != h->value.data) {
            *d++ = ',';
            *d++ = ' ';
        }

        d = ngx_cpymem(d, entry.data, entry.len);
    }

    h->value.len = d - h->value.data;

    /* the token was the only entry: no header at all */
    return h->value.len ? NGX_OK : NGX_DECLINED;
}


static ngx_int_t
ngx_ailink_realtime_refuse(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    const char *param, const char *fmt, ngx_str_t *arg1, ngx_str_t *arg2)
{
    u_char  *p;

    p = ngx_pnalloc(r->pool, NGX_MAX_ERROR_STR);
    if (p == NULL) {
        return NGX_ERROR;
    }

    *ngx_slprintf(p, p + NGX_MAX_ERROR_STR - 1, fmt, arg1, arg2) = '\0';

    ctx->error_code = "invalid_request";
    ctx->error_param = param;
    ctx->error_message = (char *) p;

    return NGX_HTTP_BAD_REQUEST;
}


/*
 * Routing of an upgrade: the model of the query picks the provider, which
 * must speak OpenAI's Realtime API.  The translate module then builds the
 * upstream URL (the provider's base URL, "/realtime" and the query) and
 * injects the credential, as for the other OpenAI paths.
 */

ngx_int_t
ngx_ailink_realtime_route(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx)
{
    u_char                 *p, *src;
    ngx_str_t               model, arg, none = ngx_null_string;
    ngx_uint_t              n;
    ngx_ailink_provider_t  *prov;

    if (r->method != NGX_HTTP_GET
        || r->headers_in.upgrade == NULL
        || ngx_strcasestrn(r->headers_in.upgrade->value.data,
                           "websocket", sizeof("websocket") - 1 - 1) == NULL
        || r->http_version != NGX_HTTP_VERSION_11)
    {
        return ngx_ailink_realtime_refuse(r, ctx, NULL,
                   "/v1/realtime is a WebSocket: GET with \"Upgrade: "
                   "websocket\" over HTTP/1.1%V%V", &none, &none);
    }

    /* one "model" argument: the provider may read another than nginx */
    n = 0;
    p = r->args.data;

    while (p && p < r->args.data + r->args.len) {
        if ((p == r->args.data || p[-1] == '&')
            && (size_t) (r->args.data + r->args.len - p) >= sizeof("model=") - 1
            && ngx_strncmp(p, "model=", sizeof("model=") - 1) == 0)
        {
            n++;
        }

        p++;
    }

    if (n != 1
        || ngx_http_arg(r, (u_char *) "model", 5, &arg) != NGX_OK
        || arg.len == 0)
    {
        return ngx_ailink_realtime_refuse(r, ctx, "model",
                   "/v1/realtime needs one \"model\" query argument%V%V",
                   &none, &none);
    }

    model.data = ngx_pnalloc(r->pool, arg.len);
    if (model.data == NULL) {
        return NGX_ERROR;
    }

    p = model.data;
    src = arg.data;
    ngx_unescape_uri(&p, &src, arg.len, NGX_UNESCAPE_URI);
    model.len = p - model.data;

    ctx->model = model;

    prov = ngx_ailink_route_model(ngx_ailink_get_conf(r), &model);

    if (prov == NULL) {
        return ngx_ailink_realtime_refuse(r, ctx, "model",
                   "model \"%V\" has no route%V", &model, &none);
    }

    ctx->provider = prov;

    if (prov->type != NGX_AILINK_PROVIDER_OPENAI) {
        return ngx_ailink_realtime_refuse(r, ctx, "model",
                   "model \"%V\" is served by %V, which has no Realtime "
                   "API: only OpenAI-compatible providers serve "
                   "/v1/realtime", &model, &prov->name);
    }

    if (ngx_ailink_rebuild_headers(r, ngx_ailink_realtime_keep_header, NULL)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ailink realtime: model \"%V\" to \"%V\"",
                   &model, &prov->name);

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_realtime_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_ailink_ctx_t  *ctx;

    ctx = ngx_ailink_get_ctx(r);

    if (ctx == NULL || ctx->route != NGX_AILINK_ROUTE_REALTIME
        || !ctx->routed)
    {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = (u_char *) data;
    v->len = ngx_strlen(v->data);
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/* the provider switched protocols: the tap goes on both connections */

static ngx_int_t
ngx_ailink_realtime_header_filter(ngx_http_request_t *r)
{
    ngx_ailink_ctx_t  *ctx;

    if (r != r->main
        || r->headers_out.status != NGX_HTTP_SWITCHING_PROTOCOLS
        || r->upstream == NULL
        || !r->upstream->upgrade)
    {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_ailink_get_ctx(r);

    if (ctx == NULL || ctx->route != NGX_AILINK_ROUTE_REALTIME
        || ctx->realtime)
    {
        return ngx_http_next_header_filter(r);
    }

    if (ngx_ailink_realtime_tap(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_ailink_realtime_tap(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx)
{
    ngx_http_upstream_t              *u;
    ngx_ailink_realtime_t            *rt;
    ngx_ailink_translate_loc_conf_t  *tlcf;

    u = r->upstream;

    if (u->peer.connection == NULL) {
        return NGX_ERROR;
    }

    rt = ngx_pcalloc(r->pool, sizeof(ngx_ailink_realtime_t));
    if (rt == NULL) {
        return NGX_ERROR;
    }

    tlcf = ngx_http_get_module_loc_conf(r, ngx_ailink_translate_module);

    ngx_ailink_ws_init(&rt->ws, r->pool, tlcf->stream_event_max_size,
                       &ngx_ailink_realtime_done,
                       ngx_ailink_realtime_message, rt);

    rt->request = r;
    rt->start = ngx_current_msec;
    rt->client = r->connection;
    rt->upstream = u->peer.connection;
    rt->client_recv = rt->client->recv;
    rt->upstream_recv = rt->upstream->recv;

    ctx->realtime = rt;

    /* what either side sent along with its headers */
    rt->from_client = r->header_in->last - r->header_in->pos;
    ngx_ailink_realtime_read(rt, u->buffer.pos, u->buffer.last);

    rt->client->recv = ngx_ailink_realtime_client_recv;
    rt->upstream->recv = ngx_ailink_realtime_upstream_recv;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ailink realtime: session to \"%V\" open",
                   &ctx->upstream);

    return NGX_OK;
}


/* the session a connection's bytes belong to */

static ngx_ailink_realtime_t *
ngx_ailink_realtime_find(ngx_connection_t *c)
{
    ngx_ailink_ctx_t       *ctx;
    ngx_http_request_t     *r;
    ngx_ailink_realtime_t  *rt;

    r = c->data;
    ctx = r ? ngx_http_get_module_ctx(r, ngx_ailink_auth_module) : NULL;
    rt = ctx ? ctx->realtime : NULL;

    if (rt == NULL || (rt->client != c && rt->upstream != c)) {
        return NULL;
    }

    return rt;
}


static ssize_t
ngx_ailink_realtime_client_recv(ngx_connection_t *c, u_char *buf,
    size_t size)
{
    ssize_t                 n;
    ngx_ailink_realtime_t  *rt;

    rt = ngx_ailink_realtime_find(c);

    if (rt == NULL || rt->client != c) {
        /* cannot happen: c->data is the request the tap was set on */
        ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                      "ailink: realtime tap lost its session");
        return NGX_ERROR;
    }

    n = rt->client_recv(c, buf, size);

    if (n > 0) {
        rt->from_client += n;
    }

    return n;
}


static ssize_t
ngx_ailink_realtime_upstream_recv(ngx_connection_t *c, u_char *buf,
    size_t size)
{
    ssize_t                 n;
    ngx_ailink_realtime_t  *rt;

    rt = ngx_ailink_realtime_find(c);

    if (rt == NULL || rt->upstream != c) {
        ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                      "ailink: realtime tap lost its session");
        return NGX_ERROR;
    }

    n = rt->upstream_recv(c, buf, size);

    if (n > 0) {
        ngx_ailink_realtime_read(rt, buf, buf + n);
    }

    return n;
}


static void
ngx_ailink_realtime_read(ngx_ailink_realtime_t *rt, u_char *p, u_char *last)
{
    ngx_int_t          rc;
    ngx_ailink_ctx_t  *ctx;

    rt->from_upstream += last - p;

    if (p == last || rt->ws.broken) {
        return;
    }

    rc = ngx_ailink_ws_feed(&rt->ws, p, last);

    if (rc == NGX_OK || rt->reported) {
        return;
    }

    rt->reported = 1;
    ctx = ngx_ailink_get_ctx(rt->request);

    if (rc == NGX_ERROR) {
        /* the bytes still pass; the usage of what follows is lost */
        rt->ws.broken = 1;
        rt->ws.error = "no memory";
    }

    ngx_log_error(NGX_LOG_WARN, rt->request->connection->log, 0,
                  "ailink: realtime stream from \"%V\" is not read past "
                  "%O bytes: %s; usage after it is not counted",
                  &ctx->upstream, rt->from_upstream, rt->ws.error);
}


/* a count of a usage object; absent or unreadable: 0 */

static ngx_uint_t
ngx_ailink_realtime_count(ngx_str_t *value)
{
    ngx_int_t  n;

    if (value->len == 0) {
        return 0;
    }

    n = ngx_atoi(value->data, value->len);

    return (n == NGX_ERROR) ? 0 : (ngx_uint_t) n;
}


/*
 * A server event the stream reader kept: a "response.done" adds its
 * response.usage ({"input_tokens", "output_tokens", "total_tokens",
 * "input_token_details": {"cached_tokens", "audio_tokens"},
 * "output_token_details": {"audio_tokens"}}) to the session's usage.
 */

static void
ngx_ailink_realtime_message(void *data, ngx_str_t *text)
{
    ngx_ailink_realtime_t *rt = data;

    ngx_uint_t                in, out, total;
    ngx_ailink_ctx_t         *ctx;
    ngx_ailink_json_field_t   ev[] = {
        { ngx_string("type"), ngx_null_string },
        { ngx_string("response"), ngx_null_string }
    };
    ngx_ailink_json_field_t   resp = { ngx_string("usage"),
                                       ngx_null_string };
    ngx_ailink_json_field_t   u[] = {
        { ngx_string("input_tokens"), ngx_null_string },
        { ngx_string("output_tokens"), ngx_null_string },
        { ngx_string("total_tokens"), ngx_null_string },
        { ngx_string("input_token_details"), ngx_null_string },
        { ngx_string("output_token_details"), ngx_null_string }
    };
    ngx_ailink_json_field_t   in_d[] = {
        { ngx_string("cached_tokens"), ngx_null_string },
        { ngx_string("audio_tokens"), ngx_null_string }
    };
    ngx_ailink_json_field_t   out_d = { ngx_string("audio_tokens"),
                                        ngx_null_string };

    if (ngx_ailink_json_scan(text, ev, 2) != NGX_OK
        || ev[0].value.len != sizeof("\"response.done\"") - 1
        || ngx_strncmp(ev[0].value.data, "\"response.done\"",
                       sizeof("\"response.done\"") - 1) != 0)
    {
        return;
    }

    rt->responses++;

    if (ev[1].value.len == 0
        || ngx_ailink_json_scan(&ev[1].value, &resp, 1) != NGX_OK
        || resp.value.len == 0
        || ngx_ailink_json_scan(&resp.value, u, 5) != NGX_OK)
    {
        /* a response.done without usage (cancelled, failed) */
        return;
    }

    in = ngx_ailink_realtime_count(&u[0].value);
    out = ngx_ailink_realtime_count(&u[1].value);
    total = ngx_ailink_realtime_count(&u[2].value);

    ctx = ngx_ailink_get_ctx(rt->request);

    ctx->usage.prompt += in;
    ctx->usage.completion += out;
    ctx->usage.total += total ? total : in + out;
    ctx->usage.known = 1;

    if (u[3].value.len && ngx_ailink_json_scan(&u[3].value, in_d, 2)
                          == NGX_OK)
    {
        ctx->usage.cached += ngx_ailink_realtime_count(&in_d[0].value);
        rt->audio_in += ngx_ailink_realtime_count(&in_d[1].value);
    }

    if (u[4].value.len && ngx_ailink_json_scan(&u[4].value, &out_d, 1)
                          == NGX_OK)
    {
        rt->audio_out += ngx_ailink_realtime_count(&out_d.value);
    }

    rt->usage_events++;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, rt->request->connection->log, 0,
                   "ailink realtime: response.done in:%ui out:%ui "
                   "total:%ui", in, out, total);
}


/*
 * Before the audit record is written (this module's log handler comes
 * first): the client's recv() is given back and the session's numbers
 * become the record's "realtime" member.
 */

static ngx_int_t
ngx_ailink_realtime_log_handler(ngx_http_request_t *r)
{
    u_char                 *p;
    size_t                  len;
    ngx_msec_int_t          ms;
    ngx_ailink_ctx_t       *ctx;
    ngx_ailink_realtime_t  *rt;

    if (r != r->main) {
        return NGX_OK;
    }

    ctx = ngx_ailink_get_ctx(r);

    if (ctx == NULL || ctx->realtime == NULL || ctx->realtime_audit.len) {
        return NGX_OK;
    }

    rt = ctx->realtime;

    if (rt->client->recv == ngx_ailink_realtime_client_recv) {
        rt->client->recv = rt->client_recv;
    }

    ms = (ngx_msec_int_t) (ngx_current_msec - rt->start);

    len = sizeof(",\"realtime\":{\"duration_ms\":"
                 ",\"bytes_client_to_upstream\":"
                 ",\"bytes_upstream_to_client\":"
                 ",\"messages_to_client\":,\"responses\":"
                 ",\"usage_events\":,\"unread_messages\":"
                 ",\"audio_input_tokens\":,\"audio_output_tokens\":"
                 ",\"stream_error\":null}") - 1
          + 9 * NGX_OFF_T_LEN + 64;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->realtime_audit.data = p;

    p = ngx_sprintf(p, ",\"realtime\":{\"duration_ms\":%M"
                    ",\"bytes_client_to_upstream\":%O"
                    ",\"bytes_upstream_to_client\":%O"
                    ",\"messages_to_client\":%ui,\"responses\":%ui"
                    ",\"usage_events\":%ui,\"unread_messages\":%ui"
                    ",\"audio_input_tokens\":%ui"
                    ",\"audio_output_tokens\":%ui,\"stream_error\":",
                    (ngx_msec_t) ngx_max(ms, 0),
                    rt->from_client, rt->from_upstream,
                    rt->ws.messages, rt->responses, rt->usage_events,
                    rt->ws.unread, rt->audio_in, rt->audio_out);

    if (rt->ws.broken && rt->ws.error) {
        /* a fixed message of the reader: nothing to escape */
        p = ngx_sprintf(p, "\"%s\"}", rt->ws.error);

    } else {
        p = ngx_cpymem(p, "null}", 5);
    }

    ctx->realtime_audit.len = p - ctx->realtime_audit.data;

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_realtime_preconfiguration(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_ailink_realtime_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_realtime_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    /* before the audit module's: log handlers run in module order */
    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_ailink_realtime_log_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_ailink_realtime_header_filter;

    return NGX_OK;
}
