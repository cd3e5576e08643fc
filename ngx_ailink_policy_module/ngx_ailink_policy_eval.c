
/*
 * Copyright (C) AILink
 *
 * Condition trees: "all", "any" and "not" over leaves that compare one
 * field of the request (or, after it, of the response) with a value.
 * This runs for every rule of every policy a token has, so a field is
 * fetched without copying, the body is looked into only by a rule that
 * names it (with the scan: no tree is built), and the clock is read once
 * per request.
 *
 * A field that is absent (no such header, no usage yet) makes every
 * operator false except "neq" and "exists: false".
 */


#include "ngx_ailink_policy.h"
#include <math.h>


static pcre2_match_data  *ngx_ailink_policy_match_data;


ngx_int_t
ngx_ailink_policy_number(ngx_str_t *s, double *n)
{
    char   buf[64], *end;

    if (s->len == 0 || s->len >= sizeof(buf)) {
        return NGX_DECLINED;
    }

    ngx_memcpy(buf, s->data, s->len);
    buf[s->len] = '\0';

    *n = strtod(buf, &end);

    return (end == buf + s->len) ? NGX_OK : NGX_DECLINED;
}


void
ngx_ailink_policy_time(ngx_ailink_policy_ctx_t *pctx,
    ngx_ailink_policy_tz_t *tz)
{
    time_t  now;

    if (pctx->tm_set && pctx->tm_tz == tz) {
        return;
    }

    now = ngx_time();
    ngx_gmtime(now + ngx_ailink_policy_tz_offset(tz, now), &pctx->tm);
    pctx->tm_tz = tz;
    pctx->tm_set = 1;
}


/* "*" any run, "?" any one byte; everything else as it is */

static ngx_uint_t
ngx_ailink_policy_glob(ngx_str_t *pattern, ngx_str_t *s)
{
    u_char  *p, *pe, *t, *te, *star, *mark;

    p = pattern->data;
    pe = p + pattern->len;
    t = s->data;
    te = t + s->len;
    star = NULL;
    mark = NULL;

    while (t < te) {
        if (p < pe && (*p == '?' || *p == *t)) {
            p++;
            t++;

        } else if (p < pe && *p == '*') {
            star = p++;
            mark = t;

        } else if (star) {
            p = star + 1;
            t = ++mark;

        } else {
            return 0;
        }
    }

    while (p < pe && *p == '*') {
        p++;
    }

    return p == pe;
}


/* a value of the body by its dotted path, without building a tree */

static ngx_int_t
ngx_ailink_policy_body_value(ngx_http_request_t *r,
    ngx_ailink_policy_ctx_t *pctx, ngx_array_t *path,
    ngx_ailink_policy_value_t *v)
{
    cJSON       *json;
    ngx_str_t    text, value, *seg;
    ngx_uint_t   i;

    text = pctx->body;
    seg = path->elts;

    /* a path that leads nowhere: the field is absent */
    for (i = 0; i < path->nelts; i++) {
        if (text.len == 0 || text.data[0] != '{') {
            return NGX_OK;
        }

        if (ngx_ailink_json_find(&text, &seg[i], &value) != NGX_OK) {
            return NGX_OK;
        }

        text = value;
    }

    if (text.len && text.data[0] == '"') {
        if (ngx_ailink_json_plain_string(&text, &v->str) != NGX_OK) {
            /* a string with escapes is rare enough to parse */
            json = ngx_ailink_json_parse(&text);

            if (!cJSON_IsString(json)) {
                ngx_ailink_json_delete(json);
                return NGX_OK;
            }

            v->str.len = ngx_strlen(json->valuestring);
            v->str.data = ngx_pstrdup(r->pool, &(ngx_str_t) {
                                          v->str.len,
                                          (u_char *) json->valuestring });
            ngx_ailink_json_delete(json);

            if (v->str.data == NULL) {
                return NGX_ERROR;
            }
        }

    } else {
        v->str = text;
    }

    v->found = 1;

    return NGX_OK;
}


ngx_int_t
ngx_ailink_policy_field(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_ailink_policy_ctx_t *pctx, ngx_uint_t field, ngx_str_t *arg,
    ngx_ailink_policy_cond_t *cond, ngx_ailink_policy_value_t *v)
{
    double              usd;
    ngx_uint_t          status;
    ngx_table_elt_t    *h;
    ngx_ailink_conf_t  *conf;

    /* method, path, model, provider, token, project, agent, session */
    if (ngx_ailink_policy_field_str(r, ctx, field, v)) {
        return NGX_OK;
    }

    v->found = 0;
    v->is_number = 0;

    switch (field) {

    case NGX_AILINK_PF_HEADER:
        h = ngx_ailink_find_header(r, (char *) arg->data, arg->len);

        if (h) {
            /* a header sent empty still exists */
            v->str = h->value;
            v->found = 1;
        }

        return NGX_OK;

    case NGX_AILINK_PF_BODY:
        return ngx_ailink_policy_body_value(r, pctx, cond->path, v);

    case NGX_AILINK_PF_HOUR:
    case NGX_AILINK_PF_MINUTE:
    case NGX_AILINK_PF_WEEKDAY:
        ngx_ailink_policy_time(pctx, pctx->tz);
        v->number = (field == NGX_AILINK_PF_HOUR) ? pctx->tm.ngx_tm_hour
                    : (field == NGX_AILINK_PF_MINUTE) ? pctx->tm.ngx_tm_min
                    : pctx->tm.ngx_tm_wday;
        v->found = 1;
        v->is_number = 1;
        return NGX_OK;

    case NGX_AILINK_PF_STATUS:
        status = r->err_status ? r->err_status : r->headers_out.status;
        if (status == 0) {
            return NGX_OK;
        }

        v->number = (double) status;
        v->found = 1;
        v->is_number = 1;
        return NGX_OK;

    case NGX_AILINK_PF_PROMPT_TOKENS:
    case NGX_AILINK_PF_COMPLETION_TOKENS:
    case NGX_AILINK_PF_TOTAL_TOKENS:
    case NGX_AILINK_PF_COST:
        if (!ctx->usage.known) {
            return NGX_OK;
        }

        if (field == NGX_AILINK_PF_COST) {
            conf = ngx_ailink_get_conf(r);
            v->number = conf ? ngx_ailink_cost(conf, &ctx->model, &ctx->usage)
                             : 0;

        } else {
            v->number = (double) ((field == NGX_AILINK_PF_PROMPT_TOKENS)
                                  ? ctx->usage.prompt
                                  : (field == NGX_AILINK_PF_COMPLETION_TOKENS)
                                    ? ctx->usage.completion
                                    : ctx->usage.total);
        }

        v->found = 1;
        v->is_number = 1;
        return NGX_OK;

    case NGX_AILINK_PF_SPEND:
        if (ngx_ailink_policy_spend_get(ctx, ngx_ailink_policy_state(r),
                                        &cond->spend, &usd)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        v->number = usd;
        v->found = 1;
        v->is_number = 1;
        return NGX_OK;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_policy_value_number(ngx_ailink_policy_value_t *v, double *n)
{
    if (v->is_number) {
        *n = v->number;
        return NGX_OK;
    }

    return ngx_ailink_policy_number(&v->str, n);
}


static ngx_uint_t
ngx_ailink_policy_equal(ngx_ailink_policy_value_t *v, ngx_str_t *s,
    double number, ngx_flag_t numeric)
{
    double  n;

    if (numeric && ngx_ailink_policy_value_number(v, &n) == NGX_OK) {
        return n == number;
    }

    if (v->is_number) {
        return 0;
    }

    return v->str.len == s->len
           && ngx_memcmp(v->str.data, s->data, s->len) == 0;
}


static ngx_int_t
ngx_ailink_policy_leaf(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_ailink_policy_ctx_t *pctx, ngx_ailink_policy_cond_t *c)
{
    int                        rc;
    double                     n;
    ngx_uint_t                 i;
    ngx_ailink_policy_value_t  v;

    if (!ngx_ailink_policy_field_str(r, ctx, c->field, &v)
        && ngx_ailink_policy_field(r, ctx, pctx, c->field, &c->arg, c, &v)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (c->op == NGX_AILINK_POP_EXISTS) {
        return v.found == (ngx_uint_t) c->exists;
    }

    if (!v.found) {
        return c->op == NGX_AILINK_POP_NEQ;
    }

    switch (c->op) {

    case NGX_AILINK_POP_EQ:
        return ngx_ailink_policy_equal(&v, &c->value, c->number, c->numeric);

    case NGX_AILINK_POP_NEQ:
        return !ngx_ailink_policy_equal(&v, &c->value, c->number, c->numeric);

    case NGX_AILINK_POP_GT:
    case NGX_AILINK_POP_GTE:
    case NGX_AILINK_POP_LT:
    case NGX_AILINK_POP_LTE:
        if (ngx_ailink_policy_value_number(&v, &n) != NGX_OK) {
            return 0;
        }

        switch (c->op) {
        case NGX_AILINK_POP_GT:
            return n > c->number;
        case NGX_AILINK_POP_GTE:
            return n >= c->number;
        case NGX_AILINK_POP_LT:
            return n < c->number;
        default:
            return n <= c->number;
        }

    case NGX_AILINK_POP_IN:
        for (i = 0; i < c->nvalues; i++) {
            if (ngx_ailink_policy_equal(&v, &c->values[i], c->numbers[i],
                                        !isnan(c->numbers[i])))
            {
                return 1;
            }
        }

        return 0;

    default:
        break;
    }

    /* string operators: a number is matched as its decimal text */
    if (v.is_number) {
        v.str.data = ngx_pnalloc(r->pool, 32);
        if (v.str.data == NULL) {
            return NGX_ERROR;
        }

        v.str.len = (v.number == (double) (int64_t) v.number)
                    ? (size_t) (ngx_sprintf(v.str.data, "%L",
                                            (int64_t) v.number)
                                - v.str.data)
                    : (size_t) snprintf((char *) v.str.data, 32, "%.15g",
                                        v.number);
    }

    switch (c->op) {

    case NGX_AILINK_POP_GLOB:
        return ngx_ailink_policy_glob(&c->value, &v.str);

    case NGX_AILINK_POP_CONTAINS:
        return v.str.len >= c->value.len
               && memmem(v.str.data, v.str.len, c->value.data, c->value.len)
                  != NULL;

    case NGX_AILINK_POP_STARTS_WITH:
        return v.str.len >= c->value.len
               && ngx_memcmp(v.str.data, c->value.data, c->value.len) == 0;

    case NGX_AILINK_POP_REGEX:
        if (ngx_ailink_policy_match_data == NULL) {
            ngx_ailink_policy_match_data = pcre2_match_data_create(1, NULL);
            if (ngx_ailink_policy_match_data == NULL) {
                return NGX_ERROR;
            }
        }

        /* pcre2_match() runs the JIT code when there is some */
        rc = pcre2_match(c->re, v.str.data, v.str.len, 0, 0,
                         ngx_ailink_policy_match_data, NULL);

        if (rc >= 0) {
            return 1;
        }

        if (rc == PCRE2_ERROR_NOMATCH) {
            return 0;
        }

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "ailink policy: regex \"%V\" failed: %d", &c->value, rc);
        return NGX_ERROR;
    }

    return NGX_ERROR;
}


/* 1: true, 0: false, NGX_ERROR: could not be decided (fails closed) */

ngx_int_t
ngx_ailink_policy_eval(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_ailink_policy_ctx_t *pctx, ngx_ailink_policy_cond_t *cond)
{
    ngx_int_t                  rc;
    ngx_uint_t                 i;
    ngx_ailink_policy_cond_t  *c;

    switch (cond->type) {

    case NGX_AILINK_POLICY_LEAF:
        return ngx_ailink_policy_leaf(r, ctx, pctx, cond);

    case NGX_AILINK_POLICY_TRUE:
        return 1;

    /* children that are leaves: without another call of this one */

    case NGX_AILINK_POLICY_NOT:
        c = cond->children[0];
        rc = (c->type == NGX_AILINK_POLICY_LEAF)
             ? ngx_ailink_policy_leaf(r, ctx, pctx, c)
             : ngx_ailink_policy_eval(r, ctx, pctx, c);
        return (rc == NGX_ERROR) ? NGX_ERROR : !rc;

    case NGX_AILINK_POLICY_ALL:
        for (i = 0; i < cond->nchildren; i++) {
            c = cond->children[i];
            rc = (c->type == NGX_AILINK_POLICY_LEAF)
                 ? ngx_ailink_policy_leaf(r, ctx, pctx, c)
                 : ngx_ailink_policy_eval(r, ctx, pctx, c);
            if (rc != 1) {
                return rc;
            }
        }

        return 1;

    case NGX_AILINK_POLICY_ANY:
        for (i = 0; i < cond->nchildren; i++) {
            c = cond->children[i];
            rc = (c->type == NGX_AILINK_POLICY_LEAF)
                 ? ngx_ailink_policy_leaf(r, ctx, pctx, c)
                 : ngx_ailink_policy_eval(r, ctx, pctx, c);
            if (rc != 0) {
                return rc;
            }
        }

        return 0;
    }

    return NGX_ERROR;
}


void
ngx_ailink_policy_eval_exit(void)
{
    if (ngx_ailink_policy_match_data) {
        pcre2_match_data_free(ngx_ailink_policy_match_data);
        ngx_ailink_policy_match_data = NULL;
    }
}
