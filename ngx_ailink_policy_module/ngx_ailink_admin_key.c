
/*
 * Copyright (C) AILink
 *
 * Admin keys for the cache and breaker APIs, until the admin API absorbs
 * them: "admin_keys" in the config file lists the SHA-256 (hex) of each
 * key; a request carries "Authorization: Bearer ailink_admin_...".  Fails
 * closed: no list, no key, or a key not in the list is 401 invalid_token.
 * One function on each side (load, check), so that a merge keeps one.
 */


#include "ngx_ailink_cache.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>


#define NGX_AILINK_ADMIN_PREFIX  "ailink_admin_"


ngx_int_t
ngx_ailink_admin_keys_load(ngx_conf_t *cf, ngx_ailink_conf_t *conf,
    cJSON *root)
{
    u_char      *hash;
    cJSON       *list, *item;
    ngx_str_t    s;
    ngx_uint_t   i;

    list = ngx_ailink_json_get(root, "admin_keys");

    if (list == NULL) {
        return NGX_OK;
    }

    if (!cJSON_IsArray(list)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ailink_config \"%V\": admin_keys: must be a list "
                           "of SHA-256 hashes (64 hex digits)", &conf->file);
        return NGX_ERROR;
    }

    conf->admin_keys = ngx_array_create(cf->pool, 2, NGX_AILINK_SHA256_LEN);
    if (conf->admin_keys == NULL) {
        return NGX_ERROR;
    }

    i = 0;

    cJSON_ArrayForEach(item, list) {

        if (!cJSON_IsString(item)) {
            goto invalid;
        }

        ngx_ailink_json_str(item, &s);

        if (s.len != 2 * NGX_AILINK_SHA256_LEN) {
            goto invalid;
        }

        hash = ngx_array_push(conf->admin_keys);
        if (hash == NULL) {
            return NGX_ERROR;
        }

        for (i = 0; i < NGX_AILINK_SHA256_LEN; i++) {
            if (ngx_hextoi(&s.data[2 * i], 2) == NGX_ERROR) {
                goto invalid;
            }

            hash[i] = (u_char) ngx_hextoi(&s.data[2 * i], 2);
        }
    }

    return NGX_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "ailink_config \"%V\": admin_keys: each must be the "
                       "SHA-256 of a key, 64 hex digits", &conf->file);
    return NGX_ERROR;
}


/* NGX_OK, or NGX_DECLINED: the caller refuses with 401 invalid_token */

ngx_int_t
ngx_ailink_admin_key_check(ngx_http_request_t *r)
{
    u_char              digest[EVP_MAX_MD_SIZE], *hash;
    ngx_str_t           key;
    ngx_uint_t          i, ok;
    unsigned int        len;
    ngx_ailink_conf_t  *conf;

    conf = ngx_ailink_get_conf(r);

    if (r->headers_in.authorization == NULL) {
        goto refuse;
    }

    key = r->headers_in.authorization->value;

    if (key.len < sizeof("Bearer ") - 1
        || ngx_strncasecmp(key.data, (u_char *) "Bearer ",
                           sizeof("Bearer ") - 1) != 0)
    {
        goto refuse;
    }

    key.data += sizeof("Bearer ") - 1;
    key.len -= sizeof("Bearer ") - 1;

    if (conf == NULL || conf->admin_keys == NULL
        || key.len <= sizeof(NGX_AILINK_ADMIN_PREFIX) - 1
        || ngx_strncmp(key.data, NGX_AILINK_ADMIN_PREFIX,
                       sizeof(NGX_AILINK_ADMIN_PREFIX) - 1) != 0
        || EVP_Digest(key.data, key.len, digest, &len, EVP_sha256(), NULL)
           != 1)
    {
        goto refuse;
    }

    hash = conf->admin_keys->elts;
    ok = 0;

    for (i = 0; i < conf->admin_keys->nelts; i++) {
        ok |= (CRYPTO_memcmp(digest, hash + i * NGX_AILINK_SHA256_LEN,
                             NGX_AILINK_SHA256_LEN) == 0);
    }

    if (ok) {
        return NGX_OK;
    }

refuse:

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "ailink: admin key refused");

    return NGX_DECLINED;
}
