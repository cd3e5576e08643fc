
/*
 * Copyright (C) AILink
 *
 * The credentials vault: secrets sealed with AES-256-GCM (OpenSSL EVP)
 * under the master key of "ailink_vault_master_key", a random 96-bit
 * nonce per seal and the credential's name as associated data (a sealed
 * secret moved to another name does not open).  Stored as
 * "v1:" base64(nonce | ciphertext | tag).  Secrets are write-only: the API
 * never returns them.
 */


#include "ngx_ailink_admin.h"
#include <openssl/evp.h>
#include <openssl/rand.h>


#define NGX_AILINK_VAULT_NONCE  12
#define NGX_AILINK_VAULT_TAG    16
#define NGX_AILINK_VAULT_MAX    8192


ngx_int_t
ngx_ailink_vault_encrypt(ngx_pool_t *pool, u_char *key, ngx_str_t *name,
    ngx_str_t *plain, ngx_str_t *sealed)
{
    int               n, ok;
    u_char           *raw;
    ngx_str_t         src;
    EVP_CIPHER_CTX   *c;

    if (plain->len > NGX_AILINK_VAULT_MAX) {
        return NGX_ERROR;
    }

    raw = ngx_pnalloc(pool, NGX_AILINK_VAULT_NONCE + plain->len
                            + NGX_AILINK_VAULT_TAG);
    sealed->data = ngx_pnalloc(pool, 3 + ngx_base64_encoded_length(
                                   NGX_AILINK_VAULT_NONCE + plain->len
                                   + NGX_AILINK_VAULT_TAG) + 1);
    if (raw == NULL || sealed->data == NULL) {
        return NGX_ERROR;
    }

    if (RAND_bytes(raw, NGX_AILINK_VAULT_NONCE) != 1) {
        return NGX_ERROR;
    }

    c = EVP_CIPHER_CTX_new();
    if (c == NULL) {
        return NGX_ERROR;
    }

    ok = EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, raw) == 1
         && EVP_EncryptUpdate(c, NULL, &n, name->data, name->len) == 1
         && EVP_EncryptUpdate(c, raw + NGX_AILINK_VAULT_NONCE, &n,
                              plain->data, plain->len) == 1
         && EVP_EncryptFinal_ex(c, raw + NGX_AILINK_VAULT_NONCE + n, &n) == 1
         && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG,
                                NGX_AILINK_VAULT_TAG,
                                raw + NGX_AILINK_VAULT_NONCE + plain->len)
            == 1;

    EVP_CIPHER_CTX_free(c);

    if (!ok) {
        return NGX_ERROR;
    }

    src.data = raw;
    src.len = NGX_AILINK_VAULT_NONCE + plain->len + NGX_AILINK_VAULT_TAG;

    ngx_memcpy(sealed->data, "v1:", 3);
    sealed->len = 3;

    {
        ngx_str_t  dst;

        dst.data = sealed->data + 3;
        ngx_encode_base64(&dst, &src);
        sealed->len += dst.len;
        sealed->data[sealed->len] = '\0';
    }

    return NGX_OK;
}


ngx_int_t
ngx_ailink_vault_decrypt(ngx_pool_t *pool, u_char *key, ngx_str_t *name,
    ngx_str_t *sealed, ngx_str_t *plain)
{
    int               n, ok;
    size_t            len;
    ngx_str_t         src, raw;
    EVP_CIPHER_CTX   *c;

    if (sealed->len < 3 || ngx_strncmp(sealed->data, "v1:", 3) != 0) {
        return NGX_ERROR;
    }

    src.data = sealed->data + 3;
    src.len = sealed->len - 3;

    raw.data = ngx_pnalloc(pool, ngx_base64_decoded_length(src.len));
    if (raw.data == NULL || ngx_decode_base64(&raw, &src) != NGX_OK
        || raw.len < NGX_AILINK_VAULT_NONCE + NGX_AILINK_VAULT_TAG)
    {
        return NGX_ERROR;
    }

    len = raw.len - NGX_AILINK_VAULT_NONCE - NGX_AILINK_VAULT_TAG;

    plain->data = ngx_pnalloc(pool, len + 1);
    if (plain->data == NULL) {
        return NGX_ERROR;
    }

    c = EVP_CIPHER_CTX_new();
    if (c == NULL) {
        return NGX_ERROR;
    }

    ok = EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, raw.data) == 1
         && EVP_DecryptUpdate(c, NULL, &n, name->data, name->len) == 1
         && EVP_DecryptUpdate(c, plain->data, &n,
                              raw.data + NGX_AILINK_VAULT_NONCE, len) == 1
         && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG,
                                NGX_AILINK_VAULT_TAG,
                                raw.data + NGX_AILINK_VAULT_NONCE + len) == 1
         && EVP_DecryptFinal_ex(c, plain->data + n, &n) == 1;

    EVP_CIPHER_CTX_free(c);

    if (!ok) {
        ngx_explicit_memzero(plain->data, len);
        return NGX_ERROR;
    }

    plain->len = len;
    plain->data[len] = '\0';

    return NGX_OK;
}


static cJSON *
ngx_ailink_vault_view(const char *name, cJSON *rec, const char *source)
{
    cJSON       *out, *v;
    const char **k;

    static const char  *keys[] = { "scheme", "name", "created_at",
                                   "rotated_at", NULL };

    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "id", name);

    for (k = keys; rec && *k; k++) {
        v = ngx_ailink_json_get(rec, *k);
        if (v) {
            cJSON_AddItemToObject(out, ngx_strcmp(*k, "name") == 0
                                       ? "header" : *k,
                                  cJSON_Duplicate(v, 1));
        }
    }

    cJSON_AddStringToObject(out, "source", source);

    return out;
}


/* whether a token or a service of the store or the file names it */

static ngx_int_t
ngx_ailink_vault_in_use(ngx_ailink_admin_req_t *ar, ngx_str_t *name)
{
    cJSON  *item, *v, *c;

    cJSON_ArrayForEach(item, ngx_ailink_json_get(ar->doc, "tokens")) {
        v = ngx_ailink_json_get(item, "credential");
        if (cJSON_IsString(v) && ngx_strlen(v->valuestring) == name->len
            && ngx_strncmp(v->valuestring, name->data, name->len) == 0
            && ngx_ailink_json_get(item, "revoked_at") == NULL)
        {
            return 1;
        }

        cJSON_ArrayForEach(c, ngx_ailink_json_get(item, "credentials")) {
            if (cJSON_IsString(c)
                && ngx_strlen(c->valuestring) == name->len
                && ngx_strncmp(c->valuestring, name->data, name->len) == 0
                && ngx_ailink_json_get(item, "revoked_at") == NULL)
            {
                return 1;
            }
        }
    }

    cJSON_ArrayForEach(item, ngx_ailink_json_get(ar->doc, "services")) {
        v = ngx_ailink_json_get(item, "credential_id");
        if (cJSON_IsString(v) && ngx_strlen(v->valuestring) == name->len
            && ngx_strncmp(v->valuestring, name->data, name->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


ngx_int_t
ngx_ailink_admin_credentials(ngx_ailink_admin_req_t *ar)
{
    char                      cname[128];
    cJSON                    *doc, *out, *list, *rec, *v, *map;
    ngx_int_t                 rc;
    ngx_str_t                 text, name, secret, sealed;
    ngx_uint_t                i, gen, method;
    ngx_ailink_conf_t        *conf;
    ngx_ailink_store_t       *st;
    ngx_ailink_credential_t  *cred;

    method = ar->request->method;
    st = ar->amcf->store;
    conf = ngx_ailink_get_conf(ar->request);

    if (method == NGX_HTTP_GET) {
        if (st->ops->read(st, ar->request->pool, &text, &gen) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        doc = cJSON_Parse(text.len ? (char *) text.data : "{}");
        if (doc == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        map = ngx_ailink_json_get(doc, "credentials");

        if (ar->id.len) {
            ngx_snprintf((u_char *) cname, sizeof(cname), "%V%Z", &ar->id);
            rec = ngx_ailink_json_get(map, cname);
            out = rec ? ngx_ailink_vault_view(cname, rec, "api") : NULL;
            cJSON_Delete(doc);

            if (out == NULL) {
                return ngx_ailink_admin_fail(ar, NGX_HTTP_NOT_FOUND,
                                             "not_found",
                                             "no credential \"%V\"",
                                             &ar->id);
            }

            return ngx_ailink_admin_reply(ar, NGX_HTTP_OK, out);
        }

        out = cJSON_CreateObject();
        list = cJSON_AddArrayToObject(out, "data");

        cred = conf ? conf->credentials.elts : NULL;

        for (i = 0; conf && i < conf->credentials.nelts; i++) {
            ngx_snprintf((u_char *) cname, sizeof(cname), "%V%Z",
                         &cred[i].name);
            cJSON_AddItemToArray(list,
                                 ngx_ailink_vault_view(cname, NULL, "yaml"));
        }

        cJSON_ArrayForEach(rec, map) {
            cJSON_AddItemToArray(list,
                                 ngx_ailink_vault_view(rec->string, rec,
                                                       "api"));
        }

        cJSON_Delete(doc);

        return ngx_ailink_admin_reply(ar, NGX_HTTP_OK, out);
    }

    if (!ar->amcf->master_set) {
        return ngx_ailink_admin_fail(ar, NGX_HTTP_CONFLICT, "vault_locked",
                                     "no \"ailink_vault_master_key\" is "
                                     "configured: the vault cannot store "
                                     "secrets");
    }

    if (method == NGX_HTTP_POST && ar->id.len == 0) {
        /* create */
        if (ar->json == NULL) {
            return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request",
                                         "a JSON body is required");
        }

        cJSON_ArrayForEach(v, ar->json) {
            if (ngx_strcmp(v->string, "name") != 0
                && ngx_strcmp(v->string, "secret") != 0
                && ngx_strcmp(v->string, "scheme") != 0
                && ngx_strcmp(v->string, "header") != 0)
            {
                return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                             "invalid_request",
                                             "unknown field \"%s\"",
                                             v->string);
            }
        }

        v = ngx_ailink_json_get(ar->json, "name");
        if (!cJSON_IsString(v) || v->valuestring[0] == '\0'
            || ngx_strlen(v->valuestring) > 64)
        {
            return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request",
                                         "\"name\" is required (at most 64 "
                                         "characters)");
        }

        name.data = (u_char *) v->valuestring;
        name.len = ngx_strlen(v->valuestring);

    } else if (ar->id.len
               && (method == NGX_HTTP_DELETE
                   || (method == NGX_HTTP_POST
                       && ar->sub.len == 6
                       && ngx_strncmp(ar->sub.data, "rotate", 6) == 0)))
    {
        name = ar->id;

    } else {
        return ngx_ailink_admin_fail(ar, NGX_HTTP_NOT_ALLOWED,
                                     "method_not_allowed",
                                     "method not allowed here");
    }

    if (ngx_strlchr(name.data, name.data + name.len, '/')) {
        return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                     "invalid_request",
                                     "a credential name has no '/'");
    }

    ngx_snprintf((u_char *) cname, sizeof(cname), "%V%Z", &name);

    for (i = 0; conf && i < conf->credentials.nelts; i++) {
        cred = conf->credentials.elts;

        if (cred[i].name.len == name.len
            && ngx_strncmp(cred[i].name.data, name.data, name.len) == 0)
        {
            return ngx_ailink_admin_fail(ar, NGX_HTTP_CONFLICT, "conflict",
                                         "credential \"%V\" is managed by "
                                         "the config file and is read-only "
                                         "through the API", &name);
        }
    }

    rc = ngx_ailink_admin_lock(ar);
    if (rc != NGX_OK) {
        return rc == NGX_BUSY ? NGX_BUSY : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    map = ngx_ailink_json_get(ar->doc, "credentials");
    if (map == NULL) {
        map = cJSON_AddObjectToObject(ar->doc, "credentials");
    }

    rec = ngx_ailink_json_get(map, cname);

    if (method == NGX_HTTP_DELETE) {
        if (rec == NULL) {
            return ngx_ailink_admin_fail(ar, NGX_HTTP_NOT_FOUND, "not_found",
                                         "no credential \"%V\"", &name);
        }

        if (ngx_ailink_vault_in_use(ar, &name)) {
            return ngx_ailink_admin_fail(ar, NGX_HTTP_CONFLICT, "in_use",
                                         "credential \"%V\" is used by a "
                                         "token or a service", &name);
        }

        cJSON_DeleteItemFromObjectCaseSensitive(map, cname);
        out = cJSON_CreateObject();
        cJSON_AddStringToObject(out, "id", cname);
        cJSON_AddBoolToObject(out, "deleted", 1);
        goto commit;
    }

    if (method == NGX_HTTP_POST && ar->id.len == 0 && rec) {
        return ngx_ailink_admin_fail(ar, NGX_HTTP_CONFLICT, "conflict",
                                     "credential \"%V\" exists (rotate it "
                                     "with POST /credentials/%V/rotate)",
                                     &name, &name);
    }

    if (ar->id.len && rec == NULL) {
        return ngx_ailink_admin_fail(ar, NGX_HTTP_NOT_FOUND, "not_found",
                                     "no credential \"%V\"", &name);
    }

    v = ar->json ? ngx_ailink_json_get(ar->json, "secret") : NULL;
    if (!cJSON_IsString(v) || v->valuestring[0] == '\0') {
        return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                     "invalid_request",
                                     "\"secret\" is required");
    }

    secret.data = (u_char *) v->valuestring;
    secret.len = ngx_strlen(v->valuestring);

    if (ngx_ailink_vault_encrypt(ar->request->pool, ar->amcf->master, &name,
                                 &secret, &sealed)
        != NGX_OK)
    {
        return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                     "invalid_request",
                                     "the secret cannot be sealed (at most "
                                     "8192 bytes)");
    }

    ngx_explicit_memzero(v->valuestring, secret.len);

    if (rec == NULL) {
        rec = cJSON_AddObjectToObject(map, cname);

        v = ngx_ailink_json_get(ar->json, "scheme");
        if (v) {
            cJSON_AddItemToObject(rec, "scheme", cJSON_Duplicate(v, 1));
        }

        v = ngx_ailink_json_get(ar->json, "header");
        if (v) {
            cJSON_AddItemToObject(rec, "name", cJSON_Duplicate(v, 1));
        }

        ngx_ailink_admin_time(ngx_time(), rec, "created_at");
        ar->status = NGX_HTTP_CREATED;

    } else {
        cJSON_DeleteItemFromObjectCaseSensitive(rec, "rotated_at");
        ngx_ailink_admin_time(ngx_time(), rec, "rotated_at");
    }

    cJSON_DeleteItemFromObjectCaseSensitive(rec, "sealed");
    cJSON_AddStringToObject(rec, "sealed", (char *) sealed.data);

    rc = ngx_ailink_admin_check(ar);
    if (rc != NGX_OK) {
        return rc;
    }

    out = ngx_ailink_vault_view(cname, rec, "api");

commit:

    ar->audit.data = ngx_pnalloc(ar->request->pool, 64 + name.len);
    if (ar->audit.data) {
        ar->audit.len = ngx_sprintf(ar->audit.data, "credential \"%V\" %s",
                                    &name, method == NGX_HTTP_DELETE
                                    ? "deleted" : "written")
                        - ar->audit.data;
    }

    {
        char  *t;

        t = cJSON_PrintUnformatted(out);
        cJSON_Delete(out);

        if (t == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ar->answer.len = ngx_strlen(t);
        ar->answer.data = ngx_pnalloc(ar->request->pool, ar->answer.len);
        if (ar->answer.data) {
            ngx_memcpy(ar->answer.data, t, ar->answer.len);
        }

        cJSON_free(t);
    }

    return ar->answer.data ? NGX_AGAIN : NGX_HTTP_INTERNAL_SERVER_ERROR;
}

