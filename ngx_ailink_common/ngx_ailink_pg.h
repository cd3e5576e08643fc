
/*
 * Copyright (C) AILink
 *
 * What the PostgreSQL directives (ailink_audit_pg, ailink_store_pg)
 * share: the connection string, read when the configuration is.
 */


#ifndef _NGX_AILINK_PG_H_INCLUDED_
#define _NGX_AILINK_PG_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


typedef struct {
    const char                **keywords;   /* for PQconnect*Params(), */
    const char                **values;     /* the password among them */
    ngx_str_t                   name;       /* host:port/dbname, for logs */
} ngx_ailink_pg_conninfo_t;


char *ngx_ailink_pg_conninfo(ngx_conf_t *cf, const char *directive,
    ngx_str_t *text, char *password, const char **defaults,
    ngx_flag_t resolve, ngx_ailink_pg_conninfo_t *ci);


#endif /* _NGX_AILINK_PG_H_INCLUDED_ */
