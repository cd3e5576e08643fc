
/*
 * Copyright (C) AILink
 *
 * The resources of the admin API that other modules serve, mounted in its
 * resource table: under one "location /api/v1/ { ailink_admin_api; }"
 *
 *   GET   /approvals[?status=]            the approvals API's handler
 *   GET   /approvals/<id>
 *   POST  /approvals/<id>/decision
 *   GET   /cache/stats                    the cache API's handler
 *   POST  /cache/flush
 *   GET   /health/upstreams               the breaker API's handler
 *   GET   /tokens/<id>/circuit-breaker    (from the tokens resource)
 *   PATCH /tokens/<id>/circuit-breaker
 *
 * The handlers are the same as those of the standalone directives
 * (ailink_approvals_api, ailink_cache_api, ailink_breaker_api), which stay
 * for existing configurations.  They run once the admin API has checked
 * the key and read the body: reading it again calls them back at once.
 */


#include "ngx_ailink_admin.h"
#include "ngx_ailink_approval.h"
#include "ngx_ailink_breaker.h"
#include "ngx_ailink_cache.h"


static ngx_int_t ngx_ailink_admin_approvals(ngx_ailink_admin_req_t *ar);
static ngx_int_t ngx_ailink_admin_cache(ngx_ailink_admin_req_t *ar);
static ngx_int_t ngx_ailink_admin_health(ngx_ailink_admin_req_t *ar);


ngx_int_t
ngx_ailink_admin_routes_init(void)
{
    if (ngx_ailink_admin_route_add("approvals", ngx_ailink_admin_approvals)
        != NGX_OK
        || ngx_ailink_admin_route_add("cache", ngx_ailink_admin_cache)
           != NGX_OK
        || ngx_ailink_admin_route_add("health", ngx_ailink_admin_health)
           != NGX_OK
        || ngx_ailink_admin_route_add("spend", ngx_ailink_admin_spend)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * A content handler's result, as the admin API's dispatcher takes it:
 * whatever the handler sent is final (never a change to commit).
 */

static ngx_int_t
ngx_ailink_admin_delegate(ngx_ailink_admin_req_t *ar, ngx_http_handler_pt h)
{
    ngx_int_t  rc;

    rc = h(ar->request);

    if (rc == NGX_AGAIN || rc == NGX_DECLINED || rc == NGX_BUSY) {
        ar->sent_rc = (rc == NGX_AGAIN) ? NGX_AGAIN : NGX_OK;
        return NGX_DECLINED;
    }

    return rc;
}


static ngx_int_t
ngx_ailink_admin_approvals(ngx_ailink_admin_req_t *ar)
{
    return ngx_ailink_admin_delegate(ar, ngx_ailink_approval_api_handler);
}


static ngx_int_t
ngx_ailink_admin_cache(ngx_ailink_admin_req_t *ar)
{
    ngx_uint_t  method;

    method = ar->request->method;

    if (ar->sub.len
        || !((ar->id.len == 5 && ngx_strncmp(ar->id.data, "stats", 5) == 0)
             || (ar->id.len == 5
                 && ngx_strncmp(ar->id.data, "flush", 5) == 0)))
    {
        return ngx_ailink_admin_fail(ar, NGX_HTTP_NOT_FOUND, "not_found",
                                     "GET /cache/stats, POST /cache/flush");
    }

    if (ar->id.data[0] == 's'
        ? (method != NGX_HTTP_GET && method != NGX_HTTP_HEAD)
        : method != NGX_HTTP_POST)
    {
        return ngx_ailink_admin_fail(ar, NGX_HTTP_NOT_ALLOWED,
                                     "method_not_allowed",
                                     "GET /cache/stats, POST /cache/flush");
    }

    return ngx_ailink_admin_delegate(ar, ngx_ailink_cache_api_handler);
}


static ngx_int_t
ngx_ailink_admin_health(ngx_ailink_admin_req_t *ar)
{
    if (ar->sub.len || ar->id.len != sizeof("upstreams") - 1
        || ngx_strncmp(ar->id.data, "upstreams", ar->id.len) != 0)
    {
        return ngx_ailink_admin_fail(ar, NGX_HTTP_NOT_FOUND, "not_found",
                                     "GET /health/upstreams");
    }

    return ngx_ailink_admin_delegate(ar, ngx_ailink_breaker_api_handler);
}


/* /tokens/<id>/circuit-breaker, from the tokens resource */

ngx_int_t
ngx_ailink_admin_breaker(ngx_ailink_admin_req_t *ar)
{
    if (ar->id.len == 0 || ar->sub.len != sizeof("circuit-breaker") - 1
        || ngx_strncmp(ar->sub.data, "circuit-breaker", ar->sub.len) != 0)
    {
        return ngx_ailink_admin_fail(ar, NGX_HTTP_NOT_FOUND, "not_found",
                                     "no such admin resource");
    }

    return ngx_ailink_admin_delegate(ar, ngx_ailink_breaker_api_handler);
}


static void
ngx_ailink_admin_routes_release(void *data)
{
    ngx_ailink_admin_overlay_release(data);
}


/*
 * A token of the store by id, for the breakers' API: the overlay that
 * holds it outlives the request.
 */

ngx_ailink_token_t *
ngx_ailink_admin_token_find_id(ngx_http_request_t *r, ngx_str_t *id)
{
    ngx_uint_t                     i;
    ngx_pool_cleanup_t            *cln;
    ngx_ailink_token_t            *tok;
    ngx_ailink_admin_overlay_t    *ov;
    ngx_ailink_admin_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_ailink_admin_module);

    if (amcf == NULL || amcf->store == NULL) {
        return NULL;
    }

    ov = ngx_ailink_admin_overlay(r, amcf);
    if (ov == NULL) {
        return NULL;
    }

    tok = ov->conf.tokens.elts;

    for (i = 0; i < ov->conf.tokens.nelts; i++) {
        if (tok[i].id.len == id->len
            && ngx_strncmp(tok[i].id.data, id->data, id->len) == 0)
        {
            cln = ngx_pool_cleanup_add(r->pool, 0);
            if (cln == NULL) {
                return NULL;
            }

            ov->refs++;
            cln->handler = ngx_ailink_admin_routes_release;
            cln->data = ov;

            return &tok[i];
        }
    }

    return NULL;
}
