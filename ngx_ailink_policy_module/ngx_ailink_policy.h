
/*
 * Copyright (C) AILink
 *
 * The policy engine's types: policies compiled from the config-as-code
 * file (ngx_ailink_policy_conf.c), condition trees and their evaluation
 * (ngx_ailink_policy_eval.c), rate limits and spend caps over the state
 * interface (ngx_ailink_policy_limit.c), and the module glue
 * (ngx_ailink_policy_module.c).
 */


#ifndef _NGX_AILINK_POLICY_H_INCLUDED_
#define _NGX_AILINK_POLICY_H_INCLUDED_


#include "ngx_ailink_common.h"
#include "ngx_ailink_state.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>


/* condition nodes */
#define NGX_AILINK_POLICY_ALL           1
#define NGX_AILINK_POLICY_ANY           2
#define NGX_AILINK_POLICY_NOT           3
#define NGX_AILINK_POLICY_LEAF          4
#define NGX_AILINK_POLICY_TRUE          5

/* fields */
enum {
    NGX_AILINK_PF_METHOD = 1,
    NGX_AILINK_PF_PATH,
    NGX_AILINK_PF_HEADER,
    NGX_AILINK_PF_BODY,
    NGX_AILINK_PF_MODEL,
    NGX_AILINK_PF_PROVIDER,
    NGX_AILINK_PF_TOKEN_ID,
    NGX_AILINK_PF_TOKEN_NAME,
    NGX_AILINK_PF_PROJECT,
    NGX_AILINK_PF_AGENT,
    NGX_AILINK_PF_SESSION,
    NGX_AILINK_PF_HOUR,
    NGX_AILINK_PF_MINUTE,
    NGX_AILINK_PF_WEEKDAY,
    NGX_AILINK_PF_STATUS,               /* post: response status */
    NGX_AILINK_PF_PROMPT_TOKENS,        /* post */
    NGX_AILINK_PF_COMPLETION_TOKENS,    /* post */
    NGX_AILINK_PF_TOTAL_TOKENS,         /* post */
    NGX_AILINK_PF_COST,                 /* post */
    NGX_AILINK_PF_SPEND                 /* spend.<scope>.<period> */
};

/* operators */
enum {
    NGX_AILINK_POP_EQ = 1,
    NGX_AILINK_POP_NEQ,
    NGX_AILINK_POP_GT,
    NGX_AILINK_POP_GTE,
    NGX_AILINK_POP_LT,
    NGX_AILINK_POP_LTE,
    NGX_AILINK_POP_IN,
    NGX_AILINK_POP_GLOB,
    NGX_AILINK_POP_REGEX,
    NGX_AILINK_POP_CONTAINS,
    NGX_AILINK_POP_EXISTS,
    NGX_AILINK_POP_STARTS_WITH
};

/* actions, in the order the audit names them */
enum {
    NGX_AILINK_PA_ALLOW = 1,
    NGX_AILINK_PA_DENY,
    NGX_AILINK_PA_RATE_LIMIT,
    NGX_AILINK_PA_SPEND_CAP,
    NGX_AILINK_PA_SET_HEADER,
    NGX_AILINK_PA_LOG,
    NGX_AILINK_PA_TAG,
    NGX_AILINK_PA_REQUIRE_APPROVAL,
    NGX_AILINK_PA_REDACT,
    NGX_AILINK_PA_BLOCK_CONTENT,
    NGX_AILINK_PA_MAX
};

/* spend scopes and periods */
#define NGX_AILINK_SPEND_TOKEN          0
#define NGX_AILINK_SPEND_PROJECT        1
#define NGX_AILINK_SPEND_DAY            0
#define NGX_AILINK_SPEND_MONTH          1

/* spend is counted in nano-USD: integer sums are exact */
#define NGX_AILINK_NANO_USD             1000000000.0

/* rate-limit windows */
#define NGX_AILINK_RL_SECOND            0
#define NGX_AILINK_RL_MINUTE            1
#define NGX_AILINK_RL_HOUR              2
#define NGX_AILINK_RL_TOKENS_MINUTE     3
#define NGX_AILINK_RL_N                 4


/* a time zone (ngx_ailink_policy_tz.c); NULL stands for UTC */
typedef struct {
    ngx_str_t                   name;
    ngx_str_t                   key;        /* in spend counters' keys */
    time_t                      fixed;      /* without transitions */
    time_t                     *at;         /* transitions, ascending */
    time_t                     *offset;     /* seconds east from at[i] */
    ngx_uint_t                  ntransitions;
} ngx_ailink_policy_tz_t;


#define NGX_AILINK_SPEND_KEY_LEN        64

typedef struct {
    ngx_uint_t                  scope;      /* NGX_AILINK_SPEND_TOKEN, ... */
    ngx_uint_t                  period;     /* NGX_AILINK_SPEND_DAY, ... */
    ngx_ailink_policy_tz_t     *tz;

    /*
     * the worker's last counter key, in a zone of a fixed offset: the
     * same from key_from until key_until (a day) for the same id
     */
    time_t                      key_from;
    time_t                      key_until;
    size_t                      key_len;
    size_t                      key_id_len;
    u_char                      key[NGX_AILINK_SPEND_KEY_LEN];
} ngx_ailink_policy_spend_t;


typedef struct ngx_ailink_policy_cond_s  ngx_ailink_policy_cond_t;

struct ngx_ailink_policy_cond_s {
    ngx_uint_t                  type;       /* NGX_AILINK_POLICY_* */
    ngx_uint_t                  nchildren;
    ngx_ailink_policy_cond_t  **children;   /* all, any, not */

    /* a leaf */
    ngx_uint_t                  field;      /* NGX_AILINK_PF_* */
    ngx_uint_t                  op;         /* NGX_AILINK_POP_* */
    ngx_str_t                   arg;        /* header name, lowercase */
    ngx_array_t                *path;       /* body: ngx_str_t segments */
    ngx_ailink_policy_spend_t   spend;      /* spend.<scope>.<period> */
    ngx_str_t                   value;
    double                      number;
    ngx_flag_t                  numeric;    /* the value is a number */
    ngx_flag_t                  exists;     /* exists: true / false */
    ngx_uint_t                  nvalues;    /* in */
    ngx_str_t                  *values;
    double                     *numbers;
    pcre2_code                 *re;
};


typedef struct {
    ngx_uint_t                  type;       /* NGX_AILINK_PA_* */
    ngx_str_t                   name;       /* as the audit shows it */

    /*
     * its decision in the audit's "policies", written once: up to the
     * result ({"policy":"..","rule":"..","action":"..","mode":"..",
     * "result":"), and after it ("} or ","reason":".."})
     */
    ngx_str_t                   audit;
    ngx_str_t                   audit_tail;

    /* deny, log: the reason or message; set_header: name and value */
    ngx_str_t                   text;
    ngx_str_t                   header;
    ngx_array_t                *tags;       /* ngx_str_t */

    /* rate_limit */
    int64_t                     limits[NGX_AILINK_RL_N];    /* 0: none */
    ngx_str_t                   limit_text[NGX_AILINK_RL_N];
    ngx_uint_t                 *key_fields; /* NGX_AILINK_PF_* */
    ngx_str_t                  *key_args;
    ngx_uint_t                  nkeys;
    ngx_str_t                   id;         /* counter key prefix */

    /* spend_cap */
    ngx_ailink_policy_spend_t   spend;
    double                      limit_usd;
    ngx_str_t                   budget;

    /* require_approval: reason in text; how long it may wait; notes */
    time_t                      expires_in;
    ngx_str_t                   notes;
    /* redact, block_content: the guardrails required (a mask) */
    ngx_uint_t                  guardrails;
} ngx_ailink_policy_action_t;


typedef struct {
    ngx_str_t                   name;
    ngx_str_t                   name_json;  /* escaped for JSON */
    ngx_ailink_policy_cond_t   *when;
    ngx_ailink_policy_action_t *actions;
    ngx_uint_t                  nactions;
    ngx_flag_t                  dynamic;    /* reads spend: never memoized */
} ngx_ailink_policy_rule_t;


typedef struct {
    ngx_str_t                   name;
    ngx_str_t                   name_json;  /* escaped for JSON */
    ngx_flag_t                  shadow;
    ngx_flag_t                  post;
    ngx_flag_t                  all;        /* attached to every token */
    ngx_array_t                *tokens;     /* ngx_str_t ids */
    ngx_array_t                *projects;   /* ngx_str_t */
    ngx_ailink_policy_tz_t     *tz;         /* of context.time */
    ngx_ailink_policy_rule_t   *rules;
    ngx_uint_t                  nrules;
    ngx_array_t                 spends;     /* ngx_ailink_policy_spend_t
                                               it caps or reads */
    ngx_flag_t                  needs_body;
    ngx_flag_t                  limits;
    ngx_str_t                   source;     /* as written (JSON): for the
                                               admin API's GET and export */
    ngx_flag_t                  guardrails; /* redact or block_content */
} ngx_ailink_policy_t;


/* a request field some condition of a token reads (the memo's key) */
typedef struct {
    ngx_uint_t                  field;      /* NGX_AILINK_PF_* */
    ngx_str_t                   arg;        /* header name */
    ngx_ailink_policy_cond_t   *cond;       /* body: the leaf with the path */
    ngx_ailink_policy_tz_t     *tz;         /* context.time: the zone */
} ngx_ailink_policy_memo_field_t;


/* what applies to one token, worked out when the file is read */
typedef struct {
    ngx_ailink_policy_t       **pre;
    ngx_uint_t                  npre;
    ngx_uint_t                  nrules;     /* of the pre policies, together */
    ngx_ailink_policy_memo_field_t  *memo_fields;   /* NULL: no memo */
    ngx_uint_t                  nmemo_fields;
    ngx_uint_t                 *rule_policy;    /* with the memo: a pre */
    ngx_uint_t                 *rule_base;      /* rule's policy, and a
                                                   policy's first rule */
    ngx_ailink_policy_t       **post;
    ngx_uint_t                  npost;
    ngx_ailink_policy_spend_t  *spend;      /* counters to add spend to */
    ngx_uint_t                  nspend;
    ngx_flag_t                  needs_body;
    ngx_flag_t                  limits;     /* rate limits or spend caps */
    ngx_array_t                *own;        /* ngx_str_t: the names the
                                               token itself gave */
    uint64_t                    serial;     /* unique in the process: the
                                               memo's key, as a set's
                                               address may be reused once
                                               an admin overlay is freed */
    ngx_flag_t                  guardrails; /* a pre policy (enforced or
                                               shadow) requires guardrails */
    void                       *memo_last;  /* the worker's memo entry
                                               this set used last */
} ngx_ailink_policy_set_t;


/* the policy module's main conf */
typedef struct {
    ngx_array_t                 policies;   /* ngx_ailink_policy_t */
    ngx_flag_t                  needs_state;
    ngx_str_t                   file;       /* the config-as-code file */
    ngx_ailink_state_t         *state;      /* ailink_state_zone */
    ngx_ailink_state_t         *counters;   /* backend=redis: counters,
                                               approvals */
    ngx_flag_t                  rl_fail_open;
    ngx_flag_t                  spend_fail_open;
    ngx_str_t                   data_dir;   /* ailink_data_dir */
    ngx_msec_t                  save_interval;
} ngx_ailink_policy_conf_t;


/* one decision, for the audit record and the variables */
typedef struct {
    ngx_ailink_policy_t        *policy;
    ngx_ailink_policy_rule_t   *rule;
    ngx_ailink_policy_action_t *action;
    const char                 *result;     /* "matched", "denied", ... */
} ngx_ailink_policy_decision_t;


/* a rate limit's counters to add tokens to when the response ends */
typedef struct {
    ngx_str_t                   key;        /* without the window */
    ngx_ailink_policy_action_t *action;
} ngx_ailink_policy_tpm_t;


/* the longest rate-limit key kept in the request's context */
#define NGX_AILINK_POLICY_TPM_KEY       64


/* the limits being counted, across replies of an asynchronous store */
typedef struct {
    void                       *pend;       /* the pending actions */
    ngx_uint_t                  npending;
    ngx_uint_t                  k;          /* 0 spend caps, 1 rate limits */
    ngx_uint_t                  i;          /* the pending action */
    ngx_uint_t                  step;       /* the window being counted */
    time_t                      now;
    int64_t                     value;      /* the reply */
    ngx_int_t                   rc;
    unsigned                    waiting:1;
    unsigned                    replied:1;
} ngx_ailink_policy_limits_t;


/* the request's policy state (ctx->policy) */
typedef struct {
    ngx_ailink_policy_set_t    *set;
    ngx_array_t                 decisions;  /* ngx_ailink_policy_decision_t */
    ngx_array_t                *tpm;        /* ngx_ailink_policy_tpm_t */
    ngx_str_t                   body;
    ngx_ailink_policy_decision_t *final;    /* the refusal, if any */
    ngx_ailink_policy_limits_t *limits;     /* waiting for the store */

    /* the arrays' first elements, without an allocation of their own */
    ngx_ailink_policy_decision_t  decisions_first[4];
    ngx_array_t                 tpm_array;
    ngx_ailink_policy_tpm_t     tpm_first[2];
    u_char                      tpm_keys[2][NGX_AILINK_POLICY_TPM_KEY];

    /* x-ratelimit-* of the most constrained enforced limits */
    u_char                      rl_text[5 * (NGX_INT64_LEN + 1)];
    ngx_str_t                  *rl_limit[2];     /* requests, tokens */
    int64_t                     rl_remaining[2];
    time_t                      rl_reset[2];
    time_t                      retry_after;

    ngx_tm_t                    tm;         /* context.time, once */
    ngx_ailink_policy_tz_t     *tm_tz;
    ngx_ailink_policy_tz_t     *tz;         /* the policy being run's */

    unsigned                    decided:1;
    unsigned                    body_reading:1;
    unsigned                    body_ready:1;
    unsigned                    tm_set:1;
    unsigned                    logged:1;
    unsigned                    rl_set:2;   /* bit 0 requests, 1 tokens */
} ngx_ailink_policy_ctx_t;


/* the values a condition looks at */
typedef struct {
    ngx_str_t                   str;
    double                      number;
    unsigned                    found:1;
    unsigned                    is_number:1;
} ngx_ailink_policy_value_t;


extern ngx_module_t  ngx_ailink_policy_module;


/*
 * require_approval, redact and block_content: filled by the approvals and
 * guardrails modules (see ngx_ailink_policy_module.c)
 */
typedef ngx_int_t (*ngx_ailink_policy_hook_pt)(ngx_http_request_t *r,
    ngx_ailink_policy_t *policy, ngx_ailink_policy_rule_t *rule,
    ngx_ailink_policy_action_t *action);

extern ngx_ailink_policy_hook_pt  ngx_ailink_policy_hooks[NGX_AILINK_PA_MAX];

/* ngx_ailink_policy_guard.c */
ngx_int_t ngx_ailink_policy_guardrails(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx, ngx_str_t *body, ngx_uint_t *mask,
    ngx_uint_t *shadow);


/* ngx_ailink_policy_conf.c */
ngx_int_t ngx_ailink_policy_conf_load(ngx_conf_t *cf, ngx_ailink_conf_t *conf,
    cJSON *root);
ngx_ailink_policy_conf_t *ngx_ailink_policy_get_conf(ngx_conf_t *cf);

/* ngx_ailink_policy_eval.c */
ngx_int_t ngx_ailink_policy_eval(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_ailink_policy_ctx_t *pctx, ngx_ailink_policy_cond_t *cond);
ngx_int_t ngx_ailink_policy_field(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx, ngx_ailink_policy_ctx_t *pctx, ngx_uint_t field,
    ngx_str_t *arg, ngx_ailink_policy_cond_t *cond,
    ngx_ailink_policy_value_t *v);
ngx_int_t ngx_ailink_policy_number(ngx_str_t *s, double *n);
void ngx_ailink_policy_time(ngx_ailink_policy_ctx_t *pctx,
    ngx_ailink_policy_tz_t *tz);

/* ngx_ailink_policy_tz.c */
ngx_int_t ngx_ailink_policy_tz_get(ngx_conf_t *cf, ngx_array_t *zones,
    ngx_str_t *name, ngx_ailink_policy_tz_t **tz, char **err);
time_t ngx_ailink_policy_tz_offset(ngx_ailink_policy_tz_t *tz, time_t now);
void ngx_ailink_policy_eval_exit(void);

/* ngx_ailink_policy_memo.c */
ngx_int_t ngx_ailink_policy_memo_init(ngx_pool_t *pool,
    ngx_ailink_policy_set_t *set);
uint64_t *ngx_ailink_policy_memo(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx, ngx_ailink_policy_ctx_t *pctx);
void ngx_ailink_policy_memo_exit(void);


/* the first rule from n on, below end, whose bit is set; end if none */

static ngx_inline ngx_uint_t
ngx_ailink_policy_memo_next(uint64_t *bits, ngx_uint_t n, ngx_uint_t end)
{
    uint64_t  w;

    while (n < end) {
        w = bits[n / 64] >> (n % 64);

        if (w) {
            n += __builtin_ctzll(w);
            return ngx_min(n, end);
        }

        n = (n / 64 + 1) * 64;
    }

    return end;
}

/*
 * ngx_ailink_policy_field() for the fields that are a string of the
 * request or its context, without a call (the memo's and the rate limits'
 * keys read them on every request); 0 for the other fields
 */

static ngx_inline ngx_uint_t
ngx_ailink_policy_field_str(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_uint_t field, ngx_ailink_policy_value_t *v)
{
    ngx_str_t  *s;

    switch (field) {

    case NGX_AILINK_PF_METHOD:
        s = &r->method_name;
        break;

    case NGX_AILINK_PF_PATH:
        s = &ctx->path;
        break;

    case NGX_AILINK_PF_MODEL:
        s = &ctx->model;
        break;

    case NGX_AILINK_PF_PROVIDER:
        if (ctx->provider == NULL) {
            v->is_number = 0;
            v->found = 0;
            return 1;
        }

        s = &ctx->provider->name;
        break;

    case NGX_AILINK_PF_TOKEN_ID:
        s = &ctx->token->id;
        break;

    case NGX_AILINK_PF_TOKEN_NAME:
        s = &ctx->token->name;
        break;

    case NGX_AILINK_PF_PROJECT:
        s = &ctx->token->project;
        break;

    case NGX_AILINK_PF_AGENT:
        s = &ctx->agent_name;
        break;

    case NGX_AILINK_PF_SESSION:
        s = &ctx->session_id;
        break;

    default:
        return 0;
    }

    v->is_number = 0;
    v->found = (s->len != 0);
    v->str = *s;

    return 1;
}


/* ngx_ailink_policy_limit.c */
ngx_int_t ngx_ailink_policy_rate_limit(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx, ngx_ailink_policy_ctx_t *pctx,
    ngx_ailink_state_t *st, ngx_ailink_policy_t *policy,
    ngx_ailink_policy_action_t *a, ngx_ailink_policy_limits_t *lim,
    const char **result);
ngx_int_t ngx_ailink_policy_spend_cap(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx, ngx_ailink_state_t *st,
    ngx_ailink_policy_action_t *a, ngx_ailink_policy_limits_t *lim,
    double *spent);
void ngx_ailink_policy_limits_reply(void *data, ngx_int_t rc,
    int64_t value);
ngx_int_t ngx_ailink_policy_spend_get(ngx_ailink_ctx_t *ctx,
    ngx_ailink_state_t *st, ngx_ailink_policy_spend_t *sp, double *usd);
void ngx_ailink_policy_count_usage(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx, ngx_ailink_policy_ctx_t *pctx,
    ngx_ailink_state_t *st);
ngx_ailink_state_t *ngx_ailink_policy_state(ngx_http_request_t *r);


#endif /* _NGX_AILINK_POLICY_H_INCLUDED_ */
