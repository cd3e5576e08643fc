
/*
 * Copyright (C) AILink
 *
 * Admin keys: one set, one check, for every admin endpoint (the admin
 * API and its approvals, cache and breaker resources, and their older
 * standalone directives).  The set is fed two ways, merged at
 * configuration time:
 *
 *   ailink_admin_key <sha256 hex> ...;        (http context)
 *   admin_keys: [<sha256 hex> | {name, hash}] (the ailink_config file)
 *
 * A request carries "Authorization: Bearer ailink_admin_..."; its SHA-256
 * is compared, in constant time, with every key of the set.  The key's
 * name (by default "admin:" and the first eight hex digits of its hash)
 * says who acted in the audit.  Fails closed: no set, no key, or a key
 * not in the set is refused.
 */


#include "ngx_ailink_common.h"
#include "ngx_ailink_auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>


#define NGX_AILINK_ADMIN_PREFIX  "ailink_admin_"


static ngx_int_t
ngx_ailink_admin_key_hex(u_char *hex, size_t len, u_char *out)
{
    ngx_int_t   c;
    ngx_uint_t  i;

    if (len != 2 * NGX_AILINK_SHA256_LEN) {
        return NGX_ERROR;
    }

    for (i = 0; i < NGX_AILINK_SHA256_LEN; i++) {
        c = ngx_hextoi(hex + 2 * i, 2);
        if (c == NGX_ERROR) {
            return NGX_ERROR;
        }

        out[i] = (u_char) c;
    }

    return NGX_OK;
}


/* "admin:" and the first eight hex digits of the hash */

static ngx_int_t
ngx_ailink_admin_key_default_name(ngx_pool_t *pool, ngx_ailink_admin_key_t *k)
{
    k->name.data = ngx_pnalloc(pool, sizeof("admin:") - 1 + 8);
    if (k->name.data == NULL) {
        return NGX_ERROR;
    }

    k->name.len = ngx_sprintf(ngx_cpymem(k->name.data, "admin:", 6), "%*xs",
                              (size_t) 4, k->hash)
                  - k->name.data;

    return NGX_OK;
}


ngx_int_t
ngx_ailink_admin_keys_load(ngx_conf_t *cf, ngx_ailink_conf_t *conf,
    cJSON *root)
{
    cJSON                   *list, *item, *hash, *name;
    ngx_ailink_admin_key_t  *k;

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

        if (!cJSON_IsString(hash) || (name && !cJSON_IsString(name))) {
            goto invalid;
        }

        k = ngx_array_push(conf->admin_keys);
        if (k == NULL) {
            return NGX_ERROR;
        }

        if (ngx_ailink_admin_key_hex((u_char *) hash->valuestring,
                                     ngx_strlen(hash->valuestring), k->hash)
            != NGX_OK)
        {
            goto invalid;
        }

        if (name) {
            k->name.len = ngx_strlen(name->valuestring);
            k->name.data = ngx_pnalloc(cf->pool, k->name.len);
            if (k->name.data == NULL) {
                return NGX_ERROR;
            }

            ngx_memcpy(k->name.data, name->valuestring, k->name.len);

        } else if (ngx_ailink_admin_key_default_name(cf->pool, k) != NGX_OK) {
            return NGX_ERROR;
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


/* "ailink_admin_key <hex>|sha256:<hex> ...;": into the same set */

char *
ngx_ailink_admin_key_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_ailink_auth_main_conf_t *amcf = conf;

    ngx_str_t               *value, hex;
    ngx_uint_t               i;
    ngx_ailink_admin_key_t  *k;

    if (amcf->admin_keys == NULL) {
        amcf->admin_keys = ngx_array_create(cf->pool, 2,
                                            sizeof(ngx_ailink_admin_key_t));
        if (amcf->admin_keys == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        hex = value[i];

        if (hex.len > 7 && ngx_strncmp(hex.data, "sha256:", 7) == 0) {
            hex.data += 7;
            hex.len -= 7;
        }

        k = ngx_array_push(amcf->admin_keys);
        if (k == NULL) {
            return NGX_CONF_ERROR;
        }

        if (ngx_ailink_admin_key_hex(hex.data, hex.len, k->hash) != NGX_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "ailink_admin_key \"%V\": must be 64 hex "
                               "digits of the key's SHA-256 (never the key: "
                               "scripts/ailink-admin mints one)", &value[i]);
            return NGX_CONF_ERROR;
        }

        if (ngx_ailink_admin_key_default_name(cf->pool, k) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/* at postconfiguration: the file's "admin_keys" join the directive's */

ngx_int_t
ngx_ailink_admin_keys_merge(ngx_conf_t *cf, ngx_ailink_auth_main_conf_t *amcf)
{
    ngx_ailink_admin_key_t  *k;

    if (amcf->conf == NULL || amcf->conf->admin_keys == NULL
        || amcf->conf->admin_keys->nelts == 0)
    {
        return NGX_OK;
    }

    if (amcf->admin_keys == NULL) {
        amcf->admin_keys = amcf->conf->admin_keys;
        return NGX_OK;
    }

    k = ngx_array_push_n(amcf->admin_keys, amcf->conf->admin_keys->nelts);
    if (k == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(k, amcf->conf->admin_keys->elts,
               amcf->conf->admin_keys->nelts
               * sizeof(ngx_ailink_admin_key_t));

    return NGX_OK;
}


/*
 * The one check: the key of the request's "Authorization: Bearer
 * ailink_admin_...", or NULL when it is none of the set.
 */

ngx_ailink_admin_key_t *
ngx_ailink_admin_key_match(ngx_http_request_t *r)
{
    u_char                        digest[EVP_MAX_MD_SIZE];
    ngx_str_t                     key;
    ngx_uint_t                    i;
    unsigned int                  len;
    ngx_ailink_ctx_t             *ctx;
    ngx_ailink_admin_key_t       *k, *found;
    ngx_ailink_auth_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_ailink_auth_module);

    if (amcf == NULL || amcf->admin_keys == NULL
        || r->headers_in.authorization == NULL)
    {
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

    if (key.len <= sizeof(NGX_AILINK_ADMIN_PREFIX) - 1
        || key.len > 256
        || ngx_strncmp(key.data, NGX_AILINK_ADMIN_PREFIX,
                       sizeof(NGX_AILINK_ADMIN_PREFIX) - 1) != 0
        || EVP_Digest(key.data, key.len, digest, &len, EVP_sha256(), NULL)
           != 1)
    {
        return NULL;
    }

    k = amcf->admin_keys->elts;
    found = NULL;

    /* every key compared in constant time, whichever matches */
    for (i = 0; i < amcf->admin_keys->nelts; i++) {
        if (CRYPTO_memcmp(digest, k[i].hash, NGX_AILINK_SHA256_LEN) == 0) {
            found = &k[i];
        }
    }

    if (found && r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
        /* a mutation: who acted, in the request's audit record (unless
           the admin API, which checked first, said it better) */
        ctx = ngx_ailink_get_ctx(r);

        if (ctx == NULL || ctx->admin_audit.len == 0) {
            (void) ngx_ailink_admin_key_audit(r, found, NULL, NULL);
        }
    }

    return found;
}


/* the name of the request's admin key, or NULL */

ngx_str_t *
ngx_ailink_admin_key_find(ngx_http_request_t *r)
{
    ngx_ailink_admin_key_t  *k;

    k = ngx_ailink_admin_key_match(r);

    return k ? &k->name : NULL;
}


/* NGX_OK, or NGX_DECLINED: the caller refuses with 401 invalid_token */

ngx_int_t
ngx_ailink_admin_key_check(ngx_http_request_t *r)
{
    if (ngx_ailink_admin_key_match(r)) {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "ailink: admin key refused");

    return NGX_DECLINED;
}


/*
 * The "admin" member of the request's audit record, for a mutation:
 *
 *   ,"admin":{"key":"sha256:<8 hex>","name":"...","action":"POST",
 *             "resource":"tokens","object":"tok_..."}
 *
 * Who (the key's hash prefix and name), what (method, resource, object
 * id or name); the outcome is the record's "status".  Never a secret:
 * nothing of the body but the object's name.  Without a resource, it is
 * taken from the URI: what follows "/v1/" (or the whole path).
 */

ngx_int_t
ngx_ailink_admin_key_audit(ngx_http_request_t *r, ngx_ailink_admin_key_t *k,
    ngx_str_t *resource, ngx_str_t *object)
{
    u_char            *p, *last;
    size_t             len;
    ngx_str_t          res, obj, name;
    ngx_ailink_ctx_t  *ctx;

    ctx = ngx_ailink_create_ctx(r);
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    if (k == NULL) {
        /* a refinement by the admin API: the key is the one set before */
        if (ctx->admin_key == NULL) {
            return NGX_DECLINED;
        }

        k = ctx->admin_key;
    }

    ctx->admin_key = k;

    if (resource) {
        res = *resource;

    } else {
        /* ".../v1/<resource>[/<object>...]" */
        last = r->uri.data + r->uri.len;
        p = ngx_strlcasestrn(r->uri.data, last, (u_char *) "/v1/", 4 - 1);
        p = p ? p + 4 : r->uri.data + (r->uri.len && r->uri.data[0] == '/');

        res.data = p;
        p = ngx_strlchr(p, last, '/');
        res.len = (p ? p : last) - res.data;

        ngx_str_null(&obj);

        if (p && object == NULL) {
            obj.data = p + 1;
            obj.len = last - obj.data;
        }

        if (object == NULL) {
            object = &obj;
        }
    }

    if (object == NULL) {
        ngx_str_null(&obj);
        object = &obj;
    }

    name = k->name;

    len = sizeof(",\"admin\":{\"key\":\"sha256:12345678\",\"name\":\"\","
                 "\"action\":\"\",\"resource\":\"\",\"object\":null}")
          + ngx_ailink_json_escape_len(&name)
          + ngx_ailink_json_escape_len(&r->method_name)
          + ngx_ailink_json_escape_len(&res)
          + ngx_ailink_json_escape_len(object) + 2;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->admin_audit.data = p;

    p = ngx_sprintf(p, ",\"admin\":{\"key\":\"sha256:%*xs\",\"name\":\"",
                    (size_t) 4, k->hash);
    p = ngx_ailink_json_escape(p, &name);
    p = ngx_cpymem(p, "\",\"action\":\"", sizeof("\",\"action\":\"") - 1);
    p = ngx_ailink_json_escape(p, &r->method_name);
    p = ngx_cpymem(p, "\",\"resource\":\"",
                   sizeof("\",\"resource\":\"") - 1);
    p = ngx_ailink_json_escape(p, &res);
    p = ngx_cpymem(p, "\",\"object\":", sizeof("\",\"object\":") - 1);

    if (object->len) {
        *p++ = '"';
        p = ngx_ailink_json_escape(p, object);
        *p++ = '"';

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    *p++ = '}';

    ctx->admin_audit.len = p - ctx->admin_audit.data;

    return NGX_OK;
}
