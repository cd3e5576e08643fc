
/*
 * Copyright (C) AILink
 */


#ifndef _NGX_AILINK_TRANSLATE_H_INCLUDED_
#define _NGX_AILINK_TRANSLATE_H_INCLUDED_


#include "ngx_ailink_common.h"
#include "ngx_ailink_auth.h"


typedef struct {
    size_t      response_buffer_size;
    size_t      stream_event_max_size;
} ngx_ailink_translate_loc_conf_t;


/*
 * Provider translators.  Each provider's translator lives in its own file
 * (ngx_ailink_anthropic.c, ngx_ailink_gemini.c) and works on parsed JSON
 * only: the module glue (ngx_ailink_translate_module.c for requests,
 * ngx_ailink_response_filter.c for responses) owns nginx buffers, headers
 * and status codes.  cJSON trees a translator returns belong to the caller,
 * who frees them with cJSON_Delete().
 */

/* building a provider request from an OpenAI chat.completions request */
typedef struct {
    ngx_pool_t                 *pool;
    ngx_log_t                  *log;
    ngx_ailink_provider_t      *provider;   /* route settings */
    ngx_str_t                   model;      /* as the client named it */
    ngx_uint_t                  stream;     /* "stream": true */

    /* a refusal: the message of a 400 and the parameter it is about */
    char                       *error;
    const char                 *error_param;
} ngx_ailink_xreq_t;


/*
 * A chat request the one-pass translator reads (ngx_ailink_direct.c):
 * where each message's text lies in the client's body, and the numbers'
 * texts, all pointing into that body.
 */

#define NGX_AILINK_DIRECT_SYSTEM     0
#define NGX_AILINK_DIRECT_USER       1
#define NGX_AILINK_DIRECT_ASSISTANT  2

typedef struct {
    u_char                     *text;       /* between the quotes */
    size_t                      len;
    ngx_uint_t                  role;       /* NGX_AILINK_DIRECT_USER, ... */
    ngx_uint_t                  escaped;    /* NGX_AILINK_SCAN_ESCAPED, ... */
} ngx_ailink_direct_msg_t;

typedef struct {
    ngx_str_t                   model;
    ngx_str_t                   max_tokens;
    ngx_str_t                   max_completion_tokens;
    ngx_str_t                   temperature;
    ngx_str_t                   top_p;
    ngx_array_t                 messages;   /* of ngx_ailink_direct_msg_t */
    size_t                      text_len;   /* the texts' sum */
    unsigned                    stream:1;
    unsigned                    include_usage:1;
} ngx_ailink_direct_t;

ngx_int_t ngx_ailink_direct_read(ngx_ailink_direct_t *d, ngx_pool_t *pool,
    ngx_str_t *body);
ngx_int_t ngx_ailink_direct_write(ngx_ailink_direct_t *d,
    ngx_ailink_xreq_t *x, ngx_str_t *out);


/* translating a provider response; the stream state extends it */
typedef struct {
    ngx_pool_t                 *pool;
    ngx_log_t                  *log;
    ngx_str_t                   model;      /* reported as the model */
    ngx_str_t                   id;         /* "chatcmpl-<request id>" */
    time_t                      created;
    ngx_ailink_usage_t         *usage;      /* filled by the translator */
} ngx_ailink_xresp_t;

ngx_int_t ngx_ailink_direct_anthropic_response(ngx_ailink_xresp_t *x,
    ngx_str_t *text, ngx_str_t *out);
ngx_int_t ngx_ailink_direct_gemini_response(ngx_ailink_xresp_t *x,
    ngx_str_t *text, ngx_str_t *out);


typedef struct ngx_ailink_xstream_s  ngx_ailink_xstream_t;

struct ngx_ailink_xstream_s {
    ngx_ailink_xresp_t          resp;
    ngx_uint_t                  include_usage;  /* stream_options */

    /* set by the glue: appends "data: <json>\n\n" to the output */
    ngx_int_t                 (*emit)(ngx_ailink_xstream_t *st, cJSON *chunk);
    void                       *data;

    void                       *state;      /* the translator's own */

    const char                 *finish_reason;  /* once known */
    ngx_uint_t                  choice;     /* index of the chunks made */
    unsigned                    role_sent:1;
    unsigned                    finished:1;     /* final chunk emitted */
    unsigned                    done:1;         /* [DONE] emitted */
};


/*
 * Each returns the provider request body, or NULL with x->error set for a
 * 400 (a request the provider cannot take), or NULL alone for an
 * internal error.
 */
cJSON *ngx_ailink_anthropic_request(ngx_ailink_xreq_t *x, cJSON *req);
cJSON *ngx_ailink_gemini_request(ngx_ailink_xreq_t *x, cJSON *req);

/* a non-stream response; NULL when it is not what the provider sends */
cJSON *ngx_ailink_anthropic_response(ngx_ailink_xresp_t *x, cJSON *resp);
cJSON *ngx_ailink_gemini_response(ngx_ailink_xresp_t *x, cJSON *resp);
const char *ngx_ailink_anthropic_finish_reason(ngx_str_t *reason);
void ngx_ailink_anthropic_usage_set(ngx_ailink_usage_t *usage,
    ngx_uint_t *input, ngx_uint_t *read, ngx_uint_t *write,
    ngx_uint_t *output);

/* Gemini's usageMetadata counts, as ngx_ailink_gemini_usage_set() takes
 * them */
#define NGX_AILINK_GEMINI_COUNTS  6

const char *ngx_ailink_gemini_finish_reason(ngx_str_t *r, ngx_uint_t calls);
void ngx_ailink_gemini_usage_set(ngx_ailink_usage_t *usage,
    ngx_uint_t *counts);

/*
 * One server-sent event of a provider stream; emits OpenAI chunks through
 * st->emit.  NGX_ERROR when the event cannot be understood: the glue then
 * ends the stream with an error event.
 */
ngx_int_t ngx_ailink_anthropic_stream(ngx_ailink_xstream_t *st,
    ngx_str_t *event, ngx_str_t *data);
ngx_int_t ngx_ailink_gemini_stream(ngx_ailink_xstream_t *st,
    ngx_str_t *event, ngx_str_t *data);


/* ngx_ailink_xlate.c: pieces every translator uses */
ngx_int_t ngx_cdecl ngx_ailink_xreq_refuse(ngx_ailink_xreq_t *x,
    const char *param, const char *fmt, ...);
cJSON *ngx_ailink_chunk_new(ngx_ailink_xstream_t *st);
cJSON *ngx_ailink_chunk_delta(cJSON *chunk);
ngx_int_t ngx_ailink_stream_emit(ngx_ailink_xstream_t *st, cJSON *chunk);
ngx_int_t ngx_ailink_stream_role(ngx_ailink_xstream_t *st);
ngx_int_t ngx_ailink_stream_content(ngx_ailink_xstream_t *st,
    const char *text);
ngx_int_t ngx_ailink_stream_final(ngx_ailink_xstream_t *st);
ngx_int_t ngx_ailink_stream_finish(ngx_ailink_xstream_t *st);
ngx_int_t ngx_ailink_stream_error(ngx_ailink_xstream_t *st,
    const char *type, const char *message);
cJSON *ngx_ailink_completion_new(ngx_ailink_xresp_t *x, cJSON **message);
cJSON *ngx_ailink_usage_json(ngx_ailink_usage_t *usage);
ngx_int_t ngx_ailink_data_url(ngx_pool_t *pool, const char *url,
    ngx_str_t *media_type, ngx_str_t *data);


/* ngx_ailink_reasoning.c: "reasoning_effort" and thinking, both ways */
#define NGX_AILINK_EFFORT_NONE     0
#define NGX_AILINK_EFFORT_MINIMAL  1
#define NGX_AILINK_EFFORT_LOW      2
#define NGX_AILINK_EFFORT_MEDIUM   3
#define NGX_AILINK_EFFORT_HIGH     4
#define NGX_AILINK_EFFORT_UNSET    5

ngx_int_t ngx_ailink_reasoning_effort(ngx_ailink_xreq_t *x, cJSON *req,
    ngx_uint_t *effort);
ngx_int_t ngx_ailink_anthropic_thinking(ngx_ailink_xreq_t *x, cJSON *req,
    cJSON *out);
ngx_int_t ngx_ailink_anthropic_thinking_blocks(ngx_ailink_xreq_t *x,
    ngx_uint_t i, cJSON *msg, cJSON *blocks);
ngx_int_t ngx_ailink_anthropic_reasoning(cJSON *content, cJSON *message);
ngx_int_t ngx_ailink_gemini_thinking(ngx_ailink_xreq_t *x, cJSON *req,
    cJSON *gc);
ngx_int_t ngx_ailink_reasoning_delta(ngx_ailink_xstream_t *st,
    ngx_str_t *text);
ngx_int_t ngx_ailink_reasoning_block_delta(ngx_ailink_xstream_t *st,
    const char *type, const char *key, cJSON *value);


/* ngx_ailink_structured.c: "response_format" */
#define NGX_AILINK_ANSWER_TOOL  "json_answer"

ngx_int_t ngx_ailink_anthropic_structured(ngx_ailink_xreq_t *x, cJSON *req,
    cJSON *out);
ngx_int_t ngx_ailink_gemini_structured(ngx_ailink_xreq_t *x, cJSON *req,
    cJSON *body);


/* ngx_ailink_choices.c: "n" and log probabilities */
ngx_int_t ngx_ailink_gemini_choices(ngx_ailink_xreq_t *x, cJSON *req,
    cJSON *gc);
ngx_int_t ngx_ailink_gemini_logprobs(cJSON *cand, cJSON *choice);
ngx_int_t ngx_ailink_stream_choice_role(ngx_ailink_xstream_t *st,
    ngx_uint_t index);
ngx_int_t ngx_ailink_stream_choice_finish(ngx_ailink_xstream_t *st,
    ngx_uint_t index, const char *reason);


/* ngx_ailink_response_filter.c */
ngx_int_t ngx_ailink_response_filter_init(ngx_conf_t *cf);

/* ngx_ailink_translate_module.c */
ngx_int_t ngx_ailink_set_request_body_text(ngx_http_request_t *r,
    ngx_str_t *text);


#endif /* _NGX_AILINK_TRANSLATE_H_INCLUDED_ */
