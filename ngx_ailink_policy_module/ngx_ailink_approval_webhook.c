
/*
 * Copyright (C) AILink
 *
 * The approval webhook (ailink_approval_webhook uri): when an approval is
 * created, a background subrequest POSTs a JSON notification to the given
 * internal location, whose proxy settings say where it goes (TLS, a Slack
 * or pager URL), how long it may take (proxy_*_timeout) and how often it
 * is tried (proxy_next_upstream, proxy_next_upstream_tries).  Nothing
 * waits for it: the agent's 202 is sent at once, and the worker goes on.
 * The subrequest carries none of the agent's request headers (its token,
 * the credential the gateway injected): only the notification.
 */


#include "ngx_ailink_approval.h"


static ngx_int_t
ngx_ailink_approval_webhook_done(ngx_http_request_t *r, void *data,
    ngx_int_t rc)
{
    ngx_str_t  *id = data;

    if (r->headers_out.status < 200 || r->headers_out.status >= 300
        || rc >= NGX_HTTP_SPECIAL_RESPONSE || rc == NGX_ERROR)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "ailink approval %V: the webhook answered %ui",
                      id, r->headers_out.status ? r->headers_out.status
                                                : (ngx_uint_t) rc);

    } else {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "ailink approval %V: the webhook was notified", id);
    }

    return rc;
}


void
ngx_ailink_approval_webhook(ngx_http_request_t *r, ngx_ailink_approval_t *apr)
{
    u_char                       *p;
    ngx_buf_t                    *b;
    ngx_str_t                    *id;
    ngx_chain_t                  *cl;
    ngx_http_request_t           *sr;
    ngx_http_request_body_t      *rb;
    ngx_http_post_subrequest_t   *ps;
    ngx_ailink_approval_conf_t   *acf;

    acf = ngx_http_get_module_main_conf(r, ngx_ailink_approval_module);

    if (acf->webhook.len == 0) {
        return;
    }

    b = ngx_create_temp_buf(r->pool, ngx_ailink_approval_view_len(apr)
                                     + sizeof("{\"type\":\"approval.created\","
                                              "\"approval\":}"));
    ps = ngx_palloc(r->pool, sizeof(ngx_http_post_subrequest_t));
    rb = ngx_pcalloc(r->pool, sizeof(ngx_http_request_body_t));
    cl = ngx_alloc_chain_link(r->pool);
    id = ngx_palloc(r->pool, sizeof(ngx_str_t));

    if (b == NULL || ps == NULL || rb == NULL || cl == NULL || id == NULL) {
        goto failed;
    }

    p = ngx_cpymem(b->last, "{\"type\":\"approval.created\",\"approval\":",
                   sizeof("{\"type\":\"approval.created\",\"approval\":") - 1);
    p = ngx_ailink_approval_admin_view(p, apr, ngx_time());
    *p++ = '}';
    b->last = p;
    b->last_buf = 1;
    b->last_in_chain = 1;

    cl->buf = b;
    cl->next = NULL;
    rb->bufs = cl;

    *id = apr->id;
    ps->handler = ngx_ailink_approval_webhook_done;
    ps->data = id;

    if (ngx_http_subrequest(r, &acf->webhook, NULL, &sr, ps,
                            NGX_HTTP_SUBREQUEST_BACKGROUND)
        != NGX_OK)
    {
        goto failed;
    }

    /* only the notification: none of the agent's headers */
    ngx_memzero(&sr->headers_in, sizeof(ngx_http_headers_in_t));

    if (ngx_list_init(&sr->headers_in.headers, r->pool, 2,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        goto failed;
    }

    sr->headers_in.content_length_n = b->last - b->pos;
    sr->headers_in.keep_alive_n = -1;
    sr->request_body = rb;
    sr->method = NGX_HTTP_POST;
    ngx_str_set(&sr->method_name, "POST");
    sr->header_only = 1;

    return;

failed:

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "ailink approval %V: the webhook could not be started",
                  &apr->id);
}
