
/*
 * Copyright (C) AILink
 *
 * Guardrails: the detector engine (PII and secrets, prompt injection) and
 * the nginx glue that runs it on requests and responses.
 *
 * The engine (ngx_ailink_guard.c, ngx_ailink_guard_pii.c,
 * ngx_ailink_guard_inject.c) needs no request: a pool and text in,
 * findings or redacted text out, so that it is unit-tested and fuzzed on
 * its own.  Its PCRE2 patterns are compiled, with JIT, once per
 * configuration; matching reuses one match block per process (a worker
 * is single-threaded).
 */


#ifndef _NGX_AILINK_GUARD_H_INCLUDED_
#define _NGX_AILINK_GUARD_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH  8
#endif
#include <pcre2.h>


/* guardrails, as X-AILink-Guardrails and ailink_guardrails name them */
#define NGX_AILINK_GUARD_PII           0x01    /* pii_redaction */
#define NGX_AILINK_GUARD_INJECTION     0x02    /* prompt_injection */

/* PII types: placeholders [EMAIL_1], ...; audit keys email, ... */
#define NGX_AILINK_GUARD_EMAIL         0
#define NGX_AILINK_GUARD_PHONE         1
#define NGX_AILINK_GUARD_CARD          2
#define NGX_AILINK_GUARD_SSN           3
#define NGX_AILINK_GUARD_IBAN          4
#define NGX_AILINK_GUARD_IP            5
#define NGX_AILINK_GUARD_SECRET        6
#define NGX_AILINK_GUARD_NTYPES        7

/* injection rules: ids in the audit and in a 403's "matches" */
#define NGX_AILINK_GUARD_NRULES        32


typedef struct ngx_ailink_guard_engine_s  ngx_ailink_guard_engine_t;


/* a compiled pattern and what it finds */
typedef ngx_uint_t (*ngx_ailink_guard_check_pt)(u_char *p, size_t *len);

typedef struct {
    pcre2_code                 *code;
    ngx_uint_t                  type;       /* PII type, or rule index */
    ngx_ailink_guard_check_pt   check;      /* validator, or NULL */
    ngx_uint_t                  weight;     /* injection: in percent */
} ngx_ailink_guard_pattern_t;


typedef struct {
    size_t                      start;
    size_t                      end;
    ngx_uint_t                  type;
} ngx_ailink_guard_match_t;


/* one value found and the placeholder it became */
typedef struct {
    ngx_uint_t                  type;
    ngx_uint_t                  index;      /* [TYPE_index], from 1 */
    ngx_str_t                   value;
    ngx_str_t                   placeholder;
    unsigned                    request:1;  /* first seen in the request */
} ngx_ailink_guard_entity_t;


/* what one request's guardrails found, across its texts */
typedef struct {
    ngx_pool_t                 *pool;
    ngx_pool_t                 *temp;       /* finds and output, or NULL */
    ngx_ailink_guard_engine_t  *engine;

    ngx_ailink_guard_entity_t  *entities;
    ngx_uint_t                  nentities;
    ngx_uint_t                  nalloc;
    ngx_uint_t                  next[NGX_AILINK_GUARD_NTYPES];

    /* occurrences replaced, in the request and in the response */
    ngx_uint_t                  redacted[NGX_AILINK_GUARD_NTYPES];
    ngx_uint_t                  response_redacted[NGX_AILINK_GUARD_NTYPES];
    unsigned                    in_response:1;

    /* prompt injection: 1 - prod(1 - weight) over the rules matched */
    double                      keep;       /* prod(1 - weight) */
    uint32_t                    rules;      /* bit per rule */
} ngx_ailink_guard_session_t;


/* ngx_ailink_guard.c */
ngx_ailink_guard_engine_t *ngx_ailink_guard_engine_create(ngx_pool_t *pool,
    ngx_log_t *log);
ngx_int_t ngx_ailink_guard_session_init(ngx_ailink_guard_session_t *s,
    ngx_pool_t *pool, ngx_ailink_guard_engine_t *engine);
ngx_int_t ngx_ailink_guard_redact(ngx_ailink_guard_session_t *s,
    ngx_str_t *text, ngx_str_t *out);
ngx_int_t ngx_ailink_guard_restore(ngx_ailink_guard_session_t *s,
    ngx_str_t *text, ngx_str_t *out);
ngx_int_t ngx_ailink_guard_inject_scan(ngx_ailink_guard_session_t *s,
    ngx_str_t *text);
ngx_uint_t ngx_ailink_guard_inject_score(ngx_ailink_guard_session_t *s);
ngx_uint_t ngx_ailink_guard_pii_worth(ngx_ailink_guard_engine_t *engine,
    u_char *p, size_t len);
ngx_uint_t ngx_ailink_guard_type_worth(u_char *p, size_t len,
    ngx_uint_t type);
ngx_int_t ngx_ailink_guard_pii_find(ngx_ailink_guard_engine_t *engine,
    ngx_pool_t *pool, ngx_str_t *text, ngx_ailink_guard_match_t **matches,
    ngx_uint_t *n);
const char *ngx_ailink_guard_type_name(ngx_uint_t type);
const char *ngx_ailink_guard_rule_name(ngx_uint_t rule);
ngx_int_t ngx_ailink_guard_parse_names(ngx_str_t *list, ngx_uint_t *mask,
    ngx_str_t *bad);
ngx_int_t ngx_ailink_guard_compile(ngx_pool_t *pool, ngx_log_t *log,
    const char *pattern, uint32_t options, pcre2_code **code);
ngx_int_t ngx_ailink_guard_exec(ngx_ailink_guard_engine_t *engine,
    pcre2_code *code, u_char *p, size_t len, size_t offset, size_t *start,
    size_t *end);

/* ngx_ailink_guard_pii.c */
ngx_int_t ngx_ailink_guard_pii_init(ngx_pool_t *pool, ngx_log_t *log,
    ngx_ailink_guard_pattern_t **patterns, ngx_uint_t *n);
ngx_uint_t ngx_ailink_guard_luhn(u_char *p, size_t len);
ngx_uint_t ngx_ailink_guard_iban_valid(u_char *p, size_t len);

/* ngx_ailink_guard_inject.c */
ngx_int_t ngx_ailink_guard_inject_init(ngx_pool_t *pool, ngx_log_t *log,
    ngx_ailink_guard_pattern_t **patterns, ngx_uint_t *n);
ngx_uint_t ngx_ailink_guard_inject_nrules(void);
const char *ngx_ailink_guard_inject_rule(ngx_uint_t rule,
    ngx_uint_t *weight);
void ngx_ailink_guard_inject_unicode(ngx_ailink_guard_session_t *s,
    u_char *p, size_t len);
void ngx_ailink_guard_inject_encoded(ngx_ailink_guard_session_t *s,
    u_char *p, size_t len);
void ngx_ailink_guard_inject_hit(ngx_ailink_guard_session_t *s,
    ngx_uint_t rule);


/*
 * nginx glue (ngx_ailink_guard_module.c).  The translate module calls the
 * request hook on an LLM body before it is routed and translated; the
 * audit module calls the last two for the record's "guardrails".  The
 * engine's own files and the fuzz target build without it.
 */
#ifndef NGX_AILINK_GUARD_ENGINE_ONLY
#include <ngx_http.h>
#include "ngx_ailink_common.h"

extern ngx_module_t  ngx_ailink_guard_module;


/* custom guardrails (the YAML's "guardrails:"): mask bits from 2 */
#define NGX_AILINK_GUARD_CUSTOM_SHIFT       2
#define NGX_AILINK_GUARD_CUSTOM_MAX         30

#define NGX_AILINK_GUARD_ACT_REDACT         0
#define NGX_AILINK_GUARD_ACT_BLOCK          1
#define NGX_AILINK_GUARD_ACT_LOG            2


typedef struct {
    ngx_str_t                   name;
    ngx_str_t                   label;          /* [LABEL_n] */
    ngx_uint_t                  action;         /* NGX_AILINK_GUARD_ACT_* */
    pcre2_code                 *code;
} ngx_ailink_guard_custom_t;


/* conf->guard: the custom guardrails of one config-as-code file */
typedef struct {
    ngx_ailink_guard_custom_t  *customs;
    ngx_uint_t                  ncustoms;
    pcre2_match_data           *match_data;
} ngx_ailink_guard_conf_t;


#define NGX_AILINK_GUARD_UNCHECKED_AUDIT    0
#define NGX_AILINK_GUARD_UNCHECKED_REFUSE   1


typedef struct {
    ngx_ailink_guard_engine_t  *engine;
} ngx_ailink_guard_main_conf_t;


typedef struct {
    ngx_uint_t                  guardrails;     /* NGX_AILINK_GUARD_* */
    ngx_uint_t                  threshold;      /* percent */
    ngx_flag_t                  response;
    ngx_flag_t                  restore;
    ngx_uint_t                  unchecked;
} ngx_ailink_guard_loc_conf_t;


/* ctx->guard: written here, read here and by the audit */
typedef struct {
    ngx_ailink_guard_session_t  session;
    ngx_uint_t                  guardrails;
    ngx_uint_t                  score;          /* percent */
    const char                 *response;       /* "checked", or why not */

    ngx_buf_t                  *capture;
    size_t                      capture_max;

    /* custom guardrails: hits per guardrail, values and placeholders */
    ngx_ailink_guard_conf_t    *gc;
    ngx_uint_t                 *custom_hits;
    ngx_uint_t                 *response_custom_hits;
    ngx_array_t                *custom_values;  /* ngx_keyval_t */
    ngx_int_t                   custom_blocked; /* index, or -1 */

    /* shadow policies' guardrails (and not enforced ones): they run and
     * are audited, the text and the outcome left as they were */
    ngx_uint_t                  shadow;
    ngx_uint_t                  would_block;    /* guardrail bits */

    unsigned                    scored:1;
    unsigned                    blocked:1;
    unsigned                    capturing:1;
    unsigned                    response_on:1;
    unsigned                    restore:1;
    unsigned                    unchecked_refuse:1;
} ngx_ailink_guard_req_t;


ngx_int_t ngx_ailink_guard_request(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx, ngx_str_t *body);
ngx_int_t ngx_ailink_guard_unguarded_route(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx);
size_t ngx_ailink_guard_audit_len(ngx_ailink_ctx_t *ctx);

/* custom guardrails (ngx_ailink_guard_custom.c) */
ngx_int_t ngx_ailink_guard_names(ngx_ailink_guard_conf_t *gc,
    ngx_str_t *list, ngx_uint_t *mask, ngx_str_t *bad);
ngx_int_t ngx_ailink_guard_custom_text(ngx_ailink_guard_req_t *gr,
    ngx_str_t *text, ngx_str_t *out);
ngx_int_t ngx_ailink_guard_custom_hold(ngx_ailink_guard_req_t *gr,
    u_char *p, size_t len, size_t *h);
ngx_uint_t ngx_ailink_guard_response_wanted(ngx_ailink_guard_req_t *gr);
ngx_int_t ngx_ailink_guard_output_text(ngx_ailink_guard_req_t *gr,
    ngx_str_t *text, ngx_str_t *out);
ngx_uint_t ngx_ailink_guard_customs(ngx_ailink_guard_req_t *gr);
ngx_int_t ngx_ailink_guard_blocked_extra(ngx_pool_t *pool,
    ngx_ailink_guard_req_t *gr, ngx_str_t *extra, ngx_str_t *name);
size_t ngx_ailink_guard_custom_audit_len(ngx_ailink_guard_req_t *gr);
#define NGX_AILINK_GUARD_AUDIT_COUNTS       0
#define NGX_AILINK_GUARD_AUDIT_NAMES        1
#define NGX_AILINK_GUARD_AUDIT_RESPONSE     2
u_char *ngx_ailink_guard_custom_audit(u_char *p, ngx_ailink_guard_req_t *gr,
    ngx_uint_t what, ngx_uint_t mask);

/* a clean body's pass (ngx_ailink_guard_scan.c) */
ngx_int_t ngx_ailink_guard_scan_clean(ngx_ailink_guard_engine_t *engine,
    ngx_str_t *body, ngx_str_t *only);

/* streamed output (ngx_ailink_guard_stream.c): OpenAI chunks, redacted
 * with a bounded look-behind; flushes come out through emit */
typedef ngx_int_t (*ngx_ailink_guard_emit_pt)(void *data, cJSON *chunk);
typedef struct ngx_ailink_guard_stream_s  ngx_ailink_guard_stream_t;

ngx_int_t ngx_ailink_guard_stream_start(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx, ngx_ailink_guard_stream_t **gs);
ngx_int_t ngx_ailink_guard_stream_chunk(ngx_ailink_guard_stream_t *gs,
    cJSON *chunk, ngx_ailink_guard_emit_pt emit, void *data);
ngx_int_t ngx_ailink_guard_stream_end(ngx_ailink_guard_stream_t *gs,
    ngx_ailink_guard_emit_pt emit, void *data);
ngx_int_t ngx_ailink_guard_stream_unreadable(ngx_ailink_guard_stream_t *gs);
ngx_int_t ngx_ailink_guard_stream_oversized(ngx_ailink_guard_stream_t *gs);
ngx_uint_t ngx_ailink_guard_stream_observes(ngx_ailink_guard_stream_t *gs);
cJSON *ngx_ailink_guard_stream_blocked(ngx_ailink_guard_stream_t *gs,
    ngx_str_t *request_id);
u_char *ngx_ailink_guard_audit(u_char *p, ngx_ailink_ctx_t *ctx);
#endif


#endif /* _NGX_AILINK_GUARD_H_INCLUDED_ */
