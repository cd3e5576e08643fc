
/*
 * Copyright (C) AILink
 *
 * The response cache: keys (ngx_ailink_cache_key.c) and the module that
 * looks entries up, answers hits and stores complete answers
 * (ngx_ailink_cache_module.c).  Entries live behind the state interface
 * (ngx_ailink_state.h) as records with a TTL, so that a Redis backend
 * serves the cache as it serves the counters.
 */


#ifndef _NGX_AILINK_CACHE_H_INCLUDED_
#define _NGX_AILINK_CACHE_H_INCLUDED_


#include "ngx_ailink_common.h"
#include "ngx_ailink_state.h"


/* ngx_ailink_cache_key.c */
ngx_int_t ngx_ailink_cache_digest(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx, ngx_str_t *guardrails, u_char *digest,
    ngx_uint_t *random);
void ngx_ailink_cache_key_free(void);

/* ngx_ailink_admin_key.c: an "admin_keys" check for the small APIs */
ngx_int_t ngx_ailink_admin_key_check(ngx_http_request_t *r);

/* ngx_ailink_cache_module.c: GET .../stats, POST .../flush */
ngx_int_t ngx_ailink_cache_api_handler(ngx_http_request_t *r);


#endif /* _NGX_AILINK_CACHE_H_INCLUDED_ */
