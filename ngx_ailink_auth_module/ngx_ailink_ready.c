
/*
 * Copyright (C) AILink
 *
 * GET /readyz: whether the gateway can serve.  The configuration is the
 * one check of the embedded tier; other modules add theirs (the
 * multi-node tier: "redis", "postgresql") with ngx_ailink_ready_add_check().
 * A check answers from state it keeps (a connection up or down), never by
 * asking a dependency from the request: the probe does not block a worker.
 *
 *   200 {"status":"ready","checks":{"config":"ok","redis":"ok"}}
 *   503 {"status":"not_ready","checks":{"config":"ok","redis":"down"}}
 */


#include "ngx_ailink_auth.h"


typedef struct {
    ngx_str_t                   name;
    ngx_ailink_ready_check_pt   check;
    void                       *data;
} ngx_ailink_ready_check_t;


typedef struct {
    ngx_array_t                 checks;     /* ngx_ailink_ready_check_t */
} ngx_ailink_ready_main_conf_t;


static void *ngx_ailink_ready_create_main_conf(ngx_conf_t *cf);


static ngx_http_module_t  ngx_ailink_ready_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_ailink_ready_create_main_conf,     /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_ailink_ready_module = {
    NGX_MODULE_V1,
    &ngx_ailink_ready_module_ctx,          /* module context */
    NULL,                                  /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* the embedded tier's one dependency: the loaded configuration */

static const char *
ngx_ailink_ready_config(ngx_http_request_t *r, void *data)
{
    return ngx_ailink_get_conf(r) ? "ok" : "missing";
}


ngx_int_t
ngx_ailink_ready_add_check(ngx_conf_t *cf, const char *name,
    ngx_ailink_ready_check_pt check, void *data)
{
    ngx_ailink_ready_check_t      *c;
    ngx_ailink_ready_main_conf_t  *rmcf;

    rmcf = ngx_http_conf_get_module_main_conf(cf, ngx_ailink_ready_module);

    c = ngx_array_push(&rmcf->checks);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->name.data = (u_char *) name;
    c->name.len = ngx_strlen(name);
    c->check = check;
    c->data = data;

    return NGX_OK;
}


/* for ailink_backend_up: the checks other modules added, 1 when "ok" */

ngx_uint_t
ngx_ailink_ready_backends(ngx_http_request_t *r, ngx_str_t *names,
    ngx_uint_t *up, ngx_uint_t n)
{
    ngx_uint_t                     i, k;
    ngx_ailink_ready_check_t      *c;
    ngx_ailink_ready_main_conf_t  *rmcf;

    rmcf = ngx_http_get_module_main_conf(r, ngx_ailink_ready_module);
    c = rmcf->checks.elts;

    /* checks[0] is the configuration's, added at creation */

    for (i = 1, k = 0; i < rmcf->checks.nelts && k < n; i++, k++) {
        names[k] = c[i].name;
        up[k] = (ngx_strcmp(c[i].check(r, c[i].data), "ok") == 0);
    }

    return k;
}


static void *
ngx_ailink_ready_create_main_conf(ngx_conf_t *cf)
{
    ngx_ailink_ready_check_t      *c;
    ngx_ailink_ready_main_conf_t  *rmcf;

    rmcf = ngx_pcalloc(cf->pool, sizeof(ngx_ailink_ready_main_conf_t));
    if (rmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&rmcf->checks, cf->pool, 4,
                       sizeof(ngx_ailink_ready_check_t))
        != NGX_OK)
    {
        return NULL;
    }

    c = ngx_array_push(&rmcf->checks);
    if (c == NULL) {
        return NULL;
    }

    ngx_str_set(&c->name, "config");
    c->check = ngx_ailink_ready_config;
    c->data = NULL;

    return rmcf;
}


ngx_int_t
ngx_ailink_ready_handler(ngx_http_request_t *r)
{
    u_char                        *p;
    size_t                         len;
    ngx_str_t                      state;
    ngx_uint_t                     i, ready;
    const char                   **states;
    ngx_ailink_ready_check_t      *c;
    ngx_ailink_ready_main_conf_t  *rmcf;

    rmcf = ngx_http_get_module_main_conf(r, ngx_ailink_ready_module);
    c = rmcf->checks.elts;

    states = ngx_palloc(r->pool, rmcf->checks.nelts * sizeof(char *));
    if (states == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ready = 1;
    len = sizeof("{\"status\":\"not_ready\",\"checks\":{}}\n");

    for (i = 0; i < rmcf->checks.nelts; i++) {
        states[i] = c[i].check(r, c[i].data);

        if (ngx_strcmp(states[i], "ok") != 0) {
            ready = 0;
        }

        state.data = (u_char *) states[i];
        state.len = ngx_strlen(states[i]);

        len += sizeof(",\"\":\"\"") + ngx_ailink_json_escape_len(&c[i].name)
               + ngx_ailink_json_escape_len(&state);
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    state.data = p;

    p = ready ? ngx_cpymem(p, "{\"status\":\"ready\",\"checks\":{",
                           sizeof("{\"status\":\"ready\",\"checks\":{") - 1)
              : ngx_cpymem(p, "{\"status\":\"not_ready\",\"checks\":{",
                           sizeof("{\"status\":\"not_ready\",\"checks\":{")
                           - 1);

    for (i = 0; i < rmcf->checks.nelts; i++) {
        if (i) {
            *p++ = ',';
        }

        *p++ = '"';
        p = ngx_ailink_json_escape(p, &c[i].name);
        *p++ = '"';
        *p++ = ':';
        *p++ = '"';
        p = (u_char *) ngx_cpystrn(p, (u_char *) states[i],
                                   ngx_strlen(states[i]) + 1);
        *p++ = '"';
    }

    *p++ = '}';
    *p++ = '}';
    *p++ = '\n';
    *p = '\0';

    return ngx_ailink_endpoint_json(r, ready ? NGX_HTTP_OK
                                             : NGX_HTTP_SERVICE_UNAVAILABLE,
                                    (const char *) state.data);
}
