
/*
 * Copyright (C) AILink
 *
 * Endpoints that need no token: /healthz, /readyz, and the error page that
 * turns nginx's own error responses (413 body too large, 502 and 504 from
 * the proxy, 404 for an unknown route) into the contract's JSON envelope.
 */


#include "ngx_ailink_auth.h"


/* not among nginx's own status codes; 494 is nginx's name for it */
#define NGX_AILINK_HTTP_HEADER_FIELDS_TOO_LARGE  431


typedef struct {
    ngx_uint_t   status;
    const char  *code;
    const char  *message;
} ngx_ailink_status_t;


static ngx_ailink_status_t  ngx_ailink_statuses[] = {
    { NGX_HTTP_BAD_REQUEST, "invalid_request", "malformed request" },
    { NGX_HTTP_UNAUTHORIZED, "invalid_token", "authentication required" },
    { NGX_HTTP_FORBIDDEN, "forbidden", "forbidden" },
    { NGX_HTTP_NOT_FOUND, "not_found", "unknown route" },
    { NGX_HTTP_NOT_ALLOWED, "method_not_allowed",
      "method not allowed on this route" },
    { NGX_HTTP_REQUEST_TIME_OUT, "request_timeout",
      "the client did not send the request in time" },
    { NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "payload_too_large",
      "request body is larger than the gateway accepts" },
    { NGX_HTTP_REQUEST_URI_TOO_LARGE, "invalid_request",
      "request URI is too long" },
    { NGX_HTTP_TOO_MANY_REQUESTS, "rate_limited", "too many requests" },
    { NGX_AILINK_HTTP_HEADER_FIELDS_TOO_LARGE, "invalid_request",
      "request headers are too large" },
    { NGX_HTTP_INTERNAL_SERVER_ERROR, "internal_error",
      "internal gateway error" },
    { NGX_HTTP_NOT_IMPLEMENTED, "invalid_request",
      "the request asks for what the gateway does not implement "
      "(a Transfer-Encoding or a method)" },
    { NGX_HTTP_BAD_GATEWAY, "upstream_error",
      "the upstream could not be reached or sent an invalid response" },
    { NGX_HTTP_SERVICE_UNAVAILABLE, "service_unavailable",
      "the service is unavailable" },
    { NGX_HTTP_GATEWAY_TIME_OUT, "upstream_timeout",
      "the upstream did not answer in time" },
    { 0, NULL, NULL }
};


/* what an error status without an entry of its own is answered with */
static ngx_ailink_status_t  ngx_ailink_status_client = {
    0, "invalid_request", "the request was refused"
};

static ngx_ailink_status_t  ngx_ailink_status_server = {
    0, "internal_error", "internal gateway error"
};


ngx_int_t
ngx_ailink_endpoint_json(ngx_http_request_t *r, ngx_uint_t status,
    const char *body)
{
    ngx_int_t   rc;
    ngx_str_t   json;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    if (ngx_ailink_create_ctx(r) == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    json.data = (u_char *) body;
    json.len = ngx_strlen(body);

    return ngx_ailink_send_json(r, status, &json);
}


ngx_int_t
ngx_ailink_health_handler(ngx_http_request_t *r)
{
    return ngx_ailink_endpoint_json(r, NGX_HTTP_OK, "{\"status\":\"ok\"}\n");
}


/* ngx_ailink_ready_handler(): ngx_ailink_ready.c */


/*
 * Nothing of the gateway saw the request before it failed, often before
 * its request line was parsed, and error_page has since made it a GET of
 * this location.  The audit records the method and path of the request
 * line as the client sent them, as far as nginx read them.
 */

static void
ngx_ailink_error_request_line(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx)
{
    u_char  *p;

    ngx_str_null(&ctx->method);
    ngx_str_null(&ctx->path);

    if (r->request_start && r->method_end && r->method_end >= r->request_start)
    {
        ctx->method.data = r->request_start;
        ctx->method.len = r->method_end + 1 - r->request_start;
    }

    if (r->uri_start && r->uri_end && r->uri_end > r->uri_start) {
        p = ngx_strlchr(r->uri_start, r->uri_end, '?');

        ctx->path.data = r->uri_start;
        ctx->path.len = (p ? p : r->uri_end) - r->uri_start;
    }
}


ngx_int_t
ngx_ailink_error_page_handler(ngx_http_request_t *r)
{
    ngx_uint_t            status;
    ngx_ailink_ctx_t     *ctx;
    ngx_ailink_status_t  *s;

    if (ngx_ailink_fallback_error && ngx_ailink_fallback_error(r) == NGX_DONE)
    {
        /* an upstream failed and another target takes the request */
        return NGX_DONE;
    }

    /* reached through error_page: the status nginx was about to send */
    status = r->err_status ? r->err_status : NGX_HTTP_NOT_FOUND;

    if (status == NGX_HTTP_REQUEST_HEADER_TOO_LARGE
        || status == NGX_AILINK_HTTP_HEADER_FIELDS_TOO_LARGE)
    {
        status = NGX_AILINK_HTTP_HEADER_FIELDS_TOO_LARGE;
        ngx_str_set(&r->headers_out.status_line,
                    "431 Request Header Fields Too Large");

    } else if (status == NGX_HTTP_TO_HTTPS
               || status == NGX_HTTPS_CERT_ERROR
               || status == NGX_HTTPS_NO_CERT
               || status == NGX_HTTP_CLIENT_CLOSED_REQUEST)
    {
        status = NGX_HTTP_BAD_REQUEST;
    }

    for (s = ngx_ailink_statuses; s->status; s++) {
        if (s->status == status) {
            break;
        }
    }

    if (s->status == 0) {
        s = (status >= NGX_HTTP_INTERNAL_SERVER_ERROR)
            ? &ngx_ailink_status_server : &ngx_ailink_status_client;
    }

    if (ngx_ailink_get_ctx(r) == NULL) {
        ctx = ngx_ailink_create_ctx(r);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_ailink_error_request_line(r, ctx);
    }

    r->err_status = 0;

    return ngx_ailink_send_error(r, status, s->code, s->message, NULL);
}
