
/*
 * Copyright (C) AILink
 */


#ifndef _NGX_AILINK_AUTH_H_INCLUDED_
#define _NGX_AILINK_AUTH_H_INCLUDED_


#include "ngx_ailink_common.h"


typedef struct {
    ngx_ailink_conf_t          *conf;
    ngx_array_t                *admin_keys;     /* ngx_ailink_admin_key_t:
                                                   ailink_admin_key and the
                                                   file's admin_keys */
} ngx_ailink_auth_main_conf_t;


/* ngx_ailink_credential.c */
ngx_int_t ngx_ailink_inject_credential(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx, ngx_ailink_inject_t *inject, ngx_str_t *secret,
    ngx_uint_t llm);
ngx_int_t ngx_ailink_byok_key(ngx_http_request_t *r, ngx_str_t *key);

/* ngx_ailink_auth_cache.c */
ngx_ailink_token_t *ngx_ailink_auth_cache_find(ngx_ailink_conf_t *conf,
    ngx_str_t *token, uint64_t mac[2]);
void ngx_ailink_auth_cache_add(ngx_ailink_conf_t *conf, uint64_t mac[2],
    ngx_ailink_token_t *token);
ngx_int_t ngx_ailink_auth_cache_flush(ngx_cycle_t *cycle);
/* ngx_ailink_admin_key.c */
char *ngx_ailink_admin_key_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_ailink_admin_keys_merge(ngx_conf_t *cf,
    ngx_ailink_auth_main_conf_t *amcf);

/* ngx_ailink_endpoints.c */
ngx_int_t ngx_ailink_health_handler(ngx_http_request_t *r);
ngx_int_t ngx_ailink_error_page_handler(ngx_http_request_t *r);
/* GET or HEAD only, the body (a C string) with the given status */
ngx_int_t ngx_ailink_endpoint_json(ngx_http_request_t *r, ngx_uint_t status,
    const char *body);

/*
 * ngx_ailink_ready.c: /readyz and its checks.  A check returns "ok" or
 * the state that makes the gateway not ready ("down", "missing"), from
 * what it keeps; it never waits for a dependency.
 */
typedef const char *(*ngx_ailink_ready_check_pt)(ngx_http_request_t *r,
    void *data);

extern ngx_module_t  ngx_ailink_ready_module;

ngx_int_t ngx_ailink_ready_handler(ngx_http_request_t *r);
ngx_int_t ngx_ailink_ready_add_check(ngx_conf_t *cf, const char *name,
    ngx_ailink_ready_check_pt check, void *data);
/* the dependencies' checks (all but "config"): up to n names and states */
ngx_uint_t ngx_ailink_ready_backends(ngx_http_request_t *r, ngx_str_t *names,
    ngx_uint_t *up, ngx_uint_t n);


#endif /* _NGX_AILINK_AUTH_H_INCLUDED_ */
