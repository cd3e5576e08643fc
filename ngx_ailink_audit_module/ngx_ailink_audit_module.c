
/*
 * Copyright (C) AILink
 *
 * One JSON line per request, written from the log phase.  Like nginx's
 * access_log, the sink is an nginx open file (reopened on USR1) with an
 * optional buffer flushed by a timer, when full, and by nginx itself when
 * a worker exits, so reloads and graceful stops lose no record.  Records
 * never carry a token, a key or a credential.
 */


#include "ngx_ailink_common.h"
#include "ngx_ailink_guard.h"
#include "ngx_ailink_audit_pg.h"


typedef struct {
    u_char                 *start;
    u_char                 *pos;
    u_char                 *last;
    ngx_event_t            *event;
    ngx_msec_t              flush;
} ngx_ailink_audit_buf_t;


typedef struct {
    ngx_open_file_t        *file;       /* NULL: audit off */
    ngx_flag_t              off;
} ngx_ailink_audit_loc_conf_t;


static ngx_int_t ngx_ailink_audit_handler(ngx_http_request_t *r);
static void ngx_ailink_audit_write(ngx_http_request_t *r,
    ngx_open_file_t *file, u_char *data, size_t len);
static void ngx_ailink_audit_flush(ngx_open_file_t *file, ngx_log_t *log);
static void ngx_ailink_audit_flush_handler(ngx_event_t *ev);
static void *ngx_ailink_audit_create_loc_conf(ngx_conf_t *cf);
static char *ngx_ailink_audit_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_ailink_audit_log(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_ailink_audit_postconfiguration(ngx_conf_t *cf);


static ngx_command_t  ngx_ailink_audit_commands[] = {

    { ngx_string("ailink_audit_log"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE123,
      ngx_ailink_audit_log,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_ailink_audit_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_ailink_audit_postconfiguration,    /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_ailink_audit_create_loc_conf,      /* create location configuration */
    ngx_ailink_audit_merge_loc_conf        /* merge location configuration */
};


ngx_module_t  ngx_ailink_audit_module = {
    NGX_MODULE_V1,
    &ngx_ailink_audit_module_ctx,          /* module context */
    ngx_ailink_audit_commands,             /* module directives */
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


static ngx_str_t  ngx_ailink_audit_null = ngx_null_string;


/*
 * The record is written by hand, not with one ngx_sprintf(): it is made
 * for every request, and formatting each key through ngx_vslprintf() cost
 * as much as the rest of the record.  Keys are literals copied whole.
 */

#define ngx_ailink_audit_key(p, key)                                          \
    ngx_cpymem(p, ",\"" key "\":", sizeof(",\"" key "\":") - 1)


/* ,"key":"escaped value" or ,"key":null */

#define ngx_ailink_audit_str(p, key, s)                                       \
    ngx_ailink_audit_value(ngx_ailink_audit_key(p, key), s)

static size_t
ngx_ailink_audit_str_len(ngx_str_t *s)
{
    return s->len ? ngx_ailink_json_escape_len(s) + 2 : 4;
}


static u_char *
ngx_ailink_audit_value(u_char *p, ngx_str_t *s)
{
    if (s->len == 0) {
        return ngx_cpymem(p, "null", 4);
    }

    *p++ = '"';
    p = ngx_ailink_json_escape(p, s);
    *p++ = '"';

    return p;
}


/* "2026-11-27T14:42:06.123Z": the part up to the second changes once a
 * second, so it is formatted once a second */

static u_char *
ngx_ailink_audit_time(u_char *p, ngx_time_t *tp)
{
    ngx_tm_t        tm;
    static time_t   sec = -1;
    static u_char   text[sizeof("1970-01-01T00:00:00")];

    if (tp->sec != sec) {
        ngx_gmtime(tp->sec, &tm);
        (void) ngx_sprintf(text, "%4d-%02d-%02dT%02d:%02d:%02d",
                           tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                           tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);
        sec = tp->sec;
    }

    p = ngx_cpymem(p, text, sizeof(text) - 1);

    *p++ = '.';
    *p++ = (u_char) ('0' + tp->msec / 100);
    *p++ = (u_char) ('0' + tp->msec / 10 % 10);
    *p++ = (u_char) ('0' + tp->msec % 10);
    *p++ = 'Z';

    return p;
}


/* X-AILink-Properties is kept as JSON when it is a JSON object */

static void
ngx_ailink_audit_properties(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_str_t *json, ngx_str_t *text)
{
    cJSON  *props;

    ngx_str_null(json);
    *text = ctx->properties;

    if (ctx->properties.len == 0) {
        return;
    }

    props = ngx_ailink_json_parse(&ctx->properties);

    if (cJSON_IsObject(props)
        && ngx_ailink_json_to_str(r->pool, props, json) == NGX_OK)
    {
        ngx_str_null(text);
    }

    ngx_ailink_json_delete(props);
}


static ngx_int_t
ngx_ailink_audit_upstream_ms(ngx_http_request_t *r, ngx_msec_int_t *ms)
{
    ngx_uint_t                  i;
    ngx_http_upstream_state_t  *state;

    if (r->upstream_states == NULL || r->upstream_states->nelts == 0) {
        return NGX_DECLINED;
    }

    *ms = 0;
    state = r->upstream_states->elts;

    for (i = 0; i < r->upstream_states->nelts; i++) {
        if (state[i].peer && state[i].response_time != (ngx_msec_t) -1) {
            *ms += state[i].response_time;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_audit_handler(ngx_http_request_t *r)
{
    u_char                       *line, *p;
    size_t                        len;
    ngx_str_t                     props_json, props_text, status_code;
    ngx_str_t                    *token_id, *token_name, *project, *provider;
    ngx_int_t                     pg;
    ngx_time_t                   *tp;
    ngx_uint_t                    status;
    ngx_msec_int_t                total_ms, upstream_ms;
    ngx_ailink_ctx_t             *ctx, empty;
    ngx_ailink_conf_t            *conf;
    ngx_ailink_audit_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_ailink_audit_module);

    /* PostgreSQL gets the records wherever "ailink_audit_log off" is not */
    pg = (alcf->off != 1) && ngx_ailink_audit_pg_enabled(r);

    if ((alcf->file == NULL && !pg) || r != r->main) {
        return NGX_OK;
    }

    ctx = ngx_ailink_get_ctx(r);

    if (ctx == NULL) {
        ngx_memzero(&empty, sizeof(ngx_ailink_ctx_t));
        empty.method = r->method_name;
        empty.path = r->uri;
        empty.ttft = -1;
        ctx = &empty;
    }

    if (ngx_ailink_log_hook && ctx != &empty) {
        /* post-phase policies and spend, so the record has them */
        ngx_ailink_log_hook(r, ctx);
    }

    token_id = ctx->token ? &ctx->token->id : &ngx_ailink_audit_null;
    token_name = ctx->token ? &ctx->token->name : &ngx_ailink_audit_null;
    project = ctx->token ? &ctx->token->project : &ngx_ailink_audit_null;
    provider = ctx->provider ? &ctx->provider->name : &ngx_ailink_audit_null;

    status = r->err_status ? r->err_status : r->headers_out.status;

    if (status == 0 && r->connection->error) {
        status = NGX_HTTP_CLIENT_CLOSED_REQUEST;
    }

    status_code.data = (u_char *) ctx->error_code;
    status_code.len = ctx->error_code ? ngx_strlen(ctx->error_code) : 0;

    ngx_ailink_audit_properties(r, ctx, &props_json, &props_text);

    tp = ngx_timeofday();
    total_ms = (ngx_msec_int_t) ((tp->sec - r->start_sec) * 1000
                                 + (tp->msec - r->start_msec));
    total_ms = ngx_max(total_ms, 0);

    len = sizeof("{\"time\":\"1970-01-01T00:00:00.000Z\"}\n")
          + sizeof(",\"request_id\":")
          + ngx_ailink_audit_str_len(&ctx->request_id)
          + sizeof(",\"token_id\":") + ngx_ailink_audit_str_len(token_id)
          + sizeof(",\"token_name\":") + ngx_ailink_audit_str_len(token_name)
          + sizeof(",\"project\":") + ngx_ailink_audit_str_len(project)
          + sizeof(",\"agent_name\":")
          + ngx_ailink_audit_str_len(&ctx->agent_name)
          + sizeof(",\"session_id\":")
          + ngx_ailink_audit_str_len(&ctx->session_id)
          + sizeof(",\"parent_span_id\":")
          + ngx_ailink_audit_str_len(&ctx->parent_span_id)
          + sizeof(",\"properties\":") + props_json.len
          + ngx_ailink_audit_str_len(&props_text)
          + sizeof(",\"method\":") + ngx_ailink_audit_str_len(&ctx->method)
          + sizeof(",\"path\":") + ngx_ailink_audit_str_len(&ctx->path)
          + sizeof(",\"upstream\":") + ngx_ailink_audit_str_len(&ctx->upstream)
          + sizeof(",\"provider\":") + ngx_ailink_audit_str_len(provider)
          + sizeof(",\"model\":") + ngx_ailink_audit_str_len(&ctx->model)
          + sizeof(",\"status\":") + NGX_INT_T_LEN
          + sizeof(",\"error\":") + ngx_ailink_audit_str_len(&status_code)
          + sizeof(",\"stream\":false")
          + sizeof(",\"latency_ms\":") + NGX_INT_T_LEN
          + sizeof(",\"upstream_latency_ms\":") + NGX_INT_T_LEN
          + sizeof(",\"ttft_ms\":") + NGX_INT_T_LEN
          + sizeof(",\"prompt_tokens\":") + NGX_INT_T_LEN
          + sizeof(",\"completion_tokens\":") + NGX_INT_T_LEN
          + sizeof(",\"total_tokens\":") + NGX_INT_T_LEN
          + sizeof(",\"cached_tokens\":") + NGX_INT_T_LEN
          + sizeof(",\"cost_usd\":") + 32
          + ctx->policy_audit.len + ctx->cache_audit.len
          + ctx->admin_audit.len + ctx->realtime_audit.len
          + ctx->fallback_audit.len
          + ngx_ailink_guard_audit_len(ctx);

    line = ngx_pnalloc(r->pool, len);
    if (line == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(line, "{\"time\":\"", sizeof("{\"time\":\"") - 1);
    p = ngx_ailink_audit_time(p, tp);
    *p++ = '"';

    p = ngx_ailink_audit_str(p, "request_id", &ctx->request_id);
    p = ngx_ailink_audit_str(p, "token_id", token_id);
    p = ngx_ailink_audit_str(p, "token_name", token_name);
    p = ngx_ailink_audit_str(p, "project", project);
    p = ngx_ailink_audit_str(p, "agent_name", &ctx->agent_name);
    p = ngx_ailink_audit_str(p, "session_id", &ctx->session_id);
    p = ngx_ailink_audit_str(p, "parent_span_id", &ctx->parent_span_id);

    if (props_json.len) {
        p = ngx_ailink_audit_key(p, "properties");
        p = ngx_cpymem(p, props_json.data, props_json.len);

    } else {
        p = ngx_ailink_audit_str(p, "properties", &props_text);
    }

    p = ngx_ailink_audit_str(p, "method", &ctx->method);
    p = ngx_ailink_audit_str(p, "path", &ctx->path);
    p = ngx_ailink_audit_str(p, "upstream", &ctx->upstream);
    p = ngx_ailink_audit_str(p, "provider", provider);
    p = ngx_ailink_audit_str(p, "model", &ctx->model);
    p = ngx_ailink_write_uint(ngx_ailink_audit_key(p, "status"), status);
    p = ngx_ailink_audit_str(p, "error", &status_code);

    p = ngx_ailink_audit_key(p, "stream");
    p = ctx->stream ? ngx_cpymem(p, "true", 4) : ngx_cpymem(p, "false", 5);

    p = ngx_ailink_write_uint(ngx_ailink_audit_key(p, "latency_ms"),
                              total_ms);

    p = ngx_ailink_audit_key(p, "upstream_latency_ms");

    if (ngx_ailink_audit_upstream_ms(r, &upstream_ms) == NGX_OK) {
        p = ngx_ailink_write_uint(p, upstream_ms);

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    p = ngx_ailink_audit_key(p, "ttft_ms");
    p = (ctx->ttft >= 0) ? ngx_ailink_write_uint(p, ctx->ttft)
                         : ngx_cpymem(p, "null", 4);

    conf = ngx_ailink_get_conf(r);

    if (ctx->usage.known && conf) {
        p = ngx_ailink_write_uint(ngx_ailink_audit_key(p, "prompt_tokens"),
                                  ctx->usage.prompt);
        p = ngx_ailink_write_uint(
                ngx_ailink_audit_key(p, "completion_tokens"),
                ctx->usage.completion);
        p = ngx_ailink_write_uint(ngx_ailink_audit_key(p, "total_tokens"),
                                  ctx->usage.total);
        p = ngx_ailink_write_uint(ngx_ailink_audit_key(p, "cached_tokens"),
                                  ctx->usage.cached);
        p = ngx_sprintf(ngx_ailink_audit_key(p, "cost_usd"), "%.8f",
                        ngx_ailink_request_cost(conf, ctx));

    } else if (ctx->cache_hit) {
        p = ngx_cpymem(p, ",\"prompt_tokens\":null,\"completion_tokens\":null,"
                       "\"total_tokens\":null,\"cached_tokens\":null,"
                       "\"cost_usd\":0",
                       sizeof(",\"prompt_tokens\":null,\"completion_tokens\":"
                              "null,\"total_tokens\":null,\"cached_tokens\":"
                              "null,\"cost_usd\":0") - 1);

    } else {
        p = ngx_cpymem(p, ",\"prompt_tokens\":null,\"completion_tokens\":null,"
                       "\"total_tokens\":null,\"cached_tokens\":null,"
                       "\"cost_usd\":null",
                       sizeof(",\"prompt_tokens\":null,\"completion_tokens\":"
                              "null,\"total_tokens\":null,\"cached_tokens\":"
                              "null,\"cost_usd\":null") - 1);
    }

    if (ctx->policy_audit.len) {
        /* "policies" and "tags", for tokens that have policies */
        p = ngx_cpymem(p, ctx->policy_audit.data, ctx->policy_audit.len);
    }

    p = ngx_ailink_guard_audit(p, ctx);

    /* "cache" and, for a hit, what it saved (its cost_usd is 0) */
    if (ctx->cache_audit.len) {
        p = ngx_cpymem(p, ctx->cache_audit.data, ctx->cache_audit.len);
    }

    /* an admin endpoint's change: who, what (ngx_ailink_admin_key.c) */
    if (ctx->admin_audit.len) {
        p = ngx_cpymem(p, ctx->admin_audit.data, ctx->admin_audit.len);
    }

    /* "realtime": a WebSocket session's duration, bytes and events */
    if (ctx->realtime_audit.len) {
        p = ngx_cpymem(p, ctx->realtime_audit.data, ctx->realtime_audit.len);
    }

    /* the targets tried before the one that answered */
    if (ctx->fallback_audit.len) {
        p = ngx_cpymem(p, ctx->fallback_audit.data, ctx->fallback_audit.len);
    }

    *p++ = '}';
    *p++ = '\n';

    if (alcf->file) {
        ngx_ailink_audit_write(r, alcf->file, line, p - line);
    }

    if (pg) {
        ngx_ailink_audit_pg_add(r->connection->log, line, p - line);
    }

    return NGX_OK;
}


static void
ngx_ailink_audit_write_fd(ngx_open_file_t *file, ngx_log_t *log, u_char *data,
    size_t len)
{
    ssize_t  n;

    n = ngx_write_fd(file->fd, data, len);

    if (n == -1) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "ailink audit: " ngx_write_fd_n " to \"%s\" failed",
                      file->name.data);

    } else if ((size_t) n != len) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "ailink audit: " ngx_write_fd_n " to \"%s\" was "
                      "incomplete: %z of %uz", file->name.data, n, len);
    }
}


static void
ngx_ailink_audit_write(ngx_http_request_t *r, ngx_open_file_t *file,
    u_char *data, size_t len)
{
    ngx_ailink_audit_buf_t  *buf;

    buf = file->data;

    if (buf == NULL) {
        ngx_ailink_audit_write_fd(file, r->connection->log, data, len);
        return;
    }

    if (len > (size_t) (buf->last - buf->pos)) {
        ngx_ailink_audit_flush(file, r->connection->log);
    }

    if (len > (size_t) (buf->last - buf->pos)) {
        /* a record larger than the whole buffer */
        ngx_ailink_audit_write_fd(file, r->connection->log, data, len);
        return;
    }

    buf->pos = ngx_cpymem(buf->pos, data, len);

    if (buf->event && !buf->event->timer_set) {
        ngx_add_timer(buf->event, buf->flush);
    }
}


static void
ngx_ailink_audit_flush(ngx_open_file_t *file, ngx_log_t *log)
{
    ngx_ailink_audit_buf_t  *buf;

    buf = file->data;

    if (buf->pos > buf->start) {
        ngx_ailink_audit_write_fd(file, log, buf->start, buf->pos - buf->start);
        buf->pos = buf->start;
    }

    if (buf->event && buf->event->timer_set) {
        ngx_del_timer(buf->event);
    }
}


static void
ngx_ailink_audit_flush_handler(ngx_event_t *ev)
{
    ngx_log_debug0(NGX_LOG_DEBUG_EVENT, ev->log, 0,
                   "ailink audit buffer flush");

    ngx_ailink_audit_flush(ev->data, ev->log);
}


static void *
ngx_ailink_audit_create_loc_conf(ngx_conf_t *cf)
{
    ngx_ailink_audit_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_ailink_audit_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->file = NULL;
     */

    conf->off = NGX_CONF_UNSET;

    return conf;
}


static char *
ngx_ailink_audit_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_ailink_audit_loc_conf_t *prev = parent;
    ngx_ailink_audit_loc_conf_t *conf = child;

    if (conf->file == NULL && conf->off == NGX_CONF_UNSET) {
        conf->file = prev->file;
        conf->off = prev->off;
    }

    return NGX_CONF_OK;
}


static char *
ngx_ailink_audit_log(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_ailink_audit_loc_conf_t *alcf = conf;

    ssize_t                  size;
    ngx_str_t               *value, s;
    ngx_msec_t               flush;
    ngx_uint_t               i;
    ngx_ailink_audit_buf_t  *buf;

    if (alcf->file || alcf->off != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        if (cf->args->nelts != 2) {
            return "takes no parameters after \"off\"";
        }

        alcf->off = 1;
        return NGX_CONF_OK;
    }

    alcf->off = 0;
    size = 0;
    flush = 0;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "buffer=", 7) == 0) {
            s.len = value[i].len - 7;
            s.data = value[i].data + 7;

            size = ngx_parse_size(&s);

            if (size == NGX_ERROR || size < 512) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid buffer size \"%V\" "
                                   "(512 bytes or more)", &s);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "flush=", 6) == 0) {
            s.len = value[i].len - 6;
            s.data = value[i].data + 6;

            flush = ngx_parse_time(&s, 0);

            if (flush == (ngx_msec_t) NGX_ERROR || flush == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid flush time \"%V\"", &s);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (flush && size == 0) {
        return "has \"flush\" without \"buffer\"";
    }

    alcf->file = ngx_conf_open_file(cf->cycle, &value[1]);
    if (alcf->file == NULL) {
        return NGX_CONF_ERROR;
    }

    if (size == 0) {
        return NGX_CONF_OK;
    }

    if (alcf->file->data) {
        buf = alcf->file->data;

        if (buf->last - buf->start != size || buf->flush != flush) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "ailink_audit_log \"%V\" already uses "
                               "a different buffer or flush time",
                               &value[1]);
            return NGX_CONF_ERROR;
        }

        return NGX_CONF_OK;
    }

    buf = ngx_pcalloc(cf->pool, sizeof(ngx_ailink_audit_buf_t));
    if (buf == NULL) {
        return NGX_CONF_ERROR;
    }

    buf->start = ngx_pnalloc(cf->pool, size);
    if (buf->start == NULL) {
        return NGX_CONF_ERROR;
    }

    buf->pos = buf->start;
    buf->last = buf->start + size;
    buf->flush = flush;

    if (flush) {
        buf->event = ngx_pcalloc(cf->pool, sizeof(ngx_event_t));
        if (buf->event == NULL) {
            return NGX_CONF_ERROR;
        }

        buf->event->data = alcf->file;
        buf->event->handler = ngx_ailink_audit_flush_handler;
        buf->event->log = &cf->cycle->new_log;

        /* a pending flush must not hold up a graceful shutdown */
        buf->event->cancelable = 1;
    }

    alcf->file->data = buf;
    alcf->file->flush = ngx_ailink_audit_flush;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_ailink_audit_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_ailink_audit_handler;

    return NGX_OK;
}
