
/*
 * Copyright (C) AILink
 *
 * Guardrails on the gateway's LLM routes.  What a request asks for
 * (X-AILink-Guardrails) is added to what its location requires
 * (ailink_guardrails); never removed.
 *
 *   request    the translate module hands over the OpenAI-format body
 *              before it is routed: every message's text (string content,
 *              text parts, tool results, earlier tool-call arguments) has
 *              its PII replaced by placeholders, so every provider sees
 *              only placeholders; user and tool text is scored for prompt
 *              injection and a score at or over the threshold is a 403
 *              content_blocked naming the rules, never the text
 *   response   a JSON chat completion (passed through or translated: this
 *              filter sits below the translation) is held, its assistant
 *              text redacted and, with ailink_guardrails_restore, the
 *              request's placeholders put back; a response that cannot be
 *              checked (a stream, compressed, too large) is said so in
 *              the audit, or refused before it is sent upstream
 *   audit      "guardrails": what ran, types and counts, the injection
 *              score and rule ids; never a matched value
 */


#include "ngx_ailink_guard.h"
#include "ngx_ailink_translate.h"
#include "ngx_ailink_policy.h"


static ngx_int_t ngx_ailink_guard_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_ailink_guard_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static void *ngx_ailink_guard_create_main_conf(ngx_conf_t *cf);
static char *ngx_ailink_guard_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_ailink_guard_create_loc_conf(ngx_conf_t *cf);
static char *ngx_ailink_guard_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_ailink_guard_guardrails(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_ailink_guard_threshold(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_ailink_guard_postconfiguration(ngx_conf_t *cf);


static ngx_conf_enum_t  ngx_ailink_guard_unchecked[] = {
    { ngx_string("audit"), NGX_AILINK_GUARD_UNCHECKED_AUDIT },
    { ngx_string("refuse"), NGX_AILINK_GUARD_UNCHECKED_REFUSE },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_ailink_guard_commands[] = {

    { ngx_string("ailink_guardrails"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_ailink_guard_guardrails,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ailink_guardrails_injection_threshold"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_ailink_guard_threshold,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ailink_guardrails_response"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ailink_guard_loc_conf_t, response),
      NULL },

    { ngx_string("ailink_guardrails_restore"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ailink_guard_loc_conf_t, restore),
      NULL },

    { ngx_string("ailink_guardrails_unchecked"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ailink_guard_loc_conf_t, unchecked),
      &ngx_ailink_guard_unchecked },

      ngx_null_command
};


static ngx_http_module_t  ngx_ailink_guard_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_ailink_guard_postconfiguration,    /* postconfiguration */

    ngx_ailink_guard_create_main_conf,     /* create main configuration */
    ngx_ailink_guard_init_main_conf,       /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_ailink_guard_create_loc_conf,      /* create location configuration */
    ngx_ailink_guard_merge_loc_conf        /* merge location configuration */
};


ngx_module_t  ngx_ailink_guard_module = {
    NGX_MODULE_V1,
    &ngx_ailink_guard_module_ctx,          /* module context */
    ngx_ailink_guard_commands,             /* module directives */
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


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


/* the request side */

#define NGX_AILINK_GUARD_ROLE_OTHER   0
#define NGX_AILINK_GUARD_ROLE_INPUT   1     /* user, tool: scored */


/* one string of the body: scored, redacted in place */

static ngx_int_t
ngx_ailink_guard_text(ngx_ailink_guard_req_t *gr, cJSON *item,
    ngx_uint_t role, ngx_uint_t *changed)
{
    ngx_str_t  text, out;

    if (!cJSON_IsString(item) || item->valuestring[0] == '\0') {
        return NGX_OK;
    }

    text.data = (u_char *) item->valuestring;
    text.len = ngx_strlen(item->valuestring);

    if ((gr->guardrails & NGX_AILINK_GUARD_INJECTION)
        && role == NGX_AILINK_GUARD_ROLE_INPUT)
    {
        if (ngx_ailink_guard_inject_scan(&gr->session, &text) != NGX_OK) {
            return NGX_ERROR;
        }

        gr->scored = 1;
    }

    out = text;

    if (gr->guardrails & NGX_AILINK_GUARD_PII) {
        if (ngx_ailink_guard_redact(&gr->session, &text, &out) != NGX_OK) {
            return NGX_ERROR;
        }

        if (gr->shadow & NGX_AILINK_GUARD_PII) {
            /* counted only */
            out = text;
        }
    }

    if (gr->guardrails >> NGX_AILINK_GUARD_CUSTOM_SHIFT) {
        text = out;

        if (ngx_ailink_guard_custom_text(gr, &text, &out) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (out.data != (u_char *) item->valuestring) {
        /* the tree is in the request pool's arena, as is the new text */
        ngx_ailink_json_set_text(item, out.data);
        *changed = 1;
    }

    return NGX_OK;
}


/* the "text" of a content part ({"type": "text", "text": ...}) */

static cJSON *
ngx_ailink_guard_json_text(cJSON *part)
{
    return ngx_ailink_json_get(part, "text");
}


/* a content: a string, or parts whose text is read */

static ngx_int_t
ngx_ailink_guard_content(ngx_ailink_guard_req_t *gr, cJSON *content,
    ngx_uint_t role, ngx_uint_t *changed)
{
    cJSON  *part, *text;

    if (cJSON_IsString(content)) {
        return ngx_ailink_guard_text(gr, content, role, changed);
    }

    if (!cJSON_IsArray(content)) {
        return NGX_OK;
    }

    cJSON_ArrayForEach(part, content) {
        if (cJSON_IsString(part)) {
            /* "input" and "prompt" arrays of strings */
            text = part;

        } else {
            text = ngx_ailink_guard_json_text(part);
        }

        if (ngx_ailink_guard_text(gr, text, role, changed) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* a message: its content, and the arguments of the tool calls it made */

static ngx_int_t
ngx_ailink_guard_message(ngx_ailink_guard_req_t *gr, cJSON *msg,
    ngx_uint_t *changed)
{
    cJSON       *role, *calls, *call, *fn;
    ngx_uint_t   kind;

    role = ngx_ailink_json_get(msg, "role");
    kind = NGX_AILINK_GUARD_ROLE_OTHER;

    if (cJSON_IsString(role)
        && (ngx_strcmp(role->valuestring, "user") == 0
            || ngx_strcmp(role->valuestring, "tool") == 0
            || ngx_strcmp(role->valuestring, "function") == 0))
    {
        kind = NGX_AILINK_GUARD_ROLE_INPUT;
    }

    if (ngx_ailink_guard_content(gr, ngx_ailink_json_get(msg, "content"),
                                 kind, changed)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    calls = ngx_ailink_json_get(msg, "tool_calls");

    if (!cJSON_IsArray(calls)) {
        return NGX_OK;
    }

    cJSON_ArrayForEach(call, calls) {
        fn = ngx_ailink_json_get(call, "function");

        /* JSON text: a placeholder holds no quote or backslash */
        if (ngx_ailink_guard_text(gr, ngx_ailink_json_get(fn, "arguments"),
                                  NGX_AILINK_GUARD_ROLE_OTHER, changed)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_guard_fail(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_uint_t status, const char *code, const char *param, char *message)
{
    ctx->error_code = code;
    ctx->error_param = param;
    ctx->error_message = message;

    return status;
}


/* 403 content_blocked: the guardrail and the rule ids, never the text */

static ngx_int_t
ngx_ailink_guard_block(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_ailink_guard_req_t *gr)
{
    u_char      *p;
    size_t       len;
    ngx_uint_t   i, n;

    n = ngx_ailink_guard_inject_nrules();
    len = sizeof(",\"guardrail\":\"prompt_injection\",\"matches\":[]");

    for (i = 0; i < n; i++) {
        if (gr->session.rules & (1u << i)) {
            len += ngx_strlen(ngx_ailink_guard_rule_name(i)) + 3;
        }
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->error_extra.data = p;
    p = ngx_cpymem(p, ",\"guardrail\":\"prompt_injection\",\"matches\":[",
                   sizeof(",\"guardrail\":\"prompt_injection\",\"matches\":[")
                   - 1);

    for (i = 0; i < n; i++) {
        if (gr->session.rules & (1u << i)) {
            if (p[-1] != '[') {
                *p++ = ',';
            }

            p = ngx_sprintf(p, "\"%s\"", ngx_ailink_guard_rule_name(i));
        }
    }

    *p++ = ']';
    ctx->error_extra.len = p - ctx->error_extra.data;

    gr->blocked = 1;

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "ailink guard: prompt injection score %ui%% blocked "
                  "for token \"%V\"", gr->score, &ctx->token->id);

    return ngx_ailink_guard_fail(r, ctx, NGX_HTTP_FORBIDDEN,
                                 "content_blocked", NULL,
                                 "the request was blocked by the "
                                 "prompt_injection guardrail");
}


/* 403 content_blocked by a custom guardrail: its name, never the text */

static ngx_int_t
ngx_ailink_guard_block_custom(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_ailink_guard_req_t *gr)
{
    u_char      *msg;
    ngx_str_t   *name;

    name = &gr->gc->customs[gr->custom_blocked].name;

    msg = ngx_pnalloc(r->pool, name->len
                               + sizeof("the request was blocked by the  "
                                        "guardrail"));
    if (msg == NULL
        || ngx_ailink_guard_blocked_extra(r->pool, gr, &ctx->error_extra,
                                          name)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_sprintf(msg, "the request was blocked by the %V guardrail%Z", name);

    gr->blocked = 1;

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "ailink guard: \"%V\" blocked for token \"%V\"", name,
                  &ctx->token->id);

    return ngx_ailink_guard_fail(r, ctx, NGX_HTTP_FORBIDDEN,
                                 "content_blocked", NULL, (char *) msg);
}


/* the envelope's extra members of a custom block: its name, not the text */

ngx_int_t
ngx_ailink_guard_blocked_extra(ngx_pool_t *pool, ngx_ailink_guard_req_t *gr,
    ngx_str_t *extra, ngx_str_t *name)
{
    u_char  *p;

    p = ngx_pnalloc(pool, 2 * name->len
                          + sizeof(",\"guardrail\":\"\","
                                   "\"matches\":[\"\"]"));
    if (p == NULL) {
        return NGX_ERROR;
    }

    extra->data = p;
    extra->len = ngx_sprintf(p, ",\"guardrail\":\"%V\","
                             "\"matches\":[\"%V\"]", name, name)
                 - p;

    return NGX_OK;
}


/*
 * A route whose body the guardrails do not read (the action gateway, the
 * OpenAI API's other paths: files, batches, models...) asked to be
 * guarded (by the header, the token or the location) is refused with 400
 * rather than forwarded unchecked.  Policies that require guardrails
 * refuse there on their own (the hook fails closed).
 */

ngx_int_t
ngx_ailink_guard_unguarded_route(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx)
{
    ngx_str_t                     bad;
    ngx_uint_t                    mask;
    ngx_table_elt_t              *h;
    ngx_ailink_conf_t            *conf;
    ngx_ailink_guard_loc_conf_t  *glcf;

    glcf = ngx_http_get_module_loc_conf(r, ngx_ailink_guard_module);
    conf = ngx_ailink_get_conf(r);

    mask = glcf->guardrails;

    if (ctx->token) {
        mask |= ctx->token->guardrails;
    }

    h = ngx_ailink_find_header(r, "X-AILink-Guardrails",
                               sizeof("X-AILink-Guardrails") - 1);

    if (h && ngx_ailink_guard_names(conf ? conf->guard : NULL, &h->value,
                                    &mask, &bad)
             != NGX_OK)
    {
        /* unknown or not, it cannot be applied here */
        mask |= NGX_AILINK_GUARD_PII;
    }

    if (mask == 0) {
        return NGX_OK;
    }

    return ngx_ailink_guard_fail(r, ctx, NGX_HTTP_BAD_REQUEST,
                                 "invalid_request",
                                 h ? "X-AILink-Guardrails" : NULL,
                                 (ctx->route == NGX_AILINK_ROUTE_ACTION)
                                 ? "guardrails check LLM request bodies; "
                                   "this action gateway route cannot be "
                                   "guarded, so it is refused"
                                 : "guardrails check LLM request bodies "
                                   "(chat completions, completions, "
                                   "embeddings); this path cannot be "
                                   "guarded, so it is refused");
}


static ngx_int_t ngx_ailink_guard_request_tree(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx, ngx_ailink_guard_req_t *gr, cJSON *json,
    ngx_str_t *body);


/*
 * The request hook: NGX_OK (the body may have been replaced by its
 * redacted text), NGX_ERROR, or the status of a refusal recorded in ctx.
 */

ngx_int_t
ngx_ailink_guard_request(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_str_t *body)
{
    u_char                        *msg;
    cJSON                         *json;
    ngx_int_t                      rc;
    ngx_str_t                      bad;
    ngx_uint_t                     mask, shadow;
    ngx_table_elt_t               *h;
    ngx_ailink_conf_t             *conf;
    ngx_ailink_guard_req_t        *gr;
    ngx_ailink_guard_conf_t       *gc;
    ngx_ailink_guard_loc_conf_t   *glcf;
    ngx_ailink_guard_main_conf_t  *gmcf;

    glcf = ngx_http_get_module_loc_conf(r, ngx_ailink_guard_module);
    conf = ngx_ailink_get_conf(r);
    gc = conf ? conf->guard : NULL;

    /* the location's, the token's, the policies' and the request's */
    mask = glcf->guardrails;

    if (ctx->token) {
        mask |= ctx->token->guardrails;
    }

    shadow = 0;

    if (ngx_ailink_policy_guardrails(r, ctx, body, &mask, &shadow)
        != NGX_OK)
    {
        return ngx_ailink_guard_fail(r, ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                     "internal_error", NULL,
                                     "the policies' guardrails could not be "
                                     "decided");
    }

    h = ngx_ailink_find_header(r, "X-AILink-Guardrails",
                               sizeof("X-AILink-Guardrails") - 1);

    if (h && ngx_ailink_guard_names(gc, &h->value, &mask, &bad) != NGX_OK)
    {
        msg = ngx_pnalloc(r->pool, NGX_MAX_ERROR_STR);
        if (msg == NULL) {
            return NGX_ERROR;
        }

        bad.len = ngx_min(bad.len, 64);
        ngx_snprintf(msg, NGX_MAX_ERROR_STR - 1,
                     "unknown guardrail \"%V\" in X-AILink-Guardrails "
                     "(known: pii_redaction, prompt_injection)%Z", &bad);
        msg[NGX_MAX_ERROR_STR - 1] = '\0';

        return ngx_ailink_guard_fail(r, ctx, NGX_HTTP_BAD_REQUEST,
                                     "invalid_request", "X-AILink-Guardrails",
                                     (char *) msg);
    }

    /* what only shadow policies ask for runs in shadow */
    shadow &= ~mask;

    if ((mask | shadow) == 0) {
        return NGX_OK;
    }

    gmcf = ngx_http_get_module_main_conf(r, ngx_ailink_guard_module);

    gr = ngx_pcalloc(r->pool, sizeof(ngx_ailink_guard_req_t));
    if (gr == NULL) {
        return NGX_ERROR;
    }

    ngx_ailink_guard_session_init(&gr->session, r->pool, gmcf->engine);
    gr->guardrails = mask | shadow;
    gr->shadow = shadow;
    gr->response_on = glcf->response;
    gr->restore = glcf->restore;
    gr->unchecked_refuse = (glcf->unchecked
                            == NGX_AILINK_GUARD_UNCHECKED_REFUSE);
    gr->gc = gc;
    gr->custom_blocked = -1;

    if (gc && gc->ncustoms) {
        gr->custom_hits = ngx_pcalloc(r->pool,
                                      2 * gc->ncustoms * sizeof(ngx_uint_t));
        if (gr->custom_hits == NULL) {
            return NGX_ERROR;
        }

        gr->response_custom_hits = gr->custom_hits + gc->ncustoms;
    }
    ctx->guard = gr;

    /*
     * pii_redaction alone on a body none of whose texts is worth a
     * pattern (the usual case): nothing would change, so no parse
     */
    if (gr->guardrails == NGX_AILINK_GUARD_PII
        && ngx_ailink_guard_scan_clean(gmcf->engine, body, NULL) == NGX_OK)
    {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "ailink guard: request clean at a glance");
        return NGX_OK;
    }

    ngx_ailink_json_arena(r->pool);

    json = ngx_ailink_json_parse(body);

    if (cJSON_IsObject(json)) {
        rc = ngx_ailink_guard_request_tree(r, ctx, gr, json, body);

    } else {
        /* what cannot be read cannot be checked: refused, not skipped */
        rc = ngx_ailink_guard_fail(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_request", NULL,
                                   "the request body is not JSON the "
                                   "guardrails can read");
    }

    ngx_ailink_json_delete(json);
    ngx_ailink_json_arena(NULL);

    return rc;
}


static ngx_int_t
ngx_ailink_guard_request_tree(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_ailink_guard_req_t *gr, cJSON *json, ngx_str_t *body)
{
    cJSON                        *msgs, *msg;
    ngx_str_t                     text;
    ngx_uint_t                    changed;
    ngx_ailink_guard_loc_conf_t  *glcf;

    glcf = ngx_http_get_module_loc_conf(r, ngx_ailink_guard_module);
    changed = 0;

    msgs = ngx_ailink_json_get(json, "messages");

    if (cJSON_IsArray(msgs)) {
        cJSON_ArrayForEach(msg, msgs) {
            if (ngx_ailink_guard_message(gr, msg, &changed) != NGX_OK) {
                return NGX_ERROR;
            }
        }
    }

    /* /v1/completions and /v1/embeddings */
    if (ngx_ailink_guard_content(gr, ngx_ailink_json_get(json, "prompt"),
                                 NGX_AILINK_GUARD_ROLE_INPUT, &changed)
        != NGX_OK
        || ngx_ailink_guard_content(gr, ngx_ailink_json_get(json, "input"),
                                    NGX_AILINK_GUARD_ROLE_INPUT, &changed)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (gr->custom_blocked >= 0) {
        return ngx_ailink_guard_block_custom(r, ctx, gr);
    }

    if (gr->guardrails & NGX_AILINK_GUARD_INJECTION) {
        gr->scored = 1;
        gr->score = ngx_ailink_guard_inject_score(&gr->session);

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "ailink guard: injection score %ui%%, rules 0x%xD",
                       gr->score, gr->session.rules);

        if (gr->score >= glcf->threshold) {
            if (gr->shadow & NGX_AILINK_GUARD_INJECTION) {
                gr->would_block |= NGX_AILINK_GUARD_INJECTION;

            } else {
                return ngx_ailink_guard_block(r, ctx, gr);
            }
        }
    }

    if (!changed) {
        return NGX_OK;
    }

    if (ngx_ailink_json_to_str(r->pool, json, &text) != NGX_OK
        || ngx_ailink_set_request_body_text(r, &text) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ailink guard: request redacted, %uz bytes", text.len);

    *body = text;

    return NGX_OK;
}


/*
 * A response the guardrails cannot read (compressed, of another type):
 * with ailink_guardrails_unchecked refuse it is not sent, the client gets
 * a 502 in the envelope instead; else it goes and the audit says so.
 */

static ngx_int_t
ngx_ailink_guard_refuse_unchecked(ngx_http_request_t *r,
    ngx_ailink_guard_req_t *gr)
{
    if (!gr->unchecked_refuse) {
        return ngx_http_next_header_filter(r);
    }

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "ailink guard: response refused, %s", gr->response);

    gr->response = (ngx_strcmp(gr->response, "unchecked_encoded") == 0)
                   ? "refused_encoded"
                   : (ngx_strcmp(gr->response, "unchecked_stream") == 0)
                     ? "refused_stream" : "refused_content_type";

    return ngx_http_filter_finalize_request(r, &ngx_ailink_guard_module,
                                            NGX_HTTP_BAD_GATEWAY);
}


/* the response side: a JSON chat completion, held and redacted */

static ngx_int_t
ngx_ailink_guard_header_filter(ngx_http_request_t *r)
{
    ngx_ailink_ctx_t                 *ctx;
    ngx_ailink_guard_req_t           *gr;
    ngx_ailink_translate_loc_conf_t  *tlcf;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_ailink_get_ctx(r);
    gr = ctx ? ctx->guard : NULL;

    if (gr == NULL || !ngx_ailink_guard_response_wanted(gr)
        || ctx->own_response || r->upstream == NULL || gr->response)
    {
        return ngx_http_next_header_filter(r);
    }

    if (r->headers_out.status != NGX_HTTP_OK || r->header_only) {
        gr->response = "not_checked_error";
        return ngx_http_next_header_filter(r);
    }

    if (r->headers_out.content_encoding
        && r->headers_out.content_encoding->value.len)
    {
        gr->response = "unchecked_encoded";
        return ngx_ailink_guard_refuse_unchecked(r, gr);
    }

    if (r->headers_out.content_type.len < sizeof("application/json") - 1
        || ngx_strncasecmp(r->headers_out.content_type.data,
                           (u_char *) "application/json",
                           sizeof("application/json") - 1) != 0)
    {
        gr->response = (r->headers_out.content_type.len >= 17
                        && ngx_strncasecmp(r->headers_out.content_type.data,
                                           (u_char *) "text/event-stream",
                                           17) == 0)
                       ? "unchecked_stream" : "unchecked_content_type";
        return ngx_ailink_guard_refuse_unchecked(r, gr);
    }

    tlcf = ngx_http_get_module_loc_conf(r, ngx_ailink_translate_module);

    gr->capturing = 1;
    gr->capture_max = tlcf->response_buffer_size;
    r->filter_need_in_memory = 1;

    /* the headers wait for the body: its length changes */
    return NGX_OK;
}


/*
 * Whether the model's output is read: pii_redaction or custom guardrails
 * with ailink_guardrails_response on (shadow ones too: counted), or the
 * request's placeholders to be restored.
 */

ngx_uint_t
ngx_ailink_guard_response_wanted(ngx_ailink_guard_req_t *gr)
{
    if (gr->response_on
        && ((gr->guardrails & NGX_AILINK_GUARD_PII)
            || ngx_ailink_guard_customs(gr)))
    {
        return 1;
    }

    return gr->restore
           && (gr->guardrails & ~gr->shadow & NGX_AILINK_GUARD_PII);
}


/*
 * A text of the model's output: PII redacted, custom guardrails applied
 * (a block is remembered in gr->custom_blocked), then the request's
 * placeholders restored if asked; shadow guardrails only count.  out is
 * text itself when nothing changed.
 */

ngx_int_t
ngx_ailink_guard_output_text(ngx_ailink_guard_req_t *gr, ngx_str_t *text,
    ngx_str_t *out)
{
    ngx_str_t  cur, next;

    cur = *text;

    if (gr->response_on && (gr->guardrails & NGX_AILINK_GUARD_PII)) {
        if (ngx_ailink_guard_redact(&gr->session, &cur, &next) != NGX_OK) {
            return NGX_ERROR;
        }

        if (!(gr->shadow & NGX_AILINK_GUARD_PII)) {
            cur = next;
        }
    }

    if (gr->response_on && ngx_ailink_guard_customs(gr)) {
        if (ngx_ailink_guard_custom_text(gr, &cur, &next) != NGX_OK) {
            return NGX_ERROR;
        }

        cur = next;
    }

    if (gr->restore && (gr->guardrails & ~gr->shadow & NGX_AILINK_GUARD_PII))
    {
        if (ngx_ailink_guard_restore(&gr->session, &cur, &next) != NGX_OK) {
            return NGX_ERROR;
        }

        cur = next;
    }

    *out = cur;

    return NGX_OK;
}


/* one string of the model's output: redacted, then restored if asked */

static ngx_int_t
ngx_ailink_guard_output(ngx_ailink_guard_req_t *gr, cJSON *item,
    ngx_uint_t *changed)
{
    ngx_str_t  text, out;

    if (!cJSON_IsString(item)) {
        return NGX_OK;
    }

    text.data = (u_char *) item->valuestring;
    text.len = ngx_strlen(item->valuestring);

    if (ngx_ailink_guard_output_text(gr, &text, &out) != NGX_OK) {
        return NGX_ERROR;
    }

    if (out.data != (u_char *) item->valuestring) {
        ngx_ailink_json_set_text(item, out.data);
        *changed = 1;
    }

    return NGX_OK;
}


/*
 * choices[].message: content (string or parts), tool-call arguments; and
 * choices[].text, a legacy /v1/completions answer
 */

static ngx_int_t
ngx_ailink_guard_response_tree(ngx_ailink_guard_req_t *gr, cJSON *json,
    ngx_uint_t *changed)
{
    cJSON  *choices, *choice, *msg, *content, *part, *calls, *call;

    choices = ngx_ailink_json_get(json, "choices");

    if (!cJSON_IsArray(choices)) {
        return NGX_OK;
    }

    cJSON_ArrayForEach(choice, choices) {
        if (ngx_ailink_guard_output(gr, ngx_ailink_json_get(choice, "text"),
                                    changed)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        msg = ngx_ailink_json_get(choice, "message");
        content = ngx_ailink_json_get(msg, "content");

        if (ngx_ailink_guard_output(gr, content, changed) != NGX_OK) {
            return NGX_ERROR;
        }

        if (cJSON_IsArray(content)) {
            cJSON_ArrayForEach(part, content) {
                if (ngx_ailink_guard_output(gr,
                                            ngx_ailink_guard_json_text(part),
                                            changed)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }
            }
        }

        calls = ngx_ailink_json_get(msg, "tool_calls");

        if (!cJSON_IsArray(calls)) {
            continue;
        }

        cJSON_ArrayForEach(call, calls) {
            if (ngx_ailink_guard_output(gr,
                    ngx_ailink_json_get(ngx_ailink_json_get(call, "function"),
                                        "arguments"),
                    changed)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


/*
 * A custom guardrail with action block matched the model's output: the
 * client gets, instead of it, 403 content_blocked naming the guardrail
 * (the headers were held, so nothing of the answer went out).
 */

static ngx_int_t
ngx_ailink_guard_response_blocked(ngx_http_request_t *r,
    ngx_ailink_guard_req_t *gr)
{
    u_char            *msg;
    ngx_int_t          rc;
    ngx_buf_t         *b;
    ngx_str_t          json, name;
    ngx_chain_t        cl;
    ngx_ailink_ctx_t  *ctx;

    ctx = ngx_ailink_get_ctx(r);
    name = gr->gc->customs[gr->custom_blocked].name;

    gr->response = "blocked";

    if (ngx_ailink_guard_blocked_extra(r->pool, gr, &ctx->error_extra,
                                       &name)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    msg = ngx_pnalloc(r->pool, name.len
                               + sizeof("the response was blocked by the  "
                                        "guardrail"));
    if (msg == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(msg, "the response was blocked by the %V guardrail%Z",
                &name);

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "ailink guard: \"%V\" blocked the response", &name);

    if (ngx_ailink_error_body(r, NGX_HTTP_FORBIDDEN, "content_blocked",
                              (char *) msg, NULL, &json)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    r->headers_out.status = NGX_HTTP_FORBIDDEN;
    r->headers_out.status_line.len = 0;
    r->headers_out.content_length_n = json.len;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    ngx_http_clear_etag(r);
    ngx_http_clear_accept_ranges(r);
    ngx_http_clear_last_modified(r);

    rc = ngx_http_next_header_filter(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return NGX_ERROR;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = json.data;
    b->last = json.data + json.len;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    cl.buf = b;
    cl.next = NULL;

    return ngx_http_next_body_filter(r, &cl);
}


static ngx_int_t
ngx_ailink_guard_response_send(ngx_http_request_t *r,
    ngx_ailink_guard_req_t *gr)
{
    cJSON                         *json;
    ngx_int_t                      rc;
    ngx_buf_t                     *b;
    ngx_str_t                      text, out;
    ngx_uint_t                     changed;
    ngx_chain_t                    cl;
    ngx_ailink_guard_main_conf_t  *gmcf;
    static ngx_str_t               choices = ngx_string("choices");

    if (gr->capture) {
        text.data = gr->capture->pos;
        text.len = gr->capture->last - gr->capture->pos;

    } else {
        ngx_str_null(&text);
    }

    out = text;
    changed = 0;
    gr->session.in_response = 1;

    gmcf = ngx_http_get_module_main_conf(r, ngx_ailink_guard_module);

    /*
     * pii_redaction alone and no placeholders to restore, on an answer
     * none of whose texts (all under "choices", which is all that
     * ngx_ailink_guard_response_tree() reads) is worth a pattern, the
     * usual case: nothing would change, so no parse, as for the request
     */
    if (gr->guardrails == NGX_AILINK_GUARD_PII && !gr->restore
        && text.len
        && ngx_ailink_guard_scan_clean(gmcf->engine, &text, &choices)
           == NGX_OK)
    {
        gr->response = "checked";
        rc = NGX_OK;

    } else {
        ngx_ailink_json_arena(r->pool);

        json = text.len ? ngx_ailink_json_parse(&text) : NULL;

        if (json == NULL) {
            gr->response = "unchecked_not_json";
            rc = NGX_OK;

        } else {
            gr->response = "checked";
            rc = ngx_ailink_guard_response_tree(gr, json, &changed);

            if (rc == NGX_OK && changed) {
                rc = ngx_ailink_json_to_str(r->pool, json, &out);
            }
        }

        ngx_ailink_json_delete(json);
        ngx_ailink_json_arena(NULL);
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    if (gr->custom_blocked >= 0) {
        return ngx_ailink_guard_response_blocked(r, gr);
    }

    r->headers_out.content_length_n = out.len;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    if (changed) {
        ngx_http_clear_etag(r);
        ngx_http_clear_accept_ranges(r);
    }

    rc = ngx_http_next_header_filter(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return NGX_ERROR;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = out.data;
    b->last = out.data + out.len;
    b->memory = out.len ? 1 : 0;
    b->last_buf = 1;
    b->last_in_chain = 1;

    cl.buf = b;
    cl.next = NULL;

    return ngx_http_next_body_filter(r, &cl);
}


/* gave up holding (too large): what was held goes out first, unchanged */

static ngx_int_t
ngx_ailink_guard_response_release(ngx_http_request_t *r,
    ngx_ailink_guard_req_t *gr, ngx_chain_t *in)
{
    ngx_int_t     rc;
    ngx_chain_t   cl;

    gr->capturing = 0;

    if (gr->unchecked_refuse) {
        /* the headers wait for the body: not sent yet, a 502 instead */
        gr->response = "refused_too_large";

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "ailink guard: response larger than "
                      "ailink_response_buffer_size refused");

        return ngx_http_filter_finalize_request(r, &ngx_ailink_guard_module,
                                                NGX_HTTP_BAD_GATEWAY);
    }

    gr->response = "unchecked_too_large";

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "ailink guard: response larger than "
                  "ailink_response_buffer_size passed unchecked");

    rc = ngx_http_next_header_filter(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return NGX_ERROR;
    }

    if (gr->capture && gr->capture->last > gr->capture->pos) {
        cl.buf = gr->capture;
        cl.next = in;
        return ngx_http_next_body_filter(r, &cl);
    }

    return ngx_http_next_body_filter(r, in);
}


static ngx_int_t
ngx_ailink_guard_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    size_t                   len, size, held;
    ngx_buf_t               *b, *nb;
    ngx_uint_t               last;
    ngx_chain_t             *cl;
    ngx_ailink_ctx_t        *ctx;
    ngx_ailink_guard_req_t  *gr;

    if (r != r->main || in == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_ailink_get_ctx(r);
    gr = ctx ? ctx->guard : NULL;

    if (gr == NULL || !gr->capturing) {
        return ngx_http_next_body_filter(r, in);
    }

    last = 0;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;
        last |= b->last_buf;
        len = b->last - b->pos;

        if (len == 0) {
            continue;
        }

        held = gr->capture ? (size_t) (gr->capture->last - gr->capture->pos)
                           : 0;

        if (held + len > gr->capture_max) {
            return ngx_ailink_guard_response_release(r, gr, cl);
        }

        if (gr->capture == NULL
            || (size_t) (gr->capture->end - gr->capture->last) < len)
        {
            size = ngx_min(ngx_max(2 * (held + len), 4096),
                           gr->capture_max);

            nb = ngx_create_temp_buf(r->pool, size);
            if (nb == NULL) {
                return NGX_ERROR;
            }

            if (gr->capture) {
                nb->last = ngx_cpymem(nb->last, gr->capture->pos, held);
            }

            gr->capture = nb;
        }

        gr->capture->last = ngx_cpymem(gr->capture->last, b->pos, len);
        b->pos = b->last;
    }

    if (!last) {
        return NGX_OK;
    }

    gr->capturing = 0;

    return ngx_ailink_guard_response_send(r, gr);
}


/* the audit record's "guardrails" */

static const char  *ngx_ailink_guard_builtin[] = {
    "pii_redaction", "prompt_injection"
};


size_t
ngx_ailink_guard_audit_len(ngx_ailink_ctx_t *ctx)
{
    size_t                   len;
    ngx_uint_t               i;
    ngx_ailink_guard_req_t  *gr;

    gr = ctx->guard;

    if (gr == NULL) {
        return 0;
    }

    len = sizeof(",\"guardrails\":{\"requested\":[\"pii_redaction\","
                 "\"prompt_injection\"],\"shadow\":[\"pii_redaction\","
                 "\"prompt_injection\"],\"would_block\":["
                 "\"prompt_injection\"],\"pii\":{},\"response_pii\":{},"
                 "\"injection\":{\"score\":1.00,\"blocked\":false,"
                 "\"rules\":[]},\"response\":\"\"}")
          + 2 * NGX_AILINK_GUARD_NTYPES * (sizeof("\"secret\":,") - 1
                                           + NGX_INT_T_LEN)
          + (gr->response ? ngx_strlen(gr->response) : 4);

    for (i = 0; i < ngx_ailink_guard_inject_nrules(); i++) {
        len += ngx_strlen(ngx_ailink_guard_rule_name(i)) + 3;
    }

    return len + ngx_ailink_guard_custom_audit_len(gr);
}


static u_char *
ngx_ailink_guard_audit_counts(u_char *p, ngx_uint_t *counts)
{
    u_char      *start;
    ngx_uint_t   i;

    *p++ = '{';
    start = p;

    for (i = 0; i < NGX_AILINK_GUARD_NTYPES; i++) {
        if (counts[i]) {
            if (p != start) {
                *p++ = ',';
            }

            p = ngx_sprintf(p, "\"%s\":%ui", ngx_ailink_guard_type_name(i),
                            counts[i]);
        }
    }

    *p++ = '}';

    return p;
}


/* the built-in names in mask, after a '[' */

static u_char *
ngx_ailink_guard_audit_names(u_char *p, ngx_ailink_guard_req_t *gr,
    ngx_uint_t mask)
{
    ngx_uint_t  i;

    for (i = 0; i < 2; i++) {
        if (mask & (1u << i)) {
            if (p[-1] != '[') {
                *p++ = ',';
            }

            p = ngx_sprintf(p, "\"%s\"", ngx_ailink_guard_builtin[i]);
        }
    }

    p = ngx_ailink_guard_custom_audit(p, gr, NGX_AILINK_GUARD_AUDIT_NAMES,
                                      mask);
    *p++ = ']';

    return p;
}


u_char *
ngx_ailink_guard_audit(u_char *p, ngx_ailink_ctx_t *ctx)
{
    u_char                  *start;
    ngx_uint_t               i;
    ngx_ailink_guard_req_t  *gr;

    gr = ctx->guard;

    if (gr == NULL) {
        return p;
    }

    p = ngx_cpymem(p, ",\"guardrails\":{\"requested\":[",
                   sizeof(",\"guardrails\":{\"requested\":[") - 1);
    p = ngx_ailink_guard_audit_names(p, gr, gr->guardrails & ~gr->shadow);

    if (gr->shadow) {
        /* run for shadow policies: counted, nothing changed or blocked */
        p = ngx_cpymem(p, ",\"shadow\":[", sizeof(",\"shadow\":[") - 1);
        p = ngx_ailink_guard_audit_names(p, gr, gr->shadow);

        if (gr->would_block) {
            p = ngx_cpymem(p, ",\"would_block\":[",
                           sizeof(",\"would_block\":[") - 1);
            p = ngx_ailink_guard_audit_names(p, gr, gr->would_block);
        }
    }

    p = ngx_ailink_guard_custom_audit(p, gr, NGX_AILINK_GUARD_AUDIT_COUNTS,
                                      gr->guardrails);

    if (gr->response_on) {
        p = ngx_ailink_guard_custom_audit(p, gr,
                                          NGX_AILINK_GUARD_AUDIT_RESPONSE,
                                          gr->guardrails);
    }

    if (gr->guardrails & NGX_AILINK_GUARD_PII) {
        p = ngx_cpymem(p, ",\"pii\":", sizeof(",\"pii\":") - 1);
        p = ngx_ailink_guard_audit_counts(p, gr->session.redacted);

        p = ngx_cpymem(p, ",\"response_pii\":",
                       sizeof(",\"response_pii\":") - 1);
        p = ngx_ailink_guard_audit_counts(p, gr->session.response_redacted);
    }

    if (gr->guardrails & NGX_AILINK_GUARD_INJECTION) {
        p = ngx_sprintf(p, ",\"injection\":{\"score\":%ui.%02ui,"
                        "\"blocked\":%s,\"rules\":[",
                        gr->score / 100, gr->score % 100,
                        gr->blocked ? "true" : "false");
        start = p;

        for (i = 0; i < ngx_ailink_guard_inject_nrules(); i++) {
            if (gr->session.rules & (1u << i)) {
                if (p != start) {
                    *p++ = ',';
                }

                p = ngx_sprintf(p, "\"%s\"", ngx_ailink_guard_rule_name(i));
            }
        }

        *p++ = ']';
        *p++ = '}';
    }

    if ((gr->guardrails & NGX_AILINK_GUARD_PII)
        || ngx_ailink_guard_response_wanted(gr))
    {
        p = ngx_cpymem(p, ",\"response\":", sizeof(",\"response\":") - 1);

        if (gr->response) {
            p = ngx_sprintf(p, "\"%s\"", gr->response);

        } else {
            p = ngx_cpymem(p, "null", 4);
        }
    }

    *p++ = '}';

    return p;
}


static void *
ngx_ailink_guard_create_main_conf(ngx_conf_t *cf)
{
    return ngx_pcalloc(cf->pool, sizeof(ngx_ailink_guard_main_conf_t));
}


/* the patterns, compiled once per configuration */

static char *
ngx_ailink_guard_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_ailink_guard_main_conf_t  *gmcf = conf;

    gmcf->engine = ngx_ailink_guard_engine_create(cf->pool, cf->log);
    if (gmcf->engine == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_ailink_guard_create_loc_conf(ngx_conf_t *cf)
{
    ngx_ailink_guard_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_ailink_guard_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->guardrails = NGX_CONF_UNSET_UINT;
    conf->threshold = NGX_CONF_UNSET_UINT;
    conf->response = NGX_CONF_UNSET;
    conf->restore = NGX_CONF_UNSET;
    conf->unchecked = NGX_CONF_UNSET_UINT;

    return conf;
}


static char *
ngx_ailink_guard_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_ailink_guard_loc_conf_t *prev = parent;
    ngx_ailink_guard_loc_conf_t *conf = child;

    ngx_conf_merge_uint_value(conf->guardrails, prev->guardrails, 0);
    ngx_conf_merge_uint_value(conf->threshold, prev->threshold, 50);
    ngx_conf_merge_value(conf->response, prev->response, 1);
    ngx_conf_merge_value(conf->restore, prev->restore, 0);
    ngx_conf_merge_uint_value(conf->unchecked, prev->unchecked,
                              NGX_AILINK_GUARD_UNCHECKED_AUDIT);

    return NGX_CONF_OK;
}


/* ailink_guardrails pii_redaction prompt_injection | off */

static char *
ngx_ailink_guard_guardrails(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_ailink_guard_loc_conf_t *glcf = conf;

    ngx_str_t   *value, bad;
    ngx_uint_t   i, mask;

    if (glcf->guardrails != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;
    mask = 0;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        glcf->guardrails = 0;
        return NGX_CONF_OK;
    }

    for (i = 1; i < cf->args->nelts; i++) {
        if (ngx_ailink_guard_parse_names(&value[i], &mask, &bad) != NGX_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "unknown guardrail \"%V\"", &bad);
            return NGX_CONF_ERROR;
        }
    }

    glcf->guardrails = mask;

    return NGX_CONF_OK;
}


/* a score from 0 to 1, two decimals: 0.5 */

static char *
ngx_ailink_guard_threshold(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_ailink_guard_loc_conf_t *glcf = conf;

    ngx_int_t   n;
    ngx_str_t  *value;

    if (glcf->threshold != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    n = ngx_atofp(value[1].data, value[1].len, 2);

    if (n == NGX_ERROR || n == 0 || n > 100) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid injection threshold \"%V\": a number "
                           "above 0 and at most 1", &value[1]);
        return NGX_CONF_ERROR;
    }

    glcf->threshold = n;

    return NGX_CONF_OK;
}


/*
 * The filters go in before the translate module's (this module comes
 * first in config's list), so they run after it: they see the OpenAI
 * format whatever the provider.
 */

/*
 * The policy actions redact and block_content: the guardrails they
 * require were worked out, and run, before the request was routed
 * (ngx_ailink_policy_guardrails()); here they are only checked to have
 * run.  Anything else refuses (fails closed).
 */

static ngx_int_t
ngx_ailink_guard_policy_hook(ngx_http_request_t *r,
    ngx_ailink_policy_t *policy, ngx_ailink_policy_rule_t *rule,
    ngx_ailink_policy_action_t *action)
{
    ngx_ailink_ctx_t        *ctx;
    ngx_ailink_guard_req_t  *gr;

    ctx = ngx_ailink_get_ctx(r);
    gr = ctx ? ctx->guard : NULL;

    if (gr && (gr->guardrails & action->guardrails) == action->guardrails) {
        return NGX_OK;
    }

    if (!policy->shadow) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "ailink guard: policy \"%V\" requires guardrails that "
                      "did not run on this request (not an LLM body?)",
                      &policy->name);
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_ailink_guard_postconfiguration(ngx_conf_t *cf)
{
    ngx_ailink_policy_hooks[NGX_AILINK_PA_REDACT] =
                                                ngx_ailink_guard_policy_hook;
    ngx_ailink_policy_hooks[NGX_AILINK_PA_BLOCK_CONTENT] =
                                                ngx_ailink_guard_policy_hook;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_ailink_guard_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_ailink_guard_body_filter;

    return NGX_OK;
}
