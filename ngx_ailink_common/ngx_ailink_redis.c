
/*
 * Copyright (C) AILink
 *
 * One Redis connection per worker, on nginx's event loop: hiredis's async
 * API with its event hooks mapped to an nginx connection on the hiredis
 * socket.  The address is resolved when the configuration is read; the
 * connect is non-blocking; AUTH, SELECT and SCRIPT LOAD are queued on
 * connect (the first commands on the socket, so everything after them
 * sees them done).  Every command with a reply handler has a timer; when
 * the connection goes away every pending handler is called with no reply.
 * Lost connections come back with a backoff, and each change of state is
 * logged once.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <openssl/sha.h>

#include "ngx_ailink_state.h"
#include "ngx_ailink_auth.h"


#define NGX_AILINK_REDIS_BACKOFF_MIN   100
#define NGX_AILINK_REDIS_BACKOFF_MAX   2000


enum {
    NGX_AILINK_REDIS_UNKNOWN = 0,
    NGX_AILINK_REDIS_UP,
    NGX_AILINK_REDIS_DOWN
};


typedef struct {
    ngx_str_t                   addr;       /* as configured, for logs */
    u_char                      ip[NGX_SOCKADDR_STRLEN + 1];
    in_port_t                   port;
    ngx_str_t                   user;
    ngx_str_t                   password;
    ngx_int_t                   db;
    ngx_msec_t                  timeout;
    ngx_array_t                 scripts;    /* ngx_str_t */
    ngx_flag_t                  configured;
} ngx_ailink_redis_conf_t;


/* one command waiting for its reply (heap: it may outlive any pool) */
typedef struct {
    ngx_event_t                 timer;
    ngx_ailink_redis_reply_pt   handler;
    void                       *data;
} ngx_ailink_redis_wait_t;


/* the worker's connection */
typedef struct {
    ngx_ailink_redis_conf_t    *conf;
    redisAsyncContext          *ac;
    ngx_connection_t           *c;
    ngx_event_t                 reconnect;
    ngx_msec_t                  backoff;
    ngx_uint_t                  state;
    ngx_uint_t                  ready;      /* set up and answering */
    ngx_uint_t                  slow;       /* a command timed out */
    ngx_uint_t                  exiting;
    const char                 *why;
    ngx_log_t                  *log;
} ngx_ailink_redis_t;


static void ngx_ailink_redis_connect(ngx_ailink_redis_t *rd);
static void ngx_ailink_redis_set_state(ngx_ailink_redis_t *rd,
    ngx_uint_t state, const char *why);
static void ngx_ailink_redis_schedule(ngx_ailink_redis_t *rd);
static void ngx_ailink_redis_reconnect_handler(ngx_event_t *ev);
static void ngx_ailink_redis_read_handler(ngx_event_t *ev);
static void ngx_ailink_redis_write_handler(ngx_event_t *ev);
static void ngx_ailink_redis_add_read(void *privdata);
static void ngx_ailink_redis_del_read(void *privdata);
static void ngx_ailink_redis_add_write(void *privdata);
static void ngx_ailink_redis_del_write(void *privdata);
static void ngx_ailink_redis_cleanup(void *privdata);
static void ngx_ailink_redis_on_connect(const redisAsyncContext *ac,
    int status);
static void ngx_ailink_redis_on_disconnect(const redisAsyncContext *ac,
    int status);
static void ngx_ailink_redis_setup_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_ailink_redis_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_ailink_redis_timeout(ngx_event_t *ev);
static ngx_int_t ngx_ailink_redis_init_process(ngx_cycle_t *cycle);
static void ngx_ailink_redis_exit_process(ngx_cycle_t *cycle);
static void *ngx_ailink_redis_create_main_conf(ngx_conf_t *cf);
static char *ngx_ailink_redis_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_command_t  ngx_ailink_redis_commands[] = {

    { ngx_string("ailink_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_ailink_redis_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_ailink_redis_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_ailink_redis_create_main_conf,     /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_ailink_redis_module = {
    NGX_MODULE_V1,
    &ngx_ailink_redis_module_ctx,          /* module context */
    ngx_ailink_redis_commands,             /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_ailink_redis_init_process,         /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_ailink_redis_exit_process,         /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_ailink_redis_t  ngx_ailink_redis;


/* GET /readyz's "redis" and ailink_backend_up{backend="redis"} */

static const char *
ngx_ailink_redis_ready_check(ngx_http_request_t *r, void *data)
{
    return ngx_ailink_redis_ready(NULL) == NGX_OK ? "ok" : "down";
}


/*
 * NGX_OK when no Redis is configured or the worker's connection is up
 * (for a readiness check); NGX_ERROR with the reason otherwise
 */

ngx_int_t
ngx_ailink_redis_ready(ngx_str_t *why)
{
    ngx_ailink_redis_t  *rd;

    rd = &ngx_ailink_redis;

    if (rd->conf == NULL || rd->ready) {
        return NGX_OK;
    }

    if (why) {
        why->data = (u_char *) (rd->why ? rd->why : "redis: not connected");
        why->len = ngx_strlen(why->data);
    }

    return NGX_ERROR;
}


ngx_int_t
ngx_ailink_redis_configured(ngx_conf_t *cf)
{
    ngx_ailink_redis_conf_t  *rcf;

    rcf = ngx_http_conf_get_module_main_conf(cf, ngx_ailink_redis_module);

    return rcf->configured ? NGX_OK : NGX_DECLINED;
}


/* a Lua script to load on every connection; its SHA1 in hex into sha */

ngx_int_t
ngx_ailink_redis_add_script(ngx_conf_t *cf, ngx_str_t *script, u_char *sha)
{
    u_char                    md[SHA_DIGEST_LENGTH];
    ngx_str_t                *s;
    ngx_ailink_redis_conf_t  *rcf;

    rcf = ngx_http_conf_get_module_main_conf(cf, ngx_ailink_redis_module);

    s = ngx_array_push(&rcf->scripts);
    if (s == NULL) {
        return NGX_ERROR;
    }

    *s = *script;

    SHA1(script->data, script->len, md);
    ngx_hex_dump(sha, md, SHA_DIGEST_LENGTH);

    return NGX_OK;
}


/*
 * sends a command; with a handler, NGX_AGAIN and the handler is called
 * exactly once, with the reply or NULL (no connection, a timeout); with
 * none, NGX_OK when it is on its way.  NGX_ERROR: not sent.
 */

ngx_int_t
ngx_ailink_redis_command(int argc, const char **argv, const size_t *argvlen,
    ngx_ailink_redis_reply_pt handler, void *data)
{
    int                       done;
    ngx_ailink_redis_t       *rd;
    ngx_ailink_redis_wait_t  *w;

    rd = &ngx_ailink_redis;

    if (rd->ac == NULL) {
        return NGX_ERROR;
    }

    if (handler == NULL) {
        if (redisAsyncCommandArgv(rd->ac, NULL, NULL, argc, argv, argvlen)
            != REDIS_OK)
        {
            return NGX_ERROR;
        }

        /*
         * written now rather than on the next write event: a write nobody
         * waits for (a stored response, a released key) is in Redis's
         * socket before the client has the answer it follows, so the
         * client's next request, on any gateway, finds it.  An error is
         * left in the context for the write event (no callback runs here)
         */
        if (rd->ac->c.flags & REDIS_CONNECTED) {
            (void) redisBufferWrite(&rd->ac->c, &done);
        }

        return NGX_OK;
    }

    w = ngx_alloc(sizeof(ngx_ailink_redis_wait_t), rd->log);
    if (w == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(&w->timer, sizeof(ngx_event_t));
    w->handler = handler;
    w->data = data;

    if (redisAsyncCommandArgv(rd->ac, ngx_ailink_redis_reply, w, argc, argv,
                              argvlen)
        != REDIS_OK)
    {
        ngx_free(w);
        return NGX_ERROR;
    }

    w->timer.handler = ngx_ailink_redis_timeout;
    w->timer.data = w;
    w->timer.log = rd->log;
    ngx_add_timer(&w->timer, rd->conf->timeout);

    return NGX_AGAIN;
}


static void
ngx_ailink_redis_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    ngx_ailink_redis_wait_t *w = privdata;

    ngx_ailink_redis_t  *rd;

    rd = &ngx_ailink_redis;

    if (w->timer.timer_set) {
        ngx_del_timer(&w->timer);
    }

    if (w->handler) {
        if (r && rd->slow) {
            rd->slow = 0;
            ngx_log_error(NGX_LOG_NOTICE, rd->log, 0,
                          "ailink redis %V: answering in time again",
                          &rd->conf->addr);
        }

        w->handler(w->data, r);
    }

    ngx_free(w);
}


/* the reply is late: the caller goes on without it; it is dropped */

static void
ngx_ailink_redis_timeout(ngx_event_t *ev)
{
    ngx_ailink_redis_wait_t *w = ev->data;

    ngx_ailink_redis_t         *rd;
    ngx_ailink_redis_reply_pt   handler;

    rd = &ngx_ailink_redis;

    if (!rd->slow) {
        rd->slow = 1;
        ngx_log_error(NGX_LOG_WARN, rd->log, 0,
                      "ailink redis %V: no reply within %M ms",
                      &rd->conf->addr, rd->conf->timeout);
    }

    handler = w->handler;
    w->handler = NULL;

    if (handler) {
        handler(w->data, NULL);
    }
}


static void
ngx_ailink_redis_connect(ngx_ailink_redis_t *rd)
{
    size_t                    len[4];
    ngx_str_t                *s;
    ngx_uint_t                i, n;
    const char               *argv[4];
    ngx_connection_t         *c;
    redisAsyncContext        *ac;
    ngx_ailink_redis_conf_t  *rcf;

    rcf = rd->conf;

    ac = redisAsyncConnect((char *) rcf->ip, rcf->port);

    if (ac == NULL) {
        ngx_ailink_redis_set_state(rd, NGX_AILINK_REDIS_DOWN,
                                   "redis: out of memory");
        ngx_ailink_redis_schedule(rd);
        return;
    }

    if (ac->err) {
        ngx_ailink_redis_set_state(rd, NGX_AILINK_REDIS_DOWN,
                                   "redis: cannot connect");
        redisAsyncFree(ac);
        ngx_ailink_redis_schedule(rd);
        return;
    }

    c = ngx_get_connection(ac->c.fd, rd->log);

    if (c == NULL) {
        redisAsyncFree(ac);
        ngx_ailink_redis_schedule(rd);
        return;
    }

    c->data = ac;
    c->read->handler = ngx_ailink_redis_read_handler;
    c->write->handler = ngx_ailink_redis_write_handler;
    c->read->log = rd->log;
    c->write->log = rd->log;

    rd->ac = ac;
    rd->c = c;

    ac->ev.data = c;
    ac->ev.addRead = ngx_ailink_redis_add_read;
    ac->ev.delRead = ngx_ailink_redis_del_read;
    ac->ev.addWrite = ngx_ailink_redis_add_write;
    ac->ev.delWrite = ngx_ailink_redis_del_write;
    ac->ev.cleanup = ngx_ailink_redis_cleanup;

    redisAsyncSetConnectCallback(ac, ngx_ailink_redis_on_connect);
    redisAsyncSetDisconnectCallback(ac, ngx_ailink_redis_on_disconnect);

    /* queued now, written once the socket is connected */

    if (rcf->password.len) {
        n = 0;
        argv[n] = "AUTH";
        len[n++] = 4;

        if (rcf->user.len) {
            argv[n] = (char *) rcf->user.data;
            len[n++] = rcf->user.len;
        }

        argv[n] = (char *) rcf->password.data;
        len[n++] = rcf->password.len;

        (void) redisAsyncCommandArgv(ac, ngx_ailink_redis_setup_reply,
                                     (void *) "AUTH", n, argv, len);
    }

    if (rcf->db) {
        (void) redisAsyncCommand(ac, ngx_ailink_redis_setup_reply,
                                 (void *) "SELECT", "SELECT %d",
                                 (int) rcf->db);
    }

    s = rcf->scripts.elts;

    for (i = 0; i < rcf->scripts.nelts; i++) {
        argv[0] = "SCRIPT";
        len[0] = 6;
        argv[1] = "LOAD";
        len[1] = 4;
        argv[2] = (char *) s[i].data;
        len[2] = s[i].len;

        (void) redisAsyncCommandArgv(ac, ngx_ailink_redis_setup_reply,
                                     (void *) "SCRIPT LOAD", 3, argv, len);
    }

    /* the last of the setup: its reply says the connection is ready */
    (void) redisAsyncCommand(ac, ngx_ailink_redis_setup_reply, NULL, "PING");
}


static void
ngx_ailink_redis_setup_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply          *reply = r;
    ngx_ailink_redis_t  *rd;

    rd = &ngx_ailink_redis;

    if (reply == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        rd->ready = 0;

        if (rd->state != NGX_AILINK_REDIS_DOWN) {
            ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                          "ailink redis %V: %s failed: %*s",
                          &rd->conf->addr,
                          privdata ? (char *) privdata : "PING",
                          (size_t) reply->len, reply->str);
        }

        rd->state = NGX_AILINK_REDIS_DOWN;
        rd->why = (privdata && ngx_strcmp(privdata, "AUTH") == 0)
                  ? "redis: authentication failed"
                  : "redis: connection setup failed";

        /* once: the disconnect ends the connection, a retry follows */
        if (!(ac->c.flags & REDIS_DISCONNECTING)) {
            redisAsyncDisconnect(ac);
        }

        return;
    }

    if (privdata == NULL) {
        rd->backoff = NGX_AILINK_REDIS_BACKOFF_MIN;
        rd->ready = 1;
        rd->slow = 0;
        ngx_ailink_redis_set_state(rd, NGX_AILINK_REDIS_UP, NULL);
    }
}


static void
ngx_ailink_redis_on_connect(const redisAsyncContext *ac, int status)
{
    if (status != REDIS_OK) {
        ngx_ailink_redis_set_state(&ngx_ailink_redis, NGX_AILINK_REDIS_DOWN,
                                   "redis: cannot connect");
    }
}


static void
ngx_ailink_redis_on_disconnect(const redisAsyncContext *ac, int status)
{
    ngx_ailink_redis_t  *rd;

    rd = &ngx_ailink_redis;

    if (!rd->exiting) {
        ngx_ailink_redis_set_state(rd, NGX_AILINK_REDIS_DOWN,
                                   "redis: connection lost");
    }
}


static void
ngx_ailink_redis_set_state(ngx_ailink_redis_t *rd, ngx_uint_t state,
    const char *why)
{
    if (state != NGX_AILINK_REDIS_UP) {
        rd->ready = 0;
        rd->why = why;
    }

    if (state == rd->state) {
        return;
    }

    rd->state = state;

    if (state == NGX_AILINK_REDIS_UP) {
        ngx_log_error(NGX_LOG_NOTICE, rd->log, 0,
                      "ailink redis %V: connected", &rd->conf->addr);

    } else {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "ailink redis %V: unavailable (%s), retrying",
                      &rd->conf->addr, why);
    }
}


static void
ngx_ailink_redis_schedule(ngx_ailink_redis_t *rd)
{
    if (rd->exiting || ngx_exiting || ngx_terminate || ngx_quit
        || rd->reconnect.timer_set)
    {
        return;
    }

    ngx_add_timer(&rd->reconnect, rd->backoff);

    rd->backoff = ngx_min(rd->backoff * 2, NGX_AILINK_REDIS_BACKOFF_MAX);
}


static void
ngx_ailink_redis_reconnect_handler(ngx_event_t *ev)
{
    ngx_ailink_redis_t *rd = ev->data;

    if (rd->ac == NULL && !rd->exiting) {
        ngx_ailink_redis_connect(rd);
    }
}


static void
ngx_ailink_redis_read_handler(ngx_event_t *ev)
{
    ngx_connection_t  *c;

    c = ev->data;

    /* may free the context, and the connection with it (the cleanup) */
    redisAsyncHandleRead(c->data);
}


static void
ngx_ailink_redis_write_handler(ngx_event_t *ev)
{
    ngx_connection_t  *c;

    c = ev->data;

    redisAsyncHandleWrite(c->data);
}


/*
 * level-triggered events: hiredis reads once per call, so with epoll's
 * edge-triggered events a burst of replies larger than one read would
 * wait for the next byte; hiredis removes the write event when its
 * buffer is empty
 */

static void
ngx_ailink_redis_add_read(void *privdata)
{
    ngx_connection_t *c = privdata;

    if (!c->read->active) {
        (void) ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT);
    }
}


static void
ngx_ailink_redis_del_read(void *privdata)
{
    ngx_connection_t *c = privdata;

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }
}


static void
ngx_ailink_redis_add_write(void *privdata)
{
    ngx_connection_t *c = privdata;

    if (!c->write->active) {
        (void) ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT);
    }
}


static void
ngx_ailink_redis_del_write(void *privdata)
{
    ngx_connection_t *c = privdata;

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }
}


/* the context is being freed: hiredis closes the socket after this */

static void
ngx_ailink_redis_cleanup(void *privdata)
{
    ngx_connection_t *c = privdata;

    ngx_ailink_redis_t  *rd;

    rd = &ngx_ailink_redis;

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    c->fd = (ngx_socket_t) -1;
    ngx_free_connection(c);

    if (rd->c == c) {
        rd->c = NULL;
        rd->ac = NULL;
        rd->ready = 0;
        ngx_ailink_redis_schedule(rd);
    }
}


static ngx_int_t
ngx_ailink_redis_init_process(ngx_cycle_t *cycle)
{
    ngx_ailink_redis_t       *rd;
    ngx_ailink_redis_conf_t  *rcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    rcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_ailink_redis_module);

    if (rcf == NULL || !rcf->configured) {
        return NGX_OK;
    }

    rd = &ngx_ailink_redis;
    ngx_memzero(rd, sizeof(ngx_ailink_redis_t));

    rd->conf = rcf;
    rd->log = cycle->log;
    rd->backoff = NGX_AILINK_REDIS_BACKOFF_MIN;
    rd->why = "redis: connecting";

    rd->reconnect.handler = ngx_ailink_redis_reconnect_handler;
    rd->reconnect.data = rd;
    rd->reconnect.log = cycle->log;
    rd->reconnect.cancelable = 1;

    ngx_ailink_redis_connect(rd);

    return NGX_OK;
}


static void
ngx_ailink_redis_exit_process(ngx_cycle_t *cycle)
{
    ngx_ailink_redis_t  *rd;

    rd = &ngx_ailink_redis;

    if (rd->conf == NULL) {
        return;
    }

    rd->exiting = 1;

    if (rd->reconnect.timer_set) {
        ngx_del_timer(&rd->reconnect);
    }

    if (rd->ac) {
        redisAsyncFree(rd->ac);
    }
}


static void *
ngx_ailink_redis_create_main_conf(ngx_conf_t *cf)
{
    ngx_ailink_redis_conf_t  *rcf;

    rcf = ngx_pcalloc(cf->pool, sizeof(ngx_ailink_redis_conf_t));
    if (rcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&rcf->scripts, cf->pool, 2, sizeof(ngx_str_t))
        != NGX_OK)
    {
        return NULL;
    }

    return rcf;
}


static ngx_int_t
ngx_ailink_redis_cstr(ngx_conf_t *cf, ngx_str_t *in, size_t skip,
    ngx_str_t *out)
{
    out->len = in->len - skip;
    out->data = ngx_pnalloc(cf->pool, out->len + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, in->data + skip, out->len);
    out->data[out->len] = '\0';

    return NGX_OK;
}


/* ailink_redis host[:port] [password=..|password_file=..] [user=..]
 *              [db=N] [timeout=200ms]; */

static char *
ngx_ailink_redis_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_ailink_redis_conf_t *rcf = conf;

    size_t      len;
    ngx_str_t  *value, name;
    ngx_url_t   u;
    ngx_uint_t  i;

    if (rcf->configured) {
        return "is duplicate";
    }

    value = cf->args->elts;

    ngx_memzero(&u, sizeof(ngx_url_t));
    u.url = value[1];
    u.default_port = 6379;

    /* resolved here, once: no resolver on the request path */
    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ailink_redis: %s in \"%V\"",
                           u.err ? u.err : "bad address", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (u.naddrs == 0 || u.addrs[0].sockaddr->sa_family == AF_UNIX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ailink_redis: \"%V\" is not a TCP address",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen, rcf->ip,
                        NGX_SOCKADDR_STRLEN, 0);
    rcf->ip[len] = '\0';
    rcf->port = ngx_inet_get_port(u.addrs[0].sockaddr);
    rcf->addr = value[1];
    rcf->timeout = 200;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "password=", 9) == 0) {
            if (rcf->password.len || value[i].len == 9
                || ngx_ailink_redis_cstr(cf, &value[i], 9, &rcf->password)
                   != NGX_OK)
            {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "password_file=", 14) == 0) {
            if (rcf->password.len || value[i].len == 14
                || ngx_ailink_redis_cstr(cf, &value[i], 14, &name) != NGX_OK
                || ngx_ailink_conf_password_file(cf, "ailink_redis", &name,
                                                 &rcf->password)
                   != NGX_OK)
            {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "user=", 5) == 0) {
            if (value[i].len == 5
                || ngx_ailink_redis_cstr(cf, &value[i], 5, &rcf->user)
                   != NGX_OK)
            {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "db=", 3) == 0) {
            rcf->db = ngx_atoi(value[i].data + 3, value[i].len - 3);
            if (rcf->db == NGX_ERROR || rcf->db > 65535) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            name.data = value[i].data + 8;
            name.len = value[i].len - 8;

            rcf->timeout = ngx_parse_time(&name, 0);
            if (rcf->timeout == (ngx_msec_t) NGX_ERROR || rcf->timeout == 0) {
                goto invalid;
            }

            continue;
        }

        goto invalid;
    }

    if (rcf->user.len && rcf->password.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ailink_redis: \"user=\" needs a password");
        return NGX_CONF_ERROR;
    }

    if (ngx_ailink_ready_add_check(cf, "redis", ngx_ailink_redis_ready_check,
                                   NULL)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    rcf->configured = 1;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "ailink_redis: invalid parameter \"%V\"", &value[i]);
    return NGX_CONF_ERROR;
}
