
/*
 * Copyright (C) AILink
 *
 * The response side of routing, as header and body filters:
 *
 *   OpenAI JSON     passed through; captured (bounded) to read usage
 *   OpenAI SSE      passed through, usage read event by event; when the
 *                   gateway asked for usage the client did not, the events
 *                   are re-emitted without the usage chunk
 *   provider JSON   (Anthropic, Gemini, success or error) held until
 *                   complete, then answered as OpenAI JSON or the error
 *                   envelope; headers wait for it, as in the xslt filter
 *   provider SSE    translated event by event as the bytes arrive, each
 *                   input buffer's output flushed at once
 *
 * Streams cost constant memory: the SSE parser's carry-over is bounded,
 * output buffers are recycled, and a stream we re-emit holds the
 * upstream's input buffers unread until our output from them is sent, so
 * that nginx's proxy stops reading the provider while the client is slow
 * (as it does for a stream passed through).
 */


#include "ngx_ailink_translate.h"
#include "ngx_ailink_guard.h"


#define NGX_AILINK_RESP_OPENAI_JSON    1
#define NGX_AILINK_RESP_OPENAI_SSE     2
#define NGX_AILINK_RESP_XLATE_JSON     3
#define NGX_AILINK_RESP_XLATE_SSE      4

#define NGX_AILINK_OUT_BUF_SIZE        4096


typedef struct {
    ngx_uint_t                  mode;
    ngx_http_request_t         *request;
    ngx_ailink_ctx_t           *ctx;

    ngx_ailink_sse_t            sse;
    ngx_buf_t                  *capture;
    size_t                      capture_max;
    ngx_ailink_xstream_t        xstream;

    ngx_chain_t                *out;
    ngx_chain_t               **last_out;
    ngx_buf_t                  *cur;        /* the output being written */
    ngx_chain_t                *free;
    ngx_chain_t                *busy;

    ngx_chain_t                *held;       /* input read, not released */
    ngx_chain_t                *held_free;
    ngx_uint_t                  oversized;  /* events too large, seen */

    ngx_ailink_guard_stream_t  *guard;      /* output guardrails, or NULL */

    unsigned                    overflow:1;
    unsigned                    failed:1;
} ngx_ailink_resp_t;


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


/* output: recycled buffers of our own */

/* the output buffer, with room for len more bytes */

static ngx_buf_t *
ngx_ailink_resp_reserve(ngx_ailink_resp_t *rs, size_t len)
{
    size_t        size;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    b = rs->cur;

    if (b != NULL && (size_t) (b->end - b->last) >= len) {
        return b;
    }

    cl = ngx_chain_get_free_buf(rs->request->pool, &rs->free);
    if (cl == NULL) {
        return NULL;
    }

    b = cl->buf;

    if (b->start == NULL || (size_t) (b->end - b->start) < len) {
        size = ngx_max(len, NGX_AILINK_OUT_BUF_SIZE);

        b->start = ngx_palloc(rs->request->pool, size);
        if (b->start == NULL) {
            return NULL;
        }

        b->end = b->start + size;
    }

    b->pos = b->start;
    b->last = b->start;
    b->temporary = 1;
    b->flush = 0;
    b->last_buf = 0;
    b->tag = (ngx_buf_tag_t) &ngx_ailink_translate_module;

    *rs->last_out = cl;
    rs->last_out = &cl->next;
    rs->cur = b;

    return b;
}


static ngx_int_t
ngx_ailink_resp_event(ngx_ailink_resp_t *rs, u_char *p, size_t len)
{
    ngx_buf_t  *b;

    b = ngx_ailink_resp_reserve(rs, sizeof("data: \n\n") - 1 + len);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->last = ngx_cpymem(b->last, "data: ", 6);
    b->last = ngx_cpymem(b->last, p, len);
    b->last = ngx_cpymem(b->last, "\n\n", 2);

    return NGX_OK;
}


/* one OpenAI chunk, printed into the output, or "[DONE]" */

static ngx_int_t
ngx_ailink_resp_print(void *data, cJSON *chunk)
{
    ngx_buf_t          *b;
    ngx_ailink_resp_t  *rs = data;

    if (chunk == NULL) {
        return ngx_ailink_resp_event(rs, (u_char *) "[DONE]", 6);
    }

    b = ngx_ailink_resp_reserve(rs, sizeof("data: \n\n") - 1
                                    + ngx_ailink_json_print_len(chunk));
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->last = ngx_cpymem(b->last, "data: ", 6);
    b->last = ngx_ailink_json_print(b->last, chunk);
    b->last = ngx_cpymem(b->last, "\n\n", 2);

    return NGX_OK;
}


/*
 * The output guardrails refused the stream: it ends with an error event,
 * content_blocked when a guardrail blocked it, and [DONE].
 */

static ngx_int_t
ngx_ailink_resp_guard_refused(ngx_ailink_xstream_t *st)
{
    cJSON              *err;
    ngx_int_t           rc;
    ngx_ailink_resp_t  *rs = st->data;

    if (st->done) {
        return NGX_OK;
    }

    err = ngx_ailink_guard_stream_blocked(rs->guard, &rs->ctx->request_id);

    if (err == NULL) {
        return ngx_ailink_stream_error(st, "api_error",
                                       "the stream's output could not be "
                                       "checked by the guardrails");
    }

    st->finished = 1;
    st->done = 1;

    rc = ngx_ailink_resp_print(rs, err);
    cJSON_Delete(err);

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_ailink_resp_print(rs, NULL);
}


/*
 * st->emit: a chunk through the output guardrails, if any, then printed.
 * A chunk they refuse is not sent: the stream ends with an error event
 * (which, as [DONE], they let through).
 */

static ngx_int_t
ngx_ailink_resp_emit(ngx_ailink_xstream_t *st, cJSON *chunk)
{
    ngx_int_t           rc;
    ngx_ailink_resp_t  *rs = st->data;

    if (rs->guard) {
        rc = chunk ? ngx_ailink_guard_stream_chunk(rs->guard, chunk,
                                                   ngx_ailink_resp_print, rs)
                   : ngx_ailink_guard_stream_end(rs->guard,
                                                 ngx_ailink_resp_print, rs);

        if (rc == NGX_DECLINED) {
            return ngx_ailink_resp_guard_refused(st);
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return ngx_ailink_resp_print(rs, chunk);
}


/*
 * The upstream's input buffers we have read stay unconsumed (b->pos short
 * of b->last) while our output is not all sent: nginx's proxy sees them
 * busy and stops reading the provider once its buffer is full, as the
 * gunzip filter's bounded buffers do.  Released when our busy chain
 * drains.
 */

static ngx_int_t
ngx_ailink_resp_hold(ngx_ailink_resp_t *rs, ngx_buf_t *b)
{
    ngx_chain_t  *cl;

    if (ngx_buf_size(b) == 0) {
        return NGX_OK;
    }

    if (rs->held_free) {
        cl = rs->held_free;
        rs->held_free = cl->next;

    } else {
        cl = ngx_alloc_chain_link(rs->request->pool);
        if (cl == NULL) {
            return NGX_ERROR;
        }
    }

    cl->buf = b;
    cl->next = rs->held;
    rs->held = cl;

    return NGX_OK;
}


static void
ngx_ailink_resp_release(ngx_ailink_resp_t *rs)
{
    ngx_chain_t  *cl, *next;

    if (rs->held) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, rs->request->connection->log, 0,
                       "ailink stream: output sent, input released");
    }

    for (cl = rs->held; cl; cl = next) {
        next = cl->next;

        cl->buf->pos = cl->buf->last;

        cl->next = rs->held_free;
        rs->held_free = cl;
    }

    rs->held = NULL;
}


/* sends what the translation produced, flushed, and recycles buffers;
 * with nothing new, pushes on what the client has not taken yet */

static ngx_int_t
ngx_ailink_resp_send(ngx_ailink_resp_t *rs, ngx_uint_t last)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (last) {
        cl = ngx_alloc_chain_link(rs->request->pool);
        if (cl == NULL) {
            return NGX_ERROR;
        }

        b = ngx_calloc_buf(rs->request->pool);
        if (b == NULL) {
            return NGX_ERROR;
        }

        b->last_buf = 1;
        cl->buf = b;
        cl->next = NULL;
        *rs->last_out = cl;
        rs->last_out = &cl->next;

    } else if (rs->out) {
        rs->cur->flush = 1;
    }

    /* with nothing new, still called: what the client has not taken may
     * be the next filters' (the last chunk) as well as ours */

    rc = ngx_http_next_body_filter(rs->request, rs->out);

    ngx_chain_update_chains(rs->request->pool, &rs->free, &rs->busy,
                            &rs->out,
                            (ngx_buf_tag_t) &ngx_ailink_translate_module);

    rs->out = NULL;
    rs->last_out = &rs->out;
    rs->cur = NULL;

    if (rs->busy == NULL) {
        ngx_ailink_resp_release(rs);

    } else {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, rs->request->connection->log, 0,
                       "ailink stream: client slow, input held");
    }

    return rc;
}


/* whether the client gets our events (translated, or re-emitted without
 * the usage chunk) rather than the upstream's bytes */

static ngx_uint_t
ngx_ailink_resp_reemits(ngx_ailink_resp_t *rs)
{
    return rs->mode == NGX_AILINK_RESP_XLATE_SSE
           || (rs->mode == NGX_AILINK_RESP_OPENAI_SSE
               && (rs->ctx->strip_usage
                   || (rs->guard
                       && !ngx_ailink_guard_stream_observes(rs->guard))));
}


/*
 * An event over ailink_stream_event_max_size, which the parser dropped.
 * A stream we re-emit ends there, loudly, rather than go on without it; a
 * stream passed through has carried it to the client and only goes
 * without what it said (usage).
 */

static void
ngx_ailink_resp_oversized(ngx_ailink_resp_t *rs)
{
    ngx_ailink_translate_loc_conf_t  *tlcf;

    if (rs->sse.oversized == rs->oversized) {
        return;
    }

    rs->oversized = rs->sse.oversized;

    tlcf = ngx_http_get_module_loc_conf(rs->request,
                                        ngx_ailink_translate_module);

    if (rs->guard && !rs->xstream.done && !rs->failed) {
        /* the guardrails did not read it: the audit says so */
        (void) ngx_ailink_guard_stream_oversized(rs->guard);
    }

    if (!ngx_ailink_resp_reemits(rs)) {
        ngx_log_error(NGX_LOG_INFO, rs->request->connection->log, 0,
                      "ailink: %V stream event larger than "
                      "ailink_stream_event_max_size %uz passed unread",
                      &rs->ctx->provider->name, tlcf->stream_event_max_size);
        return;
    }

    if (rs->xstream.done || rs->failed) {
        return;
    }

    ngx_log_error(NGX_LOG_ERR, rs->request->connection->log, 0,
                  "ailink: %V stream event from \"%V\" larger than "
                  "ailink_stream_event_max_size %uz, stream ended",
                  &rs->ctx->provider->name, &rs->ctx->upstream,
                  tlcf->stream_event_max_size);

    if (ngx_ailink_stream_error(&rs->xstream, "api_error",
                                "the provider sent a stream event larger "
                                "than the gateway reads "
                                "(ailink_stream_event_max_size)")
        != NGX_OK)
    {
        rs->failed = 1;
    }
}


/*
 * An OpenAI event re-emitted through the output guardrails: a chunk is
 * read, redacted and printed again; one that cannot be read goes as it
 * came, said so in the audit, or ends the stream (as configured).
 */

static void
ngx_ailink_resp_guard_event(ngx_ailink_resp_t *rs, ngx_str_t *payload,
    ngx_uint_t done)
{
    cJSON      *json;
    ngx_int_t   rc;

    if (done) {
        rc = ngx_ailink_resp_emit(&rs->xstream, NULL);
        rs->xstream.done = 1;

    } else {
        json = ngx_ailink_json_parse(payload);

        if (json) {
            rc = ngx_ailink_resp_emit(&rs->xstream, json);
            ngx_ailink_json_delete(json);

        } else {
            rc = ngx_ailink_guard_stream_unreadable(rs->guard);

            if (rc == NGX_OK) {
                rc = ngx_ailink_resp_event(rs, payload->data, payload->len);

            } else if (rc == NGX_DECLINED) {
                rc = ngx_ailink_stream_error(&rs->xstream, "api_error",
                                             "the provider sent a stream "
                                             "event the guardrails cannot "
                                             "read");
            }
        }
    }

    if (rc != NGX_OK) {
        rs->failed = 1;
    }
}


/* an event passed through, read by shadow guardrails (nothing emitted) */

static ngx_int_t
ngx_ailink_resp_no_emit(void *data, cJSON *chunk)
{
    return NGX_OK;
}


static void
ngx_ailink_resp_guard_observe(ngx_ailink_resp_t *rs, ngx_str_t *payload,
    ngx_uint_t done)
{
    cJSON  *json;

    if (done) {
        (void) ngx_ailink_guard_stream_end(rs->guard,
                                           ngx_ailink_resp_no_emit, rs);
        return;
    }

    json = ngx_ailink_json_parse(payload);

    if (json == NULL) {
        (void) ngx_ailink_guard_stream_unreadable(rs->guard);
        return;
    }

    (void) ngx_ailink_guard_stream_chunk(rs->guard, json,
                                         ngx_ailink_resp_no_emit, rs);
    ngx_ailink_json_delete(json);
}


/* OpenAI SSE events: read usage; drop the usage chunk the client did not
 * ask for, re-emitting every other event as it came */

static void
ngx_ailink_resp_openai_event(void *data, ngx_str_t *event, ngx_str_t *payload)
{
    cJSON              *json, *choices;
    ngx_uint_t          usage_only, done;
    ngx_ailink_resp_t  *rs = data;

    ngx_ailink_resp_oversized(rs);

    usage_only = 0;

    if (memmem(payload->data, payload->len, "\"usage\"", 7)) {
        json = ngx_ailink_json_parse(payload);

        if (json) {
            ngx_ailink_usage_from_openai(&rs->ctx->usage, json);

            choices = ngx_ailink_json_get(json, "choices");
            usage_only = cJSON_IsArray(choices)
                         && cJSON_GetArraySize(choices) == 0;

            ngx_ailink_json_delete(json);
        }
    }

    done = (payload->len == sizeof("[DONE]") - 1
            && ngx_strncmp(payload->data, "[DONE]", payload->len) == 0);

    if (!ngx_ailink_resp_reemits(rs)) {
        /* passed through: the client has the upstream's own end */

        if (rs->guard && !rs->xstream.done) {
            /* shadow guardrails read it, and change nothing */
            ngx_ailink_resp_guard_observe(rs, payload, done);
        }

        rs->xstream.done |= done;
        return;
    }

    if (rs->failed || rs->xstream.done
        || (usage_only && rs->ctx->strip_usage))
    {
        return;
    }

    if (rs->guard) {
        ngx_ailink_resp_guard_event(rs, payload, done);
        return;
    }

    if (ngx_ailink_resp_event(rs, payload->data, payload->len) != NGX_OK) {
        rs->failed = 1;
    }

    rs->xstream.done = done;
}


static void
ngx_ailink_resp_xlate_event(void *data, ngx_str_t *event, ngx_str_t *payload)
{
    ngx_int_t           rc;
    ngx_ailink_resp_t  *rs = data;

    ngx_ailink_resp_oversized(rs);

    if (rs->failed || rs->xstream.done) {
        return;
    }

    if (rs->ctx->provider->type == NGX_AILINK_PROVIDER_ANTHROPIC) {
        rc = ngx_ailink_anthropic_stream(&rs->xstream, event, payload);

    } else {
        rc = ngx_ailink_gemini_stream(&rs->xstream, event, payload);
    }

    if (rc == NGX_OK) {
        return;
    }

    ngx_log_error(NGX_LOG_ERR, rs->request->connection->log, 0,
                  "ailink: malformed %V stream event from \"%V\"",
                  &rs->ctx->provider->name, &rs->ctx->upstream);

    if (ngx_ailink_stream_error(&rs->xstream, "api_error",
                                "the provider sent a malformed stream event")
        != NGX_OK)
    {
        rs->failed = 1;
    }
}


/* what a translator reports a response as: the client's model, an id
 * made of the request id */

static ngx_int_t
ngx_ailink_resp_xresp(ngx_ailink_resp_t *rs, ngx_ailink_xresp_t *x)
{
    ngx_ailink_ctx_t  *ctx = rs->ctx;

    ngx_memzero(x, sizeof(ngx_ailink_xresp_t));

    x->pool = rs->request->pool;
    x->log = rs->request->connection->log;
    x->model = ctx->model;
    x->usage = &ctx->usage;
    x->created = ngx_time();

    x->id.len = sizeof("chatcmpl-") - 1 + ctx->request_id.len;
    x->id.data = ngx_pnalloc(x->pool, x->id.len);
    if (x->id.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(x->id.data, "chatcmpl-%V", &ctx->request_id);

    return NGX_OK;
}


static ngx_uint_t
ngx_ailink_content_type_is(ngx_http_request_t *r, const char *type, size_t len)
{
    ngx_str_t  *ct;

    ct = &r->headers_out.content_type;

    return ct->len >= len && ngx_strncasecmp(ct->data, (u_char *) type, len)
                             == 0;
}


/* the X-AILink-* headers a client sees are the gateway's, not an upstream's */

static void
ngx_ailink_resp_strip_headers(ngx_http_request_t *r)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len >= sizeof("X-AILink-") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "X-AILink-",
                               sizeof("X-AILink-") - 1) == 0)
        {
            h[i].hash = 0;
        }
    }
}


static ngx_int_t
ngx_ailink_resp_header_filter(ngx_http_request_t *r)
{
    ngx_uint_t                        translated, status;
    ngx_table_elt_t                  *h;
    ngx_ailink_ctx_t                 *ctx;
    ngx_ailink_resp_t                *rs;
    ngx_ailink_translate_loc_conf_t  *tlcf;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_ailink_get_ctx(r);

    if (ctx == NULL || !ctx->routed || ctx->own_response
        || r->upstream == NULL)
    {
        return ngx_http_next_header_filter(r);
    }

    if (r->http_version == NGX_HTTP_VERSION_9 && r->http_major) {
        /*
         * The proxy module read no valid status line and took the
         * upstream for HTTP/0.9 (marking the client's request so): its
         * bytes would reach the client raw, and the client would wait
         * for them to end.  Refused as the invalid response it is.
         */

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "ailink: \"%V\" sent no valid HTTP status line",
                      &ctx->upstream);

        r->http_version = r->http_major * 1000 + r->http_minor;
        r->keepalive = 0;

        return NGX_HTTP_BAD_GATEWAY;
    }

    ngx_ailink_resp_strip_headers(r);

    if (ctx->provider == NULL) {
        return ngx_http_next_header_filter(r);
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "X-AILink-Provider");
    h->value = ctx->provider->name;

    status = r->headers_out.status;
    translated = (ctx->provider->type != NGX_AILINK_PROVIDER_OPENAI
                  && ctx->route == NGX_AILINK_ROUTE_LLM);

    if (!translated
        && (status != NGX_HTTP_OK
            || (r->headers_out.content_encoding
                && r->headers_out.content_encoding->value.len)))
    {
        return ngx_http_next_header_filter(r);
    }

    tlcf = ngx_http_get_module_loc_conf(r, ngx_ailink_translate_module);

    rs = ngx_pcalloc(r->pool, sizeof(ngx_ailink_resp_t));
    if (rs == NULL) {
        return NGX_ERROR;
    }

    rs->request = r;
    rs->ctx = ctx;
    rs->last_out = &rs->out;
    rs->capture_max = tlcf->response_buffer_size;

    if (ngx_ailink_content_type_is(r, "text/event-stream", 17)) {

        /* our own events (translated, re-emitted, an error at the end) */
        rs->xstream.emit = ngx_ailink_resp_emit;
        rs->xstream.data = rs;

        if (status == NGX_HTTP_OK
            && ngx_ailink_guard_stream_start(r, ctx, &rs->guard) != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (!translated) {
            rs->mode = NGX_AILINK_RESP_OPENAI_SSE;
            ngx_ailink_sse_init(&rs->sse, r->pool, tlcf->stream_event_max_size,
                                ngx_ailink_resp_openai_event, rs);

        } else if (status == NGX_HTTP_OK) {
            rs->mode = NGX_AILINK_RESP_XLATE_SSE;
            ngx_ailink_sse_init(&rs->sse, r->pool, tlcf->stream_event_max_size,
                                ngx_ailink_resp_xlate_event, rs);

            if (ngx_ailink_resp_xresp(rs, &rs->xstream.resp) != NGX_OK) {
                return NGX_ERROR;
            }

            rs->xstream.include_usage = ctx->include_usage;

        } else {
            rs->mode = NGX_AILINK_RESP_XLATE_JSON;
        }

    } else if (translated) {
        rs->mode = NGX_AILINK_RESP_XLATE_JSON;

    } else if (ngx_ailink_content_type_is(r, "application/json", 16)) {
        rs->mode = NGX_AILINK_RESP_OPENAI_JSON;

    } else {
        return ngx_http_next_header_filter(r);
    }

    ctx->response = rs;
    r->filter_need_in_memory = 1;

    if (rs->mode == NGX_AILINK_RESP_OPENAI_JSON) {
        return ngx_http_next_header_filter(r);
    }

    if (rs->mode == NGX_AILINK_RESP_XLATE_JSON) {
        /* the headers wait for the whole body: status and length change */
        return NGX_OK;
    }

    /* SSE: our events may be added (the end of a stream cut off) */
    if (rs->mode == NGX_AILINK_RESP_XLATE_SSE
        || rs->mode == NGX_AILINK_RESP_OPENAI_SSE)
    {
        ngx_http_clear_content_length(r);
        ngx_http_clear_accept_ranges(r);
        ngx_http_clear_etag(r);
    }

    if (rs->mode == NGX_AILINK_RESP_XLATE_SSE) {
        ngx_str_set(&r->headers_out.content_type, "text/event-stream");
        r->headers_out.content_type_len = r->headers_out.content_type.len;
        r->headers_out.content_type_lowcase = NULL;
        r->headers_out.charset.len = 0;
    }

    return ngx_http_next_header_filter(r);
}


/* appends a buffer to the capture; false once over the limit */

static ngx_uint_t
ngx_ailink_resp_capture(ngx_ailink_resp_t *rs, ngx_buf_t *b)
{
    size_t      len, size;
    ngx_buf_t  *nb;
    ngx_uint_t  level;

    len = b->last - b->pos;

    if (rs->overflow || len == 0) {
        return !rs->overflow;
    }

    if (rs->capture == NULL
        || (size_t) (rs->capture->end - rs->capture->last) < len)
    {
        size = rs->capture ? rs->capture->last - rs->capture->pos : 0;

        if (size + len > rs->capture_max) {
            /* a translated response is lost; a passed-through one only
             * goes without its usage */
            level = (rs->mode == NGX_AILINK_RESP_XLATE_JSON)
                    ? NGX_LOG_ERR : NGX_LOG_INFO;

            ngx_log_error(level, rs->request->connection->log, 0,
                          "ailink: %V response larger than "
                          "ailink_response_buffer_size",
                          &rs->ctx->provider->name);
            rs->overflow = 1;
            return 0;
        }

        size = ngx_min(ngx_max(2 * (size + len), 4096), rs->capture_max);

        nb = ngx_create_temp_buf(rs->request->pool, size);
        if (nb == NULL) {
            rs->failed = 1;
            return 0;
        }

        if (rs->capture) {
            nb->last = ngx_cpymem(nb->last, rs->capture->pos,
                                  rs->capture->last - rs->capture->pos);
        }

        rs->capture = nb;
    }

    rs->capture->last = ngx_cpymem(rs->capture->last, b->pos, len);

    return 1;
}


/*
 * Usage of a passed-through JSON response.  The body goes to the client
 * as the provider wrote it, so it is not checked here, only looked into
 * for "usage", whose counts are read without building a tree.
 */

static void
ngx_ailink_resp_openai_json(ngx_ailink_resp_t *rs)
{
    ngx_str_t         text, usage;
    static ngx_str_t  key = ngx_string("usage");

    if (rs->capture == NULL || rs->overflow) {
        return;
    }

    text.data = rs->capture->pos;
    text.len = rs->capture->last - rs->capture->pos;

    if (ngx_ailink_json_find_last(&text, &key, &usage) == NGX_OK) {
        ngx_ailink_openai_usage_text(&rs->ctx->usage, &usage);
    }
}


/*
 * A provider's error body → the contract's envelope, with the provider's
 * message and status (Anthropic's 529 "overloaded" is a 503).  Anthropic
 * says {"type":"error","error":{"type","message"}}, Gemini
 * {"error":{"code","message","status"}}: both have error.message.
 */

static ngx_int_t
ngx_ailink_resp_error(ngx_ailink_resp_t *rs, cJSON *json, ngx_uint_t *status,
    ngx_str_t *body)
{
    u_char       *code, *msg;
    cJSON        *err, *type, *message;
    ngx_int_t     rc;
    ngx_str_t     s;

    err = ngx_ailink_json_get(json, "error");
    message = ngx_ailink_json_get(err, "message");
    type = ngx_ailink_json_get(err, "type");

    if (!cJSON_IsString(type)) {
        type = ngx_ailink_json_get(err, "status");
    }

    if (*status == 529) {
        *status = NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    if (*status < NGX_HTTP_BAD_REQUEST) {
        *status = NGX_HTTP_BAD_GATEWAY;
    }

    msg = ngx_pnalloc(rs->request->pool, NGX_MAX_ERROR_STR);
    code = ngx_pnalloc(rs->request->pool, 64);
    if (msg == NULL || code == NULL) {
        return NGX_ERROR;
    }

    if (cJSON_IsString(message)) {
        ngx_snprintf(msg, NGX_MAX_ERROR_STR - 1, "%s%Z",
                     message->valuestring);
        msg[NGX_MAX_ERROR_STR - 1] = '\0';

    } else {
        ngx_sprintf(msg, "%V answered HTTP %ui%Z",
                    &rs->ctx->provider->name, *status);
    }

    if (cJSON_IsString(type)) {
        s.data = (u_char *) type->valuestring;
        s.len = ngx_min(ngx_strlen(type->valuestring), 63);
        ngx_strlow(code, s.data, s.len);
        code[s.len] = '\0';

    } else {
        ngx_cpystrn(code, (u_char *) "upstream_error", 64);
    }

    rc = ngx_ailink_error_body(rs->request, *status, (char *) code,
                               (char *) msg, NULL, body);

    return rc;
}


static ngx_int_t ngx_ailink_resp_xlate_json_trees(ngx_ailink_resp_t *rs);


/* every tree of a whole response is built and dropped in one go */

static ngx_int_t
ngx_ailink_resp_xlate_json(ngx_ailink_resp_t *rs)
{
    ngx_int_t  rc;

    ngx_ailink_json_arena(rs->request->pool);
    rc = ngx_ailink_resp_xlate_json_trees(rs);
    ngx_ailink_json_arena(NULL);

    return rc;
}


static ngx_int_t
ngx_ailink_resp_xlate_json_trees(ngx_ailink_resp_t *rs)
{
    cJSON               *json, *out;
    ngx_int_t            rc;
    ngx_buf_t           *b;
    ngx_str_t            text, body;
    ngx_uint_t           status;
    ngx_ailink_ctx_t    *ctx;
    ngx_ailink_xresp_t   x;
    ngx_http_request_t  *r;

    r = rs->request;
    ctx = rs->ctx;
    status = r->headers_out.status;
    json = NULL;
    out = NULL;

    if (rs->failed) {
        return NGX_ERROR;
    }

    if (rs->overflow) {
        /* too large, or cut off (logged where it was found) */
        goto bad_gateway;
    }

    if (rs->capture) {
        text.data = rs->capture->pos;
        text.len = rs->capture->last - rs->capture->pos;

        if (status == NGX_HTTP_OK) {
            /* an answer of text: one pass, no tree */
            if (ngx_ailink_resp_xresp(rs, &x) != NGX_OK) {
                return NGX_ERROR;
            }

            rc = (ctx->provider->type == NGX_AILINK_PROVIDER_ANTHROPIC)
                 ? ngx_ailink_direct_anthropic_response(&x, &text, &body)
                 : ngx_ailink_direct_gemini_response(&x, &text, &body);

            if (rc == NGX_OK) {
                goto send;
            }

            if (rc == NGX_ERROR) {
                return NGX_ERROR;
            }
        }

        json = ngx_ailink_json_parse(&text);
    }

    if (status != NGX_HTTP_OK) {
        if (ngx_ailink_resp_error(rs, json, &status, &body) != NGX_OK) {
            ngx_ailink_json_delete(json);
            return NGX_ERROR;
        }

        ngx_ailink_json_delete(json);
        goto send;
    }

    if (json) {
        out = (ctx->provider->type == NGX_AILINK_PROVIDER_ANTHROPIC)
              ? ngx_ailink_anthropic_response(&x, json)
              : ngx_ailink_gemini_response(&x, json);

        ngx_ailink_json_delete(json);
    }

    if (out == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "ailink: malformed %V response from \"%V\"",
                      &ctx->provider->name, &ctx->upstream);
        goto bad_gateway;
    }

    body.len = ngx_ailink_json_print_len(out) + 1;
    body.data = ngx_pnalloc(r->pool, body.len);
    if (body.data == NULL) {
        ngx_ailink_json_delete(out);
        return NGX_ERROR;
    }

    *ngx_ailink_json_print(body.data, out) = '\n';
    ngx_ailink_json_delete(out);

    goto send;

bad_gateway:

    status = NGX_HTTP_BAD_GATEWAY;

    if (ngx_ailink_error_body(r, status, "upstream_error",
                              "the provider sent a response the gateway "
                              "cannot read", NULL, &body)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

send:

    r->headers_out.status = status;
    r->headers_out.status_line.len = 0;
    r->headers_out.content_length_n = body.len;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    ngx_http_clear_accept_ranges(r);
    ngx_http_clear_etag(r);

    if (ngx_http_next_header_filter(r) == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (r->header_only) {
        return ngx_ailink_resp_send(rs, 1);
    }

    b = ngx_ailink_resp_reserve(rs, body.len);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->last = ngx_cpymem(b->last, body.data, body.len);

    return ngx_ailink_resp_send(rs, 1);
}


/*
 * The upstream is gone (premature close, timeout) while the stream is
 * still open: end it with an error event and [DONE], so the client sees a
 * clean end rather than a cut connection.
 */

static ngx_uint_t
ngx_ailink_resp_upstream_gone(ngx_http_request_t *r)
{
    return r->upstream && r->upstream->peer.connection == NULL;
}


/*
 * The end of a stream: a Gemini answer that gave its finish reason is
 * complete (its usage may come in a chunk after it); anything else that
 * ends before its own end (Anthropic's message_stop, OpenAI's [DONE]) was
 * cut off.
 */

static ngx_int_t
ngx_ailink_resp_stream_end(ngx_ailink_resp_t *rs)
{
    ngx_ailink_ctx_t  *ctx = rs->ctx;

    if (rs->mode == NGX_AILINK_RESP_XLATE_SSE
        && ctx->provider->type == NGX_AILINK_PROVIDER_GEMINI
        && rs->xstream.finished)
    {
        return ngx_ailink_stream_finish(&rs->xstream);
    }

    ngx_log_error(NGX_LOG_ERR, rs->request->connection->log, 0,
                  "ailink: %V stream from \"%V\" ended early",
                  &ctx->provider->name, &ctx->upstream);

    return ngx_ailink_stream_error(&rs->xstream, "api_error",
                                   "the provider's stream ended early");
}


/*
 * A chat completion stream passed through that ends without [DONE]: what
 * the upstream sent goes on, then the error event, [DONE] and the end.
 * An event cut in two is closed off first, so that ours stands alone.
 */

static ngx_int_t
ngx_ailink_resp_passthrough_end(ngx_ailink_resp_t *rs, ngx_chain_t *in)
{
    ngx_int_t          rc;
    ngx_buf_t         *b;
    ngx_chain_t       *cl, *out, **ll;
    ngx_ailink_sse_t  *sse;

    out = NULL;
    ll = &out;

    for ( /* void */ ; in; in = in->next) {
        if (in->buf->last_buf && ngx_buf_size(in->buf) == 0) {
            continue;
        }

        cl = ngx_alloc_chain_link(rs->request->pool);
        if (cl == NULL) {
            return NGX_ERROR;
        }

        cl->buf = in->buf;
        *ll = cl;
        ll = &cl->next;
    }

    *ll = NULL;

    sse = &rs->sse;

    if (sse->line.len || sse->skip_line || sse->data.len || sse->event.len
        || sse->overflow)
    {
        b = ngx_ailink_resp_reserve(rs, 2);
        if (b == NULL) {
            return NGX_ERROR;
        }

        b->last = ngx_cpymem(b->last, "\n\n", 2);
    }

    if (ngx_ailink_resp_stream_end(rs) != NGX_OK) {
        return NGX_ERROR;
    }

    if (out) {
        rc = ngx_http_next_body_filter(rs->request, out);
        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }
    }

    return ngx_ailink_resp_send(rs, 1);
}


static ngx_int_t
ngx_ailink_resp_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_buf_t          *b;
    ngx_uint_t          last, flush, reemit, end;
    ngx_time_t         *tp;
    ngx_chain_t        *cl;
    ngx_ailink_ctx_t   *ctx;
    ngx_ailink_resp_t  *rs;

    if (r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_ailink_get_ctx(r);
    rs = ctx ? ctx->response : NULL;

    if (rs == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    reemit = ngx_ailink_resp_reemits(rs);

    if (in == NULL) {
        /* the client can take more: what we have not sent yet, and the
         * upstream's buffers once it is all gone */
        return reemit ? ngx_ailink_resp_send(rs, 0)
                      : ngx_http_next_body_filter(r, in);
    }

    if (rs->mode == NGX_AILINK_RESP_OPENAI_SSE
        || rs->mode == NGX_AILINK_RESP_XLATE_SSE)
    {
        if (ctx->ttft < 0) {
            /* time to first token: the first bytes of the stream */
            tp = ngx_timeofday();
            ctx->ttft = (ngx_msec_int_t) ((tp->sec - r->start_sec) * 1000
                                          + (tp->msec - r->start_msec));
        }
    }

    last = 0;
    flush = 0;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        last |= b->last_buf;
        flush |= b->flush;

        switch (rs->mode) {

        case NGX_AILINK_RESP_OPENAI_JSON:
            if (!ngx_ailink_resp_capture(rs, b)) {
                rs->mode = 0;
            }
            break;

        case NGX_AILINK_RESP_XLATE_JSON:
            (void) ngx_ailink_resp_capture(rs, b);
            b->pos = b->last;
            break;

        default: /* SSE */
            if (ngx_ailink_sse_feed(&rs->sse, b->pos, b->last) != NGX_OK) {
                return NGX_ERROR;
            }

            ngx_ailink_resp_oversized(rs);

            if (reemit && ngx_ailink_resp_hold(rs, b) != NGX_OK) {
                return NGX_ERROR;
            }
        }
    }

    switch (rs->mode) {

    case NGX_AILINK_RESP_OPENAI_JSON:
        if (last) {
            ngx_ailink_resp_openai_json(rs);
        }

        /* fall through */

    case 0:
        return ngx_http_next_body_filter(r, in);

    case NGX_AILINK_RESP_XLATE_JSON:

        if (!last && flush && ngx_ailink_resp_upstream_gone(r)) {
            /* cut off mid-body: still answer, with a 502 */
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "ailink: %V response from \"%V\" ended early",
                          &ctx->provider->name, &ctx->upstream);
            rs->overflow = 1;
            last = 1;
        }

        return last ? ngx_ailink_resp_xlate_json(rs) : NGX_OK;
    }

    /* SSE */

    end = !rs->xstream.done
          && (last || (flush && ngx_ailink_resp_upstream_gone(r)));

    if (!reemit) {
        if (end && ctx->route == NGX_AILINK_ROUTE_LLM) {
            return ngx_ailink_resp_passthrough_end(rs, in);
        }

        return ngx_http_next_body_filter(r, in);
    }

    if (end) {
        if (ngx_ailink_resp_stream_end(rs) != NGX_OK) {
            return NGX_ERROR;
        }

        last = 1;
    }

    if (rs->failed) {
        return NGX_ERROR;
    }

    return ngx_ailink_resp_send(rs, last);
}


ngx_int_t
ngx_ailink_response_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_ailink_resp_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_ailink_resp_body_filter;

    return NGX_OK;
}
