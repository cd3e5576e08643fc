
/*
 * Copyright (C) AILink
 *
 * The response cache's key: a SHA-256 of a canonical walk of the request
 * body (object members in sorted key order, no whitespace, strings by
 * their bytes and length, numbers by their value: "%.17g", or the text
 * of an integer a double cannot hold), so that key order and
 * whitespace do not matter, then the parts of the request outside the
 * body that change the answer: the path and the guardrails asked for.
 */


#include "ngx_ailink_common.h"
#include "ngx_ailink_cache.h"

#include <openssl/evp.h>


static void ngx_ailink_cache_walk(EVP_MD_CTX *md, cJSON *item,
    ngx_uint_t depth);


static EVP_MD      *ngx_ailink_cache_sha256;
static EVP_MD_CTX  *ngx_ailink_cache_md;


static int
ngx_ailink_cache_cmp(const void *one, const void *two)
{
    cJSON  *a = *(cJSON **) one;
    cJSON  *b = *(cJSON **) two;

    return strcmp(a->string, b->string);
}


static void
ngx_ailink_cache_feed(EVP_MD_CTX *md, const void *p, size_t len)
{
    uint32_t  n;

    /* each piece is length-prefixed: "ab","c" and "a","bc" differ */
    n = (uint32_t) len;
    EVP_DigestUpdate(md, &n, sizeof(n));
    EVP_DigestUpdate(md, p, len);
}


static void
ngx_ailink_cache_walk(EVP_MD_CTX *md, cJSON *item, ngx_uint_t depth)
{
    int          n;
    u_char       buf[NGX_INT64_LEN + 32];
    cJSON       *c, *stack[32], **v;
    ngx_str_t    s;
    ngx_uint_t   i, count;

    if (depth > 64) {
        EVP_DigestUpdate(md, "!", 1);
        return;
    }

    switch (item->type & 0xff) {

    case cJSON_NULL:
        EVP_DigestUpdate(md, "n", 1);
        return;

    case cJSON_True:
        EVP_DigestUpdate(md, "t", 1);
        return;

    case cJSON_False:
        EVP_DigestUpdate(md, "f", 1);
        return;

    case cJSON_Number:
        EVP_DigestUpdate(md, "#", 1);

        /* an integer too large for a double by its text, else 1.0 = 1 */
        if (item->valuestring
            && strpbrk(item->valuestring, ".eE") == NULL)
        {
            ngx_ailink_cache_feed(md, item->valuestring,
                                  ngx_strlen(item->valuestring));

        } else {
            n = snprintf((char *) buf, sizeof(buf), "%.17g",
                         item->valuedouble);
            ngx_ailink_cache_feed(md, buf, n);
        }

        return;

    case cJSON_String:
        EVP_DigestUpdate(md, "s", 1);
        ngx_ailink_json_str(item, &s);
        ngx_ailink_cache_feed(md, s.data, s.len);
        return;

    case cJSON_Array:
        EVP_DigestUpdate(md, "[", 1);

        for (c = item->child; c; c = c->next) {
            ngx_ailink_cache_walk(md, c, depth + 1);
        }

        EVP_DigestUpdate(md, "]", 1);
        return;

    case cJSON_Object:
        count = 0;

        for (c = item->child; c; c = c->next) {
            count++;
        }

        v = (count <= 32) ? stack : ngx_ailink_json_alloc(
                                        count * sizeof(cJSON *));
        if (v == NULL) {
            EVP_DigestUpdate(md, "!", 1);
            return;
        }

        i = 0;

        for (c = item->child; c; c = c->next) {
            v[i++] = c;
        }

        ngx_qsort(v, count, sizeof(cJSON *), ngx_ailink_cache_cmp);

        EVP_DigestUpdate(md, "{", 1);

        for (i = 0; i < count; i++) {
            ngx_ailink_cache_feed(md, v[i]->string, strlen(v[i]->string));
            ngx_ailink_cache_walk(md, v[i], depth + 1);
        }

        EVP_DigestUpdate(md, "}", 1);
        return;

    default:
        EVP_DigestUpdate(md, "?", 1);
        return;
    }
}


/*
 * The digest of a routed LLM request, and whether it asked for a
 * temperature above 0; NGX_DECLINED when the body is not a JSON object.
 */

ngx_int_t
ngx_ailink_cache_digest(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_str_t *guardrails, u_char *digest, ngx_uint_t *random)
{
    cJSON         *json, *t;
    ngx_int_t      rc;
    unsigned int   len;

    /* fetched once per process: OpenSSL 3 looks it up on every init */
    if (ngx_ailink_cache_md == NULL) {
        ngx_ailink_cache_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
        ngx_ailink_cache_md = EVP_MD_CTX_new();

        if (ngx_ailink_cache_sha256 == NULL || ngx_ailink_cache_md == NULL) {
            return NGX_ERROR;
        }
    }

    ngx_ailink_json_arena(r->pool);

    json = ngx_ailink_json_parse(&ctx->body);

    rc = NGX_DECLINED;

    if (cJSON_IsObject(json)
        && EVP_DigestInit_ex2(ngx_ailink_cache_md, ngx_ailink_cache_sha256, NULL)
           == 1)
    {
        t = ngx_ailink_json_get(json, "temperature");
        *random = (cJSON_IsNumber(t) && t->valuedouble > 0);

        ngx_ailink_cache_feed(ngx_ailink_cache_md, r->uri.data, r->uri.len);

        if (guardrails->data) {
            ngx_ailink_cache_feed(ngx_ailink_cache_md, guardrails->data,
                                  guardrails->len);

        } else {
            EVP_DigestUpdate(ngx_ailink_cache_md, "-", 1);
        }

        ngx_ailink_cache_walk(ngx_ailink_cache_md, json, 0);

        rc = (EVP_DigestFinal_ex(ngx_ailink_cache_md, digest, &len) == 1)
             ? NGX_OK : NGX_ERROR;
    }

    ngx_ailink_json_delete(json);
    ngx_ailink_json_arena(NULL);

    return rc;
}
