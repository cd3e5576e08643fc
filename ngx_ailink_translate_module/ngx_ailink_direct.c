
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

/* a message's members */
#define NGX_AILINK_DIRECT_ROLE         0x01
#define NGX_AILINK_DIRECT_CONTENT      0x02

/* a message's framing in either provider's body, text excluded */
#define NGX_AILINK_DIRECT_FRAMING      64


typedef struct {
    ngx_str_t                   name;
    ngx_uint_t                  bit;
} ngx_ailink_direct_key_t;


static ngx_int_t ngx_ailink_direct_open(ngx_ailink_scan_t *s,
    ngx_str_t *text);
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
static ngx_int_t ngx_ailink_direct_stream_options(ngx_ailink_direct_t *d,
    ngx_ailink_scan_t *s);
static ngx_int_t ngx_ailink_direct_messages(ngx_ailink_direct_t *d,
    ngx_ailink_scan_t *s);
static ngx_int_t ngx_ailink_direct_message(ngx_ailink_direct_t *d,
    ngx_ailink_scan_t *s);
static ngx_int_t ngx_ailink_direct_text_list(ngx_array_t *texts, size_t *len,
    ngx_ailink_scan_t *s, ngx_uint_t rewrite);
static ngx_int_t ngx_ailink_direct_role(ngx_str_t *role);
static ngx_ailink_direct_msg_t *ngx_ailink_direct_first_turn(
    ngx_ailink_direct_t *d);
static u_char *ngx_ailink_direct_text(u_char *dst,
    ngx_ailink_direct_msg_t *m);
static u_char *ngx_ailink_direct_anthropic(ngx_ailink_direct_t *d,
    ngx_ailink_xreq_t *x, u_char *p);
static u_char *ngx_ailink_direct_gemini(ngx_ailink_direct_t *d,
    ngx_ailink_xreq_t *x, u_char *p, cJSON *safety);


/*
 * The members the tree translators read that the one pass does not: a
 * request with one is theirs.  A member a translator comes to read must
 * be here or above; fuzz_direct finds it missing when its dictionary
 * (fuzz/ailink.dict) has the name.
 */

static ngx_ailink_direct_key_t  ngx_ailink_direct_tree_members[] = {
    { ngx_string("n"), 1 },
    { ngx_string("logprobs"), 1 },
    { ngx_string("top_logprobs"), 1 },
    { ngx_string("stop"), 1 },
    { ngx_string("user"), 1 },
    { ngx_string("seed"), 1 },
    { ngx_string("tools"), 1 },
    { ngx_string("tool_choice"), 1 },
    { ngx_string("parallel_tool_calls"), 1 },
    { ngx_string("response_format"), 1 },
    { ngx_string("reasoning_effort"), 1 },
    { ngx_null_string, 0 }
};


static ngx_ailink_direct_key_t  ngx_ailink_direct_members[] = {
    { ngx_string("model"), NGX_AILINK_DIRECT_MODEL },
    { ngx_string("messages"), NGX_AILINK_DIRECT_MESSAGES },
    { ngx_string("max_tokens"), NGX_AILINK_DIRECT_MAX_TOKENS },
    { ngx_string("max_completion_tokens"), NGX_AILINK_DIRECT_MAX_COMPL },
    { ngx_string("temperature"), NGX_AILINK_DIRECT_TEMPERATURE },
    { ngx_string("top_p"), NGX_AILINK_DIRECT_TOP_P },
    { ngx_string("stream"), NGX_AILINK_DIRECT_STREAM },
    { ngx_string("stream_options"), NGX_AILINK_DIRECT_STREAM_OPTS },
    { ngx_null_string, 0 }
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
    ngx_str_t           key, max_tokens;
    ngx_uint_t          seen, bit, escaped, flag;
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

    ngx_str_null(&max_tokens);
    seen = 0;
    flag = 0;

    do {
        if (ngx_ailink_direct_key(&s, &key) != NGX_OK) {
            return NGX_DECLINED;
        }

        bit = ngx_ailink_direct_lookup(ngx_ailink_direct_members, &key);

        if (bit == 0) {
            /* a member no translator reads (presence_penalty, store,
             * metadata, ...) is checked and passed over */
            if (ngx_ailink_direct_lookup(ngx_ailink_direct_tree_members, &key)
                || ngx_ailink_scan_skip(&s) != NGX_OK)
            {
                return NGX_DECLINED;
            }

            rc = ngx_ailink_direct_next(&s, '}');
            continue;
        }

        if (seen & bit) {
            return NGX_DECLINED;
        }

        seen |= bit;

        switch (bit) {

        case NGX_AILINK_DIRECT_MODEL:
            rc = ngx_ailink_direct_string(&s, &d->model, &escaped);

            if (rc == NGX_OK && (escaped || d->model.len == 0)) {
                rc = NGX_DECLINED;
            }

            break;

        case NGX_AILINK_DIRECT_MESSAGES:
            rc = ngx_ailink_direct_messages(d, &s);
            break;

        case NGX_AILINK_DIRECT_MAX_TOKENS:
            rc = ngx_ailink_direct_number(&s, &max_tokens, 1);
            break;

        case NGX_AILINK_DIRECT_MAX_COMPL:
            rc = ngx_ailink_direct_number(&s, &d->max_tokens, 1);
            break;

        case NGX_AILINK_DIRECT_TEMPERATURE:
            rc = ngx_ailink_direct_number(&s, &d->temperature, 0);
            break;

        case NGX_AILINK_DIRECT_TOP_P:
            rc = ngx_ailink_direct_number(&s, &d->top_p, 0);
            break;

        case NGX_AILINK_DIRECT_STREAM:
            rc = ngx_ailink_direct_bool(&s, &flag);
            d->stream = flag;
            break;

        default: /* NGX_AILINK_DIRECT_STREAM_OPTS */
            rc = ngx_ailink_direct_stream_options(d, &s);
        }

        if (rc != NGX_OK) {
            return rc;
        }

        rc = ngx_ailink_direct_next(&s, '}');

    } while (rc == NGX_AGAIN);

    if (rc != NGX_OK) {
        return NGX_DECLINED;
    }

    ngx_ailink_scan_space(&s);

    if (s.p != s.last
        || (seen & (NGX_AILINK_DIRECT_MODEL|NGX_AILINK_DIRECT_MESSAGES))
           != (NGX_AILINK_DIRECT_MODEL|NGX_AILINK_DIRECT_MESSAGES))
    {
        return NGX_DECLINED;
    }

    /* max_completion_tokens wins, as in both translators */
    if (d->max_tokens.len == 0) {
        d->max_tokens = max_tokens;
    }

    return NGX_OK;
}


/* s over text, past the opening brace of the object it must be */

static ngx_int_t
ngx_ailink_direct_open(ngx_ailink_scan_t *s, ngx_str_t *text)
{
    ngx_memzero(s, sizeof(ngx_ailink_scan_t));
    s->p = text->data;
    s->last = text->data + text->len;

    ngx_ailink_scan_space(s);

    if (s->p == s->last || *s->p != '{') {
        return NGX_DECLINED;
    }

    s->p++;
    ngx_ailink_scan_space(s);

    return NGX_OK;
}


static ngx_uint_t
ngx_ailink_direct_lookup(ngx_ailink_direct_key_t *keys, ngx_str_t *name)
{
    for ( /* void */ ; keys->name.len; keys++) {
        if (keys->name.len == name->len
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
    if (*s->p != 't' && *s->p != 'f') {
        return NGX_DECLINED;
    }

    *value = (*s->p == 't');

    return (ngx_ailink_scan_literal(s) == NGX_OK) ? NGX_OK : NGX_DECLINED;
}


/* {"include_usage": true|false}, or {} */

static ngx_int_t
ngx_ailink_direct_stream_options(ngx_ailink_direct_t *d,
    ngx_ailink_scan_t *s)
{
    ngx_int_t   rc;
    ngx_str_t   key;
    ngx_uint_t  flag;

    if (*s->p != '{') {
        return NGX_DECLINED;
    }

    s->p++;
    ngx_ailink_scan_space(s);

    if (s->p < s->last && *s->p == '}') {
        s->p++;
        return NGX_OK;
    }

    if (ngx_ailink_direct_key(s, &key) != NGX_OK
        || key.len != sizeof("include_usage") - 1
        || ngx_memcmp(key.data, "include_usage", key.len) != 0
        || ngx_ailink_direct_bool(s, &flag) != NGX_OK)
    {
        return NGX_DECLINED;
    }

    d->include_usage = flag;

    rc = ngx_ailink_direct_next(s, '}');

    return (rc == NGX_OK) ? NGX_OK : NGX_DECLINED;
}


static ngx_int_t
ngx_ailink_direct_messages(ngx_ailink_direct_t *d, ngx_ailink_scan_t *s)
{
    ngx_int_t  rc;

    if (*s->p != '[') {
        return NGX_DECLINED;
    }

    s->p++;
    ngx_ailink_scan_space(s);

    do {
        rc = ngx_ailink_direct_message(d, s);

        if (rc != NGX_OK) {
            return rc;
        }

        rc = ngx_ailink_direct_next(s, ']');

    } while (rc == NGX_AGAIN);

    return rc;
}


/*
 * {"role": "...", "content": "..."}, in either order.  Content may be a
 * list of text parts: each is kept as a message of the same role, which
 * both translators make the same turn of (consecutive messages of a role
 * are one turn, a part's text one block or part, empty ones left out).
 */

static ngx_int_t
ngx_ailink_direct_message(ngx_ailink_direct_t *d, ngx_ailink_scan_t *s)
{
    ngx_int_t                 rc, role;
    ngx_str_t                 key, value;
    ngx_uint_t                seen, bit, escaped, first, i;
    ngx_ailink_direct_msg_t  *m;

    if (s->p == s->last || *s->p != '{') {
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
 * {"model":..,"system":[blocks],"messages":[turns],"max_tokens":..,
 * "temperature":..,"top_p":..,"stream":true}: consecutive messages of
 * one role are one turn, empty texts are left out, as the tree does.
 */

static u_char *
ngx_ailink_direct_anthropic(ngx_ailink_direct_t *d, ngx_ailink_xreq_t *x,
    u_char *p)
{
    ngx_uint_t                i, role, sys;
    ngx_ailink_direct_msg_t  *m;
    static u_char             block[] = "{\"type\":\"text\",\"text\":\"";

    m = d->messages.elts;

    p = ngx_cpymem(p, "{\"model\":\"", sizeof("{\"model\":\"") - 1);
    p = ngx_cpymem(p, x->model.data, x->model.len);
    *p++ = '"';

    sys = 0;

    for (i = 0; i < d->messages.nelts; i++) {
        if (m[i].role != NGX_AILINK_DIRECT_SYSTEM || m[i].len == 0) {
            continue;
        }

        p = sys++ ? ngx_cpymem(p, ",", 1)
                  : ngx_cpymem(p, ",\"system\":[", sizeof(",\"system\":[") - 1);
        p = ngx_cpymem(p, block, sizeof(block) - 1);

        p = ngx_ailink_direct_text(p, &m[i]);
        if (p == NULL) {
            return NULL;
        }

        p = ngx_cpymem(p, "\"}", 2);
    }

    if (sys) {
        *p++ = ']';
    }

    p = ngx_cpymem(p, ",\"messages\":[", sizeof(",\"messages\":[") - 1);
    role = NGX_AILINK_DIRECT_SYSTEM;

    for (i = 0; i < d->messages.nelts; i++) {
        if (m[i].role == NGX_AILINK_DIRECT_SYSTEM || m[i].len == 0) {
            continue;
        }

        if (m[i].role == role) {
            *p++ = ',';

        } else {
            if (role != NGX_AILINK_DIRECT_SYSTEM) {
                p = ngx_cpymem(p, "]},", 3);
            }

            role = m[i].role;
            p = (role == NGX_AILINK_DIRECT_USER)
                ? ngx_cpymem(p, "{\"role\":\"user\",\"content\":[",
                             sizeof("{\"role\":\"user\",\"content\":[") - 1)
                : ngx_cpymem(p, "{\"role\":\"assistant\",\"content\":[",
                             sizeof("{\"role\":\"assistant\",\"content\":[")
                             - 1);
        }

        p = ngx_cpymem(p, block, sizeof(block) - 1);

        p = ngx_ailink_direct_text(p, &m[i]);
        if (p == NULL) {
            return NULL;
        }

        p = ngx_cpymem(p, "\"}", 2);
    }

    p = ngx_cpymem(p, "]}],\"max_tokens\":", sizeof("]}],\"max_tokens\":") - 1);

    if (d->max_tokens.len) {
        p = ngx_cpymem(p, d->max_tokens.data, d->max_tokens.len);

    } else {
        p = ngx_sprintf(p, "%ui", x->provider->max_tokens
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
    char                     *sep;
    ngx_uint_t                i, role, sys;
    ngx_ailink_direct_msg_t  *m;

    m = d->messages.elts;

    p = ngx_cpymem(p, "{\"contents\":[", sizeof("{\"contents\":[") - 1);
    role = NGX_AILINK_DIRECT_SYSTEM;
    sys = 0;

    for (i = 0; i < d->messages.nelts; i++) {
        if (m[i].len == 0) {
            continue;
        }

        if (m[i].role == NGX_AILINK_DIRECT_SYSTEM) {
            sys++;
            continue;
        }

        if (m[i].role == role) {
            *p++ = ',';

        } else {
            if (role != NGX_AILINK_DIRECT_SYSTEM) {
                p = ngx_cpymem(p, "]},", 3);
            }

            role = m[i].role;
            p = (role == NGX_AILINK_DIRECT_USER)
                ? ngx_cpymem(p, "{\"role\":\"user\",\"parts\":[",
                             sizeof("{\"role\":\"user\",\"parts\":[") - 1)
                : ngx_cpymem(p, "{\"role\":\"model\",\"parts\":[",
                             sizeof("{\"role\":\"model\",\"parts\":[") - 1);
        }

        p = ngx_cpymem(p, "{\"text\":\"", sizeof("{\"text\":\"") - 1);

        p = ngx_ailink_direct_text(p, &m[i]);
        if (p == NULL) {
            return NULL;
        }

        p = ngx_cpymem(p, "\"}", 2);
    }

    p = ngx_cpymem(p, "]}]", 3);

    if (sys) {
        p = ngx_cpymem(p, ",\"systemInstruction\":{\"parts\":[",
                       sizeof(",\"systemInstruction\":{\"parts\":[") - 1);

        for (i = 0; i < d->messages.nelts; i++) {
            if (m[i].role != NGX_AILINK_DIRECT_SYSTEM || m[i].len == 0) {
                continue;
            }

            p = ngx_cpymem(p, "{\"text\":\"", sizeof("{\"text\":\"") - 1);

            p = ngx_ailink_direct_text(p, &m[i]);
            if (p == NULL) {
                return NULL;
            }

            p = ngx_cpymem(p, "\"}", 2);

            if (--sys) {
                *p++ = ',';
            }
        }

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
 * NGX_DECLINED, for the tree.
 */

#define NGX_AILINK_DIRECT_TYPE         0x01
#define NGX_AILINK_DIRECT_BLOCKS       0x02
#define NGX_AILINK_DIRECT_REASON       0x04
#define NGX_AILINK_DIRECT_USAGE        0x08

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


static ngx_int_t ngx_ailink_direct_usage(ngx_ailink_direct_resp_t *dr,
    ngx_ailink_scan_t *s, ngx_ailink_direct_key_t *names);
static ngx_int_t ngx_ailink_direct_completion(ngx_ailink_xresp_t *x,
    ngx_ailink_direct_resp_t *dr, const char *finish,
    ngx_ailink_usage_t *usage, ngx_str_t *out);
static ngx_int_t ngx_ailink_direct_candidates(ngx_ailink_direct_resp_t *dr,
    ngx_ailink_scan_t *s);
static ngx_int_t ngx_ailink_direct_gemini_content(
    ngx_ailink_direct_resp_t *dr, ngx_ailink_scan_t *s);
static u_char *ngx_ailink_direct_usage_print(u_char *p,
    ngx_ailink_usage_t *usage);


static ngx_ailink_direct_key_t  ngx_ailink_direct_anthropic_members[] = {
    { ngx_string("type"), NGX_AILINK_DIRECT_TYPE },
    { ngx_string("content"), NGX_AILINK_DIRECT_BLOCKS },
    { ngx_string("stop_reason"), NGX_AILINK_DIRECT_REASON },
    { ngx_string("usage"), NGX_AILINK_DIRECT_USAGE },
    { ngx_null_string, 0 }
};


static ngx_ailink_direct_key_t  ngx_ailink_direct_gemini_members[] = {
    { ngx_string("candidates"), NGX_AILINK_DIRECT_BLOCKS },
    { ngx_string("usageMetadata"), NGX_AILINK_DIRECT_USAGE },
    { ngx_null_string, 0 }
};


/* in ngx_ailink_gemini_usage_set()'s order */
static ngx_ailink_direct_key_t  ngx_ailink_direct_gemini_counts[] = {
    { ngx_string("promptTokenCount"), 1 },
    { ngx_string("toolUsePromptTokenCount"), 2 },
    { ngx_string("candidatesTokenCount"), 3 },
    { ngx_string("thoughtsTokenCount"), 4 },
    { ngx_string("totalTokenCount"), 5 },
    { ngx_string("cachedContentTokenCount"), 6 },
    { ngx_null_string, 0 }
};


static ngx_ailink_direct_key_t  ngx_ailink_direct_anthropic_counts[] = {
    { ngx_string("input_tokens"), NGX_AILINK_DIRECT_INPUT + 1 },
    { ngx_string("cache_read_input_tokens"), NGX_AILINK_DIRECT_CACHE_READ + 1 },
    { ngx_string("cache_creation_input_tokens"),
      NGX_AILINK_DIRECT_CACHE_WRITE + 1 },
    { ngx_string("output_tokens"), NGX_AILINK_DIRECT_OUTPUT + 1 },
    { ngx_null_string, 0 }
};


/* an OpenAI completion in out, "\n" ended; NGX_DECLINED for the tree */

ngx_int_t
ngx_ailink_direct_anthropic_response(ngx_ailink_xresp_t *x, ngx_str_t *text,
    ngx_str_t *out)
{
    ngx_int_t                  rc;
    ngx_str_t                  key, value;
    ngx_uint_t                 seen, bit, escaped;
    ngx_ailink_scan_t          s;
    ngx_ailink_direct_resp_t   dr;

    ngx_memzero(&dr, sizeof(ngx_ailink_direct_resp_t));

    if (ngx_array_init(&dr.texts, x->pool, 4, sizeof(ngx_ailink_direct_msg_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_ailink_direct_open(&s, text) != NGX_OK) {
        return NGX_DECLINED;
    }

    seen = 0;

    do {
        if (ngx_ailink_direct_key(&s, &key) != NGX_OK) {
            return NGX_DECLINED;
        }

        bit = ngx_ailink_direct_lookup(ngx_ailink_direct_anthropic_members,
                                       &key);

        if (seen & bit) {
            /* the tree reads the first of duplicates */
            return NGX_DECLINED;
        }

        seen |= bit;

        switch (bit) {

        case NGX_AILINK_DIRECT_TYPE:
            rc = ngx_ailink_direct_string(&s, &value, &escaped);

            if (rc == NGX_OK
                && (escaped || value.len != sizeof("message") - 1
                    || ngx_memcmp(value.data, "message", value.len) != 0))
            {
                rc = NGX_DECLINED;
            }

            break;

        case NGX_AILINK_DIRECT_BLOCKS:
            rc = ngx_ailink_direct_text_list(&dr.texts, &dr.text_len, &s, 0);
            break;

        case NGX_AILINK_DIRECT_REASON:
            if (*s.p == 'n') {
                rc = (ngx_ailink_scan_literal(&s) == NGX_OK) ? NGX_OK
                                                             : NGX_DECLINED;
                break;
            }

            rc = ngx_ailink_direct_string(&s, &dr.reason, &escaped);

            if (rc == NGX_OK && escaped) {
                rc = NGX_DECLINED;
            }

            break;

        case NGX_AILINK_DIRECT_USAGE:
            rc = ngx_ailink_direct_usage(&dr, &s,
                                         ngx_ailink_direct_anthropic_counts);
            break;

        default:
            rc = (ngx_ailink_scan_skip(&s) == NGX_OK) ? NGX_OK : NGX_DECLINED;
        }

        if (rc != NGX_OK) {
            return rc;
        }

        rc = ngx_ailink_direct_next(&s, '}');

    } while (rc == NGX_AGAIN);

    if (rc != NGX_OK) {
        return NGX_DECLINED;
    }

    ngx_ailink_scan_space(&s);

    if (s.p != s.last
        || (seen & (NGX_AILINK_DIRECT_TYPE|NGX_AILINK_DIRECT_BLOCKS))
           != (NGX_AILINK_DIRECT_TYPE|NGX_AILINK_DIRECT_BLOCKS))
    {
        return NGX_DECLINED;
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
 * A Gemini answer of one candidate whose parts are text (thought
 * signatures and other members passed over): the same completion.  Thought
 * summaries, function calls, log probabilities, several candidates and a
 * blocked prompt are NGX_DECLINED.
 */

ngx_int_t
ngx_ailink_direct_gemini_response(ngx_ailink_xresp_t *x, ngx_str_t *text,
    ngx_str_t *out)
{
    ngx_int_t                  rc;
    ngx_str_t                  key;
    ngx_uint_t                 seen, bit;
    ngx_ailink_scan_t          s;
    ngx_ailink_direct_resp_t   dr;

    ngx_memzero(&dr, sizeof(ngx_ailink_direct_resp_t));

    if (ngx_array_init(&dr.texts, x->pool, 4, sizeof(ngx_ailink_direct_msg_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_ailink_direct_open(&s, text) != NGX_OK) {
        return NGX_DECLINED;
    }

    seen = 0;

    do {
        if (ngx_ailink_direct_key(&s, &key) != NGX_OK) {
            return NGX_DECLINED;
        }

        bit = ngx_ailink_direct_lookup(ngx_ailink_direct_gemini_members,
                                       &key);

        if (seen & bit) {
            return NGX_DECLINED;
        }

        seen |= bit;

        switch (bit) {

        case NGX_AILINK_DIRECT_BLOCKS:
            rc = ngx_ailink_direct_candidates(&dr, &s);
            break;

        case NGX_AILINK_DIRECT_USAGE:
            rc = ngx_ailink_direct_usage(&dr, &s,
                                         ngx_ailink_direct_gemini_counts);
            break;

        default:
            rc = (ngx_ailink_scan_skip(&s) == NGX_OK) ? NGX_OK : NGX_DECLINED;
        }

        if (rc != NGX_OK) {
            return rc;
        }

        rc = ngx_ailink_direct_next(&s, '}');

    } while (rc == NGX_AGAIN);

    ngx_ailink_scan_space(&s);

    if (rc != NGX_OK || s.p != s.last || !(seen & NGX_AILINK_DIRECT_BLOCKS)) {
        return NGX_DECLINED;
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


/* [{"content": {"parts": [...]}, "finishReason": "...", ...}]: one */

static ngx_int_t
ngx_ailink_direct_candidates(ngx_ailink_direct_resp_t *dr,
    ngx_ailink_scan_t *s)
{
    ngx_int_t   rc;
    ngx_str_t   key;
    ngx_uint_t  seen, escaped;

    if (*s->p != '[') {
        return NGX_DECLINED;
    }

    s->p++;
    ngx_ailink_scan_space(s);

    if (s->p == s->last || *s->p != '{') {
        /* none: a blocked prompt */
        return NGX_DECLINED;
    }

    s->p++;
    ngx_ailink_scan_space(s);

    if (s->p < s->last && *s->p == '}') {
        s->p++;
        return (ngx_ailink_direct_next(s, ']') == NGX_OK) ? NGX_OK
                                                          : NGX_DECLINED;
    }

    seen = 0;

    do {
        if (ngx_ailink_direct_key(s, &key) != NGX_OK) {
            return NGX_DECLINED;
        }

        if (key.len == 7 && ngx_memcmp(key.data, "content", 7) == 0) {
            if (seen & NGX_AILINK_DIRECT_CONTENT) {
                return NGX_DECLINED;
            }

            seen |= NGX_AILINK_DIRECT_CONTENT;
            rc = ngx_ailink_direct_gemini_content(dr, s);

        } else if (key.len == 12
                   && ngx_memcmp(key.data, "finishReason", 12) == 0)
        {
            if (seen & NGX_AILINK_DIRECT_REASON) {
                return NGX_DECLINED;
            }

            seen |= NGX_AILINK_DIRECT_REASON;

            if (*s->p == 'n') {
                rc = (ngx_ailink_scan_literal(s) == NGX_OK) ? NGX_OK
                                                            : NGX_DECLINED;

            } else {
                rc = ngx_ailink_direct_string(s, &dr->reason, &escaped);

                if (rc == NGX_OK && escaped) {
                    rc = NGX_DECLINED;
                }
            }

        } else if (key.len == 14
                   && ngx_memcmp(key.data, "logprobsResult", 14) == 0)
        {
            return NGX_DECLINED;

        } else {
            /* index, safetyRatings, avgLogprobs, citationMetadata */
            rc = (ngx_ailink_scan_skip(s) == NGX_OK) ? NGX_OK : NGX_DECLINED;
        }

        if (rc != NGX_OK) {
            return rc;
        }

        rc = ngx_ailink_direct_next(s, '}');

    } while (rc == NGX_AGAIN);

    /* the one candidate, and the end of the list */
    if (rc != NGX_OK || ngx_ailink_direct_next(s, ']') != NGX_OK) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * {"parts": [{"text": "..."}, ...], "role": "model"}: a part's text is
 * the answer's unless the part is a thought; a part with a function call
 * is the tree's
 */

static ngx_int_t
ngx_ailink_direct_gemini_content(ngx_ailink_direct_resp_t *dr,
    ngx_ailink_scan_t *s)
{
    ngx_int_t                 rc;
    ngx_str_t                 key, value;
    ngx_uint_t                parts, escaped, seen;
    ngx_ailink_direct_msg_t  *m;

    if (*s->p != '{') {
        return NGX_DECLINED;
    }

    s->p++;
    ngx_ailink_scan_space(s);

    if (s->p < s->last && *s->p == '}') {
        s->p++;
        return NGX_OK;
    }

    parts = 0;

    do {
        if (ngx_ailink_direct_key(s, &key) != NGX_OK) {
            return NGX_DECLINED;
        }

        if (!(key.len == 5 && ngx_memcmp(key.data, "parts", 5) == 0)) {
            rc = (ngx_ailink_scan_skip(s) == NGX_OK) ? NGX_OK : NGX_DECLINED;
            goto next;
        }

        if (parts++ || *s->p != '[') {
            return NGX_DECLINED;
        }

        s->p++;
        ngx_ailink_scan_space(s);

        if (s->p < s->last && *s->p == ']') {
            s->p++;
            rc = NGX_OK;
            goto next;
        }

        do {
            if (s->p == s->last || *s->p != '{') {
                return NGX_DECLINED;
            }

            s->p++;
            ngx_ailink_scan_space(s);

            if (s->p < s->last && *s->p == '}') {
                s->p++;
                rc = ngx_ailink_direct_next(s, ']');
                continue;
            }

            m = NULL;
            seen = 0;

            do {
                if (ngx_ailink_direct_key(s, &key) != NGX_OK) {
                    return NGX_DECLINED;
                }

                if (key.len == 4 && ngx_memcmp(key.data, "text", 4) == 0) {
                    if (m || ngx_ailink_direct_string(s, &value, &escaped)
                             != NGX_OK
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

                    /* "" is text too: content "" rather than null */
                    dr->text = 1;
                    dr->text_len += value.len;

                } else if (key.len == 7
                           && ngx_memcmp(key.data, "thought", 7) == 0)
                {
                    /* a summary of thoughts, "thought": true, is the tree's */
                    if ((seen & NGX_AILINK_DIRECT_ROLE) || *s->p != 'f'
                        || ngx_ailink_scan_literal(s) != NGX_OK)
                    {
                        return NGX_DECLINED;
                    }

                    seen |= NGX_AILINK_DIRECT_ROLE;

                } else if (key.len == 12
                           && ngx_memcmp(key.data, "functionCall", 12) == 0)
                {
                    return NGX_DECLINED;

                } else if (ngx_ailink_scan_skip(s) != NGX_OK) {
                    return NGX_DECLINED;
                }

                rc = ngx_ailink_direct_next(s, '}');

            } while (rc == NGX_AGAIN);

            if (rc != NGX_OK) {
                return NGX_DECLINED;
            }

            rc = ngx_ailink_direct_next(s, ']');

        } while (rc == NGX_AGAIN);

    next:

        if (rc != NGX_OK) {
            return NGX_DECLINED;
        }

        rc = ngx_ailink_direct_next(s, '}');

    } while (rc == NGX_AGAIN);

    return (rc == NGX_OK) ? NGX_OK : NGX_DECLINED;
}


/*
 * [{"type": "text", "text": "..."}, ...], a message's content parts or an
 * answer's blocks: a record each in texts, their lengths added to *len.
 * Anything else in the list (images, files, tool use, citations, a
 * duplicate) is the tree's, and so is a text with "\u" or "\/" unless
 * "rewrite" (the answer's writer joins texts as they came).
 */

static ngx_int_t
ngx_ailink_direct_text_list(ngx_array_t *texts, size_t *len,
    ngx_ailink_scan_t *s, ngx_uint_t rewrite)
{
    ngx_int_t                 rc;
    ngx_str_t                 key, value;
    ngx_uint_t                seen, escaped;
    ngx_ailink_direct_msg_t  *m;

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
        if (s->p == s->last || *s->p != '{') {
            return NGX_DECLINED;
        }

        s->p++;
        ngx_ailink_scan_space(s);

        m = ngx_array_push(texts);
        if (m == NULL) {
            return NGX_ERROR;
        }

        seen = 0;

        do {
            if (ngx_ailink_direct_key(s, &key) != NGX_OK
                || ngx_ailink_direct_string(s, &value, &escaped) != NGX_OK)
            {
                return NGX_DECLINED;
            }

            if (key.len == 4 && ngx_memcmp(key.data, "type", 4) == 0
                && !(seen & NGX_AILINK_DIRECT_ROLE))
            {
                if (value.len != 4 || ngx_memcmp(value.data, "text", 4) != 0)
                {
                    return NGX_DECLINED;
                }

                seen |= NGX_AILINK_DIRECT_ROLE;

            } else if (key.len == 4 && ngx_memcmp(key.data, "text", 4) == 0
                       && !(seen & NGX_AILINK_DIRECT_CONTENT)
                       && (rewrite || !(escaped & NGX_AILINK_SCAN_REWRITE)))
            {
                m->text = value.data;
                m->len = value.len;
                m->escaped = escaped;
                seen |= NGX_AILINK_DIRECT_CONTENT;

            } else {
                return NGX_DECLINED;
            }

            rc = ngx_ailink_direct_next(s, '}');

        } while (rc == NGX_AGAIN);

        if (rc != NGX_OK
            || seen != (NGX_AILINK_DIRECT_ROLE|NGX_AILINK_DIRECT_CONTENT))
        {
            return NGX_DECLINED;
        }

        *len += m->len;

        rc = ngx_ailink_direct_next(s, ']');

    } while (rc == NGX_AGAIN);

    return (rc == NGX_OK) ? NGX_OK : NGX_DECLINED;
}


/*
 * {"input_tokens": N, ...}: the counts named in plain digits under 10^12
 * (the tree's cap), the rest passed over; null is no usage
 */

static ngx_int_t
ngx_ailink_direct_usage(ngx_ailink_direct_resp_t *dr, ngx_ailink_scan_t *s,
    ngx_ailink_direct_key_t *names)
{
    u_char      *p;
    ngx_int_t    rc;
    ngx_str_t    key, value;
    ngx_uint_t   k, n;

    if (*s->p == 'n') {
        return (ngx_ailink_scan_literal(s) == NGX_OK) ? NGX_OK : NGX_DECLINED;
    }

    if (*s->p != '{') {
        return NGX_DECLINED;
    }

    dr->usage = 1;

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

        k = ngx_ailink_direct_lookup(names, &key);

        if (k == 0) {
            if (ngx_ailink_scan_skip(s) != NGX_OK) {
                return NGX_DECLINED;
            }

        } else {
            k--;

            value.data = s->p;

            if ((dr->found & (1 << k))
                || ngx_ailink_scan_number(s) != NGX_OK)
            {
                return NGX_DECLINED;
            }

            value.len = s->p - value.data;

            if (value.len > 12 || (value.data[0] == '0' && value.len > 1)) {
                return NGX_DECLINED;
            }

            for (n = 0, p = value.data; p < s->p; p++) {
                if (*p < '0' || *p > '9') {
                    return NGX_DECLINED;
                }

                n = n * 10 + (*p - '0');
            }

            dr->counts[k] = n;
            dr->found |= 1 << k;
        }

        rc = ngx_ailink_direct_next(s, '}');

    } while (rc == NGX_AGAIN);

    return (rc == NGX_OK) ? NGX_OK : NGX_DECLINED;
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
