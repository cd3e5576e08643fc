
/*
 * Copyright (C) AILink
 *
 * Guardrails on streamed output.  The response filter hands over every
 * OpenAI chunk it sends (passed through or translated); each choice's
 * text (delta.content, and each tool call's delta arguments) is redacted
 * before it goes, across chunk boundaries:
 *
 *   per choice and part, the text of the events is joined to what the
 *   last event held back; what could still grow into a value (the last
 *   word, a run of digit groups before it, an open private key block,
 *   a value found that reaches into that tail) is held back again, the
 *   rest is redacted, restored if asked, and sent in this event
 *
 * Clean text is so delayed by one event at most (a word cut in two);
 * what is held is bounded (NGX_AILINK_GUARD_STREAM_WINDOW per part).  A
 * tail past the bound, or an event that cannot be read, is never passed
 * silently: the audit says so ("unchecked_window", "unchecked_event"),
 * or with ailink_guardrails_unchecked refuse the stream ends there with
 * an error event ("refused_window", "refused_event").  What is held goes
 * out at the choice's finish, before an error or usage event, or at the
 * end of the stream.
 *
 * Memory stays constant: each event's work is in a pool reset after it,
 * and the held tails have a fixed size.
 */


#include "ngx_ailink_guard.h"


#define NGX_AILINK_GUARD_STREAM_WINDOW   4096
#define NGX_AILINK_GUARD_STREAM_SLOTS    64
#define NGX_AILINK_GUARD_STREAM_GROUPS   64

/* a slot's part: a tool call's arguments (from 0), or these */
#define NGX_AILINK_GUARD_STREAM_CONTENT  -1     /* delta.content */
#define NGX_AILINK_GUARD_STREAM_TEXT     -2     /* a legacy choice's text */


typedef struct {
    ngx_int_t                   choice;
    ngx_int_t                   tool;       /* -1: the content */
    u_char                     *held;
    size_t                      len;
} ngx_ailink_guard_slot_t;


struct ngx_ailink_guard_stream_s {
    ngx_http_request_t         *request;
    ngx_ailink_guard_req_t     *gr;
    ngx_pool_t                 *temp;
    ngx_array_t                 slots;

    char                       *id;         /* of the first chunk */
    char                       *model;
    double                      created;

    unsigned                    refused:1;
    unsigned                    blocked:1;
    unsigned                    legacy:1;   /* /v1/completions chunks */
    unsigned                    observe:1;  /* shadow only: nothing sent
                                               changes */
};


static void ngx_ailink_guard_stream_cleanup(void *data);


ngx_int_t
ngx_ailink_guard_stream_start(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_ailink_guard_stream_t **gsp)
{
    ngx_pool_cleanup_t         *cln;
    ngx_ailink_guard_req_t     *gr;
    ngx_ailink_guard_stream_t  *gs;

    *gsp = NULL;
    gr = ctx->guard;

    if (gr == NULL || !ngx_ailink_guard_response_wanted(gr)) {
        return NGX_OK;
    }

    gs = ngx_pcalloc(r->pool, sizeof(ngx_ailink_guard_stream_t));
    if (gs == NULL) {
        return NGX_ERROR;
    }

    if (ngx_array_init(&gs->slots, r->pool, 2,
                       sizeof(ngx_ailink_guard_slot_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    gs->temp = ngx_create_pool(4096, r->connection->log);
    if (gs->temp == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_ailink_guard_stream_cleanup;
    cln->data = gs->temp;

    gs->request = r;
    gs->gr = gr;

    /* only shadow guardrails on the output: it is read, never changed */
    gs->observe = !((gr->guardrails & ~gr->shadow & NGX_AILINK_GUARD_PII)
                    && (gr->response_on || gr->restore))
                  && !(ngx_ailink_guard_customs(gr) & ~gr->shadow
                       && gr->response_on);

    gr->response = "checked";
    gr->session.in_response = 1;

    *gsp = gs;

    return NGX_OK;
}


static void
ngx_ailink_guard_stream_cleanup(void *data)
{
    ngx_destroy_pool(data);
}


/* the part of a text that can go now: what follows may still be a value */

static ngx_uint_t
ngx_ailink_guard_stream_space(u_char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}


static ngx_uint_t
ngx_ailink_guard_stream_sep(u_char c)
{
    return c == ' ' || c == '-' || c == '.' || c == '(' || c == ')'
           || c == '/' || c == '+';
}


static ngx_uint_t
ngx_ailink_guard_stream_alnum(u_char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
           || (c >= 'A' && c <= 'Z');
}


static size_t
ngx_ailink_guard_stream_hold(u_char *p, size_t len)
{
    u_char      *q, *last, *begin;
    size_t       h, k, g, n;
    ngx_uint_t   digit, upper;

    /* the last word, unless the text ends in white space */
    h = len;

    while (h > 0 && !ngx_ailink_guard_stream_space(p[h - 1])) {
        h--;
    }

    /* groups of digits before it (a card, a phone number, an SSN) or of
     * four capitals and digits (an IBAN), only while what is held has
     * digits or is none, and for NGX_AILINK_GUARD_STREAM_GROUPS bytes */
    digit = (h == len);

    for (k = h; k < len; k++) {
        if (p[k] >= '0' && p[k] <= '9') {
            digit = 1;
            break;
        }
    }

    while (digit) {
        k = h;
        n = 0;

        while (k > 0 && n < 3 && ngx_ailink_guard_stream_sep(p[k - 1])) {
            k--;
            n++;
        }

        g = k;
        digit = 1;
        upper = 1;

        while (g > 0 && ngx_ailink_guard_stream_alnum(p[g - 1])) {
            g--;

            if (p[g] < '0' || p[g] > '9') {
                digit = 0;
                upper &= (p[g] >= 'A' && p[g] <= 'Z');
            }
        }

        if (g == k || !(digit || (upper && k - g <= 4))
            || len - g > NGX_AILINK_GUARD_STREAM_GROUPS)
        {
            break;
        }

        digit = 1;
        h = g;
    }

    /* "+44 ...", "(415) ..." */
    while (h > 0 && h < len && (p[h - 1] == '+' || p[h - 1] == '(')) {
        h--;
    }

    /* a private key block not closed yet */
    begin = NULL;
    last = p + len;

    for (q = p; q < last; q++) {
        q = ngx_strlchr(q, last, '-');

        if (q == NULL) {
            break;
        }

        if ((size_t) (last - q) >= sizeof("-----BEGIN") - 1
            && ngx_strncmp(q, "-----BEGIN", sizeof("-----BEGIN") - 1) == 0)
        {
            begin = q;
            q += sizeof("-----BEGIN") - 2;

        } else if (begin
                   && (size_t) (last - q) >= sizeof("-----END") - 1
                   && ngx_strncmp(q, "-----END", sizeof("-----END") - 1)
                      == 0)
        {
            begin = NULL;
            q += sizeof("-----END") - 2;
        }
    }

    if (begin && (size_t) (begin - p) < h) {
        h = begin - p;
    }

    return h;
}


/*
 * Where the text that can go now ends (*h): before the tail that could
 * still grow into a value; a value found, or a custom guardrail's match
 * or partial match (PCRE2_PARTIAL_HARD), that reaches into that tail is
 * held whole.
 */

static ngx_int_t
ngx_ailink_guard_stream_tail(ngx_ailink_guard_stream_t *gs, u_char *p,
    size_t len, size_t *hp)
{
    size_t                     h, prev;
    ngx_str_t                  text;
    ngx_uint_t                 i, n, round, pii;
    ngx_ailink_guard_req_t    *gr;
    ngx_ailink_guard_match_t  *m;

    gr = gs->gr;
    pii = (gr->guardrails & NGX_AILINK_GUARD_PII) && gr->response_on;

    h = (pii || gr->restore) ? ngx_ailink_guard_stream_hold(p, len) : len;

    n = 0;
    m = NULL;

    if (pii && h > 0 && h < len) {
        text.data = p;
        text.len = len;

        if (ngx_ailink_guard_pii_find(gr->session.engine, gs->temp, &text,
                                      &m, &n)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    /* a few rounds: moving back may put the cut in another match */
    for (round = 0; round < 4; round++) {
        prev = h;

        for (i = 0; i < n; i++) {
            if (m[i].start < h && m[i].end > h) {
                h = m[i].start;
            }
        }

        if (gr->response_on
            && ngx_ailink_guard_custom_hold(gr, p, len, &h) != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (h == prev) {
            break;
        }
    }

    *hp = h;

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_guard_stream_refuse(ngx_ailink_guard_stream_t *gs,
    const char *refused, const char *unchecked)
{
    if (gs->gr->unchecked_refuse && !gs->observe) {
        gs->gr->response = refused;
        gs->refused = 1;

        ngx_log_error(NGX_LOG_WARN, gs->request->connection->log, 0,
                      "ailink guard: stream ended: %s", refused);

        return NGX_DECLINED;
    }

    gs->gr->response = unchecked;

    ngx_log_error(NGX_LOG_WARN, gs->request->connection->log, 0,
                  "ailink guard: stream output %s", unchecked);

    return NGX_OK;
}


/*
 * One part's text of this event: joined to what was held, the part that
 * can go redacted into out (in the temp pool, NUL-terminated), the rest
 * held.  NGX_DECLINED: refused.
 */

static ngx_int_t
ngx_ailink_guard_stream_text(ngx_ailink_guard_stream_t *gs,
    ngx_ailink_guard_slot_t *slot, ngx_str_t *in, ngx_uint_t final,
    ngx_str_t *out)
{
    u_char                  *p;
    size_t                   len, h;
    ngx_int_t                rc;
    ngx_str_t                text;
    ngx_ailink_guard_req_t  *gr;

    gr = gs->gr;
    len = slot->len + in->len;

    out->data = (u_char *) "";
    out->len = 0;

    if (len == 0) {
        return NGX_OK;
    }

    p = ngx_pnalloc(gs->temp, len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    /* no memcpy() from NULL, even of nothing */
    if (slot->len) {
        ngx_memcpy(p, slot->held, slot->len);
    }

    if (in->len) {
        ngx_memcpy(p + slot->len, in->data, in->len);
    }

    p[len] = '\0';

    if (final) {
        h = len;

    } else if (ngx_ailink_guard_stream_tail(gs, p, len, &h) != NGX_OK) {
        return NGX_ERROR;
    }

    if (len - h > NGX_AILINK_GUARD_STREAM_WINDOW) {
        rc = ngx_ailink_guard_stream_refuse(gs, "refused_window",
                                            "unchecked_window");
        if (rc != NGX_OK) {
            slot->len = 0;
            return rc;
        }

        h = len - NGX_AILINK_GUARD_STREAM_WINDOW;
    }

    if (slot->held == NULL && len > h) {
        slot->held = ngx_pnalloc(gs->request->pool,
                                 NGX_AILINK_GUARD_STREAM_WINDOW);
        if (slot->held == NULL) {
            return NGX_ERROR;
        }
    }

    slot->len = len - h;

    if (slot->len) {
        ngx_memcpy(slot->held, p + h, slot->len);
    }

    if (h == 0) {
        return NGX_OK;
    }

    p[h] = '\0';
    text.data = p;
    text.len = h;

    if (ngx_ailink_guard_output_text(gr, &text, out) != NGX_OK) {
        return NGX_ERROR;
    }

    if (gr->custom_blocked >= 0) {
        /* a custom guardrail blocks: nothing more of the stream goes */
        gr->response = "blocked";
        gs->refused = 1;
        gs->blocked = 1;
        slot->len = 0;

        ngx_log_error(NGX_LOG_WARN, gs->request->connection->log, 0,
                      "ailink guard: \"%V\" blocked the stream's output",
                      &gr->gc->customs[gr->custom_blocked].name);

        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_ailink_guard_slot_t *
ngx_ailink_guard_stream_slot(ngx_ailink_guard_stream_t *gs, ngx_int_t choice,
    ngx_int_t tool)
{
    ngx_uint_t                i;
    ngx_ailink_guard_slot_t  *slot;

    slot = gs->slots.elts;

    for (i = 0; i < gs->slots.nelts; i++) {
        if (slot[i].choice == choice && slot[i].tool == tool) {
            return &slot[i];
        }
    }

    if (gs->slots.nelts == NGX_AILINK_GUARD_STREAM_SLOTS) {
        return NULL;
    }

    slot = ngx_array_push(&gs->slots);
    if (slot == NULL) {
        return NULL;
    }

    slot->choice = choice;
    slot->tool = tool;
    slot->held = NULL;
    slot->len = 0;

    return slot;
}


/* obj.key = s (a copy, as cJSON's own), replacing or added */

static ngx_int_t
ngx_ailink_guard_stream_put(cJSON *obj, const char *key, ngx_str_t *s)
{
    cJSON  *item;

    item = cJSON_CreateString((char *) s->data);
    if (item == NULL) {
        return NGX_ERROR;
    }

    if (cJSON_GetObjectItemCaseSensitive(obj, key)) {
        if (!cJSON_ReplaceItemInObjectCaseSensitive(obj, key, item)) {
            cJSON_Delete(item);
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (!cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* one string of a delta (content, arguments) through its slot */

static ngx_int_t
ngx_ailink_guard_stream_item(ngx_ailink_guard_stream_t *gs, cJSON *parent,
    const char *key, ngx_int_t choice, ngx_int_t tool, ngx_uint_t final)
{
    cJSON                    *item;
    ngx_int_t                 rc;
    ngx_str_t                 in, out;
    ngx_ailink_guard_slot_t  *slot;

    item = ngx_ailink_json_get(parent, key);

    if (item == NULL || cJSON_IsNull(item)) {
        return NGX_OK;
    }

    if (!cJSON_IsString(item)) {
        /* text in a shape not read (parts, a number): not passed as if
         * it had been checked */
        return ngx_ailink_guard_stream_refuse(gs, "refused_event",
                                              "unchecked_event");
    }

    slot = ngx_ailink_guard_stream_slot(gs, choice, tool);

    if (slot == NULL) {
        /* more parts than are followed: sent as it is, or refused */
        return ngx_ailink_guard_stream_refuse(gs, "refused_window",
                                              "unchecked_window");
    }

    in.data = (u_char *) item->valuestring;
    in.len = ngx_strlen(item->valuestring);

    rc = ngx_ailink_guard_stream_text(gs, slot, &in, final, &out);
    if (rc != NGX_OK) {
        return rc;
    }

    if (gs->observe
        || (out.len == in.len && ngx_memcmp(out.data, in.data, in.len) == 0))
    {
        return NGX_OK;
    }

    return ngx_ailink_guard_stream_put(parent, key, &out);
}


/* what a choice holds, added to its finishing chunk */

static ngx_int_t
ngx_ailink_guard_stream_finish(ngx_ailink_guard_stream_t *gs, cJSON *choice,
    ngx_int_t index)
{
    cJSON                    *delta, *calls, *call, *fn;
    ngx_int_t                 rc;
    ngx_str_t                 none, out;
    ngx_uint_t                i;
    ngx_ailink_guard_slot_t  *slot;

    ngx_str_null(&none);
    slot = gs->slots.elts;

    for (i = 0; i < gs->slots.nelts; i++) {
        if (slot[i].choice != index || slot[i].len == 0) {
            continue;
        }

        rc = ngx_ailink_guard_stream_text(gs, &slot[i], &none, 1, &out);
        if (rc != NGX_OK) {
            return rc;
        }

        if (gs->observe) {
            continue;
        }

        if (slot[i].tool == NGX_AILINK_GUARD_STREAM_TEXT) {
            if (ngx_ailink_guard_stream_put(choice, "text", &out) != NGX_OK) {
                return NGX_ERROR;
            }

            continue;
        }

        delta = ngx_ailink_json_get(choice, "delta");

        if (!cJSON_IsObject(delta)) {
            delta = cJSON_CreateObject();
            if (delta == NULL) {
                return NGX_ERROR;
            }

            if (cJSON_GetObjectItemCaseSensitive(choice, "delta")) {
                cJSON_ReplaceItemInObjectCaseSensitive(choice, "delta",
                                                       delta);

            } else {
                cJSON_AddItemToObject(choice, "delta", delta);
            }
        }

        if (slot[i].tool == NGX_AILINK_GUARD_STREAM_CONTENT) {
            if (ngx_ailink_guard_stream_put(delta, "content", &out)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            continue;
        }

        calls = ngx_ailink_json_get(delta, "tool_calls");

        if (!cJSON_IsArray(calls)) {
            calls = cJSON_AddArrayToObject(delta, "tool_calls");
            if (calls == NULL) {
                return NGX_ERROR;
            }
        }

        call = cJSON_CreateObject();
        if (call == NULL) {
            return NGX_ERROR;
        }

        cJSON_AddItemToArray(calls, call);
        cJSON_AddNumberToObject(call, "index", (double) slot[i].tool);
        fn = cJSON_AddObjectToObject(call, "function");

        if (fn == NULL
            || ngx_ailink_guard_stream_put(fn, "arguments", &out) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_guard_stream_choice(ngx_ailink_guard_stream_t *gs, cJSON *choice,
    ngx_int_t index)
{
    cJSON       *delta, *finish, *calls, *call, *at;
    ngx_int_t    rc, tool;
    ngx_uint_t   final, k;

    finish = ngx_ailink_json_get(choice, "finish_reason");
    final = (finish != NULL && !cJSON_IsNull(finish));
    delta = ngx_ailink_json_get(choice, "delta");

    /* a legacy /v1/completions choice: its text */
    rc = ngx_ailink_guard_stream_item(gs, choice, "text", index,
                                      NGX_AILINK_GUARD_STREAM_TEXT, final);
    if (rc != NGX_OK) {
        return rc;
    }

    if (delta != NULL && !cJSON_IsNull(delta) && !cJSON_IsObject(delta)) {
        rc = ngx_ailink_guard_stream_refuse(gs, "refused_event",
                                            "unchecked_event");
        if (rc != NGX_OK) {
            return rc;
        }
    }

    if (cJSON_IsObject(delta)) {
        rc = ngx_ailink_guard_stream_item(gs, delta, "content", index,
                                          NGX_AILINK_GUARD_STREAM_CONTENT,
                                          final);
        if (rc != NGX_OK) {
            return rc;
        }

        calls = ngx_ailink_json_get(delta, "tool_calls");
        k = 0;

        if (cJSON_IsArray(calls)) {
            cJSON_ArrayForEach(call, calls) {
                at = ngx_ailink_json_get(call, "index");
                tool = cJSON_IsNumber(at) ? (ngx_int_t) at->valuedouble
                                          : (ngx_int_t) k;
                k++;

                rc = ngx_ailink_guard_stream_item(gs,
                                        ngx_ailink_json_get(call, "function"),
                                        "arguments", index, tool, final);
                if (rc != NGX_OK) {
                    return rc;
                }
            }
        }
    }

    if (final) {
        return ngx_ailink_guard_stream_finish(gs, choice, index);
    }

    return NGX_OK;
}


/* a chunk of what is still held, made like the stream's own */

static ngx_int_t
ngx_ailink_guard_stream_flush(ngx_ailink_guard_stream_t *gs,
    ngx_ailink_guard_emit_pt emit, void *data)
{
    cJSON                    *chunk, *choices, *choice;
    ngx_int_t                 rc;
    ngx_uint_t                i;
    ngx_ailink_guard_slot_t  *slot;

    slot = gs->slots.elts;

    for (i = 0; i < gs->slots.nelts; i++) {
        if (slot[i].len == 0) {
            continue;
        }

        /* a choice at a time, all it holds */
        chunk = cJSON_CreateObject();
        if (chunk == NULL) {
            return NGX_ERROR;
        }

        cJSON_AddStringToObject(chunk, "id", gs->id ? gs->id : "");
        cJSON_AddStringToObject(chunk, "object",
                                gs->legacy ? "text_completion"
                                           : "chat.completion.chunk");
        cJSON_AddNumberToObject(chunk, "created", gs->created);
        cJSON_AddStringToObject(chunk, "model", gs->model ? gs->model : "");
        choices = cJSON_AddArrayToObject(chunk, "choices");
        choice = cJSON_CreateObject();

        if (choices == NULL || choice == NULL) {
            cJSON_Delete(choice);
            cJSON_Delete(chunk);
            return NGX_ERROR;
        }

        cJSON_AddItemToArray(choices, choice);
        cJSON_AddNumberToObject(choice, "index", (double) slot[i].choice);

        if (!gs->legacy) {
            cJSON_AddObjectToObject(choice, "delta");
        }

        rc = ngx_ailink_guard_stream_finish(gs, choice, slot[i].choice);

        if (rc == NGX_OK && !gs->observe) {
            cJSON_AddNullToObject(choice, "finish_reason");
            rc = emit(data, chunk);
        }

        cJSON_Delete(chunk);

        if (rc != NGX_OK) {
            return rc;
        }
    }

    return NGX_OK;
}


/*
 * A chunk about to be sent: its texts redacted in place.  NGX_DECLINED:
 * not to be sent (the stream was refused); the caller ends the stream.
 */

ngx_int_t
ngx_ailink_guard_stream_chunk(ngx_ailink_guard_stream_t *gs, cJSON *chunk,
    ngx_ailink_guard_emit_pt emit, void *data)
{
    cJSON       *choices, *choice, *at, *item;
    ngx_int_t    rc, index;
    ngx_str_t    s;

    choices = ngx_ailink_json_get(chunk, "choices");

    if (gs->refused) {
        /* after a refusal only the error event goes */
        return (cJSON_IsArray(choices) && cJSON_GetArraySize(choices))
               ? NGX_DECLINED : NGX_OK;
    }

    if (!cJSON_IsArray(choices) || cJSON_GetArraySize(choices) == 0) {
        /* an error, the usage: what is held goes first */
        rc = ngx_ailink_guard_stream_flush(gs, emit, data);
        goto done;
    }

    if (gs->id == NULL) {
        item = ngx_ailink_json_get(chunk, "id");
        gs->id = cJSON_IsString(item) ? item->valuestring : "";
        s.data = (u_char *) gs->id;
        s.len = ngx_strlen(gs->id) + 1;
        gs->id = (char *) ngx_pstrdup(gs->request->pool, &s);

        item = ngx_ailink_json_get(chunk, "model");
        gs->model = cJSON_IsString(item) ? item->valuestring : "";
        s.data = (u_char *) gs->model;
        s.len = ngx_strlen(gs->model) + 1;
        gs->model = (char *) ngx_pstrdup(gs->request->pool, &s);

        item = ngx_ailink_json_get(chunk, "created");
        gs->created = cJSON_IsNumber(item) ? item->valuedouble : 0;

        item = ngx_ailink_json_get(chunk, "object");
        gs->legacy = cJSON_IsString(item)
                     && ngx_strcmp(item->valuestring, "text_completion") == 0;

        if (gs->id == NULL || gs->model == NULL) {
            return NGX_ERROR;
        }
    }

    rc = NGX_OK;
    index = 0;

    cJSON_ArrayForEach(choice, choices) {
        at = ngx_ailink_json_get(choice, "index");

        rc = ngx_ailink_guard_stream_choice(gs, choice,
                                            cJSON_IsNumber(at)
                                            ? (ngx_int_t) at->valuedouble
                                            : index);
        if (rc != NGX_OK) {
            break;
        }

        index++;
    }

done:

    ngx_reset_pool(gs->temp);

    return rc;
}


/* the stream's end ([DONE], or cut off): what is held goes out */

ngx_int_t
ngx_ailink_guard_stream_end(ngx_ailink_guard_stream_t *gs,
    ngx_ailink_guard_emit_pt emit, void *data)
{
    ngx_int_t  rc;

    if (gs->refused) {
        return NGX_OK;
    }

    rc = ngx_ailink_guard_stream_flush(gs, emit, data);

    ngx_reset_pool(gs->temp);

    return rc;
}


/* an event that is not a JSON chunk: audited, or the stream refused */

ngx_int_t
ngx_ailink_guard_stream_unreadable(ngx_ailink_guard_stream_t *gs)
{
    if (gs->refused) {
        return NGX_DECLINED;
    }

    return ngx_ailink_guard_stream_refuse(gs, "refused_event",
                                          "unchecked_event");
}


/*
 * An event larger than ailink_stream_event_max_size: the parser dropped
 * it, so the stream cannot go on checked; the caller ends it.  The audit
 * says so whatever ailink_guardrails_unchecked says (nothing unchecked
 * went out).  A stream only observed (shadow) passed it as it came.
 */

ngx_int_t
ngx_ailink_guard_stream_oversized(ngx_ailink_guard_stream_t *gs)
{
    if (gs->refused) {
        return NGX_DECLINED;
    }

    if (gs->observe) {
        gs->gr->response = "unchecked_event";
        return NGX_OK;
    }

    gs->refused = 1;
    gs->gr->response = "refused_event";

    return NGX_DECLINED;
}


/* only shadow guardrails read the output: it goes as the provider sent */

ngx_uint_t
ngx_ailink_guard_stream_observes(ngx_ailink_guard_stream_t *gs)
{
    return gs->observe;
}


/*
 * The error event that ends a stream a custom guardrail blocked, or NULL
 * when the stream was refused for another reason.
 */

cJSON *
ngx_ailink_guard_stream_blocked(ngx_ailink_guard_stream_t *gs,
    ngx_str_t *request_id)
{
    cJSON       *root, *err, *matches;
    ngx_str_t   *name;
    ngx_uint_t   ok;
    u_char       msg[NGX_MAX_ERROR_STR];
    u_char       id[64];

    if (!gs->blocked) {
        return NULL;
    }

    name = &gs->gr->gc->customs[gs->gr->custom_blocked].name;

    ngx_snprintf(msg, sizeof(msg) - 1,
                 "the response was blocked by the %V guardrail%Z", name);
    msg[sizeof(msg) - 1] = '\0';

    root = cJSON_CreateObject();
    err = cJSON_AddObjectToObject(root, "error");
    ok = (err != NULL);

    ok = ok && cJSON_AddStringToObject(err, "type", "permission_error");
    ok = ok && cJSON_AddStringToObject(err, "code", "content_blocked");
    ok = ok && cJSON_AddStringToObject(err, "message", (char *) msg);
    ok = ok && cJSON_AddNullToObject(err, "param");

    /* the name was checked at load: lowercase letters, digits, "_" */
    ngx_memcpy(msg, name->data, ngx_min(name->len, sizeof(msg) - 1));
    msg[ngx_min(name->len, sizeof(msg) - 1)] = '\0';

    ok = ok && cJSON_AddStringToObject(err, "guardrail", (char *) msg);
    matches = ok ? cJSON_AddArrayToObject(err, "matches") : NULL;
    ok = ok && matches != NULL;

    if (ok) {
        ok = cJSON_AddItemToArray(matches, cJSON_CreateString((char *) msg));
    }

    if (ok) {
        ngx_cpystrn(id, request_id->data,
                    ngx_min(request_id->len + 1, sizeof(id)));
        ok = (cJSON_AddStringToObject(err, "request_id", (char *) id)
              != NULL);
    }

    if (!ok) {
        cJSON_Delete(root);
        return NULL;
    }

    return root;
}
