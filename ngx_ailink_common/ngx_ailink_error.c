
/*
 * Copyright (C) AILink
 *
 * Errors the gateway produces itself, in OpenAI's envelope so that OpenAI
 * SDKs surface the message:
 *   {"error": {"type", "code", "message", "param", "request_id"}}
 * with, before the request id, the extra members a refusal put in
 * ctx->error_extra: a JSON fragment such as ,"policy_name":"...","reason":
 * "..." or ,"guardrail":"...","matches":[...].
 */


#include "ngx_ailink_common.h"


static const char *
ngx_ailink_error_type(ngx_uint_t status)
{
    switch (status) {
    case NGX_HTTP_UNAUTHORIZED:
        return "authentication_error";
    case NGX_HTTP_FORBIDDEN:
        return "permission_error";
    case NGX_HTTP_TOO_MANY_REQUESTS:
        return "rate_limit_error";
    default:
        return status >= NGX_HTTP_INTERNAL_SERVER_ERROR
               ? "api_error" : "invalid_request_error";
    }
}


ngx_int_t
ngx_ailink_send_json(ngx_http_request_t *r, ngx_uint_t status, ngx_str_t *json)
{
    ngx_int_t          rc;
    ngx_buf_t         *b;
    ngx_chain_t        out;
    ngx_ailink_ctx_t  *ctx;

    if (r->header_sent) {
        return NGX_ERROR;
    }

    ctx = ngx_ailink_get_ctx(r);
    if (ctx) {
        /* response filters leave the gateway's own answers alone */
        ctx->own_response = 1;
    }

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    ngx_http_clear_accept_ranges(r);
    ngx_http_clear_last_modified(r);
    ngx_http_clear_etag(r);

    r->headers_out.status = status;
    r->headers_out.content_length_n = json->len;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    if (r->method == NGX_HTTP_HEAD || json->len == 0) {
        r->header_only = 1;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = json->data;
    b->last = json->data + json->len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* the envelope as a string, for senders and for the response filter */

ngx_int_t
ngx_ailink_error_body(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message, const char *param, ngx_str_t *json)
{
    size_t             len;
    u_char            *p;
    ngx_str_t          s;
    const char        *type;
    ngx_ailink_ctx_t  *ctx;

    ctx = ngx_ailink_create_ctx(r);
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ctx->error_code = code;
    type = ngx_ailink_error_type(status);

    len = sizeof("{\"error\":{\"type\":\"\",\"code\":\"\",\"message\":\"\","
                 "\"param\":null,\"request_id\":\"\"}}\n")
          + ngx_strlen(type) + ctx->request_id.len + ctx->error_extra.len;

    s.data = (u_char *) code;
    s.len = ngx_strlen(code);
    len += ngx_ailink_json_escape_len(&s);

    s.data = (u_char *) message;
    s.len = ngx_strlen(message);
    len += ngx_ailink_json_escape_len(&s);

    if (param) {
        s.data = (u_char *) param;
        s.len = ngx_strlen(param);
        len += ngx_ailink_json_escape_len(&s) + 2;
    }

    json->data = ngx_pnalloc(r->pool, len);
    if (json->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(json->data, "{\"error\":{\"type\":\"%s\",\"code\":\"",
                    type);

    s.data = (u_char *) code;
    s.len = ngx_strlen(code);
    p = ngx_ailink_json_escape(p, &s);

    p = ngx_cpymem(p, "\",\"message\":\"", sizeof("\",\"message\":\"") - 1);

    s.data = (u_char *) message;
    s.len = ngx_strlen(message);
    p = ngx_ailink_json_escape(p, &s);

    p = ngx_cpymem(p, "\",\"param\":", sizeof("\",\"param\":") - 1);

    if (param) {
        *p++ = '"';
        s.data = (u_char *) param;
        s.len = ngx_strlen(param);
        p = ngx_ailink_json_escape(p, &s);
        *p++ = '"';

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    if (ctx->error_extra.len) {
        p = ngx_cpymem(p, ctx->error_extra.data, ctx->error_extra.len);
    }

    p = ngx_sprintf(p, ",\"request_id\":\"%V\"}}\n", &ctx->request_id);

    json->len = p - json->data;

    return NGX_OK;
}


ngx_int_t
ngx_ailink_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message, const char *param)
{
    ngx_str_t  json;

    if (ngx_ailink_error_body(r, status, code, message, param, &json)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_ailink_send_json(r, status, &json);
}


/* for phase handlers: send the envelope and end the request */

void
ngx_ailink_finalize_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message, const char *param)
{
    ngx_int_t  rc;

    rc = ngx_ailink_send_error(r, status, code, message, param);

    ngx_http_finalize_request(r, rc);
}


/* the same with more members: extra is a JSON fragment, see above */

void
ngx_ailink_finalize_error_extra(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message, const char *param,
    ngx_str_t *extra)
{
    ngx_ailink_ctx_t  *ctx;

    ctx = ngx_ailink_create_ctx(r);

    if (ctx == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ctx->error_extra = *extra;

    ngx_ailink_finalize_error(r, status, code, message, param);
}
