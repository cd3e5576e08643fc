
/*
 * Copyright (C) AILink
 *
 * Types shared by the AILink modules: the gateway configuration loaded from
 * the config-as-code file, the per-request context every module reads and
 * writes, and the helpers the modules have in common.
 */


#ifndef _NGX_AILINK_COMMON_H_INCLUDED_
#define _NGX_AILINK_COMMON_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <cjson/cJSON.h>


#define NGX_AILINK_SHA256_LEN         32
#define NGX_AILINK_TOKEN_PREFIX       "ailink_v1_proj_"

/* where a credential is put in the upstream request */
#define NGX_AILINK_SCHEME_NONE        0
#define NGX_AILINK_SCHEME_BEARER      1
#define NGX_AILINK_SCHEME_HEADER      2
#define NGX_AILINK_SCHEME_BASIC       3
#define NGX_AILINK_SCHEME_QUERY       4

/* provider wire formats */
#define NGX_AILINK_PROVIDER_OPENAI    1
#define NGX_AILINK_PROVIDER_ANTHROPIC 2
#define NGX_AILINK_PROVIDER_GEMINI    3

/* what a request is, once routed */
#define NGX_AILINK_ROUTE_NONE         0
#define NGX_AILINK_ROUTE_ACTION       1    /* token bound to an upstream */
#define NGX_AILINK_ROUTE_LLM          2    /* model-routed, body parsed */
#define NGX_AILINK_ROUTE_LLM_PASS     3    /* OpenAI API path, no model */
#define NGX_AILINK_ROUTE_REALTIME     4    /* GET /v1/realtime, WebSocket */


typedef struct {
    ngx_uint_t                  scheme;
    ngx_str_t                   name;       /* header or query parameter */
} ngx_ailink_inject_t;


typedef struct {
    ngx_str_t                   name;
    ngx_str_t                   secret;     /* never logged */
    ngx_ailink_inject_t         inject;
} ngx_ailink_credential_t;


/* a parsed http(s) base URL */
typedef struct {
    ngx_str_t                   url;        /* as configured, for audit */
    ngx_str_t                   scheme;     /* "http://" or "https://" */
    ngx_str_t                   host;       /* Host header and TLS SNI */
    ngx_str_t                   target;     /* what proxy_pass connects to */
    ngx_str_t                   path;       /* prefix, no trailing slash */
} ngx_ailink_base_url_t;


typedef struct {
    ngx_str_t                   name;
    ngx_uint_t                  type;       /* NGX_AILINK_PROVIDER_* */
    ngx_ailink_base_url_t       base;
    ngx_ailink_inject_t         inject;     /* the provider's own scheme */
    ngx_str_t                   query;      /* added to every URL */

    ngx_uint_t                  max_tokens;       /* Anthropic default */
    ngx_str_t                   version;          /* anthropic-version */
    ngx_str_t                   safety_settings;  /* Gemini, JSON text */
} ngx_ailink_provider_t;


typedef struct {
    ngx_str_t                   prefix;
    ngx_ailink_provider_t      *provider;
} ngx_ailink_route_t;


typedef struct {
    ngx_ailink_provider_t      *provider;
    ngx_ailink_credential_t    *credential;
} ngx_ailink_provider_cred_t;


typedef struct {
    u_char                      hash[NGX_AILINK_SHA256_LEN];
    ngx_str_t                   id;
    ngx_str_t                   name;
    ngx_str_t                   project;
    ngx_str_t                   agent_name;     /* default agent name */
    time_t                      expires;        /* 0: never */
    ngx_flag_t                  enabled;

    /* binding: an upstream base URL (action gateway) or the LLM router */
    ngx_flag_t                  llm;
    ngx_ailink_base_url_t       upstream;

    /* action gateway: one credential; LLM: one per provider */
    ngx_ailink_credential_t    *credential;
    ngx_array_t                 provider_creds; /* ngx_ailink_provider_cred_t */
    ngx_ailink_inject_t         byok;           /* scheme for a BYOK key */

    /* the policies that apply: set by ngx_ailink_policy_conf_load(),
       read by the policy module; NULL when none does */
    void                       *policies;

    /* "circuit_breaker": set by ngx_ailink_breaker_conf_load() */
    void                       *breaker;
    /* "cache_ttl_secs" (time_t): set by ngx_ailink_cache_conf_load() */
    void                       *cache;
    /* the guardrails every request of the token gets ("guardrails:") */
    ngx_uint_t                  guardrails;
} ngx_ailink_token_t;


typedef struct {
    ngx_str_t                   prefix;
    double                      input;          /* USD per 1M tokens */
    double                      output;
    double                      cached_input;
    double                      cache_write;
} ngx_ailink_price_t;


typedef struct {
    u_char                      hash[NGX_AILINK_SHA256_LEN];
    ngx_str_t                   name;       /* who, in the audit */
} ngx_ailink_admin_key_t;


/* the config-as-code file, loaded at startup and on every reload */
typedef struct {
    ngx_str_t                   file;
    ngx_array_t                 tokens;         /* sorted by hash */
    ngx_array_t                 credentials;    /* ngx_ailink_credential_t */
    ngx_array_t                 providers;      /* ngx_ailink_provider_t */
    ngx_array_t                 routes;         /* longest prefix first */
    ngx_array_t                 prices;         /* longest prefix first */
    ngx_array_t                *admin_keys;     /* ngx_ailink_admin_key_t */
    void                       *guard;          /* custom guardrails */
    /* ngx_array_t of ngx_ailink_policy_t: the file's and the admin API's,
       set by ngx_ailink_policy_conf_store() on the admin overlay's copy;
       NULL: the policy module's (the file's) */
    void                       *policies;
    ngx_array_t                *fallbacks;      /* "fallbacks": set by
                                                   ngx_ailink_fallback_conf_
                                                   load(), NULL if none */
} ngx_ailink_conf_t;


typedef struct {
    ngx_uint_t                  prompt;
    ngx_uint_t                  completion;
    ngx_uint_t                  total;
    ngx_uint_t                  cached;         /* prompt tokens from cache */
    ngx_uint_t                  cache_write;    /* prompt tokens written */
    ngx_uint_t                  reasoning;      /* of completion, if told */
    unsigned                    known:1;
} ngx_ailink_usage_t;


/* incremental text/event-stream parser */
typedef void (*ngx_ailink_sse_event_pt)(void *data, ngx_str_t *event,
    ngx_str_t *payload);

typedef struct {
    ngx_str_t                   line;       /* partial line carried over */
    size_t                      line_size;
    ngx_str_t                   event;      /* "event:" field */
    ngx_str_t                   data;       /* "data:" lines joined */
    size_t                      event_size;
    size_t                      data_size;
    size_t                      max;        /* bound on any of the above */
    ngx_uint_t                  oversized;  /* events dropped for it */
    ngx_pool_t                 *pool;
    ngx_ailink_sse_event_pt     handler;
    void                       *handler_data;
    unsigned                    overflow:1;
    unsigned                    skip_line:1;
    unsigned                    skip_lf:1;
} ngx_ailink_sse_t;


typedef struct {
    ngx_str_t                   request_id;
    ngx_str_t                   method;         /* as the client sent it */
    ngx_str_t                   path;           /* as the client sent it */

    ngx_ailink_token_t         *token;
    ngx_str_t                   agent_name;
    ngx_str_t                   session_id;
    ngx_str_t                   parent_span_id;
    ngx_str_t                   properties;

    ngx_uint_t                  route;          /* NGX_AILINK_ROUTE_* */
    ngx_ailink_provider_t      *provider;
    ngx_str_t                   model;
    ngx_str_t                   upstream;       /* base URL, for audit */
    ngx_str_t                   upstream_url;   /* for proxy_pass */
    ngx_str_t                   upstream_host;
    ngx_str_t                   secret;         /* redacted from error logs */
    ngx_http_log_handler_pt     log_handler;

    const char                 *error_code;     /* the gateway's own error */
    const char                 *error_param;
    char                       *error_message;
    ngx_str_t                   error_extra;    /* more envelope members,
                                                   ",\"k\":v...": set by a
                                                   refusal (policy, guard) */
    ngx_int_t                   body_rc;        /* request body outcome */

    ngx_str_t                   upstream_path;  /* set by a translator */
    ngx_ailink_usage_t          usage;
    void                       *price;          /* ngx_ailink_request_cost()'s
                                                   lookup, for price_model */
    u_char                     *price_model;
    ngx_msec_int_t              ttft;           /* ms to a stream's first
                                                   event; -1: not a stream */
    void                       *response;       /* the response filter's */
    void                       *guard;          /* written by the guard,
                                                   read by the audit */

    ngx_str_t                   body;           /* the client's body as
                                                   read: translate writes
                                                   it, policy reads it */
    void                       *policy;         /* the policy module's */
    void                       *breaker;        /* the breaker module's */
    ngx_str_t                   policy_audit;   /* ,"policies":[...],
                                                   "tags":[...]: policy
                                                   writes, audit reads */
    ngx_str_t                   cache_audit;    /* ,"cache":"HIT",...:
                                                   the cache writes, the
                                                   audit reads */
    ngx_str_t                   admin_audit;    /* ,"admin":{...}: who
                                                   changed what through an
                                                   admin endpoint */
    void                       *admin_key;      /* ngx_ailink_admin_key_t */

    /* GET /v1/realtime: the session's tap (the realtime module's) and
       ,"realtime":{...}: the realtime module writes, the audit reads */
    void                       *realtime;
    ngx_str_t                   realtime_audit;
    void                       *fallback;       /* the fallback
                                                   module's, when the
                                                   model has fallbacks */
    ngx_str_t                   fallback_audit; /* ,"fallback_attempts":
                                                   [...]: the fallback
                                                   module writes, the
                                                   audit reads */

    /* /v1/proxy/services/<name>/...: the registered service's */
    ngx_ailink_base_url_t      *service_base;
    ngx_ailink_credential_t    *service_credential;

    unsigned                    stream:1;
    unsigned                    include_usage:1;    /* the client asked */
    unsigned                    strip_usage:1;      /* the gateway asked */
    unsigned                    body_read:1;
    unsigned                    routed:1;
    unsigned                    own_response:1;     /* not the upstream's */
    unsigned                    cache_hit:1;        /* answered by the
                                                       cache: cost 0 */
} ngx_ailink_ctx_t;


extern ngx_module_t  ngx_ailink_auth_module;
extern ngx_module_t  ngx_ailink_translate_module;
extern ngx_module_t  ngx_ailink_audit_module;


/* ngx_ailink_auth_module.c */
ngx_uint_t ngx_ailink_auth_enabled(ngx_http_request_t *r);
char *ngx_ailink_conf_set_handler(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/*
 * Run by the audit handler before it writes a record (and by the policy
 * module's own log handler when no audit is written): post-phase policies
 * and usage counting, so that the record carries their decisions.
 */
typedef void (*ngx_ailink_log_hook_pt)(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx);

extern ngx_ailink_log_hook_pt  ngx_ailink_log_hook;


/* ngx_ailink_ctx.c */
ngx_ailink_ctx_t *ngx_ailink_get_ctx(ngx_http_request_t *r);
ngx_ailink_ctx_t *ngx_ailink_create_ctx(ngx_http_request_t *r);
ngx_ailink_conf_t *ngx_ailink_get_conf(ngx_http_request_t *r);
ngx_int_t ngx_ailink_add_variables(ngx_conf_t *cf);
ngx_table_elt_t *ngx_ailink_find_header(ngx_http_request_t *r,
    const char *name, size_t len);
/*
 * rebuilds the request's headers with the ones keep() answers NGX_OK for
 * (NGX_DECLINED: left out; NGX_ERROR: fails); keep() may change the value
 * of the copy it is given
 */
typedef ngx_int_t (*ngx_ailink_header_keep_pt)(ngx_http_request_t *r,
    ngx_table_elt_t *h, void *data);
ngx_int_t ngx_ailink_rebuild_headers(ngx_http_request_t *r,
    ngx_ailink_header_keep_pt keep, void *data);

/* ngx_ailink_error.c */
ngx_int_t ngx_ailink_error_body(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message, const char *param,
    ngx_str_t *json);
ngx_int_t ngx_ailink_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message, const char *param);
ngx_int_t ngx_ailink_send_json(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *json);
void ngx_ailink_finalize_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message, const char *param);
/* the same with extra members: a JSON fragment ",\"k\":v..." */
void ngx_ailink_finalize_error_extra(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *message,
    const char *param, ngx_str_t *extra);

/*
 * What cJSON's nodes cannot say, said in fields it leaves unused.  A
 * string whose text holds NUL ("\u0000") has this flag, above cJSON's
 * type bits, and its length in valuedouble: cJSON's strings end at the
 * first NUL.  A number the parser read keeps its text in valuestring
 * (when a double would not print it back the same), and the printer
 * writes that text.  ngx_ailink_json_copy() and _add_copy() keep both;
 * cJSON_Duplicate() and cJSON_CreateString() do not.
 */

#define NGX_AILINK_JSON_SIZED  0x1000

/*
 * A string the parser read knows its length and the length of its JSON
 * text (between the quotes, as ngx_ailink_json_print() writes it) from the
 * reading, kept in valuedouble and valueint, which cJSON leaves unused for
 * strings: neither strlen() nor the printer's sizing pass runs over long
 * texts.  A clean one had no escape, so that text is its valuestring,
 * printed with one copy.  Only the parser sets them; a node given another
 * text goes through ngx_ailink_json_set_text(), which drops them, and a
 * copy of the same text keeps them true (cJSON_Duplicate() does, the text
 * having no NUL).
 */

#define NGX_AILINK_JSON_PRINTED  0x2000
#define NGX_AILINK_JSON_CLEAN    0x4000

/* ngx_ailink_json.c */
/* the short escape of a control byte ('n' for \n), 0 if it has none */
extern u_char ngx_ailink_json_short_escape[0x20];
void ngx_ailink_json_init(void);
void ngx_ailink_json_arena(ngx_pool_t *pool);
void *ngx_ailink_json_alloc(size_t size);
size_t ngx_ailink_json_escape_len(ngx_str_t *s);
u_char *ngx_ailink_json_escape(u_char *dst, ngx_str_t *s);
void ngx_ailink_json_delete(cJSON *json);
cJSON *ngx_ailink_json_string(ngx_str_t *s);
cJSON *ngx_ailink_json_copy(cJSON *item);
cJSON *ngx_ailink_json_add_copy(cJSON *obj, const char *key, cJSON *item);
size_t ngx_ailink_json_print_len(cJSON *item);
u_char *ngx_ailink_json_print(u_char *p, cJSON *item);
ngx_int_t ngx_ailink_json_to_str(ngx_pool_t *pool, cJSON *json,
    ngx_str_t *out);
ngx_int_t ngx_ailink_json_count(cJSON *obj, const char *key,
    ngx_uint_t *value);
ngx_uint_t ngx_ailink_json_uint(cJSON *obj, const char *key);
void ngx_ailink_openai_usage(ngx_ailink_usage_t *usage, cJSON *u);
void ngx_ailink_openai_usage_text(ngx_ailink_usage_t *usage,
    ngx_str_t *text);
void ngx_ailink_usage_from_openai(ngx_ailink_usage_t *usage, cJSON *json);

/*
 * cJSON_GetObjectItemCaseSensitive(), the first byte compared before
 * strcmp(): the translators look up dozens of keys in each request.
 */

static ngx_inline cJSON *
ngx_ailink_json_get(const cJSON *object, const char *key)
{
    cJSON  *item;

    for (item = object ? object->child : NULL; item; item = item->next) {
        if (item->string && item->string[0] == key[0]
            && strcmp(item->string, key) == 0)
        {
            return item;
        }
    }

    return NULL;
}

/* a string node's length and text, "\u0000" included */

static ngx_inline size_t
ngx_ailink_json_strlen(const cJSON *item)
{
    return (item->type & (NGX_AILINK_JSON_SIZED|NGX_AILINK_JSON_PRINTED))
           ? (size_t) item->valuedouble : ngx_strlen(item->valuestring);
}


static ngx_inline void
ngx_ailink_json_str(const cJSON *item, ngx_str_t *s)
{
    s->data = (u_char *) item->valuestring;
    s->len = ngx_ailink_json_strlen(item);
}


/*
 * A string node given another NUL-terminated text (in the tree's memory):
 * what was known of the old text's length and printing no longer holds.
 */

static ngx_inline void
ngx_ailink_json_set_text(cJSON *item, u_char *text)
{
    item->valuestring = (char *) text;
    item->type &= ~(NGX_AILINK_JSON_SIZED|NGX_AILINK_JSON_PRINTED
                    |NGX_AILINK_JSON_CLEAN);
}


/* an empty string node: "" and not "\u0000" */
#define ngx_ailink_json_empty(item)                                           \
    ((item)->valuestring[0] == '\0'                                          \
     && !((item)->type & NGX_AILINK_JSON_SIZED))

/* a string node that is exactly the C string s (which holds no NUL) */
#define ngx_ailink_json_is(item, s)                                           \
    (cJSON_IsString(item) && !((item)->type & NGX_AILINK_JSON_SIZED)         \
     && ngx_strcmp((item)->valuestring, s) == 0)

/* ngx_ailink_json_scan.c */
typedef struct {
    ngx_str_t                   key;
    ngx_str_t                   value;      /* raw JSON text, if found */
} ngx_ailink_json_field_t;

ngx_int_t ngx_ailink_json_scan(ngx_str_t *text,
    ngx_ailink_json_field_t *fields, ngx_uint_t n);
ngx_int_t ngx_ailink_json_find(ngx_str_t *text, ngx_str_t *key,
    ngx_str_t *value);
ngx_int_t ngx_ailink_json_find_last(ngx_str_t *text, ngx_str_t *key,
    ngx_str_t *value);
ngx_int_t ngx_ailink_json_plain_string(ngx_str_t *value, ngx_str_t *out);
cJSON *ngx_ailink_json_parse(ngx_str_t *text);


/*
 * The end of a run of bytes a JSON string holds as they are: the first
 * '"', '\\' or control byte at or after p, else last; with "high", the
 * first byte >= 0x80 too (UTF-8, checked one sequence at a time by the
 * callers).  Sixteen bytes at a time with SSE2 (every x86-64 has it),
 * else eight with word arithmetic ("Bit Twiddling Hacks": determine if a
 * word has a byte less than n).  "high" is a constant at every call, so
 * each variant compiles to its own loop.  A long run goes 64 bytes a
 * test where the CPU has AVX2 (ngx_ailink_json.c, chosen at start).
 */

#define ngx_ailink_json_special(c)                                            \
    ((c) < 0x20 || (c) == '"' || (c) == '\\')

#define ngx_ailink_json_stop(c, high)                                         \
    (ngx_ailink_json_special(c) || ((high) && (c) >= 0x80))

#define ngx_ailink_json_plain_end(p, last)                                    \
    ngx_ailink_json_run_end(p, last, 0)

#define ngx_ailink_json_ascii_end(p, last)                                    \
    ngx_ailink_json_run_end(p, last, 1)

#if (defined __SSE2__)

#include <emmintrin.h>

/*
 * The last few bytes (all of most keys) are read sixteen at a time too,
 * when the load stays in their page: it may read past last, never past
 * mapped memory, and what it read past last is masked off.  The sanitizer
 * would see the read past last, so it is told not to look.
 */

#if (defined __SANITIZE_ADDRESS__)
#define NGX_AILINK_NO_ASAN  __attribute__((no_sanitize_address))
#elif (defined __has_feature)
#if (__has_feature(address_sanitizer))
#define NGX_AILINK_NO_ASAN  __attribute__((no_sanitize_address))
#endif
#endif

#ifndef NGX_AILINK_NO_ASAN
#define NGX_AILINK_NO_ASAN
/* a function inlined whatever its size; a sanitized build keeps the call,
 * where the sanitizer is told not to look (forced into a checked caller,
 * it would be checked) */
#define NGX_AILINK_HOT  __attribute__((always_inline))
#else
#define NGX_AILINK_HOT
#endif

NGX_AILINK_NO_ASAN
static ngx_inline int
ngx_ailink_json_special16(const u_char *p, ngx_uint_t high)
{
    __m128i  v, m;

    v = _mm_loadu_si128((const __m128i *) p);

    /* a byte <= 0x1f is one that saturating 0x1f away leaves 0 */
    m = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                         _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
            _mm_cmpeq_epi8(_mm_subs_epu8(v, _mm_set1_epi8(0x1f)),
                           _mm_setzero_si128()));

    /* a byte >= 0x80 has its top bit set already: the mask takes it */
    return _mm_movemask_epi8(high ? _mm_or_si128(m, v) : m);
}


#define NGX_AILINK_JSON_LONG_RUN  128

extern u_char *(*ngx_ailink_json_long_run_end)(u_char *p, u_char *last,
    ngx_uint_t high);

/* inlined where it is used: as a call, each string of a body paid for one */

NGX_AILINK_NO_ASAN NGX_AILINK_HOT
static ngx_inline u_char *
ngx_ailink_json_run_end(u_char *p, u_char *last, ngx_uint_t high)
{
    int  mask;

    if (last - p >= 16) {
        /* most keys and names end in their first sixteen bytes */
        mask = ngx_ailink_json_special16(p, high);

        if (mask) {
            return p + __builtin_ctz(mask);
        }

        p += 16;

        if (last - p >= NGX_AILINK_JSON_LONG_RUN
            && ngx_ailink_json_long_run_end)
        {
            /* the stop, or the last few bytes to look at here */
            p = ngx_ailink_json_long_run_end(p, last, high);
        }
    }

    while (last - p >= 16) {
        mask = ngx_ailink_json_special16(p, high);

        if (mask) {
            return p + __builtin_ctz(mask);
        }

        p += 16;
    }

    if (p < last && ((uintptr_t) p & 4095) <= 4096 - 16) {
        mask = ngx_ailink_json_special16(p, high) & ((1 << (last - p)) - 1);
        return mask ? p + __builtin_ctz(mask) : last;
    }

    while (p < last && !ngx_ailink_json_stop(*p, high)) {
        p++;
    }

    return p;
}

#else

#define NGX_AILINK_ONES    0x0101010101010101ULL
#define NGX_AILINK_HIGHS   0x8080808080808080ULL
#define ngx_ailink_has_less(x, n)                                             \
    (((x) - NGX_AILINK_ONES * (n)) & ~(x) & NGX_AILINK_HIGHS)

static ngx_inline u_char *
ngx_ailink_json_run_end(u_char *p, u_char *last, ngx_uint_t high)
{
    uint64_t  v, q, b;

    while (last - p >= 8) {
        ngx_memcpy(&v, p, sizeof(uint64_t));

        q = v ^ (NGX_AILINK_ONES * '"');
        b = v ^ (NGX_AILINK_ONES * '\\');

        if (ngx_ailink_has_less(q, 1) | ngx_ailink_has_less(b, 1)
            | ngx_ailink_has_less(v, 0x20)
            | (high ? (v & NGX_AILINK_HIGHS) : 0))
        {
            break;
        }

        p += 8;
    }

    while (p < last && !ngx_ailink_json_stop(*p, high)) {
        p++;
    }

    return p;
}

#endif


/*
 * One UTF-8 sequence at p (p < last, *p >= 0x80), as RFC 3629 allows it:
 * no overlong forms, no surrogates (U+D800-DFFF), nothing above U+10FFFF.
 * Returns its length, or minus the length of the ill-formed part to
 * replace with one U+FFFD (Unicode's "maximal subpart": the bytes that
 * could still have begun a sequence, at least one).
 */

static ngx_inline ngx_int_t
ngx_ailink_utf8_sequence(u_char *p, u_char *last)
{
    u_char      c, lo, hi;
    ngx_int_t   i, n;

    c = *p;

    if (c < 0xc2 || c > 0xf4) {
        return -1;
    }

    n = (c < 0xe0) ? 2 : (c < 0xf0) ? 3 : 4;

    lo = (c == 0xe0) ? 0xa0 : (c == 0xf0) ? 0x90 : 0x80;
    hi = (c == 0xed) ? 0x9f : (c == 0xf4) ? 0x8f : 0xbf;

    for (i = 1; i < n; i++) {
        if (p + i == last || p[i] < lo || p[i] > hi) {
            return -i;
        }

        lo = 0x80;
        hi = 0xbf;
    }

    return n;
}


/*
 * A number in decimal, for what is written on every request (the audit
 * record, counter keys, rate-limit headers): ngx_sprintf() parses its
 * format each time, which costs several times the digits.  Two digits a
 * division, from a table of "00" to "99".
 */

extern const u_char  ngx_ailink_digits2[200];

static ngx_inline u_char *
ngx_ailink_write_uint(u_char *p, uint64_t n)
{
    u_char    digits[NGX_INT64_LEN], *d;
    uint64_t  q;

    d = digits + NGX_INT64_LEN;

    while (n >= 100) {
        q = n / 100;
        d -= 2;
        ngx_memcpy(d, &ngx_ailink_digits2[(n - q * 100) * 2], 2);
        n = q;
    }

    if (n >= 10) {
        d -= 2;
        ngx_memcpy(d, &ngx_ailink_digits2[n * 2], 2);

    } else {
        *--d = (u_char) ('0' + n);
    }

    return ngx_cpymem(p, d, digits + NGX_INT64_LEN - d);
}


static ngx_inline u_char *
ngx_ailink_write_int(u_char *p, int64_t n)
{
    if (n < 0) {
        *p++ = '-';
        return ngx_ailink_write_uint(p, (uint64_t) -(n + 1) + 1);
    }

    return ngx_ailink_write_uint(p, (uint64_t) n);
}


/* ngx_ailink_yaml.c */
cJSON *ngx_ailink_yaml_load(ngx_conf_t *cf, ngx_str_t *file);
cJSON *ngx_ailink_yaml_parse(ngx_conf_t *cf, ngx_str_t *name, ngx_str_t *text);

/* ngx_ailink_config.c */
ngx_ailink_conf_t *ngx_ailink_conf_load(ngx_conf_t *cf, ngx_str_t *file);
ngx_int_t ngx_ailink_conf_password_file(ngx_conf_t *cf, const char *directive,
    ngx_str_t *name, ngx_str_t *password);
ngx_int_t ngx_ailink_conf_password_arg(ngx_conf_t *cf, const char *directive,
    ngx_str_t *arg, char **password);
ngx_ailink_token_t *ngx_ailink_token_find(ngx_ailink_conf_t *conf,
    u_char *hash);
ngx_ailink_provider_t *ngx_ailink_route_model(ngx_ailink_conf_t *conf,
    ngx_str_t *model);
ngx_ailink_provider_t *ngx_ailink_provider_find(ngx_ailink_conf_t *conf,
    ngx_str_t *name);
ngx_ailink_credential_t *ngx_ailink_token_credential(ngx_ailink_token_t *tok,
    ngx_ailink_provider_t *provider);
ngx_int_t ngx_ailink_conf_load_tokens(ngx_conf_t *cf, ngx_ailink_conf_t *conf,
    cJSON *root);
ngx_int_t ngx_ailink_conf_load_base_url(ngx_conf_t *cf,
    ngx_ailink_conf_t *conf, ngx_str_t *url, const char *where,
    ngx_ailink_base_url_t *base);
ngx_int_t ngx_ailink_conf_load_inject(ngx_conf_t *cf, ngx_ailink_conf_t *conf,
    cJSON *obj, const char *where, ngx_ailink_inject_t *inject);

/*
 * Tokens that are not in the file (the admin API's store): consulted by
 * the auth handler after the file's, when set; the token stays valid for
 * the request's lifetime.
 */
typedef ngx_ailink_token_t *(*ngx_ailink_token_find_pt)(ngx_http_request_t *r,
    u_char *hash);

extern ngx_ailink_token_find_pt  ngx_ailink_token_find_store;

/* a token of the store by id (the breakers' API), held for r */
typedef ngx_ailink_token_t *(*ngx_ailink_token_find_id_pt)(
    ngx_http_request_t *r, ngx_str_t *id);

extern ngx_ailink_token_find_id_pt  ngx_ailink_token_find_id_store;

/* a registered service by name (the admin API's store), held for r */
typedef ngx_int_t (*ngx_ailink_service_find_pt)(ngx_http_request_t *r,
    ngx_str_t *name, ngx_ailink_base_url_t **base,
    ngx_ailink_credential_t **credential);

extern ngx_ailink_service_find_pt  ngx_ailink_service_find;

#define NGX_AILINK_SERVICES_PREFIX  "/v1/proxy/services/"

/* ngx_ailink_policy_conf.c: the "policies" of the file */
ngx_int_t ngx_ailink_guard_conf_load(ngx_conf_t *cf, ngx_ailink_conf_t *conf,
    cJSON *root);
cJSON *ngx_ailink_guard_conf_token_own(ngx_ailink_conf_t *conf,
    ngx_ailink_token_t *tok);
ngx_int_t ngx_ailink_policy_conf_load(ngx_conf_t *cf, ngx_ailink_conf_t *conf,
    cJSON *root);
ngx_int_t ngx_ailink_policy_conf_token(ngx_http_request_t *r, ngx_conf_t *cf,
    ngx_ailink_conf_t *conf, ngx_ailink_token_t *tok, cJSON *own,
    const char *where);

/* ngx_ailink_policy_conf.c: the admin API's policies (a JSON list) */
ngx_int_t ngx_ailink_policy_conf_store(ngx_http_request_t *r, ngx_conf_t *cf,
    ngx_ailink_conf_t *conf, ngx_ailink_conf_t *file, cJSON *list);
cJSON *ngx_ailink_policy_conf_file_list(ngx_http_request_t *r);
cJSON *ngx_ailink_policy_conf_token_own(ngx_ailink_token_t *tok);

/* ngx_ailink_cache_module.c: the tokens' "cache_ttl_secs" */
ngx_int_t ngx_ailink_cache_conf_load(ngx_conf_t *cf, ngx_ailink_conf_t *conf,
    cJSON *root);
cJSON *ngx_ailink_cache_conf_token_own(ngx_ailink_token_t *tok);

/* ngx_ailink_fallback_conf.c: the "fallbacks" of the file */
ngx_int_t ngx_ailink_fallback_conf_load(ngx_conf_t *cf,
    ngx_ailink_conf_t *conf, cJSON *root);

/*
 * Set by the fallback module: called by the error page first, so that a
 * connection error or a timeout of an upstream with a fallback left is
 * retried there instead of answered; NGX_DONE when it was.
 */
extern ngx_int_t (*ngx_ailink_fallback_error)(ngx_http_request_t *r);

/* ngx_ailink_breaker_api.c: the tokens' "circuit_breaker" */
ngx_int_t ngx_ailink_breaker_conf_load(ngx_conf_t *cf,
    ngx_ailink_conf_t *conf, cJSON *root);
cJSON *ngx_ailink_breaker_conf_token_own(ngx_ailink_token_t *tok);

/* ngx_ailink_admin_key.c: one set of admin keys, one check */
ngx_int_t ngx_ailink_admin_keys_load(ngx_conf_t *cf, ngx_ailink_conf_t *conf,
    cJSON *root);
ngx_ailink_admin_key_t *ngx_ailink_admin_key_match(ngx_http_request_t *r);
ngx_str_t *ngx_ailink_admin_key_find(ngx_http_request_t *r);
ngx_int_t ngx_ailink_admin_key_check(ngx_http_request_t *r);
ngx_int_t ngx_ailink_admin_key_audit(ngx_http_request_t *r,
    ngx_ailink_admin_key_t *k, ngx_str_t *resource, ngx_str_t *object);

/* ngx_ailink_realtime_module.c: GET /v1/realtime */
ngx_int_t ngx_ailink_realtime_token(ngx_http_request_t *r, ngx_str_t *token);
ngx_uint_t ngx_ailink_realtime_request(ngx_http_request_t *r);
ngx_int_t ngx_ailink_realtime_route(ngx_http_request_t *r,
    ngx_ailink_ctx_t *ctx);

/* ngx_ailink_prices.c */
ngx_int_t ngx_ailink_prices_init(ngx_conf_t *cf, ngx_array_t *prices,
    cJSON *overrides);
double ngx_ailink_cost(ngx_ailink_conf_t *conf, ngx_str_t *model,
    ngx_ailink_usage_t *usage);
double ngx_ailink_request_cost(ngx_ailink_conf_t *conf, ngx_ailink_ctx_t *ctx);

/* ngx_ailink_sse.c */
ngx_int_t ngx_ailink_sse_init(ngx_ailink_sse_t *sse, ngx_pool_t *pool,
    size_t max, ngx_ailink_sse_event_pt handler, void *data);
ngx_int_t ngx_ailink_sse_feed(ngx_ailink_sse_t *sse, u_char *p, u_char *last);


#endif /* _NGX_AILINK_COMMON_H_INCLUDED_ */
