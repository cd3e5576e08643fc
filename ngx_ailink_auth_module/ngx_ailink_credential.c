
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


static ngx_int_t
ngx_ailink_drop_header(ngx_table_elt_t *h, ngx_ailink_inject_t *inject,
    ngx_uint_t llm)
{
    if (h->key.len >= sizeof("X-AILink-") - 1
        && ngx_strncasecmp(h->key.data, (u_char *) "X-AILink-",
                           sizeof("X-AILink-") - 1) == 0)
    {
        return 1;
    }

    if ((h->key.len == sizeof("Authorization") - 1
         && ngx_strncasecmp(h->key.data, (u_char *) "Authorization",
                            sizeof("Authorization") - 1) == 0)
        || (h->key.len == sizeof("Proxy-Authorization") - 1
            && ngx_strncasecmp(h->key.data, (u_char *) "Proxy-Authorization",
                               sizeof("Proxy-Authorization") - 1) == 0))
    {
        /* the virtual token, wherever a client put it */
        return 1;
    }

    if (inject->scheme == NGX_AILINK_SCHEME_HEADER
        && h->key.len == inject->name.len
        && ngx_strncasecmp(h->key.data, inject->name.data, h->key.len) == 0)
    {
        return 1;
    }

    /* the gateway reads LLM responses for usage: no compression */
    if (llm
        && h->key.len == sizeof("Accept-Encoding") - 1
        && ngx_strncasecmp(h->key.data, (u_char *) "Accept-Encoding",
                           sizeof("Accept-Encoding") - 1) == 0)
    {
        return 1;
    }

    return 0;
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
    u_char           *p;
    ngx_str_t         scheme, value;
    ngx_uint_t        i;
    ngx_list_t        headers;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *nh;

    /* a list points into itself: copy the old one, init the new in place */
    headers = r->headers_in.headers;

    if (ngx_list_init(&r->headers_in.headers, r->pool, 20,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    part = &headers.part;
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

        if (ngx_ailink_drop_header(&h[i], inject, llm)) {
            continue;
        }

        nh = ngx_list_push(&r->headers_in.headers);
        if (nh == NULL) {
            return NGX_ERROR;
        }

        *nh = h[i];
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
