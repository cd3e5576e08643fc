
/*
 * Copyright (C) AILink
 *
 * Policies from the config-as-code file, compiled once when nginx reads
 * its configuration: condition trees with their operators resolved,
 * regexes compiled and JIT-compiled (PCRE2), rate limits and spend caps
 * checked, and for every token the list of policies that apply to it, so
 * that a request pays nothing for policies that are not its own.  Every
 * mistake fails "nginx -t" naming the policy and the rule.
 *
 *   policies:
 *     - name: no-gpt4
 *       mode: enforce                 # enforce | shadow
 *       phase: pre                    # pre | post
 *       apply_to: all                 # all | {tokens: [...], projects: [...]}
 *       timezone: "+02:00"            # context.time.*; UTC by default
 *       rules:
 *         - name: block
 *           when: {field: model, op: starts_with, value: gpt-4}
 *           then: {deny: {reason: "GPT-4 is not for this agent"}}
 *
 * Tokens may also name policies: "policies: [no-gpt4]".
 */


#include "ngx_ailink_policy.h"
#include "ngx_ailink_approval.h"
#include "ngx_ailink_guard.h"
#include <math.h>


typedef struct {
    ngx_conf_t                 *cf;
    ngx_ailink_conf_t          *conf;
    ngx_ailink_policy_t        *policy;
    ngx_array_t                *zones;      /* ngx_ailink_policy_tz_t * */
    char                        where[256];
} ngx_ailink_policy_loader_t;


typedef struct {
    const char                 *name;
    ngx_uint_t                  field;
    ngx_uint_t                  numeric;    /* the field is a number */
    ngx_uint_t                  post;       /* known only after the response */
    ngx_uint_t                  scope;      /* spend */
    ngx_uint_t                  period;
} ngx_ailink_policy_field_name_t;


static ngx_ailink_policy_field_name_t  ngx_ailink_policy_fields[] = {
    { "request.method", NGX_AILINK_PF_METHOD, 0, 0, 0, 0 },
    { "request.path", NGX_AILINK_PF_PATH, 0, 0, 0, 0 },
    { "model", NGX_AILINK_PF_MODEL, 0, 0, 0, 0 },
    { "provider", NGX_AILINK_PF_PROVIDER, 0, 0, 0, 0 },
    { "token.id", NGX_AILINK_PF_TOKEN_ID, 0, 0, 0, 0 },
    { "token.name", NGX_AILINK_PF_TOKEN_NAME, 0, 0, 0, 0 },
    { "token.project", NGX_AILINK_PF_PROJECT, 0, 0, 0, 0 },
    { "project", NGX_AILINK_PF_PROJECT, 0, 0, 0, 0 },
    { "agent.name", NGX_AILINK_PF_AGENT, 0, 0, 0, 0 },
    { "session.id", NGX_AILINK_PF_SESSION, 0, 0, 0, 0 },
    { "context.time.hour", NGX_AILINK_PF_HOUR, 1, 0, 0, 0 },
    { "context.time.minute", NGX_AILINK_PF_MINUTE, 1, 0, 0, 0 },
    { "context.time.weekday", NGX_AILINK_PF_WEEKDAY, 1, 0, 0, 0 },
    { "response.status", NGX_AILINK_PF_STATUS, 1, 1, 0, 0 },
    { "usage.prompt_tokens", NGX_AILINK_PF_PROMPT_TOKENS, 1, 1, 0, 0 },
    { "usage.completion_tokens", NGX_AILINK_PF_COMPLETION_TOKENS, 1, 1, 0,
      0 },
    { "usage.total_tokens", NGX_AILINK_PF_TOTAL_TOKENS, 1, 1, 0, 0 },
    { "usage.cost_usd", NGX_AILINK_PF_COST, 1, 1, 0, 0 },
    { "spend.token.day", NGX_AILINK_PF_SPEND, 1, 0, NGX_AILINK_SPEND_TOKEN,
      NGX_AILINK_SPEND_DAY },
    { "spend.token.month", NGX_AILINK_PF_SPEND, 1, 0, NGX_AILINK_SPEND_TOKEN,
      NGX_AILINK_SPEND_MONTH },
    { "spend.project.day", NGX_AILINK_PF_SPEND, 1, 0,
      NGX_AILINK_SPEND_PROJECT, NGX_AILINK_SPEND_DAY },
    { "spend.project.month", NGX_AILINK_PF_SPEND, 1, 0,
      NGX_AILINK_SPEND_PROJECT, NGX_AILINK_SPEND_MONTH },
    { "usage.spend_today_usd", NGX_AILINK_PF_SPEND, 1, 0,
      NGX_AILINK_SPEND_TOKEN, NGX_AILINK_SPEND_DAY },
    { "usage.spend_month_usd", NGX_AILINK_PF_SPEND, 1, 0,
      NGX_AILINK_SPEND_TOKEN, NGX_AILINK_SPEND_MONTH },
    { NULL, 0, 0, 0, 0, 0 }
};


static const char  *ngx_ailink_policy_ops[] = {
    "", "eq", "neq", "gt", "gte", "lt", "lte", "in", "glob", "regex",
    "contains", "exists", "starts_with", NULL
};


static const char  *ngx_ailink_policy_action_names[] = {
    "", "allow", "deny", "rate_limit", "spend_cap", "set_header", "log",
    "tag", "require_approval", "redact", "block_content", NULL
};


static const char  *ngx_ailink_policy_weekdays[] = {
    "sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL
};


static void ngx_cdecl
ngx_ailink_policy_error(ngx_ailink_policy_loader_t *ld, const char *fmt, ...)
{
    u_char   buf[NGX_MAX_CONF_ERRSTR], *p;
    va_list  args;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, buf + sizeof(buf), fmt, args);
    va_end(args);

    ngx_conf_log_error(NGX_LOG_EMERG, ld->cf, 0, "ailink_config \"%V\": %s: "
                       "%*s", &ld->conf->file, ld->where, p - buf, buf);
}


static ngx_int_t
ngx_ailink_policy_cstr(ngx_ailink_policy_loader_t *ld, cJSON *item,
    const char *what, ngx_str_t *out)
{
    if (!cJSON_IsString(item) || item->valuestring[0] == '\0') {
        ngx_ailink_policy_error(ld, "%s must be a non-empty string", what);
        return NGX_ERROR;
    }

    out->len = ngx_strlen(item->valuestring);
    out->data = ngx_pnalloc(ld->cf->pool, out->len + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, item->valuestring, out->len + 1);

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_policy_keys(ngx_ailink_policy_loader_t *ld, cJSON *obj,
    const char *what, const char **known)
{
    cJSON        *item;
    const char  **k;

    if (!cJSON_IsObject(obj)) {
        ngx_ailink_policy_error(ld, "%s must be a mapping", what);
        return NGX_ERROR;
    }

    cJSON_ArrayForEach(item, obj) {
        for (k = known; *k; k++) {
            if (strcmp(*k, item->string) == 0) {
                break;
            }
        }

        if (*k == NULL) {
            ngx_ailink_policy_error(ld, "%s: unknown key \"%s\"", what,
                                    item->string);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* "UTC" (the default), "+HH:MM", "-HH:MM" or an IANA name */

static ngx_int_t
ngx_ailink_policy_timezone(ngx_ailink_policy_loader_t *ld, cJSON *item,
    ngx_ailink_policy_tz_t **tz)
{
    char       *err;
    ngx_str_t   name;

    *tz = NULL;

    if (item == NULL) {
        return NGX_OK;
    }

    if (!cJSON_IsString(item)) {
        ngx_ailink_policy_error(ld, "timezone must be a string: \"UTC\", "
                                "an offset such as \"+02:00\" or a name "
                                "such as \"Europe/Paris\"");
        return NGX_ERROR;
    }

    if (ld->zones == NULL) {
        ld->zones = ngx_array_create(ld->cf->pool, 2, sizeof(void *));
        if (ld->zones == NULL) {
            return NGX_ERROR;
        }
    }

    name.data = (u_char *) item->valuestring;
    name.len = ngx_strlen(name.data);

    if (ngx_ailink_policy_tz_get(ld->cf, ld->zones, &name, tz, &err)
        != NGX_OK)
    {
        if (err) {
            ngx_ailink_policy_error(ld, "timezone \"%V\": %s", &name, err);
        }

        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_policy_add_spend(ngx_ailink_policy_loader_t *ld,
    ngx_ailink_policy_spend_t *sp)
{
    ngx_uint_t                  i;
    ngx_ailink_policy_spend_t  *s;

    s = ld->policy->spends.elts;

    for (i = 0; i < ld->policy->spends.nelts; i++) {
        if (s[i].scope == sp->scope && s[i].period == sp->period
            && s[i].tz == sp->tz)
        {
            return NGX_OK;
        }
    }

    s = ngx_array_push(&ld->policy->spends);
    if (s == NULL) {
        return NGX_ERROR;
    }

    *s = *sp;
    ld->policy->limits = 1;

    return NGX_OK;
}


/* a field name: its number, and the header name or body path it has */

static ngx_ailink_policy_field_name_t *
ngx_ailink_policy_field_name(ngx_ailink_policy_loader_t *ld, ngx_str_t *name,
    ngx_uint_t *field, ngx_str_t *arg, ngx_array_t **path)
{
    u_char                          *p, *last, *dot;
    ngx_str_t                       *seg;
    ngx_ailink_policy_field_name_t  *f;

    static ngx_ailink_policy_field_name_t  header = {
        "request.headers.", NGX_AILINK_PF_HEADER, 0, 0, 0, 0 };
    static ngx_ailink_policy_field_name_t  body = {
        "request.body.", NGX_AILINK_PF_BODY, 0, 0, 0, 0 };

    for (f = ngx_ailink_policy_fields; f->name; f++) {
        if (ngx_strcmp(name->data, f->name) == 0) {
            *field = f->field;
            return f;
        }
    }

    if (name->len > sizeof("request.headers.") - 1
        && ngx_strncmp(name->data, "request.headers.",
                       sizeof("request.headers.") - 1) == 0)
    {
        arg->len = name->len - (sizeof("request.headers.") - 1);
        arg->data = ngx_pnalloc(ld->cf->pool, arg->len);
        if (arg->data == NULL) {
            return NULL;
        }

        ngx_strlow(arg->data, name->data + sizeof("request.headers.") - 1,
                   arg->len);
        *field = NGX_AILINK_PF_HEADER;
        return &header;
    }

    if (name->len > sizeof("request.body.") - 1
        && ngx_strncmp(name->data, "request.body.",
                       sizeof("request.body.") - 1) == 0)
    {
        *path = ngx_array_create(ld->cf->pool, 4, sizeof(ngx_str_t));
        if (*path == NULL) {
            return NULL;
        }

        p = name->data + sizeof("request.body.") - 1;
        last = name->data + name->len;

        while (p <= last) {
            dot = ngx_strlchr(p, last, '.');
            if (dot == NULL) {
                dot = last;
            }

            if (dot == p) {
                ngx_ailink_policy_error(ld, "field \"%V\" has an empty "
                                        "segment", name);
                return NULL;
            }

            seg = ngx_array_push(*path);
            if (seg == NULL) {
                return NULL;
            }

            seg->data = p;
            seg->len = dot - p;
            p = dot + 1;
        }

        *arg = *name;
        *field = NGX_AILINK_PF_BODY;
        ld->policy->needs_body = 1;
        return &body;
    }

    ngx_ailink_policy_error(ld, "unknown field \"%V\" (request.method, "
                            "request.path, request.headers.<name>, "
                            "request.body.<path>, model, provider, "
                            "token.id, token.name, project, agent.name, "
                            "session.id, context.time.hour|minute|weekday, "
                            "response.status, usage.*, spend.*)", name);
    return NULL;
}


static ngx_int_t
ngx_ailink_policy_number_of(cJSON *v, ngx_uint_t field, double *n)
{
    ngx_uint_t  i;

    if (cJSON_IsNumber(v)) {
        *n = v->valuedouble;
        return NGX_OK;
    }

    if (cJSON_IsString(v) && field == NGX_AILINK_PF_WEEKDAY) {
        for (i = 0; ngx_ailink_policy_weekdays[i]; i++) {
            if (ngx_strncasecmp((u_char *) v->valuestring,
                                (u_char *) ngx_ailink_policy_weekdays[i], 3)
                == 0)
            {
                *n = (double) i;
                return NGX_OK;
            }
        }
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_ailink_policy_scalar(ngx_ailink_policy_loader_t *ld, cJSON *v,
    ngx_ailink_policy_field_name_t *f, ngx_str_t *s, double *n,
    ngx_flag_t *numeric)
{
    u_char  buf[64];

    *numeric = 0;

    if (ngx_ailink_policy_number_of(v, f->field, n) == NGX_OK) {
        *numeric = 1;

        if (cJSON_IsNumber(v)) {
            /* "%.15g" is not one of ngx_sprintf()'s */
            if (*n == (double) (int64_t) *n) {
                s->len = ngx_sprintf(buf, "%L", (int64_t) *n) - buf;

            } else {
                s->len = (size_t) snprintf((char *) buf, sizeof(buf),
                                           "%.15g", *n);
            }

            s->data = ngx_pnalloc(ld->cf->pool, s->len);
            if (s->data == NULL) {
                return NGX_ERROR;
            }

            ngx_memcpy(s->data, buf, s->len);
            return NGX_OK;
        }

        return ngx_ailink_policy_cstr(ld, v, "value", s);
    }

    if (cJSON_IsBool(v)) {
        if (cJSON_IsTrue(v)) {
            ngx_str_set(s, "true");

        } else {
            ngx_str_set(s, "false");
        }

        return NGX_OK;
    }

    if (!cJSON_IsString(v)) {
        ngx_ailink_policy_error(ld, "value must be a string or a number");
        return NGX_ERROR;
    }

    if (f->numeric) {
        ngx_ailink_policy_error(ld, "field \"%s\" is a number; \"%s\" is "
                                "not", f->name, v->valuestring);
        return NGX_ERROR;
    }

    s->len = ngx_strlen(v->valuestring);
    s->data = ngx_pnalloc(ld->cf->pool, s->len + 1);
    if (s->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(s->data, v->valuestring, s->len + 1);

    return NGX_OK;
}


static void
ngx_ailink_policy_regex_free(void *data)
{
    pcre2_code_free(data);
}


static ngx_int_t
ngx_ailink_policy_regex(ngx_ailink_policy_loader_t *ld,
    ngx_ailink_policy_cond_t *c)
{
    int                  err;
    u_char               msg[128];
    PCRE2_SIZE           off;
    ngx_pool_cleanup_t  *cln;

    c->re = pcre2_compile(c->value.data, c->value.len, 0, &err, &off, NULL);

    if (c->re == NULL) {
        pcre2_get_error_message(err, msg, sizeof(msg));
        ngx_ailink_policy_error(ld, "regex \"%V\": %s at offset %uz",
                                &c->value, msg, (size_t) off);
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(ld->cf->pool, 0);
    if (cln == NULL) {
        pcre2_code_free(c->re);
        return NGX_ERROR;
    }

    cln->handler = ngx_ailink_policy_regex_free;
    cln->data = c->re;

    /* without JIT (some platforms) the interpreter still matches */
    (void) pcre2_jit_compile(c->re, PCRE2_JIT_COMPLETE);

    return NGX_OK;
}


static ngx_ailink_policy_cond_t *
ngx_ailink_policy_cond(ngx_ailink_policy_loader_t *ld, cJSON *obj,
    ngx_flag_t post, ngx_uint_t depth)
{
    cJSON                           *list, *item, *v;
    ngx_str_t                        name, op;
    ngx_uint_t                       i, type;
    ngx_ailink_policy_cond_t        *c;
    ngx_ailink_policy_field_name_t  *f;

    static const char  *leaf[] = { "field", "op", "value", NULL };

    if (depth > 16) {
        ngx_ailink_policy_error(ld, "conditions nest too deep");
        return NULL;
    }

    if (!cJSON_IsObject(obj)) {
        ngx_ailink_policy_error(ld, "a condition must be a mapping: "
                                "{all: [...]}, {any: [...]}, {not: {...}} "
                                "or {field, op, value}");
        return NULL;
    }

    c = ngx_pcalloc(ld->cf->pool, sizeof(ngx_ailink_policy_cond_t));
    if (c == NULL) {
        return NULL;
    }

    type = 0;
    list = NULL;

    if ((list = ngx_ailink_json_get(obj, "all")) != NULL) {
        type = NGX_AILINK_POLICY_ALL;

    } else if ((list = ngx_ailink_json_get(obj, "any")) != NULL) {
        type = NGX_AILINK_POLICY_ANY;

    } else if ((list = ngx_ailink_json_get(obj, "not")) != NULL) {
        type = NGX_AILINK_POLICY_NOT;
    }

    if (type) {
        if (cJSON_GetArraySize(obj) != 1) {
            ngx_ailink_policy_error(ld, "\"all\", \"any\" and \"not\" stand "
                                    "alone in their mapping");
            return NULL;
        }

        c->type = type;

        if (type == NGX_AILINK_POLICY_NOT) {
            c->nchildren = 1;
            c->children = ngx_palloc(ld->cf->pool, sizeof(void *));
            if (c->children == NULL) {
                return NULL;
            }

            c->children[0] = ngx_ailink_policy_cond(ld, list, post,
                                                    depth + 1);
            return c->children[0] ? c : NULL;
        }

        if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) == 0) {
            ngx_ailink_policy_error(ld, "\"%s\" must be a non-empty list of "
                                    "conditions", list->string);
            return NULL;
        }

        c->nchildren = cJSON_GetArraySize(list);
        c->children = ngx_palloc(ld->cf->pool, c->nchildren * sizeof(void *));
        if (c->children == NULL) {
            return NULL;
        }

        i = 0;

        cJSON_ArrayForEach(item, list) {
            c->children[i] = ngx_ailink_policy_cond(ld, item, post,
                                                    depth + 1);
            if (c->children[i++] == NULL) {
                return NULL;
            }
        }

        return c;
    }

    if (ngx_ailink_policy_keys(ld, obj, "a condition", leaf) != NGX_OK
        || ngx_ailink_policy_cstr(ld, ngx_ailink_json_get(obj, "field"),
                                  "a condition's \"field\"", &name)
           != NGX_OK
        || ngx_ailink_policy_cstr(ld, ngx_ailink_json_get(obj, "op"),
                                  "a condition's \"op\"", &op)
           != NGX_OK)
    {
        return NULL;
    }

    c->type = NGX_AILINK_POLICY_LEAF;

    f = ngx_ailink_policy_field_name(ld, &name, &c->field, &c->arg, &c->path);
    if (f == NULL) {
        return NULL;
    }

    if (f->post && !post) {
        ngx_ailink_policy_error(ld, "field \"%V\" is known only after the "
                                "response: use it in a \"phase: post\" "
                                "policy", &name);
        return NULL;
    }

    if (c->field == NGX_AILINK_PF_SPEND) {
        c->spend.scope = f->scope;
        c->spend.period = f->period;
        c->spend.tz = NULL;

        if (ngx_ailink_policy_add_spend(ld, &c->spend) != NGX_OK) {
            return NULL;
        }
    }

    for (i = 1; ngx_ailink_policy_ops[i]; i++) {
        if (ngx_strcmp(op.data, ngx_ailink_policy_ops[i]) == 0) {
            break;
        }
    }

    if (ngx_ailink_policy_ops[i] == NULL) {
        ngx_ailink_policy_error(ld, "unknown op \"%V\" (eq, neq, gt, gte, lt, "
                                "lte, in, glob, regex, contains, exists, "
                                "starts_with)", &op);
        return NULL;
    }

    c->op = i;
    v = ngx_ailink_json_get(obj, "value");

    switch (c->op) {

    case NGX_AILINK_POP_EXISTS:
        if (v && !cJSON_IsBool(v)) {
            ngx_ailink_policy_error(ld, "\"exists\" takes true or false");
            return NULL;
        }

        c->exists = (v == NULL || cJSON_IsTrue(v));
        return c;

    case NGX_AILINK_POP_IN:
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0) {
            ngx_ailink_policy_error(ld, "\"in\" takes a non-empty list");
            return NULL;
        }

        c->nvalues = cJSON_GetArraySize(v);
        c->values = ngx_pcalloc(ld->cf->pool, c->nvalues * sizeof(ngx_str_t));
        c->numbers = ngx_pcalloc(ld->cf->pool, c->nvalues * sizeof(double));
        if (c->values == NULL || c->numbers == NULL) {
            return NULL;
        }

        i = 0;

        cJSON_ArrayForEach(item, v) {
            if (ngx_ailink_policy_scalar(ld, item, f, &c->values[i],
                                         &c->numbers[i], &c->numeric)
                != NGX_OK)
            {
                return NULL;
            }

            /* a member that is not a number compares as text */
            if (!c->numeric) {
                c->numbers[i] = NAN;
            }

            i++;
        }

        return c;

    default:
        break;
    }

    if (v == NULL || cJSON_IsNull(v)) {
        ngx_ailink_policy_error(ld, "op \"%V\" needs a \"value\"", &op);
        return NULL;
    }

    if (ngx_ailink_policy_scalar(ld, v, f, &c->value, &c->number,
                                 &c->numeric)
        != NGX_OK)
    {
        return NULL;
    }

    switch (c->op) {

    case NGX_AILINK_POP_GT:
    case NGX_AILINK_POP_GTE:
    case NGX_AILINK_POP_LT:
    case NGX_AILINK_POP_LTE:
        if (!c->numeric) {
            ngx_ailink_policy_error(ld, "op \"%V\" compares numbers: "
                                    "\"value\" must be a number", &op);
            return NULL;
        }

        break;

    case NGX_AILINK_POP_REGEX:
        if (ngx_ailink_policy_regex(ld, c) != NGX_OK) {
            return NULL;
        }

        break;

    default:
        break;
    }

    return c;
}


/* "token", "project", "model", ... or any field name: a key part */

static ngx_int_t
ngx_ailink_policy_key_field(ngx_ailink_policy_loader_t *ld, cJSON *item,
    ngx_uint_t *field, ngx_str_t *arg)
{
    ngx_str_t     name;
    ngx_array_t  *path;

    if (ngx_ailink_policy_cstr(ld, item, "a rate_limit key", &name)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_strcmp(name.data, "token") == 0) {
        ngx_str_set(&name, "token.id");

    } else if (ngx_strcmp(name.data, "agent") == 0) {
        ngx_str_set(&name, "agent.name");

    } else if (ngx_strcmp(name.data, "session") == 0) {
        ngx_str_set(&name, "session.id");
    }

    path = NULL;
    ngx_str_null(arg);

    if (ngx_ailink_policy_field_name(ld, &name, field, arg, &path) == NULL) {
        return NGX_ERROR;
    }

    if (*field == NGX_AILINK_PF_BODY || *field >= NGX_AILINK_PF_HOUR) {
        ngx_ailink_policy_error(ld, "a rate_limit key cannot be built from "
                                "\"%V\"", &name);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_policy_rate_limit_conf(ngx_ailink_policy_loader_t *ld, cJSON *v,
    ngx_ailink_policy_action_t *a, ngx_uint_t rule, ngx_uint_t n)
{
    u_char      *p;
    cJSON       *key, *item;
    ngx_uint_t   i, any;

    static const char  *names[] = { "requests_per_second",
                                    "requests_per_minute",
                                    "requests_per_hour",
                                    "tokens_per_minute", NULL };
    static const char  *known[] = { "requests_per_second",
                                    "requests_per_minute",
                                    "requests_per_hour",
                                    "tokens_per_minute", "key", NULL };

    if (ngx_ailink_policy_keys(ld, v, "rate_limit", known) != NGX_OK) {
        return NGX_ERROR;
    }

    any = 0;

    for (i = 0; names[i]; i++) {
        item = ngx_ailink_json_get(v, names[i]);

        if (item == NULL) {
            continue;
        }

        if (!cJSON_IsNumber(item) || item->valuedouble < 1
            || item->valuedouble > 1e15
            || item->valuedouble != (double) (int64_t) item->valuedouble)
        {
            ngx_ailink_policy_error(ld, "rate_limit.%s must be a whole "
                                    "number, 1 or more", names[i]);
            return NGX_ERROR;
        }

        a->limits[i] = (int64_t) item->valuedouble;
        any = 1;

        /* the x-ratelimit-limit-* value, written once */
        p = ngx_pnalloc(ld->cf->pool, NGX_INT64_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        a->limit_text[i].data = p;
        a->limit_text[i].len = ngx_ailink_write_int(p, a->limits[i]) - p;
    }

    if (!any) {
        ngx_ailink_policy_error(ld, "rate_limit needs one of "
                                "requests_per_second, requests_per_minute, "
                                "requests_per_hour, tokens_per_minute");
        return NGX_ERROR;
    }

    key = ngx_ailink_json_get(v, "key");

    a->nkeys = (key == NULL) ? 1
               : cJSON_IsArray(key) ? (ngx_uint_t) cJSON_GetArraySize(key) : 1;

    if (a->nkeys == 0 || a->nkeys > 8) {
        ngx_ailink_policy_error(ld, "rate_limit.key: 1 to 8 fields");
        return NGX_ERROR;
    }

    a->key_fields = ngx_pcalloc(ld->cf->pool, a->nkeys * sizeof(ngx_uint_t));
    a->key_args = ngx_pcalloc(ld->cf->pool, a->nkeys * sizeof(ngx_str_t));
    if (a->key_fields == NULL || a->key_args == NULL) {
        return NGX_ERROR;
    }

    if (key == NULL) {
        a->key_fields[0] = NGX_AILINK_PF_TOKEN_ID;

    } else if (cJSON_IsArray(key)) {
        i = 0;

        cJSON_ArrayForEach(item, key) {
            if (ngx_ailink_policy_key_field(ld, item, &a->key_fields[i],
                                            &a->key_args[i])
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            i++;
        }

    } else if (ngx_ailink_policy_key_field(ld, key, &a->key_fields[0],
                                           &a->key_args[0])
               != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* each limit counts on its own: "rl|<policy>|<rule>|<action>|" */
    p = ngx_pnalloc(ld->cf->pool, ld->policy->name.len + 3 + 2 * NGX_INT_T_LEN
                                  + 4);
    if (p == NULL) {
        return NGX_ERROR;
    }

    a->id.data = p;
    a->id.len = ngx_sprintf(p, "rl|%V|%ui|%ui|", &ld->policy->name, rule, n)
                - p;

    ld->policy->limits = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_policy_spend_cap_conf(ngx_ailink_policy_loader_t *ld, cJSON *v,
    ngx_ailink_policy_action_t *a)
{
    u_char  *p;
    cJSON   *item;

    static const char  *known[] = { "limit_usd", "period", "scope",
                                    "timezone", "name", NULL };

    if (ngx_ailink_policy_keys(ld, v, "spend_cap", known) != NGX_OK) {
        return NGX_ERROR;
    }

    item = ngx_ailink_json_get(v, "limit_usd");

    if (!cJSON_IsNumber(item) || item->valuedouble <= 0
        || item->valuedouble > 1e9)
    {
        ngx_ailink_policy_error(ld, "spend_cap.limit_usd must be a number "
                                "of dollars above 0");
        return NGX_ERROR;
    }

    a->limit_usd = item->valuedouble;

    item = ngx_ailink_json_get(v, "period");

    if (item == NULL || (cJSON_IsString(item)
                         && strcmp(item->valuestring, "day") == 0))
    {
        a->spend.period = NGX_AILINK_SPEND_DAY;

    } else if (cJSON_IsString(item) && strcmp(item->valuestring, "month") == 0)
    {
        a->spend.period = NGX_AILINK_SPEND_MONTH;

    } else {
        ngx_ailink_policy_error(ld, "spend_cap.period must be \"day\" or "
                                "\"month\"");
        return NGX_ERROR;
    }

    item = ngx_ailink_json_get(v, "scope");

    if (item == NULL || (cJSON_IsString(item)
                         && strcmp(item->valuestring, "token") == 0))
    {
        a->spend.scope = NGX_AILINK_SPEND_TOKEN;

    } else if (cJSON_IsString(item)
               && strcmp(item->valuestring, "project") == 0)
    {
        a->spend.scope = NGX_AILINK_SPEND_PROJECT;

    } else {
        ngx_ailink_policy_error(ld, "spend_cap.scope must be \"token\" or "
                                "\"project\"");
        return NGX_ERROR;
    }

    if (ngx_ailink_policy_timezone(ld, ngx_ailink_json_get(v, "timezone"),
                                   &a->spend.tz)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    item = ngx_ailink_json_get(v, "name");

    if (item) {
        if (ngx_ailink_policy_cstr(ld, item, "spend_cap.name", &a->budget)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else {
        p = ngx_pnalloc(ld->cf->pool, sizeof("project_monthly"));
        if (p == NULL) {
            return NGX_ERROR;
        }

        a->budget.data = p;
        a->budget.len = ngx_sprintf(p, "%s_%s",
                                    a->spend.scope == NGX_AILINK_SPEND_TOKEN
                                    ? "token" : "project",
                                    a->spend.period == NGX_AILINK_SPEND_DAY
                                    ? "daily" : "monthly")
                        - p;
    }

    return ngx_ailink_policy_add_spend(ld, &a->spend);
}


/*
 * require_approval: true, a reason string, or
 * {reason, expires_in (seconds, default 3600), notes}; the approval
 * digests the body, so the policy reads it
 */

static ngx_int_t
ngx_ailink_policy_approval_conf(ngx_ailink_policy_loader_t *ld, cJSON *v,
    ngx_ailink_policy_action_t *a)
{
    cJSON  *item;

    ld->policy->needs_body = 1;
    a->expires_in = 3600;
    ngx_str_set(&a->text, "this request needs a human approval");

    if (cJSON_IsString(v)) {
        return ngx_ailink_policy_cstr(ld, v, "require_approval", &a->text);
    }

    if (!cJSON_IsObject(v)) {
        return NGX_OK;
    }

    if (ngx_ailink_policy_keys(ld, v, "require_approval",
                               (const char *[]) { "reason", "expires_in",
                                                  "notes", NULL })
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    item = ngx_ailink_json_get(v, "reason");

    if (item && ngx_ailink_policy_cstr(ld, item, "require_approval.reason",
                                       &a->text)
                != NGX_OK)
    {
        return NGX_ERROR;
    }

    item = ngx_ailink_json_get(v, "notes");

    if (item && ngx_ailink_policy_cstr(ld, item, "require_approval.notes",
                                       &a->notes)
                != NGX_OK)
    {
        return NGX_ERROR;
    }

    item = ngx_ailink_json_get(v, "expires_in");

    if (item) {
        if (!cJSON_IsNumber(item) || item->valuedouble < 1
            || item->valuedouble > 30 * 86400)
        {
            ngx_ailink_policy_error(ld, "require_approval.expires_in must "
                                    "be a number of seconds from 1 to "
                                    "2592000 (30 days)");
            return NGX_ERROR;
        }

        a->expires_in = (time_t) item->valuedouble;
    }

    return NGX_OK;
}


static ngx_int_t ngx_ailink_policy_guard_conf(ngx_ailink_policy_loader_t *ld,
    cJSON *v, ngx_ailink_policy_action_t *a);


static ngx_int_t
ngx_ailink_policy_action(ngx_ailink_policy_loader_t *ld, const char *name,
    cJSON *v, ngx_ailink_policy_action_t *a, ngx_uint_t rule, ngx_uint_t n)
{
    cJSON       *item;
    ngx_str_t   *tag;
    ngx_uint_t   i;

    for (i = 1; ngx_ailink_policy_action_names[i]; i++) {
        if (strcmp(name, ngx_ailink_policy_action_names[i]) == 0) {
            break;
        }
    }

    if (ngx_ailink_policy_action_names[i] == NULL) {
        ngx_ailink_policy_error(ld, "unknown action \"%s\" (allow, deny, "
                                "rate_limit, spend_cap, set_header, log, tag, "
                                "require_approval, redact, block_content)",
                                name);
        return NGX_ERROR;
    }

    a->type = i;
    a->name.data = (u_char *) ngx_ailink_policy_action_names[i];
    a->name.len = ngx_strlen(a->name.data);

    if (ld->policy->post
        && i != NGX_AILINK_PA_ALLOW && i != NGX_AILINK_PA_LOG
        && i != NGX_AILINK_PA_TAG)
    {
        ngx_ailink_policy_error(ld, "\"%s\" cannot run in a \"phase: post\" "
                                "policy, which sees the response once it is "
                                "sent (allow, log and tag can)", name);
        return NGX_ERROR;
    }

    switch (i) {

    case NGX_AILINK_PA_DENY:
        item = cJSON_IsObject(v) ? ngx_ailink_json_get(v, "reason") : v;

        if (cJSON_IsObject(v)
            && ngx_ailink_policy_keys(ld, v, "deny",
                                      (const char *[]) { "reason", NULL })
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (item == NULL || cJSON_IsBool(item) || cJSON_IsNull(item)) {
            ngx_str_set(&a->text, "denied by policy");
            return NGX_OK;
        }

        return ngx_ailink_policy_cstr(ld, item, "deny.reason", &a->text);

    case NGX_AILINK_PA_LOG:
        item = cJSON_IsObject(v) ? ngx_ailink_json_get(v, "message") : v;

        if (item == NULL || cJSON_IsBool(item) || cJSON_IsNull(item)) {
            ngx_str_set(&a->text, "matched");
            return NGX_OK;
        }

        return ngx_ailink_policy_cstr(ld, item, "log.message", &a->text);

    case NGX_AILINK_PA_TAG:
        a->tags = ngx_array_create(ld->cf->pool, 2, sizeof(ngx_str_t));
        if (a->tags == NULL) {
            return NGX_ERROR;
        }

        if (cJSON_IsArray(v)) {
            cJSON_ArrayForEach(item, v) {
                tag = ngx_array_push(a->tags);
                if (tag == NULL
                    || ngx_ailink_policy_cstr(ld, item, "a tag", tag)
                       != NGX_OK)
                {
                    return NGX_ERROR;
                }
            }

            if (a->tags->nelts) {
                return NGX_OK;
            }
        }

        tag = ngx_array_push(a->tags);
        if (tag == NULL) {
            return NGX_ERROR;
        }

        return ngx_ailink_policy_cstr(ld, v, "tag", tag);

    case NGX_AILINK_PA_SET_HEADER:
        if (ngx_ailink_policy_keys(ld, v, "set_header",
                                   (const char *[]) { "name", "value", NULL })
            != NGX_OK
            || ngx_ailink_policy_cstr(ld, ngx_ailink_json_get(v, "name"),
                                      "set_header.name", &a->header)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        item = ngx_ailink_json_get(v, "value");

        if (!cJSON_IsString(item)) {
            ngx_ailink_policy_error(ld, "set_header.value must be a string");
            return NGX_ERROR;
        }

        a->text.len = ngx_strlen(item->valuestring);
        a->text.data = (u_char *) item->valuestring;
        a->text.data = ngx_pstrdup(ld->cf->pool, &a->text);

        return a->text.data || a->text.len == 0 ? NGX_OK : NGX_ERROR;

    case NGX_AILINK_PA_RATE_LIMIT:
        return ngx_ailink_policy_rate_limit_conf(ld, v, a, rule, n);

    case NGX_AILINK_PA_SPEND_CAP:
        return ngx_ailink_policy_spend_cap_conf(ld, v, a);

    case NGX_AILINK_PA_REQUIRE_APPROVAL:
        return ngx_ailink_policy_approval_conf(ld, v, a);
    case NGX_AILINK_PA_REDACT:
    case NGX_AILINK_PA_BLOCK_CONTENT:
        return ngx_ailink_policy_guard_conf(ld, v, a);

    default:
        /* allow; the hooks take their options when their issues land */
        return NGX_OK;
    }
}


/*
 * redact: {guardrails: [pii_redaction, project_codes]} (default
 * pii_redaction), block_content: {guardrails: [...]} (default
 * prompt_injection): the guardrails the rule requires of a request.
 */

static ngx_int_t
ngx_ailink_policy_guard_conf(ngx_ailink_policy_loader_t *ld, cJSON *v,
    ngx_ailink_policy_action_t *a)
{
    cJSON      *list, *nm;
    ngx_str_t   name, bad;

    a->guardrails = (a->type == NGX_AILINK_PA_REDACT)
                    ? NGX_AILINK_GUARD_PII : NGX_AILINK_GUARD_INJECTION;
    ld->policy->guardrails = 1;

    if (v == NULL || cJSON_IsTrue(v) || cJSON_IsNull(v)) {
        return NGX_OK;
    }

    if (!cJSON_IsObject(v)
        || ngx_ailink_policy_keys(ld, v, (char *) a->name.data,
                                  (const char *[]) { "guardrails", NULL })
           != NGX_OK)
    {
        if (!cJSON_IsObject(v)) {
            ngx_ailink_policy_error(ld, "%V takes {guardrails: [names]}",
                                    &a->name);
        }

        return NGX_ERROR;
    }

    list = ngx_ailink_json_get(v, "guardrails");

    if (list == NULL) {
        return NGX_OK;
    }

    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) == 0) {
        ngx_ailink_policy_error(ld, "%V.guardrails must be a list of "
                                "guardrail names", &a->name);
        return NGX_ERROR;
    }

    a->guardrails = 0;

    cJSON_ArrayForEach(nm, list) {
        if (!cJSON_IsString(nm) || nm->valuestring[0] == '\0') {
            ngx_ailink_policy_error(ld, "%V.guardrails must be a list of "
                                    "guardrail names", &a->name);
            return NGX_ERROR;
        }

        name.data = (u_char *) nm->valuestring;
        name.len = ngx_strlen(nm->valuestring);

        if (ngx_ailink_guard_names(ld->conf->guard, &name, &a->guardrails,
                                   &bad)
            != NGX_OK)
        {
            ngx_ailink_policy_error(ld, "%V.guardrails: unknown guardrail "
                                    "\"%V\"", &a->name, &name);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_policy_then(ngx_ailink_policy_loader_t *ld, cJSON *then,
    ngx_ailink_policy_rule_t *rule, ngx_uint_t ri)
{
    cJSON                       *item, *act;
    ngx_uint_t                   n;
    ngx_ailink_policy_action_t  *a;

    if (then == NULL) {
        ngx_ailink_policy_error(ld, "a rule needs \"then\"");
        return NGX_ERROR;
    }

    /* count first: actions are an array the hot path walks */
    n = 0;

    if (cJSON_IsArray(then)) {
        cJSON_ArrayForEach(item, then) {
            n += cJSON_IsObject(item) ? (ngx_uint_t) cJSON_GetArraySize(item)
                                      : 1;
        }

    } else {
        n = cJSON_IsObject(then) ? (ngx_uint_t) cJSON_GetArraySize(then) : 1;
    }

    if (n == 0) {
        ngx_ailink_policy_error(ld, "\"then\" names no action");
        return NGX_ERROR;
    }

    rule->actions = ngx_pcalloc(ld->cf->pool,
                                n * sizeof(ngx_ailink_policy_action_t));
    if (rule->actions == NULL) {
        return NGX_ERROR;
    }

    rule->nactions = 0;

    item = cJSON_IsArray(then) ? then->child : then;

    for ( /* void */ ; item; item = cJSON_IsArray(then) ? item->next : NULL)
    {
        if (cJSON_IsString(item)) {
            a = &rule->actions[rule->nactions];

            if (ngx_ailink_policy_action(ld, item->valuestring, NULL, a, ri,
                                         rule->nactions)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            if (a->type == NGX_AILINK_PA_DENY || a->type == NGX_AILINK_PA_LOG
                || a->type == NGX_AILINK_PA_TAG
                || a->type == NGX_AILINK_PA_RATE_LIMIT
                || a->type == NGX_AILINK_PA_SPEND_CAP
                || a->type == NGX_AILINK_PA_SET_HEADER)
            {
                if (a->type != NGX_AILINK_PA_DENY
                    && a->type != NGX_AILINK_PA_LOG)
                {
                    ngx_ailink_policy_error(ld, "action \"%s\" needs its "
                                            "options: {%s: ...}",
                                            item->valuestring,
                                            item->valuestring);
                    return NGX_ERROR;
                }
            }

            rule->nactions++;
            continue;
        }

        if (!cJSON_IsObject(item)) {
            ngx_ailink_policy_error(ld, "\"then\" is an action, "
                                    "{action: options} or a list of them");
            return NGX_ERROR;
        }

        cJSON_ArrayForEach(act, item) {
            if (ngx_ailink_policy_action(ld, act->string, act,
                                         &rule->actions[rule->nactions], ri,
                                         rule->nactions)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            rule->nactions++;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_policy_names(ngx_ailink_policy_loader_t *ld, cJSON *list,
    const char *what, ngx_array_t **out)
{
    cJSON      *item;
    ngx_str_t  *s;

    if (list == NULL) {
        return NGX_OK;
    }

    if (!cJSON_IsArray(list)) {
        ngx_ailink_policy_error(ld, "apply_to.%s must be a list", what);
        return NGX_ERROR;
    }

    *out = ngx_array_create(ld->cf->pool, 4, sizeof(ngx_str_t));
    if (*out == NULL) {
        return NGX_ERROR;
    }

    cJSON_ArrayForEach(item, list) {
        s = ngx_array_push(*out);
        if (s == NULL
            || ngx_ailink_policy_cstr(ld, item, "a name in apply_to", s)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_policy_escape(ngx_ailink_policy_loader_t *ld, ngx_str_t *s,
    ngx_str_t *json)
{
    json->data = ngx_pnalloc(ld->cf->pool, ngx_ailink_json_escape_len(s) + 1);
    if (json->data == NULL) {
        return NGX_ERROR;
    }

    json->len = ngx_ailink_json_escape(json->data, s) - json->data;

    return NGX_OK;
}


/* each action's decision in the audit record, but for its result */

static ngx_int_t
ngx_ailink_policy_audit_texts(ngx_ailink_policy_loader_t *ld,
    ngx_ailink_policy_t *p, ngx_ailink_policy_rule_t *rule)
{
    u_char                      *t;
    size_t                       len;
    ngx_str_t                    mode;
    ngx_uint_t                   k;
    ngx_ailink_policy_action_t  *a;

    if (p->shadow) {
        ngx_str_set(&mode, "shadow");

    } else {
        ngx_str_set(&mode, "enforce");
    }

    for (k = 0; k < rule->nactions; k++) {
        a = &rule->actions[k];

        len = sizeof("{\"policy\":\"\",\"rule\":\"\",\"action\":\"\","
                     "\"mode\":\"\",\"result\":\"") - 1
              + p->name_json.len + rule->name_json.len + a->name.len
              + mode.len;

        t = ngx_pnalloc(ld->cf->pool, len);
        if (t == NULL) {
            return NGX_ERROR;
        }

        a->audit.data = t;
        t = ngx_cpymem(t, "{\"policy\":\"", sizeof("{\"policy\":\"") - 1);
        t = ngx_cpymem(t, p->name_json.data, p->name_json.len);
        t = ngx_cpymem(t, "\",\"rule\":\"", sizeof("\",\"rule\":\"") - 1);
        t = ngx_cpymem(t, rule->name_json.data, rule->name_json.len);
        t = ngx_cpymem(t, "\",\"action\":\"",
                       sizeof("\",\"action\":\"") - 1);
        t = ngx_cpymem(t, a->name.data, a->name.len);
        t = ngx_cpymem(t, "\",\"mode\":\"", sizeof("\",\"mode\":\"") - 1);
        t = ngx_cpymem(t, mode.data, mode.len);
        t = ngx_cpymem(t, "\",\"result\":\"",
                       sizeof("\",\"result\":\"") - 1);
        a->audit.len = t - a->audit.data;

        if (a->type != NGX_AILINK_PA_DENY) {
            ngx_str_set(&a->audit_tail, "\"}");
            continue;
        }

        len = sizeof("\",\"reason\":\"\"}") - 1
              + ngx_ailink_json_escape_len(&a->text);

        t = ngx_pnalloc(ld->cf->pool, len);
        if (t == NULL) {
            return NGX_ERROR;
        }

        a->audit_tail.data = t;
        t = ngx_cpymem(t, "\",\"reason\":\"", sizeof("\",\"reason\":\"") - 1);
        t = ngx_ailink_json_escape(t, &a->text);
        *t++ = '"';
        *t++ = '}';
        a->audit_tail.len = t - a->audit_tail.data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_policy_one(ngx_ailink_policy_loader_t *ld, cJSON *item,
    ngx_uint_t index, ngx_ailink_policy_t *p)
{
    size_t                     len;
    cJSON                     *v, *rules, *r;
    ngx_uint_t                 i;
    ngx_ailink_policy_rule_t  *rule;

    static const char  *known[] = { "name", "mode", "phase", "apply_to",
                                    "timezone", "rules", "description",
                                    NULL };
    static const char  *rule_keys[] = { "name", "when", "then",
                                        "description", NULL };

    ngx_snprintf((u_char *) ld->where, sizeof(ld->where), "policies[%ui]%Z",
                 index);

    ld->policy = p;

    if (ngx_array_init(&p->spends, ld->cf->pool, 2,
                       sizeof(ngx_ailink_policy_spend_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_ailink_policy_keys(ld, item, "a policy", known) != NGX_OK
        || ngx_ailink_policy_cstr(ld, ngx_ailink_json_get(item, "name"),
                                  "\"name\"", &p->name)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_snprintf((u_char *) ld->where, sizeof(ld->where),
                 "policies[%ui] (\"%V\")%Z", index, &p->name);

    /* as written, for the admin API (GET /policies, export) */
    {
        char  *t;

        t = cJSON_PrintUnformatted(item);
        if (t == NULL) {
            return NGX_ERROR;
        }

        p->source.len = ngx_strlen(t);
        p->source.data = ngx_pnalloc(ld->cf->pool, p->source.len);

        if (p->source.data) {
            ngx_memcpy(p->source.data, t, p->source.len);
        }

        cJSON_free(t);

        if (p->source.data == NULL) {
            return NGX_ERROR;
        }
    }

    v = ngx_ailink_json_get(item, "mode");

    if (v == NULL
        || (cJSON_IsString(v) && strcmp(v->valuestring, "enforce") == 0))
    {
        p->shadow = 0;

    } else if (cJSON_IsString(v) && strcmp(v->valuestring, "shadow") == 0) {
        p->shadow = 1;

    } else {
        ngx_ailink_policy_error(ld, "mode must be \"enforce\" or \"shadow\"");
        return NGX_ERROR;
    }

    v = ngx_ailink_json_get(item, "phase");

    if (v == NULL || (cJSON_IsString(v) && strcmp(v->valuestring, "pre") == 0))
    {
        p->post = 0;

    } else if (cJSON_IsString(v) && strcmp(v->valuestring, "post") == 0) {
        p->post = 1;

    } else {
        ngx_ailink_policy_error(ld, "phase must be \"pre\" or \"post\"");
        return NGX_ERROR;
    }

    v = ngx_ailink_json_get(item, "apply_to");

    if (v) {
        if (cJSON_IsString(v) && strcmp(v->valuestring, "all") == 0) {
            p->all = 1;

        } else if (ngx_ailink_policy_keys(ld, v, "apply_to",
                                          (const char *[]) { "tokens",
                                              "projects", NULL })
                   != NGX_OK
                   || ngx_ailink_policy_names(ld,
                          ngx_ailink_json_get(v, "tokens"), "tokens",
                          &p->tokens)
                      != NGX_OK
                   || ngx_ailink_policy_names(ld,
                          ngx_ailink_json_get(v, "projects"), "projects",
                          &p->projects)
                      != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (ngx_ailink_policy_timezone(ld, ngx_ailink_json_get(item, "timezone"),
                                   &p->tz)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    rules = ngx_ailink_json_get(item, "rules");

    if (!cJSON_IsArray(rules) || cJSON_GetArraySize(rules) == 0) {
        ngx_ailink_policy_error(ld, "\"rules\" must be a non-empty list");
        return NGX_ERROR;
    }

    p->nrules = cJSON_GetArraySize(rules);
    p->rules = ngx_pcalloc(ld->cf->pool,
                           p->nrules * sizeof(ngx_ailink_policy_rule_t));
    if (p->rules == NULL) {
        return NGX_ERROR;
    }

    len = ngx_strlen(ld->where);
    i = 0;

    cJSON_ArrayForEach(r, rules) {
        rule = &p->rules[i];

        ngx_snprintf((u_char *) ld->where + len, sizeof(ld->where) - len,
                     ".rules[%ui]%Z", i);

        if (ngx_ailink_policy_keys(ld, r, "a rule", rule_keys) != NGX_OK) {
            return NGX_ERROR;
        }

        v = ngx_ailink_json_get(r, "name");

        if (v) {
            if (ngx_ailink_policy_cstr(ld, v, "a rule's \"name\"",
                                       &rule->name)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            ngx_snprintf((u_char *) ld->where + len, sizeof(ld->where) - len,
                         ".rules[%ui] (\"%V\")%Z", i, &rule->name);

        } else {
            rule->name.data = ngx_pnalloc(ld->cf->pool, NGX_INT_T_LEN + 8);
            if (rule->name.data == NULL) {
                return NGX_ERROR;
            }

            rule->name.len = ngx_sprintf(rule->name.data, "rules[%ui]", i)
                             - rule->name.data;
        }

        v = ngx_ailink_json_get(r, "when");

        if (v == NULL) {
            rule->when = ngx_pcalloc(ld->cf->pool,
                                     sizeof(ngx_ailink_policy_cond_t));
            if (rule->when == NULL) {
                return NGX_ERROR;
            }

            rule->when->type = NGX_AILINK_POLICY_TRUE;

        } else {
            rule->when = ngx_ailink_policy_cond(ld, v, p->post, 0);
            if (rule->when == NULL) {
                return NGX_ERROR;
            }
        }

        if (ngx_ailink_policy_then(ld, ngx_ailink_json_get(r, "then"), rule,
                                   i)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        i++;
    }

    /* later messages name the policy only */
    ld->where[len] = '\0';

    /* the audit record's names, escaped once */
    if (ngx_ailink_policy_escape(ld, &p->name, &p->name_json) != NGX_OK) {
        return NGX_ERROR;
    }

    for (i = 0; i < p->nrules; i++) {
        if (ngx_ailink_policy_escape(ld, &p->rules[i].name,
                                     &p->rules[i].name_json)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (ngx_ailink_policy_audit_texts(ld, p, &p->rules[i]) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_ailink_policy_str_in(ngx_array_t *list, ngx_str_t *s)
{
    ngx_uint_t   i;
    ngx_str_t   *e;

    if (list == NULL) {
        return 0;
    }

    e = list->elts;

    for (i = 0; i < list->nelts; i++) {
        if (e[i].len == s->len && ngx_strncmp(e[i].data, s->data, s->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


static ngx_ailink_token_t *
ngx_ailink_policy_token(ngx_ailink_conf_t *conf, ngx_str_t *id)
{
    ngx_uint_t           i;
    ngx_ailink_token_t  *tok;

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


/* the policies of one token, in the file's order */

static ngx_int_t
ngx_ailink_policy_token_set(ngx_ailink_policy_loader_t *ld,
    ngx_ailink_policy_conf_t *pcf, ngx_ailink_token_t *tok, ngx_array_t *own)
{
    ngx_uint_t                  i, j, k, n, pre, post, nspend;
    ngx_ailink_policy_t        *p;
    ngx_ailink_policy_set_t    *set;
    ngx_ailink_policy_spend_t  *sp, *s;

    if (ld->conf->policies) {
        p = ((ngx_array_t *) ld->conf->policies)->elts;
        n = ((ngx_array_t *) ld->conf->policies)->nelts;

    } else {
        p = pcf->policies.elts;
        n = pcf->policies.nelts;
    }

    set = ngx_pcalloc(ld->cf->pool, sizeof(ngx_ailink_policy_set_t));
    if (set == NULL) {
        return NGX_ERROR;
    }

    set->pre = ngx_palloc(ld->cf->pool, n * sizeof(void *));
    set->post = ngx_palloc(ld->cf->pool, n * sizeof(void *));
    if (set->pre == NULL || set->post == NULL) {
        return NGX_ERROR;
    }

    pre = 0;
    post = 0;
    nspend = 0;

    for (i = 0; i < n; i++) {
        if (!(p[i].all || ngx_ailink_policy_str_in(p[i].tokens, &tok->id)
              || ngx_ailink_policy_str_in(p[i].projects, &tok->project)
              || ngx_ailink_policy_str_in(own, &p[i].name)))
        {
            continue;
        }

        if (p[i].post) {
            set->post[post++] = &p[i];

        } else {
            set->pre[pre++] = &p[i];
        }

        set->needs_body |= p[i].needs_body;
        set->limits |= p[i].limits;
        set->guardrails |= !p[i].post && p[i].guardrails;
        nspend += p[i].spends.nelts;
    }

    if (pre == 0 && post == 0) {
        return NGX_OK;
    }

    set->npre = pre;
    set->npost = post;
    set->own = own;

    if (ngx_ailink_policy_memo_init(ld->cf->pool, set) != NGX_OK) {
        return NGX_ERROR;
    }

    if (nspend) {
        set->spend = ngx_palloc(ld->cf->pool,
                                nspend * sizeof(ngx_ailink_policy_spend_t));
        if (set->spend == NULL) {
            return NGX_ERROR;
        }

        for (i = 0; i < pre + post; i++) {
            p = (i < pre) ? set->pre[i] : set->post[i - pre];
            sp = p->spends.elts;

            for (j = 0; j < p->spends.nelts; j++) {
                s = set->spend;

                for (k = 0; k < set->nspend; k++) {
                    if (s[k].scope == sp[j].scope
                        && s[k].period == sp[j].period
                        && s[k].tz == sp[j].tz)
                    {
                        break;
                    }
                }

                if (k == set->nspend) {
                    set->spend[set->nspend++] = sp[j];
                }
            }
        }
    }

    tok->policies = set;

    return NGX_OK;
}


ngx_int_t
ngx_ailink_policy_conf_load(ngx_conf_t *cf, ngx_ailink_conf_t *conf,
    cJSON *root)
{
    cJSON                       *list, *item, *own, *nm;
    ngx_str_t                    id, *s;
    ngx_uint_t                   i, j;
    ngx_array_t                 *names;
    ngx_ailink_token_t          *tok;
    ngx_ailink_policy_t         *p;
    ngx_ailink_policy_conf_t    *pcf;
    ngx_ailink_policy_loader_t   ld;

    pcf = ngx_ailink_policy_get_conf(cf);

    ngx_memzero(&ld, sizeof(ngx_ailink_policy_loader_t));
    ld.cf = cf;
    ld.conf = conf;

    pcf->file = conf->file;

    if (ngx_array_init(&pcf->policies, cf->pool, 8,
                       sizeof(ngx_ailink_policy_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    list = ngx_ailink_json_get(root, "policies");

    if (list && !cJSON_IsArray(list)) {
        ngx_cpystrn((u_char *) ld.where, (u_char *) "policies",
                    sizeof(ld.where));
        ngx_ailink_policy_error(&ld, "must be a list");
        return NGX_ERROR;
    }

    i = 0;

    cJSON_ArrayForEach(item, list) {
        p = ngx_array_push(&pcf->policies);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(p, sizeof(ngx_ailink_policy_t));

        if (ngx_ailink_policy_one(&ld, item, i, p) != NGX_OK) {
            return NGX_ERROR;
        }

        p = pcf->policies.elts;

        for (j = 0; j < i; j++) {
            if (p[j].name.len == p[i].name.len
                && ngx_strcmp(p[j].name.data, p[i].name.data) == 0)
            {
                ngx_ailink_policy_error(&ld, "the name \"%V\" is used twice",
                                        &p[i].name);
                return NGX_ERROR;
            }
        }

        if (p[i].tokens) {
            s = p[i].tokens->elts;

            for (j = 0; j < p[i].tokens->nelts; j++) {
                if (ngx_ailink_policy_token(conf, &s[j]) == NULL) {
                    ngx_ailink_policy_error(&ld, "apply_to.tokens: unknown "
                                            "token id \"%V\"", &s[j]);
                    return NGX_ERROR;
                }
            }
        }

        pcf->needs_state |= p[i].limits;
        i++;
    }

    /* the tokens' own "policies: [...]" */
    list = ngx_ailink_json_get(root, "tokens");
    i = 0;

    cJSON_ArrayForEach(item, list) {
        names = NULL;
        own = ngx_ailink_json_get(item, "policies");

        ngx_snprintf((u_char *) ld.where, sizeof(ld.where),
                     "tokens[%ui].policies%Z", i++);

        if (own) {
            if (!cJSON_IsArray(own)) {
                ngx_ailink_policy_error(&ld, "must be a list of policy "
                                        "names");
                return NGX_ERROR;
            }

            names = ngx_array_create(cf->pool, 4, sizeof(ngx_str_t));
            if (names == NULL) {
                return NGX_ERROR;
            }

            cJSON_ArrayForEach(nm, own) {
                s = ngx_array_push(names);
                if (s == NULL
                    || ngx_ailink_policy_cstr(&ld, nm, "a policy name", s)
                       != NGX_OK)
                {
                    return NGX_ERROR;
                }

                p = pcf->policies.elts;

                for (j = 0; j < pcf->policies.nelts; j++) {
                    if (p[j].name.len == s->len
                        && ngx_strcmp(p[j].name.data, s->data) == 0)
                    {
                        break;
                    }
                }

                if (j == pcf->policies.nelts) {
                    ngx_ailink_policy_error(&ld, "unknown policy \"%V\"", s);
                    return NGX_ERROR;
                }
            }
        }

        if (pcf->policies.nelts == 0) {
            continue;
        }

        nm = ngx_ailink_json_get(item, "id");
        if (!cJSON_IsString(nm)) {
            continue;
        }

        id.data = (u_char *) nm->valuestring;
        id.len = ngx_strlen(nm->valuestring);

        tok = ngx_ailink_policy_token(conf, &id);

        if (tok && ngx_ailink_policy_token_set(&ld, pcf, tok, names)
                   != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * A token compiled after the file (the admin API's store): the file's
 * policies that apply to it, by the same rules (apply_to: all, its id,
 * its project, or named by its own "policies: [...]").  Without this a
 * token created at run time would escape "apply_to: all".
 */

ngx_int_t
ngx_ailink_policy_conf_token(ngx_http_request_t *r, ngx_conf_t *cf,
    ngx_ailink_conf_t *conf, ngx_ailink_token_t *tok, cJSON *own,
    const char *where)
{
    cJSON                       *nm;
    ngx_str_t                   *s;
    ngx_uint_t                   j;
    ngx_array_t                 *names, *all;
    ngx_ailink_policy_t         *p;
    ngx_ailink_policy_conf_t    *pcf;
    ngx_ailink_policy_loader_t   ld;

    pcf = ngx_http_get_module_main_conf(r, ngx_ailink_policy_module);

    /* the file's policies, or the file's and the API's together */
    all = conf->policies ? conf->policies : (pcf ? &pcf->policies : NULL);

    ngx_memzero(&ld, sizeof(ngx_ailink_policy_loader_t));
    ld.cf = cf;
    ld.conf = conf;
    ngx_snprintf((u_char *) ld.where, sizeof(ld.where), "%s.policies%Z",
                 where);

    names = NULL;

    if (own) {
        if (!cJSON_IsArray(own)) {
            ngx_ailink_policy_error(&ld, "must be a list of policy names");
            return NGX_ERROR;
        }

        names = ngx_array_create(cf->pool, 4, sizeof(ngx_str_t));
        if (names == NULL) {
            return NGX_ERROR;
        }

        cJSON_ArrayForEach(nm, own) {
            s = ngx_array_push(names);
            if (s == NULL
                || ngx_ailink_policy_cstr(&ld, nm, "a policy name", s)
                   != NGX_OK)
            {
                return NGX_ERROR;
            }

            p = all ? all->elts : NULL;

            for (j = 0; all && j < all->nelts; j++) {
                if (p[j].name.len == s->len
                    && ngx_strcmp(p[j].name.data, s->data) == 0)
                {
                    break;
                }
            }

            if (all == NULL || j == all->nelts) {
                ngx_ailink_policy_error(&ld, "unknown policy \"%V\"", s);
                return NGX_ERROR;
            }
        }
    }

    if (pcf == NULL || all == NULL || all->nelts == 0) {
        return NGX_OK;
    }

    return ngx_ailink_policy_token_set(&ld, pcf, tok, names);
}


/*
 * The admin API's policies (the store's "policies", a list in the file's
 * shape), compiled by the same loader after the file's: conf->policies
 * becomes the file's followed by the API's, and the tokens compiled next
 * (ngx_ailink_policy_conf_token) attach to them by the same rules.  A
 * name of the file, an unknown token or one of the file in apply_to, or
 * a limit without "ailink_state_zone" is refused, naming the policy.  The
 * file's tokens were compiled with the file's policies only: an API
 * policy's apply_to (all, projects) reaches the API's tokens.
 */

ngx_int_t
ngx_ailink_policy_conf_store(ngx_http_request_t *r, ngx_conf_t *cf,
    ngx_ailink_conf_t *conf, ngx_ailink_conf_t *file, cJSON *list)
{
    cJSON                       *item;
    ngx_str_t                   *s;
    ngx_uint_t                   i, j, n, nfile;
    ngx_array_t                 *all;
    ngx_ailink_policy_t         *p;
    ngx_ailink_policy_conf_t    *pcf;
    ngx_ailink_policy_loader_t   ld;

    pcf = ngx_http_get_module_main_conf(r, ngx_ailink_policy_module);

    n = cJSON_GetArraySize(list);

    if (pcf == NULL || n == 0) {
        return NGX_OK;
    }

    ngx_memzero(&ld, sizeof(ngx_ailink_policy_loader_t));
    ld.cf = cf;
    ld.conf = conf;

    nfile = pcf->policies.nelts;

    /* sized once: the sets keep pointers into it */
    all = ngx_array_create(cf->pool, nfile + n, sizeof(ngx_ailink_policy_t));
    if (all == NULL) {
        return NGX_ERROR;
    }

    if (nfile) {
        ngx_memcpy(ngx_array_push_n(all, nfile), pcf->policies.elts,
                   nfile * sizeof(ngx_ailink_policy_t));
    }

    i = 0;

    cJSON_ArrayForEach(item, list) {
        p = ngx_array_push(all);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(p, sizeof(ngx_ailink_policy_t));

        if (ngx_ailink_policy_one(&ld, item, i++, p) != NGX_OK) {
            return NGX_ERROR;
        }

        for (j = 0; j < all->nelts - 1; j++) {
            if (((ngx_ailink_policy_t *) all->elts)[j].name.len == p->name.len
                && ngx_strcmp(((ngx_ailink_policy_t *) all->elts)[j].name.data,
                              p->name.data) == 0)
            {
                ngx_ailink_policy_error(&ld, "the name \"%V\" is %s",
                                        &p->name, j < nfile
                                        ? "a policy of the config file"
                                        : "used twice");
                return NGX_ERROR;
            }
        }

        if (p->tokens) {
            s = p->tokens->elts;

            for (j = 0; j < p->tokens->nelts; j++) {
                if (ngx_ailink_policy_token(file, &s[j])) {
                    ngx_ailink_policy_error(&ld, "apply_to.tokens: \"%V\" "
                                            "is a token of the config file, "
                                            "which only the file's policies "
                                            "reach", &s[j]);
                    return NGX_ERROR;
                }

                if (ngx_ailink_policy_token(conf, &s[j]) == NULL) {
                    ngx_ailink_policy_error(&ld, "apply_to.tokens: unknown "
                                            "token id \"%V\"", &s[j]);
                    return NGX_ERROR;
                }
            }
        }

        if (p->limits && pcf->state == NULL) {
            ngx_ailink_policy_error(&ld, "rate limits and spend caps need "
                                    "\"ailink_state_zone\"");
            return NGX_ERROR;
        }
    }

    conf->policies = all;

    return NGX_OK;
}


/* the file's policies as written, for the admin API; NULL on error */

cJSON *
ngx_ailink_policy_conf_file_list(ngx_http_request_t *r)
{
    cJSON                     *out, *item;
    ngx_uint_t                 i;
    ngx_ailink_policy_t       *p;
    ngx_ailink_policy_conf_t  *pcf;

    out = cJSON_CreateArray();
    if (out == NULL) {
        return NULL;
    }

    pcf = ngx_http_get_module_main_conf(r, ngx_ailink_policy_module);
    if (pcf == NULL) {
        return out;
    }

    p = pcf->policies.elts;

    for (i = 0; i < pcf->policies.nelts; i++) {
        item = cJSON_ParseWithLength((char *) p[i].source.data,
                                     p[i].source.len);
        if (item == NULL) {
            cJSON_Delete(out);
            return NULL;
        }

        cJSON_AddItemToArray(out, item);
    }

    return out;
}


/* the policies a token names itself ("policies: [...]"), or NULL */

cJSON *
ngx_ailink_policy_conf_token_own(ngx_ailink_token_t *tok)
{
    cJSON                    *out;
    ngx_str_t                *s;
    ngx_uint_t                i;
    ngx_ailink_policy_set_t  *set;

    set = tok->policies;

    if (set == NULL || set->own == NULL || set->own->nelts == 0) {
        return NULL;
    }

    out = cJSON_CreateArray();
    s = set->own->elts;

    for (i = 0; out && i < set->own->nelts; i++) {
        cJSON_AddItemToArray(out, ngx_ailink_json_string(&s[i]));
    }

    return out;
}
