
/*
 * Copyright (C) AILink
 *
 * Human approvals: the require_approval hook of the policy engine
 * (ngx_ailink_approval.c), the records it keeps through the state
 * interface (ngx_ailink_approval_record.c), requests held until a
 * decision (ngx_ailink_approval_wait.c) and the decision endpoints
 * (ngx_ailink_approval_api.c).
 */


#ifndef _NGX_AILINK_APPROVAL_H_INCLUDED_
#define _NGX_AILINK_APPROVAL_H_INCLUDED_


#include "ngx_ailink_policy.h"
#include "ngx_ailink_state_replay.h"


#define NGX_AILINK_APPROVAL_ID_LEN      28      /* "apr_" + 24 hex */
#define NGX_AILINK_APPROVAL_PREVIEW     256     /* body bytes shown */

/* how long a decided or expired record stays to be read */
#define NGX_AILINK_APPROVAL_KEEP        86400

/* record states; "expired" is worked out from expires_at */
#define NGX_AILINK_APPROVAL_PENDING     0
#define NGX_AILINK_APPROVAL_APPROVED    1
#define NGX_AILINK_APPROVAL_REJECTED    2
#define NGX_AILINK_APPROVAL_CLAIMED     3
#define NGX_AILINK_APPROVAL_EXPIRED     4


typedef struct {
    ngx_str_t                   id;
    ngx_uint_t                  status;     /* as stored */
    ngx_str_t                   token_id;
    ngx_str_t                   project;
    ngx_str_t                   agent;
    ngx_str_t                   policy;
    ngx_str_t                   rule;
    ngx_str_t                   reason;     /* the policy's */
    ngx_str_t                   notes;
    ngx_str_t                   method;
    ngx_str_t                   path;
    ngx_str_t                   digest;     /* hex SHA-256 */
    ngx_str_t                   preview;    /* redacted, cut */
    time_t                      created_at;
    time_t                      expires_at;
    time_t                      decided_at;
    ngx_str_t                   decided_by;
    ngx_str_t                   decision_reason;
    ngx_str_t                   raw;        /* the record as stored */
} ngx_ailink_approval_t;


typedef struct {
    time_t                      max_wait;   /* ailink_approval_max_wait */
    ngx_str_t                   webhook;    /* ailink_approval_webhook */
} ngx_ailink_approval_conf_t;


/* a location's: ailink_approvals_page */
typedef struct {
    ngx_str_t                   api;        /* the approvals API's URL */
} ngx_ailink_approval_loc_t;


/* the request's approval state */
typedef struct {
    ngx_str_t                   id;         /* created or claimed */
    ngx_str_t                   claim_id;   /* X-AILink-Approval-Id */
    ngx_str_t                   wait_header;    /* X-AILink-Approval-Wait */
    const char                 *decision;   /* for the audit */
    void                       *hold;
    time_t                      wait;       /* sync mode, seconds */
    ngx_str_t                   decided_by; /* the approvals API's */
    ngx_str_t                   reason;
    ngx_str_t                   new_id;     /* kept across replays */
    time_t                      created;
    ngx_ailink_replay_t         replay;     /* the store's answers */
    unsigned                    claimed:1;
    unsigned                    held:1;     /* was held, now claims */
} ngx_ailink_approval_ctx_t;


extern ngx_module_t  ngx_ailink_approval_module;


/* ngx_ailink_approval_record.c */
ngx_int_t ngx_ailink_approval_key(ngx_pool_t *pool, ngx_str_t *id,
    ngx_str_t *key);
ngx_int_t ngx_ailink_approval_load(ngx_ailink_replay_t *rp,
    ngx_ailink_state_t *st, ngx_str_t *id, ngx_ailink_approval_t *apr);
ngx_int_t ngx_ailink_approval_parse(ngx_pool_t *pool, ngx_str_t *raw,
    ngx_ailink_approval_t *apr);
ngx_int_t ngx_ailink_approval_store(ngx_ailink_replay_t *rp,
    ngx_ailink_state_t *st, ngx_ailink_approval_t *apr, ngx_str_t *expect);
ngx_uint_t ngx_ailink_approval_status(ngx_ailink_approval_t *apr,
    time_t now);
const char *ngx_ailink_approval_status_name(ngx_uint_t status);
u_char *ngx_ailink_approval_time(u_char *p, time_t t);
void ngx_ailink_approval_notify(ngx_ailink_state_t *st);
ngx_int_t ngx_ailink_approval_generation(ngx_ailink_state_t *st,
    int64_t *gen, ngx_ailink_state_handler_pt handler);
u_char *ngx_ailink_approval_member(u_char *p, const char *key,
    ngx_str_t *s);
size_t ngx_ailink_approval_view_len(ngx_ailink_approval_t *apr);
u_char *ngx_ailink_approval_admin_view(u_char *p, ngx_ailink_approval_t *apr,
    time_t now);

/* ngx_ailink_approval.c */
ngx_ailink_approval_ctx_t *ngx_ailink_approval_get_ctx(ngx_http_request_t *r);
void ngx_ailink_approval_resume(ngx_http_request_t *r);
ngx_int_t ngx_ailink_approval_claim(ngx_http_request_t *r,
    ngx_ailink_state_t *st, ngx_ailink_approval_ctx_t *actx,
    ngx_ailink_approval_t *apr, ngx_uint_t *why);
void ngx_ailink_approval_refuse(ngx_http_request_t *r,
    ngx_ailink_approval_t *apr, ngx_uint_t status);

/* ngx_ailink_approval_wait.c */
ngx_int_t ngx_ailink_approval_hold(ngx_http_request_t *r,
    ngx_ailink_approval_ctx_t *actx, ngx_ailink_approval_t *apr,
    time_t wait);
void ngx_ailink_approval_wake(void);
ngx_int_t ngx_ailink_approval_wait_init(ngx_cycle_t *cycle);

/* ngx_ailink_idempotency.c */
extern ngx_module_t  ngx_ailink_idempotency_module;
ngx_int_t ngx_ailink_idempotency_headers(ngx_http_request_t *r);
ngx_int_t ngx_ailink_idempotency_handler(ngx_http_request_t *r);
ngx_uint_t ngx_ailink_idempotency_replayed(ngx_http_request_t *r);

/* ngx_ailink_approval_webhook.c */
void ngx_ailink_approval_webhook(ngx_http_request_t *r,
    ngx_ailink_approval_t *apr);

/* ngx_ailink_approval_page.c */
char *ngx_ailink_approval_page(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* ngx_ailink_approval_api.c */
ngx_int_t ngx_ailink_approval_api_handler(ngx_http_request_t *r);


#endif /* _NGX_AILINK_APPROVAL_H_INCLUDED_ */
