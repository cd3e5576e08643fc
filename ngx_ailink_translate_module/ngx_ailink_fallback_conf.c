
/*
 * Copyright (C) AILink
 *
 * The "fallbacks" of the config file: for a model the client asks for (or
 * every model starting with a prefix, written "prefix*"), the targets
 * tried in order when its provider fails:
 *
 *   fallbacks:
 *     gpt-4o: [claude-sonnet-4-5, gemini-2.5-pro]
 *     "mock-*":
 *       - { model: gpt-4o-mini, provider: azure }
 *
 * A target is a model, routed by "routes" like a client's, or a model and
 * the provider that serves it.  Every mistake fails nginx -t.
 */


#include "ngx_ailink_fallback.h"


static ngx_int_t ngx_ailink_fallback_conf_target(ngx_conf_t *cf,
    ngx_ailink_conf_t *conf, cJSON *item, const char *where,
    ngx_ailink_fallback_target_t *t);


static void ngx_cdecl
ngx_ailink_fallback_conf_error(ngx_conf_t *cf, ngx_ailink_conf_t *conf,
    const char *fmt, ...)
{
    u_char   buf[NGX_MAX_CONF_ERRSTR], *p;
    va_list  args;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, buf + sizeof(buf), fmt, args);
    va_end(args);

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "ailink_config \"%V\": %*s",
                       &conf->file, p - buf, buf);
}


static ngx_int_t
ngx_ailink_fallback_conf_str(ngx_conf_t *cf, const char *text, ngx_str_t *s)
{
    s->len = ngx_strlen(text);
    s->data = ngx_pnalloc(cf->pool, s->len + 1);
    if (s->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(s->data, text, s->len + 1);

    return NGX_OK;
}


ngx_int_t
ngx_ailink_fallback_conf_load(ngx_conf_t *cf, ngx_ailink_conf_t *conf,
    cJSON *root)
{
    char                           where[160];
    cJSON                         *map, *list, *item;
    ngx_uint_t                     i;
    ngx_ailink_fallback_rule_t    *rule;
    ngx_ailink_fallback_target_t  *t;

    map = ngx_ailink_json_get(root, "fallbacks");

    if (map == NULL || cJSON_IsNull(map)) {
        return NGX_OK;
    }

    if (!cJSON_IsObject(map)) {
        ngx_ailink_fallback_conf_error(cf, conf, "fallbacks: must be a "
                                       "mapping of model to a list of "
                                       "fallback models");
        return NGX_ERROR;
    }

    conf->fallbacks = ngx_array_create(cf->pool, 4,
                                       sizeof(ngx_ailink_fallback_rule_t));
    if (conf->fallbacks == NULL) {
        return NGX_ERROR;
    }

    cJSON_ArrayForEach(list, map) {

        rule = ngx_array_push(conf->fallbacks);
        if (rule == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(rule, sizeof(ngx_ailink_fallback_rule_t));

        if (ngx_ailink_fallback_conf_str(cf, list->string, &rule->model)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (rule->model.len && rule->model.data[rule->model.len - 1] == '*') {
            rule->model.len--;
            rule->prefix = 1;
        }

        if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) == 0
            || cJSON_GetArraySize(list) >= NGX_AILINK_FALLBACK_MAX)
        {
            ngx_ailink_fallback_conf_error(cf, conf, "fallbacks.%s: must be "
                                           "a list of 1 to %d models",
                                           list->string,
                                           NGX_AILINK_FALLBACK_MAX - 1);
            return NGX_ERROR;
        }

        if (ngx_array_init(&rule->targets, cf->pool, 4,
                           sizeof(ngx_ailink_fallback_target_t))
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        i = 0;

        cJSON_ArrayForEach(item, list) {
            ngx_snprintf((u_char *) where, sizeof(where), "fallbacks.%s[%ui]%Z",
                         list->string, i++);

            t = ngx_array_push(&rule->targets);
            if (t == NULL) {
                return NGX_ERROR;
            }

            if (ngx_ailink_fallback_conf_target(cf, conf, item, where, t)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_fallback_conf_target(ngx_conf_t *cf, ngx_ailink_conf_t *conf,
    cJSON *item, const char *where, ngx_ailink_fallback_target_t *t)
{
    cJSON      *v;
    ngx_str_t   name;

    ngx_memzero(t, sizeof(ngx_ailink_fallback_target_t));

    if (cJSON_IsObject(item)) {
        cJSON_ArrayForEach(v, item) {
            if (ngx_strcmp(v->string, "model") != 0
                && ngx_strcmp(v->string, "provider") != 0)
            {
                ngx_ailink_fallback_conf_error(cf, conf, "%s: unknown key "
                                               "\"%s\"", where, v->string);
                return NGX_ERROR;
            }
        }

        v = ngx_ailink_json_get(item, "provider");

        if (v) {
            if (!cJSON_IsString(v) || v->valuestring[0] == '\0') {
                ngx_ailink_fallback_conf_error(cf, conf, "%s.provider: must "
                                               "be a non-empty string",
                                               where);
                return NGX_ERROR;
            }

            name.data = (u_char *) v->valuestring;
            name.len = ngx_strlen(v->valuestring);

            t->provider = ngx_ailink_provider_find(conf, &name);

            if (t->provider == NULL) {
                ngx_ailink_fallback_conf_error(cf, conf, "%s.provider: "
                                               "unknown provider \"%V\"",
                                               where, &name);
                return NGX_ERROR;
            }
        }

        item = ngx_ailink_json_get(item, "model");
    }

    if (!cJSON_IsString(item) || item->valuestring[0] == '\0') {
        ngx_ailink_fallback_conf_error(cf, conf, "%s: a model name, or "
                                       "{model, provider}", where);
        return NGX_ERROR;
    }

    if (ngx_ailink_fallback_conf_str(cf, item->valuestring, &t->model)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (t->provider == NULL) {
        t->provider = ngx_ailink_route_model(conf, &t->model);

        if (t->provider == NULL) {
            ngx_ailink_fallback_conf_error(cf, conf, "%s: no provider route "
                                           "for model \"%V\"", where,
                                           &t->model);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* the model's own rule, else the longest prefix's */

ngx_ailink_fallback_rule_t *
ngx_ailink_fallback_find(ngx_ailink_conf_t *conf, ngx_str_t *model)
{
    ngx_uint_t                   i;
    ngx_ailink_fallback_rule_t  *rule, *best;

    rule = conf->fallbacks->elts;
    best = NULL;

    for (i = 0; i < conf->fallbacks->nelts; i++) {

        if (!rule[i].prefix) {
            if (rule[i].model.len == model->len
                && ngx_strncmp(rule[i].model.data, model->data, model->len)
                   == 0)
            {
                return &rule[i];
            }

            continue;
        }

        if (model->len >= rule[i].model.len
            && ngx_strncmp(rule[i].model.data, model->data,
                           rule[i].model.len) == 0
            && (best == NULL || rule[i].model.len > best->model.len))
        {
            best = &rule[i];
        }
    }

    return best;
}
