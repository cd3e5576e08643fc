
/*
 * Copyright (C) AILink
 *
 * Admin keys, for every API that needs one (approvals, cache, breakers):
 * "admin_keys" in the config file lists the SHA-256 (hex) of each key,
 * as a string or as {name, hash}; a request carries "Authorization:
 * Bearer ailink_admin_...".  The name (by default "admin:" and the first
 * eight hex digits) says who decided in the audit.  Fails closed: no
 * list, no key, or a key not in the list is refused.
 */


#include "ngx_ailink_cache.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>


#define NGX_AILINK_ADMIN_PREFIX  "ailink_admin_"


ngx_int_t
ngx_ailink_admin_keys_load(ngx_conf_t *cf, ngx_ailink_conf_t *conf,
    cJSON *root)
{
    u_char                 *p;
    cJSON                  *list, *item, *hash, *name;
    ngx_int_t               c;
    ngx_uint_t              i;
    ngx_ailink_admin_key_t *k;

    list = ngx_ailink_json_get(root, "admin_keys");

    if (list == NULL || cJSON_IsNull(list)) {
        return NGX_OK;
    }

    if (!cJSON_IsArray(list)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ailink_config \"%V\": admin_keys: must be a list "
                           "of SHA-256 hashes (64 hex digits)", &conf->file);
        return NGX_ERROR;
    }

    conf->admin_keys = ngx_array_create(cf->pool, 2,
                                        sizeof(ngx_ailink_admin_key_t));
    if (conf->admin_keys == NULL) {
        return NGX_ERROR;
    }

    cJSON_ArrayForEach(item, list) {
        hash = cJSON_IsObject(item) ? ngx_ailink_json_get(item, "hash") : item;
        name = cJSON_IsObject(item) ? ngx_ailink_json_get(item, "name")
                                    : NULL;

        if (!cJSON_IsString(hash)
            || ngx_strlen(hash->valuestring) != 2 * NGX_AILINK_SHA256_LEN
            || (name && !cJSON_IsString(name)))
        {
            goto invalid;
        }

        k = ngx_array_push(conf->admin_keys);
        if (k == NULL) {
            return NGX_ERROR;
        }

        p = (u_char *) hash->valuestring;

        for (i = 0; i < NGX_AILINK_SHA256_LEN; i++) {
            c = ngx_hextoi(p + 2 * i, 2);
            if (c == NGX_ERROR) {
                goto invalid;
            }

            k->hash[i] = (u_char) c;
        }

        if (name) {
            k->name.len = ngx_strlen(name->valuestring);
            k->name.data = ngx_pnalloc(cf->pool, k->name.len);
            if (k->name.data == NULL) {
                return NGX_ERROR;
            }

            ngx_memcpy(k->name.data, name->valuestring, k->name.len);

        } else {
            k->name.data = ngx_pnalloc(cf->pool, sizeof("admin:") - 1 + 8);
            if (k->name.data == NULL) {
                return NGX_ERROR;
            }

            k->name.len = ngx_sprintf(k->name.data, "admin:%*s", 8, p)
                          - k->name.data;
        }
    }

    return NGX_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "ailink_config \"%V\": admin_keys: each is the "
                       "SHA-256 of a key in hex (64 characters), or "
                       "{name, hash}", &conf->file);
    return NGX_ERROR;
}


/* the name of the request's admin key, or NULL: not one of the file's */

ngx_str_t *
ngx_ailink_admin_key_find(ngx_http_request_t *r)
{
    u_char                   digest[EVP_MAX_MD_SIZE];
    ngx_str_t                key, *found;
    ngx_uint_t               i;
    unsigned int             len;
    ngx_ailink_conf_t       *conf;
    ngx_ailink_admin_key_t  *k;

    conf = ngx_ailink_get_conf(r);

    if (r->headers_in.authorization == NULL) {
        return NULL;
    }

    key = r->headers_in.authorization->value;

    if (key.len < sizeof("Bearer ") - 1
        || ngx_strncasecmp(key.data, (u_char *) "Bearer ",
                           sizeof("Bearer ") - 1) != 0)
    {
        return NULL;
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
        return NULL;
    }

    k = conf->admin_keys->elts;
    found = NULL;

    /* every key compared in constant time, whichever matches */
    for (i = 0; i < conf->admin_keys->nelts; i++) {
        if (CRYPTO_memcmp(digest, k[i].hash, NGX_AILINK_SHA256_LEN) == 0) {
            found = &k[i].name;
        }
    }

    return found;
}


/* NGX_OK, or NGX_DECLINED: the caller refuses with 401 invalid_token */

ngx_int_t
ngx_ailink_admin_key_check(ngx_http_request_t *r)
{
    if (ngx_ailink_admin_key_find(r)) {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "ailink: admin key refused");

    return NGX_DECLINED;
}
