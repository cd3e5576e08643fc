
/*
 * Copyright (C) AILink
 *
 * The one-pass translator.
 *
 * Most chat requests are a model, a list of system, user and assistant
 * messages of text, and a few numbers; a coding agent's are that with
 * 100 KB to 1 MB of history.  The Claude and Gemini bodies for them are
 * the client's texts in other framing.  So the client's JSON is read once,
 * checked as the parse checks it, and where each text lies is kept; then
 * the provider's JSON is written around the texts, each copied as it came,
 * its escapes written as the tree printer writes them ("\/" as "/",
 * "\u00e9" as UTF-8).  No tree is built: for a long history the tree's
 * parse, print, escape pass and copies were nine tenths of the
 * translation.  Answers of text come back the same way (below).
 *
 * Anything else (images, tools, tool results, a member a translator reads
 * that this does not, null, a number in another form, a request a
 * translator would refuse) is NGX_DECLINED: the tree translators do it,
 * errors included.  The output is the tree translators' to the byte;
 * fuzz/fuzz_direct.c checks it.
 */


#include "ngx_ailink_translate.h"
#include "ngx_ailink_json_scan.h"


/* the members read, each at most once */
#define NGX_AILINK_DIRECT_MODEL        0x01
#define NGX_AILINK_DIRECT_MESSAGES     0x02
#define NGX_AILINK_DIRECT_MAX_TOKENS   0x04
#define NGX_AILINK_DIRECT_MAX_COMPL    0x08
#define NGX_AILINK_DIRECT_TEMPERATURE  0x10
#define NGX_AILINK_DIRECT_TOP_P        0x20
#define NGX_AILINK_DIRECT_STREAM       0x40
#define NGX_AILINK_DIRECT_STREAM_OPTS  0x80
#define NGX_AILINK_DIRECT_TREE         0x100

/* a message's members */
#define NGX_AILINK_DIRECT_ROLE         0x01
#define NGX_AILINK_DIRECT_CONTENT      0x02

/* a message's framing in either provider's body, text excluded */
#define NGX_AILINK_DIRECT_FRAMING      64


typedef struct {
    ngx_str_t                   name;
    ngx_uint_t                  bit;
} ngx_ailink_direct_key_t;

/* reads the value of the member "bit" names; s at the value */
typedef ngx_int_t (*ngx_ailink_direct_member_pt)(void *data, ngx_uint_t bit,
    ngx_ailink_scan_t *s);

/* reads an element of a list; s at it */
typedef ngx_int_t (*ngx_ailink_direct_element_pt)(void *data,
    ngx_ailink_scan_t *s);


static ngx_int_t ngx_ailink_direct_member(void *data, ngx_uint_t bit,
    ngx_ailink_scan_t *s);
static ngx_int_t ngx_ailink_direct_include_usage(void *data, ngx_uint_t bit,
    ngx_ailink_scan_t *s);
static ngx_int_t ngx_ailink_direct_object(ngx_ailink_scan_t *s,
    ngx_ailink_direct_key_t *members, ngx_uint_t skip,
    ngx_ailink_direct_member_pt member, void *data, ngx_uint_t *seen);
static ngx_int_t ngx_ailink_direct_array(ngx_ailink_scan_t *s,
    ngx_ailink_direct_element_pt element, void *data);
static ngx_int_t ngx_ailink_direct_open(ngx_ailink_scan_t *s,
    ngx_str_t *text);
static ngx_int_t ngx_ailink_direct_end(ngx_ailink_scan_t *s);
static ngx_uint_t ngx_ailink_direct_lookup(ngx_ailink_direct_key_t *keys,
    ngx_str_t *name);
static ngx_int_t ngx_ailink_direct_key(ngx_ailink_scan_t *s, ngx_str_t *key);
static ngx_int_t ngx_ailink_direct_next(ngx_ailink_scan_t *s, u_char close);
static ngx_int_t ngx_ailink_direct_string(ngx_ailink_scan_t *s,
    ngx_str_t *value, ngx_uint_t *escaped);
static ngx_int_t ngx_ailink_direct_number(ngx_ailink_scan_t *s,
    ngx_str_t *value, ngx_uint_t count);
static ngx_int_t ngx_ailink_direct_bool(ngx_ailink_scan_t *s,
    ngx_uint_t *value);
static ngx_int_t ngx_ailink_direct_message(void *data, ngx_ailink_scan_t *s);
static ngx_int_t ngx_ailink_direct_text_list(ngx_array_t *texts, size_t *len,
    ngx_ailink_scan_t *s, ngx_uint_t rewrite);
static ngx_int_t ngx_ailink_direct_text_part(void *data,
    ngx_ailink_scan_t *s);
static ngx_int_t ngx_ailink_direct_text_member(void *data, ngx_uint_t bit,
    ngx_ailink_scan_t *s);
static ngx_int_t ngx_ailink_direct_role(ngx_str_t *role);
static ngx_ailink_direct_msg_t *ngx_ailink_direct_first_turn(
    ngx_ailink_direct_t *d);
static u_char *ngx_ailink_direct_text(u_char *dst,
    ngx_ailink_direct_msg_t *m);
static u_char *ngx_ailink_direct_blocks(u_char *p, ngx_ailink_direct_t *d,
    ngx_str_t *block, ngx_str_t *turns);
static u_char *ngx_ailink_direct_anthropic(ngx_ailink_direct_t *d,
    ngx_ailink_xreq_t *x, u_char *p);
static u_char *ngx_ailink_direct_gemini(ngx_ailink_direct_t *d,
    ngx_ailink_xreq_t *x, u_char *p, cJSON *safety);


static ngx_ailink_direct_key_t  ngx_ailink_direct_members[] = {
    { ngx_string("model"), NGX_AILINK_DIRECT_MODEL },
    { ngx_string("messages"), NGX_AILINK_DIRECT_MESSAGES },
    { ngx_string("max_tokens"), NGX_AILINK_DIRECT_MAX_TOKENS },
    { ngx_string("max_completion_tokens"), NGX_AILINK_DIRECT_MAX_COMPL },
    { ngx_string("temperature"), NGX_AILINK_DIRECT_TEMPERATURE },
    { ngx_string("top_p"), NGX_AILINK_DIRECT_TOP_P },
    { ngx_string("stream"), NGX_AILINK_DIRECT_STREAM },
    { ngx_string("stream_options"), NGX_AILINK_DIRECT_STREAM_OPTS },

    /*
     * The members the tree translators read that the one pass does not: a
     * request with one is theirs.  Any other member (presence_penalty,
     * store, metadata) no translator reads: it is checked and passed
     * over.  A member a translator comes to read must be in this table;
     * fuzz_direct finds it missing when its dictionary (fuzz/ailink.dict)
     * has the name.
     */
    { ngx_string("n"), NGX_AILINK_DIRECT_TREE },
    { ngx_string("logprobs"), NGX_AILINK_DIRECT_TREE },
    { ngx_string("top_logprobs"), NGX_AILINK_DIRECT_TREE },
    { ngx_string("stop"), NGX_AILINK_DIRECT_TREE },
    { ngx_string("user"), NGX_AILINK_DIRECT_TREE },
    { ngx_string("seed"), NGX_AILINK_DIRECT_TREE },
    { ngx_string("tools"), NGX_AILINK_DIRECT_TREE },
    { ngx_string("tool_choice"), NGX_AILINK_DIRECT_TREE },
    { ngx_string("parallel_tool_calls"), NGX_AILINK_DIRECT_TREE },
    { ngx_string("response_format"), NGX_AILINK_DIRECT_TREE },
    { ngx_string("reasoning_effort"), NGX_AILINK_DIRECT_TREE },
    { ngx_null_string, 0 }
};


static ngx_ailink_direct_key_t  ngx_ailink_direct_stream_options[] = {
    { ngx_string("include_usage"), NGX_AILINK_DIRECT_STREAM },
    { ngx_null_string, 0 }
};


/* how each provider's body frames a text, and a turn of each role */

static ngx_str_t  ngx_ailink_direct_anthropic_block =
    ngx_string("{\"type\":\"text\",\"text\":\"");

static ngx_str_t  ngx_ailink_direct_anthropic_turns[] = {
    ngx_null_string,
    ngx_string("{\"role\":\"user\",\"content\":["),
    ngx_string("{\"role\":\"assistant\",\"content\":[")
};

static ngx_str_t  ngx_ailink_direct_gemini_block = ngx_string("{\"text\":\"");

static ngx_str_t  ngx_ailink_direct_gemini_turns[] = {
    ngx_null_string,
    ngx_string("{\"role\":\"user\",\"parts\":["),
    ngx_string("{\"role\":\"model\",\"parts\":[")
};


/*
 * Reads an OpenAI chat request of the shape above into d: NGX_OK,
 * NGX_DECLINED for any other text (valid or not), NGX_ERROR.
 */

ngx_int_t
ngx_ailink_direct_read(ngx_ailink_direct_t *d, ngx_pool_t *pool,
    ngx_str_t *body)
{
    ngx_int_t           rc;
    ngx_uint_t          seen;
    ngx_ailink_scan_t   s;

    ngx_memzero(d, sizeof(ngx_ailink_direct_t));

    if (ngx_array_init(&d->messages, pool, 16,
                       sizeof(ngx_ailink_direct_msg_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_ailink_direct_open(&s, body) != NGX_OK) {
        return NGX_DECLINED;
    }

    rc = ngx_ailink_direct_object(&s, ngx_ailink_direct_members, 1,
                                  ngx_ailink_direct_member, d, &seen);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_ailink_direct_end(&s) != NGX_OK
        || (seen & (NGX_AILINK_DIRECT_MODEL|NGX_AILINK_DIRECT_MESSAGES))
           != (NGX_AILINK_DIRECT_MODEL|NGX_AILINK_DIRECT_MESSAGES))
    {
        return NGX_DECLINED;
    }

    /* max_completion_tokens wins, as in both translators */
    if (d->max_completion_tokens.len) {
        d->max_tokens = d->max_completion_tokens;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_direct_member(void *data, ngx_uint_t bit, ngx_ailink_scan_t *s)
{
    ngx_ailink_direct_t *d = data;

    ngx_int_t   rc;
    ngx_uint_t  escaped, flag, seen;

    switch (bit) {

    case NGX_AILINK_DIRECT_MODEL:
        rc = ngx_ailink_direct_string(s, &d->model, &escaped);
        return (rc == NGX_OK && !escaped && d->model.len) ? NGX_OK
                                                          : NGX_DECLINED;

    case NGX_AILINK_DIRECT_MESSAGES:
        /* none is refused by the tree: the writer leaves it to it */
        return ngx_ailink_direct_array(s, ngx_ailink_direct_message, d);

    case NGX_AILINK_DIRECT_MAX_TOKENS:
        return ngx_ailink_direct_number(s, &d->max_tokens, 1);

    case NGX_AILINK_DIRECT_MAX_COMPL:
        return ngx_ailink_direct_number(s, &d->max_completion_tokens, 1);

    case NGX_AILINK_DIRECT_TEMPERATURE:
        return ngx_ailink_direct_number(s, &d->temperature, 0);

    case NGX_AILINK_DIRECT_TOP_P:
        return ngx_ailink_direct_number(s, &d->top_p, 0);

    case NGX_AILINK_DIRECT_STREAM:
        rc = ngx_ailink_direct_bool(s, &flag);
        d->stream = flag;
        return rc;

    case NGX_AILINK_DIRECT_STREAM_OPTS:
        /* {"include_usage": true|false}, or {} */
        return ngx_ailink_direct_object(s, ngx_ailink_direct_stream_options,
                                        0, ngx_ailink_direct_include_usage,
                                        d, &seen);

    default: /* NGX_AILINK_DIRECT_TREE */
        return NGX_DECLINED;
    }
}


static ngx_int_t
ngx_ailink_direct_include_usage(void *data, ngx_uint_t bit,
    ngx_ailink_scan_t *s)
{
    ngx_ailink_direct_t *d = data;

    ngx_int_t   rc;
    ngx_uint_t  flag;

    rc = ngx_ailink_direct_bool(s, &flag);
    d->include_usage = flag;

    return rc;
}


/*
 * An object's members, s at its opening brace: each named in "members" is
 * read by "member" (once: the tree reads the first of duplicates), any
 * other checked and passed over where "skip", else NGX_DECLINED.  In
 * *seen, the bits of those read.
 */

static ngx_int_t
ngx_ailink_direct_object(ngx_ailink_scan_t *s,
    ngx_ailink_direct_key_t *members, ngx_uint_t skip,
    ngx_ailink_direct_member_pt member, void *data, ngx_uint_t *seen)
{
    ngx_int_t   rc;
    ngx_str_t   key;
    ngx_uint_t  bit;

    *seen = 0;

    if (*s->p != '{') {
        return NGX_DECLINED;
    }

    s->p++;
    ngx_ailink_scan_space(s);

    if (s->p < s->last && *s->p == '}') {
        s->p++;
        return NGX_OK;
    }

    do {
        if (ngx_ailink_direct_key(s, &key) != NGX_OK) {
            return NGX_DECLINED;
        }

        bit = ngx_ailink_direct_lookup(members, &key);

        if (bit == 0) {
            if (!skip || ngx_ailink_scan_skip(s) != NGX_OK) {
                return NGX_DECLINED;
            }

        } else {
            if (*seen & bit) {
                return NGX_DECLINED;
            }

            *seen |= bit;

            rc = member(data, bit, s);
            if (rc != NGX_OK) {
                return rc;
            }
        }

        rc = ngx_ailink_direct_next(s, '}');

    } while (rc == NGX_AGAIN);

    return (rc == NGX_OK) ? NGX_OK : NGX_DECLINED;
}


/* a list, s at its opening bracket: each element read by "element" */

static ngx_int_t
ngx_ailink_direct_array(ngx_ailink_scan_t *s,
    ngx_ailink_direct_element_pt element, void *data)
{
    ngx_int_t  rc;

    if (*s->p != '[') {
        return NGX_DECLINED;
    }

    s->p++;
    ngx_ailink_scan_space(s);

    if (s->p < s->last && *s->p == ']') {
        s->p++;
        return NGX_OK;
    }

    do {
        if (s->p == s->last) {
            return NGX_DECLINED;
        }

        rc = element(data, s);
        if (rc != NGX_OK) {
            return rc;
        }

        rc = ngx_ailink_direct_next(s, ']');

    } while (rc == NGX_AGAIN);

    return (rc == NGX_OK) ? NGX_OK : NGX_DECLINED;
}


/* s over text, at the opening brace of the object it must be */

static ngx_int_t
ngx_ailink_direct_open(ngx_ailink_scan_t *s, ngx_str_t *text)
{
    ngx_memzero(s, sizeof(ngx_ailink_scan_t));
    s->p = text->data;
    s->last = text->data + text->len;

    ngx_ailink_scan_space(s);

    return (s->p < s->last && *s->p == '{') ? NGX_OK : NGX_DECLINED;
}


/* after the object, nothing but blanks */

static ngx_int_t
ngx_ailink_direct_end(ngx_ailink_scan_t *s)
{
    ngx_ailink_scan_space(s);

    return (s->p == s->last) ? NGX_OK : NGX_DECLINED;
}


static ngx_uint_t
ngx_ailink_direct_lookup(ngx_ailink_direct_key_t *keys, ngx_str_t *name)
{
    for ( /* void */ ; keys->name.len; keys++) {
        /* the first byte before a call to memcmp() */
        if (keys->name.len == name->len
            && keys->name.data[0] == name->data[0]
            && ngx_memcmp(keys->name.data, name->data, name->len) == 0)
        {
            return keys->bit;
        }
    }

    return 0;
}


/* a member's key without escapes, and the colon; s->p at its value */

static ngx_int_t
ngx_ailink_direct_key(ngx_ailink_scan_t *s, ngx_str_t *key)
{
    ngx_uint_t  escaped;

    if (ngx_ailink_direct_string(s, key, &escaped) != NGX_OK || escaped) {
        return NGX_DECLINED;
    }

    ngx_ailink_scan_space(s);

    if (s->p == s->last || *s->p != ':') {
        return NGX_DECLINED;
    }

    s->p++;
    ngx_ailink_scan_space(s);

    return (s->p < s->last) ? NGX_OK : NGX_DECLINED;
}


/* after a value: NGX_AGAIN at the next one, NGX_OK past the close */

static ngx_int_t
ngx_ailink_direct_next(ngx_ailink_scan_t *s, u_char close)
{
    ngx_ailink_scan_space(s);

    if (s->p == s->last) {
        return NGX_DECLINED;
    }

    if (*s->p == close) {
        s->p++;
        return NGX_OK;
    }

    if (*s->p != ',') {
        return NGX_DECLINED;
    }

    s->p++;
    ngx_ailink_scan_space(s);

    return (s->p < s->last) ? NGX_AGAIN : NGX_DECLINED;
}


/* a string's JSON text, between the quotes */

static ngx_int_t
ngx_ailink_direct_string(ngx_ailink_scan_t *s, ngx_str_t *value,
    ngx_uint_t *escaped)
{
    if (s->p == s->last || *s->p != '"') {
        return NGX_DECLINED;
    }

    value->data = s->p + 1;

    if (ngx_ailink_scan_string(s) != NGX_OK) {
        return NGX_DECLINED;
    }

    value->len = s->p - 1 - value->data;
    *escaped = s->escaped;

    return NGX_OK;
}


/*
 * A number the translators copy as its text: with "count", a token count
 * of 1 to 999,999,999 in plain digits (Anthropic's bounds, and an int32
 * for Gemini); else 0, 1, or 0 and a fraction (temperature, top_p: the
 * values no translator changes; Anthropic's cap at 1 never applies).
 */

static ngx_int_t
ngx_ailink_direct_number(ngx_ailink_scan_t *s, ngx_str_t *value,
    ngx_uint_t count)
{
    u_char  *p;

    value->data = s->p;

    if (ngx_ailink_scan_number(s) != NGX_OK) {
        return NGX_DECLINED;
    }

    value->len = s->p - value->data;
    p = value->data;

    if (count) {
        if (value->len > 9 || *p == '0' || *p == '-') {
            return NGX_DECLINED;
        }

        for ( /* void */ ; p < s->p; p++) {
            if (*p < '0' || *p > '9') {
                return NGX_DECLINED;
            }
        }

        return NGX_OK;
    }

    if (value->len == 1 && (*p == '0' || *p == '1')) {
        return NGX_OK;
    }

    if (value->len < 3 || p[0] != '0' || p[1] != '.') {
        return NGX_DECLINED;
    }

    for (p += 2; p < s->p; p++) {
        if (*p < '0' || *p > '9') {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_direct_bool(ngx_ailink_scan_t *s, ngx_uint_t *value)
{
    *value = (*s->p == 't');

    if (*s->p != 't' && *s->p != 'f') {
        return NGX_DECLINED;
    }

    return (ngx_ailink_scan_literal(s) == NGX_OK) ? NGX_OK : NGX_DECLINED;
}


/*
 * {"role": "...", "content": "..."}, in either order.  Content may be a
 * list of text parts: each is kept as a message of the same role, which
 * both translators make the same turn of (consecutive messages of a role
 * are one turn, a part's text one block or part, empty ones left out).
 */

static ngx_int_t
ngx_ailink_direct_message(void *data, ngx_ailink_scan_t *s)
{
    ngx_ailink_direct_t *d = data;

    ngx_int_t                 rc, role;
    ngx_str_t                 key, value;
    ngx_uint_t                seen, bit, escaped, first, i;
    ngx_ailink_direct_msg_t  *m;

    if (*s->p != '{') {
        return NGX_DECLINED;
    }

    s->p++;
    ngx_ailink_scan_space(s);

    /* the message's texts are the records from here on */
    first = d->messages.nelts;
    role = NGX_AILINK_DIRECT_USER;
    seen = 0;

    do {
        if (ngx_ailink_direct_key(s, &key) != NGX_OK) {
            return NGX_DECLINED;
        }

        /* a thousand messages a request: no table, no call to memcmp() */
        bit = (key.len == 4 && ngx_memcmp(key.data, "role", 4) == 0)
              ? NGX_AILINK_DIRECT_ROLE
              : (key.len == 7 && ngx_memcmp(key.data, "content", 7) == 0)
              ? NGX_AILINK_DIRECT_CONTENT : 0;

        if (bit == 0 || (seen & bit)) {
            return NGX_DECLINED;
        }

        seen |= bit;

        if (bit == NGX_AILINK_DIRECT_CONTENT && *s->p == '[') {
            rc = ngx_ailink_direct_text_list(&d->messages, &d->text_len, s, 1);

            if (rc != NGX_OK) {
                return rc;
            }

            goto next;
        }

        if (ngx_ailink_direct_string(s, &value, &escaped) != NGX_OK) {
            return NGX_DECLINED;
        }

        if (bit == NGX_AILINK_DIRECT_ROLE) {
            role = ngx_ailink_direct_role(&value);

            if (escaped || role == NGX_ERROR) {
                return NGX_DECLINED;
            }

        } else {
            m = ngx_array_push(&d->messages);
            if (m == NULL) {
                return NGX_ERROR;
            }

            m->text = value.data;
            m->len = value.len;
            m->escaped = escaped;
            d->text_len += m->len;
        }

    next:

        rc = ngx_ailink_direct_next(s, '}');

    } while (rc == NGX_AGAIN);

    if (rc != NGX_OK
        || seen != (NGX_AILINK_DIRECT_ROLE|NGX_AILINK_DIRECT_CONTENT))
    {
        return NGX_DECLINED;
    }

    m = d->messages.elts;

    for (i = first; i < d->messages.nelts; i++) {
        m[i].role = role;
    }

    return NGX_OK;
}


/* a role's NGX_AILINK_DIRECT_*: developer messages are system ones */

static ngx_int_t
ngx_ailink_direct_role(ngx_str_t *role)
{
    u_char  *p;

    p = role->data;

    switch (role->len) {

    case 4:
        return ngx_memcmp(p, "user", 4) == 0 ? NGX_AILINK_DIRECT_USER
                                              : NGX_ERROR;

    case 6:
        return ngx_memcmp(p, "system", 6) == 0 ? NGX_AILINK_DIRECT_SYSTEM
                                                : NGX_ERROR;

    case 9:
        return ngx_memcmp(p, "assistant", 9) == 0
               ? NGX_AILINK_DIRECT_ASSISTANT
               : ngx_memcmp(p, "developer", 9) == 0
               ? NGX_AILINK_DIRECT_SYSTEM : NGX_ERROR;

    default:
        return NGX_ERROR;
    }
}


/*
 * The provider's body in out, from the pool: NGX_OK, NGX_DECLINED when
 * the tree translator is to say why not (no turn; Anthropic's first turn
 * not the user's; a lone surrogate, which the scan lets by), NGX_ERROR.
 */

ngx_int_t
ngx_ailink_direct_write(ngx_ailink_direct_t *d, ngx_ailink_xreq_t *x,
    ngx_str_t *out)
{
    u_char                   *p, *last;
    cJSON                    *safety;
    size_t                    size;
    ngx_ailink_direct_msg_t  *first;

    first = ngx_ailink_direct_first_turn(d);

    if (first == NULL
        || (x->provider->type == NGX_AILINK_PROVIDER_ANTHROPIC
            && first->role != NGX_AILINK_DIRECT_USER))
    {
        return NGX_DECLINED;
    }

    size = d->text_len + d->messages.nelts * NGX_AILINK_DIRECT_FRAMING
           + x->model.len + d->temperature.len + d->top_p.len
           + sizeof("{\"model\":\"\",\"max_tokens\":,\"stream\":true}")
           + NGX_INT_T_LEN + 256;

    safety = NULL;

    if (x->provider->type == NGX_AILINK_PROVIDER_GEMINI
        && x->provider->safety_settings.len)
    {
        /* the route's setting, read as the tree translator reads it */
        safety = ngx_ailink_json_parse(&x->provider->safety_settings);

        if (!cJSON_IsArray(safety)) {
            ngx_ailink_json_delete(safety);
            return NGX_DECLINED;
        }

        size += ngx_ailink_json_print_len(safety);
    }

    p = ngx_pnalloc(x->pool, size);
    if (p == NULL) {
        ngx_ailink_json_delete(safety);
        return NGX_ERROR;
    }

    out->data = p;

    if (x->provider->type == NGX_AILINK_PROVIDER_ANTHROPIC) {
        last = ngx_ailink_direct_anthropic(d, x, p);

    } else {
        last = ngx_ailink_direct_gemini(d, x, p, safety);
    }

    ngx_ailink_json_delete(safety);

    if (last == NULL) {
        return NGX_DECLINED;
    }

    out->len = last - p;

    return NGX_OK;
}


/* the first message that makes a turn: not a system one, not empty */

static ngx_ailink_direct_msg_t *
ngx_ailink_direct_first_turn(ngx_ailink_direct_t *d)
{
    ngx_uint_t                i;
    ngx_ailink_direct_msg_t  *m;

    m = d->messages.elts;

    for (i = 0; i < d->messages.nelts; i++) {
        if (m[i].role != NGX_AILINK_DIRECT_SYSTEM && m[i].len) {
            return &m[i];
        }
    }

    return NULL;
}


/*
 * A text as the printer writes the string it stands for: as it came when
 * its escapes are all the printer's own, else with each escape written
 * the printer's way; NULL for a lone surrogate.  Never longer than it
 * came.
 */

static u_char *
ngx_ailink_direct_text(u_char *dst, ngx_ailink_direct_msg_t *m)
{
    u_char     *p, *q, *end, *last, buf[4];
    ngx_str_t   decoded;

    if (!(m->escaped & NGX_AILINK_SCAN_REWRITE)) {
        return ngx_cpymem(dst, m->text, m->len);
    }

    p = m->text;
    last = m->text + m->len;

    for ( ;; ) {
        q = memchr(p, '\\', last - p);

        if (q == NULL) {
            return ngx_cpymem(dst, p, last - p);
        }

        dst = ngx_cpymem(dst, p, q - p);

        if (q[1] != 'u' && q[1] != '/') {
            /* \" \\ \b \f \n \r \t: the printer's own */
            *dst++ = '\\';
            *dst++ = q[1];
            p = q + 2;
            continue;
        }

        p = q;
        end = ngx_ailink_json_unescape(&p, last, buf);

        if (end == NULL) {
            return NULL;
        }

        decoded.data = buf;
        decoded.len = end - buf;

        dst = ngx_ailink_json_escape(dst, &decoded);
    }
}


/*
 * The non-empty texts of the system messages (turns NULL), or those of the
 * others in turns, a turn opened by turns[role] where the role changes:
 * consecutive messages of a role are one turn, as in both translators.
 * Each text is block, the text, and "\"}", comma-separated within a list;
 * NULL for a lone surrogate.
 */

static u_char *
ngx_ailink_direct_blocks(u_char *p, ngx_ailink_direct_t *d, ngx_str_t *block,
    ngx_str_t *turns)
{
    ngx_uint_t                i, n, role;
    ngx_ailink_direct_msg_t  *m;

    m = d->messages.elts;
    role = NGX_AILINK_DIRECT_SYSTEM;
    n = 0;

    for (i = 0; i < d->messages.nelts; i++) {
        if (m[i].len == 0
            || (m[i].role == NGX_AILINK_DIRECT_SYSTEM) != (turns == NULL))
        {
            continue;
        }

        if (turns && m[i].role != role) {
            if (n) {
                p = ngx_cpymem(p, "]},", 3);
            }

            role = m[i].role;
            p = ngx_cpymem(p, turns[role].data, turns[role].len);

        } else if (n) {
            *p++ = ',';
        }

        n++;

        p = ngx_cpymem(p, block->data, block->len);

        p = ngx_ailink_direct_text(p, &m[i]);
        if (p == NULL) {
            return NULL;
        }

        p = ngx_cpymem(p, "\"}", 2);
    }

    return p;
}


/*
 * {"model":..,"system":[blocks],"messages":[turns],"max_tokens":..,
 * "temperature":..,"top_p":..,"stream":true}: consecutive messages of
 * one role are one turn, empty texts are left out, as the tree does.
 */

static u_char *
ngx_ailink_direct_anthropic(ngx_ailink_direct_t *d, ngx_ailink_xreq_t *x,
    u_char *p)
{
    u_char  *start, *texts;

    p = ngx_cpymem(p, "{\"model\":\"", sizeof("{\"model\":\"") - 1);
    p = ngx_cpymem(p, x->model.data, x->model.len);
    *p++ = '"';

    start = p;
    texts = ngx_cpymem(p, ",\"system\":[", sizeof(",\"system\":[") - 1);

    p = ngx_ailink_direct_blocks(texts, d, &ngx_ailink_direct_anthropic_block,
                                 NULL);
    if (p == NULL) {
        return NULL;
    }

    if (p == texts) {
        /* no system text: no "system" */
        p = start;

    } else {
        *p++ = ']';
    }

    p = ngx_cpymem(p, ",\"messages\":[", sizeof(",\"messages\":[") - 1);

    p = ngx_ailink_direct_blocks(p, d, &ngx_ailink_direct_anthropic_block,
                                 ngx_ailink_direct_anthropic_turns);
    if (p == NULL) {
        return NULL;
    }

    p = ngx_cpymem(p, "]}],\"max_tokens\":", sizeof("]}],\"max_tokens\":") - 1);

    if (d->max_tokens.len) {
        p = ngx_cpymem(p, d->max_tokens.data, d->max_tokens.len);

    } else {
        p = ngx_ailink_write_uint(p, x->provider->max_tokens
                                     ? x->provider->max_tokens : 4096);
    }

    if (d->temperature.len) {
        p = ngx_cpymem(p, ",\"temperature\":", sizeof(",\"temperature\":") - 1);
        p = ngx_cpymem(p, d->temperature.data, d->temperature.len);
    }

    if (d->top_p.len) {
        p = ngx_cpymem(p, ",\"top_p\":", sizeof(",\"top_p\":") - 1);
        p = ngx_cpymem(p, d->top_p.data, d->top_p.len);
    }

    if (x->stream || d->stream) {
        p = ngx_cpymem(p, ",\"stream\":true", sizeof(",\"stream\":true") - 1);
    }

    *p++ = '}';

    return p;
}


/*
 * {"contents":[turns],"systemInstruction":{"parts":[..]},
 * "generationConfig":{..},"safetySettings":[..]}
 */

static u_char *
ngx_ailink_direct_gemini(ngx_ailink_direct_t *d, ngx_ailink_xreq_t *x,
    u_char *p, cJSON *safety)
{
    char    *sep;
    u_char  *start, *texts;

    p = ngx_cpymem(p, "{\"contents\":[", sizeof("{\"contents\":[") - 1);

    p = ngx_ailink_direct_blocks(p, d, &ngx_ailink_direct_gemini_block,
                                 ngx_ailink_direct_gemini_turns);
    if (p == NULL) {
        return NULL;
    }

    p = ngx_cpymem(p, "]}]", 3);

    start = p;
    texts = ngx_cpymem(p, ",\"systemInstruction\":{\"parts\":[",
                       sizeof(",\"systemInstruction\":{\"parts\":[") - 1);

    p = ngx_ailink_direct_blocks(texts, d, &ngx_ailink_direct_gemini_block,
                                 NULL);
    if (p == NULL) {
        return NULL;
    }

    if (p == texts) {
        /* no system text: no "systemInstruction" */
        p = start;

    } else {
        p = ngx_cpymem(p, "]}", 2);
    }

    sep = ",\"generationConfig\":{";

    if (d->temperature.len) {
        p = ngx_cpymem(p, sep, ngx_strlen(sep));
        p = ngx_cpymem(p, "\"temperature\":", sizeof("\"temperature\":") - 1);
        p = ngx_cpymem(p, d->temperature.data, d->temperature.len);
        sep = ",";
    }

    if (d->top_p.len) {
        p = ngx_cpymem(p, sep, ngx_strlen(sep));
        p = ngx_cpymem(p, "\"topP\":", sizeof("\"topP\":") - 1);
        p = ngx_cpymem(p, d->top_p.data, d->top_p.len);
        sep = ",";
    }

    if (d->max_tokens.len) {
        p = ngx_cpymem(p, sep, ngx_strlen(sep));
        p = ngx_cpymem(p, "\"maxOutputTokens\":",
                       sizeof("\"maxOutputTokens\":") - 1);
        p = ngx_cpymem(p, d->max_tokens.data, d->max_tokens.len);
        sep = ",";
    }

    if (sep[0] == ',' && sep[1] == '\0') {
        *p++ = '}';
    }

    if (safety) {
        p = ngx_cpymem(p, ",\"safetySettings\":",
                       sizeof(",\"safetySettings\":") - 1);
        p = ngx_ailink_json_print(p, safety);
    }

    *p++ = '}';

    return p;
}


/*
 * Responses.  An Anthropic message whose content is text blocks is the
 * OpenAI completion of the same texts, joined: read once, with the
 * members the tree translator does not read checked and passed over (a
 * provider adds members; they must not send the answer to the tree), and
 * written as ngx_ailink_anthropic_response() and the printer write it.
 * Thinking, tool use, citations and texts with "\u" escapes are
 * NGX_DECLINED, for the tree.  A Gemini answer of one candidate of text
 * parts the same way.
 */

#define NGX_AILINK_DIRECT_TYPE         0x01
#define NGX_AILINK_DIRECT_BLOCKS       0x02
#define NGX_AILINK_DIRECT_REASON       0x04
#define NGX_AILINK_DIRECT_USAGE        0x08
#define NGX_AILINK_DIRECT_LOGPROBS     0x10
#define NGX_AILINK_DIRECT_THOUGHT      0x20
#define NGX_AILINK_DIRECT_CALL         0x40
#define NGX_AILINK_DIRECT_PARTS        0x80

/* Anthropic's usage counts, in ngx_ailink_anthropic_usage_set()'s order */
#define NGX_AILINK_DIRECT_INPUT        0
#define NGX_AILINK_DIRECT_CACHE_READ   1
#define NGX_AILINK_DIRECT_CACHE_WRITE  2
#define NGX_AILINK_DIRECT_OUTPUT       3


typedef struct {
    ngx_array_t                 texts;      /* of ngx_ailink_direct_msg_t */
    size_t                      text_len;
    ngx_uint_t                  text;       /* content is a string */
    ngx_str_t                   reason;     /* the finish reason, if a
                                               string */
    ngx_uint_t                  counts[NGX_AILINK_GEMINI_COUNTS];
    ngx_uint_t                  found;      /* which counts, a bit each */
    ngx_uint_t                  usage;      /* a usage object was there */
} ngx_ailink_direct_resp_t;


static ngx_int_t ngx_ailink_direct_answer(ngx_ailink_direct_resp_t *dr,
    ngx_pool_t *pool, ngx_str_t *text, ngx_ailink_direct_key_t *members,
    ngx_ailink_direct_member_pt member, ngx_uint_t required);
static ngx_int_t ngx_ailink_direct_anthropic_member(void *data,
    ngx_uint_t bit, ngx_ailink_scan_t *s);
static ngx_int_t ngx_ailink_direct_gemini_member(void *data, ngx_uint_t bit,
    ngx_ailink_scan_t *s);
static ngx_int_t ngx_ailink_direct_candidate_member(void *data,
    ngx_uint_t bit, ngx_ailink_scan_t *s);
static ngx_int_t ngx_ailink_direct_part(void *data, ngx_ailink_scan_t *s);
static ngx_int_t ngx_ailink_direct_part_member(void *data, ngx_uint_t bit,
    ngx_ailink_scan_t *s);
static ngx_int_t ngx_ailink_direct_reason(ngx_ailink_direct_resp_t *dr,
    ngx_ailink_scan_t *s);
static ngx_int_t ngx_ailink_direct_usage(ngx_ailink_direct_resp_t *dr,
    ngx_ailink_scan_t *s, ngx_ailink_direct_key_t *names);
static ngx_int_t ngx_ailink_direct_count(void *data, ngx_uint_t bit,
    ngx_ailink_scan_t *s);
static ngx_int_t ngx_ailink_direct_completion(ngx_ailink_xresp_t *x,
    ngx_ailink_direct_resp_t *dr, const char *finish,
    ngx_ailink_usage_t *usage, ngx_str_t *out);
static u_char *ngx_ailink_direct_usage_print(u_char *p,
    ngx_ailink_usage_t *usage);


static ngx_ailink_direct_key_t  ngx_ailink_direct_anthropic_members[] = {
    { ngx_string("type"), NGX_AILINK_DIRECT_TYPE },
    { ngx_string("content"), NGX_AILINK_DIRECT_BLOCKS },
    { ngx_string("stop_reason"), NGX_AILINK_DIRECT_REASON },
    { ngx_string("usage"), NGX_AILINK_DIRECT_USAGE },
    { ngx_null_string, 0 }
};


/* in ngx_ailink_anthropic_usage_set()'s order, a bit each */
static ngx_ailink_direct_key_t  ngx_ailink_direct_anthropic_counts[] = {
    { ngx_string("input_tokens"), 1 << NGX_AILINK_DIRECT_INPUT },
    { ngx_string("cache_read_input_tokens"),
      1 << NGX_AILINK_DIRECT_CACHE_READ },
    { ngx_string("cache_creation_input_tokens"),
      1 << NGX_AILINK_DIRECT_CACHE_WRITE },
    { ngx_string("output_tokens"), 1 << NGX_AILINK_DIRECT_OUTPUT },
    { ngx_null_string, 0 }
};


static ngx_ailink_direct_key_t  ngx_ailink_direct_gemini_members[] = {
    { ngx_string("candidates"), NGX_AILINK_DIRECT_BLOCKS },
    { ngx_string("usageMetadata"), NGX_AILINK_DIRECT_USAGE },
    { ngx_null_string, 0 }
};


/* index, safetyRatings, avgLogprobs, citationMetadata: passed over */
static ngx_ailink_direct_key_t  ngx_ailink_direct_candidate_members[] = {
    { ngx_string("content"), NGX_AILINK_DIRECT_BLOCKS },
    { ngx_string("finishReason"), NGX_AILINK_DIRECT_REASON },
    { ngx_string("logprobsResult"), NGX_AILINK_DIRECT_LOGPROBS },
    { ngx_null_string, 0 }
};


/* a candidate's content: its "role" is passed over */
static ngx_ailink_direct_key_t  ngx_ailink_direct_content_members[] = {
    { ngx_string("parts"), NGX_AILINK_DIRECT_PARTS },
    { ngx_null_string, 0 }
};


/* a part: a thought signature is passed over */
static ngx_ailink_direct_key_t  ngx_ailink_direct_part_members[] = {
    { ngx_string("text"), NGX_AILINK_DIRECT_BLOCKS },
    { ngx_string("thought"), NGX_AILINK_DIRECT_THOUGHT },
    { ngx_string("functionCall"), NGX_AILINK_DIRECT_CALL },
    { ngx_null_string, 0 }
};


/* in ngx_ailink_gemini_usage_set()'s order, a bit each */
static ngx_ailink_direct_key_t  ngx_ailink_direct_gemini_counts[] = {
    { ngx_string("promptTokenCount"), 1 << 0 },
    { ngx_string("toolUsePromptTokenCount"), 1 << 1 },
    { ngx_string("candidatesTokenCount"), 1 << 2 },
    { ngx_string("thoughtsTokenCount"), 1 << 3 },
    { ngx_string("totalTokenCount"), 1 << 4 },
    { ngx_string("cachedContentTokenCount"), 1 << 5 },
    { ngx_null_string, 0 }
};


/* an OpenAI completion in out, "\n" ended; NGX_DECLINED for the tree */

ngx_int_t
ngx_ailink_direct_anthropic_response(ngx_ailink_xresp_t *x, ngx_str_t *text,
    ngx_str_t *out)
{
    ngx_int_t                  rc;
    ngx_ailink_direct_resp_t   dr;

    rc = ngx_ailink_direct_answer(&dr, x->pool, text,
                                  ngx_ailink_direct_anthropic_members,
                                  ngx_ailink_direct_anthropic_member,
                                  NGX_AILINK_DIRECT_TYPE
                                  |NGX_AILINK_DIRECT_BLOCKS);
    if (rc != NGX_OK) {
        return rc;
    }

    if (dr.usage) {
        ngx_ailink_anthropic_usage_set(x->usage,
            (dr.found & (1 << NGX_AILINK_DIRECT_INPUT))
            ? &dr.counts[NGX_AILINK_DIRECT_INPUT] : NULL,
            (dr.found & (1 << NGX_AILINK_DIRECT_CACHE_READ))
            ? &dr.counts[NGX_AILINK_DIRECT_CACHE_READ] : NULL,
            (dr.found & (1 << NGX_AILINK_DIRECT_CACHE_WRITE))
            ? &dr.counts[NGX_AILINK_DIRECT_CACHE_WRITE] : NULL,
            (dr.found & (1 << NGX_AILINK_DIRECT_OUTPUT))
            ? &dr.counts[NGX_AILINK_DIRECT_OUTPUT] : NULL);
    }

    /* no text is null content */
    dr.text = (dr.text_len > 0);

    return ngx_ailink_direct_completion(x, &dr,
               dr.reason.data ? ngx_ailink_anthropic_finish_reason(&dr.reason)
                              : "stop",
               dr.usage ? x->usage : NULL, out);
}


ngx_int_t
ngx_ailink_direct_gemini_response(ngx_ailink_xresp_t *x, ngx_str_t *text,
    ngx_str_t *out)
{
    ngx_int_t                  rc;
    ngx_ailink_direct_resp_t   dr;

    rc = ngx_ailink_direct_answer(&dr, x->pool, text,
                                  ngx_ailink_direct_gemini_members,
                                  ngx_ailink_direct_gemini_member,
                                  NGX_AILINK_DIRECT_BLOCKS);
    if (rc != NGX_OK) {
        return rc;
    }

    if (dr.usage) {
        /* a count not there is 0, as ngx_ailink_json_uint() reads it */
        ngx_ailink_gemini_usage_set(x->usage, dr.counts);
    }

    return ngx_ailink_direct_completion(x, &dr,
               dr.reason.data ? ngx_ailink_gemini_finish_reason(&dr.reason, 0)
                              : "stop",
               x->usage, out);
}


/* an answer's object read into dr, with the members "required" */

static ngx_int_t
ngx_ailink_direct_answer(ngx_ailink_direct_resp_t *dr, ngx_pool_t *pool,
    ngx_str_t *text, ngx_ailink_direct_key_t *members,
    ngx_ailink_direct_member_pt member, ngx_uint_t required)
{
    ngx_int_t           rc;
    ngx_uint_t          seen;
    ngx_ailink_scan_t   s;

    ngx_memzero(dr, sizeof(ngx_ailink_direct_resp_t));

    if (ngx_array_init(&dr->texts, pool, 4, sizeof(ngx_ailink_direct_msg_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_ailink_direct_open(&s, text) != NGX_OK) {
        return NGX_DECLINED;
    }

    rc = ngx_ailink_direct_object(&s, members, 1, member, dr, &seen);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_ailink_direct_end(&s) != NGX_OK || (seen & required) != required)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_direct_anthropic_member(void *data, ngx_uint_t bit,
    ngx_ailink_scan_t *s)
{
    ngx_ailink_direct_resp_t *dr = data;

    ngx_int_t   rc;
    ngx_str_t   value;
    ngx_uint_t  escaped;

    switch (bit) {

    case NGX_AILINK_DIRECT_TYPE:
        rc = ngx_ailink_direct_string(s, &value, &escaped);

        return (rc == NGX_OK && value.len == sizeof("message") - 1
                && ngx_memcmp(value.data, "message", value.len) == 0)
               ? NGX_OK : NGX_DECLINED;

    case NGX_AILINK_DIRECT_BLOCKS:
        return ngx_ailink_direct_text_list(&dr->texts, &dr->text_len, s, 0);

    case NGX_AILINK_DIRECT_REASON:
        return ngx_ailink_direct_reason(dr, s);

    default: /* NGX_AILINK_DIRECT_USAGE */
        return ngx_ailink_direct_usage(dr, s,
                                       ngx_ailink_direct_anthropic_counts);
    }
}


/* "candidates": [one candidate] */

static ngx_int_t
ngx_ailink_direct_gemini_member(void *data, ngx_uint_t bit,
    ngx_ailink_scan_t *s)
{
    ngx_ailink_direct_resp_t *dr = data;

    ngx_int_t   rc;
    ngx_uint_t  seen;

    if (bit == NGX_AILINK_DIRECT_USAGE) {
        return ngx_ailink_direct_usage(dr, s, ngx_ailink_direct_gemini_counts);
    }

    if (*s->p != '[') {
        return NGX_DECLINED;
    }

    s->p++;
    ngx_ailink_scan_space(s);

    if (s->p == s->last) {
        return NGX_DECLINED;
    }

    /* none is a blocked prompt: the tree's */
    rc = ngx_ailink_direct_object(s, ngx_ailink_direct_candidate_members, 1,
                                  ngx_ailink_direct_candidate_member, dr,
                                  &seen);
    if (rc != NGX_OK) {
        return rc;
    }

    /* several, for "n": the tree's */
    return (ngx_ailink_direct_next(s, ']') == NGX_OK) ? NGX_OK : NGX_DECLINED;
}


/*
 * {"content": {"parts": [...]}, "finishReason": "..."}, and the content's
 * "parts"; log probabilities are the tree's
 */

static ngx_int_t
ngx_ailink_direct_candidate_member(void *data, ngx_uint_t bit,
    ngx_ailink_scan_t *s)
{
    ngx_ailink_direct_resp_t *dr = data;

    ngx_uint_t  seen;

    switch (bit) {

    case NGX_AILINK_DIRECT_REASON:
        return ngx_ailink_direct_reason(dr, s);

    case NGX_AILINK_DIRECT_LOGPROBS:
        return NGX_DECLINED;

    case NGX_AILINK_DIRECT_BLOCKS:
        return ngx_ailink_direct_object(s, ngx_ailink_direct_content_members,
                                        1, ngx_ailink_direct_candidate_member,
                                        dr, &seen);

    default: /* NGX_AILINK_DIRECT_PARTS */
        return ngx_ailink_direct_array(s, ngx_ailink_direct_part, dr);
    }
}


static ngx_int_t
ngx_ailink_direct_part(void *data, ngx_ailink_scan_t *s)
{
    ngx_uint_t  seen;

    return ngx_ailink_direct_object(s, ngx_ailink_direct_part_members, 1,
                                    ngx_ailink_direct_part_member, data,
                                    &seen);
}


/*
 * A part's text is the answer's ("" too: content "" rather than null),
 * unless the part is a thought ("thought": true, a summary: the tree's);
 * a function call is the tree's
 */

static ngx_int_t
ngx_ailink_direct_part_member(void *data, ngx_uint_t bit,
    ngx_ailink_scan_t *s)
{
    ngx_ailink_direct_resp_t *dr = data;

    ngx_str_t                 value;
    ngx_uint_t                escaped;
    ngx_ailink_direct_msg_t  *m;

    switch (bit) {

    case NGX_AILINK_DIRECT_BLOCKS:
        if (ngx_ailink_direct_string(s, &value, &escaped) != NGX_OK
            || (escaped & NGX_AILINK_SCAN_REWRITE))
        {
            return NGX_DECLINED;
        }

        m = ngx_array_push(&dr->texts);
        if (m == NULL) {
            return NGX_ERROR;
        }

        m->text = value.data;
        m->len = value.len;
        m->escaped = escaped;

        dr->text = 1;
        dr->text_len += value.len;

        return NGX_OK;

    case NGX_AILINK_DIRECT_THOUGHT:
        return (*s->p == 'f' && ngx_ailink_scan_literal(s) == NGX_OK)
               ? NGX_OK : NGX_DECLINED;

    default: /* NGX_AILINK_DIRECT_CALL */
        return NGX_DECLINED;
    }
}


/* a finish reason: a string without escapes, or null */

static ngx_int_t
ngx_ailink_direct_reason(ngx_ailink_direct_resp_t *dr, ngx_ailink_scan_t *s)
{
    ngx_uint_t  escaped;

    if (*s->p == 'n') {
        return (ngx_ailink_scan_literal(s) == NGX_OK) ? NGX_OK : NGX_DECLINED;
    }

    return (ngx_ailink_direct_string(s, &dr->reason, &escaped) == NGX_OK
            && !escaped)
           ? NGX_OK : NGX_DECLINED;
}


/* {"input_tokens": N, ...}, the counts "names" names; null is no usage */

static ngx_int_t
ngx_ailink_direct_usage(ngx_ailink_direct_resp_t *dr, ngx_ailink_scan_t *s,
    ngx_ailink_direct_key_t *names)
{
    if (*s->p == 'n') {
        return (ngx_ailink_scan_literal(s) == NGX_OK) ? NGX_OK : NGX_DECLINED;
    }

    dr->usage = 1;

    return ngx_ailink_direct_object(s, names, 1, ngx_ailink_direct_count, dr,
                                    &dr->found);
}


/* a count in plain digits under 10^12, the tree's cap */

static ngx_int_t
ngx_ailink_direct_count(void *data, ngx_uint_t bit, ngx_ailink_scan_t *s)
{
    ngx_ailink_direct_resp_t *dr = data;

    u_char      *p, *start;
    ngx_uint_t   n;

    start = s->p;

    if (ngx_ailink_scan_number(s) != NGX_OK
        || s->p - start > 12 || (*start == '0' && s->p - start > 1))
    {
        return NGX_DECLINED;
    }

    for (n = 0, p = start; p < s->p; p++) {
        if (*p < '0' || *p > '9') {
            return NGX_DECLINED;
        }

        n = n * 10 + (*p - '0');
    }

    dr->counts[__builtin_ctzl(bit)] = n;

    return NGX_OK;
}


/*
 * {"id", "object": "chat.completion", ..., "choices": [one], "usage"}\n,
 * as ngx_ailink_completion_new(), the translators and the printer make
 * it: the texts joined (their escapes are the printer's own), or null
 * when there was none
 */

static ngx_int_t
ngx_ailink_direct_completion(ngx_ailink_xresp_t *x,
    ngx_ailink_direct_resp_t *dr, const char *finish,
    ngx_ailink_usage_t *usage, ngx_str_t *out)
{
    u_char                   *p;
    ngx_uint_t                i;
    ngx_ailink_direct_msg_t  *m;

    p = ngx_pnalloc(x->pool, dr->text_len + 6 * (x->id.len + x->model.len)
                             + 512);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;

    p = ngx_cpymem(p, "{\"id\":\"", sizeof("{\"id\":\"") - 1);
    p = ngx_ailink_json_escape(p, &x->id);
    p = ngx_cpymem(p, "\",\"object\":\"chat.completion\",\"created\":",
                   sizeof("\",\"object\":\"chat.completion\",\"created\":")
                   - 1);
    p = ngx_ailink_write_int(p, (int64_t) x->created);
    p = ngx_cpymem(p, ",\"model\":\"", sizeof(",\"model\":\"") - 1);
    p = ngx_ailink_json_escape(p, &x->model);
    p = ngx_cpymem(p, "\",\"choices\":[{\"index\":0,\"message\":"
                      "{\"role\":\"assistant\",\"content\":",
                   sizeof("\",\"choices\":[{\"index\":0,\"message\":"
                          "{\"role\":\"assistant\",\"content\":") - 1);

    if (dr->text) {
        *p++ = '"';

        m = dr->texts.elts;

        for (i = 0; i < dr->texts.nelts; i++) {
            p = ngx_cpymem(p, m[i].text, m[i].len);
        }

        *p++ = '"';

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    p = ngx_cpymem(p, ",\"refusal\":null},\"logprobs\":null,"
                      "\"finish_reason\":\"",
                   sizeof(",\"refusal\":null},\"logprobs\":null,"
                          "\"finish_reason\":\"") - 1);
    p = ngx_cpymem(p, finish, ngx_strlen(finish));
    p = ngx_cpymem(p, "\"}]", 3);

    if (usage) {
        p = ngx_ailink_direct_usage_print(p, usage);
    }

    *p++ = '}';
    *p++ = '\n';

    out->len = p - out->data;

    return NGX_OK;
}


/*
 * [{"type": "text", "text": "..."}, ...], a message's content parts or an
 * answer's blocks: a record each in texts, their lengths added to *len.
 * Anything else in the list (images, files, tool use, citations, a
 * duplicate) is the tree's, and so is a text with "\u" or "\/" unless
 * "rewrite" (the answer's writer joins texts as they came).
 */

typedef struct {
    ngx_array_t                *texts;
    size_t                     *len;
    ngx_uint_t                  rewrite;
    ngx_ailink_direct_msg_t    *text;       /* the part's */
} ngx_ailink_direct_list_t;


static ngx_ailink_direct_key_t  ngx_ailink_direct_text_members[] = {
    { ngx_string("type"), NGX_AILINK_DIRECT_ROLE },
    { ngx_string("text"), NGX_AILINK_DIRECT_CONTENT },
    { ngx_null_string, 0 }
};


static ngx_int_t
ngx_ailink_direct_text_list(ngx_array_t *texts, size_t *len,
    ngx_ailink_scan_t *s, ngx_uint_t rewrite)
{
    ngx_ailink_direct_list_t  list;

    list.texts = texts;
    list.len = len;
    list.rewrite = rewrite;

    return ngx_ailink_direct_array(s, ngx_ailink_direct_text_part, &list);
}


static ngx_int_t
ngx_ailink_direct_text_part(void *data, ngx_ailink_scan_t *s)
{
    ngx_ailink_direct_list_t *list = data;

    ngx_int_t   rc;
    ngx_uint_t  seen;

    list->text = ngx_array_push(list->texts);
    if (list->text == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_ailink_direct_object(s, ngx_ailink_direct_text_members, 0,
                                  ngx_ailink_direct_text_member, list, &seen);
    if (rc != NGX_OK) {
        return rc;
    }

    if (seen != (NGX_AILINK_DIRECT_ROLE|NGX_AILINK_DIRECT_CONTENT)) {
        return NGX_DECLINED;
    }

    *list->len += list->text->len;

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_direct_text_member(void *data, ngx_uint_t bit,
    ngx_ailink_scan_t *s)
{
    ngx_ailink_direct_list_t *list = data;

    ngx_str_t                 value;
    ngx_uint_t                escaped;
    ngx_ailink_direct_msg_t  *m;

    if (ngx_ailink_direct_string(s, &value, &escaped) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (bit == NGX_AILINK_DIRECT_ROLE) {
        /* "type" */
        return (value.len == 4 && ngx_memcmp(value.data, "text", 4) == 0)
               ? NGX_OK : NGX_DECLINED;
    }

    if ((escaped & NGX_AILINK_SCAN_REWRITE) && !list->rewrite) {
        return NGX_DECLINED;
    }

    m = list->text;
    m->text = value.data;
    m->len = value.len;
    m->escaped = escaped;

    return NGX_OK;
}


/* ,"usage":{...} as ngx_ailink_usage_json() builds it */

static u_char *
ngx_ailink_direct_usage_print(u_char *p, ngx_ailink_usage_t *usage)
{
    p = ngx_cpymem(p, ",\"usage\":{\"prompt_tokens\":",
                   sizeof(",\"usage\":{\"prompt_tokens\":") - 1);
    p = ngx_ailink_write_uint(p, usage->prompt);
    p = ngx_cpymem(p, ",\"completion_tokens\":",
                   sizeof(",\"completion_tokens\":") - 1);
    p = ngx_ailink_write_uint(p, usage->completion);
    p = ngx_cpymem(p, ",\"total_tokens\":", sizeof(",\"total_tokens\":") - 1);
    p = ngx_ailink_write_uint(p, usage->total);
    p = ngx_cpymem(p, ",\"prompt_tokens_details\":{\"cached_tokens\":",
                   sizeof(",\"prompt_tokens_details\":{\"cached_tokens\":")
                   - 1);
    p = ngx_ailink_write_uint(p, usage->cached);

    if (usage->cache_write) {
        p = ngx_cpymem(p, ",\"cache_creation_tokens\":",
                       sizeof(",\"cache_creation_tokens\":") - 1);
        p = ngx_ailink_write_uint(p, usage->cache_write);
    }

    *p++ = '}';

    if (usage->reasoning) {
        p = ngx_cpymem(p, ",\"completion_tokens_details\":"
                          "{\"reasoning_tokens\":",
                       sizeof(",\"completion_tokens_details\":"
                              "{\"reasoning_tokens\":") - 1);
        p = ngx_ailink_write_uint(p, usage->reasoning);
        *p++ = '}';
    }

    *p++ = '}';

    return p;
}
