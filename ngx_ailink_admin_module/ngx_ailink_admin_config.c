
/*
 * Copyright (C) AILink
 *
 * Config as code through the admin API.  GET /config/export gives YAML of
 * the tokens (the file's and the store's, by hash: never a token), the
 * services and the credentials as references (names and schemes, never a
 * secret).  POST /config/import takes that YAML (or one written by hand),
 * validates the whole document against the file and the store, and
 * applies all of it or nothing in one commit: tokens and services are
 * upserted by name; the file's objects must come back unchanged (else
 * 409); credentials are references that must exist (secrets are never
 * imported: create them with POST /credentials).  "?dry_run=true"
 * validates only.  "${VAR}" in imported text is never expanded.
 */


#include "ngx_ailink_admin.h"


static ngx_int_t ngx_ailink_admin_yaml_len(cJSON *item, ngx_uint_t indent);
static u_char *ngx_ailink_admin_yaml_write(u_char *p, cJSON *item,
    ngx_uint_t indent);


/* YAML block style; scalars as JSON (a double-quoted YAML scalar) */

static ngx_int_t
ngx_ailink_admin_yaml_scalar_len(cJSON *item)
{
    char    *t;
    size_t   n;

    t = cJSON_PrintUnformatted(item);
    if (t == NULL) {
        return NGX_ERROR;
    }

    n = ngx_strlen(t);
    cJSON_free(t);

    return n;
}


static u_char *
ngx_ailink_admin_yaml_scalar(u_char *p, cJSON *item)
{
    char  *t;

    t = cJSON_PrintUnformatted(item);
    if (t) {
        p = ngx_cpymem(p, t, ngx_strlen(t));
        cJSON_free(t);
    }

    return p;
}


static ngx_uint_t
ngx_ailink_admin_yaml_nested(cJSON *item)
{
    return (cJSON_IsObject(item) || cJSON_IsArray(item))
           && item->child != NULL;
}


static ngx_int_t
ngx_ailink_admin_yaml_len(cJSON *item, ngx_uint_t indent)
{
    cJSON      *c;
    ngx_int_t   n, len;

    if (!ngx_ailink_admin_yaml_nested(item)) {
        return ngx_ailink_admin_yaml_scalar_len(item) + 1;
    }

    len = 0;

    cJSON_ArrayForEach(c, item) {
        len += indent + 2 + 2;

        if (cJSON_IsObject(item)) {
            n = ngx_ailink_admin_yaml_scalar_len(
                    &(cJSON) { .type = cJSON_String,
                               .valuestring = c->string });
            len += n + 2;
        }

        n = ngx_ailink_admin_yaml_len(c, indent + 2);
        if (n == NGX_ERROR) {
            return NGX_ERROR;
        }

        len += n + 1;
    }

    return len;
}


static u_char *
ngx_ailink_admin_yaml_write(u_char *p, cJSON *item, ngx_uint_t indent)
{
    cJSON  *c;

    if (!ngx_ailink_admin_yaml_nested(item)) {
        p = ngx_ailink_admin_yaml_scalar(p, item);
        *p++ = '\n';
        return p;
    }

    *p++ = '\n';

    cJSON_ArrayForEach(c, item) {
        p = ngx_cpymem(p, "                                ",
                       ngx_min(indent, 32));

        if (cJSON_IsObject(item)) {
            p = ngx_ailink_admin_yaml_scalar(p,
                    &(cJSON) { .type = cJSON_String,
                               .valuestring = c->string });
            *p++ = ':';

        } else {
            *p++ = '-';
        }

        *p++ = ' ';

        if (ngx_ailink_admin_yaml_nested(c)) {
            p--;
        }

        p = ngx_ailink_admin_yaml_write(p, c, indent + 2);
    }

    return p;
}


/* a member named by an ngx_str_t (not NUL-terminated) */

static void
ngx_ailink_admin_add_named(cJSON *obj, ngx_str_t *key, cJSON *item)
{
    char  name[256];

    ngx_cpystrn((u_char *) name, key->data,
                ngx_min(key->len + 1, sizeof(name)));
    cJSON_AddItemToObject(obj, name, item);
}


static void
ngx_ailink_admin_add_str(cJSON *obj, const char *key, ngx_str_t *s)
{
    if (s->len) {
        cJSON_AddItemToObject(obj, key, ngx_ailink_json_string(s));
    }
}


/* a token of the file, in the file's shape (hash, never a token) */

static cJSON *
ngx_ailink_admin_export_token(ngx_ailink_conf_t *conf,
    ngx_ailink_token_t *tok)
{
    u_char                       hex[2 * NGX_AILINK_SHA256_LEN];
    cJSON                       *out, *map;
    ngx_str_t                    h;
    ngx_uint_t                   i;
    ngx_ailink_provider_cred_t  *pc;

    out = cJSON_CreateObject();

    ngx_ailink_admin_add_str(out, "id", &tok->id);
    ngx_ailink_admin_add_str(out, "name", &tok->name);
    ngx_ailink_admin_add_str(out, "project", &tok->project);

    ngx_hex_dump(hex, tok->hash, NGX_AILINK_SHA256_LEN);
    h.data = hex;
    h.len = sizeof(hex);
    ngx_ailink_admin_add_str(out, "hash", &h);

    if (!tok->enabled) {
        cJSON_AddBoolToObject(out, "enabled", 0);
    }

    if (tok->expires) {
        ngx_ailink_admin_time(tok->expires, out, "expires_at");
    }

    ngx_ailink_admin_add_str(out, "agent_name", &tok->agent_name);

    if (!tok->llm) {
        ngx_ailink_admin_add_str(out, "upstream", &tok->upstream.url);
    }

    if (tok->credential) {
        ngx_ailink_admin_add_str(out, "credential", &tok->credential->name);
    }

    map = ngx_ailink_policy_conf_token_own(tok);
    if (map) {
        cJSON_AddItemToObject(out, "policies", map);
    }

    map = ngx_ailink_guard_conf_token_own(conf, tok);
    if (map) {
        cJSON_AddItemToObject(out, "guardrails", map);
    }

    map = ngx_ailink_breaker_conf_token_own(tok);
    if (map) {
        cJSON_AddItemToObject(out, "circuit_breaker", map);
    }

    map = ngx_ailink_cache_conf_token_own(tok);
    if (map) {
        cJSON_AddItemToObject(out, "cache_ttl_secs", map);
    }

    if (tok->provider_creds.nelts) {
        map = cJSON_AddObjectToObject(out, "credentials");
        pc = tok->provider_creds.elts;

        for (i = 0; i < tok->provider_creds.nelts; i++) {
            ngx_ailink_admin_add_named(map, &pc[i].provider->name,
                ngx_ailink_json_string(&pc[i].credential->name));
        }
    }

    return out;
}


static ngx_int_t
ngx_ailink_admin_send_yaml(ngx_ailink_admin_req_t *ar, ngx_str_t *yaml)
{
    ngx_buf_t           *b;
    ngx_chain_t          out;
    ngx_http_request_t  *r;

    r = ar->request;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = yaml->len;
    ngx_str_set(&r->headers_out.content_type, "application/yaml");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = yaml->data;
    b->last = yaml->data + yaml->len;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    ar->sent_rc = ngx_http_send_header(r);

    if (ar->sent_rc == NGX_ERROR || ar->sent_rc > NGX_OK || r->header_only) {
        return NGX_DECLINED;
    }

    ar->sent_rc = ngx_http_output_filter(r, &out);

    return NGX_DECLINED;
}


static ngx_int_t
ngx_ailink_admin_export(ngx_ailink_admin_req_t *ar)
{
    u_char              *p;
    cJSON               *doc, *out, *list, *item, *creds, *c;
    ngx_int_t            len;
    ngx_str_t            text, yaml;
    ngx_uint_t           i, gen;
    ngx_ailink_conf_t   *conf;
    ngx_ailink_token_t  *tok;
    ngx_ailink_store_t  *st;
    ngx_ailink_credential_t  *cred;

    static const char  *meta[] = { "created_at", "revoked_at", NULL };
    static const char   head[] = "# AILink configuration exported by the "
                                 "admin API: no secrets (credentials are "
                                 "references, tokens are hashes)\n";

    st = ar->amcf->store;
    conf = ngx_ailink_get_conf(ar->request);

    if (st->ops->read(st, ar->request->pool, &text, &gen) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    doc = cJSON_Parse(text.len ? (char *) text.data : "{}");
    if (doc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    out = cJSON_CreateObject();

    /* credentials: references */
    creds = cJSON_AddObjectToObject(out, "credentials");
    cred = conf ? conf->credentials.elts : NULL;

    for (i = 0; conf && i < conf->credentials.nelts; i++) {
        c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "source", "config");
        ngx_ailink_admin_add_named(creds, &cred[i].name, c);
    }

    cJSON_ArrayForEach(item, ngx_ailink_json_get(doc, "credentials")) {
        c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "source", "vault");

        if (ngx_ailink_json_get(item, "scheme")) {
            cJSON_AddItemToObject(c, "scheme", cJSON_Duplicate(
                ngx_ailink_json_get(item, "scheme"), 1));
        }

        if (ngx_ailink_json_get(item, "name")) {
            cJSON_AddItemToObject(c, "name", cJSON_Duplicate(
                ngx_ailink_json_get(item, "name"), 1));
        }

        cJSON_AddItemToObject(creds, item->string, c);
    }

    list = cJSON_AddArrayToObject(out, "tokens");
    tok = conf ? conf->tokens.elts : NULL;

    for (i = 0; conf && i < conf->tokens.nelts; i++) {
        cJSON_AddItemToArray(list,
                             ngx_ailink_admin_export_token(conf, &tok[i]));
    }

    cJSON_ArrayForEach(item, ngx_ailink_json_get(doc, "tokens")) {
        c = cJSON_Duplicate(item, 1);

        for (i = 0; meta[i]; i++) {
            cJSON_DeleteItemFromObjectCaseSensitive(c, meta[i]);
        }

        cJSON_AddItemToArray(list, c);
    }

    /* policies: the file's as written, then the store's */
    list = ngx_ailink_policy_conf_file_list(ar->request);
    if (list == NULL) {
        cJSON_Delete(doc);
        cJSON_Delete(out);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cJSON_AddItemToObject(out, "policies", list);

    cJSON_ArrayForEach(item, ngx_ailink_json_get(doc, "policies")) {
        c = cJSON_Duplicate(item, 1);
        cJSON_DeleteItemFromObjectCaseSensitive(c, "created_at");
        cJSON_DeleteItemFromObjectCaseSensitive(c, "updated_at");
        cJSON_AddItemToArray(list, c);
    }

    list = cJSON_AddArrayToObject(out, "services");

    cJSON_ArrayForEach(item, ngx_ailink_json_get(doc, "services")) {
        c = cJSON_Duplicate(item, 1);
        cJSON_DeleteItemFromObjectCaseSensitive(c, "created_at");
        cJSON_AddItemToArray(list, c);
    }

    cJSON_Delete(doc);

    len = ngx_ailink_admin_yaml_len(out, 0);
    if (len == NGX_ERROR) {
        cJSON_Delete(out);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    yaml.data = ngx_pnalloc(ar->request->pool, sizeof(head) + len);
    if (yaml.data == NULL) {
        cJSON_Delete(out);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(yaml.data, head, sizeof(head) - 1);
    p = ngx_ailink_admin_yaml_write(p, out, 0);
    cJSON_Delete(out);

    yaml.len = p - yaml.data;

    return ngx_ailink_admin_send_yaml(ar, &yaml);
}


/* the loader's (or the YAML parser's) message, caught */

static u_char  ngx_ailink_admin_import_err[512];
static size_t  ngx_ailink_admin_import_errlen;


static void
ngx_ailink_admin_import_writer(ngx_log_t *log, ngx_uint_t level, u_char *buf,
    size_t len)
{
    u_char  *p, *last;

    if (ngx_ailink_admin_import_errlen) {
        return;
    }

    last = buf + len;
    p = ngx_strlchr(buf, last, '#');
    p = p ? ngx_strlchr(p, last, ':') : NULL;
    p = p ? p + 2 : buf;

    while (last > p && (last[-1] == '\n' || last[-1] == '\r')) {
        last--;
    }

    len = ngx_min((size_t) (last - p), sizeof(ngx_ailink_admin_import_err));
    ngx_memcpy(ngx_ailink_admin_import_err, p, len);
    ngx_ailink_admin_import_errlen = len;
}


static cJSON *
ngx_ailink_admin_find_key(cJSON *list, const char *key, cJSON *like)
{
    cJSON  *item, *v;

    if (!cJSON_IsString(like)) {
        return NULL;
    }

    cJSON_ArrayForEach(item, list) {
        v = ngx_ailink_json_get(item, key);

        if (cJSON_IsString(v) && strcmp(v->valuestring, like->valuestring) == 0)
        {
            return item;
        }
    }

    return NULL;
}


static void
ngx_ailink_admin_json_cleanup(void *data)
{
    cJSON_Delete(data);
}


/*
 * The policies of an import: those of the file must come back as written
 * (else 409), the others are upserted by name in the locked document;
 * counts: created, updated, unchanged.
 */

static ngx_int_t
ngx_ailink_admin_import_policies(ngx_ailink_admin_req_t *ar, cJSON *root,
    ngx_uint_t *counts)
{
    cJSON  *file, *list, *item, *v, *mine, *rec, *yaml, *meta;
    int     same;

    counts[0] = counts[1] = counts[2] = 0;

    v = ngx_ailink_json_get(root, "policies");

    if (v == NULL || cJSON_IsNull(v)) {
        return NGX_OK;
    }

    if (!cJSON_IsArray(v)) {
        return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                     "invalid_request",
                                     "policies: must be a list");
    }

    file = ngx_ailink_policy_conf_file_list(ar->request);
    if (file == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    list = ngx_ailink_json_get(ar->doc, "policies");
    if (list == NULL) {
        list = cJSON_AddArrayToObject(ar->doc, "policies");
    }

    cJSON_ArrayForEach(item, v) {
        if (!cJSON_IsObject(item)
            || !cJSON_IsString(ngx_ailink_json_get(item, "name")))
        {
            cJSON_Delete(file);
            return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request",
                                         "policies: every policy needs "
                                         "\"name\"");
        }

        mine = ngx_ailink_admin_find_key(file, "name",
                                         ngx_ailink_json_get(item, "name"));

        if (mine) {
            if (!cJSON_Compare(mine, item, 1)) {
                (void) ngx_ailink_admin_fail(ar, NGX_HTTP_CONFLICT,
                                             "conflict",
                                             "policy \"%s\" is managed by "
                                             "the config file and is "
                                             "read-only through the API",
                                             ngx_ailink_json_get(item, "name")
                                                 ->valuestring);
                cJSON_Delete(file);
                return NGX_DECLINED;
            }

            counts[2]++;
            continue;
        }

        mine = ngx_ailink_admin_find_key(list, "name",
                                         ngx_ailink_json_get(item, "name"));
        rec = cJSON_Duplicate(item, 1);
        if (rec == NULL) {
            cJSON_Delete(file);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cJSON_DeleteItemFromObjectCaseSensitive(rec, "created_at");
        cJSON_DeleteItemFromObjectCaseSensitive(rec, "updated_at");

        if (mine == NULL) {
            ngx_ailink_admin_time(ngx_time(), rec, "created_at");
            cJSON_AddItemToArray(list, rec);
            counts[0]++;
            continue;
        }

        yaml = cJSON_Duplicate(mine, 1);
        cJSON_DeleteItemFromObjectCaseSensitive(yaml, "created_at");
        cJSON_DeleteItemFromObjectCaseSensitive(yaml, "updated_at");
        same = cJSON_Compare(yaml, rec, 1);
        cJSON_Delete(yaml);

        meta = ngx_ailink_json_get(mine, "created_at");
        if (meta) {
            cJSON_AddItemToObject(rec, "created_at",
                                  cJSON_Duplicate(meta, 1));
        }

        meta = ngx_ailink_json_get(mine, "updated_at");

        if (!same) {
            ngx_ailink_admin_time(ngx_time(), rec, "updated_at");

        } else if (meta) {
            cJSON_AddItemToObject(rec, "updated_at",
                                  cJSON_Duplicate(meta, 1));
        }

        counts[same ? 2 : 1]++;
        cJSON_ReplaceItemViaPointer(list, mine, rec);
    }

    cJSON_Delete(file);

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_admin_import(ngx_ailink_admin_req_t *ar)
{
    cJSON               *root, *item, *v, *list, *rec, *mine, *yaml;
    ngx_int_t            rc;
    ngx_log_t            log;
    ngx_str_t            name, arg;
    ngx_uint_t           i, dry, created, updated, unchanged, screated,
                         supdated, counts[3];
    ngx_conf_t           cf;
    ngx_ailink_conf_t   *conf;
    ngx_ailink_token_t  *tok;
    ngx_pool_cleanup_t  *cln;

    static const char  *top[] = { "tokens", "services", "credentials",
                                  "policies", NULL };

    dry = (ngx_http_arg(ar->request, (u_char *) "dry_run", 7, &arg) == NGX_OK
           && arg.len == 4 && ngx_strncmp(arg.data, "true", 4) == 0);

    ngx_memzero(&log, sizeof(ngx_log_t));
    log.log_level = NGX_LOG_ERR;
    log.writer = ngx_ailink_admin_import_writer;
    ngx_ailink_admin_import_errlen = 0;

    ngx_memzero(&cf, sizeof(ngx_conf_t));
    cf.pool = ar->request->pool;
    cf.temp_pool = ar->request->pool;
    cf.log = &log;
    cf.cycle = (ngx_cycle_t *) ngx_cycle;

    ngx_str_set(&name, "import");

    root = ngx_ailink_yaml_parse(&cf, &name, &ar->body);

    if (root == NULL) {
        return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                     "invalid_request", "the body is not "
                                     "valid YAML: %*s",
                                     ngx_ailink_admin_import_errlen,
                                     ngx_ailink_admin_import_err);
    }

    cln = ngx_pool_cleanup_add(ar->request->pool, 0);
    if (cln == NULL) {
        cJSON_Delete(root);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_ailink_admin_json_cleanup;
    cln->data = root;

    cJSON_ArrayForEach(item, root) {
        for (i = 0; top[i]; i++) {
            if (ngx_strcmp(item->string, top[i]) == 0) {
                break;
            }
        }

        if (top[i] == NULL) {
            return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request",
                                         "\"%s\" cannot be imported through "
                                         "the API (tokens, services, "
                                         "policies and credential "
                                         "references can)",
                                         item->string);
        }
    }

    rc = ngx_ailink_admin_lock(ar);
    if (rc != NGX_OK) {
        return rc == NGX_BUSY ? NGX_BUSY : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    conf = ngx_ailink_get_conf(ar->request);

    /* credentials: references to what exists, never secrets */

    cJSON_ArrayForEach(item, ngx_ailink_json_get(root, "credentials")) {
        ngx_str_t  cn;

        cn.data = (u_char *) item->string;
        cn.len = ngx_strlen(item->string);

        if (ngx_ailink_json_get(item, "secret")
            || ngx_ailink_json_get(item, "sealed"))
        {
            return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request",
                                         "credentials.%V: secrets are not "
                                         "imported; create it with POST "
                                         "/credentials", &cn);
        }

        rec = ngx_ailink_json_get(ngx_ailink_json_get(ar->doc, "credentials"),
                                  item->string);

        for (i = 0; rec == NULL && conf && i < conf->credentials.nelts; i++) {
            ngx_ailink_credential_t  *cr = conf->credentials.elts;

            if (cr[i].name.len == cn.len
                && ngx_strncmp(cr[i].name.data, cn.data, cn.len) == 0)
            {
                rec = item;
            }
        }

        if (rec == NULL) {
            return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request",
                                         "credentials.%V: no such credential "
                                         "in the file or the vault", &cn);
        }
    }

    /* policies: the file's come back unchanged; the rest by name */

    rc = ngx_ailink_admin_import_policies(ar, root, counts);
    if (rc != NGX_OK) {
        return rc;
    }

    /* tokens: the file's come back unchanged; the rest upserted by name */

    created = updated = unchanged = 0;

    list = ngx_ailink_json_get(ar->doc, "tokens");
    if (list == NULL) {
        list = cJSON_AddArrayToObject(ar->doc, "tokens");
    }

    cJSON_ArrayForEach(item, ngx_ailink_json_get(root, "tokens")) {
        v = ngx_ailink_json_get(item, "id");
        tok = NULL;

        for (i = 0; cJSON_IsString(v) && conf && i < conf->tokens.nelts;
             i++)
        {
            ngx_ailink_token_t  *t = conf->tokens.elts;

            if (ngx_strcmp(t[i].id.data, v->valuestring) == 0) {
                tok = &t[i];
                break;
            }
        }

        if (tok) {
            yaml = ngx_ailink_admin_export_token(conf, tok);
            i = cJSON_Compare(yaml, item, 1);
            cJSON_Delete(yaml);

            if (!i) {
                return ngx_ailink_admin_fail(ar, NGX_HTTP_CONFLICT,
                                             "conflict",
                                             "token \"%s\" is managed by the "
                                             "config file and is read-only "
                                             "through the API",
                                             v->valuestring);
            }

            unchanged++;
            continue;
        }

        if (!cJSON_IsObject(item) || !cJSON_IsString(v)
            || !cJSON_IsString(ngx_ailink_json_get(item, "name")))
        {
            return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request",
                                         "tokens: every token needs \"id\", "
                                         "\"name\" and \"hash\"");
        }

        mine = ngx_ailink_admin_find_key(list, "name",
                                         ngx_ailink_json_get(item, "name"));
        if (mine == NULL) {
            mine = ngx_ailink_admin_find_key(list, "id", v);
        }

        rec = cJSON_Duplicate(item, 1);

        if (mine) {
            v = ngx_ailink_json_get(mine, "created_at");
            if (v) {
                cJSON_AddItemToObject(rec, "created_at",
                                      cJSON_Duplicate(v, 1));
            }

            v = ngx_ailink_json_get(mine, "revoked_at");
            if (v) {
                cJSON_AddItemToObject(rec, "revoked_at",
                                      cJSON_Duplicate(v, 1));
            }

            yaml = ngx_ailink_admin_strip_meta(mine);
            i = cJSON_Compare(yaml, item, 1);
            cJSON_Delete(yaml);

            if (i) {
                unchanged++;

            } else {
                updated++;
            }

            cJSON_ReplaceItemViaPointer(list, mine, rec);

        } else {
            ngx_ailink_admin_time(ngx_time(), rec, "created_at");
            cJSON_AddItemToArray(list, rec);
            created++;
        }
    }

    /* services, by name */

    screated = supdated = 0;

    list = ngx_ailink_json_get(ar->doc, "services");
    if (list == NULL) {
        list = cJSON_AddArrayToObject(ar->doc, "services");
    }

    cJSON_ArrayForEach(item, ngx_ailink_json_get(root, "services")) {
        v = ngx_ailink_json_get(item, "name");

        if (!cJSON_IsObject(item) || !cJSON_IsString(v)
            || !cJSON_IsString(ngx_ailink_json_get(item, "base_url")))
        {
            return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request",
                                         "services: every service needs "
                                         "\"name\" and \"base_url\"");
        }

        mine = ngx_ailink_admin_find_key(list, "name", v);
        rec = cJSON_Duplicate(item, 1);

        if (mine) {
            v = ngx_ailink_json_get(mine, "created_at");
            if (v) {
                cJSON_AddItemToObject(rec, "created_at",
                                      cJSON_Duplicate(v, 1));
            }

            cJSON_ReplaceItemViaPointer(list, mine, rec);
            supdated++;

        } else {
            ngx_ailink_admin_time(ngx_time(), rec, "created_at");
            cJSON_AddItemToArray(list, rec);
            screated++;
        }
    }

    /* the whole document compiles, or nothing is applied */
    rc = ngx_ailink_admin_check(ar);
    if (rc != NGX_OK) {
        return rc;
    }

    item = cJSON_CreateObject();
    v = cJSON_AddObjectToObject(item, "tokens");
    cJSON_AddNumberToObject(v, "created", created);
    cJSON_AddNumberToObject(v, "updated", updated);
    cJSON_AddNumberToObject(v, "unchanged", unchanged);
    v = cJSON_AddObjectToObject(item, "services");
    cJSON_AddNumberToObject(v, "created", screated);
    cJSON_AddNumberToObject(v, "updated", supdated);
    v = cJSON_AddObjectToObject(item, "policies");
    cJSON_AddNumberToObject(v, "created", counts[0]);
    cJSON_AddNumberToObject(v, "updated", counts[1]);
    cJSON_AddNumberToObject(v, "unchanged", counts[2]);
    cJSON_AddBoolToObject(item, "dry_run", dry);

    if (dry) {
        return ngx_ailink_admin_reply(ar, NGX_HTTP_OK, item);
    }

    ngx_str_set(&ar->audit, "configuration imported");

    return ngx_ailink_admin_answer(ar, item);
}


ngx_int_t
ngx_ailink_admin_config(ngx_ailink_admin_req_t *ar)
{
    ngx_uint_t  method;

    method = ar->request->method;

    if (ar->id.len == 6 && ngx_strncmp(ar->id.data, "export", 6) == 0
        && ar->sub.len == 0 && method == NGX_HTTP_GET)
    {
        return ngx_ailink_admin_export(ar);
    }

    if (ar->id.len == 6 && ngx_strncmp(ar->id.data, "import", 6) == 0
        && ar->sub.len == 0 && method == NGX_HTTP_POST)
    {
        return ngx_ailink_admin_import(ar);
    }

    return ngx_ailink_admin_fail(ar, NGX_HTTP_NOT_FOUND, "not_found",
                                 "GET /config/export or POST /config/import");
}
