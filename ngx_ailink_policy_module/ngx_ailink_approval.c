
/*
 * Copyright (C) AILink
 *
 * The require_approval action of the policy engine.  A request a rule
 * holds is not forwarded: an approval record is created, bound to the
 * token and to a SHA-256 digest of the method, path and body, and the
 * agent gets 202 pending_approval (or, with X-AILink-Approval-Wait, the
 * connection is held until a decision: ngx_ailink_approval_wait.c).  The
 * agent reads GET /v1/approvals/<id>, and once approved repeats the
 * request with X-AILink-Approval-Id: the repeat runs once, through a
 * compare-and-set of the record from approved to claimed.  Anything that
 * cannot be checked fails closed.
 */


#include "ngx_ailink_approval.h"

#include <openssl/sha.h>
#include <openssl/rand.h>


static ngx_int_t ngx_ailink_approval_hook(ngx_http_request_t *r,
    ngx_ailink_policy_t *policy, ngx_ailink_policy_rule_t *rule,
    ngx_ailink_policy_action_t *a);
static ngx_int_t ngx_ailink_approval_get_handler(ngx_http_request_t *r);
static ngx_int_t ngx_ailink_approval_headers(ngx_http_request_t *r);
static void *ngx_ailink_approval_create_main_conf(ngx_conf_t *cf);
static void *ngx_ailink_approval_create_loc_conf(ngx_conf_t *cf);
static char *ngx_ailink_approval_init_main_conf(ngx_conf_t *cf, void *conf);
static ngx_int_t ngx_ailink_approval_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_ailink_approval_init_process(ngx_cycle_t *cycle);
static void ngx_ailink_approval_log_hook(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx);


/* the policy module's: called first, then ours adds to the record */
static ngx_ailink_log_hook_pt  ngx_ailink_approval_next_log_hook;


static ngx_command_t  ngx_ailink_approval_commands[] = {

    { ngx_string("ailink_approvals_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_ailink_conf_set_handler,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      ngx_ailink_approval_api_handler },

    { ngx_string("ailink_approvals_page"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_ailink_approval_page,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ailink_approval_webhook"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_ailink_approval_conf_t, webhook),
      NULL },

    { ngx_string("ailink_approval_max_wait"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_ailink_approval_conf_t, max_wait),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_ailink_approval_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_ailink_approval_postconfiguration, /* postconfiguration */

    ngx_ailink_approval_create_main_conf,  /* create main configuration */
    ngx_ailink_approval_init_main_conf,    /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_ailink_approval_create_loc_conf,   /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_ailink_approval_module = {
    NGX_MODULE_V1,
    &ngx_ailink_approval_module_ctx,       /* module context */
    ngx_ailink_approval_commands,          /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_ailink_approval_init_process,      /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


ngx_ailink_approval_ctx_t *
ngx_ailink_approval_get_ctx(ngx_http_request_t *r)
{
    ngx_ailink_approval_ctx_t  *actx;

    actx = ngx_http_get_module_ctx(r, ngx_ailink_approval_module);

    if (actx == NULL) {
        actx = ngx_pcalloc(r->pool, sizeof(ngx_ailink_approval_ctx_t));
        if (actx == NULL) {
            return NULL;
        }

        if (ngx_ailink_replay_init(&actx->replay, r,
                                   ngx_ailink_approval_resume)
            != NGX_OK)
        {
            return NULL;
        }

        ngx_http_set_ctx(r, actx, ngx_ailink_approval_module);
    }

    return actx;
}


static void
ngx_ailink_approval_rerun(ngx_http_request_t *r)
{
    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


/*
 * the store answered one of the hook's operations: the policies run
 * again from the start, and the hook finds its answers kept
 */

void
ngx_ailink_approval_resume(ngx_http_request_t *r)
{
    ngx_ailink_ctx_t         *ctx;
    ngx_ailink_policy_ctx_t  *pctx;

    ctx = ngx_ailink_get_ctx(r);
    pctx = ctx->policy;
    pctx->decided = 0;
    pctx->decisions.nelts = 0;

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


/* hex SHA-256 of token id, method, path with its query and body,
 * NUL-separated */

static ngx_int_t
ngx_ailink_approval_digest(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_str_t *body, ngx_str_t *digest)
{
    u_char      md[SHA256_DIGEST_LENGTH];
    SHA256_CTX  sha;

    digest->data = ngx_pnalloc(r->pool, 2 * SHA256_DIGEST_LENGTH);
    if (digest->data == NULL) {
        return NGX_ERROR;
    }

    SHA256_Init(&sha);
    SHA256_Update(&sha, ctx->token->id.data, ctx->token->id.len);
    SHA256_Update(&sha, "", 1);
    SHA256_Update(&sha, ctx->method.data, ctx->method.len);
    SHA256_Update(&sha, "", 1);
    SHA256_Update(&sha, r->unparsed_uri.data, r->unparsed_uri.len);
    SHA256_Update(&sha, "", 1);

    if (body->len) {
        SHA256_Update(&sha, body->data, body->len);
    }

    SHA256_Final(md, &sha);

    digest->len = ngx_hex_dump(digest->data, md, sizeof(md)) - digest->data;

    return NGX_OK;
}


/*
 * The body as an approver sees it: cut, and with long runs of digits
 * (card and account numbers) and the values of keys that name secrets
 * masked
 */

static void
ngx_ailink_approval_preview(ngx_pool_t *pool, ngx_str_t *body,
    ngx_str_t *out)
{
    u_char      *p, *last, *q;
    size_t       len;
    ngx_uint_t   digits, mask;

    len = ngx_min(body->len, NGX_AILINK_APPROVAL_PREVIEW);

    out->data = ngx_pnalloc(pool, len + sizeof("...") - 1);
    if (out->data == NULL) {
        out->len = 0;
        return;
    }

    ngx_memcpy(out->data, body->data, len);

    p = out->data;
    last = out->data + len;
    digits = 0;

    /* digits runs of 6 or more */
    for (q = p; q <= last; q++) {
        if (q < last && *q >= '0' && *q <= '9') {
            digits++;
            continue;
        }

        if (digits >= 6) {
            ngx_memset(q - digits, '*', digits);
        }

        digits = 0;
    }

    /* "password", "secret", "token", "api_key" values */
    mask = 0;

    for (q = p; q < last; q++) {
        if (*q == '"' && q + 1 < last) {
            if (mask == 2) {
                /* the end of the masked value */
                mask = 0;
                continue;
            }

            if (mask == 1 && q > p && q[-1] != ':' && q[-1] != ' ') {
                continue;
            }

            if (mask == 1) {
                mask = 2;
                continue;
            }

            if (ngx_strlcasestrn(q + 1, last, (u_char *) "password", 7)
                   == q + 1
                || ngx_strlcasestrn(q + 1, last, (u_char *) "secret", 5)
                   == q + 1
                || ngx_strlcasestrn(q + 1, last, (u_char *) "token", 4)
                   == q + 1
                || ngx_strlcasestrn(q + 1, last, (u_char *) "api_key", 6)
                   == q + 1)
            {
                q = ngx_strlchr(q + 1, last, '"');
                if (q == NULL) {
                    break;
                }

                mask = 1;
            }

            continue;
        }

        if (mask == 2) {
            *q = '*';
        }
    }

    if (body->len > len) {
        last = ngx_cpymem(last, "...", 3);
    }

    out->len = last - out->data;
}


static ngx_int_t
ngx_ailink_approval_random_id(ngx_str_t *id, ngx_pool_t *pool)
{
    u_char  rnd[12];

    id->data = ngx_pnalloc(pool, NGX_AILINK_APPROVAL_ID_LEN);
    if (id->data == NULL) {
        return NGX_ERROR;
    }

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        return NGX_ERROR;
    }

    ngx_memcpy(id->data, "apr_", 4);
    id->len = ngx_hex_dump(id->data + 4, rnd, sizeof(rnd)) - id->data;

    return NGX_OK;
}


/* 202 {"status":"pending_approval",...} */

static ngx_int_t
ngx_ailink_approval_pending(ngx_http_request_t *r, ngx_ailink_approval_t *apr)
{
    u_char     *p;
    ngx_str_t   json;

    json.data = ngx_pnalloc(r->pool, 256
                            + ngx_ailink_json_escape_len(&apr->id)
                            + ngx_ailink_json_escape_len(&apr->policy)
                            + ngx_ailink_json_escape_len(&apr->reason));
    if (json.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(json.data, "{\"status\":\"pending_approval\"",
                   sizeof("{\"status\":\"pending_approval\"") - 1);
    p = ngx_ailink_approval_member(p, "request_id", &apr->id);
    p = ngx_ailink_approval_member(p, "policy_name", &apr->policy);
    p = ngx_ailink_approval_member(p, "reason", &apr->reason);
    p = ngx_cpymem(p, ",\"expires_at\":\"", sizeof(",\"expires_at\":\"") - 1);
    p = ngx_ailink_approval_time(p, apr->expires_at);
    p = ngx_cpymem(p, "\"}", 2);

    json.len = p - json.data;

    return ngx_ailink_send_json(r, NGX_HTTP_ACCEPTED, &json);
}


/* 403 approval_rejected or approval_invalid, 408 approval_timeout */

void
ngx_ailink_approval_refuse(ngx_http_request_t *r, ngx_ailink_approval_t *apr,
    ngx_uint_t why)
{
    u_char                     *p;
    ngx_str_t                   extra, reason;
    ngx_uint_t                  status;
    const char                 *code, *msg;
    ngx_ailink_approval_ctx_t  *actx;

    ngx_str_null(&reason);
    status = NGX_HTTP_FORBIDDEN;
    code = "approval_invalid";

    switch (why) {

    case NGX_AILINK_APPROVAL_REJECTED:
        code = "approval_rejected";
        msg = "the approval was rejected";
        reason = apr->decision_reason;
        break;

    case NGX_AILINK_APPROVAL_EXPIRED:
        msg = "the approval has expired";
        break;

    case NGX_AILINK_APPROVAL_PENDING:
        msg = "the approval is still pending";
        break;

    case NGX_AILINK_APPROVAL_CLAIMED:
        msg = "the approval was already used";
        break;

    case NGX_HTTP_REQUEST_TIME_OUT:
        status = NGX_HTTP_REQUEST_TIME_OUT;
        code = "approval_timeout";
        msg = "no decision on the approval in time";
        break;

    default:
        msg = "no approval for this request (unknown id, another token, "
              "or another method, path or body)";
        break;
    }

    extra.data = ngx_pnalloc(r->pool, 128 + NGX_INT64_LEN
                             + (apr ? ngx_ailink_json_escape_len(&apr->id)
                                    : 0)
                             + ngx_ailink_json_escape_len(&reason));
    if (extra.data == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = extra.data;

    if (apr) {
        p = ngx_ailink_approval_member(p, "approval_id", &apr->id);
    }

    if (why == NGX_AILINK_APPROVAL_REJECTED) {
        p = ngx_ailink_approval_member(p, "reason", &reason);
    }

    if (status == NGX_HTTP_REQUEST_TIME_OUT) {
        actx = ngx_http_get_module_ctx(r, ngx_ailink_approval_module);
        p = ngx_sprintf(p, ",\"timeout\":%T", actx ? actx->wait : 0);
    }

    extra.len = p - extra.data;

    ngx_ailink_finalize_error_extra(r, status, code, (char *) msg, NULL,
                                    &extra);
}


/*
 * NGX_OK when this request may run on the approval; NGX_DECLINED with the
 * state that refuses it in *why; NGX_AGAIN (the store answers later),
 * NGX_ERROR
 */

ngx_int_t
ngx_ailink_approval_claim(ngx_http_request_t *r, ngx_ailink_state_t *st,
    ngx_ailink_approval_ctx_t *actx, ngx_ailink_approval_t *apr,
    ngx_uint_t *why)
{
    ngx_int_t   rc;
    ngx_str_t   old;

    *why = ngx_ailink_approval_status(apr, ngx_time());

    if (*why != NGX_AILINK_APPROVAL_APPROVED) {
        return NGX_DECLINED;
    }

    old = apr->raw;
    apr->status = NGX_AILINK_APPROVAL_CLAIMED;

    rc = ngx_ailink_approval_store(&actx->replay, st, apr, &old);

    if (rc == NGX_AGAIN) {
        return NGX_AGAIN;
    }

    if (rc == NGX_OK) {
        actx->claimed = 1;
        actx->id = apr->id;
        actx->decision = "claimed";

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "ailink approval %V %s", &apr->id,
                      actx->held ? "approved: the held request goes on"
                                 : "claimed");

        ngx_ailink_approval_notify(st);
        return NGX_OK;
    }

    if (rc == NGX_BUSY || rc == NGX_DECLINED) {
        /* another claim won the race */
        *why = NGX_AILINK_APPROVAL_CLAIMED;
        return NGX_DECLINED;
    }

    return NGX_ERROR;
}


static ngx_int_t
ngx_ailink_approval_hook(ngx_http_request_t *r, ngx_ailink_policy_t *policy,
    ngx_ailink_policy_rule_t *rule, ngx_ailink_policy_action_t *a)
{
    time_t                       now, wait;
    ngx_int_t                    rc;
    ngx_str_t                    body, digest, id;
    ngx_uint_t                   why;
    ngx_ailink_ctx_t            *ctx;
    ngx_ailink_state_t          *st;
    ngx_ailink_approval_t        apr;
    ngx_ailink_policy_ctx_t     *pctx;
    ngx_ailink_approval_ctx_t   *actx;
    ngx_ailink_approval_conf_t  *acf;

    if (policy->shadow) {
        /* recorded as what would have applied; nothing is held */
        return NGX_OK;
    }

    ctx = ngx_ailink_get_ctx(r);
    pctx = ctx->policy;
    st = ngx_ailink_policy_state(r);

    if (st == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "ailink approval: no \"ailink_state_zone\" to keep "
                      "approvals in: the request is refused");
        return NGX_DECLINED;
    }

    actx = ngx_ailink_approval_get_ctx(r);
    if (actx == NULL) {
        return NGX_ERROR;
    }

    if (actx->claimed) {
        /* this request runs on its approval (any rule that holds it) */
        return NGX_OK;
    }

    body = pctx->body_ready ? pctx->body : ctx->body;

    if (ngx_ailink_approval_digest(r, ctx, &body, &digest) != NGX_OK) {
        return NGX_ERROR;
    }

    if (actx->claim_id.len) {
        id = actx->claim_id;

        rc = (id.len == NGX_AILINK_APPROVAL_ID_LEN)
             ? ngx_ailink_approval_load(&actx->replay, st, &id, &apr)
             : NGX_DECLINED;

        if (rc == NGX_AGAIN) {
            return NGX_DONE;
        }

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_DECLINED
            || apr.token_id.len != ctx->token->id.len
            || ngx_strncmp(apr.token_id.data, ctx->token->id.data,
                           apr.token_id.len) != 0
            || apr.digest.len != digest.len
            || ngx_strncmp(apr.digest.data, digest.data, digest.len) != 0)
        {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "ailink approval \"%V\" does not match the "
                          "request", &id);
            actx->id = id;          /* as sent: for the audit only */
            actx->decision = "claim_refused";
            ngx_ailink_approval_refuse(r, NULL, 0);
            return NGX_DONE;
        }

        rc = ngx_ailink_approval_claim(r, st, actx, &apr, &why);

        if (rc == NGX_AGAIN) {
            return NGX_DONE;
        }

        if (rc != NGX_DECLINED) {
            return rc;
        }

        actx->id = apr.id;
        actx->decision = (actx->held && why == NGX_AILINK_APPROVAL_REJECTED)
                         ? "rejected" : "claim_refused";
        ngx_ailink_approval_refuse(r, &apr, why);
        return NGX_DONE;
    }

    /* a new approval: its id kept while the store answers */

    now = ngx_time();

    ngx_memzero(&apr, sizeof(ngx_ailink_approval_t));

    if (actx->new_id.len == 0) {
        if (ngx_ailink_approval_random_id(&actx->new_id, r->pool) != NGX_OK) {
            return NGX_ERROR;
        }

        actx->created = now;
    }

    now = actx->created;
    apr.id = actx->new_id;

    apr.status = NGX_AILINK_APPROVAL_PENDING;
    apr.token_id = ctx->token->id;
    apr.project = ctx->token->project;
    apr.agent = ctx->agent_name;
    apr.policy = policy->name;
    apr.rule = rule->name;
    apr.reason = a->text;
    apr.notes = a->notes;
    apr.method = ctx->method;
    apr.path = r->unparsed_uri;
    apr.digest = digest;
    apr.created_at = now;
    apr.expires_at = now + a->expires_in;

    ngx_ailink_approval_preview(r->pool, &body, &apr.preview);

    rc = ngx_ailink_approval_store(&actx->replay, st, &apr, NULL);

    if (rc == NGX_AGAIN) {
        return NGX_DONE;
    }

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "ailink approval: the state zone cannot hold the "
                      "approval: the request is refused");
        return NGX_ERROR;
    }

    actx->id = apr.id;
    actx->decision = "pending";

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "ailink approval %V created: policy \"%V\" rule \"%V\", "
                  "token \"%V\", %V %V", &apr.id, &policy->name, &rule->name,
                  &ctx->token->id, &ctx->method, &ctx->path);

    ngx_ailink_approval_webhook(r, &apr);

    if (actx->wait_header.len) {
        wait = ngx_atotm(actx->wait_header.data, actx->wait_header.len);
        acf = ngx_http_get_module_main_conf(r, ngx_ailink_approval_module);

        if (wait == NGX_ERROR) {
            ngx_ailink_finalize_error(r, NGX_HTTP_BAD_REQUEST,
                                      "invalid_request",
                                      "X-AILink-Approval-Wait must be a "
                                      "number of seconds",
                                      "X-AILink-Approval-Wait");
            return NGX_DONE;
        }

        if (wait > 0) {
            wait = ngx_min(wait, acf->max_wait);
            wait = ngx_min(wait, apr.expires_at - now);
            actx->wait = wait;

            if (ngx_ailink_approval_hold(r, actx, &apr, wait) != NGX_OK) {
                return NGX_ERROR;
            }

            return NGX_DONE;
        }
    }

    rc = ngx_ailink_approval_pending(r, &apr);

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


/* GET /v1/approvals/<id>: the requesting token's view */

static ngx_int_t
ngx_ailink_approval_get_handler(ngx_http_request_t *r)
{
    u_char                 *p;
    time_t                  now;
    ngx_int_t               rc;
    ngx_str_t               id, json, reason;
    ngx_uint_t              status;
    ngx_ailink_ctx_t           *ctx;
    ngx_ailink_state_t         *st;
    ngx_ailink_approval_t       apr;
    ngx_ailink_approval_ctx_t  *actx;

    if (r != r->main
        || r->uri.len <= sizeof("/v1/approvals/") - 1
        || ngx_strncmp(r->uri.data, "/v1/approvals/",
                       sizeof("/v1/approvals/") - 1) != 0)
    {
        return NGX_DECLINED;
    }

    ctx = ngx_ailink_get_ctx(r);

    if (ctx == NULL || ctx->token == NULL) {
        return NGX_DECLINED;
    }

    if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
        ngx_ailink_finalize_error(r, NGX_HTTP_NOT_ALLOWED,
                                  "method_not_allowed",
                                  "approvals are read with GET", NULL);
        return NGX_DONE;
    }

    id.data = r->uri.data + sizeof("/v1/approvals/") - 1;
    id.len = r->uri.len - (sizeof("/v1/approvals/") - 1);

    st = ngx_ailink_policy_state(r);

    actx = ngx_ailink_approval_get_ctx(r);
    if (actx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the store's answer runs the phases, and so this handler, again */
    ngx_ailink_replay_enter(&actx->replay, ngx_ailink_approval_rerun, 0);

    rc = (st && id.len == NGX_AILINK_APPROVAL_ID_LEN)
         ? ngx_ailink_approval_load(&actx->replay, st, &id, &apr)
         : NGX_DECLINED;

    if (rc == NGX_AGAIN) {
        return NGX_DONE;
    }

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED
        || apr.token_id.len != ctx->token->id.len
        || ngx_strncmp(apr.token_id.data, ctx->token->id.data,
                       apr.token_id.len) != 0)
    {
        /* another token's approval is not shown, nor said to exist */
        ngx_ailink_finalize_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                  "no such approval for this token", NULL);
        return NGX_DONE;
    }

    now = ngx_time();
    status = ngx_ailink_approval_status(&apr, now);

    reason = (apr.decided_at && apr.decision_reason.len)
             ? apr.decision_reason : apr.reason;

    json.data = ngx_pnalloc(r->pool, ngx_ailink_approval_view_len(&apr)
                                     + 256);
    if (json.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(json.data, "{\"request_id\":\"",
                   sizeof("{\"request_id\":\"") - 1);
    p = ngx_ailink_json_escape(p, &apr.id);
    p = ngx_sprintf(p, "\",\"status\":\"%s\"",
                    status == NGX_AILINK_APPROVAL_CLAIMED
                    ? "approved" : ngx_ailink_approval_status_name(status));
    p = ngx_ailink_approval_member(p, "reason", &reason);
    p = ngx_ailink_approval_member(p, "policy_name", &apr.policy);
    p = ngx_sprintf(p, ",\"claimed\":%s",
                    status == NGX_AILINK_APPROVAL_CLAIMED ? "true" : "false");
    p = ngx_cpymem(p, ",\"expires_at\":\"", sizeof(",\"expires_at\":\"") - 1);
    p = ngx_ailink_approval_time(p, apr.expires_at);
    *p++ = '"';

    if (status == NGX_AILINK_APPROVAL_APPROVED) {
        p = ngx_cpymem(p, ",\"claim\":{\"header\":\"X-AILink-Approval-Id\"",
                       sizeof(",\"claim\":{\"header\":\"X-AILink-Approval-Id\"")
                       - 1);
        p = ngx_ailink_approval_member(p, "method", &apr.method);
        p = ngx_ailink_approval_member(p, "path", &apr.path);
        p = ngx_cpymem(p, ",\"note\":\"repeat the request with the same "
                          "method, path and body and this header; it runs "
                          "once\"}",
                       sizeof(",\"note\":\"repeat the request with the same "
                              "method, path and body and this header; it "
                              "runs once\"}") - 1);
    }

    *p++ = '}';
    json.len = p - json.data;

    rc = ngx_ailink_send_json(r, NGX_HTTP_OK, &json);

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


/*
 * X-AILink-Approval-Id and -Wait, read before the auth module takes every
 * X-AILink-* header out of what is forwarded (its access handler runs
 * after this one)
 */

static ngx_int_t
ngx_ailink_approval_headers(ngx_http_request_t *r)
{
    ngx_str_t                   *dst;
    ngx_uint_t                   i;
    ngx_list_part_t             *part;
    ngx_table_elt_t             *h;
    ngx_ailink_approval_ctx_t   *actx;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NGX_DECLINED;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len < sizeof("X-AILink-Approval-Id") - 1
            || ngx_strncasecmp(h[i].key.data, (u_char *) "X-AILink-Approval-",
                               sizeof("X-AILink-Approval-") - 1) != 0)
        {
            continue;
        }

        if (h[i].key.len == sizeof("X-AILink-Approval-Id") - 1
            && ngx_strncasecmp(h[i].key.data + h[i].key.len - 2,
                               (u_char *) "id", 2) == 0)
        {
            dst = (ngx_str_t *) offsetof(ngx_ailink_approval_ctx_t, claim_id);

        } else if (h[i].key.len == sizeof("X-AILink-Approval-Wait") - 1
                   && ngx_strncasecmp(h[i].key.data + h[i].key.len - 4,
                                      (u_char *) "wait", 4) == 0)
        {
            dst = (ngx_str_t *) offsetof(ngx_ailink_approval_ctx_t,
                                         wait_header);

        } else {
            continue;
        }

        actx = ngx_ailink_approval_get_ctx(r);
        if (actx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        *(ngx_str_t *) ((u_char *) actx + (uintptr_t) dst) = h[i].value;
    }
}


static void *
ngx_ailink_approval_create_main_conf(ngx_conf_t *cf)
{
    ngx_ailink_approval_conf_t  *acf;

    acf = ngx_pcalloc(cf->pool, sizeof(ngx_ailink_approval_conf_t));
    if (acf == NULL) {
        return NULL;
    }

    acf->max_wait = NGX_CONF_UNSET;

    return acf;
}


static void *
ngx_ailink_approval_create_loc_conf(ngx_conf_t *cf)
{
    /* set by ailink_approvals_page; not merged: a page is one location */
    return ngx_pcalloc(cf->pool, sizeof(ngx_ailink_approval_loc_t));
}


static char *
ngx_ailink_approval_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_ailink_approval_conf_t  *acf = conf;

    ngx_conf_init_value(acf->max_wait, 300);

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_ailink_approval_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    ngx_ailink_policy_hooks[NGX_AILINK_PA_REQUIRE_APPROVAL] =
                                                   ngx_ailink_approval_hook;

    /* the last module of the list: the policy module's hook is set */
    if (ngx_ailink_log_hook != ngx_ailink_approval_log_hook) {
        ngx_ailink_approval_next_log_hook = ngx_ailink_log_hook;
        ngx_ailink_log_hook = ngx_ailink_approval_log_hook;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    /* the last module of the list: runs first in the phase, before
       routing would forward the path */
    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_ailink_approval_get_handler;

    /* idempotency keys: checked before the approvals, so that a repeated
       claim is replayed */
    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_ailink_idempotency_handler;

    /* the headers the auth module is about to drop */
    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_ailink_approval_headers;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_ailink_idempotency_headers;

    return NGX_OK;
}


/*
 * The audit record: ,"approval":{"id","decision"[,"decided_by","reason"]}
 * and ,"idempotent_replay":true, after the policies' members
 */

static void
ngx_ailink_approval_log_hook(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx)
{
    u_char                     *p;
    size_t                      len;
    ngx_str_t                   decision;
    ngx_uint_t                  replayed;
    ngx_ailink_approval_ctx_t  *actx;

    if (ngx_ailink_approval_next_log_hook) {
        ngx_ailink_approval_next_log_hook(r, ctx);
    }

    actx = ngx_http_get_module_ctx(r, ngx_ailink_approval_module);
    replayed = ngx_ailink_idempotency_replayed(r);

    if (replayed && actx && actx->decision == NULL && actx->claim_id.len) {
        /* a repeated claim, answered before the approval was looked at */
        actx->id = actx->claim_id;
        actx->decision = "replayed";
    }

    if ((actx == NULL || actx->id.len == 0 || actx->decision == NULL)
        && !replayed)
    {
        return;
    }

    len = ctx->policy_audit.len + sizeof(",\"idempotent_replay\":true");

    if (actx && actx->id.len && actx->decision) {
        decision.data = (u_char *) actx->decision;
        decision.len = ngx_strlen(actx->decision);

        len += sizeof(",\"approval\":{\"id\":\"\",\"decision\":\"\","
                      "\"decided_by\":\"\",\"reason\":\"\"}")
               + ngx_ailink_json_escape_len(&actx->id)
               + ngx_ailink_json_escape_len(&decision)
               + ngx_ailink_json_escape_len(&actx->decided_by)
               + ngx_ailink_json_escape_len(&actx->reason);
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return;
    }

    len = ctx->policy_audit.len;

    if (len) {
        ngx_memcpy(p, ctx->policy_audit.data, len);
    }

    ctx->policy_audit.data = p;
    p += len;

    if (actx && actx->id.len && actx->decision) {
        p = ngx_cpymem(p, ",\"approval\":{\"id\":\"",
                       sizeof(",\"approval\":{\"id\":\"") - 1);
        p = ngx_ailink_json_escape(p, &actx->id);
        *p++ = '"';
        p = ngx_ailink_approval_member(p, "decision", &decision);

        if (actx->decided_by.len) {
            p = ngx_ailink_approval_member(p, "decided_by",
                                           &actx->decided_by);
            p = ngx_ailink_approval_member(p, "reason", &actx->reason);
        }

        *p++ = '}';
    }

    if (replayed) {
        p = ngx_cpymem(p, ",\"idempotent_replay\":true",
                       sizeof(",\"idempotent_replay\":true") - 1);
    }

    ctx->policy_audit.len = p - ctx->policy_audit.data;
}


static ngx_int_t
ngx_ailink_approval_init_process(ngx_cycle_t *cycle)
{
    return ngx_ailink_approval_wait_init(cycle);
}
