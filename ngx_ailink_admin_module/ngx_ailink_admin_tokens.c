
/*
 * Copyright (C) AILink
 *
 * The admin API's tokens: create (the token is returned once, only its
 * SHA-256 is stored), list, get, patch, revoke.  A record of the store is
 * a token of the config-as-code file ("id", "name", "project", "hash",
 * "upstream", "credential", "credentials", "expires_at", "agent_name",
 * "enabled", "policies", "circuit_breaker") plus "created_at" and
 * "revoked_at"; the API's own names ("upstream_url", "credential_id") are
 * mapped onto it.  Tokens of the
 * file are listed too, with "source": "yaml", and are read-only (409).
 */


#include "ngx_ailink_admin.h"
#include <openssl/evp.h>
#include <openssl/rand.h>


typedef struct {
    const char   *api;
    const char   *yaml;
    int           type;         /* cJSON type the API takes */
} ngx_ailink_admin_field_t;


static ngx_ailink_admin_field_t  ngx_ailink_admin_token_fields[] = {
    { "name", "name", cJSON_String },
    { "project", "project", cJSON_String },
    { "upstream_url", "upstream", cJSON_String },
    { "credential_id", "credential", cJSON_String },
    { "credentials", "credentials", cJSON_Object },
    { "expires_at", "expires_at", cJSON_String },
    { "agent_name", "agent_name", cJSON_String },
    { "enabled", "enabled", cJSON_True|cJSON_False },
    { "policies", "policies", cJSON_Array },
    { "circuit_breaker", "circuit_breaker", cJSON_Object },
    { NULL, NULL, 0 }
};


static ngx_int_t
ngx_ailink_admin_hex_random(u_char *out, size_t n)
{
    u_char  raw[32];

    if (n > sizeof(raw) || RAND_bytes(raw, n) != 1) {
        return NGX_ERROR;
    }

    ngx_hex_dump(out, raw, n);

    return NGX_OK;
}


static cJSON *
ngx_ailink_admin_find_id(cJSON *list, ngx_str_t *id)
{
    cJSON  *item, *v;

    cJSON_ArrayForEach(item, list) {
        v = ngx_ailink_json_get(item, "id");

        if (cJSON_IsString(v) && ngx_strlen(v->valuestring) == id->len
            && ngx_strncmp(v->valuestring, id->data, id->len) == 0)
        {
            return item;
        }
    }

    return NULL;
}


static ngx_ailink_token_t *
ngx_ailink_admin_yaml_token(ngx_http_request_t *r, ngx_str_t *id)
{
    ngx_uint_t           i;
    ngx_ailink_conf_t   *conf;
    ngx_ailink_token_t  *tok;

    conf = ngx_ailink_get_conf(r);
    if (conf == NULL) {
        return NULL;
    }

    tok = conf->tokens.elts;

    for (i = 0; i < conf->tokens.nelts; i++) {
        if (tok[i].id.len == id->len
            && ngx_strncmp(tok[i].id.data, id->data, id->len) == 0)
        {
            return &tok[i];
        }
    }

    return NULL;
}


static void
ngx_ailink_admin_add_str(cJSON *obj, const char *key, ngx_str_t *s)
{
    cJSON  *v;

    v = ngx_ailink_json_string(s);
    if (v) {
        cJSON_AddItemToObject(obj, key, v);
    }
}


static cJSON *
ngx_ailink_admin_yaml_view(ngx_ailink_token_t *tok)
{
    cJSON  *out;

    out = cJSON_CreateObject();
    if (out == NULL) {
        return NULL;
    }

    ngx_ailink_admin_add_str(out, "id", &tok->id);
    ngx_ailink_admin_add_str(out, "name", &tok->name);
    ngx_ailink_admin_add_str(out, "project", &tok->project);
    cJSON_AddBoolToObject(out, "enabled", tok->enabled);

    if (!tok->llm) {
        ngx_ailink_admin_add_str(out, "upstream_url", &tok->upstream.url);
    }

    if (tok->credential) {
        ngx_ailink_admin_add_str(out, "credential_id",
                                 &tok->credential->name);
    }

    if (tok->expires) {
        ngx_ailink_admin_time(tok->expires, out, "expires_at");
    }

    cJSON_AddStringToObject(out, "source", "yaml");

    return out;
}


/* a store record as the API shows it: the API's names, no hash */

static cJSON *
ngx_ailink_admin_token_view(cJSON *rec)
{
    cJSON                     *out, *v;
    ngx_ailink_admin_field_t  *f;

    out = cJSON_CreateObject();
    if (out == NULL) {
        return NULL;
    }

    v = ngx_ailink_json_get(rec, "id");
    cJSON_AddItemToObject(out, "id", cJSON_Duplicate(v, 1));

    for (f = ngx_ailink_admin_token_fields; f->api; f++) {
        v = ngx_ailink_json_get(rec, f->yaml);

        if (v) {
            cJSON_AddItemToObject(out, f->api, cJSON_Duplicate(v, 1));
        }
    }

    if (ngx_ailink_json_get(out, "enabled") == NULL) {
        cJSON_AddBoolToObject(out, "enabled", 1);
    }

    v = ngx_ailink_json_get(rec, "created_at");
    if (v) {
        cJSON_AddItemToObject(out, "created_at", cJSON_Duplicate(v, 1));
    }

    v = ngx_ailink_json_get(rec, "revoked_at");
    cJSON_AddBoolToObject(out, "revoked", v != NULL);
    if (v) {
        cJSON_AddItemToObject(out, "revoked_at", cJSON_Duplicate(v, 1));
    }

    cJSON_AddStringToObject(out, "source", "api");

    return out;
}


/* the API's fields onto a record; unknown fields and wrong types refused */

static ngx_int_t
ngx_ailink_admin_token_apply(ngx_ailink_admin_req_t *ar, cJSON *rec,
    ngx_uint_t create)
{
    cJSON                     *v;
    ngx_ailink_admin_field_t  *f;

    cJSON_ArrayForEach(v, ar->json) {
        for (f = ngx_ailink_admin_token_fields; f->api; f++) {
            if (ngx_strcmp(v->string, f->api) == 0) {
                break;
            }
        }

        if (f->api == NULL
            || (!create && ngx_strcmp(f->api, "project") == 0))
        {
            return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request",
                                         "unknown or read-only field \"%s\"",
                                         v->string);
        }

        if (!(v->type & f->type)) {
            return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request",
                                         "field \"%s\" has the wrong type",
                                         v->string);
        }

        cJSON_DeleteItemFromObjectCaseSensitive(rec, f->yaml);

        if (cJSON_IsString(v) && v->valuestring[0] == '\0'
            && ngx_strcmp(f->api, "name") != 0)
        {
            continue;       /* "" clears an optional field */
        }

        cJSON_AddItemToObject(rec, f->yaml, cJSON_Duplicate(v, 1));
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_admin_token_create(ngx_ailink_admin_req_t *ar)
{
    u_char       hash[NGX_AILINK_SHA256_LEN], hex[2 * NGX_AILINK_SHA256_LEN];
    u_char       token[256], *p, idbuf[32];
    cJSON       *rec, *list, *v, *out;
    ngx_int_t    rc;
    ngx_str_t    project, name;
    unsigned int n;

    if (ar->json == NULL) {
        return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                     "invalid_request",
                                     "a JSON body is required");
    }

    v = ngx_ailink_json_get(ar->json, "name");
    if (!cJSON_IsString(v) || v->valuestring[0] == '\0') {
        return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                     "invalid_request",
                                     "\"name\" is required");
    }

    name.data = (u_char *) v->valuestring;
    name.len = ngx_strlen(v->valuestring);

    v = ngx_ailink_json_get(ar->json, "project");
    if (v && !cJSON_IsString(v)) {
        return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                     "invalid_request",
                                     "\"project\" must be a string");
    }

    if (v && v->valuestring[0]) {
        project.data = (u_char *) v->valuestring;
        project.len = ngx_strlen(v->valuestring);

    } else {
        ngx_str_set(&project, "default");
    }

    for (p = project.data; p < project.data + project.len; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')
              || *p == '-' || (*p >= 'A' && *p <= 'Z'))
            || project.len > 64)
        {
            return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request",
                                         "\"project\" takes letters, digits "
                                         "and '-' (at most 64)");
        }
    }

    rc = ngx_ailink_admin_lock(ar);
    if (rc != NGX_OK) {
        return rc == NGX_BUSY ? NGX_BUSY : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    list = ngx_ailink_json_get(ar->doc, "tokens");
    if (list == NULL) {
        list = cJSON_AddArrayToObject(ar->doc, "tokens");
    }

    /* names are unique: import upserts by name */
    cJSON_ArrayForEach(v, list) {
        if (ngx_ailink_json_is(ngx_ailink_json_get(v, "name"),
                               (char *) name.data))
        {
            return ngx_ailink_admin_fail(ar, NGX_HTTP_CONFLICT, "conflict",
                                         "a token named \"%V\" exists",
                                         &name);
        }
    }

    rec = cJSON_CreateObject();

    ngx_memcpy(idbuf, "tok_", 4);
    if (rec == NULL || ngx_ailink_admin_hex_random(idbuf + 4, 8) != NGX_OK) {
        cJSON_Delete(rec);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    idbuf[20] = '\0';
    cJSON_AddStringToObject(rec, "id", (char *) idbuf);

    p = ngx_sprintf(token, NGX_AILINK_TOKEN_PREFIX "%V_tok_", &project);
    if (ngx_ailink_admin_hex_random(p, 16) != NGX_OK) {
        cJSON_Delete(rec);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p += 32;
    *p = '\0';

    if (EVP_Digest(token, p - token, hash, &n, EVP_sha256(), NULL) != 1) {
        cJSON_Delete(rec);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_hex_dump(hex, hash, NGX_AILINK_SHA256_LEN);
    cJSON_AddItemToObject(rec, "hash", ngx_ailink_json_string(
                              &(ngx_str_t) { sizeof(hex), hex }));
    ngx_ailink_admin_add_str(rec, "project", &project);
    ngx_ailink_admin_time(ngx_time(), rec, "created_at");

    cJSON_AddItemToArray(list, rec);

    rc = ngx_ailink_admin_token_apply(ar, rec, 1);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_ailink_admin_check(ar);
    if (rc != NGX_OK) {
        return rc;
    }

    out = ngx_ailink_admin_token_view(rec);
    cJSON_AddStringToObject(out, "token", (char *) token);

    ar->status = NGX_HTTP_CREATED;
    ar->audit.data = ngx_pnalloc(ar->request->pool, 64 + name.len);
    if (ar->audit.data) {
        ar->audit.len = ngx_sprintf(ar->audit.data, "token %s \"%V\" created",
                                    idbuf, &name) - ar->audit.data;
    }

    v = out;
    {
        char  *text;

        text = cJSON_PrintUnformatted(v);
        cJSON_Delete(v);

        if (text == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ar->answer.len = ngx_strlen(text);
        ar->answer.data = ngx_pnalloc(ar->request->pool, ar->answer.len);
        if (ar->answer.data) {
            ngx_memcpy(ar->answer.data, text, ar->answer.len);
        }

        ngx_explicit_memzero(text, ar->answer.len);
        cJSON_free(text);
    }

    ngx_explicit_memzero(token, sizeof(token));

    return ar->answer.data ? NGX_AGAIN : NGX_HTTP_INTERNAL_SERVER_ERROR;
}


static ngx_int_t
ngx_ailink_admin_answer_later(ngx_ailink_admin_req_t *ar, cJSON *out)
{
    char  *text;

    text = cJSON_PrintUnformatted(out);
    cJSON_Delete(out);

    if (text == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ar->answer.len = ngx_strlen(text);
    ar->answer.data = ngx_pnalloc(ar->request->pool, ar->answer.len);

    if (ar->answer.data) {
        ngx_memcpy(ar->answer.data, text, ar->answer.len);
    }

    cJSON_free(text);

    return ar->answer.data ? NGX_AGAIN : NGX_HTTP_INTERNAL_SERVER_ERROR;
}


ngx_int_t
ngx_ailink_admin_tokens(ngx_ailink_admin_req_t *ar)
{
    cJSON               *doc, *out, *list, *rec, *item;
    ngx_int_t            rc;
    ngx_str_t            text;
    ngx_uint_t           i, gen, method;
    ngx_ailink_conf_t   *conf;
    ngx_ailink_token_t  *tok;
    ngx_ailink_store_t  *st;

    method = ar->request->method;
    st = ar->amcf->store;

    if (ar->sub.len) {
        /* "circuit-breaker": ngx_ailink_admin_routes.c */
        return ngx_ailink_admin_breaker(ar);
    }

    if (ar->id.len == 0) {
        if (method == NGX_HTTP_POST) {
            return ngx_ailink_admin_token_create(ar);
        }

        if (method != NGX_HTTP_GET) {
            goto not_allowed;
        }
    }

    if (method == NGX_HTTP_GET) {
        if (st->ops->read(st, ar->request->pool, &text, &gen) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        doc = cJSON_Parse(text.len ? (char *) text.data : "{}");
        if (doc == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (ar->id.len) {
            rec = ngx_ailink_admin_find_id(ngx_ailink_json_get(doc, "tokens"),
                                           &ar->id);
            out = NULL;

            if (rec) {
                out = ngx_ailink_admin_token_view(rec);

            } else {
                tok = ngx_ailink_admin_yaml_token(ar->request, &ar->id);
                if (tok) {
                    out = ngx_ailink_admin_yaml_view(tok);
                }
            }

            cJSON_Delete(doc);

            if (out == NULL) {
                return ngx_ailink_admin_fail(ar, NGX_HTTP_NOT_FOUND,
                                             "not_found", "no token \"%V\"",
                                             &ar->id);
            }

            return ngx_ailink_admin_reply(ar, NGX_HTTP_OK, out);
        }

        out = cJSON_CreateObject();
        list = cJSON_AddArrayToObject(out, "data");

        conf = ngx_ailink_get_conf(ar->request);
        tok = conf ? conf->tokens.elts : NULL;

        for (i = 0; conf && i < conf->tokens.nelts; i++) {
            cJSON_AddItemToArray(list, ngx_ailink_admin_yaml_view(&tok[i]));
        }

        cJSON_ArrayForEach(item, ngx_ailink_json_get(doc, "tokens")) {
            cJSON_AddItemToArray(list, ngx_ailink_admin_token_view(item));
        }

        cJSON_Delete(doc);

        return ngx_ailink_admin_reply(ar, NGX_HTTP_OK, out);
    }

    if (method != NGX_HTTP_PATCH && method != NGX_HTTP_DELETE) {
        goto not_allowed;
    }

    if (method == NGX_HTTP_PATCH && ar->json == NULL) {
        return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                     "invalid_request",
                                     "a JSON body is required");
    }

    rc = ngx_ailink_admin_lock(ar);
    if (rc != NGX_OK) {
        return rc == NGX_BUSY ? NGX_BUSY : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rec = ngx_ailink_admin_find_id(ngx_ailink_json_get(ar->doc, "tokens"),
                                   &ar->id);

    if (rec == NULL) {
        if (ngx_ailink_admin_yaml_token(ar->request, &ar->id)) {
            return ngx_ailink_admin_fail(ar, NGX_HTTP_CONFLICT, "conflict",
                                         "token \"%V\" is managed by the "
                                         "config file (ailink_config) and is "
                                         "read-only through the API",
                                         &ar->id);
        }

        return ngx_ailink_admin_fail(ar, NGX_HTTP_NOT_FOUND, "not_found",
                                     "no token \"%V\"", &ar->id);
    }

    if (method == NGX_HTTP_DELETE) {
        cJSON_DeleteItemFromObjectCaseSensitive(rec, "enabled");
        cJSON_AddBoolToObject(rec, "enabled", 0);

        if (ngx_ailink_json_get(rec, "revoked_at") == NULL) {
            ngx_ailink_admin_time(ngx_time(), rec, "revoked_at");
        }

    } else {
        if (ngx_ailink_json_get(rec, "revoked_at")
            && cJSON_IsTrue(ngx_ailink_json_get(ar->json, "enabled")))
        {
            return ngx_ailink_admin_fail(ar, NGX_HTTP_CONFLICT, "conflict",
                                         "token \"%V\" is revoked",
                                         &ar->id);
        }

        rc = ngx_ailink_admin_token_apply(ar, rec, 0);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    rc = ngx_ailink_admin_check(ar);
    if (rc != NGX_OK) {
        return rc;
    }

    ar->audit.data = ngx_pnalloc(ar->request->pool, 64 + ar->id.len);
    if (ar->audit.data) {
        ar->audit.len = ngx_sprintf(ar->audit.data, "token %V %s", &ar->id,
                                    method == NGX_HTTP_DELETE
                                    ? "revoked" : "updated")
                        - ar->audit.data;
    }

    return ngx_ailink_admin_answer_later(ar,
                                         ngx_ailink_admin_token_view(rec));

not_allowed:

    return ngx_ailink_admin_fail(ar, NGX_HTTP_NOT_ALLOWED,
                                 "method_not_allowed",
                                 "method not allowed here");
}
