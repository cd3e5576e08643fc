
/*
 * Copyright (C) AILink
 *
 * Circuit breakers: the module (ngx_ailink_breaker_module.c), the
 * tokens' settings from the config file and at run time, and the small
 * API (ngx_ailink_breaker_api.c) the admin API can absorb later.
 */


#ifndef _NGX_AILINK_BREAKER_H_INCLUDED_
#define _NGX_AILINK_BREAKER_H_INCLUDED_


#include "ngx_ailink_common.h"
#include "ngx_ailink_state.h"


#define NGX_AILINK_BREAKER_CLOSED     0
#define NGX_AILINK_BREAKER_OPEN       1
#define NGX_AILINK_BREAKER_HALF_OPEN  2

/* "bv": the time it opened above, consecutive failures below */
#define NGX_AILINK_BREAKER_SHIFT      20
#define NGX_AILINK_BREAKER_MASK       ((1 << NGX_AILINK_BREAKER_SHIFT) - 1)


typedef struct {
    ngx_flag_t                  enabled;
    ngx_uint_t                  threshold;  /* failure_threshold */
    time_t                      cooldown;   /* recovery_cooldown_secs */
    ngx_uint_t                  half_open;  /* half_open_max_requests */
} ngx_ailink_breaker_conf_t;


/* a token's "circuit_breaker": -1 where the file leaves a field out */
typedef struct {
    ngx_int_t                   enabled;
    ngx_int_t                   threshold;
    ngx_int_t                   cooldown;
    ngx_int_t                   half_open;
} ngx_ailink_breaker_fields_t;


extern ngx_module_t  ngx_ailink_breaker_module;


/* ngx_ailink_breaker_module.c */
ngx_ailink_state_t *ngx_ailink_breaker_state(ngx_http_request_t *r);
ngx_int_t ngx_ailink_breaker_key(ngx_pool_t *pool, char kind,
    ngx_str_t *scope, ngx_str_t *key);
int64_t ngx_ailink_breaker_get(ngx_ailink_state_t *st, ngx_pool_t *pool,
    char kind, ngx_str_t *scope);
ngx_int_t ngx_ailink_breaker_set(ngx_ailink_state_t *st, ngx_pool_t *pool,
    char kind, ngx_str_t *scope, int64_t v);
ngx_uint_t ngx_ailink_breaker_status(ngx_ailink_state_t *st,
    ngx_pool_t *pool, ngx_str_t *scope, time_t cooldown, time_t *left,
    int64_t *value);

/* ngx_ailink_breaker_share.c: with backend=redis */
void ngx_ailink_breaker_share_tell(ngx_ailink_state_t *redis,
    ngx_pool_t *pool, ngx_str_t *scope, time_t opened, time_t cooldown,
    int64_t failures);
ngx_int_t ngx_ailink_breaker_share_init(ngx_cycle_t *cycle,
    ngx_ailink_state_t *redis, ngx_ailink_state_t *zone);

/* ngx_ailink_breaker_api.c */
ngx_int_t ngx_ailink_breaker_token_conf(ngx_http_request_t *r,
    ngx_ailink_state_t *st, ngx_ailink_token_t *tok,
    ngx_ailink_breaker_conf_t *defaults, ngx_ailink_breaker_conf_t *out);
ngx_int_t ngx_ailink_breaker_api_handler(ngx_http_request_t *r);
ngx_ailink_breaker_conf_t *ngx_ailink_breaker_loc_defaults(
    ngx_http_request_t *r);

/* ngx_ailink_admin_key.c */
ngx_int_t ngx_ailink_admin_key_check(ngx_http_request_t *r);


#endif /* _NGX_AILINK_BREAKER_H_INCLUDED_ */
