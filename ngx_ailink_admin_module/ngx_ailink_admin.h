
/*
 * Copyright (C) AILink
 */


#ifndef _NGX_AILINK_ADMIN_H_INCLUDED_
#define _NGX_AILINK_ADMIN_H_INCLUDED_


#include "ngx_ailink_common.h"
#include "ngx_ailink_store.h"


#define NGX_AILINK_VAULT_KEY_LEN  32


extern ngx_module_t  ngx_ailink_admin_module;


typedef struct {
    ngx_ailink_store_t         *store;
    u_char                      master[NGX_AILINK_VAULT_KEY_LEN];
    ngx_str_t                   master_source;
    ngx_flag_t                  master_set;
    u_char                      previous[NGX_AILINK_VAULT_KEY_LEN];
    ngx_flag_t                  previous_set;
    ngx_str_t                   audit_file; /* for GET /audit */
    void                       *tp;         /* its thread pool */
    ngx_flag_t                  audit_pg;   /* "postgresql": that of */
    const char                **pg_keywords; /* ailink_audit_pg, with */
    const char                **pg_values;  /* the admin's timeouts */
    ngx_str_t                   pg_name;    /* host:port/dbname, for logs */
    ngx_uint_t                  pg_line;    /* of the directive */
} ngx_ailink_admin_main_conf_t;


/* the store's objects compiled for this worker */
typedef struct {
    ngx_uint_t                  generation;
    ngx_pool_t                 *pool;
    ngx_ailink_conf_t           conf;       /* the file's plus the store's */
    ngx_array_t                 services;   /* ngx_ailink_service_t */
    ngx_uint_t                  refs;       /* requests using it */
    unsigned                    stale:1;
} ngx_ailink_admin_overlay_t;


typedef struct {
    ngx_str_t                   name;
    ngx_ailink_base_url_t       base;
    ngx_ailink_credential_t    *credential;
} ngx_ailink_service_t;


/* one admin request, routed */
typedef struct {
    ngx_http_request_t         *request;
    ngx_ailink_admin_main_conf_t *amcf;
    ngx_str_t                   resource;   /* "tokens" */
    ngx_str_t                   id;         /* "tok_..." or empty */
    ngx_str_t                   sub;        /* "circuit-breaker" or empty */
    ngx_str_t                   body;
    cJSON                      *json;       /* the body, parsed; or NULL */
    cJSON                      *doc;        /* the store's document, locked */
    ngx_str_t                   answer;     /* sent once committed */
    ngx_uint_t                  status;
    ngx_str_t                   audit;      /* what changed, no secret */
    ngx_int_t                   sent_rc;    /* of an answer already sent */
    u_char                      who[8];     /* the admin key's hash, hex */
    void                       *route;
    ngx_event_t                *retry;      /* while another writes */
    ngx_uint_t                  retries;
} ngx_ailink_admin_req_t;


/*
 * A resource of the admin API: the handler answers with
 * ngx_ailink_admin_reply()/_fail() (which return NGX_DECLINED: answered),
 * returns an HTTP status for nginx to answer, or mutates ar->doc and returns
 * NGX_AGAIN after setting ar->answer, for the document to be committed.
 * Other modules add theirs with ngx_ailink_admin_route_add() from their
 * preconfiguration ("approvals", "cache", "health", ...).
 */
typedef ngx_int_t (*ngx_ailink_admin_handler_pt)(ngx_ailink_admin_req_t *ar);

ngx_int_t ngx_ailink_admin_route_add(const char *resource,
    ngx_ailink_admin_handler_pt handler);

ngx_int_t ngx_ailink_admin_reply(ngx_ailink_admin_req_t *ar,
    ngx_uint_t status, cJSON *json);
ngx_int_t ngx_ailink_admin_fail(ngx_ailink_admin_req_t *ar,
    ngx_uint_t status, const char *code, const char *fmt, ...);
ngx_int_t ngx_ailink_admin_lock(ngx_ailink_admin_req_t *ar);
ngx_ailink_admin_overlay_t *ngx_ailink_admin_overlay(ngx_http_request_t *r,
    ngx_ailink_admin_main_conf_t *amcf);
ngx_ailink_admin_overlay_t *ngx_ailink_admin_compile(ngx_http_request_t *r,
    ngx_ailink_admin_main_conf_t *amcf, cJSON *doc, ngx_str_t *error);
void ngx_ailink_admin_overlay_release(ngx_ailink_admin_overlay_t *ov);
void ngx_ailink_admin_time(time_t t, cJSON *obj, const char *key);
ngx_int_t ngx_ailink_admin_check(ngx_ailink_admin_req_t *ar);
ngx_int_t ngx_ailink_admin_answer(ngx_ailink_admin_req_t *ar, cJSON *out);
cJSON *ngx_ailink_admin_strip_meta(cJSON *rec);
ngx_int_t ngx_ailink_admin_config(ngx_ailink_admin_req_t *ar);
ngx_int_t ngx_ailink_admin_audit(ngx_ailink_admin_req_t *ar);

/* ngx_ailink_admin_tokens.c */
ngx_int_t ngx_ailink_admin_tokens(ngx_ailink_admin_req_t *ar);

/* ngx_ailink_admin_routes.c: approvals, cache, health, circuit breakers */
ngx_int_t ngx_ailink_admin_routes_init(void);
ngx_int_t ngx_ailink_admin_breaker(ngx_ailink_admin_req_t *ar);
ngx_ailink_token_t *ngx_ailink_admin_token_find_id(ngx_http_request_t *r,
    ngx_str_t *id);

/* ngx_ailink_admin_audit.c: the audit file's tail, read in a thread */
#define NGX_AILINK_AUDIT_TAIL  (4 * 1024 * 1024)

typedef struct {
    ngx_http_request_t         *request;
    ngx_str_t                   path;       /* NUL-terminated */
    ngx_str_t                   data;       /* the tail read */
    ngx_pool_t                 *pool;
    ngx_flag_t                  cut;        /* the tail starts mid-file */
    ngx_err_t                   err;
} ngx_ailink_admin_audit_read_t;

void ngx_ailink_admin_audit_read(void *data, ngx_log_t *log);

/* ngx_ailink_admin_spend.c: GET /spend */
ngx_int_t ngx_ailink_admin_spend(ngx_ailink_admin_req_t *ar);

/*
 * ngx_ailink_admin_audit_pg.c: GET /audit and GET /spend answered from
 * the PostgreSQL of ailink_audit_pg ("ailink_admin_audit_source
 * postgresql"); f[] are the spend filters since, until, token_id,
 * project, model, by is 0 day, 1 token, 2 project, 3 model
 */
char *ngx_ailink_admin_audit_pg_init(ngx_conf_t *cf,
    ngx_ailink_admin_main_conf_t *amcf);
ngx_int_t ngx_ailink_admin_audit_pg(ngx_ailink_admin_req_t *ar);
ngx_int_t ngx_ailink_admin_spend_pg(ngx_ailink_admin_req_t *ar,
    ngx_uint_t by, ngx_str_t *f);
/* ngx_ailink_admin_policies.c */
ngx_int_t ngx_ailink_admin_policies(ngx_ailink_admin_req_t *ar);

/* ngx_ailink_vault.c */
ngx_int_t ngx_ailink_vault_encrypt(ngx_pool_t *pool, u_char *key,
    ngx_str_t *name, ngx_str_t *plain, ngx_str_t *sealed);
ngx_int_t ngx_ailink_vault_decrypt(ngx_pool_t *pool, u_char *key,
    ngx_str_t *name, ngx_str_t *sealed, ngx_str_t *plain);
ngx_int_t ngx_ailink_admin_credentials(ngx_ailink_admin_req_t *ar);
ngx_int_t ngx_ailink_admin_services(ngx_ailink_admin_req_t *ar);


#endif /* _NGX_AILINK_ADMIN_H_INCLUDED_ */
