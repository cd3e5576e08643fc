
/*
 * Copyright (C) AILink
 *
 * Token authentication.  In the access phase the bearer token is hashed
 * with SHA-256 and looked up among the tokens of the config-as-code file;
 * an unknown, disabled or expired token is refused with 401 in the
 * contract's envelope.  The module also owns the "ailink_config" file, the
 * request id every gateway response carries, and the small endpoints that
 * need no token (health, readiness, the JSON error page).
 */


#include "ngx_ailink_common.h"
#include "ngx_ailink_auth.h"
#include <openssl/evp.h>


#define NGX_AILINK_TOKEN_MAX_LEN  256


typedef struct {
    ngx_flag_t          enable;
} ngx_ailink_auth_loc_conf_t;


static ngx_int_t ngx_ailink_auth_handler(ngx_http_request_t *r);
static void ngx_ailink_auth_exit_process(ngx_cycle_t *cycle);
static ngx_int_t ngx_ailink_auth_header_filter(ngx_http_request_t *r);
static void ngx_ailink_auth_request_headers(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx);
static void *ngx_ailink_auth_create_main_conf(ngx_conf_t *cf);
static void *ngx_ailink_auth_create_loc_conf(ngx_conf_t *cf);
static char *ngx_ailink_auth_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static void ngx_ailink_auth_ignore_accel(ngx_conf_t *cf);
static char *ngx_ailink_auth_config(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_ailink_auth_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_ailink_auth_postconfiguration(ngx_conf_t *cf);


static ngx_command_t  ngx_ailink_auth_commands[] = {

    { ngx_string("ailink_config"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_ailink_auth_config,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ailink_admin_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_ailink_admin_key_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ailink_auth"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ailink_auth_loc_conf_t, enable),
      NULL },

    { ngx_string("ailink_health"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_ailink_conf_set_handler,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      ngx_ailink_health_handler },

    { ngx_string("ailink_ready"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_ailink_conf_set_handler,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      ngx_ailink_ready_handler },

    { ngx_string("ailink_error_page"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_ailink_conf_set_handler,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      ngx_ailink_error_page_handler },

      ngx_null_command
};


static ngx_http_module_t  ngx_ailink_auth_module_ctx = {
    ngx_ailink_auth_preconfiguration,      /* preconfiguration */
    ngx_ailink_auth_postconfiguration,     /* postconfiguration */

    ngx_ailink_auth_create_main_conf,      /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_ailink_auth_create_loc_conf,       /* create location configuration */
    ngx_ailink_auth_merge_loc_conf         /* merge location configuration */
};


ngx_module_t  ngx_ailink_auth_module = {
    NGX_MODULE_V1,
    &ngx_ailink_auth_module_ctx,           /* module context */
    ngx_ailink_auth_commands,              /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_ailink_auth_cache_flush,           /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_ailink_auth_exit_process,          /* exit process */
    ngx_ailink_auth_exit_process,          /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;

ngx_ailink_token_find_pt  ngx_ailink_token_find_store;
ngx_ailink_token_find_id_pt  ngx_ailink_token_find_id_store;


ngx_ailink_conf_t *
ngx_ailink_get_conf(ngx_http_request_t *r)
{
    ngx_ailink_auth_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_ailink_auth_module);

    return amcf->conf;
}


/* whether the location is a gateway location: routing happens only there */

ngx_uint_t
ngx_ailink_auth_enabled(ngx_http_request_t *r)
{
    ngx_ailink_auth_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_ailink_auth_module);

    return alcf->enable;
}


/*
 * SHA-256 through a digest fetched once per process: OpenSSL 3's one-shot
 * SHA256() looks the algorithm up again on every call.
 */

static EVP_MD      *ngx_ailink_sha256_md;
static EVP_MD_CTX  *ngx_ailink_sha256_ctx;


static ngx_int_t
ngx_ailink_sha256(u_char *data, size_t len, u_char *out)
{
    if (ngx_ailink_sha256_md == NULL) {
        ngx_ailink_sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
        ngx_ailink_sha256_ctx = EVP_MD_CTX_new();

        if (ngx_ailink_sha256_md == NULL || ngx_ailink_sha256_ctx == NULL) {
            ngx_ailink_auth_exit_process(NULL);
            return NGX_ERROR;
        }
    }

    if (EVP_DigestInit_ex2(ngx_ailink_sha256_ctx, ngx_ailink_sha256_md, NULL)
        != 1
        || EVP_DigestUpdate(ngx_ailink_sha256_ctx, data, len) != 1
        || EVP_DigestFinal_ex(ngx_ailink_sha256_ctx, out, NULL) != 1)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_ailink_auth_exit_process(ngx_cycle_t *cycle)
{
    EVP_MD_CTX_free(ngx_ailink_sha256_ctx);
    EVP_MD_free(ngx_ailink_sha256_md);

    ngx_ailink_sha256_ctx = NULL;
    ngx_ailink_sha256_md = NULL;
}


static ngx_int_t
ngx_ailink_auth_refuse(ngx_http_request_t *r, const char *why)
{
    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "ailink: token refused: %s", why);

    ngx_ailink_finalize_error(r, NGX_HTTP_UNAUTHORIZED, "invalid_token",
                              why, NULL);

    return NGX_DONE;
}


static ngx_int_t
ngx_ailink_auth_handler(ngx_http_request_t *r)
{
    u_char                       hash[NGX_AILINK_SHA256_LEN];
    uint64_t                     mac[2];
    ngx_str_t                    token;
    ngx_ailink_ctx_t            *ctx;
    ngx_ailink_conf_t           *conf;
    ngx_ailink_token_t          *tok;
    ngx_ailink_auth_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_ailink_auth_module);

    if (!alcf->enable || r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_ailink_create_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->token) {
        /* the phases run again after an internal redirect */
        return NGX_OK;
    }

    ngx_ailink_auth_request_headers(r, ctx);

    conf = ngx_ailink_get_conf(r);

    if (conf == NULL) {
        /* "ailink_auth on" without "ailink_config": fail closed */
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "ailink: \"ailink_auth\" is on but no \"ailink_config\" "
                      "is set");
        ngx_ailink_finalize_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                  "internal_error",
                                  "the gateway has no token configuration",
                                  NULL);
        return NGX_DONE;
    }

    if (r->headers_in.authorization == NULL) {
        /* a browser's WebSocket carries it in Sec-WebSocket-Protocol */
        if (ngx_ailink_realtime_token(r, &token) != NGX_OK) {
            return ngx_ailink_auth_refuse(r, "missing bearer token in the "
                                             "Authorization header");
        }

    } else {
        token = r->headers_in.authorization->value;

        if (token.len <= sizeof("Bearer ") - 1
            || ngx_strncasecmp(token.data, (u_char *) "Bearer ",
                               sizeof("Bearer ") - 1) != 0)
        {
            return ngx_ailink_auth_refuse(r, "the Authorization header must "
                                             "be \"Bearer <token>\"");
        }

        token.data += sizeof("Bearer ") - 1;
        token.len -= sizeof("Bearer ") - 1;

        while (token.len && token.data[0] == ' ') {
            token.data++;
            token.len--;
        }
    }

    if (token.len > NGX_AILINK_TOKEN_MAX_LEN
        || token.len <= sizeof(NGX_AILINK_TOKEN_PREFIX) - 1
        || ngx_strncmp(token.data, NGX_AILINK_TOKEN_PREFIX,
                       sizeof(NGX_AILINK_TOKEN_PREFIX) - 1) != 0)
    {
        return ngx_ailink_auth_refuse(r, "invalid token");
    }

    tok = ngx_ailink_auth_cache_find(conf, &token, mac);

    if (tok == NULL) {
        if (ngx_ailink_sha256(token.data, token.len, hash) != NGX_OK) {
            /* fail closed */
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "ailink: SHA-256 is not available");
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        tok = ngx_ailink_token_find(conf, hash);

        if (tok) {
            ngx_ailink_auth_cache_add(conf, mac, tok);

        } else if (ngx_ailink_token_find_store) {
            tok = ngx_ailink_token_find_store(r, hash);
        }
    }

    if (tok == NULL) {
        return ngx_ailink_auth_refuse(r, "invalid token");
    }

    if (!tok->enabled) {
        return ngx_ailink_auth_refuse(r, "token is disabled");
    }

    if (tok->expires && tok->expires <= ngx_time()) {
        return ngx_ailink_auth_refuse(r, "token has expired");
    }

    ctx->token = tok;

    if (ctx->agent_name.len == 0) {
        ctx->agent_name = tok->agent_name;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ailink auth: token \"%V\" project \"%V\"",
                   &tok->id, &tok->project);

    return NGX_OK;
}


static void
ngx_ailink_auth_request_headers(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx)
{
    ngx_uint_t        i;
    ngx_str_t        *dst;
    ngx_table_elt_t  *h;

    static struct {
        ngx_str_t     name;
        size_t        offset;
    } headers[] = {
        { ngx_string("X-AILink-Agent-Name"),
          offsetof(ngx_ailink_ctx_t, agent_name) },
        { ngx_string("X-AILink-Session-Id"),
          offsetof(ngx_ailink_ctx_t, session_id) },
        { ngx_string("X-AILink-Parent-Span-Id"),
          offsetof(ngx_ailink_ctx_t, parent_span_id) },
        { ngx_string("X-AILink-Properties"),
          offsetof(ngx_ailink_ctx_t, properties) }
    };

    for (i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        h = ngx_ailink_find_header(r, (char *) headers[i].name.data,
                                   headers[i].name.len);
        if (h) {
            dst = (ngx_str_t *) ((u_char *) ctx + headers[i].offset);
            *dst = h->value;
        }
    }
}


static ngx_int_t
ngx_ailink_auth_header_filter(ngx_http_request_t *r)
{
    ngx_table_elt_t   *h;
    ngx_ailink_ctx_t  *ctx;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_ailink_get_ctx(r);

    if (ctx == NULL || ctx->request_id.len == 0) {
        return ngx_http_next_header_filter(r);
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "X-AILink-Request-Id");
    h->value = ctx->request_id;

    return ngx_http_next_header_filter(r);
}


static void *
ngx_ailink_auth_create_main_conf(ngx_conf_t *cf)
{
    return ngx_pcalloc(cf->pool, sizeof(ngx_ailink_auth_main_conf_t));
}


static void *
ngx_ailink_auth_create_loc_conf(ngx_conf_t *cf)
{
    ngx_ailink_auth_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_ailink_auth_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->enable = NGX_CONF_UNSET;

    return conf;
}


static char *
ngx_ailink_auth_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_ailink_auth_loc_conf_t *prev = parent;
    ngx_ailink_auth_loc_conf_t *conf = child;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);

    if (conf->enable) {
        ngx_ailink_auth_ignore_accel(cf);
    }

    return NGX_CONF_OK;
}


/*
 * An upstream is not trusted with nginx's X-Accel-* control headers on a
 * gateway location: X-Accel-Redirect would send the request, real
 * credential and all, wherever the upstream names, unaudited.  The proxy
 * module's location configuration starts with its ngx_http_upstream_conf_t,
 * and is merged before this module's (static modules come first), so the
 * headers are ignored as if "proxy_ignore_headers" named them.
 */

static void
ngx_ailink_auth_ignore_accel(ngx_conf_t *cf)
{
    ngx_uint_t                 i;
    ngx_module_t             **modules;
    ngx_http_conf_ctx_t       *ctx;
    ngx_http_upstream_conf_t  *ucf;

    modules = cf->cycle->modules;
    ctx = cf->ctx;

    for (i = 0; modules[i]; i++) {
        if (modules[i]->type != NGX_HTTP_MODULE
            || ngx_strcmp(modules[i]->name, "ngx_http_proxy_module") != 0)
        {
            continue;
        }

        ucf = ctx->loc_conf[modules[i]->ctx_index];

        ucf->ignore_headers |= NGX_HTTP_UPSTREAM_IGN_XA_REDIRECT
                               |NGX_HTTP_UPSTREAM_IGN_XA_EXPIRES
                               |NGX_HTTP_UPSTREAM_IGN_XA_LIMIT_RATE
                               |NGX_HTTP_UPSTREAM_IGN_XA_BUFFERING
                               |NGX_HTTP_UPSTREAM_IGN_XA_CHARSET;
        return;
    }
}


static char *
ngx_ailink_auth_config(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_ailink_auth_main_conf_t *amcf = conf;

    ngx_str_t  *value, file;

    if (amcf->conf) {
        return "is duplicate";
    }

    value = cf->args->elts;
    file = value[1];

    if (ngx_conf_full_name(cf->cycle, &file, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    amcf->conf = ngx_ailink_conf_load(cf, &file);

    if (amcf->conf == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* a directive that makes the location's content handler cmd->post */

char *
ngx_ailink_conf_set_handler(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "is duplicate: the location already has a content handler";
    }

    clcf->handler = (ngx_http_handler_pt) cmd->post;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_ailink_auth_preconfiguration(ngx_conf_t *cf)
{
    ngx_ailink_json_init();

    return ngx_ailink_add_variables(cf);
}


static ngx_int_t
ngx_ailink_auth_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    if (ngx_ailink_admin_keys_merge(cf,
            ngx_http_conf_get_module_main_conf(cf, ngx_ailink_auth_module))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_ailink_auth_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_ailink_auth_header_filter;

    return NGX_OK;
}
