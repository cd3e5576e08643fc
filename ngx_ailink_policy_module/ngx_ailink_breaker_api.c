
/*
 * Copyright (C) AILink
 *
 * The tokens' breaker settings and the breakers' small API, also served
 * by the admin API (ngx_ailink_admin_routes.c) through the same handler:
 *
 *   GET   /api/v1/health/upstreams             every provider's breaker
 *   GET   /api/v1/tokens/<id>/circuit-breaker  a token's settings
 *   PATCH /api/v1/tokens/<id>/circuit-breaker  changes the fields given
 *
 * A token's settings: the location's ailink_breaker_* values, then the
 * token's "circuit_breaker" in the config file, then what PATCH set (a
 * record "bs:<token id>" in the breaker zone: shared by the workers, kept
 * across reloads, and over the file until the zone is lost).
 */


#include "ngx_ailink_breaker.h"


#define NGX_AILINK_BREAKER_BODY_MAX  4096


static ngx_int_t ngx_ailink_breaker_api_token(ngx_http_request_t *r,
    ngx_str_t *id);
static void ngx_ailink_breaker_api_patch(ngx_http_request_t *r);
static ngx_int_t ngx_ailink_breaker_api_health(ngx_http_request_t *r);


static const char  *ngx_ailink_breaker_states[] = {
    "closed", "open", "half_open"
};


/* "circuit_breaker" of each token in the file: token->breaker */

ngx_int_t
ngx_ailink_breaker_conf_load(ngx_conf_t *cf, ngx_ailink_conf_t *conf,
    cJSON *root)
{
    cJSON                        *list, *item, *cb, *v, *id;
    ngx_str_t                     s;
    ngx_uint_t                    i;
    ngx_ailink_token_t           *tok;
    ngx_ailink_breaker_fields_t  *f;

    list = ngx_ailink_json_get(root, "tokens");

    cJSON_ArrayForEach(item, list) {
        cb = ngx_ailink_json_get(item, "circuit_breaker");
        id = ngx_ailink_json_get(item, "id");

        if (cb == NULL || !cJSON_IsString(id)) {
            continue;
        }

        ngx_ailink_json_str(id, &s);

        if (!cJSON_IsObject(cb)) {
            goto invalid;
        }

        f = ngx_palloc(cf->pool, sizeof(ngx_ailink_breaker_fields_t));
        if (f == NULL) {
            return NGX_ERROR;
        }

        f->enabled = -1;
        f->threshold = -1;
        f->cooldown = -1;
        f->half_open = -1;

        for (v = cb->child; v; v = v->next) {

            if (strcmp(v->string, "enabled") == 0 && cJSON_IsBool(v)) {
                f->enabled = cJSON_IsTrue(v);

            } else if (cJSON_IsNumber(v) && v->valuedouble >= 0
                       && v->valuedouble <= 1000000
                       && v->valuedouble == (double) (ngx_int_t) v->valuedouble)
            {
                if (strcmp(v->string, "failure_threshold") == 0
                    && v->valuedouble >= 1)
                {
                    f->threshold = (ngx_int_t) v->valuedouble;

                } else if (strcmp(v->string, "recovery_cooldown_secs") == 0) {
                    f->cooldown = (ngx_int_t) v->valuedouble;

                } else if (strcmp(v->string, "half_open_max_requests") == 0
                           && v->valuedouble >= 1)
                {
                    f->half_open = (ngx_int_t) v->valuedouble;

                } else {
                    goto invalid;
                }

            } else {
                goto invalid;
            }
        }

        tok = conf->tokens.elts;

        for (i = 0; i < conf->tokens.nelts; i++) {
            if (tok[i].id.len == s.len
                && ngx_strncmp(tok[i].id.data, s.data, s.len) == 0)
            {
                tok[i].breaker = f;
            }
        }
    }

    return NGX_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "ailink_config \"%V\": token \"%V\": circuit_breaker: "
                       "an object of enabled (true|false), failure_threshold "
                       "(>= 1), recovery_cooldown_secs (>= 0) and "
                       "half_open_max_requests (>= 1)", &conf->file, &s);
    return NGX_ERROR;
}


/* a token's "circuit_breaker" as the file has it (for the export), or NULL */

cJSON *
ngx_ailink_breaker_conf_token_own(ngx_ailink_token_t *tok)
{
    cJSON                        *cb;
    ngx_ailink_breaker_fields_t  *f;

    f = tok->breaker;

    if (f == NULL) {
        return NULL;
    }

    cb = cJSON_CreateObject();

    if (f->enabled != -1) {
        cJSON_AddBoolToObject(cb, "enabled", f->enabled);
    }

    if (f->threshold != -1) {
        cJSON_AddNumberToObject(cb, "failure_threshold", f->threshold);
    }

    if (f->cooldown != -1) {
        cJSON_AddNumberToObject(cb, "recovery_cooldown_secs", f->cooldown);
    }

    if (f->half_open != -1) {
        cJSON_AddNumberToObject(cb, "half_open_max_requests", f->half_open);
    }

    return cb;
}


static void
ngx_ailink_breaker_apply(ngx_ailink_breaker_fields_t *f,
    ngx_ailink_breaker_conf_t *out)
{
    if (f->enabled >= 0) {
        out->enabled = f->enabled;
    }

    if (f->threshold > 0) {
        out->threshold = f->threshold;
    }

    if (f->cooldown >= 0) {
        out->cooldown = f->cooldown;
    }

    if (f->half_open > 0) {
        out->half_open = f->half_open;
    }
}


static ngx_int_t
ngx_ailink_breaker_settings_key(ngx_pool_t *pool, ngx_str_t *id,
    ngx_str_t *key)
{
    return ngx_ailink_breaker_key(pool, 's', id, key);
}


ngx_int_t
ngx_ailink_breaker_token_conf(ngx_http_request_t *r, ngx_ailink_state_t *st,
    ngx_ailink_token_t *tok, ngx_ailink_breaker_conf_t *defaults,
    ngx_ailink_breaker_conf_t *out)
{
    u_char                       *p, *last;
    ngx_str_t                     key, rec;
    ngx_int_t                     v[4];
    ngx_uint_t                    i;
    ngx_ailink_breaker_fields_t   f;

    *out = *defaults;
    out->enabled = 0;

    if (tok->breaker) {
        ngx_ailink_breaker_apply(tok->breaker, out);
    }

    if (ngx_ailink_breaker_settings_key(r->pool, &tok->id, &key) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_ailink_state_get_record(st, &key, r->pool, &rec) != NGX_OK) {
        return NGX_OK;
    }

    /* "enabled threshold cooldown half_open", -1 for a field not set */
    p = rec.data;
    last = rec.data + rec.len;

    for (i = 0; i < 4; i++) {
        while (p < last && *p == ' ') {
            p++;
        }

        if (p < last && *p == '-') {
            v[i] = -1;
            p += 2;
            continue;
        }

        v[i] = 0;

        while (p < last && *p >= '0' && *p <= '9') {
            v[i] = v[i] * 10 + (*p++ - '0');
        }
    }

    f.enabled = v[0];
    f.threshold = v[1];
    f.cooldown = v[2];
    f.half_open = v[3];

    ngx_ailink_breaker_apply(&f, out);

    return NGX_OK;
}


static ngx_ailink_token_t *
ngx_ailink_breaker_find_token(ngx_http_request_t *r, ngx_str_t *id)
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

    /* a token created through the admin API */
    if (ngx_ailink_token_find_id_store) {
        return ngx_ailink_token_find_id_store(r, id);
    }

    return NULL;
}


ngx_int_t
ngx_ailink_breaker_api_handler(ngx_http_request_t *r)
{
    u_char     *p, *last;
    ngx_int_t   rc;
    ngx_str_t   id;

    static ngx_str_t  health = ngx_string("/health/upstreams");
    static ngx_str_t  tokens = ngx_string("/tokens/");
    static ngx_str_t  cb = ngx_string("/circuit-breaker");

    if (ngx_ailink_admin_key_check(r) != NGX_OK) {
        return ngx_ailink_send_error(r, NGX_HTTP_UNAUTHORIZED,
                                     "invalid_token",
                                     "a valid admin key is required", NULL);
    }

    if (ngx_ailink_breaker_state(r) == NULL) {
        return ngx_ailink_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                     "no \"ailink_breaker_zone\"", NULL);
    }

    last = r->uri.data + r->uri.len;

    /* .../health/upstreams */
    if (r->uri.len >= health.len
        && ngx_strncmp(last - health.len, health.data, health.len) == 0)
    {
        if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
            return ngx_ailink_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                         "method_not_allowed", "GET only",
                                         NULL);
        }

        return ngx_ailink_breaker_api_health(r);
    }

    /* .../tokens/<id>/circuit-breaker */
    p = ngx_strlcasestrn(r->uri.data, last, tokens.data, tokens.len - 1);

    if (p == NULL || r->uri.len < cb.len
        || ngx_strncmp(last - cb.len, cb.data, cb.len) != 0
        || p + tokens.len >= last - cb.len)
    {
        return ngx_ailink_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                     "unknown endpoint", NULL);
    }

    id.data = p + tokens.len;
    id.len = (last - cb.len) - id.data;

    if (ngx_strlchr(id.data, id.data + id.len, '/')) {
        return ngx_ailink_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                     "unknown endpoint", NULL);
    }

    if (ngx_ailink_breaker_find_token(r, &id) == NULL) {
        return ngx_ailink_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                     "no such token", NULL);
    }

    if (r->method == NGX_HTTP_GET || r->method == NGX_HTTP_HEAD) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_ailink_breaker_api_token(r, &id);
    }

    if (r->method != NGX_HTTP_PATCH) {
        return ngx_ailink_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                     "method_not_allowed", "GET or PATCH",
                                     NULL);
    }

    if (r->headers_in.content_length_n > NGX_AILINK_BREAKER_BODY_MAX) {
        return ngx_ailink_send_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                     "payload_too_large",
                                     "the body is too large", NULL);
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_ailink_breaker_api_patch);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/* the token id of r's URI, as the handler above found it */

static void
ngx_ailink_breaker_uri_id(ngx_http_request_t *r, ngx_str_t *id)
{
    u_char  *p, *last;

    last = r->uri.data + r->uri.len - (sizeof("/circuit-breaker") - 1);
    p = ngx_strlcasestrn(r->uri.data, last, (u_char *) "/tokens/",
                         sizeof("/tokens/") - 2);

    id->data = p + sizeof("/tokens/") - 1;
    id->len = last - id->data;
}


static ngx_int_t
ngx_ailink_breaker_api_token(ngx_http_request_t *r, ngx_str_t *id)
{
    u_char                     *p;
    time_t                      left;
    ngx_str_t                   json, scope;
    ngx_uint_t                  status;
    ngx_ailink_state_t         *st;
    ngx_ailink_token_t         *tok;
    ngx_ailink_breaker_conf_t   c;

    st = ngx_ailink_breaker_state(r);
    tok = ngx_ailink_breaker_find_token(r, id);

    if (ngx_ailink_breaker_token_conf(r, st, tok,
                                      ngx_ailink_breaker_loc_defaults(r), &c)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the state: the worst of the token's breakers, one per provider */
    scope.len = 0;
    status = NGX_AILINK_BREAKER_CLOSED;
    left = 0;

    {
        ngx_uint_t              i, s;
        time_t                  l;
        int64_t                 v;
        ngx_ailink_conf_t      *conf;
        ngx_ailink_provider_t  *prov;

        conf = ngx_ailink_get_conf(r);
        prov = conf->providers.elts;

        for (i = 0; i < conf->providers.nelts; i++) {
            scope.len = sizeof("t::") - 1 + id->len + prov[i].name.len;
            scope.data = ngx_pnalloc(r->pool, scope.len);
            if (scope.data == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            ngx_sprintf(scope.data, "t:%V:%V", id, &prov[i].name);

            s = ngx_ailink_breaker_status(st, r->pool, &scope, -1, &l, &v);

            if (s == NGX_AILINK_BREAKER_OPEN
                || (s == NGX_AILINK_BREAKER_HALF_OPEN
                    && status == NGX_AILINK_BREAKER_CLOSED))
            {
                status = s;
                left = ngx_max(left, l);
            }
        }
    }

    json.data = ngx_pnalloc(r->pool, 256 + id->len + 4 * NGX_INT_T_LEN);
    if (json.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(json.data, "{\"token_id\":\"%V\",\"enabled\":%s,"
                    "\"failure_threshold\":%ui,"
                    "\"recovery_cooldown_secs\":%T,"
                    "\"half_open_max_requests\":%ui,\"state\":\"%s\","
                    "\"cooldown_remaining_secs\":%T}\n",
                    id, c.enabled ? "true" : "false", c.threshold,
                    c.cooldown, c.half_open,
                    ngx_ailink_breaker_states[status], left);
    json.len = p - json.data;

    return ngx_ailink_send_json(r, NGX_HTTP_OK, &json);
}


static void
ngx_ailink_breaker_api_patch(ngx_http_request_t *r)
{
    u_char                     *p;
    cJSON                      *json, *v;
    ngx_int_t                   rc;
    ngx_str_t                   id, body, key, rec;
    ngx_chain_t                *cl;
    ngx_ailink_state_t         *st;
    ngx_ailink_token_t         *tok;
    ngx_ailink_breaker_conf_t   c;

    ngx_ailink_breaker_uri_id(r, &id);

    st = ngx_ailink_breaker_state(r);
    tok = ngx_ailink_breaker_find_token(r, &id);

    if (r->request_body == NULL || r->request_body->temp_file) {
        ngx_http_finalize_request(r, ngx_ailink_send_error(r,
                                  NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                  "payload_too_large",
                                  "the body is too large", NULL));
        return;
    }

    body.len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        body.len += ngx_buf_size(cl->buf);
    }

    if (body.len > NGX_AILINK_BREAKER_BODY_MAX) {
        ngx_http_finalize_request(r, ngx_ailink_send_error(r,
                                  NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                  "payload_too_large",
                                  "the body is too large", NULL));
        return;
    }

    body.data = ngx_pnalloc(r->pool, body.len + 1);
    if (body.data == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = body.data;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
    }

    if (ngx_ailink_breaker_token_conf(r, st, tok,
                                      ngx_ailink_breaker_loc_defaults(r), &c)
        != NGX_OK)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_ailink_json_arena(r->pool);
    json = ngx_ailink_json_parse(&body);

    rc = NGX_OK;

    if (!cJSON_IsObject(json)) {
        rc = NGX_DECLINED;
    }

    for (v = json ? json->child : NULL; v && rc == NGX_OK; v = v->next) {

        if (strcmp(v->string, "enabled") == 0) {
            if (cJSON_IsBool(v)) {
                c.enabled = cJSON_IsTrue(v);

            } else {
                rc = NGX_DECLINED;
            }

            continue;
        }

        if (!cJSON_IsNumber(v) || v->valuedouble < 0
            || v->valuedouble > 1000000
            || v->valuedouble != (double) (ngx_int_t) v->valuedouble)
        {
            rc = NGX_DECLINED;
            continue;
        }

        if (strcmp(v->string, "failure_threshold") == 0
            && v->valuedouble >= 1)
        {
            c.threshold = (ngx_uint_t) v->valuedouble;

        } else if (strcmp(v->string, "recovery_cooldown_secs") == 0) {
            c.cooldown = (time_t) v->valuedouble;

        } else if (strcmp(v->string, "half_open_max_requests") == 0
                   && v->valuedouble >= 1)
        {
            c.half_open = (ngx_uint_t) v->valuedouble;

        } else {
            rc = NGX_DECLINED;
        }
    }

    ngx_ailink_json_delete(json);
    ngx_ailink_json_arena(NULL);

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r, ngx_ailink_send_error(r,
                                  NGX_HTTP_BAD_REQUEST, "invalid_request",
                                  "a JSON object of enabled (true|false), "
                                  "failure_threshold (>= 1), "
                                  "recovery_cooldown_secs (>= 0), "
                                  "half_open_max_requests (>= 1)", NULL));
        return;
    }

    /* every field is written: the result of this PATCH stands whole */
    rec.data = ngx_pnalloc(r->pool, 4 * NGX_INT_T_LEN + 4);
    if (rec.data == NULL
        || ngx_ailink_breaker_settings_key(r->pool, &id, &key) != NGX_OK)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    rec.len = ngx_sprintf(rec.data, "%ui %ui %T %ui", c.enabled ? 1 : 0,
                          c.threshold, c.cooldown, c.half_open)
              - rec.data;

    if (ngx_ailink_state_set_record(st, &key, &rec, 0) != NGX_OK) {
        ngx_http_finalize_request(r, ngx_ailink_send_error(r,
                                  NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "state_unavailable",
                                  "the breaker zone is full", NULL));
        return;
    }

    ngx_http_finalize_request(r, ngx_ailink_breaker_api_token(r, &id));
}


static ngx_int_t
ngx_ailink_breaker_api_health(ngx_http_request_t *r)
{
    u_char                 *p;
    size_t                  len;
    time_t                  left;
    int64_t                 failures;
    ngx_str_t               json, scope, key, err;
    ngx_uint_t              i, status;
    ngx_ailink_conf_t      *conf;
    ngx_ailink_state_t     *st;
    ngx_ailink_provider_t  *prov;

    conf = ngx_ailink_get_conf(r);
    st = ngx_ailink_breaker_state(r);

    if (conf == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    prov = conf->providers.elts;

    len = sizeof("{\"upstreams\":[]}\n");

    for (i = 0; i < conf->providers.nelts; i++) {
        len += 256 + 2 * prov[i].name.len + 3 * NGX_INT64_LEN;
    }

    json.data = ngx_pnalloc(r->pool, len);
    if (json.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(json.data, "{\"upstreams\":[",
                   sizeof("{\"upstreams\":[") - 1);

    for (i = 0; i < conf->providers.nelts; i++) {
        scope.len = sizeof("u:") - 1 + prov[i].name.len;
        scope.data = ngx_pnalloc(r->pool, scope.len);
        if (scope.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_sprintf(scope.data, "u:%V", &prov[i].name);

        status = ngx_ailink_breaker_status(st, r->pool, &scope, -1, &left,
                                           &failures);
        failures &= NGX_AILINK_BREAKER_MASK;

        if (ngx_ailink_breaker_key(r->pool, 'e', &scope, &key) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (ngx_ailink_state_get_record(st, &key, r->pool, &err) != NGX_OK
            || err.len > 64)
        {
            err.len = 0;
        }

        p = ngx_sprintf(p, "%s{\"name\":\"%V\",\"state\":\"%s\","
                        "\"failures\":%L,\"cooldown_remaining_secs\":%T,"
                        "\"last_error\":",
                        i ? "," : "", &prov[i].name,
                        ngx_ailink_breaker_states[status], failures, left);

        if (err.len) {
            /* our own text: "status 503", "timeout", "connection error" */
            p = ngx_sprintf(p, "\"%V\"}", &err);

        } else {
            p = ngx_cpymem(p, "null}", 5);
        }
    }

    p = ngx_cpymem(p, "]}\n", 3);
    json.len = p - json.data;

    return ngx_ailink_send_json(r, NGX_HTTP_OK, &json);
}
