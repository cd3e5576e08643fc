
/*
 * Copyright (C) AILink
 *
 * Provider fallbacks: the "fallbacks" of the config file
 * (ngx_ailink_fallback_conf.c) and the module that retries the next target
 * when an upstream fails before anything was sent to the client
 * (ngx_ailink_fallback_module.c).
 */


#ifndef _NGX_AILINK_FALLBACK_H_INCLUDED_
#define _NGX_AILINK_FALLBACK_H_INCLUDED_


#include "ngx_ailink_common.h"


/* ailink_fallback_on: what makes the next target be tried */
/* (0x0001 is NGX_CONF_BITMASK_SET) */
#define NGX_AILINK_FALLBACK_OFF       0x0002
#define NGX_AILINK_FALLBACK_ERROR     0x0004
#define NGX_AILINK_FALLBACK_TIMEOUT   0x0008
#define NGX_AILINK_FALLBACK_5XX       0x0010
#define NGX_AILINK_FALLBACK_429       0x0020
#define NGX_AILINK_FALLBACK_BREAKER   0x0040

/* targets of one model; attempts of one request (internal redirects) */
#define NGX_AILINK_FALLBACK_MAX       8


typedef struct {
    ngx_str_t                   model;
    ngx_ailink_provider_t      *provider;   /* NULL: routed by the model */
} ngx_ailink_fallback_target_t;


typedef struct {
    ngx_str_t                   model;      /* without a trailing '*' */
    ngx_uint_t                  prefix;     /* it had one */
    ngx_array_t                 targets;    /* ngx_ailink_fallback_target_t */
} ngx_ailink_fallback_rule_t;


/* ngx_ailink_fallback_conf.c */
ngx_ailink_fallback_rule_t *ngx_ailink_fallback_find(ngx_ailink_conf_t *conf,
    ngx_str_t *model);

/* ngx_ailink_fallback_module.c */
ngx_int_t ngx_ailink_fallback_init(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx);
ngx_int_t ngx_ailink_fallback_skip(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx, ngx_str_t *why);

/* ngx_ailink_translate_module.c */
ngx_int_t ngx_ailink_translate_reroute(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx, ngx_str_t *body, ngx_str_t *model,
    ngx_ailink_provider_t *provider);

/* ngx_ailink_breaker_module.c */
ngx_int_t ngx_ailink_breaker_check(ngx_http_request_t *r);
void ngx_ailink_breaker_attempt(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_uint_t status, ngx_str_t *why);


#endif /* _NGX_AILINK_FALLBACK_H_INCLUDED_ */
