
/*
 * Copyright (C) AILink
 *
 * Policies that require guardrails (the actions redact and
 * block_content).  Guardrails must run on the OpenAI-format body, before
 * it is routed and translated, while policies run after routing: so the
 * guard asks here, first, which guardrails the token's enforced policies
 * require of this request (their rules evaluated as the policy phase will
 * evaluate them, the body being the client's), and the policy phase's
 * hook then only checks that they ran (ngx_ailink_guard_module.c).
 * Shadow policies' guardrails are reported apart (*shadow): they run
 * and are audited, but redact and block nothing.
 */


#include "ngx_ailink_policy.h"


ngx_int_t
ngx_ailink_policy_guardrails(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_str_t *body, ngx_uint_t *mask, ngx_uint_t *shadow)
{
    ngx_int_t                  rc;
    ngx_uint_t                 i, j, k, allow;
    ngx_ailink_policy_t       *p;
    ngx_ailink_policy_ctx_t    pctx;
    ngx_ailink_policy_set_t   *set;
    ngx_ailink_policy_rule_t  *rule;

    if (ctx->token == NULL || ctx->token->policies == NULL) {
        return NGX_OK;
    }

    set = ctx->token->policies;

    if (!set->guardrails) {
        return NGX_OK;
    }

    ngx_memzero(&pctx, sizeof(ngx_ailink_policy_ctx_t));
    pctx.set = set;
    pctx.body = *body;
    pctx.body_ready = 1;

    for (i = 0; i < set->npre; i++) {
        p = set->pre[i];

        if (!p->guardrails) {
            continue;
        }

        pctx.tz = p->tz;

        for (j = 0; j < p->nrules; j++) {
            rule = &p->rules[j];

            rc = ngx_ailink_policy_eval(r, ctx, &pctx, rule->when);

            if (rc == NGX_ERROR) {
                return NGX_ERROR;
            }

            if (rc == 0) {
                continue;
            }

            allow = 0;

            for (k = 0; k < rule->nactions; k++) {
                if (rule->actions[k].type == NGX_AILINK_PA_REDACT
                    || rule->actions[k].type == NGX_AILINK_PA_BLOCK_CONTENT)
                {
                    /* a shadow policy's run, audited, changing nothing */
                    *(p->shadow ? shadow : mask) |=
                                                 rule->actions[k].guardrails;
                }

                allow |= (rule->actions[k].type == NGX_AILINK_PA_ALLOW);
            }

            if (allow) {
                break;
            }
        }
    }

    return NGX_OK;
}
