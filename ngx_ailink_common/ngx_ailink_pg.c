
/*
 * Copyright (C) AILink
 */


#include "ngx_ailink_pg.h"
#include <libpq-fe.h>


static char *
ngx_ailink_pg_cstr(ngx_conf_t *cf, const char *s)
{
    size_t   len;
    u_char  *p;

    len = ngx_strlen(s);

    p = ngx_pnalloc(cf->pool, len + 1);
    if (p == NULL) {
        return NULL;
    }

    (void) ngx_cpystrn(p, (u_char *) s, len + 1);

    return (char *) p;
}


static ngx_uint_t
ngx_ailink_pg_is(const char *keyword, const char *name)
{
    return ngx_strcmp(keyword, name) == 0;
}


/*
 * The connection string of a directive, parsed with PQconninfoParse()
 * (no network) and never echoed, since it may hold a password: the
 * options it sets; then the password (from a password_file: it wins over
 * the string's); then, for the options it leaves out, the caller's
 * defaults (keyword, value, ..., NULL) and gssencmode=disable (GSSAPI
 * negotiation may ask a Kerberos server, blocking); and with resolve, a
 * host name resolved now into hostaddr, since a worker has no resolver.
 */

char *
ngx_ailink_pg_conninfo(ngx_conf_t *cf, const char *directive,
    ngx_str_t *text, char *password, const char **defaults,
    ngx_flag_t resolve, ngx_ailink_pg_conninfo_t *ci)
{
    char               *err, *host, *hostaddr, *port, *dbname;
    u_char             *copy;
    size_t              len;
    ngx_url_t           u;
    ngx_uint_t          k, n, d, known;
    const char        **def;
    PQconninfoOption   *opts, *o;
    u_char              addr[NGX_SOCKADDR_STRLEN + 1];

    copy = ngx_pnalloc(cf->pool, text->len + 1);
    if (copy == NULL) {
        return NGX_CONF_ERROR;
    }

    (void) ngx_cpystrn(copy, text->data, text->len + 1);

    err = NULL;
    opts = PQconninfoParse((char *) copy, &err);

    ngx_explicit_memzero(copy, text->len);

    if (opts == NULL) {
        if (err) {
            /* libpq's message ends with a newline */
            len = ngx_strlen(err);

            while (len && (err[len - 1] == LF || err[len - 1] == CR)) {
                err[--len] = '\0';
            }
        }

        /* only libpq's message naming an unknown keyword is safe to show:
           others quote a piece of the string */
        known = (err && ngx_strstr(err, "invalid connection option") == err);

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s: invalid connection string%s%s%s (the string "
                           "is not shown: it may hold a password)",
                           directive, known ? " (" : "", known ? err : "",
                           known ? ")" : "");
        if (err) {
            PQfreemem(err);
        }

        return NGX_CONF_ERROR;
    }

    n = 0;

    for (o = opts; o->keyword; o++) {
        n += (o->val != NULL);
    }

    for (d = 0; defaults && defaults[d]; d += 2) { /* void */ }

    /* and the password, the defaults, gssencmode, hostaddr, NULL */
    n += 1 + d / 2 + 3;

    ci->keywords = ngx_pcalloc(cf->pool, n * sizeof(char *));
    ci->values = ngx_pcalloc(cf->pool, n * sizeof(char *));
    if (ci->keywords == NULL || ci->values == NULL) {
        PQconninfoFree(opts);
        return NGX_CONF_ERROR;
    }

    host = NULL;
    hostaddr = NULL;
    port = NULL;
    dbname = NULL;
    k = 0;

    for (o = opts; o->keyword; o++) {
        if (o->val == NULL
            || (password && ngx_ailink_pg_is(o->keyword, "password")))
        {
            continue;
        }

        ci->keywords[k] = ngx_ailink_pg_cstr(cf, o->keyword);
        ci->values[k] = ngx_ailink_pg_cstr(cf, o->val);

        if (ci->keywords[k] == NULL || ci->values[k] == NULL) {
            PQconninfoFree(opts);
            return NGX_CONF_ERROR;
        }

        if (ngx_ailink_pg_is(o->keyword, "host")) {
            host = (char *) ci->values[k];

        } else if (ngx_ailink_pg_is(o->keyword, "hostaddr")) {
            hostaddr = (char *) ci->values[k];

        } else if (ngx_ailink_pg_is(o->keyword, "port")) {
            port = (char *) ci->values[k];

        } else if (ngx_ailink_pg_is(o->keyword, "dbname")) {
            dbname = (char *) ci->values[k];
        }

        k++;
    }

    PQconninfoFree(opts);

    if (password) {
        ci->keywords[k] = "password";
        ci->values[k++] = password;
    }

    for (def = defaults; def && *def; def += 2) {
        ci->keywords[k] = def[0];
        ci->values[k] = def[1];

        for (n = 0; n < k; n++) {
            if (ngx_ailink_pg_is(ci->keywords[n], def[0])) {
                break;
            }
        }

        k += (n == k);
    }

    ci->keywords[k] = "gssencmode";
    ci->values[k] = "disable";

    for (n = 0; n < k; n++) {
        if (ngx_ailink_pg_is(ci->keywords[n], "gssencmode")) {
            break;
        }
    }

    k += (n == k);

    if (resolve && host && hostaddr == NULL && host[0] != '/'
        && host[0] != '@' && ngx_strchr(host, ',') == NULL
        && ngx_strchr(host, ':') == NULL
        && ngx_inet_addr((u_char *) host, ngx_strlen(host)) == INADDR_NONE)
    {
        ngx_memzero(&u, sizeof(ngx_url_t));
        u.url.data = (u_char *) host;
        u.url.len = ngx_strlen(host);
        u.default_port = 5432;

        if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%s: host \"%s\" not found: %s", directive,
                               host, u.err ? u.err : "no address");
            return NGX_CONF_ERROR;
        }

        len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen, addr,
                            NGX_SOCKADDR_STRLEN, 0);
        addr[len] = '\0';

        hostaddr = ngx_ailink_pg_cstr(cf, (char *) addr);
        if (hostaddr == NULL) {
            return NGX_CONF_ERROR;
        }

        ci->keywords[k] = "hostaddr";
        ci->values[k++] = hostaddr;
    }

    ci->keywords[k] = NULL;
    ci->values[k] = NULL;

    /* its name in the logs: where, never who with what password */

    len = 64 + (host ? ngx_strlen(host) : 0)
          + (hostaddr ? ngx_strlen(hostaddr) : 0)
          + (port ? ngx_strlen(port) : 0)
          + (dbname ? ngx_strlen(dbname) : 0);

    ci->name.data = ngx_pnalloc(cf->pool, len);
    if (ci->name.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ci->name.len = ngx_snprintf(ci->name.data, len, "%s:%s/%s",
                                host ? host : (hostaddr ? hostaddr
                                                        : "localhost"),
                                port ? port : "5432",
                                dbname ? dbname : "(default)")
                   - ci->name.data;

    return NGX_CONF_OK;
}
