
/*
 * Copyright (C) AILink
 *
 * The audit sink to PostgreSQL (ngx_ailink_audit_pg.c): the audit module
 * hands it each record it makes.
 */


#ifndef _NGX_AILINK_AUDIT_PG_H_INCLUDED_
#define _NGX_AILINK_AUDIT_PG_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


extern ngx_module_t  ngx_ailink_audit_pg_module;


/* whether "ailink_audit_pg" is configured */
ngx_int_t ngx_ailink_audit_pg_enabled(ngx_http_request_t *r);

/* one record, a JSON object and its "\n"; copied, never blocks */
void ngx_ailink_audit_pg_add(ngx_log_t *log, u_char *line, size_t len);


#endif /* _NGX_AILINK_AUDIT_PG_H_INCLUDED_ */
