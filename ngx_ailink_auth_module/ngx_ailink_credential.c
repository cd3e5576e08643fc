
/*
 * Copyright (C) AILink
 *
 * Credential injection.  The request headers the proxy module forwards are
 * rebuilt without the client's Authorization and Proxy-Authorization (the
 * virtual token), without every X-AILink-* header, and without any header
 * the credential itself is about to set; then the real credential is added
 * in its scheme.  A query parameter credential goes into the upstream URL
 * instead (see the translate module), and is masked in error log lines.
 */


#include "ngx_ailink_auth.h"


typedef struct {
    ngx_ailink_inject_t        *inject;
    ngx_uint_t                  llm;
} ngx_ailink_inject_headers_t;


/* the headers the upstream never gets: NGX_DECLINED */

static ngx_int_t
ngx_ailink_inject_keep_header(ngx_http_request_t *r, ngx_table_elt_t *h,
    void *data)
{
    ngx_ailink_inject_headers_t  *ih = data;

    if (h->key.len >= sizeof("X-AILink-") - 1
        && ngx_strncasecmp(h->key.data, (u_char *) "X-AILink-",
                           sizeof("X-AILink-") - 1) == 0)
    {
        return NGX_DECLINED;
    }

    if ((h->key.len == sizeof("Authorization") - 1
         && ngx_strncasecmp(h->key.data, (u_char *) "Authorization",
                            sizeof("Authorization") - 1) == 0)
        || (h->key.len == sizeof("Proxy-Authorization") - 1
            && ngx_strncasecmp(h->key.data, (u_char *) "Proxy-Authorization",
                               sizeof("Proxy-Authorization") - 1) == 0))
    {
        /* the virtual token, wherever a client put it */
        return NGX_DECLINED;
    }

    if (ih->inject->scheme == NGX_AILINK_SCHEME_HEADER
        && h->key.len == ih->inject->name.len
        && ngx_strncasecmp(h->key.data, ih->inject->name.data, h->key.len)
           == 0)
    {
        return NGX_DECLINED;
    }

    /* the gateway reads LLM responses for usage: no compression */
    if (ih->llm
        && h->key.len == sizeof("Accept-Encoding") - 1
        && ngx_strncasecmp(h->key.data, (u_char *) "Accept-Encoding",
                           sizeof("Accept-Encoding") - 1) == 0)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * The client's own key, for tokens without a stored credential: NGX_OK,
 * NGX_DECLINED when there is none, NGX_ABORT when it holds a control
 * character.  nginx refuses CR and NUL in header values itself, but lets
 * the others through (a tab, ESC, DEL, ...); a key is one line of
 * printable characters, and this one is about to become a header value.
 */

ngx_int_t
ngx_ailink_byok_key(ngx_http_request_t *r, ngx_str_t *key)
{
    size_t            i;
    ngx_table_elt_t  *h;

    h = ngx_ailink_find_header(r, "X-AILink-Upstream-Key",
                               sizeof("X-AILink-Upstream-Key") - 1);

    if (h == NULL || h->value.len == 0) {
        return NGX_DECLINED;
    }

    for (i = 0; i < h->value.len; i++) {
        if (h->value.data[i] < ' ' || h->value.data[i] == 0x7f) {
            return NGX_ABORT;
        }
    }

    *key = h->value;

    return NGX_OK;
}


ngx_int_t
ngx_ailink_inject_credential(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_ailink_inject_t *inject, ngx_str_t *secret, ngx_uint_t llm)
{
    u_char                       *p;
    ngx_str_t                     scheme, value;
    ngx_table_elt_t              *nh;
    ngx_ailink_inject_headers_t   ih;

    ih.inject = inject;
    ih.llm = llm;

    if (ngx_ailink_rebuild_headers(r, ngx_ailink_inject_keep_header, &ih)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    r->headers_in.authorization = NULL;

    ctx->secret = *secret;

    if (secret->len == 0 || inject->scheme == NGX_AILINK_SCHEME_QUERY) {
        return NGX_OK;
    }

    nh = ngx_list_push(&r->headers_in.headers);
    if (nh == NULL) {
        return NGX_ERROR;
    }

    nh->hash = 1;

    if (inject->scheme == NGX_AILINK_SCHEME_HEADER) {
        nh->key = inject->name;
        nh->value = *secret;

    } else {
        ngx_str_set(&nh->key, "Authorization");

        if (inject->scheme == NGX_AILINK_SCHEME_BASIC) {
            /* the secret is "user:password" */
            ngx_str_set(&scheme, "Basic ");

            value.len = ngx_base64_encoded_length(secret->len);
            value.data = ngx_pnalloc(r->pool, value.len);
            if (value.data == NULL) {
                return NGX_ERROR;
            }

            ngx_encode_base64(&value, secret);

        } else {
            ngx_str_set(&scheme, "Bearer ");
            value = *secret;
        }

        nh->value.len = scheme.len + value.len;
        nh->value.data = ngx_pnalloc(r->pool, nh->value.len);
        if (nh->value.data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(nh->value.data, scheme.data, scheme.len);
        ngx_memcpy(p, value.data, value.len);
    }

    nh->lowcase_key = ngx_pnalloc(r->pool, nh->key.len);
    if (nh->lowcase_key == NULL) {
        return NGX_ERROR;
    }

    ngx_strlow(nh->lowcase_key, nh->key.data, nh->key.len);

    return NGX_OK;
}
