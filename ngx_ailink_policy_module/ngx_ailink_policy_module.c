
/*
 * Copyright (C) AILink
 *
 * The policy engine's place in nginx.  Pre-phase policies run in the
 * precontent phase right after routing (model and provider are known, the
 * credential not yet sent anywhere) and before proxying; post-phase
 * policies, token counts and spend run in the log phase, just before the
 * audit record is written, so the record carries every decision.
 *
 * Precedence, for the policies of a token in the order of the file:
 *   1. conditions are evaluated rule by rule; an "allow" ends its own
 *      policy (later rules of that policy are skipped), never another's;
 *   2. the first enforced "deny" (or an action hook that refuses) ends
 *      the evaluation: 403 policy_denied;
 *   3. then spend caps, in order: the first one spent gives 402
 *      budget_exceeded;
 *   4. then rate limits, in order: the first one reached gives 429
 *      rate_limited (limits checked before it keep their count);
 *   5. set_header, log and tag of every matching rule take effect.
 * Shadow policies run the same way, change nothing, and record what they
 * would have done.  A condition or a limit that cannot be decided fails
 * closed (500; 503 when the state zone cannot count).
 */


#include "ngx_ailink_policy.h"


/*
 * require_approval, redact and block_content: filled by the approvals and
 * guardrails modules; NGX_OK lets the request on, NGX_DECLINED refuses
 * it, NGX_DONE means the hook answered it.  Without a hook the action
 * fails closed: it refuses the request.
 */
ngx_ailink_policy_hook_pt  ngx_ailink_policy_hooks[NGX_AILINK_PA_MAX];


static ngx_int_t ngx_ailink_policy_handler(ngx_http_request_t *r);
static void ngx_ailink_policy_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_ailink_policy_run_pre(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx, ngx_ailink_policy_ctx_t *pctx);
static ngx_int_t ngx_ailink_policy_run_limits(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx, ngx_ailink_policy_ctx_t *pctx,
    ngx_ailink_policy_limits_t *lim);
static ngx_int_t ngx_ailink_policy_limits_wait(ngx_http_request_t *r,
    ngx_ailink_policy_ctx_t *pctx);
static void ngx_ailink_policy_log_hook(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx);
static ngx_int_t ngx_ailink_policy_log_handler(ngx_http_request_t *r);
static ngx_int_t ngx_ailink_policy_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_ailink_policy_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_ailink_policy_init_process(ngx_cycle_t *cycle);
static void ngx_ailink_policy_exit_process(ngx_cycle_t *cycle);
static void *ngx_ailink_policy_create_main_conf(ngx_conf_t *cf);
static char *ngx_ailink_policy_state_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_ailink_policy_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_ailink_policy_postconfiguration(ngx_conf_t *cf);


static ngx_command_t  ngx_ailink_policy_commands[] = {

    { ngx_string("ailink_state_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_ailink_policy_state_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ailink_data_dir"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_ailink_policy_conf_t, data_dir),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_ailink_policy_module_ctx = {
    ngx_ailink_policy_preconfiguration,    /* preconfiguration */
    ngx_ailink_policy_postconfiguration,   /* postconfiguration */

    ngx_ailink_policy_create_main_conf,    /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_ailink_policy_module = {
    NGX_MODULE_V1,
    &ngx_ailink_policy_module_ctx,         /* module context */
    ngx_ailink_policy_commands,            /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_ailink_policy_init_process,        /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_ailink_policy_exit_process,        /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


enum {
    NGX_AILINK_POLICY_VAR_DECISION = 0,
    NGX_AILINK_POLICY_VAR_NAME,
    NGX_AILINK_POLICY_VAR_DECISIONS,
    NGX_AILINK_POLICY_VAR_TAGS
};


static ngx_http_variable_t  ngx_ailink_policy_vars[] = {

    { ngx_string("ailink_policy_decision"), NULL, ngx_ailink_policy_variable,
      NGX_AILINK_POLICY_VAR_DECISION, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ailink_policy_name"), NULL, ngx_ailink_policy_variable,
      NGX_AILINK_POLICY_VAR_NAME, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ailink_policy_decisions"), NULL, ngx_ailink_policy_variable,
      NGX_AILINK_POLICY_VAR_DECISIONS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ailink_policy_tags"), NULL, ngx_ailink_policy_variable,
      NGX_AILINK_POLICY_VAR_TAGS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;

static ngx_event_t  ngx_ailink_policy_save_event;


ngx_ailink_policy_conf_t *
ngx_ailink_policy_get_conf(ngx_conf_t *cf)
{
    return ngx_http_conf_get_module_main_conf(cf, ngx_ailink_policy_module);
}


/*
 * the state zone as configured: with backend=redis, counters and
 * approvals in Redis (the other records in the zone's shared memory)
 */

ngx_ailink_state_t *
ngx_ailink_policy_state(ngx_http_request_t *r)
{
    ngx_ailink_policy_conf_t  *pcf;

    pcf = ngx_http_get_module_main_conf(r, ngx_ailink_policy_module);

    return pcf->counters ? pcf->counters : pcf->state;
}


static ngx_ailink_policy_ctx_t *
ngx_ailink_policy_create_ctx(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx)
{
    ngx_ailink_policy_ctx_t  *pctx;

    pctx = ngx_pcalloc(r->pool, sizeof(ngx_ailink_policy_ctx_t));
    if (pctx == NULL) {
        return NULL;
    }

    /* a fifth decision moves them to the pool (ngx_array_push()) */
    pctx->decisions.elts = pctx->decisions_first;
    pctx->decisions.nelts = 0;
    pctx->decisions.size = sizeof(ngx_ailink_policy_decision_t);
    pctx->decisions.nalloc = 4;
    pctx->decisions.pool = r->pool;

    pctx->set = ctx->token->policies;
    ctx->policy = pctx;

    return pctx;
}


static ngx_int_t
ngx_ailink_policy_handler(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_ailink_ctx_t         *ctx;
    ngx_ailink_policy_set_t  *set;
    ngx_ailink_policy_ctx_t  *pctx;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_ailink_get_ctx(r);

    if (ctx == NULL || ctx->token == NULL || !ctx->routed
        || ctx->token->policies == NULL)
    {
        return NGX_DECLINED;
    }

    set = ctx->token->policies;

    if (set->npre == 0) {
        return NGX_DECLINED;
    }

    pctx = ctx->policy;

    if (pctx == NULL) {
        pctx = ngx_ailink_policy_create_ctx(r, ctx);
        if (pctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

    } else if (pctx->decided) {
        if (pctx->limits == NULL) {
            return NGX_DECLINED;
        }

        if (pctx->limits->waiting) {
            return NGX_DONE;
        }

        if (!pctx->limits->replied) {
            return NGX_DECLINED;
        }

        rc = ngx_ailink_policy_run_limits(r, ctx, pctx, pctx->limits);
        goto done;
    }

    if (set->needs_body && !pctx->body_ready) {

        if (ctx->route == NGX_AILINK_ROUTE_LLM) {
            /* routing read it already */
            pctx->body = ctx->body;
            pctx->body_ready = 1;

        } else if (!pctx->body_reading) {
            pctx->body_reading = 1;
            r->request_body_in_single_buf = 1;

            rc = ngx_http_read_client_request_body(r,
                                            ngx_ailink_policy_body_handler);

            if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
                return rc;
            }

            ngx_http_finalize_request(r, NGX_DONE);
            return NGX_DONE;

        } else {
            return NGX_DONE;
        }
    }

    pctx->decided = 1;

    rc = ngx_ailink_policy_run_pre(r, ctx, pctx);

done:

    if (rc == NGX_OK) {
        return NGX_DECLINED;
    }

    if (rc == NGX_AGAIN) {
        return ngx_ailink_policy_limits_wait(r, pctx);
    }

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_DONE;
}


/* the body, for a token whose policies look into it, on a route that
 * did not read it; the phases then run again, as in routing */

static void
ngx_ailink_policy_body_handler(ngx_http_request_t *r)
{
    u_char                   *p;
    size_t                    len;
    ssize_t                   n;
    ngx_buf_t                *b;
    ngx_chain_t              *cl;
    ngx_ailink_ctx_t         *ctx;
    ngx_ailink_policy_ctx_t  *pctx;

    ctx = ngx_ailink_get_ctx(r);
    pctx = ctx->policy;

    pctx->body_ready = 1;
    ngx_str_null(&pctx->body);

    if (r->request_body && r->request_body->bufs) {
        cl = r->request_body->bufs;

        if (cl->next == NULL && !cl->buf->in_file) {
            pctx->body.data = cl->buf->pos;
            pctx->body.len = cl->buf->last - cl->buf->pos;

        } else {
            len = 0;

            for (cl = r->request_body->bufs; cl; cl = cl->next) {
                len += ngx_buf_size(cl->buf);
            }

            p = ngx_pnalloc(r->pool, len);

            if (p) {
                pctx->body.data = p;

                for (cl = r->request_body->bufs; cl; cl = cl->next) {
                    b = cl->buf;

                    if (b->in_file) {
                        n = ngx_read_file(b->file, p,
                                          b->file_last - b->file_pos,
                                          b->file_pos);
                        if (n != b->file_last - b->file_pos) {
                            p = NULL;
                            break;
                        }

                        p += n;

                    } else {
                        p = ngx_cpymem(p, b->pos, b->last - b->pos);
                    }
                }
            }

            if (p == NULL) {
                /* a body that cannot be read cannot be judged */
                ngx_ailink_finalize_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                          "internal_error",
                                          "the request body could not be "
                                          "read for its policies", NULL);
                return;
            }

            pctx->body.len = p - pctx->body.data;
        }
    }

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


static ngx_int_t
ngx_ailink_policy_decide(ngx_http_request_t *r, ngx_ailink_policy_ctx_t *pctx,
    ngx_ailink_policy_t *p, ngx_ailink_policy_rule_t *rule,
    ngx_ailink_policy_action_t *a, const char *result)
{
    ngx_ailink_policy_decision_t  *d;

    if (pctx->decisions.nelts < pctx->decisions.nalloc) {
        d = (ngx_ailink_policy_decision_t *) pctx->decisions.elts
            + pctx->decisions.nelts++;

    } else {
        d = ngx_array_push(&pctx->decisions);
        if (d == NULL) {
            return NGX_ERROR;
        }
    }

    d->policy = p;
    d->rule = rule;
    d->action = a;
    d->result = result;

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ailink policy \"%V\" %V: %V %s",
                   &p->name, &rule->name, &a->name, result);

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_policy_set_header(ngx_http_request_t *r,
    ngx_ailink_policy_action_t *a)
{
    ngx_table_elt_t  *h;

    h = ngx_ailink_find_header(r, (char *) a->header.data, a->header.len);

    if (h == NULL) {
        h = ngx_list_push(&r->headers_in.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        h->hash = 1;
        h->key = a->header;

        h->lowcase_key = ngx_pnalloc(r->pool, a->header.len);
        if (h->lowcase_key == NULL) {
            return NGX_ERROR;
        }

        ngx_strlow(h->lowcase_key, a->header.data, a->header.len);
    }

    h->value = a->text;

    return NGX_OK;
}


/* ,"k":"escaped" */

#define ngx_ailink_policy_json_member(p, key, s)                              \
    ngx_ailink_policy_json_string(                                            \
        ngx_cpymem(p, ",\"" key "\":\"", sizeof(",\"" key "\":\"") - 1), s)

static u_char *
ngx_ailink_policy_json_string(u_char *p, ngx_str_t *s)
{
    p = ngx_ailink_json_escape(p, s);
    *p++ = '"';

    return p;
}


static ngx_int_t
ngx_ailink_policy_refuse(ngx_http_request_t *r, ngx_ailink_policy_ctx_t *pctx,
    ngx_ailink_policy_decision_t *d, double spent)
{
    u_char                      *p, *msg;
    size_t                       len;
    ngx_str_t                    extra, reason;
    ngx_uint_t                   status;
    const char                  *code;
    ngx_ailink_policy_action_t  *a;

    a = d->action;
    pctx->final = d;

    len = sizeof(",\"policy_name\":\"\",\"reason\":\"\",\"budget\":\"\","
                 "\"spent_usd\":,\"limit_usd\":,\"retry_after\":")
          + ngx_ailink_json_escape_len(&d->policy->name)
          + 4 * NGX_INT64_LEN + 64;

    msg = ngx_pnalloc(r->pool, NGX_MAX_ERROR_STR);
    if (msg == NULL) {
        return NGX_ERROR;
    }

    switch (a->type) {

    case NGX_AILINK_PA_SPEND_CAP:
        status = 402;         /* Payment Required */
        code = "budget_exceeded";
        len += ngx_ailink_json_escape_len(&a->budget);

        *ngx_snprintf(msg, NGX_MAX_ERROR_STR - 1,
                      "budget \"%V\" of policy \"%V\" is spent: "
                      "%.6f USD of %.6f USD", &a->budget, &d->policy->name,
                      spent, a->limit_usd) = '\0';
        break;

    case NGX_AILINK_PA_RATE_LIMIT:
        status = NGX_HTTP_TOO_MANY_REQUESTS;
        code = "rate_limited";
        pctx->retry_after = ngx_max(pctx->retry_after, 1);

        *ngx_snprintf(msg, NGX_MAX_ERROR_STR - 1,
                      "rate limit of policy \"%V\" reached; retry after "
                      "%T s", &d->policy->name, pctx->retry_after) = '\0';
        break;

    default:
        status = NGX_HTTP_FORBIDDEN;
        code = "policy_denied";

        if (a->type == NGX_AILINK_PA_DENY) {
            reason = a->text;

        } else {
            ngx_str_set(&reason, "this action is not available on the "
                                 "gateway");
        }

        len += ngx_ailink_json_escape_len(&reason);

        *ngx_snprintf(msg, NGX_MAX_ERROR_STR - 1,
                      "denied by policy \"%V\": %V", &d->policy->name,
                      &reason) = '\0';
        break;
    }

    extra.data = ngx_pnalloc(r->pool, len);
    if (extra.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_ailink_policy_json_member(extra.data, "policy_name",
                                      &d->policy->name);

    switch (a->type) {

    case NGX_AILINK_PA_SPEND_CAP:
        p = ngx_ailink_policy_json_member(p, "budget", &a->budget);
        p = ngx_sprintf(p, ",\"spent_usd\":%.6f,\"limit_usd\":%.6f",
                        spent, a->limit_usd);
        break;

    case NGX_AILINK_PA_RATE_LIMIT:
        p = ngx_sprintf(p, ",\"retry_after\":%T", pctx->retry_after);
        break;

    default:
        p = ngx_ailink_policy_json_member(p, "reason", &reason);
        break;
    }

    extra.len = p - extra.data;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "ailink policy \"%V\" rule \"%V\": %s", &d->policy->name,
                  &d->rule->name, code);

    ngx_ailink_finalize_error_extra(r, status, code, (char *) msg, NULL,
                                    &extra);

    return NGX_DONE;
}


/* a limit or condition that cannot be decided: fail closed */

static ngx_int_t
ngx_ailink_policy_fail(ngx_http_request_t *r, ngx_ailink_policy_t *p,
    ngx_ailink_policy_rule_t *rule, ngx_uint_t status)
{
    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "ailink policy \"%V\" rule \"%V\" could not be decided: "
                  "the request is refused", &p->name, &rule->name);

    ngx_ailink_finalize_error(r, status,
                              status == NGX_HTTP_SERVICE_UNAVAILABLE
                              ? "limits_unavailable" : "internal_error",
                              "a policy could not be decided", NULL);
    return NGX_DONE;
}


typedef struct {
    ngx_ailink_policy_t        *policy;
    ngx_ailink_policy_rule_t   *rule;
    ngx_ailink_policy_action_t *action;
} ngx_ailink_policy_pending_t;


static ngx_int_t
ngx_ailink_policy_run_pre(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_ailink_policy_ctx_t *pctx)
{
    uint64_t                      *bits;
    ngx_int_t                      rc;
    ngx_uint_t                     i, j, k, npending, allow, base;
    const char                    *result;
    ngx_ailink_policy_t           *p;
    ngx_ailink_policy_set_t       *set;
    ngx_ailink_policy_rule_t      *rule;
    ngx_ailink_policy_action_t    *a;
    ngx_ailink_policy_decision_t  *d;
    ngx_ailink_policy_limits_t     lim, *plim;
    ngx_ailink_policy_pending_t    pending[16], *pend;

    set = pctx->set;
    npending = 0;
    pend = pending;

    bits = ngx_ailink_policy_memo(r, ctx, pctx);
    base = 0;

    for (i = 0; i < set->npre; i++, base += p->nrules) {

        if (bits) {
            /* straight to the policy of the next rule to run */
            j = ngx_ailink_policy_memo_next(bits, base, set->nrules);
            if (j == set->nrules) {
                break;
            }

            i = set->rule_policy[j];
            base = set->rule_base[i];
        }

        p = set->pre[i];
        pctx->tz = p->tz;

        for (j = 0; j < p->nrules; j++) {

            if (bits) {
                /* straight to the next rule that matched or is dynamic */
                j = ngx_ailink_policy_memo_next(bits, base + j,
                                                base + p->nrules) - base;
                if (j == p->nrules) {
                    break;
                }
            }

            rule = &p->rules[j];

            rc = (bits && !rule->dynamic)
                 ? 1 : ngx_ailink_policy_eval(r, ctx, pctx, rule->when);

            if (rc == NGX_ERROR) {
                return ngx_ailink_policy_fail(r, p, rule,
                                           NGX_HTTP_INTERNAL_SERVER_ERROR);
            }

            if (rc == 0) {
                continue;
            }

            allow = 0;

            for (k = 0; k < rule->nactions; k++) {
                a = &rule->actions[k];
                result = p->shadow ? "would_apply" : "applied";

                switch (a->type) {

                case NGX_AILINK_PA_ALLOW:
                    allow = 1;
                    result = p->shadow ? "would_allow" : "allowed";
                    break;

                case NGX_AILINK_PA_RATE_LIMIT:
                case NGX_AILINK_PA_SPEND_CAP:
                    /* after every deny had its say */
                    if (npending == 16 && pend == pending) {
                        pend = ngx_palloc(r->pool, 1024
                                   * sizeof(ngx_ailink_policy_pending_t));
                        if (pend == NULL) {
                            return NGX_ERROR;
                        }

                        ngx_memcpy(pend, pending, sizeof(pending));
                    }

                    if (npending == 1024) {
                        return ngx_ailink_policy_fail(r, p, rule,
                                           NGX_HTTP_INTERNAL_SERVER_ERROR);
                    }

                    pend[npending].policy = p;
                    pend[npending].rule = rule;
                    pend[npending].action = a;
                    npending++;

                    continue;

                case NGX_AILINK_PA_SET_HEADER:
                    if (!p->shadow
                        && ngx_ailink_policy_set_header(r, a) != NGX_OK)
                    {
                        return NGX_ERROR;
                    }

                    break;

                case NGX_AILINK_PA_LOG:
                    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                                  "ailink policy \"%V\" rule \"%V\"%s: %V",
                                  &p->name, &rule->name,
                                  p->shadow ? " (shadow)" : "", &a->text);
                    result = "logged";
                    break;

                case NGX_AILINK_PA_TAG:
                    result = "tagged";
                    break;

                case NGX_AILINK_PA_DENY:
                    result = p->shadow ? "would_deny" : "denied";
                    break;

                default:
                    /* require_approval, redact, block_content */
                    rc = ngx_ailink_policy_hooks[a->type]
                         ? ngx_ailink_policy_hooks[a->type](r, p, rule, a)
                         : NGX_DECLINED;

                    if (rc == NGX_DONE && !p->shadow) {
                        return NGX_DONE;
                    }

                    if (rc == NGX_ERROR) {
                        /* a hook that cannot decide: fail closed */
                        return ngx_ailink_policy_fail(r, p, rule,
                                           NGX_HTTP_SERVICE_UNAVAILABLE);
                    }

                    result = (rc == NGX_DECLINED)
                             ? (p->shadow ? "would_deny" : "denied")
                             : (p->shadow ? "would_apply" : "applied");
                    break;
                }

                if (ngx_ailink_policy_decide(r, pctx, p, rule, a, result)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }

                if (!p->shadow && ngx_strcmp(result, "denied") == 0) {
                    /* the first deny wins */
                    d = pctx->decisions.elts;
                    return ngx_ailink_policy_refuse(r, pctx,
                                         &d[pctx->decisions.nelts - 1], 0);
                }
            }

            if (allow) {
                break;
            }
        }
    }

    if (npending == 0) {
        return NGX_OK;
    }

    ngx_memzero(&lim, sizeof(ngx_ailink_policy_limits_t));
    lim.pend = pend;
    lim.npending = npending;
    lim.now = ngx_time();

    rc = ngx_ailink_policy_run_limits(r, ctx, pctx, &lim);

    if (rc == NGX_AGAIN) {
        /* the store answers later: what the loop knows moves to the pool */
        plim = ngx_palloc(r->pool, sizeof(ngx_ailink_policy_limits_t));
        if (plim == NULL) {
            return NGX_ERROR;
        }

        *plim = lim;

        if (pend == pending) {
            plim->pend = ngx_palloc(r->pool, sizeof(pending));
            if (plim->pend == NULL) {
                return NGX_ERROR;
            }

            ngx_memcpy(plim->pend, pending, sizeof(pending));
        }

        pctx->limits = plim;
    }

    return rc;
}


/*
 * spend caps, then rate limits, from where lim says: NGX_AGAIN when an
 * asynchronous store answers later (ngx_ailink_policy_limits_reply)
 */

static ngx_int_t
ngx_ailink_policy_run_limits(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_ailink_policy_ctx_t *pctx, ngx_ailink_policy_limits_t *lim)
{
    double                         spent;
    ngx_int_t                      rc;
    ngx_flag_t                     fail_open;
    const char                    *result;
    ngx_ailink_state_t            *st;
    ngx_ailink_policy_t           *p;
    ngx_ailink_policy_action_t    *a;
    ngx_ailink_policy_conf_t      *pcf;
    ngx_ailink_policy_decision_t  *d;
    ngx_ailink_policy_pending_t   *pend;

    pcf = ngx_http_get_module_main_conf(r, ngx_ailink_policy_module);
    st = pcf->counters ? pcf->counters : pcf->state;
    pend = lim->pend;

    /* spend caps before rate limits: a refused request spends no limit */
    for ( /* void */ ; lim->k < 2; lim->k++, lim->i = 0) {
        for ( /* void */ ; lim->i < lim->npending; lim->i++) {
            p = pend[lim->i].policy;
            a = pend[lim->i].action;

            if ((lim->k == 0) != (a->type == NGX_AILINK_PA_SPEND_CAP)) {
                continue;
            }

            spent = 0;

            if (lim->k == 0) {
                rc = ngx_ailink_policy_spend_cap(r, ctx, st, a, lim, &spent);
                if (rc == NGX_AGAIN) {
                    return NGX_AGAIN;
                }

                result = (rc == NGX_BUSY) ? (p->shadow ? "would_exceed"
                                                       : "exceeded")
                         : (rc == NGX_OK) ? "within" : "error";
                fail_open = pcf->spend_fail_open;

            } else {
                rc = ngx_ailink_policy_rate_limit(r, ctx, pctx, st, p, a,
                                                  lim, &result);
                if (rc == NGX_AGAIN) {
                    return NGX_AGAIN;
                }

                if (rc == NGX_BUSY && p->shadow) {
                    result = "would_limit";
                }

                fail_open = pcf->rl_fail_open;
            }

            if (rc == NGX_ERROR && fail_open) {
                /* configured so: an unreachable store lets requests on */
                rc = NGX_OK;
                result = "unavailable";
            }

            if (ngx_ailink_policy_decide(r, pctx, p, pend[lim->i].rule, a,
                                         result)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            if (p->shadow) {
                continue;
            }

            if (rc == NGX_ERROR) {
                return ngx_ailink_policy_fail(r, p, pend[lim->i].rule,
                                              NGX_HTTP_SERVICE_UNAVAILABLE);
            }

            if (rc == NGX_BUSY) {
                d = pctx->decisions.elts;
                return ngx_ailink_policy_refuse(r, pctx,
                                         &d[pctx->decisions.nelts - 1],
                                         spent);
            }
        }
    }

    return NGX_OK;
}


/* the asynchronous store's answer: the phases run again, once */

void
ngx_ailink_policy_limits_reply(void *data, ngx_int_t rc, int64_t value)
{
    ngx_http_request_t *r = data;

    ngx_connection_t            *c;
    ngx_ailink_ctx_t            *ctx;
    ngx_ailink_policy_limits_t  *lim;

    ctx = ngx_ailink_get_ctx(r);
    lim = ((ngx_ailink_policy_ctx_t *) ctx->policy)->limits;
    c = r->connection;

    if (lim == NULL || !lim->waiting) {
        return;
    }

    lim->waiting = 0;
    lim->replied = 1;
    lim->rc = rc;
    lim->value = value;

    r->main->count--;

    if (c->error) {
        ngx_http_finalize_request(r, NGX_HTTP_CLIENT_CLOSED_REQUEST);
        ngx_http_run_posted_requests(c);
        return;
    }

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_ailink_policy_limits_wait(ngx_http_request_t *r,
    ngx_ailink_policy_ctx_t *pctx)
{
    pctx->limits->waiting = 1;
    r->main->count++;
    r->write_event_handler = ngx_http_request_empty_handler;

    return NGX_DONE;
}


/* post-phase policies: allow, log and tag with the response known */

static void
ngx_ailink_policy_run_post(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_ailink_policy_ctx_t *pctx)
{
    ngx_int_t                    rc;
    ngx_uint_t                   i, j, k, allow;
    const char                  *result;
    ngx_ailink_policy_t         *p;
    ngx_ailink_policy_set_t     *set;
    ngx_ailink_policy_rule_t    *rule;
    ngx_ailink_policy_action_t  *a;

    set = pctx->set;

    for (i = 0; i < set->npost; i++) {
        p = set->post[i];
        pctx->tz = p->tz;

        for (j = 0; j < p->nrules; j++) {
            rule = &p->rules[j];

            rc = ngx_ailink_policy_eval(r, ctx, pctx, rule->when);

            if (rc != 1) {
                continue;
            }

            allow = 0;

            for (k = 0; k < rule->nactions; k++) {
                a = &rule->actions[k];

                switch (a->type) {

                case NGX_AILINK_PA_LOG:
                    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                                  "ailink policy \"%V\" rule \"%V\"%s: %V",
                                  &p->name, &rule->name,
                                  p->shadow ? " (shadow)" : "", &a->text);
                    result = "logged";
                    break;

                case NGX_AILINK_PA_TAG:
                    result = "tagged";
                    break;

                default:
                    allow = 1;
                    result = p->shadow ? "would_allow" : "allowed";
                    break;
                }

                (void) ngx_ailink_policy_decide(r, pctx, p, rule, a, result);
            }

            if (allow) {
                break;
            }
        }
    }
}


/*
 * ,"policies":[{"policy","rule","action","mode","result"},...],"tags":[...]
 * in one buffer, as the audit record takes it; decisions and tags are the
 * two arrays in it.  A decision's text but for its result was written
 * when the file was read (ngx_ailink_policy_audit_texts()).
 */

/* the longest result a decision has ("would_exceed", "unavailable", ...) */
#define NGX_AILINK_POLICY_RESULT_MAX  16

static ngx_int_t
ngx_ailink_policy_render(ngx_http_request_t *r, ngx_ailink_policy_ctx_t *pctx,
    ngx_str_t *audit, ngx_str_t *decisions, ngx_str_t *tags)
{
    u_char                        *p;
    size_t                         len;
    ngx_str_t                     *tag;
    ngx_uint_t                     i, j, ntags;
    ngx_ailink_policy_action_t    *a;
    ngx_ailink_policy_decision_t  *d;

    d = pctx->decisions.elts;
    len = sizeof(",\"policies\":[],\"tags\":[]") - 1;
    ntags = 0;

    for (i = 0; i < pctx->decisions.nelts; i++) {
        a = d[i].action;
        len += 1 + a->audit.len + NGX_AILINK_POLICY_RESULT_MAX
               + a->audit_tail.len;

        if (a->type == NGX_AILINK_PA_TAG && !d[i].policy->shadow) {
            tag = a->tags->elts;

            for (j = 0; j < a->tags->nelts; j++) {
                len += ngx_ailink_json_escape_len(&tag[j]) + 3;
                ntags++;
            }
        }
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    audit->data = p;
    p = ngx_cpymem(p, ",\"policies\":", sizeof(",\"policies\":") - 1);
    decisions->data = p;
    *p++ = '[';

    for (i = 0; i < pctx->decisions.nelts; i++) {
        if (i) {
            *p++ = ',';
        }

        a = d[i].action;
        p = ngx_cpymem(p, a->audit.data, a->audit.len);

        /* the room counted for it: every result is shorter */
        len = ngx_strlen(d[i].result);
        p = ngx_cpymem(p, d[i].result,
                       ngx_min(len, NGX_AILINK_POLICY_RESULT_MAX));

        if (a->audit_tail.len == 2) {
            *p++ = '"';
            *p++ = '}';

        } else {
            p = ngx_cpymem(p, a->audit_tail.data, a->audit_tail.len);
        }
    }

    *p++ = ']';
    decisions->len = p - decisions->data;

    p = ngx_cpymem(p, ",\"tags\":", sizeof(",\"tags\":") - 1);
    tags->data = p;
    *p++ = '[';

    if (ntags) {
        ntags = 0;

        for (i = 0; i < pctx->decisions.nelts; i++) {
            a = d[i].action;

            if (a->type != NGX_AILINK_PA_TAG || d[i].policy->shadow) {
                continue;
            }

            tag = a->tags->elts;

            for (j = 0; j < a->tags->nelts; j++) {
                if (ntags++) {
                    *p++ = ',';
                }

                *p++ = '"';
                p = ngx_ailink_json_escape(p, &tag[j]);
                *p++ = '"';
            }
        }
    }

    *p++ = ']';
    tags->len = p - tags->data;
    audit->len = p - audit->data;

    return NGX_OK;
}


static void
ngx_ailink_policy_log_hook(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx)
{
    ngx_str_t                 decisions, tags;
    ngx_ailink_policy_ctx_t  *pctx;

    if (ctx->token == NULL || ctx->token->policies == NULL) {
        return;
    }

    pctx = ctx->policy;

    if (pctx == NULL) {
        pctx = ngx_ailink_policy_create_ctx(r, ctx);
        if (pctx == NULL) {
            return;
        }
    }

    if (pctx->logged) {
        return;
    }

    pctx->logged = 1;

    ngx_ailink_policy_count_usage(r, ctx, pctx,
                                  ngx_ailink_policy_state(r));

    if (pctx->set->npost) {
        ngx_ailink_policy_run_post(r, ctx, pctx);
    }

    (void) ngx_ailink_policy_render(r, pctx, &ctx->policy_audit, &decisions,
                                    &tags);
}


/* runs after the audit handler: for locations that write no record */

static ngx_int_t
ngx_ailink_policy_log_handler(ngx_http_request_t *r)
{
    ngx_ailink_ctx_t  *ctx;

    if (r != r->main) {
        return NGX_OK;
    }

    ctx = ngx_ailink_get_ctx(r);

    if (ctx) {
        ngx_ailink_policy_log_hook(r, ctx);
    }

    return NGX_OK;
}


/*
 * x-ratelimit-{limit,remaining,reset}-{requests,tokens} of the enforced
 * limits closest to their end, and Retry-After on a refusal
 */

static ngx_int_t
ngx_ailink_policy_rl_headers(ngx_http_request_t *r,
    ngx_ailink_policy_ctx_t *pctx)
{
    u_char           *p, *e;
    int64_t           v;
    uint64_t          n, q;
    ngx_uint_t        kind, i;
    ngx_table_elt_t  *h;

    static ngx_str_t  names[2][3] = {
        { ngx_string("x-ratelimit-limit-requests"),
          ngx_string("x-ratelimit-remaining-requests"),
          ngx_string("x-ratelimit-reset-requests") },
        { ngx_string("x-ratelimit-limit-tokens"),
          ngx_string("x-ratelimit-remaining-tokens"),
          ngx_string("x-ratelimit-reset-tokens") }
    };

    /* the remaining counts, the resets and Retry-After */
    p = pctx->rl_text;

    for (kind = 0; kind < 2; kind++) {
        if (!(pctx->rl_set & (1 << kind))) {
            continue;
        }

        for (i = 0; i < 3; i++) {
            h = ngx_list_push(&r->headers_out.headers);
            if (h == NULL) {
                return NGX_ERROR;
            }

            h->hash = 1;
            h->key = names[kind][i];

            if (i == 0) {
                h->value = *pctx->rl_limit[kind];
                continue;
            }

            /* backwards from the end of its room: nothing to move */
            p += NGX_INT64_LEN + 1;
            e = p;

            if (i == 2) {
                *--e = 's';
            }

            /* neither is below 0: remaining counts stop there, resets
             * are in the window's future */
            v = (i == 1) ? pctx->rl_remaining[kind]
                         : (int64_t) pctx->rl_reset[kind];
            n = (v > 0) ? (uint64_t) v : 0;

            while (n >= 100) {
                q = n / 100;
                e -= 2;
                ngx_memcpy(e, &ngx_ailink_digits2[(n - q * 100) * 2], 2);
                n = q;
            }

            if (n >= 10) {
                e -= 2;
                ngx_memcpy(e, &ngx_ailink_digits2[n * 2], 2);

            } else {
                *--e = (u_char) ('0' + n);
            }

            h->value.data = e;
            h->value.len = p - e;
        }
    }

    if (r->headers_out.status == NGX_HTTP_TOO_MANY_REQUESTS
        && pctx->retry_after)
    {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Retry-After");
        h->value.data = p;
        h->value.len = ngx_ailink_write_int(p, pctx->retry_after) - p;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_policy_header_filter(ngx_http_request_t *r)
{
    ngx_ailink_ctx_t         *ctx;
    ngx_ailink_policy_ctx_t  *pctx;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_ailink_get_ctx(r);
    pctx = ctx ? ctx->policy : NULL;

    if (pctx == NULL || (pctx->rl_set == 0 && pctx->retry_after == 0)) {
        return ngx_http_next_header_filter(r);
    }

    if (ngx_ailink_policy_rl_headers(r, pctx) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_ailink_policy_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                        *p;
    ngx_str_t                      audit, decisions, tags;
    ngx_ailink_ctx_t              *ctx;
    ngx_ailink_policy_ctx_t       *pctx;
    ngx_ailink_policy_decision_t  *d;

    ctx = ngx_ailink_get_ctx(r);
    pctx = ctx ? ctx->policy : NULL;

    if (pctx == NULL || pctx->decisions.nelts == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    d = pctx->final;

    switch (data) {

    case NGX_AILINK_POLICY_VAR_DECISION:
        p = (u_char *) (d == NULL ? "allowed"
                        : d->action->type == NGX_AILINK_PA_RATE_LIMIT
                          ? "rate_limited"
                          : d->action->type == NGX_AILINK_PA_SPEND_CAP
                            ? "budget_exceeded" : "denied");
        v->data = p;
        v->len = ngx_strlen(p);
        return NGX_OK;

    case NGX_AILINK_POLICY_VAR_NAME:
        if (d == NULL) {
            v->not_found = 1;
            return NGX_OK;
        }

        v->data = d->policy->name.data;
        v->len = d->policy->name.len;
        return NGX_OK;

    default:
        if (ngx_ailink_policy_render(r, pctx, &audit, &decisions, &tags)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (data == NGX_AILINK_POLICY_VAR_DECISIONS) {
            v->data = decisions.data;
            v->len = decisions.len;

        } else {
            v->data = tags.data;
            v->len = tags.len;
        }

        return NGX_OK;
    }
}


static void
ngx_ailink_policy_save_handler(ngx_event_t *ev)
{
    ngx_ailink_policy_conf_t  *pcf;

    pcf = ev->data;

    (void) ngx_ailink_state_shm_save(pcf->state, ev->log);

    if (!ngx_exiting && !ngx_quit && !ngx_terminate) {
        ngx_add_timer(ev, pcf->save_interval);
    }
}


static ngx_int_t
ngx_ailink_policy_init_process(ngx_cycle_t *cycle)
{
    ngx_ailink_policy_conf_t  *pcf;

    pcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_ailink_policy_module);

    if (pcf == NULL || pcf->state == NULL || pcf->data_dir.len == 0) {
        return NGX_OK;
    }

    /* one worker writes spend while running; every one as it exits */
    if (ngx_process == NGX_PROCESS_WORKER && ngx_worker != 0) {
        return NGX_OK;
    }

    ngx_ailink_policy_save_event.handler = ngx_ailink_policy_save_handler;
    ngx_ailink_policy_save_event.data = pcf;
    ngx_ailink_policy_save_event.log = cycle->log;
    ngx_ailink_policy_save_event.cancelable = 1;

    ngx_add_timer(&ngx_ailink_policy_save_event, pcf->save_interval);

    return NGX_OK;
}


static void
ngx_ailink_policy_exit_process(ngx_cycle_t *cycle)
{
    ngx_ailink_policy_conf_t  *pcf;

    pcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_ailink_policy_module);

    if (pcf && pcf->state && pcf->data_dir.len) {
        (void) ngx_ailink_state_shm_save(pcf->state, cycle->log);
    }

    ngx_ailink_policy_eval_exit();
    ngx_ailink_policy_memo_exit();
}


static void *
ngx_ailink_policy_create_main_conf(ngx_conf_t *cf)
{
    ngx_ailink_policy_conf_t  *pcf;

    pcf = ngx_pcalloc(cf->pool, sizeof(ngx_ailink_policy_conf_t));
    if (pcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     pcf->policies = { 0 };
     *     pcf->state = NULL;
     *     pcf->data_dir = { 0, NULL };
     */

    pcf->save_interval = 1000;

    return pcf;
}


/* with backend=redis: approvals and idempotency keys, as counters are */
static ngx_str_t  ngx_ailink_policy_redis_records[] = {
    ngx_string("apr:"),
    ngx_string("idem:"),
    ngx_null_string
};


/* ailink_state_zone ... [backend=shm|redis] [rate_limits=fail_open|
 * fail_closed] [spend_caps=fail_open|fail_closed] */

static char *
ngx_ailink_policy_state_backend(ngx_conf_t *cf, ngx_ailink_policy_conf_t *pcf)
{
    ngx_str_t   *value, v;
    ngx_uint_t   i, redis;
    ngx_flag_t  *flag;

    value = cf->args->elts;
    redis = 0;

    for (i = 3; i < cf->args->nelts; i++) {

        if (ngx_strcmp(value[i].data, "backend=redis") == 0) {
            redis = 1;
            continue;
        }

        if (ngx_strcmp(value[i].data, "backend=shm") == 0) {
            redis = 0;
            continue;
        }

        if (ngx_strncmp(value[i].data, "rate_limits=", 12) == 0) {
            flag = &pcf->rl_fail_open;
            v.data = value[i].data + 12;

        } else if (ngx_strncmp(value[i].data, "spend_caps=", 11) == 0) {
            flag = &pcf->spend_fail_open;
            v.data = value[i].data + 11;

        } else {
            goto invalid;
        }

        if (ngx_strcmp(v.data, "fail_open") == 0) {
            *flag = 1;

        } else if (ngx_strcmp(v.data, "fail_closed") == 0) {
            *flag = 0;

        } else {
            goto invalid;
        }
    }

    if (redis) {
        pcf->counters = ngx_ailink_state_redis_create(cf, pcf->state,
                                                ngx_ailink_policy_redis_records);
        if (pcf->counters == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "ailink_state_zone: invalid parameter \"%V\"",
                       &value[i]);
    return NGX_CONF_ERROR;
}


static char *
ngx_ailink_policy_state_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_ailink_policy_conf_t *pcf = conf;

    ssize_t     size;
    ngx_str_t  *value;

    if (pcf->state) {
        return "is duplicate";
    }

    value = cf->args->elts;

    size = ngx_parse_size(&value[2]);

    if (size == NGX_ERROR || size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ailink_state_zone \"%V\": size \"%V\" is too "
                           "small (%uz at least)", &value[1], &value[2],
                           8 * ngx_pagesize);
        return NGX_CONF_ERROR;
    }

    pcf->state = ngx_ailink_state_shm_add(cf, &value[1], size,
                                          &ngx_ailink_policy_module);
    if (pcf->state == NULL) {
        return NGX_CONF_ERROR;
    }

    return ngx_ailink_policy_state_backend(cf, pcf);
}


static ngx_int_t
ngx_ailink_policy_preconfiguration(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_ailink_policy_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_policy_postconfiguration(ngx_conf_t *cf)
{
    u_char                     *p;
    ngx_str_t                   path;
    ngx_file_info_t             fi;
    ngx_http_handler_pt        *h;
    ngx_ailink_policy_conf_t   *pcf;
    ngx_http_core_main_conf_t  *cmcf;

    pcf = ngx_http_conf_get_module_main_conf(cf, ngx_ailink_policy_module);

    if (pcf->needs_state && pcf->state == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ailink_config \"%V\": rate limits and spend caps "
                           "need \"ailink_state_zone\"", &pcf->file);
        return NGX_ERROR;
    }

    if (pcf->data_dir.len) {
        if (pcf->state == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"ailink_data_dir\" needs "
                               "\"ailink_state_zone\"");
            return NGX_ERROR;
        }

        if (ngx_conf_full_name(cf->cycle, &pcf->data_dir, 1) != NGX_OK) {
            return NGX_ERROR;
        }

        if (ngx_file_info(pcf->data_dir.data, &fi) == NGX_FILE_ERROR
            || !ngx_is_dir(&fi))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                               "ailink_data_dir \"%V\" is not a directory",
                               &pcf->data_dir);
            return NGX_ERROR;
        }

        path.len = pcf->data_dir.len + sizeof("/spend.state") - 1;
        p = ngx_pnalloc(cf->pool, path.len + 1);
        if (p == NULL) {
            return NGX_ERROR;
        }

        path.data = p;
        ngx_sprintf(p, "%V/spend.state%Z", &pcf->data_dir);

        ngx_ailink_state_shm_persist(pcf->state, &path);
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    /*
     * Handlers of a phase run in the reverse order of their modules: this
     * module comes before translate in "config", so its handler runs
     * after routing; its log handler runs after the audit's, which calls
     * the hook first.
     */

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_ailink_policy_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_ailink_policy_log_handler;

    ngx_ailink_log_hook = ngx_ailink_policy_log_hook;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_ailink_policy_header_filter;

    return NGX_OK;
}
