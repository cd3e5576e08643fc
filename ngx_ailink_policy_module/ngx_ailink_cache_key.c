
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


typedef struct {
    u_char                     *pos;
    u_char                     *end;
    ngx_pool_t                 *pool;
    u_char                     *start;
    ngx_uint_t                  failed;
} ngx_ailink_cache_buf_t;


static void ngx_ailink_cache_walk(ngx_ailink_cache_buf_t *b, cJSON *item,
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


/* room for len more bytes: the canonical text is hashed once, at the end */

static ngx_uint_t
ngx_ailink_cache_room(ngx_ailink_cache_buf_t *b, size_t len)
{
    u_char  *p;
    size_t   size, used;

    if ((size_t) (b->end - b->pos) >= len) {
        return 1;
    }

    if (b->failed) {
        return 0;
    }

    used = b->pos - b->start;
    size = 2 * (b->end - b->start) + len;

    p = ngx_pnalloc(b->pool, size);
    if (p == NULL) {
        b->failed = 1;
        return 0;
    }

    ngx_memcpy(p, b->start, used);
    b->start = p;
    b->pos = p + used;
    b->end = p + size;

    return 1;
}


static void
ngx_ailink_cache_byte(ngx_ailink_cache_buf_t *b, u_char c)
{
    if (ngx_ailink_cache_room(b, 1)) {
        *b->pos++ = c;
    }
}


static void
ngx_ailink_cache_feed(ngx_ailink_cache_buf_t *b, const void *p, size_t len)
{
    uint32_t  n;

    /* each piece is length-prefixed: "ab","c" and "a","bc" differ */
    if (ngx_ailink_cache_room(b, sizeof(uint32_t) + len)) {
        n = (uint32_t) len;
        b->pos = ngx_cpymem(b->pos, &n, sizeof(uint32_t));
        b->pos = ngx_cpymem(b->pos, p, len);
    }
}


static void
ngx_ailink_cache_walk(ngx_ailink_cache_buf_t *b, cJSON *item,
    ngx_uint_t depth)
{
    int          n;
    u_char       buf[NGX_INT64_LEN + 32];
    cJSON       *c, *stack[32], **v;
    ngx_str_t    s;
    ngx_uint_t   i, count;

    if (depth > 64) {
        ngx_ailink_cache_byte(b, '!');
        return;
    }

    switch (item->type & 0xff) {

    case cJSON_NULL:
        ngx_ailink_cache_byte(b, 'n');
        return;

    case cJSON_True:
        ngx_ailink_cache_byte(b, 't');
        return;

    case cJSON_False:
        ngx_ailink_cache_byte(b, 'f');
        return;

    case cJSON_Number:
        ngx_ailink_cache_byte(b, '#');

        /* an integer too large for a double by its text, else 1.0 = 1 */
        if (item->valuestring
            && strpbrk(item->valuestring, ".eE") == NULL)
        {
            ngx_ailink_cache_feed(b, item->valuestring,
                                  ngx_strlen(item->valuestring));

        } else if (item->valuedouble >= -9007199254740992.0
                   && item->valuedouble <= 9007199254740992.0
                   && item->valuedouble == (double) (int64_t) item->valuedouble)
        {
            /* integral: printed as an integer, without printf's floats */
            n = ngx_sprintf(buf, "%L", (int64_t) item->valuedouble) - buf;
            ngx_ailink_cache_feed(b, buf, n);

        } else {
            n = snprintf((char *) buf, sizeof(buf), "%.17g",
                         item->valuedouble);
            ngx_ailink_cache_feed(b, buf, n);
        }

        return;

    case cJSON_String:
        ngx_ailink_cache_byte(b, 's');
        ngx_ailink_json_str(item, &s);
        ngx_ailink_cache_feed(b, s.data, s.len);
        return;

    case cJSON_Array:
        ngx_ailink_cache_byte(b, '[');

        for (c = item->child; c; c = c->next) {
            ngx_ailink_cache_walk(b, c, depth + 1);
        }

        ngx_ailink_cache_byte(b, ']');
        return;

    case cJSON_Object:
        count = 0;

        for (c = item->child; c; c = c->next) {
            count++;
        }

        v = (count <= 32) ? stack : ngx_ailink_json_alloc(
                                        count * sizeof(cJSON *));
        if (v == NULL) {
            b->failed = 1;
            return;
        }

        i = 0;

        for (c = item->child; c; c = c->next) {
            v[i++] = c;
        }

        if (count > 1) {
            ngx_qsort(v, count, sizeof(cJSON *), ngx_ailink_cache_cmp);
        }

        ngx_ailink_cache_byte(b, '{');

        for (i = 0; i < count; i++) {
            ngx_ailink_cache_feed(b, v[i]->string, strlen(v[i]->string));
            ngx_ailink_cache_walk(b, v[i], depth + 1);
        }

        ngx_ailink_cache_byte(b, '}');
        return;

    default:
        ngx_ailink_cache_byte(b, '?');
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
    cJSON                   *json, *t;
    ngx_int_t                rc;
    unsigned int             len;
    ngx_ailink_cache_buf_t   b;

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

    if (cJSON_IsObject(json)) {
        t = ngx_ailink_json_get(json, "temperature");
        *random = (cJSON_IsNumber(t) && t->valuedouble > 0);

        b.pool = r->pool;
        b.failed = 0;
        b.start = ngx_pnalloc(r->pool, ctx->body.len + r->uri.len
                                       + guardrails->len + 256);
        b.pos = b.start;
        b.end = b.start ? b.start + ctx->body.len + r->uri.len
                          + guardrails->len + 256
                        : NULL;

        if (b.start == NULL) {
            b.failed = 1;
        }

        ngx_ailink_cache_feed(&b, r->uri.data, r->uri.len);

        if (guardrails->data) {
            ngx_ailink_cache_feed(&b, guardrails->data, guardrails->len);

        } else {
            ngx_ailink_cache_byte(&b, '-');
        }

        ngx_ailink_cache_walk(&b, json, 0);

        rc = (!b.failed
              && EVP_DigestInit_ex2(ngx_ailink_cache_md,
                                    ngx_ailink_cache_sha256, NULL) == 1
              && EVP_DigestUpdate(ngx_ailink_cache_md, b.start,
                                  b.pos - b.start) == 1
              && EVP_DigestFinal_ex(ngx_ailink_cache_md, digest, &len) == 1)
             ? NGX_OK : NGX_ERROR;
    }

    ngx_ailink_json_delete(json);
    ngx_ailink_json_arena(NULL);

    return rc;
}


/* the digest's context, freed as a worker exits */

void
ngx_ailink_cache_key_free(void)
{
    EVP_MD_CTX_free(ngx_ailink_cache_md);
    EVP_MD_free(ngx_ailink_cache_sha256);

    ngx_ailink_cache_md = NULL;
    ngx_ailink_cache_sha256 = NULL;
}
