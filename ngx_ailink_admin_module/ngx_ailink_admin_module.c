
/*
 * Copyright (C) AILink
 *
 * The admin API ("ailink_admin_api;" on a location the operator chooses)
 * and the store behind it ("ailink_store_dir").  Requests carry an admin
 * key, "Authorization: Bearer ailink_admin_...", whose SHA-256 is declared
 * with "ailink_admin_key" or the file's "admin_keys" (one set, checked by
 * ngx_ailink_admin_key_match() of the auth module); JSON in and out,
 * errors in the contract's envelope.  The store's objects are compiled by
 * each worker into an overlay of the config-as-code file (same loader,
 * same structures), and recompiled when the store's generation changes:
 * a token created, patched or revoked through the API is seen by every
 * worker on its next request.  Objects of the file are read-only through
 * the API (409).
 */


#include "ngx_ailink_admin.h"
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/crypto.h>
#include <ngx_thread_pool.h>


#define NGX_AILINK_ADMIN_ROUTES   16


typedef struct {
    ngx_str_t                    name;
    ngx_ailink_admin_handler_pt  handler;
} ngx_ailink_admin_route_t;


static void *ngx_ailink_admin_create_main_conf(ngx_conf_t *cf);
static char *ngx_ailink_admin_data_dir(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_ailink_admin_store_pg(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_ailink_admin_master_key(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_ailink_admin_api(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_ailink_admin_audit_source(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_ailink_admin_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_ailink_admin_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_ailink_admin_handler(ngx_http_request_t *r);
static void ngx_ailink_admin_body(ngx_http_request_t *r);
static void ngx_ailink_admin_committed(ngx_http_request_t *r, ngx_int_t rc);
static void ngx_ailink_admin_dispatch(ngx_http_request_t *r);
static ngx_ailink_token_t *ngx_ailink_admin_token_find(ngx_http_request_t *r,
    u_char *hash);
static ngx_int_t ngx_ailink_admin_service_find(ngx_http_request_t *r,
    ngx_str_t *name, ngx_ailink_base_url_t **base,
    ngx_ailink_credential_t **credential);
static ngx_int_t ngx_ailink_admin_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_ailink_admin_init_process(ngx_cycle_t *cycle);
static void ngx_ailink_admin_exit_process(ngx_cycle_t *cycle);
static void ngx_ailink_admin_audit_what(ngx_ailink_admin_req_t *ar);


static ngx_command_t  ngx_ailink_admin_commands[] = {

    { ngx_string("ailink_store_dir"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_ailink_admin_data_dir,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ailink_store_pg"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_ailink_admin_store_pg,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ailink_vault_master_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_ailink_admin_master_key,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ailink_vault_previous_master_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_ailink_admin_master_key,
      NGX_HTTP_MAIN_CONF_OFFSET,
      1,
      NULL },

    { ngx_string("ailink_admin_audit_source"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_ailink_admin_audit_source,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ailink_admin_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_ailink_admin_api,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_ailink_admin_module_ctx = {
    ngx_ailink_admin_preconfiguration,     /* preconfiguration */
    ngx_ailink_admin_postconfiguration,    /* postconfiguration */

    ngx_ailink_admin_create_main_conf,     /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_ailink_admin_module = {
    NGX_MODULE_V1,
    &ngx_ailink_admin_module_ctx,          /* module context */
    ngx_ailink_admin_commands,             /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_ailink_admin_init_module,          /* init module */
    ngx_ailink_admin_init_process,         /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_ailink_admin_exit_process,         /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/*
 * The resources: other branches plug theirs in here (or through
 * ngx_ailink_admin_route_add()): "approvals", "cache", "health" and the
 * tokens' "circuit-breaker" sub-resource are theirs.
 */

static ngx_ailink_admin_route_t  ngx_ailink_admin_routes[
                                                    NGX_AILINK_ADMIN_ROUTES] = {
    { ngx_string("tokens"), ngx_ailink_admin_tokens },
    { ngx_string("credentials"), ngx_ailink_admin_credentials },
    { ngx_string("services"), ngx_ailink_admin_services },
    { ngx_string("config"), ngx_ailink_admin_config },
    { ngx_string("audit"), ngx_ailink_admin_audit },
    { ngx_string("policies"), ngx_ailink_admin_policies },
    { ngx_null_string, NULL }
};


/* the admin key of the request being handled, as a fingerprint */
static u_char  ngx_ailink_admin_who[9];

/* this worker's compiled copy of the store */
static ngx_ailink_admin_overlay_t  *ngx_ailink_admin_current;


ngx_int_t
ngx_ailink_admin_route_add(const char *resource,
    ngx_ailink_admin_handler_pt handler)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_AILINK_ADMIN_ROUTES - 1; i++) {
        if (ngx_ailink_admin_routes[i].handler == NULL) {
            ngx_ailink_admin_routes[i].name.data = (u_char *) resource;
            ngx_ailink_admin_routes[i].name.len = ngx_strlen(resource);
            ngx_ailink_admin_routes[i].handler = handler;
            return NGX_OK;
        }

        if (ngx_strcmp(ngx_ailink_admin_routes[i].name.data, resource) == 0)
        {
            ngx_ailink_admin_routes[i].handler = handler;
            return NGX_OK;
        }
    }

    return NGX_ERROR;
}


static void *
ngx_ailink_admin_create_main_conf(ngx_conf_t *cf)
{
    ngx_ailink_admin_main_conf_t  *amcf;

    amcf = ngx_pcalloc(cf->pool, sizeof(ngx_ailink_admin_main_conf_t));
    if (amcf == NULL) {
        return NULL;
    }

    return amcf;
}


static char *
ngx_ailink_admin_data_dir(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_ailink_admin_main_conf_t *amcf = conf;

    ssize_t     size;
    ngx_str_t  *value, dir;

    if (amcf->store) {
        return "is duplicate (or \"ailink_store_pg\" is set: one store)";
    }

    value = cf->args->elts;
    dir = value[1];
    size = 1024 * 1024;

    if (cf->args->nelts == 3) {
        if (ngx_strncmp(value[2].data, "size=", 5) != 0) {
            return "takes a directory and an optional size=<size>";
        }

        size = ngx_parse_size(&(ngx_str_t) { value[2].len - 5,
                                             value[2].data + 5 });
        if (size < (ssize_t) (8 * ngx_pagesize)) {
            return "has an invalid size (at least 8 pages)";
        }
    }

    if (ngx_conf_full_name(cf->cycle, &dir, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    amcf->store = ngx_ailink_store_file_create(cf, &dir, size,
                                               &ngx_ailink_admin_module);
    if (amcf->store == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* ailink_store_pg "conninfo" [password_file=] [size=] [poll=] [timeout=]
   [keep=]: the store in PostgreSQL, shared by several gateways */

static char *
ngx_ailink_admin_store_pg(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_ailink_admin_main_conf_t *amcf = conf;

    if (amcf->store) {
        return "is duplicate (or \"ailink_store_dir\" is set: one store)";
    }

    return ngx_ailink_store_pg_create(cf, &amcf->store,
                                      &ngx_ailink_admin_module);
}


static ngx_int_t
ngx_ailink_admin_hex(ngx_str_t *hex, u_char *out, size_t n)
{
    ngx_int_t   c;
    ngx_uint_t  i;

    if (hex->len != 2 * n) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        c = ngx_hextoi(&hex->data[2 * i], 2);
        if (c == NGX_ERROR) {
            return NGX_ERROR;
        }

        out[i] = (u_char) c;
    }

    return NGX_OK;
}


/* "env:NAME" or "file:/path": 64 hex digits (openssl rand -hex 32) */

static char *
ngx_ailink_admin_master_key(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_ailink_admin_main_conf_t *amcf = conf;

    u_char           buf[130], *p;
    char            *val;
    ssize_t          n;
    ngx_fd_t         fd;
    ngx_str_t       *value, key, path;

    u_char          *dst;
    ngx_flag_t      *set;

    value = cf->args->elts;

    if (cmd->offset) {
        dst = amcf->previous;
        set = &amcf->previous_set;

    } else {
        dst = amcf->master;
        set = &amcf->master_set;
        amcf->master_source = value[1];
    }

    if (*set) {
        return "is duplicate";
    }

    if (value[1].len > 4 && ngx_strncmp(value[1].data, "env:", 4) == 0) {
        val = getenv((char *) value[1].data + 4);

        if (val == NULL || *val == '\0') {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "ailink_vault_master_key: environment "
                               "variable \"%s\" is not set (add \"env %s;\" "
                               "to the main context)",
                               value[1].data + 4, value[1].data + 4);
            return NGX_CONF_ERROR;
        }

        key.data = (u_char *) val;
        key.len = ngx_strlen(val);

    } else if (value[1].len > 5
               && ngx_strncmp(value[1].data, "file:", 5) == 0)
    {
        path.data = value[1].data + 5;
        path.len = value[1].len - 5;

        if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        fd = ngx_open_file(path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
        if (fd == NGX_INVALID_FILE) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                               "ailink_vault_master_key: cannot open \"%V\"",
                               &path);
            return NGX_CONF_ERROR;
        }

        n = ngx_read_fd(fd, buf, sizeof(buf));
        ngx_close_file(fd);

        if (n == -1) {
            return NGX_CONF_ERROR;
        }

        key.data = buf;
        key.len = n;

    } else {
        return "takes \"env:NAME\" or \"file:PATH\"";
    }

    p = key.data + key.len;

    while (p > key.data && (p[-1] == '\n' || p[-1] == '\r' || p[-1] == ' '))
    {
        p--;
    }

    key.len = p - key.data;

    if (ngx_ailink_admin_hex(&key, dst, NGX_AILINK_VAULT_KEY_LEN) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%V \"%V\": the key must be 64 hex digits "
                           "(openssl rand -hex 32)", &cmd->name, &value[1]);
        return NGX_CONF_ERROR;
    }

    ngx_explicit_memzero(buf, sizeof(buf));
    *set = 1;

    return NGX_CONF_OK;
}


static char *
ngx_ailink_admin_audit_source(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_ailink_admin_main_conf_t *amcf = conf;

    ngx_str_t  *value;

    if (amcf->audit_file.len || amcf->audit_pg) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == sizeof("postgresql") - 1
        && ngx_strcmp(value[1].data, "postgresql") == 0)
    {
        /* the PostgreSQL of ailink_audit_pg, checked at postconfiguration */
        amcf->audit_pg = 1;
        amcf->pg_line = cf->conf_file->line;

    } else {
        amcf->audit_file = value[1];

        if (ngx_conf_full_name(cf->cycle, &amcf->audit_file, 0) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    amcf->tp = ngx_thread_pool_add(cf, NULL);
    if (amcf->tp == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_ailink_admin_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t      *clcf;
    ngx_ailink_admin_main_conf_t  *amcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "is duplicate: the location already has a content handler";
    }

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_ailink_admin_module);

    if (amcf->store == NULL) {
        return "needs \"ailink_store_dir\" or \"ailink_store_pg\" in the "
               "http context, before it";
    }

    clcf->handler = ngx_ailink_admin_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_ailink_admin_preconfiguration(ngx_conf_t *cf)
{
    ngx_ailink_token_find_store = NULL;
    ngx_ailink_token_find_id_store = NULL;
    ngx_ailink_service_find = NULL;

    return ngx_ailink_admin_routes_init();
}


static ngx_int_t
ngx_ailink_admin_postconfiguration(ngx_conf_t *cf)
{
    ngx_ailink_admin_main_conf_t  *amcf;

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_ailink_admin_module);

    if (amcf->audit_pg
        && ngx_ailink_admin_audit_pg_init(cf, amcf) != NGX_CONF_OK)
    {
        return NGX_ERROR;
    }

    if (amcf->store) {
        ngx_ailink_token_find_store = ngx_ailink_admin_token_find;
        ngx_ailink_token_find_id_store = ngx_ailink_admin_token_find_id;
        ngx_ailink_service_find = ngx_ailink_admin_service_find;
    }

    return NGX_OK;
}


/* the loader's messages, caught for the client */

static u_char  ngx_ailink_admin_errbuf[NGX_MAX_CONF_ERRSTR];
static size_t  ngx_ailink_admin_errlen;


static void
ngx_ailink_admin_log_writer(ngx_log_t *log, ngx_uint_t level, u_char *buf,
    size_t len)
{
    u_char  *p, *last;

    if (ngx_ailink_admin_errlen) {
        return;
    }

    last = buf + len;

    /* "time [level] pid#tid: " comes first */
    p = ngx_strlchr(buf, last, '#');
    p = p ? ngx_strlchr(p, last, ':') : NULL;
    p = p ? p + 2 : buf;

    /* and the loader's "ailink_config \"name\": " */
    if (last - p > 14 && ngx_strncmp(p, "ailink_config ", 14) == 0) {
        buf = ngx_strlchr(p + 15, last, '"');
        if (buf && last - buf > 2) {
            p = buf + 3;
        }
    }

    while (last > p && (last[-1] == '\n' || last[-1] == '\r')) {
        last--;
    }

    len = ngx_min((size_t) (last - p), sizeof(ngx_ailink_admin_errbuf));
    ngx_memcpy(ngx_ailink_admin_errbuf, p, len);
    ngx_ailink_admin_errlen = len;
}


static cJSON *
ngx_ailink_admin_strip(cJSON *item, const char **keys)
{
    cJSON  *copy;

    copy = cJSON_Duplicate(item, 1);
    if (copy == NULL) {
        return NULL;
    }

    while (*keys) {
        cJSON_DeleteItemFromObjectCaseSensitive(copy, *keys++);
    }

    return copy;
}


static ngx_ailink_credential_t *
ngx_ailink_admin_cred_find(ngx_ailink_conf_t *conf, ngx_str_t *name)
{
    ngx_uint_t                i;
    ngx_ailink_credential_t  *cred;

    cred = conf->credentials.elts;

    for (i = 0; i < conf->credentials.nelts; i++) {
        if (cred[i].name.len == name->len
            && ngx_strncmp(cred[i].name.data, name->data, name->len) == 0)
        {
            return &cred[i];
        }
    }

    return NULL;
}


/*
 * Compile a store document against the file's configuration.  Errors are
 * the loader's own messages (for the API's 400), in "error".
 */

ngx_ailink_admin_overlay_t *
ngx_ailink_admin_compile(ngx_http_request_t *r,
    ngx_ailink_admin_main_conf_t *amcf, cJSON *doc, ngx_str_t *error)
{
    char                        where[160];
    cJSON                      *root, *list, *item, *copy, *v;
    ngx_log_t                   log;
    ngx_str_t                   name, sealed, url;
    ngx_pool_t                 *pool;
    ngx_uint_t                  i;
    ngx_conf_t                  cf;
    ngx_ailink_conf_t          *yaml;
    ngx_ailink_service_t       *svc;
    ngx_ailink_credential_t    *cred;
    ngx_ailink_admin_overlay_t *ov;

    static const char  *meta[] = { "created_at", "revoked_at", NULL };

    ngx_str_set(error, "");

    yaml = ngx_ailink_get_conf(r);
    if (yaml == NULL) {
        ngx_str_set(error, "the gateway has no \"ailink_config\"");
        return NULL;
    }

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return NULL;
    }

    ov = ngx_pcalloc(pool, sizeof(ngx_ailink_admin_overlay_t));
    if (ov == NULL) {
        goto failed;
    }

    ov->pool = pool;
    ov->conf = *yaml;
    ngx_str_set(&ov->conf.file, "admin API");

    if (ngx_array_init(&ov->conf.tokens, pool, 16,
                       sizeof(ngx_ailink_token_t)) != NGX_OK
        || ngx_array_init(&ov->conf.credentials, pool,
                          yaml->credentials.nelts + 8,
                          sizeof(ngx_ailink_credential_t)) != NGX_OK
        || ngx_array_init(&ov->services, pool, 8,
                          sizeof(ngx_ailink_service_t)) != NGX_OK)
    {
        goto failed;
    }

    ngx_memcpy(ngx_array_push_n(&ov->conf.credentials,
                                yaml->credentials.nelts),
               yaml->credentials.elts,
               yaml->credentials.nelts * sizeof(ngx_ailink_credential_t));

    ngx_memzero(&log, sizeof(ngx_log_t));
    log.log_level = NGX_LOG_ERR;
    log.writer = ngx_ailink_admin_log_writer;
    ngx_ailink_admin_errlen = 0;

    ngx_memzero(&cf, sizeof(ngx_conf_t));
    cf.pool = pool;
    cf.temp_pool = pool;
    cf.log = &log;
    cf.cycle = (ngx_cycle_t *) ngx_cycle;

    /* the vault's credentials */

    list = ngx_ailink_json_get(doc, "credentials");

    cJSON_ArrayForEach(item, list) {
        ngx_snprintf((u_char *) where, sizeof(where), "credentials.%s%Z",
                     item->string);

        name.data = (u_char *) item->string;
        name.len = ngx_strlen(item->string);

        v = ngx_ailink_json_get(item, "sealed");

        if (!amcf->master_set || !cJSON_IsString(v)) {
            ngx_snprintf(ngx_ailink_admin_errbuf,
                         sizeof(ngx_ailink_admin_errbuf),
                         "%s: no vault master key to open it%Z", where);
            ngx_ailink_admin_errlen = ngx_strlen(ngx_ailink_admin_errbuf);
            goto failed;
        }

        cred = ngx_array_push(&ov->conf.credentials);
        if (cred == NULL) {
            goto failed;
        }

        ngx_memzero(cred, sizeof(ngx_ailink_credential_t));

        cred->name.data = ngx_pstrdup(pool, &name);
        cred->name.len = name.len;

        sealed.data = (u_char *) v->valuestring;
        sealed.len = ngx_strlen(v->valuestring);

        copy = ngx_ailink_admin_strip(item, (const char *[]) {
                   "sealed", "created_at", "rotated_at", NULL });
        if (copy == NULL || cred->name.data == NULL) {
            cJSON_Delete(copy);
            goto failed;
        }

        if (ngx_ailink_conf_load_inject(&cf, &ov->conf, copy, where,
                                        &cred->inject)
            != NGX_OK)
        {
            cJSON_Delete(copy);
            goto failed;
        }

        cJSON_Delete(copy);

        if (ngx_ailink_vault_decrypt(pool, amcf->master, &name, &sealed,
                                     &cred->secret)
            != NGX_OK)
        {
            ngx_snprintf(ngx_ailink_admin_errbuf,
                         sizeof(ngx_ailink_admin_errbuf),
                         "%s: the vault master key does not open it%Z",
                         where);
            ngx_ailink_admin_errlen = ngx_strlen(ngx_ailink_admin_errbuf);
            goto failed;
        }
    }

    /* the tokens, by the file's loader */

    root = cJSON_CreateObject();
    list = cJSON_AddArrayToObject(root, "tokens");

    if (root == NULL || list == NULL) {
        cJSON_Delete(root);
        goto failed;
    }

    cJSON_ArrayForEach(item, ngx_ailink_json_get(doc, "tokens")) {
        copy = ngx_ailink_admin_strip(item, meta);
        if (copy == NULL) {
            cJSON_Delete(root);
            goto failed;
        }

        cJSON_AddItemToArray(list, copy);
    }

    if (ngx_ailink_conf_load_tokens(&cf, &ov->conf, root) != NGX_OK
        || ngx_ailink_breaker_conf_load(&cf, &ov->conf, root) != NGX_OK)
    {
        cJSON_Delete(root);
        goto failed;
    }

    cJSON_Delete(root);

    /* a hash of the file's would be shadowed by it: refused */

    {
        ngx_ailink_token_t  *t, *y;

        t = ov->conf.tokens.elts;

        for (i = 0; i < ov->conf.tokens.nelts; i++) {
            y = ngx_ailink_token_find(yaml, t[i].hash);

            if (y) {
                ngx_snprintf(ngx_ailink_admin_errbuf,
                             sizeof(ngx_ailink_admin_errbuf),
                             "token \"%V\" has the hash of token \"%V\" "
                             "of the config file%Z", &t[i].id, &y->id);
                ngx_ailink_admin_errlen = ngx_strlen(ngx_ailink_admin_errbuf);
                goto failed;
            }
        }
    }

    /* the API's policies, after the file's, by the file's loader */

    root = cJSON_CreateArray();
    if (root == NULL) {
        goto failed;
    }

    cJSON_ArrayForEach(item, ngx_ailink_json_get(doc, "policies")) {
        copy = ngx_ailink_admin_strip(item, (const char *[]) {
                   "created_at", "updated_at", NULL });
        if (copy == NULL) {
            cJSON_Delete(root);
            goto failed;
        }

        cJSON_AddItemToArray(root, copy);
    }

    if (ngx_ailink_policy_conf_store(r, &cf, &ov->conf, yaml, root)
        != NGX_OK)
    {
        cJSON_Delete(root);
        goto failed;
    }

    cJSON_Delete(root);

    /* the policies that apply to each (the loader sorted them) */

    i = 0;

    cJSON_ArrayForEach(item, ngx_ailink_json_get(doc, "tokens")) {
        ngx_ailink_token_t  *t;
        ngx_uint_t           k;

        ngx_snprintf((u_char *) where, sizeof(where), "tokens[%ui]%Z", i++);

        v = ngx_ailink_json_get(item, "id");
        t = ov->conf.tokens.elts;

        for (k = 0; k < ov->conf.tokens.nelts; k++) {
            if (ngx_strcmp(t[k].id.data, v->valuestring) == 0) {
                break;
            }
        }

        if (k < ov->conf.tokens.nelts
            && ngx_ailink_policy_conf_token(r, &cf, &ov->conf, &t[k],
                   ngx_ailink_json_get(item, "policies"), where)
               != NGX_OK)
        {
            goto failed;
        }
    }

    /* the services */

    i = 0;

    cJSON_ArrayForEach(item, ngx_ailink_json_get(doc, "services")) {
        ngx_snprintf((u_char *) where, sizeof(where), "services[%ui]%Z",
                     i++);

        svc = ngx_array_push(&ov->services);
        if (svc == NULL) {
            goto failed;
        }

        ngx_memzero(svc, sizeof(ngx_ailink_service_t));

        v = ngx_ailink_json_get(item, "name");

        if (!cJSON_IsString(v)
            || !cJSON_IsString(ngx_ailink_json_get(item, "base_url")))
        {
            ngx_snprintf(ngx_ailink_admin_errbuf,
                         sizeof(ngx_ailink_admin_errbuf),
                         "%s: \"name\" and \"base_url\" are required%Z",
                         where);
            ngx_ailink_admin_errlen = ngx_strlen(ngx_ailink_admin_errbuf);
            goto failed;
        }

        name.data = (u_char *) v->valuestring;
        name.len = ngx_strlen(v->valuestring);
        svc->name.data = ngx_pstrdup(pool, &name);
        svc->name.len = name.len;

        v = ngx_ailink_json_get(item, "base_url");
        url.len = ngx_strlen(v->valuestring);
        url.data = ngx_pnalloc(pool, url.len + 1);
        if (url.data) {
            ngx_memcpy(url.data, v->valuestring, url.len + 1);
        }

        if (svc->name.data == NULL || url.data == NULL) {
            goto failed;
        }

        if (ngx_ailink_conf_load_base_url(&cf, &ov->conf, &url, where,
                                          &svc->base)
            != NGX_OK)
        {
            goto failed;
        }

        v = ngx_ailink_json_get(item, "credential_id");

        if (cJSON_IsString(v)) {
            name.data = (u_char *) v->valuestring;
            name.len = ngx_strlen(v->valuestring);

            svc->credential = ngx_ailink_admin_cred_find(&ov->conf, &name);

            if (svc->credential == NULL) {
                ngx_snprintf(ngx_ailink_admin_errbuf,
                             sizeof(ngx_ailink_admin_errbuf),
                             "%s.credential_id: unknown credential "
                             "\"%V\"%Z", where, &name);
                ngx_ailink_admin_errlen = ngx_strlen(ngx_ailink_admin_errbuf);
                goto failed;
            }
        }
    }

    return ov;

failed:

    if (ngx_ailink_admin_errlen) {
        error->data = ngx_pnalloc(r->pool, ngx_ailink_admin_errlen);
        if (error->data) {
            ngx_memcpy(error->data, ngx_ailink_admin_errbuf,
                       ngx_ailink_admin_errlen);
            error->len = ngx_ailink_admin_errlen;
        }
    }

    ngx_destroy_pool(pool);

    return NULL;
}


/* this worker's overlay, recompiled when the store's generation moved */

ngx_ailink_admin_overlay_t *
ngx_ailink_admin_overlay(ngx_http_request_t *r,
    ngx_ailink_admin_main_conf_t *amcf)
{
    cJSON                       *doc;
    ngx_str_t                    text, error;
    ngx_uint_t                   gen;
    ngx_ailink_store_t          *st;
    ngx_ailink_admin_overlay_t  *ov, *old;

    st = amcf->store;
    old = ngx_ailink_admin_current;

    if (old && old->generation == st->ops->generation(st)) {
        return old;
    }

    if (st->ops->read(st, r->pool, &text, &gen) != NGX_OK) {
        return old;
    }

    doc = cJSON_Parse(text.len ? (char *) text.data : "{}");
    if (doc == NULL) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "ailink store: the document of generation %ui does not "
                      "parse; the previous one stays in use", gen);
        return old;
    }

    ov = ngx_ailink_admin_compile(r, amcf, doc, &error);
    cJSON_Delete(doc);

    if (ov == NULL) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "ailink store: generation %ui does not compile: %V; "
                      "the previous one stays in use", gen, &error);
        return old;
    }

    ov->generation = gen;
    ngx_ailink_admin_current = ov;

    if (old) {
        old->stale = 1;

        if (old->refs == 0) {
            ngx_destroy_pool(old->pool);
        }
    }

    return ov;
}


void
ngx_ailink_admin_overlay_release(ngx_ailink_admin_overlay_t *ov)
{
    if (--ov->refs == 0 && ov->stale) {
        ngx_destroy_pool(ov->pool);
    }
}


static void
ngx_ailink_admin_release_handler(void *data)
{
    ngx_ailink_admin_overlay_release(data);
}


static ngx_ailink_token_t *
ngx_ailink_admin_token_find(ngx_http_request_t *r, u_char *hash)
{
    ngx_pool_cleanup_t            *cln;
    ngx_ailink_token_t            *tok;
    ngx_ailink_admin_overlay_t    *ov;
    ngx_ailink_admin_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_ailink_admin_module);

    if (amcf->store == NULL) {
        return NULL;
    }

    ov = ngx_ailink_admin_overlay(r, amcf);

    if (ov == NULL || ov->conf.tokens.nelts == 0) {
        return NULL;
    }

    tok = ngx_ailink_token_find(&ov->conf, hash);
    if (tok == NULL) {
        return NULL;
    }

    /* the overlay outlives the request even when a newer one comes */
    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    ov->refs++;
    cln->handler = ngx_ailink_admin_release_handler;
    cln->data = ov;

    return tok;
}


static ngx_int_t
ngx_ailink_admin_service_find(ngx_http_request_t *r, ngx_str_t *name,
    ngx_ailink_base_url_t **base, ngx_ailink_credential_t **credential)
{
    ngx_uint_t                     i;
    ngx_pool_cleanup_t            *cln;
    ngx_ailink_service_t          *svc;
    ngx_ailink_admin_overlay_t    *ov;
    ngx_ailink_admin_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_ailink_admin_module);

    if (amcf->store == NULL) {
        return NGX_DECLINED;
    }

    ov = ngx_ailink_admin_overlay(r, amcf);
    if (ov == NULL) {
        return NGX_DECLINED;
    }

    svc = ov->services.elts;

    for (i = 0; i < ov->services.nelts; i++) {
        if (svc[i].name.len == name->len
            && ngx_strncmp(svc[i].name.data, name->data, name->len) == 0)
        {
            cln = ngx_pool_cleanup_add(r->pool, 0);
            if (cln == NULL) {
                return NGX_ERROR;
            }

            ov->refs++;
            cln->handler = ngx_ailink_admin_release_handler;
            cln->data = ov;

            *base = &svc[i].base;
            *credential = svc[i].credential;

            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/* answers */

ngx_int_t
ngx_ailink_admin_reply(ngx_ailink_admin_req_t *ar, ngx_uint_t status,
    cJSON *json)
{
    char       *text;
    ngx_str_t   out;

    text = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);

    if (text == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    out.len = ngx_strlen(text);
    out.data = ngx_pnalloc(ar->request->pool, out.len);

    if (out.data) {
        ngx_memcpy(out.data, text, out.len);
    }

    cJSON_free(text);

    if (out.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ar->sent_rc = ngx_ailink_send_json(ar->request, status, &out);

    return NGX_DECLINED;
}


ngx_int_t
ngx_ailink_admin_fail(ngx_ailink_admin_req_t *ar, ngx_uint_t status,
    const char *code, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    p = ngx_pnalloc(ar->request->pool, 512);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    va_start(args, fmt);
    *ngx_vslprintf(p, p + 511, fmt, args) = '\0';
    va_end(args);

    ar->sent_rc = ngx_ailink_send_error(ar->request, status, code,
                                        (char *) p, NULL);

    return NGX_DECLINED;
}


void
ngx_ailink_admin_time(time_t t, cJSON *obj, const char *key)
{
    u_char     buf[32];
    ngx_tm_t   tm;

    ngx_gmtime(t, &tm);
    ngx_sprintf(buf, "%4d-%02d-%02dT%02d:%02d:%02dZ%Z", tm.ngx_tm_year,
                tm.ngx_tm_mon, tm.ngx_tm_mday, tm.ngx_tm_hour,
                tm.ngx_tm_min, tm.ngx_tm_sec);

    cJSON_AddStringToObject(obj, key, (char *) buf);
}


/*
 * Take the store's write lock and read its document into ar->doc: the
 * handler then changes it and returns NGX_AGAIN to have it committed.
 */

ngx_int_t
ngx_ailink_admin_lock(ngx_ailink_admin_req_t *ar)
{
    ngx_str_t            text;
    ngx_uint_t           gen;
    ngx_ailink_store_t  *st;

    st = ar->amcf->store;

    if (st->ops->lock(st) != NGX_OK) {
        return NGX_BUSY;
    }

    if (st->ops->read(st, ar->request->pool, &text, &gen) != NGX_OK) {
        st->ops->unlock(st);
        return NGX_ERROR;
    }

    ar->doc = cJSON_Parse(text.len ? (char *) text.data : "{}");

    if (ar->doc == NULL) {
        st->ops->unlock(st);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * NGX_OK when the request carries a declared admin key; otherwise the
 * refusal is sent and NGX_DECLINED returned, with the sending's result in
 * *rc (which may itself be NGX_OK): fail closed.
 */

static ngx_int_t
ngx_ailink_admin_authorize(ngx_http_request_t *r,
    ngx_ailink_admin_main_conf_t *amcf, ngx_int_t *rc)
{
    ngx_str_t                token;
    ngx_ailink_admin_key_t  *k;

    if (r->headers_in.authorization == NULL) {
        goto unauthorized;
    }

    token = r->headers_in.authorization->value;

    if (token.len <= 7
        || ngx_strncasecmp(token.data, (u_char *) "Bearer ", 7) != 0)
    {
        goto unauthorized;
    }

    token.data += 7;
    token.len -= 7;

    if (token.len > sizeof(NGX_AILINK_TOKEN_PREFIX) - 1
        && ngx_strncmp(token.data, "ailink_v1_", 10) == 0)
    {
        *rc = ngx_ailink_send_error(r, NGX_HTTP_FORBIDDEN,
                                    "permission_denied",
                                    "a data-plane token cannot use the "
                                    "admin API: send an admin key "
                                    "(ailink_admin_...)", NULL);
        return NGX_DECLINED;
    }

    /* the one key set of every admin endpoint (ngx_ailink_admin_key.c) */
    k = ngx_ailink_admin_key_match(r);

    if (k) {
        /* who, for the audit of mutations: the hash's first bytes */
        ngx_hex_dump(ngx_ailink_admin_who, k->hash, 4);
        return NGX_OK;
    }

unauthorized:

    *rc = ngx_ailink_send_error(r, NGX_HTTP_UNAUTHORIZED, "invalid_token",
                                "the admin API needs \"Authorization: "
                                "Bearer ailink_admin_...\" with a key "
                                "declared by \"ailink_admin_key\" or the "
                                "config file's \"admin_keys\"", NULL);
    return NGX_DECLINED;
}


static ngx_int_t
ngx_ailink_admin_handler(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    ngx_ailink_admin_req_t        *ar;
    ngx_ailink_admin_main_conf_t  *amcf;

    if (ngx_ailink_create_ctx(r) == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    amcf = ngx_http_get_module_main_conf(r, ngx_ailink_admin_module);

    if (ngx_ailink_admin_authorize(r, amcf, &rc) != NGX_OK) {
        return rc;
    }

    ar = ngx_pcalloc(r->pool, sizeof(ngx_ailink_admin_req_t));
    if (ar == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ar->request = r;
    ar->amcf = amcf;
    ngx_memcpy(ar->who, ngx_ailink_admin_who, 8);

    ngx_http_set_ctx(r, ar, ngx_ailink_admin_module);

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_ailink_admin_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/* "/<prefix>/v1/<resource>[/<id>[/<sub>]]": after the first "/v1/" */

static ngx_int_t
ngx_ailink_admin_route(ngx_ailink_admin_req_t *ar)
{
    u_char     *p, *last, *s;
    ngx_str_t  *part[3];
    ngx_uint_t  i;

    p = ar->request->uri.data;
    last = p + ar->request->uri.len;

    s = ngx_strlcasestrn(p, last, (u_char *) "/v1/", 4 - 1);
    if (s == NULL) {
        return NGX_DECLINED;
    }

    p = s + 4;

    part[0] = &ar->resource;
    part[1] = &ar->id;
    part[2] = &ar->sub;

    for (i = 0; i < 3 && p < last; i++) {
        s = ngx_strlchr(p, last, '/');
        if (s == NULL) {
            s = last;
        }

        part[i]->data = p;
        part[i]->len = s - p;
        p = s + 1;
    }

    return (p < last) ? NGX_DECLINED : NGX_OK;
}


static void
ngx_ailink_admin_body(ngx_http_request_t *r)
{
    size_t                          len;
    u_char                         *p;
    ngx_uint_t                      i;
    ngx_chain_t                    *cl;
    ngx_ailink_admin_req_t         *ar;
    ngx_ailink_admin_route_t       *route;

    ar = ngx_http_get_module_ctx(r, ngx_ailink_admin_module);

    /* the body, in memory */

    len = 0;

    for (cl = r->request_body ? r->request_body->bufs : NULL; cl;
         cl = cl->next)
    {
        if (cl->buf->in_file) {
            ngx_http_finalize_request(r,
                ngx_ailink_send_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                      "payload_too_large", "the request body "
                                      "is larger than client_body_buffer_size",
                                      NULL));
            return;
        }

        len += cl->buf->last - cl->buf->pos;
    }

    ar->body.data = ngx_pnalloc(r->pool, len + 1);
    if (ar->body.data == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = ar->body.data;

    for (cl = r->request_body ? r->request_body->bufs : NULL; cl;
         cl = cl->next)
    {
        /* an empty body (POST /cache/flush) may come as a buffer with no
           memory: memcpy() takes no NULL, even for 0 bytes */
        if (cl->buf->last != cl->buf->pos) {
            p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
        }
    }

    *p = '\0';
    ar->body.len = len;

    if (ngx_ailink_admin_route(ar) != NGX_OK) {
        goto not_found;
    }

    route = NULL;

    for (i = 0; ngx_ailink_admin_routes[i].handler; i++) {
        if (ngx_ailink_admin_routes[i].name.len == ar->resource.len
            && ngx_strncmp(ngx_ailink_admin_routes[i].name.data,
                           ar->resource.data, ar->resource.len) == 0)
        {
            route = &ngx_ailink_admin_routes[i];
            break;
        }
    }

    if (route == NULL) {
        goto not_found;
    }

    ar->route = route;

    ngx_ailink_admin_dispatch(r);

    return;

not_found:

    ngx_http_finalize_request(r,
        ngx_ailink_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                              "no such admin resource", NULL));
}


static void
ngx_ailink_admin_retry_handler(ngx_event_t *ev)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ev->data;
    c = r->connection;

    ngx_ailink_admin_dispatch(r);

    ngx_http_run_posted_requests(c);
}


static void
ngx_ailink_admin_retry_cleanup(void *data)
{
    ngx_event_t  *ev = data;

    if (ev->timer_set) {
        ngx_del_timer(ev);
    }
}


/*
 * Run the resource's handler; commit what it changed.  A change while
 * another worker writes waits for it (a timer, every 10ms, up to 3s).
 */

static void
ngx_ailink_admin_dispatch(ngx_http_request_t *r)
{
    size_t                          len;
    ngx_int_t                       rc;
    ngx_pool_cleanup_t             *cln;
    ngx_ailink_admin_req_t         *ar;
    ngx_ailink_admin_route_t       *route;
    ngx_ailink_admin_main_conf_t   *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_ailink_admin_module);
    ar = ngx_http_get_module_ctx(r, ngx_ailink_admin_module);
    route = ar->route;
    len = ar->body.len;

    /* JSON bodies are parsed here; config import takes YAML */
    if (len && !(ar->resource.len == 6
                 && ngx_strncmp(ar->resource.data, "config", 6) == 0))
    {
        ar->json = cJSON_Parse((char *) ar->body.data);

        if (ar->json == NULL || !cJSON_IsObject(ar->json)) {
            cJSON_Delete(ar->json);
            ar->json = NULL;
            ngx_http_finalize_request(r,
                ngx_ailink_send_error(r, NGX_HTTP_BAD_REQUEST,
                                      "invalid_request", "the body must be "
                                      "a JSON object", NULL));
            return;
        }
    }

    ar->status = NGX_HTTP_OK;

    if (ar->retries == 0) {
        ngx_ailink_admin_audit_what(ar);
    }

    rc = route->handler(ar);

    cJSON_Delete(ar->json);
    ar->json = NULL;

    if (rc == NGX_BUSY && ar->retries++ < 300) {
        if (ar->retry == NULL) {
            ar->retry = ngx_pcalloc(r->pool, sizeof(ngx_event_t));
            cln = ngx_pool_cleanup_add(r->pool, 0);

            if (ar->retry == NULL || cln == NULL) {
                ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
                return;
            }

            ar->retry->handler = ngx_ailink_admin_retry_handler;
            ar->retry->data = r;
            ar->retry->log = r->connection->log;
            cln->handler = ngx_ailink_admin_retry_cleanup;
            cln->data = ar->retry;
        }

        ngx_add_timer(ar->retry, 10);
        return;
    }

    if (rc == NGX_BUSY) {
        ngx_http_finalize_request(r,
            ngx_ailink_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "store_busy", "another change is being "
                                  "written; retry", NULL));
        return;
    }

    if (rc == NGX_DECLINED) {
        rc = ar->sent_rc;
    }

    if (rc != NGX_AGAIN) {
        if (ar->doc) {
            cJSON_Delete(ar->doc);
            amcf->store->ops->unlock(amcf->store);
        }

        ngx_http_finalize_request(r, rc);
        return;
    }

    /* the document changed: commit it, answer once it is durable */
    {
        char       *text;
        ngx_str_t   doc;

        text = cJSON_PrintUnformatted(ar->doc);
        cJSON_Delete(ar->doc);
        ar->doc = NULL;

        if (text == NULL) {
            amcf->store->ops->unlock(amcf->store);
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        doc.len = ngx_strlen(text);
        doc.data = ngx_pnalloc(r->pool, doc.len);

        if (doc.data) {
            ngx_memcpy(doc.data, text, doc.len);
        }

        cJSON_free(text);

        if (doc.data == NULL
            || amcf->store->ops->commit(amcf->store, r, &doc,
                                        ngx_ailink_admin_committed)
               != NGX_OK)
        {
            if (doc.data == NULL) {
                amcf->store->ops->unlock(amcf->store);
            }

            ngx_http_finalize_request(r,
                ngx_ailink_send_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                      "store_error", "the change could not "
                                      "be written; nothing changed", NULL));
            return;
        }
    }

    return;
}


/* 503 store_unavailable with Retry-After: the store's database is down */

static ngx_int_t
ngx_ailink_admin_unavailable(ngx_http_request_t *r)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h) {
        h->hash = 1;
        ngx_str_set(&h->key, "Retry-After");
        ngx_str_set(&h->value, "1");
    }

    return ngx_ailink_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "store_unavailable", "the store's database "
                                 "cannot be reached; nothing changed, retry",
                                 NULL);
}


static void
ngx_ailink_admin_committed(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_ailink_admin_req_t  *ar;

    ar = ngx_http_get_module_ctx(r, ngx_ailink_admin_module);

    if (rc == NGX_AILINK_STORE_CONFLICT) {
        ngx_http_finalize_request(r,
            ngx_ailink_send_error(r, NGX_HTTP_CONFLICT, "store_conflict",
                                  "another gateway changed the store "
                                  "first; nothing changed, retry", NULL));
        return;
    }

    if (rc == NGX_AILINK_STORE_UNAVAILABLE) {
        ngx_http_finalize_request(r, ngx_ailink_admin_unavailable(r));
        return;
    }

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r,
            ngx_ailink_send_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                  "store_error", "the change could not be "
                                  "written; nothing changed", NULL));
        return;
    }

    /* audited: who (the admin key's SHA-256 prefix), what, never a
       secret; in the audit record (the object created named by its id) and
       in the error log */
    if (ar->id.len == 0 && ar->answer.len) {
        cJSON       *out, *v;
        ngx_str_t    object;

        out = cJSON_ParseWithLength((char *) ar->answer.data,
                                    ar->answer.len);
        v = ngx_ailink_json_get(out, "id");
        v = cJSON_IsString(v) ? v : ngx_ailink_json_get(out, "name");

        if (cJSON_IsString(v)) {
            object.len = ngx_strlen(v->valuestring);
            object.data = ngx_pnalloc(r->pool, object.len);

            if (object.data) {
                ngx_memcpy(object.data, v->valuestring, object.len);
                (void) ngx_ailink_admin_key_audit(r, NULL, &ar->resource,
                                                  &object);
            }
        }

        cJSON_Delete(out);
    }

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "ailink admin: key sha256:%*s... %V %V: %V", (size_t) 8,
                  ar->who, &r->method_name, &r->uri, &ar->audit);

    ngx_http_finalize_request(r,
                              ngx_ailink_send_json(r, ar->status,
                                                   &ar->answer));
}




/*
 * What a mutation touches, for its audit record: the resource ("tokens",
 * "tokens/circuit-breaker"), and the object's id from the path, or the
 * name the body gives it (never anything else of the body).
 */

static void
ngx_ailink_admin_audit_what(ngx_ailink_admin_req_t *ar)
{
    cJSON               *v;
    ngx_str_t            resource, object;
    ngx_http_request_t  *r;

    r = ar->request;

    if (r->method == NGX_HTTP_GET || r->method == NGX_HTTP_HEAD) {
        return;
    }

    resource = ar->resource;
    object = ar->id;

    if (ar->sub.len) {
        resource.len = ar->resource.len + 1 + ar->sub.len;
        resource.data = ngx_pnalloc(r->pool, resource.len);
        if (resource.data == NULL) {
            return;
        }

        ngx_sprintf(resource.data, "%V/%V", &ar->resource, &ar->sub);
    }

    if (object.len == 0 && ar->json) {
        v = ngx_ailink_json_get(ar->json, "name");

        if (cJSON_IsString(v)) {
            object.len = ngx_strlen(v->valuestring);
            object.data = ngx_pnalloc(r->pool, object.len);
            if (object.data == NULL) {
                return;
            }

            ngx_memcpy(object.data, v->valuestring, object.len);
        }
    }

    (void) ngx_ailink_admin_key_audit(r, NULL, &resource, &object);
}


/* a changed document compiles, or the change is refused with the reason */

ngx_int_t
ngx_ailink_admin_check(ngx_ailink_admin_req_t *ar)
{
    ngx_str_t                    error;
    ngx_ailink_admin_overlay_t  *ov;

    ov = ngx_ailink_admin_compile(ar->request, ar->amcf, ar->doc, &error);

    if (ov == NULL) {
        return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                     "invalid_request", "%V",
                                     error.len ? &error
                                     : &(ngx_str_t) ngx_string("invalid"));
    }

    ngx_destroy_pool(ov->pool);

    return NGX_OK;
}


/*
 * At startup and reload, after the store is loaded: every sealed secret
 * must open with the configured master key, or nginx does not start (a
 * wrong or missing key is found now, not on the first request).
 */

static ngx_int_t
ngx_ailink_admin_init_module(ngx_cycle_t *cycle)
{
    cJSON                         *doc, *item, *v;
    ngx_int_t                      rc;
    ngx_str_t                      text, name, sealed, plain;
    ngx_uint_t                     gen, resealed;
    ngx_pool_t                    *pool;
    ngx_ailink_admin_main_conf_t  *amcf;

    resealed = 0;

    if (ngx_http_cycle_get_module_main_conf(cycle, ngx_http_core_module)
        == NULL)
    {
        return NGX_OK;
    }

    amcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_ailink_admin_module);

    if (amcf == NULL || amcf->store == NULL) {
        return NGX_OK;
    }

    pool = ngx_create_pool(4096, cycle->log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    rc = NGX_ERROR;
    doc = NULL;

    if (amcf->store->ops->read(amcf->store, pool, &text, &gen) != NGX_OK) {
        goto done;
    }

    doc = cJSON_Parse(text.len ? (char *) text.data : "{}");
    if (doc == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "ailink admin store: the document of generation %ui "
                      "does not parse", gen);
        goto done;
    }

    cJSON_ArrayForEach(item, ngx_ailink_json_get(doc, "credentials")) {
        name.data = (u_char *) item->string;
        name.len = ngx_strlen(item->string);

        if (!amcf->master_set) {
            ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                          "ailink admin store: it holds encrypted "
                          "credentials (\"%V\") but no "
                          "\"ailink_vault_master_key\" is set", &name);
            goto done;
        }

        v = ngx_ailink_json_get(item, "sealed");

        if (!cJSON_IsString(v)) {
            goto wrong;
        }

        sealed.data = (u_char *) v->valuestring;
        sealed.len = ngx_strlen(v->valuestring);

        if (ngx_ailink_vault_decrypt(pool, amcf->master, &name, &sealed,
                                     &plain)
            == NGX_OK)
        {
            ngx_explicit_memzero(plain.data, plain.len);
            continue;
        }

        /* master key rotation: sealed under the previous key, re-sealed */

        if (!amcf->previous_set
            || ngx_ailink_vault_decrypt(pool, amcf->previous, &name, &sealed,
                                        &plain)
               != NGX_OK
            || ngx_ailink_vault_encrypt(pool, amcf->master, &name, &plain,
                                        &sealed)
               != NGX_OK)
        {
            goto wrong;
        }

        ngx_explicit_memzero(plain.data, plain.len);

        cJSON_DeleteItemFromObjectCaseSensitive(item, "sealed");
        cJSON_AddStringToObject(item, "sealed", (char *) sealed.data);
        resealed++;
    }

    if (resealed && ngx_test_config) {
        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                      "ailink vault: %ui credential(s) would be re-sealed "
                      "under the new master key at start", resealed);

    } else if (resealed) {
        char  *t;

        t = cJSON_PrintUnformatted(doc);
        if (t == NULL) {
            goto done;
        }

        text.data = (u_char *) t;
        text.len = ngx_strlen(t);

        rc = amcf->store->ops->commit_now(amcf->store, &text, cycle->log);
        cJSON_free(t);

        if (rc != NGX_OK) {
            goto done;
        }

        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                      "ailink vault: %ui credential(s) re-sealed under the "
                      "new master key; \"ailink_vault_previous_master_key\" "
                      "may be removed", resealed);
    }

    rc = NGX_OK;
    goto done;

wrong:

    ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                  "ailink_vault_master_key \"%V\": the key does not open "
                  "credential \"%V\" of the store: wrong master key",
                  &amcf->master_source, &name);

done:

    cJSON_Delete(doc);
    ngx_destroy_pool(pool);

    return rc;
}


static ngx_int_t
ngx_ailink_admin_init_process(ngx_cycle_t *cycle)
{
    ngx_ailink_admin_main_conf_t  *amcf;

    if (ngx_http_cycle_get_module_main_conf(cycle, ngx_http_core_module)
        == NULL)
    {
        return NGX_OK;
    }

    amcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_ailink_admin_module);

    if (amcf == NULL || amcf->store == NULL
        || amcf->store->ops->init_process == NULL)
    {
        return NGX_OK;
    }

    return amcf->store->ops->init_process(amcf->store, cycle);
}


static void
ngx_ailink_admin_exit_process(ngx_cycle_t *cycle)
{
    ngx_ailink_admin_main_conf_t  *amcf;

    if (ngx_http_cycle_get_module_main_conf(cycle, ngx_http_core_module)
        == NULL)
    {
        return;
    }

    amcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_ailink_admin_module);

    if (amcf && amcf->store && amcf->store->ops->exit_process) {
        amcf->store->ops->exit_process(amcf->store, cycle);
    }
}


/* the answer sent once the change is committed; returns NGX_AGAIN */

ngx_int_t
ngx_ailink_admin_answer(ngx_ailink_admin_req_t *ar, cJSON *out)
{
    char  *text;

    text = out ? cJSON_PrintUnformatted(out) : NULL;
    cJSON_Delete(out);

    if (text == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ar->answer.len = ngx_strlen(text);
    ar->answer.data = ngx_pnalloc(ar->request->pool, ar->answer.len);

    if (ar->answer.data) {
        ngx_memcpy(ar->answer.data, text, ar->answer.len);
    }

    ngx_explicit_memzero(text, ar->answer.len);
    cJSON_free(text);

    return ar->answer.data ? NGX_AGAIN : NGX_HTTP_INTERNAL_SERVER_ERROR;
}


/* a store record without the store's own members */

cJSON *
ngx_ailink_admin_strip_meta(cJSON *rec)
{
    cJSON  *copy;

    copy = cJSON_Duplicate(rec, 1);

    if (copy) {
        cJSON_DeleteItemFromObjectCaseSensitive(copy, "created_at");
        cJSON_DeleteItemFromObjectCaseSensitive(copy, "revoked_at");
    }

    return copy;
}
