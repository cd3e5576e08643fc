
/*
 * Copyright (C) AILink
 *
 * The config-as-code file: providers, model routes, credentials, tokens
 * and prices.  It is read when nginx reads its configuration (startup and
 * every reload), validated whole, and every mistake is reported with the
 * file and the key that holds it, so that "nginx -t" catches it.
 */


#include "ngx_ailink_common.h"
#include <openssl/crypto.h>


typedef struct {
    ngx_conf_t         *cf;
    ngx_ailink_conf_t  *conf;
} ngx_ailink_loader_t;


typedef struct {
    const char         *name;
    ngx_uint_t          type;
    const char         *base_url;
    ngx_uint_t          scheme;
    const char         *header;
} ngx_ailink_default_provider_t;


static ngx_ailink_default_provider_t  ngx_ailink_default_providers[] = {
    { "openai", NGX_AILINK_PROVIDER_OPENAI, "https://api.openai.com/v1",
      NGX_AILINK_SCHEME_BEARER, NULL },
    { "anthropic", NGX_AILINK_PROVIDER_ANTHROPIC,
      "https://api.anthropic.com/v1", NGX_AILINK_SCHEME_HEADER, "x-api-key" },
    { "gemini", NGX_AILINK_PROVIDER_GEMINI,
      "https://generativelanguage.googleapis.com/v1beta",
      NGX_AILINK_SCHEME_HEADER, "x-goog-api-key" },
    { NULL, 0, NULL, 0, NULL }
};


static const char  *ngx_ailink_default_routes[][2] = {
    { "gpt-", "openai" },
    { "o1", "openai" },
    { "o3", "openai" },
    { "o4", "openai" },
    { "chatgpt-", "openai" },
    { "text-embedding-", "openai" },
    { "claude-", "anthropic" },
    { "gemini-", "gemini" },
    { NULL, NULL }
};


static void ngx_cdecl
ngx_ailink_conf_error(ngx_ailink_loader_t *ld, const char *fmt, ...)
{
    u_char   buf[NGX_MAX_CONF_ERRSTR], *p;
    va_list  args;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, buf + sizeof(buf), fmt, args);
    va_end(args);

    ngx_conf_log_error(NGX_LOG_EMERG, ld->cf, 0, "ailink_config \"%V\": %*s",
                       &ld->conf->file, p - buf, buf);
}


static ngx_int_t
ngx_ailink_conf_str(ngx_ailink_loader_t *ld, cJSON *obj, const char *key,
    const char *where, ngx_flag_t required, ngx_str_t *out)
{
    cJSON  *item;

    item = ngx_ailink_json_get(obj, key);

    if (item == NULL || cJSON_IsNull(item)) {
        if (required) {
            ngx_ailink_conf_error(ld, "%s: \"%s\" is required", where, key);
            return NGX_ERROR;
        }

        ngx_str_null(out);
        return NGX_OK;
    }

    if (!cJSON_IsString(item) || item->valuestring[0] == '\0') {
        ngx_ailink_conf_error(ld, "%s.%s: must be a non-empty string",
                              where, key);
        return NGX_ERROR;
    }

    out->len = ngx_strlen(item->valuestring);
    out->data = ngx_pnalloc(ld->cf->pool, out->len + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, item->valuestring, out->len + 1);

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_conf_keys(ngx_ailink_loader_t *ld, cJSON *obj, const char *where,
    const char **known)
{
    cJSON        *item;
    const char  **k;

    if (!cJSON_IsObject(obj)) {
        ngx_ailink_conf_error(ld, "%s: must be a mapping", where);
        return NGX_ERROR;
    }

    cJSON_ArrayForEach(item, obj) {
        for (k = known; *k; k++) {
            if (strcmp(*k, item->string) == 0) {
                break;
            }
        }

        if (*k == NULL) {
            ngx_ailink_conf_error(ld, "%s: unknown key \"%s\"",
                                  where, item->string);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * A base URL goes into the request line nginx sends upstream, and into
 * the messages below: a space or a control character would split that
 * line, and a query, a fragment or "user:password@" may hold a secret.
 * URLs with either are refused without being echoed.
 */

static ngx_int_t
ngx_ailink_conf_base_url(ngx_ailink_loader_t *ld, ngx_str_t *url,
    ngx_str_t *nginx_upstream, const char *where, const char *key,
    ngx_ailink_base_url_t *base)
{
    u_char     *p, *host, *end, *last, *port;
    ngx_int_t   n;

    base->url = *url;
    last = url->data + url->len;

    for (p = url->data; p < last; p++) {
        if (*p <= ' ' || *p == 0x7f) {
            ngx_ailink_conf_error(ld, "%s.%s: the URL holds a space or a "
                                  "control character", where, key);
            return NGX_ERROR;
        }
    }

    if (ngx_strlchr(url->data, last, '?') || ngx_strlchr(url->data, last, '#'))
    {
        goto secret;
    }

    if (url->len > 8 && ngx_strncasecmp(url->data, (u_char *) "https://", 8)
                        == 0)
    {
        ngx_str_set(&base->scheme, "https://");

    } else if (url->len > 7
               && ngx_strncasecmp(url->data, (u_char *) "http://", 7) == 0)
    {
        ngx_str_set(&base->scheme, "http://");

    } else {
        ngx_ailink_conf_error(ld, "%s: \"%V\" is not an http:// or https:// "
                              "URL", where, url);
        return NGX_ERROR;
    }

    host = url->data + base->scheme.len;

    for (end = host; end < last && *end != '/'; end++) {
        if (*end == '@') {
            goto secret;
        }
    }

    if (end == host) {
        ngx_ailink_conf_error(ld, "%s: \"%V\" has no host", where, url);
        return NGX_ERROR;
    }

    /* the port, if any, follows the host name or a bracketed IPv6 address */

    if (*host == '[') {
        p = ngx_strlchr(host, end, ']');

        if (p == NULL || p == host + 1 || (p + 1 < end && p[1] != ':')) {
            ngx_ailink_conf_error(ld, "%s: \"%V\" has an invalid host",
                                  where, url);
            return NGX_ERROR;
        }

        port = (p + 1 < end) ? p + 1 : NULL;

    } else {
        port = ngx_strlchr(host, end, ':');

        if (port == host) {
            ngx_ailink_conf_error(ld, "%s: \"%V\" has no host", where, url);
            return NGX_ERROR;
        }
    }

    if (port) {
        n = ngx_atoi(port + 1, end - port - 1);

        if (n < 1 || n > 65535) {
            ngx_ailink_conf_error(ld, "%s: \"%V\" has an invalid port "
                                  "(1 to 65535)", where, url);
            return NGX_ERROR;
        }
    }

    /* the name goes into proxy_pass's URL in place of the host */

    for (p = nginx_upstream->data;
         p < nginx_upstream->data + nginx_upstream->len;
         p++)
    {
        if (*p <= ' ' || *p == 0x7f || *p == '/' || *p == '?' || *p == '#'
            || *p == '@')
        {
            ngx_ailink_conf_error(ld, "%s.nginx_upstream: must be the name "
                                  "of an upstream{} block", where);
            return NGX_ERROR;
        }
    }

    base->host.data = host;
    base->host.len = end - host;

    base->path.data = end;
    base->path.len = last - end;

    while (base->path.len && base->path.data[base->path.len - 1] == '/') {
        base->path.len--;
    }

    base->target = nginx_upstream->len ? *nginx_upstream : base->host;

    return NGX_OK;

secret:

    ngx_ailink_conf_error(ld, "%s.%s: the URL must be a base URL without "
                          "credentials, query or fragment", where, key);
    return NGX_ERROR;
}


static ngx_uint_t
ngx_ailink_conf_alnum(u_char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9');
}


/* a character of an HTTP token (RFC 9110, 5.6.2): what header names hold */

static ngx_uint_t
ngx_ailink_conf_tchar(u_char c)
{
    static u_char  more[] = "!#$%&'*+-.^_`|~";

    return ngx_ailink_conf_alnum(c)
           || ngx_strlchr(more, more + sizeof(more) - 1, c) != NULL;
}


static ngx_int_t
ngx_ailink_conf_inject(ngx_ailink_loader_t *ld, cJSON *obj, const char *where,
    ngx_ailink_inject_t *inject)
{
    u_char      c;
    ngx_str_t   scheme;
    ngx_uint_t  i;

    if (ngx_ailink_conf_str(ld, obj, "scheme", where, 0, &scheme) != NGX_OK
        || ngx_ailink_conf_str(ld, obj, "name", where, 0, &inject->name)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (scheme.len == 0) {
        if (inject->scheme == NGX_AILINK_SCHEME_NONE) {
            inject->scheme = NGX_AILINK_SCHEME_BEARER;
        }

    } else if (ngx_strcmp(scheme.data, "bearer") == 0) {
        inject->scheme = NGX_AILINK_SCHEME_BEARER;

    } else if (ngx_strcmp(scheme.data, "header") == 0) {
        inject->scheme = NGX_AILINK_SCHEME_HEADER;

    } else if (ngx_strcmp(scheme.data, "basic") == 0) {
        inject->scheme = NGX_AILINK_SCHEME_BASIC;

    } else if (ngx_strcmp(scheme.data, "query") == 0) {
        inject->scheme = NGX_AILINK_SCHEME_QUERY;

    } else {
        ngx_ailink_conf_error(ld, "%s.scheme: \"%V\" is not one of bearer, "
                              "header, basic, query", where, &scheme);
        return NGX_ERROR;
    }

    if ((inject->scheme == NGX_AILINK_SCHEME_HEADER
         || inject->scheme == NGX_AILINK_SCHEME_QUERY)
        && inject->name.len == 0)
    {
        ngx_ailink_conf_error(ld, "%s: scheme \"%V\" needs \"name\"",
                              where, &scheme);
        return NGX_ERROR;
    }

    /* the name is written as is into the upstream request */

    for (i = 0; i < inject->name.len; i++) {
        c = inject->name.data[i];

        if (inject->scheme == NGX_AILINK_SCHEME_HEADER
            && !ngx_ailink_conf_tchar(c))
        {
            ngx_ailink_conf_error(ld, "%s.name: must be an HTTP header name "
                                  "(letters, digits and "
                                  "!#$%%&'*+-.^_`|~)", where);
            return NGX_ERROR;
        }

        if (inject->scheme == NGX_AILINK_SCHEME_QUERY
            && !(ngx_ailink_conf_alnum(c)
                 || c == '-' || c == '.' || c == '_' || c == '~'))
        {
            ngx_ailink_conf_error(ld, "%s.name: must be a query argument "
                                  "name (letters, digits and -._~)", where);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * A credential file is opened without blocking, so that a FIFO cannot hold
 * up nginx -t, a reload or the master waiting for a writer; its type is
 * then checked on the open descriptor, after any symbolic link.
 */

static ngx_int_t
ngx_ailink_conf_read_secret(ngx_ailink_loader_t *ld, ngx_str_t *path,
    const char *where, ngx_str_t *secret)
{
    off_t            size;
    ssize_t          n;
    ngx_fd_t         fd;
    ngx_file_info_t  fi;

    if (ngx_conf_full_name(ld->cf->cycle, path, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    fd = ngx_open_file(path->data, NGX_FILE_RDONLY|NGX_FILE_NONBLOCK|O_NOCTTY,
                       NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, ld->cf, ngx_errno,
                           "ailink_config \"%V\": %s.file: cannot open \"%V\"",
                           &ld->conf->file, where, path);
        return NGX_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, ld->cf, ngx_errno,
                           "ailink_config \"%V\": %s.file: "
                           ngx_fd_info_n " \"%V\" failed",
                           &ld->conf->file, where, path);
        goto failed;
    }

    if (!ngx_is_file(&fi)) {
        ngx_ailink_conf_error(ld, "%s.file: \"%V\" is not a regular file",
                              where, path);
        goto failed;
    }

    size = ngx_file_size(&fi);

    if (size > 65536) {
        ngx_ailink_conf_error(ld, "%s.file: \"%V\" is larger than 64k",
                              where, path);
        goto failed;
    }

    if (ngx_file_access(&fi) & (S_IRGRP|S_IROTH)) {
        ngx_conf_log_error(NGX_LOG_WARN, ld->cf, 0,
                           "ailink_config \"%V\": %s.file: \"%V\" is readable "
                           "by group or others; only its owner needs to "
                           "read it (chmod 600)",
                           &ld->conf->file, where, path);
    }

    secret->data = ngx_pnalloc(ld->cf->pool, size + 1);
    if (secret->data == NULL) {
        goto failed;
    }

    secret->len = 0;

    while (secret->len < (size_t) size) {
        n = ngx_read_fd(fd, secret->data + secret->len, size - secret->len);

        if (n == NGX_FILE_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, ld->cf, ngx_errno,
                               "ailink_config \"%V\": %s.file: cannot read "
                               "\"%V\"", &ld->conf->file, where, path);
            goto failed;
        }

        if (n == 0) {
            break;
        }

        secret->len += n;
    }

    ngx_close_file(fd);

    return NGX_OK;

failed:

    ngx_close_file(fd);
    return NGX_ERROR;
}


/*
 * A secret is sent as a header value (or inside one): a CR or LF would
 * end that header and start one of the file's choosing in every upstream
 * request, and no key holds other control characters either.  The secret
 * itself is never printed.
 */

static ngx_int_t
ngx_ailink_conf_secret(ngx_ailink_loader_t *ld, const char *where,
    const char *source, ngx_str_t *secret)
{
    size_t  i;

    /* a trailing newline from "echo key > file" is not part of a key */
    while (secret->len
           && (secret->data[secret->len - 1] == '\n'
               || secret->data[secret->len - 1] == '\r'
               || secret->data[secret->len - 1] == ' '))
    {
        secret->len--;
    }

    if (secret->len == 0) {
        ngx_ailink_conf_error(ld, "%s: the secret is empty", where);
        return NGX_ERROR;
    }

    for (i = 0; i < secret->len; i++) {
        if (secret->data[i] < ' ' || secret->data[i] == 0x7f) {
            ngx_ailink_conf_error(ld, "%s.%s: the secret holds a control "
                                  "character (a credential is one line of "
                                  "printable characters)", where, source);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_conf_credentials(ngx_ailink_loader_t *ld, cJSON *root)
{
    char                     where[128], *val;
    cJSON                   *list, *item;
    ngx_str_t                env, file;
    ngx_ailink_credential_t *cred;

    static const char  *known[] = { "env", "file", "scheme", "name", NULL };

    list = ngx_ailink_json_get(root, "credentials");
    if (list == NULL) {
        return NGX_OK;
    }

    if (!cJSON_IsObject(list)) {
        ngx_ailink_conf_error(ld, "credentials: must be a mapping of names");
        return NGX_ERROR;
    }

    cJSON_ArrayForEach(item, list) {
        ngx_snprintf((u_char *) where, sizeof(where), "credentials.%s%Z",
                     item->string);

        if (ngx_ailink_conf_keys(ld, item, where, known) != NGX_OK) {
            return NGX_ERROR;
        }

        cred = ngx_array_push(&ld->conf->credentials);
        if (cred == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(cred, sizeof(ngx_ailink_credential_t));

        cred->name.len = ngx_strlen(item->string);
        cred->name.data = ngx_pstrdup(ld->cf->pool, &(ngx_str_t) {
                                          cred->name.len,
                                          (u_char *) item->string });
        if (cred->name.data == NULL) {
            return NGX_ERROR;
        }

        if (ngx_ailink_conf_str(ld, item, "env", where, 0, &env) != NGX_OK
            || ngx_ailink_conf_str(ld, item, "file", where, 0, &file)
               != NGX_OK
            || ngx_ailink_conf_inject(ld, item, where, &cred->inject)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        if ((env.len == 0) == (file.len == 0)) {
            ngx_ailink_conf_error(ld, "%s: exactly one of \"env\" or "
                                  "\"file\" is required (secrets are never "
                                  "written in this file)", where);
            return NGX_ERROR;
        }

        if (env.len) {
            val = getenv((char *) env.data);

            if (val == NULL || *val == '\0') {
                ngx_ailink_conf_error(ld, "%s.env: environment variable "
                                      "\"%V\" is not set", where, &env);
                return NGX_ERROR;
            }

            cred->secret.len = ngx_strlen(val);
            cred->secret.data = ngx_pnalloc(ld->cf->pool, cred->secret.len);
            if (cred->secret.data == NULL) {
                return NGX_ERROR;
            }

            ngx_memcpy(cred->secret.data, val, cred->secret.len);

        } else if (ngx_ailink_conf_read_secret(ld, &file, where, &cred->secret)
                   != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (ngx_ailink_conf_secret(ld, where, env.len ? "env" : "file",
                                   &cred->secret)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_ailink_credential_t *
ngx_ailink_credential_find(ngx_ailink_conf_t *conf, ngx_str_t *name)
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


ngx_ailink_provider_t *
ngx_ailink_provider_find(ngx_ailink_conf_t *conf, ngx_str_t *name)
{
    ngx_uint_t              i;
    ngx_ailink_provider_t  *prov;

    prov = conf->providers.elts;

    for (i = 0; i < conf->providers.nelts; i++) {
        if (prov[i].name.len == name->len
            && ngx_strncmp(prov[i].name.data, name->data, name->len) == 0)
        {
            return &prov[i];
        }
    }

    return NULL;
}


static ngx_int_t
ngx_ailink_conf_provider(ngx_ailink_loader_t *ld, cJSON *item,
    ngx_ailink_provider_t *prov)
{
    char                            where[128];
    u_char                         *p;
    cJSON                          *auth, *v;
    ngx_str_t                       type, base_url, upstream, version;
    ngx_ailink_default_provider_t  *d;

    static const char  *known[] = { "type", "base_url", "nginx_upstream",
                                    "auth", "query", "max_tokens",
                                    "anthropic_version", "safety_settings",
                                    NULL };

    ngx_snprintf((u_char *) where, sizeof(where), "providers.%V%Z",
                 &prov->name);

    if (ngx_ailink_conf_keys(ld, item, where, known) != NGX_OK
        || ngx_ailink_conf_str(ld, item, "type", where, 0, &type) != NGX_OK
        || ngx_ailink_conf_str(ld, item, "base_url", where, prov->type == 0,
                               &base_url)
           != NGX_OK
        || ngx_ailink_conf_str(ld, item, "nginx_upstream", where, 0,
                               &upstream)
           != NGX_OK
        || ngx_ailink_conf_str(ld, item, "query", where, 0, &prov->query)
           != NGX_OK
        || ngx_ailink_conf_str(ld, item, "anthropic_version", where, 0,
                               &version)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (p = prov->query.data; p < prov->query.data + prov->query.len; p++) {
        if (*p <= ' ' || *p == 0x7f || *p == '#') {
            ngx_ailink_conf_error(ld, "%s.query: must be URL query arguments "
                                  "without spaces, control characters or "
                                  "\"#\"", where);
            return NGX_ERROR;
        }
    }

    if (version.len) {
        prov->version = version;
    }

    v = ngx_ailink_json_get(item, "max_tokens");

    if (v) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 1
            || v->valuedouble > 1000000)
        {
            ngx_ailink_conf_error(ld, "%s.max_tokens: must be a number of "
                                  "tokens from 1 to 1000000", where);
            return NGX_ERROR;
        }

        prov->max_tokens = (ngx_uint_t) v->valuedouble;
    }

    v = ngx_ailink_json_get(item, "safety_settings");

    if (v) {
        if (!cJSON_IsArray(v)
            || ngx_ailink_json_to_str(ld->cf->pool, v, &prov->safety_settings)
               != NGX_OK)
        {
            ngx_ailink_conf_error(ld, "%s.safety_settings: must be a list of "
                                  "{category, threshold}", where);
            return NGX_ERROR;
        }
    }

    if (type.len) {
        if (ngx_strcmp(type.data, "openai") == 0) {
            prov->type = NGX_AILINK_PROVIDER_OPENAI;

        } else if (ngx_strcmp(type.data, "anthropic") == 0) {
            prov->type = NGX_AILINK_PROVIDER_ANTHROPIC;

        } else if (ngx_strcmp(type.data, "gemini") == 0) {
            prov->type = NGX_AILINK_PROVIDER_GEMINI;

        } else {
            ngx_ailink_conf_error(ld, "%s.type: \"%V\" is not one of openai, "
                                  "anthropic, gemini", where, &type);
            return NGX_ERROR;
        }

    } else if (prov->type == 0) {
        prov->type = NGX_AILINK_PROVIDER_OPENAI;
    }

    if (base_url.len == 0) {
        base_url = prov->base.url;
    }

    if (ngx_ailink_conf_base_url(ld, &base_url, &upstream, where, "base_url",
                                 &prov->base)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    auth = ngx_ailink_json_get(item, "auth");

    if (auth) {
        ngx_snprintf((u_char *) where, sizeof(where), "providers.%V.auth%Z",
                     &prov->name);

        if (ngx_ailink_conf_keys(ld, auth, where,
                                 (const char *[]) { "scheme", "name", NULL })
            != NGX_OK
            || ngx_ailink_conf_inject(ld, auth, where, &prov->inject)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else if (prov->inject.scheme == NGX_AILINK_SCHEME_NONE) {
        /* the scheme of the type's own API: x-goog-api-key, x-api-key */
        for (d = ngx_ailink_default_providers; d->name; d++) {
            if (d->type == prov->type) {
                prov->inject.scheme = d->scheme;

                if (d->header) {
                    prov->inject.name.data = (u_char *) d->header;
                    prov->inject.name.len = ngx_strlen(d->header);
                }

                break;
            }
        }

        if (prov->inject.scheme == NGX_AILINK_SCHEME_NONE) {
            prov->inject.scheme = NGX_AILINK_SCHEME_BEARER;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_conf_providers(ngx_ailink_loader_t *ld, cJSON *root)
{
    cJSON                          *list, *item;
    ngx_str_t                       name, none = ngx_null_string;
    ngx_ailink_provider_t          *prov;
    ngx_ailink_default_provider_t  *d;

    for (d = ngx_ailink_default_providers; d->name; d++) {
        prov = ngx_array_push(&ld->conf->providers);
        if (prov == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(prov, sizeof(ngx_ailink_provider_t));

        prov->name.data = (u_char *) d->name;
        prov->name.len = ngx_strlen(d->name);
        prov->type = d->type;
        prov->inject.scheme = d->scheme;

        if (d->header) {
            prov->inject.name.data = (u_char *) d->header;
            prov->inject.name.len = ngx_strlen(d->header);
        }

        prov->max_tokens = 4096;
        ngx_str_set(&prov->version, "2023-06-01");

        name.data = (u_char *) d->base_url;
        name.len = ngx_strlen(d->base_url);

        if (ngx_ailink_conf_base_url(ld, &name, &none, d->name, "base_url",
                                     &prov->base)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    list = ngx_ailink_json_get(root, "providers");
    if (list == NULL) {
        return NGX_OK;
    }

    if (!cJSON_IsObject(list)) {
        ngx_ailink_conf_error(ld, "providers: must be a mapping of names");
        return NGX_ERROR;
    }

    cJSON_ArrayForEach(item, list) {
        name.data = (u_char *) item->string;
        name.len = ngx_strlen(item->string);

        prov = ngx_ailink_provider_find(ld->conf, &name);

        if (prov == NULL) {
            prov = ngx_array_push(&ld->conf->providers);
            if (prov == NULL) {
                return NGX_ERROR;
            }

            ngx_memzero(prov, sizeof(ngx_ailink_provider_t));

            prov->name.data = ngx_pstrdup(ld->cf->pool, &name);
            if (prov->name.data == NULL) {
                return NGX_ERROR;
            }

            prov->name.len = name.len;
            prov->max_tokens = 4096;
            ngx_str_set(&prov->version, "2023-06-01");
        }

        if (ngx_ailink_conf_provider(ld, item, prov) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static int ngx_libc_cdecl
ngx_ailink_route_cmp(const void *one, const void *two)
{
    const ngx_ailink_route_t  *a = one, *b = two;

    /* longest prefix first, so that the first match is the best one */
    return (int) b->prefix.len - (int) a->prefix.len;
}


static ngx_int_t
ngx_ailink_route_add(ngx_ailink_loader_t *ld, ngx_str_t *prefix,
    ngx_str_t *provider, const char *where)
{
    ngx_uint_t           i;
    ngx_ailink_route_t  *route;

    route = ld->conf->routes.elts;

    for (i = 0; i < ld->conf->routes.nelts; i++) {
        if (route[i].prefix.len == prefix->len
            && ngx_strncmp(route[i].prefix.data, prefix->data, prefix->len)
               == 0)
        {
            break;
        }
    }

    if (i == ld->conf->routes.nelts) {
        route = ngx_array_push(&ld->conf->routes);
        if (route == NULL) {
            return NGX_ERROR;
        }

    } else {
        route = &route[i];
    }

    route->prefix = *prefix;
    route->provider = ngx_ailink_provider_find(ld->conf, provider);

    if (route->provider == NULL) {
        ngx_ailink_conf_error(ld, "%s: unknown provider \"%V\"",
                              where, provider);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_conf_routes(ngx_ailink_loader_t *ld, cJSON *root)
{
    char          where[64];
    cJSON        *list, *item;
    ngx_str_t     prefix, provider;
    ngx_uint_t    i;

    static const char  *known[] = { "prefix", "provider", NULL };

    for (i = 0; ngx_ailink_default_routes[i][0]; i++) {
        prefix.data = (u_char *) ngx_ailink_default_routes[i][0];
        prefix.len = ngx_strlen(prefix.data);
        provider.data = (u_char *) ngx_ailink_default_routes[i][1];
        provider.len = ngx_strlen(provider.data);

        if (ngx_ailink_route_add(ld, &prefix, &provider, "routes") != NGX_OK) {
            return NGX_ERROR;
        }
    }

    list = ngx_ailink_json_get(root, "routes");

    if (list && !cJSON_IsArray(list)) {
        ngx_ailink_conf_error(ld, "routes: must be a list of "
                              "{prefix, provider}");
        return NGX_ERROR;
    }

    i = 0;

    cJSON_ArrayForEach(item, list) {
        ngx_snprintf((u_char *) where, sizeof(where), "routes[%ui]%Z", i++);

        if (ngx_ailink_conf_keys(ld, item, where, known) != NGX_OK
            || ngx_ailink_conf_str(ld, item, "prefix", where, 1, &prefix)
               != NGX_OK
            || ngx_ailink_conf_str(ld, item, "provider", where, 1, &provider)
               != NGX_OK
            || ngx_ailink_route_add(ld, &prefix, &provider, where) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    ngx_qsort(ld->conf->routes.elts, ld->conf->routes.nelts,
              sizeof(ngx_ailink_route_t), ngx_ailink_route_cmp);

    return NGX_OK;
}


ngx_ailink_provider_t *
ngx_ailink_route_model(ngx_ailink_conf_t *conf, ngx_str_t *model)
{
    ngx_uint_t           i;
    ngx_ailink_route_t  *route;

    route = conf->routes.elts;

    for (i = 0; i < conf->routes.nelts; i++) {
        if (model->len >= route[i].prefix.len
            && ngx_strncmp(model->data, route[i].prefix.data,
                           route[i].prefix.len) == 0)
        {
            return route[i].provider;
        }
    }

    return NULL;
}


static time_t
ngx_ailink_parse_rfc3339(ngx_str_t *s)
{
    int        n, year, mon, mday, hour, min, sec, off;
    char       buf[64], *p;
    struct tm  tm;

    if (s->len >= sizeof(buf)) {
        return NGX_ERROR;
    }

    ngx_memcpy(buf, s->data, s->len);
    buf[s->len] = '\0';

    n = 0;
    if (sscanf(buf, "%4d-%2d-%2dT%2d:%2d:%2d%n", &year, &mon, &mday,
               &hour, &min, &sec, &n) != 6)
    {
        return NGX_ERROR;
    }

    p = buf + n;

    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++) { /* void */ }
    }

    off = 0;

    if (*p == 'Z' && p[1] == '\0') {
        /* UTC */

    } else if ((*p == '+' || *p == '-') && ngx_strlen(p) == 6 && p[3] == ':') {
        off = ((p[1] - '0') * 10 + (p[2] - '0')) * 3600
              + ((p[4] - '0') * 10 + (p[5] - '0')) * 60;
        if (*p == '+') {
            off = -off;
        }

    } else {
        return NGX_ERROR;
    }

    ngx_memzero(&tm, sizeof(struct tm));
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = mday;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;

    return timegm(&tm) + off;
}


static ngx_int_t
ngx_ailink_conf_hash(ngx_ailink_loader_t *ld, ngx_str_t *hex,
    const char *where, u_char *hash)
{
    ngx_int_t   c;
    ngx_uint_t  i;

    if (hex->len > 7 && ngx_strncmp(hex->data, "sha256:", 7) == 0) {
        hex->data += 7;
        hex->len -= 7;
    }

    if (hex->len != 2 * NGX_AILINK_SHA256_LEN) {
        goto invalid;
    }

    for (i = 0; i < NGX_AILINK_SHA256_LEN; i++) {
        c = ngx_hextoi(&hex->data[2 * i], 2);
        if (c == NGX_ERROR) {
            goto invalid;
        }

        hash[i] = (u_char) c;
    }

    return NGX_OK;

invalid:

    ngx_ailink_conf_error(ld, "%s.hash: must be 64 hex digits of the "
                          "token's SHA-256 (scripts/ailink-token mints one)",
                          where);
    return NGX_ERROR;
}


static ngx_int_t
ngx_ailink_conf_token_creds(ngx_ailink_loader_t *ld, cJSON *item,
    const char *where, ngx_ailink_token_t *tok)
{
    char                         sub[160];
    cJSON                       *map, *c;
    ngx_str_t                    name;
    ngx_ailink_provider_cred_t  *pc;

    if (ngx_ailink_conf_str(ld, item, "credential", where, 0, &name)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (name.len) {
        tok->credential = ngx_ailink_credential_find(ld->conf, &name);

        if (tok->credential == NULL) {
            ngx_ailink_conf_error(ld, "%s.credential: unknown credential "
                                  "\"%V\"", where, &name);
            return NGX_ERROR;
        }
    }

    map = ngx_ailink_json_get(item, "credentials");
    if (map == NULL) {
        return NGX_OK;
    }

    if (!tok->llm || !cJSON_IsObject(map)) {
        ngx_ailink_conf_error(ld, "%s.credentials: a mapping of provider to "
                              "credential, for tokens without \"upstream\"",
                              where);
        return NGX_ERROR;
    }

    if (ngx_array_init(&tok->provider_creds, ld->cf->pool, 4,
                       sizeof(ngx_ailink_provider_cred_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    cJSON_ArrayForEach(c, map) {
        ngx_snprintf((u_char *) sub, sizeof(sub), "%s.credentials.%s%Z",
                     where, c->string);

        pc = ngx_array_push(&tok->provider_creds);
        if (pc == NULL) {
            return NGX_ERROR;
        }

        name.data = (u_char *) c->string;
        name.len = ngx_strlen(c->string);

        pc->provider = ngx_ailink_provider_find(ld->conf, &name);
        if (pc->provider == NULL) {
            ngx_ailink_conf_error(ld, "%s: unknown provider", sub);
            return NGX_ERROR;
        }

        if (!cJSON_IsString(c)) {
            ngx_ailink_conf_error(ld, "%s: must name a credential", sub);
            return NGX_ERROR;
        }

        name.data = (u_char *) c->valuestring;
        name.len = ngx_strlen(c->valuestring);

        pc->credential = ngx_ailink_credential_find(ld->conf, &name);
        if (pc->credential == NULL) {
            ngx_ailink_conf_error(ld, "%s: unknown credential \"%V\"",
                                  sub, &name);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_conf_token(ngx_ailink_loader_t *ld, cJSON *item, const char *where,
    ngx_ailink_token_t *tok)
{
    char        sub[80];
    cJSON      *v;
    ngx_str_t   hash, expires, upstream, nginx_upstream;

    static const char  *known[] = { "id", "name", "project", "hash",
                                    "enabled", "expires_at", "agent_name",
                                    "upstream", "nginx_upstream",
                                    "credential", "credentials", "byok",
                                    "policies", "circuit_breaker",
                                    "cache_ttl_secs", "guardrails", NULL };

    if (ngx_ailink_conf_keys(ld, item, where, known) != NGX_OK
        || ngx_ailink_conf_str(ld, item, "id", where, 1, &tok->id) != NGX_OK
        || ngx_ailink_conf_str(ld, item, "name", where, 0, &tok->name)
           != NGX_OK
        || ngx_ailink_conf_str(ld, item, "project", where, 1, &tok->project)
           != NGX_OK
        || ngx_ailink_conf_str(ld, item, "hash", where, 1, &hash) != NGX_OK
        || ngx_ailink_conf_str(ld, item, "expires_at", where, 0, &expires)
           != NGX_OK
        || ngx_ailink_conf_str(ld, item, "agent_name", where, 0,
                               &tok->agent_name)
           != NGX_OK
        || ngx_ailink_conf_str(ld, item, "upstream", where, 0, &upstream)
           != NGX_OK
        || ngx_ailink_conf_str(ld, item, "nginx_upstream", where, 0,
                               &nginx_upstream)
           != NGX_OK
        || ngx_ailink_conf_hash(ld, &hash, where, tok->hash) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (tok->name.len == 0) {
        tok->name = tok->id;
    }

    v = ngx_ailink_json_get(item, "enabled");

    if (v && !cJSON_IsBool(v)) {
        ngx_ailink_conf_error(ld, "%s.enabled: must be true or false", where);
        return NGX_ERROR;
    }

    tok->enabled = (v == NULL || cJSON_IsTrue(v));

    if (expires.len) {
        tok->expires = ngx_ailink_parse_rfc3339(&expires);

        if (tok->expires == NGX_ERROR) {
            ngx_ailink_conf_error(ld, "%s.expires_at: \"%V\" is not an "
                                  "RFC 3339 time such as "
                                  "2027-01-31T00:00:00Z", where, &expires);
            return NGX_ERROR;
        }
    }

    tok->llm = (upstream.len == 0);

    if (!tok->llm
        && ngx_ailink_conf_base_url(ld, &upstream, &nginx_upstream, where,
                                    "upstream", &tok->upstream)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_ailink_conf_token_creds(ld, item, where, tok) != NGX_OK) {
        return NGX_ERROR;
    }

    v = ngx_ailink_json_get(item, "byok");

    if (v) {
        ngx_snprintf((u_char *) sub, sizeof(sub), "%s.byok%Z", where);

        if (ngx_ailink_conf_keys(ld, v, sub,
                                 (const char *[]) { "scheme", "name", NULL })
            != NGX_OK
            || ngx_ailink_conf_inject(ld, v, sub, &tok->byok) != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else {
        tok->byok.scheme = NGX_AILINK_SCHEME_BEARER;
    }

    return NGX_OK;
}


static int ngx_libc_cdecl
ngx_ailink_token_cmp(const void *one, const void *two)
{
    const ngx_ailink_token_t  *a = one, *b = two;

    return ngx_memcmp(a->hash, b->hash, NGX_AILINK_SHA256_LEN);
}


static ngx_int_t
ngx_ailink_conf_tokens(ngx_ailink_loader_t *ld, cJSON *root)
{
    char                 where[64];
    cJSON               *list, *item;
    ngx_uint_t           i, j;
    ngx_ailink_token_t  *tok;

    list = ngx_ailink_json_get(root, "tokens");

    if (list && !cJSON_IsArray(list)) {
        ngx_ailink_conf_error(ld, "tokens: must be a list");
        return NGX_ERROR;
    }

    i = 0;

    cJSON_ArrayForEach(item, list) {
        ngx_snprintf((u_char *) where, sizeof(where), "tokens[%ui]%Z", i++);

        tok = ngx_array_push(&ld->conf->tokens);
        if (tok == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(tok, sizeof(ngx_ailink_token_t));

        if (ngx_ailink_conf_token(ld, item, where, tok) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    tok = ld->conf->tokens.elts;

    for (i = 0; i < ld->conf->tokens.nelts; i++) {
        for (j = i + 1; j < ld->conf->tokens.nelts; j++) {
            if (tok[i].id.len == tok[j].id.len
                && ngx_strcmp(tok[i].id.data, tok[j].id.data) == 0)
            {
                ngx_ailink_conf_error(ld, "tokens: id \"%V\" is used twice",
                                      &tok[i].id);
                return NGX_ERROR;
            }
        }
    }

    ngx_qsort(ld->conf->tokens.elts, ld->conf->tokens.nelts,
              sizeof(ngx_ailink_token_t), ngx_ailink_token_cmp);

    for (i = 1; i < ld->conf->tokens.nelts; i++) {
        if (ngx_ailink_token_cmp(&tok[i - 1], &tok[i]) == 0) {
            ngx_ailink_conf_error(ld, "tokens: \"%V\" and \"%V\" have the "
                                  "same hash", &tok[i - 1].id, &tok[i].id);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * The digest of the presented token is looked up by binary search; the
 * final equality check is constant-time, so the comparison never tells an
 * attacker how many bytes of a stored hash they matched.
 */

ngx_ailink_token_t *
ngx_ailink_token_find(ngx_ailink_conf_t *conf, u_char *hash)
{
    ngx_int_t            c;
    ngx_uint_t           lo, hi, mid;
    ngx_ailink_token_t  *tok;

    tok = conf->tokens.elts;
    lo = 0;
    hi = conf->tokens.nelts;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        c = ngx_memcmp(hash, tok[mid].hash, NGX_AILINK_SHA256_LEN);

        if (c == 0) {
            break;
        }

        if (c < 0) {
            hi = mid;

        } else {
            lo = mid + 1;
        }
    }

    if (lo >= hi) {
        return NULL;
    }

    if (CRYPTO_memcmp(hash, tok[mid].hash, NGX_AILINK_SHA256_LEN) != 0) {
        return NULL;
    }

    return &tok[mid];
}


ngx_ailink_credential_t *
ngx_ailink_token_credential(ngx_ailink_token_t *tok,
    ngx_ailink_provider_t *provider)
{
    ngx_uint_t                   i;
    ngx_ailink_provider_cred_t  *pc;

    if (provider && tok->provider_creds.nelts) {
        pc = tok->provider_creds.elts;

        for (i = 0; i < tok->provider_creds.nelts; i++) {
            if (pc[i].provider == provider) {
                return pc[i].credential;
            }
        }
    }

    return tok->credential;
}


ngx_ailink_conf_t *
ngx_ailink_conf_load(ngx_conf_t *cf, ngx_str_t *file)
{
    cJSON                *root;
    ngx_int_t             rc;
    ngx_ailink_conf_t    *conf;
    ngx_ailink_loader_t   ld;

    static const char  *known[] = { "providers", "routes", "credentials",
                                    "tokens", "prices", "policies",
                                    "admin_keys", "guardrails",
                                    "fallbacks", NULL };

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_ailink_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->file = *file;

    if (ngx_array_init(&conf->tokens, cf->pool, 16, sizeof(ngx_ailink_token_t))
        != NGX_OK
        || ngx_array_init(&conf->credentials, cf->pool, 8,
                          sizeof(ngx_ailink_credential_t))
           != NGX_OK
        || ngx_array_init(&conf->providers, cf->pool, 8,
                          sizeof(ngx_ailink_provider_t))
           != NGX_OK
        || ngx_array_init(&conf->routes, cf->pool, 16,
                          sizeof(ngx_ailink_route_t))
           != NGX_OK)
    {
        return NULL;
    }

    root = ngx_ailink_yaml_load(cf, file);
    if (root == NULL) {
        return NULL;
    }

    ld.cf = cf;
    ld.conf = conf;

    rc = NGX_ERROR;

    if (ngx_ailink_conf_keys(&ld, root, "top level", known) == NGX_OK
        && ngx_ailink_conf_providers(&ld, root) == NGX_OK
        && ngx_ailink_conf_routes(&ld, root) == NGX_OK
        && ngx_ailink_conf_credentials(&ld, root) == NGX_OK
        && ngx_ailink_conf_tokens(&ld, root) == NGX_OK
        && ngx_ailink_prices_init(cf, &conf->prices,
                         ngx_ailink_json_get(root, "prices"))
           == NGX_OK
        && ngx_ailink_guard_conf_load(cf, conf, root) == NGX_OK
        && ngx_ailink_policy_conf_load(cf, conf, root) == NGX_OK
        && ngx_ailink_admin_keys_load(cf, conf, root) == NGX_OK
        && ngx_ailink_breaker_conf_load(cf, conf, root) == NGX_OK
        && ngx_ailink_cache_conf_load(cf, conf, root) == NGX_OK
        && ngx_ailink_fallback_conf_load(cf, conf, root) == NGX_OK)
    {
        rc = NGX_OK;
    }

    cJSON_Delete(root);

    return rc == NGX_OK ? conf : NULL;
}


/*
 * For the admin API's store: its tokens, services and credentials are
 * compiled by the same code as the file's, against a configuration that
 * holds the file's providers and credentials plus the store's.
 */

ngx_int_t
ngx_ailink_conf_load_tokens(ngx_conf_t *cf, ngx_ailink_conf_t *conf,
    cJSON *root)
{
    ngx_ailink_loader_t  ld;

    ld.cf = cf;
    ld.conf = conf;

    return ngx_ailink_conf_tokens(&ld, root);
}


ngx_int_t
ngx_ailink_conf_load_base_url(ngx_conf_t *cf, ngx_ailink_conf_t *conf,
    ngx_str_t *url, const char *where, ngx_ailink_base_url_t *base)
{
    ngx_str_t            none = ngx_null_string;
    ngx_ailink_loader_t  ld;

    ld.cf = cf;
    ld.conf = conf;

    return ngx_ailink_conf_base_url(&ld, url, &none, where, "base_url", base);
}


ngx_int_t
ngx_ailink_conf_load_inject(ngx_conf_t *cf, ngx_ailink_conf_t *conf,
    cJSON *obj, const char *where, ngx_ailink_inject_t *inject)
{
    ngx_ailink_loader_t  ld;

    ld.cf = cf;
    ld.conf = conf;

    return ngx_ailink_conf_inject(&ld, obj, where, inject);
}


/* a directive's password from a file: its first line, never logged */

ngx_int_t
ngx_ailink_conf_password_file(ngx_conf_t *cf, const char *directive,
    ngx_str_t *name, ngx_str_t *password)
{
    u_char       *p, *last;
    ssize_t       n;
    ngx_fd_t      fd;
    ngx_file_t    file;
    u_char        buf[1024];

    if (ngx_conf_full_name(cf->cycle, name, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    fd = ngx_open_file(name->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "%s: cannot open password_file \"%V\"",
                           directive, name);
        return NGX_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.fd = fd;
    file.name = *name;
    file.log = cf->log;

    n = ngx_read_file(&file, buf, sizeof(buf), 0);

    (void) ngx_close_file(fd);

    if (n == NGX_ERROR) {
        return NGX_ERROR;
    }

    last = buf + n;

    for (p = buf; p < last && *p != CR && *p != LF; p++) {
        /* void */
    }

    if (p == buf) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s: password_file \"%V\" is empty",
                           directive, name);
        return NGX_ERROR;
    }

    password->len = p - buf;
    password->data = ngx_pnalloc(cf->pool, password->len + 1);
    if (password->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(password->data, buf, password->len);
    password->data[password->len] = '\0';

    ngx_explicit_memzero(buf, sizeof(buf));

    return NGX_OK;
}


/*
 * a directive's "password_file=path": NGX_DECLINED when arg is another
 * parameter, NGX_ABORT when it names no file, NGX_ERROR when the file
 * cannot be read (logged), NGX_OK with the password, NUL-terminated
 */

ngx_int_t
ngx_ailink_conf_password_arg(ngx_conf_t *cf, const char *directive,
    ngx_str_t *arg, char **password)
{
    ngx_str_t  name, secret;

    if (arg->len < sizeof("password_file=") - 1
        || ngx_strncmp(arg->data, "password_file=",
                       sizeof("password_file=") - 1) != 0)
    {
        return NGX_DECLINED;
    }

    name.len = arg->len - (sizeof("password_file=") - 1);
    if (name.len == 0) {
        return NGX_ABORT;
    }

    name.data = ngx_pnalloc(cf->pool, name.len + 1);
    if (name.data == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_cpystrn(name.data, arg->data + sizeof("password_file=") - 1,
                       name.len + 1);

    if (ngx_ailink_conf_password_file(cf, directive, &name, &secret)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    *password = (char *) secret.data;

    return NGX_OK;
}
