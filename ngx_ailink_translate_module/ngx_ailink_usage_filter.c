
/*
 * Copyright (C) AILink
 *
 * Reads token usage out of provider responses as they pass, without
 * changing them: a JSON response is captured up to
 * ailink_response_buffer_size and parsed at its end; an SSE stream is
 * parsed event by event with bounded memory, and only events that mention
 * "usage" are parsed as JSON.
 */


#include "ngx_ailink_translate.h"


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


static void
ngx_ailink_usage_sse_event(void *data, ngx_str_t *event, ngx_str_t *payload)
{
    cJSON             *json;
    ngx_ailink_ctx_t  *ctx = data;

    if (memmem(payload->data, payload->len, "\"usage\"", 7) == NULL) {
        return;
    }

    json = ngx_ailink_json_parse(payload);

    if (json) {
        ngx_ailink_usage_from_openai(&ctx->usage, json);
        cJSON_Delete(json);
    }
}


static ngx_uint_t
ngx_ailink_content_type_is(ngx_http_request_t *r, const char *type, size_t len)
{
    ngx_str_t  *ct;

    ct = &r->headers_out.content_type;

    return ct->len >= len && ngx_strncasecmp(ct->data, (u_char *) type, len)
                             == 0;
}


static ngx_int_t
ngx_ailink_usage_header_filter(ngx_http_request_t *r)
{
    size_t                            size;
    ngx_table_elt_t                  *h;
    ngx_ailink_ctx_t                 *ctx;
    ngx_ailink_translate_loc_conf_t  *tlcf;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_ailink_get_ctx(r);

    if (ctx == NULL || ctx->provider == NULL || !ctx->routed) {
        return ngx_http_next_header_filter(r);
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "X-AILink-Provider");
    h->value = ctx->provider->name;

    if (r->headers_out.status != NGX_HTTP_OK
        || ctx->provider->type != NGX_AILINK_PROVIDER_OPENAI
        || (r->headers_out.content_encoding
            && r->headers_out.content_encoding->value.len))
    {
        return ngx_http_next_header_filter(r);
    }

    tlcf = ngx_http_get_module_loc_conf(r, ngx_ailink_translate_module);

    if (ngx_ailink_content_type_is(r, "text/event-stream", 17)) {
        ctx->sse = ngx_palloc(r->pool, sizeof(ngx_ailink_sse_t));
        if (ctx->sse == NULL) {
            return NGX_ERROR;
        }

        ngx_ailink_sse_init(ctx->sse, r->pool, tlcf->stream_event_max_size,
                            ngx_ailink_usage_sse_event, ctx);

    } else if (ngx_ailink_content_type_is(r, "application/json", 16)) {
        size = tlcf->response_buffer_size;

        if (r->headers_out.content_length_n >= 0) {
            if ((size_t) r->headers_out.content_length_n > size) {
                /* too large to capture: usage stays unknown */
                return ngx_http_next_header_filter(r);
            }

            size = (size_t) r->headers_out.content_length_n;
        }

        ctx->capture = ngx_create_temp_buf(r->pool, size);
        if (ctx->capture == NULL) {
            return NGX_ERROR;
        }
    }

    r->filter_need_in_memory = 1;

    return ngx_http_next_header_filter(r);
}


static void
ngx_ailink_usage_capture(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_buf_t *b)
{
    cJSON      *json;
    size_t      len;
    ngx_str_t   text;

    len = b->last - b->pos;

    if (len > (size_t) (ctx->capture->end - ctx->capture->last)) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "ailink usage: response larger than "
                       "ailink_response_buffer_size, usage not read");
        ctx->capture = NULL;
        return;
    }

    if (len) {
        ctx->capture->last = ngx_cpymem(ctx->capture->last, b->pos, len);
    }

    if (!b->last_buf) {
        return;
    }

    text.data = ctx->capture->pos;
    text.len = ctx->capture->last - ctx->capture->pos;

    json = ngx_ailink_json_parse(&text);

    if (json) {
        ngx_ailink_usage_from_openai(&ctx->usage, json);
        cJSON_Delete(json);
    }

    ctx->capture = NULL;
}


static ngx_int_t
ngx_ailink_usage_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_buf_t         *b;
    ngx_chain_t       *cl;
    ngx_ailink_ctx_t  *ctx;

    if (r != r->main || in == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_ailink_get_ctx(r);

    if (ctx == NULL || (ctx->sse == NULL && ctx->capture == NULL)) {
        return ngx_http_next_body_filter(r, in);
    }

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (ctx->sse && ngx_buf_in_memory(b)) {
            if (ngx_ailink_sse_feed(ctx->sse, b->pos, b->last) != NGX_OK) {
                return NGX_ERROR;
            }

        } else if (ctx->capture && (ngx_buf_in_memory(b) || b->last_buf)) {
            ngx_ailink_usage_capture(r, ctx, b);
        }
    }

    return ngx_http_next_body_filter(r, in);
}


ngx_int_t
ngx_ailink_usage_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_ailink_usage_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_ailink_usage_body_filter;

    return NGX_OK;
}
