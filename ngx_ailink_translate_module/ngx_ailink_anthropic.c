
/*
 * Copyright (C) AILink
 *
 * OpenAI chat.completions <-> Anthropic Messages.
 *
 * Requests: system and developer messages become the top-level "system"
 * blocks, consecutive turns of one role are merged (Anthropic wants strict
 * alternation), tool calls and tool results become tool_use and
 * tool_result blocks, and only the fields Anthropic knows are sent (it
 * rejects any other).  Responses and streams come back as OpenAI
 * chat.completion objects and chunks, tool calls and usage included.
 */


#include "ngx_ailink_translate.h"


/* what a stream keeps between events: constant size */
typedef struct {
    ngx_int_t                   block;      /* the open tool_use block, -1 */
    ngx_uint_t                  tool;       /* its OpenAI tool_calls index */
    ngx_uint_t                  tools;      /* tool_use blocks so far */
    unsigned                    args:1;     /* arguments sent for it */
    unsigned                    answer:1;   /* it is the answer tool */
    unsigned                    answered:1; /* the answer tool was used */
} ngx_ailink_anthropic_stream_t;


static ngx_int_t ngx_ailink_anthropic_add(cJSON *obj, const char *key,
    cJSON *item);
static ngx_int_t ngx_ailink_anthropic_push(cJSON *array, cJSON *item);
static cJSON *ngx_ailink_anthropic_text(cJSON *text, cJSON *cc);
static ngx_int_t ngx_ailink_anthropic_cache(cJSON *block, cJSON *cc);
static ngx_int_t ngx_ailink_anthropic_message(ngx_ailink_xreq_t *x,
    ngx_uint_t i, cJSON *msg, cJSON *system, cJSON *messages, cJSON **last);
static ngx_int_t ngx_ailink_anthropic_content(ngx_ailink_xreq_t *x,
    ngx_uint_t i, cJSON *content, cJSON *blocks, ngx_uint_t media);
static ngx_int_t ngx_ailink_anthropic_image(ngx_ailink_xreq_t *x,
    ngx_uint_t i, cJSON *part, cJSON *block);
static ngx_int_t ngx_ailink_anthropic_file(ngx_ailink_xreq_t *x,
    ngx_uint_t i, cJSON *part, cJSON *block);
static ngx_int_t ngx_ailink_anthropic_tool_calls(ngx_ailink_xreq_t *x,
    ngx_uint_t i, cJSON *calls, cJSON *blocks);
static ngx_int_t ngx_ailink_anthropic_tool_result(ngx_ailink_xreq_t *x,
    ngx_uint_t i, cJSON *msg, cJSON *blocks);
static cJSON *ngx_ailink_anthropic_tool_id(ngx_ailink_xreq_t *x, cJSON *id);
static ngx_int_t ngx_ailink_anthropic_tool_answers(ngx_ailink_xreq_t *x,
    ngx_uint_t i, cJSON *msgs, cJSON *msg);
static ngx_int_t ngx_ailink_anthropic_turn(cJSON *messages, cJSON **last,
    const char *role, cJSON *blocks);
static ngx_int_t ngx_ailink_anthropic_tools(ngx_ailink_xreq_t *x,
    cJSON *req, cJSON *out);
static ngx_int_t ngx_ailink_anthropic_tool_choice(ngx_ailink_xreq_t *x,
    cJSON *req, cJSON *out);
static ngx_int_t ngx_ailink_anthropic_params(ngx_ailink_xreq_t *x,
    cJSON *req, cJSON *out);
static const char *ngx_ailink_anthropic_finish(cJSON *reason);
static void ngx_ailink_anthropic_usage(ngx_ailink_usage_t *usage,
    cJSON *json);
static ngx_int_t ngx_ailink_anthropic_block_start(ngx_ailink_xstream_t *st,
    ngx_ailink_anthropic_stream_t *as, cJSON *json);
static ngx_int_t ngx_ailink_anthropic_block_delta(ngx_ailink_xstream_t *st,
    ngx_ailink_anthropic_stream_t *as, cJSON *json);
static ngx_int_t ngx_ailink_anthropic_block_stop(ngx_ailink_xstream_t *st,
    ngx_ailink_anthropic_stream_t *as, cJSON *json);
static ngx_int_t ngx_ailink_anthropic_content_delta(ngx_ailink_xstream_t *st,
    cJSON *text);
static ngx_int_t ngx_ailink_anthropic_tool_delta(ngx_ailink_xstream_t *st,
    ngx_uint_t index, cJSON *id, cJSON *name, const char *arguments);


#define ngx_ailink_anthropic_is(item, s)  ngx_ailink_json_is(item, s)

#define ngx_ailink_anthropic_event(name, s)                                   \
    ((name)->len == sizeof(s) - 1                                             \
     && ngx_strncmp((name)->data, s, sizeof(s) - 1) == 0)

/* what Anthropic allows in a tool id */
#define ngx_ailink_anthropic_id_char(c)                                       \
    (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z')                \
     || ((c) >= '0' && (c) <= '9') || (c) == '_' || (c) == '-')


cJSON *
ngx_ailink_anthropic_request(ngx_ailink_xreq_t *x, cJSON *req)
{
    cJSON       *out, *system, *messages, *msgs, *msg, *last, *first, *n;
    ngx_int_t    rc;
    ngx_uint_t   i;

    msgs = ngx_ailink_json_get(req, "messages");

    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0) {
        (void) ngx_ailink_xreq_refuse(x, "messages",
                                      "\"messages\" must be a "
                                      "non-empty array");
        return NULL;
    }

    n = ngx_ailink_json_get(req, "n");

    if (n && !cJSON_IsNull(n)
        && !(cJSON_IsNumber(n) && n->valuedouble == 1))
    {
        (void) ngx_ailink_xreq_refuse(x, "n",
                                      "Anthropic models return one "
                                      "choice: \"n\" must be 1");
        return NULL;
    }

    n = ngx_ailink_json_get(req, "top_logprobs");

    if (cJSON_IsTrue(ngx_ailink_json_get(req, "logprobs"))
        || (n && !cJSON_IsNull(n)))
    {
        (void) ngx_ailink_xreq_refuse(x, cJSON_IsTrue(
                                      ngx_ailink_json_get(req, "logprobs"))
                                      ? "logprobs" : "top_logprobs",
                                      "Anthropic models do not return "
                                      "log probabilities: \"logprobs\" "
                                      "and \"top_logprobs\" cannot be "
                                      "used");
        return NULL;
    }

    out = cJSON_CreateObject();
    if (out == NULL) {
        return NULL;
    }

    if (ngx_ailink_anthropic_add(out, "model",
                                 ngx_ailink_json_string(&x->model))
        != NGX_OK)
    {
        goto failed;
    }

    system = cJSON_CreateArray();
    messages = cJSON_CreateArray();

    if (ngx_ailink_anthropic_add(out, "system", system) != NGX_OK
        || ngx_ailink_anthropic_add(out, "messages", messages) != NGX_OK)
    {
        ngx_ailink_json_delete(messages);
        goto failed;
    }

    last = NULL;
    i = 0;

    cJSON_ArrayForEach(msg, msgs) {
        rc = ngx_ailink_anthropic_tool_answers(x, i, msgs, msg);

        if (rc == NGX_OK) {
            rc = ngx_ailink_anthropic_message(x, i, msg, system, messages,
                                              &last);
        }

        if (rc != NGX_OK) {
            goto failed;
        }

        i++;
    }

    first = cJSON_GetArrayItem(messages, 0);

    if (first == NULL) {
        (void) ngx_ailink_xreq_refuse(x, "messages",
                                      "\"messages\" has no user or "
                                      "assistant content");
        goto failed;
    }

    if (!ngx_ailink_anthropic_is(ngx_ailink_json_get(first, "role"), "user"))
    {
        (void) ngx_ailink_xreq_refuse(x, "messages",
                                      "the first non-system message "
                                      "must be from the user");
        goto failed;
    }

    if (cJSON_GetArraySize(system) == 0) {
        cJSON_DeleteItemFromObjectCaseSensitive(out, "system");
    }

    if (ngx_ailink_anthropic_params(x, req, out) != NGX_OK
        || ngx_ailink_anthropic_tools(x, req, out) != NGX_OK
        || ngx_ailink_anthropic_tool_choice(x, req, out) != NGX_OK
        || ngx_ailink_anthropic_structured(x, req, out) != NGX_OK
        || ngx_ailink_anthropic_thinking(x, req, out) != NGX_OK)
    {
        goto failed;
    }

    return out;

failed:

    ngx_ailink_json_delete(out);
    return NULL;
}


/* adds an item, or frees it: a tree never leaks a half-added item */

static ngx_int_t
ngx_ailink_anthropic_add(cJSON *obj, const char *key, cJSON *item)
{
    if (item == NULL) {
        return NGX_ERROR;
    }

    if (!cJSON_AddItemToObject(obj, key, item)) {
        ngx_ailink_json_delete(item);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_anthropic_push(cJSON *array, cJSON *item)
{
    if (item == NULL) {
        return NGX_ERROR;
    }

    if (!cJSON_AddItemToArray(array, item)) {
        ngx_ailink_json_delete(item);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* a prompt-caching marker stays on the block the client put it on */

static ngx_int_t
ngx_ailink_anthropic_cache(cJSON *block, cJSON *cc)
{
    if (cc == NULL || cJSON_IsNull(cc)
        || ngx_ailink_json_get(block, "cache_control"))
    {
        return NGX_OK;
    }

    return ngx_ailink_anthropic_add(block, "cache_control",
                                    ngx_ailink_json_copy(cc));
}


static cJSON *
ngx_ailink_anthropic_text(cJSON *text, cJSON *cc)
{
    cJSON  *block;

    block = cJSON_CreateObject();

    if (block == NULL
        || cJSON_AddStringToObject(block, "type", "text") == NULL
        || ngx_ailink_json_add_copy(block, "text", text) == NULL
        || ngx_ailink_anthropic_cache(block, cc) != NGX_OK)
    {
        ngx_ailink_json_delete(block);
        return NULL;
    }

    return block;
}


/* one OpenAI message: to the system blocks or to a user/assistant turn */

static ngx_int_t
ngx_ailink_anthropic_message(ngx_ailink_xreq_t *x, ngx_uint_t i, cJSON *msg,
    cJSON *system, cJSON *messages, cJSON **last)
{
    int          n;
    cJSON       *role, *content, *blocks, *cc, *calls;
    ngx_int_t    rc;
    const char  *turn;

    role = ngx_ailink_json_get(msg, "role");

    if (!cJSON_IsObject(msg) || !cJSON_IsString(role)) {
        return ngx_ailink_xreq_refuse(x, "messages",
                                      "messages[%ui] must be an object "
                                      "with a \"role\"", i);
    }

    content = ngx_ailink_json_get(msg, "content");
    cc = ngx_ailink_json_get(msg, "cache_control");

    if (ngx_ailink_anthropic_is(role, "system")
        || ngx_ailink_anthropic_is(role, "developer"))
    {
        n = cJSON_GetArraySize(system);
        rc = ngx_ailink_anthropic_content(x, i, content, system, 0);

        if (rc == NGX_OK && cJSON_GetArraySize(system) > n) {
            n = cJSON_GetArraySize(system);
            rc = ngx_ailink_anthropic_cache(cJSON_GetArrayItem(system, n - 1),
                                            cc);
        }

        return rc;
    }

    blocks = cJSON_CreateArray();
    if (blocks == NULL) {
        return NGX_ERROR;
    }

    if (ngx_ailink_anthropic_is(role, "user")) {
        turn = "user";
        rc = ngx_ailink_anthropic_content(x, i, content, blocks, 1);

    } else if (ngx_ailink_anthropic_is(role, "assistant")) {
        turn = "assistant";

        /* signed thinking first, as Anthropic gave it */
        rc = ngx_ailink_anthropic_thinking_blocks(x, i, msg, blocks);

        if (rc == NGX_OK) {
            rc = ngx_ailink_anthropic_content(x, i, content, blocks, 0);
        }

        calls = ngx_ailink_json_get(msg, "tool_calls");

        if (rc == NGX_OK && calls && !cJSON_IsNull(calls)) {
            rc = ngx_ailink_anthropic_tool_calls(x, i, calls, blocks);
        }

    } else if (ngx_ailink_anthropic_is(role, "tool")) {
        /* tool results go back in a user turn, several in one */
        turn = "user";
        rc = ngx_ailink_anthropic_tool_result(x, i, msg, blocks);

    } else {
        turn = NULL;
        rc = ngx_ailink_xreq_refuse(x, "messages",
                                    "messages[%ui]: role \"%s\" is not "
                                    "supported with Anthropic models",
                                    i, role->valuestring);
    }

    if (rc == NGX_OK && cJSON_GetArraySize(blocks)) {
        /* a message-level marker goes on the message's last block */
        rc = ngx_ailink_anthropic_cache(
                 cJSON_GetArrayItem(blocks, cJSON_GetArraySize(blocks) - 1),
                 cc);
    }

    if (rc != NGX_OK) {
        ngx_ailink_json_delete(blocks);
        return rc;
    }

    return ngx_ailink_anthropic_turn(messages, last, turn, blocks);
}


/*
 * Appends the blocks of one message to the conversation: to the previous
 * turn when it has the same role (Anthropic wants strict alternation),
 * or as a new turn.  "blocks" is consumed.
 */

static ngx_int_t
ngx_ailink_anthropic_turn(cJSON *messages, cJSON **last, const char *role,
    cJSON *blocks)
{
    cJSON  *turn, *content, *block;

    if (cJSON_GetArraySize(blocks) == 0) {
        /* e.g. an assistant message with empty content: nothing to say */
        ngx_ailink_json_delete(blocks);
        return NGX_OK;
    }

    if (*last
        && ngx_ailink_anthropic_is(ngx_ailink_json_get(*last, "role"), role))
    {
        content = ngx_ailink_json_get(*last, "content");

        while (cJSON_GetArraySize(blocks)) {
            block = cJSON_DetachItemFromArray(blocks, 0);
            cJSON_AddItemToArray(content, block);
        }

        ngx_ailink_json_delete(blocks);
        return NGX_OK;
    }

    turn = cJSON_CreateObject();

    if (turn == NULL
        || cJSON_AddStringToObject(turn, "role", role) == NULL)
    {
        ngx_ailink_json_delete(turn);
        ngx_ailink_json_delete(blocks);
        return NGX_ERROR;
    }

    if (ngx_ailink_anthropic_add(turn, "content", blocks) != NGX_OK) {
        ngx_ailink_json_delete(turn);
        return NGX_ERROR;
    }

    if (ngx_ailink_anthropic_push(messages, turn) != NGX_OK) {
        return NGX_ERROR;
    }

    *last = turn;

    return NGX_OK;
}


/*
 * Message content, a string or an array of parts, as content blocks.
 * Empty text is left out: Anthropic refuses empty text blocks, and
 * clients often send "" beside tool calls.  Images and files only where
 * "media" allows them (user turns).
 */

static ngx_int_t
ngx_ailink_anthropic_content(ngx_ailink_xreq_t *x, ngx_uint_t i,
    cJSON *content, cJSON *blocks, ngx_uint_t media)
{
    cJSON      *part, *type, *text, *block;
    ngx_int_t   rc;

    if (content == NULL || cJSON_IsNull(content)) {
        return NGX_OK;
    }

    if (cJSON_IsString(content)) {
        if (ngx_ailink_json_empty(content)) {
            return NGX_OK;
        }

        return ngx_ailink_anthropic_push(blocks,
                   ngx_ailink_anthropic_text(content, NULL));
    }

    if (!cJSON_IsArray(content)) {
        return ngx_ailink_xreq_refuse(x, "messages",
                                      "messages[%ui].content must be a "
                                      "string or an array of parts", i);
    }

    cJSON_ArrayForEach(part, content) {
        type = ngx_ailink_json_get(part, "type");

        if (!cJSON_IsString(type)) {
            return ngx_ailink_xreq_refuse(x, "messages",
                                          "messages[%ui]: a content "
                                          "part has no \"type\"", i);
        }

        if (ngx_ailink_anthropic_is(type, "text")) {
            text = ngx_ailink_json_get(part, "text");

            if (!cJSON_IsString(text)) {
                return ngx_ailink_xreq_refuse(x, "messages",
                                              "messages[%ui]: a text "
                                              "part has no \"text\"", i);
            }

            if (ngx_ailink_json_empty(text)) {
                continue;
            }

            block = ngx_ailink_anthropic_text(text,
                        ngx_ailink_json_get(part, "cache_control"));

            if (ngx_ailink_anthropic_push(blocks, block) != NGX_OK) {
                return NGX_ERROR;
            }

            continue;
        }

        if (ngx_ailink_anthropic_is(type, "refusal") && !media) {
            /* an assistant's earlier refusal: nothing to replay */
            continue;
        }

        if (!media
            || (!ngx_ailink_anthropic_is(type, "image_url")
                && !ngx_ailink_anthropic_is(type, "file")))
        {
            return ngx_ailink_xreq_refuse(x, "messages",
                                          "messages[%ui]: content parts "
                                          "of type \"%s\" are not "
                                          "supported here with Anthropic "
                                          "models", i, type->valuestring);
        }

        block = cJSON_CreateObject();
        if (block == NULL) {
            return NGX_ERROR;
        }

        if (type->valuestring[0] == 'i') {
            rc = ngx_ailink_anthropic_image(x, i, part, block);

        } else {
            rc = ngx_ailink_anthropic_file(x, i, part, block);
        }

        if (rc == NGX_OK) {
            rc = ngx_ailink_anthropic_cache(block,
                     ngx_ailink_json_get(part, "cache_control"));
        }

        if (rc != NGX_OK) {
            ngx_ailink_json_delete(block);
            return rc;
        }

        if (ngx_ailink_anthropic_push(blocks, block) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* image_url: a data: URL as base64 data, an http(s) URL by reference */

static ngx_int_t
ngx_ailink_anthropic_image(ngx_ailink_xreq_t *x, ngx_uint_t i, cJSON *part,
    cJSON *block)
{
    cJSON       *iu, *source;
    ngx_int_t    rc;
    ngx_str_t    media_type, data;
    const char  *url;

    iu = ngx_ailink_json_get(part, "image_url");

    if (cJSON_IsObject(iu)) {
        iu = ngx_ailink_json_get(iu, "url");
    }

    url = cJSON_GetStringValue(iu);

    if (url == NULL) {
        return ngx_ailink_xreq_refuse(x, "messages",
                                      "messages[%ui]: an image_url part "
                                      "has no \"url\"", i);
    }

    if (cJSON_AddStringToObject(block, "type", "image") == NULL) {
        return NGX_ERROR;
    }

    source = cJSON_AddObjectToObject(block, "source");
    if (source == NULL) {
        return NGX_ERROR;
    }

    /* a URL with "\u0000" in it is no URL: refused, not cut short */
    rc = (iu->type & NGX_AILINK_JSON_SIZED)
         ? NGX_ERROR : ngx_ailink_data_url(x->pool, url, &media_type, &data);

    if (rc == NGX_OK) {
        /* both strings are NUL-terminated: data ends the URL */
        if (cJSON_AddStringToObject(source, "type", "base64") == NULL
            || cJSON_AddStringToObject(source, "media_type",
                                       (char *) media_type.data) == NULL
            || cJSON_AddStringToObject(source, "data", (char *) data.data)
               == NULL)
        {
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (rc == NGX_DECLINED
        && (ngx_strncasecmp((u_char *) url, (u_char *) "https://", 8) == 0
            || ngx_strncasecmp((u_char *) url, (u_char *) "http://", 7) == 0))
    {
        if (cJSON_AddStringToObject(source, "type", "url") == NULL
            || cJSON_AddStringToObject(source, "url", url) == NULL)
        {
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    return ngx_ailink_xreq_refuse(x, "messages",
                                  "messages[%ui]: an image must be a "
                                  "base64 data: URL or an http(s) URL",
                                  i);
}


/* a file part: a PDF as a base64 document block */

static ngx_int_t
ngx_ailink_anthropic_file(ngx_ailink_xreq_t *x, ngx_uint_t i, cJSON *part,
    cJSON *block)
{
    cJSON       *file, *source;
    ngx_str_t    media_type, data;
    const char  *url;

    file = ngx_ailink_json_get(ngx_ailink_json_get(part, "file"),
                               "file_data");
    url = cJSON_GetStringValue(file);

    if (url == NULL
        || (file->type & NGX_AILINK_JSON_SIZED)
        || ngx_ailink_data_url(x->pool, url, &media_type, &data) != NGX_OK
        || ngx_strcmp(media_type.data, "application/pdf") != 0)
    {
        return ngx_ailink_xreq_refuse(x, "messages",
                                      "messages[%ui]: a file part must "
                                      "carry a PDF as a base64 data: URL "
                                      "in \"file_data\"", i);
    }

    if (cJSON_AddStringToObject(block, "type", "document") == NULL) {
        return NGX_ERROR;
    }

    source = cJSON_AddObjectToObject(block, "source");

    if (source == NULL
        || cJSON_AddStringToObject(source, "type", "base64") == NULL
        || cJSON_AddStringToObject(source, "media_type", "application/pdf")
           == NULL
        || cJSON_AddStringToObject(source, "data", (char *) data.data) == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* assistant tool_calls as tool_use blocks, the ids kept */

static ngx_int_t
ngx_ailink_anthropic_tool_calls(ngx_ailink_xreq_t *x, ngx_uint_t i,
    cJSON *calls, cJSON *blocks)
{
    u_char      *p, *last;
    cJSON       *call, *id, *fn, *name, *args, *input, *block;
    ngx_str_t    text;
    ngx_uint_t   k;

    if (!cJSON_IsArray(calls)) {
        return ngx_ailink_xreq_refuse(x, "messages",
                                      "messages[%ui].tool_calls must be "
                                      "an array", i);
    }

    k = 0;

    cJSON_ArrayForEach(call, calls) {
        id = ngx_ailink_json_get(call, "id");
        fn = ngx_ailink_json_get(call, "function");
        name = ngx_ailink_json_get(fn, "name");
        args = ngx_ailink_json_get(fn, "arguments");

        if (!cJSON_IsString(id) || !cJSON_IsString(name)) {
            return ngx_ailink_xreq_refuse(x, "messages",
                                          "messages[%ui].tool_calls[%ui] "
                                          "needs an \"id\" and a "
                                          "function \"name\"", i, k);
        }

        input = NULL;

        if (cJSON_IsString(args)) {
            ngx_ailink_json_str(args, &text);
            last = text.data + text.len;

            for (p = text.data;
                 p < last
                 && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n');
                 p++)
            {
                /* void */
            }

            /* a call without arguments is often sent as "" */
            input = (p < last) ? ngx_ailink_json_parse(&text)
                               : cJSON_CreateObject();

        } else if (cJSON_IsObject(args)) {
            input = ngx_ailink_json_copy(args);

        } else if (args == NULL || cJSON_IsNull(args)) {
            input = cJSON_CreateObject();
        }

        if (!cJSON_IsObject(input)) {
            ngx_ailink_json_delete(input);
            return ngx_ailink_xreq_refuse(x, "messages",
                                          "messages[%ui].tool_calls[%ui]"
                                          ".function.arguments is not a "
                                          "JSON object", i, k);
        }

        block = cJSON_CreateObject();

        if (block == NULL
            || cJSON_AddStringToObject(block, "type", "tool_use") == NULL
            || ngx_ailink_anthropic_add(block, "id",
                                        ngx_ailink_anthropic_tool_id(x, id))
               != NGX_OK
            || ngx_ailink_json_add_copy(block, "name", name) == NULL)
        {
            ngx_ailink_json_delete(input);
            ngx_ailink_json_delete(block);
            return NGX_ERROR;
        }

        if (ngx_ailink_anthropic_add(block, "input", input) != NGX_OK
            || ngx_ailink_anthropic_cache(block,
                   ngx_ailink_json_get(call, "cache_control"))
               != NGX_OK)
        {
            ngx_ailink_json_delete(block);
            return NGX_ERROR;
        }

        if (ngx_ailink_anthropic_push(blocks, block) != NGX_OK) {
            return NGX_ERROR;
        }

        k++;
    }

    return NGX_OK;
}


/* a role "tool" message as a tool_result block */

static ngx_int_t
ngx_ailink_anthropic_tool_result(ngx_ailink_xreq_t *x, ngx_uint_t i,
    cJSON *msg, cJSON *blocks)
{
    cJSON       *id, *content, *block, *parts;
    ngx_int_t    rc;

    id = ngx_ailink_json_get(msg, "tool_call_id");

    if (!cJSON_IsString(id)) {
        return ngx_ailink_xreq_refuse(x, "messages",
                                      "messages[%ui]: a tool message "
                                      "needs a \"tool_call_id\"", i);
    }

    block = cJSON_CreateObject();

    if (block == NULL
        || cJSON_AddStringToObject(block, "type", "tool_result") == NULL
        || ngx_ailink_anthropic_add(block, "tool_use_id",
                                    ngx_ailink_anthropic_tool_id(x, id))
           != NGX_OK)
    {
        ngx_ailink_json_delete(block);
        return NGX_ERROR;
    }

    if (ngx_ailink_anthropic_push(blocks, block) != NGX_OK) {
        return NGX_ERROR;
    }

    content = ngx_ailink_json_get(msg, "content");

    if (cJSON_IsString(content)) {
        if (ngx_ailink_json_empty(content)) {
            return NGX_OK;
        }

        return ngx_ailink_json_add_copy(block, "content", content)
               ? NGX_OK : NGX_ERROR;
    }

    parts = cJSON_CreateArray();
    if (parts == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_ailink_anthropic_content(x, i, content, parts, 0);

    if (rc != NGX_OK || cJSON_GetArraySize(parts) == 0) {
        ngx_ailink_json_delete(parts);
        return rc;
    }

    return ngx_ailink_anthropic_add(block, "content", parts);
}


/*
 * A tool message must answer a tool call of an earlier assistant message:
 * Anthropic refuses a tool_result without its tool_use, in words that
 * name its own blocks, not the client's messages.
 */

static ngx_int_t
ngx_ailink_anthropic_tool_answers(ngx_ailink_xreq_t *x, ngx_uint_t i,
    cJSON *msgs, cJSON *msg)
{
    cJSON      *id, *m, *call, *cid;
    ngx_str_t   a, b;

    id = ngx_ailink_json_get(msg, "tool_call_id");

    if (!ngx_ailink_anthropic_is(ngx_ailink_json_get(msg, "role"), "tool")
        || !cJSON_IsString(id))
    {
        /* not a tool message, or one the translation refuses anyway */
        return NGX_OK;
    }

    ngx_ailink_json_str(id, &a);

    for (m = msgs->child; m && m != msg; m = m->next) {
        cJSON_ArrayForEach(call, ngx_ailink_json_get(m, "tool_calls")) {
            cid = ngx_ailink_json_get(call, "id");

            if (!cJSON_IsString(cid)) {
                continue;
            }

            ngx_ailink_json_str(cid, &b);

            if (a.len == b.len && ngx_memcmp(a.data, b.data, a.len) == 0) {
                return NGX_OK;
            }
        }
    }

    return ngx_ailink_xreq_refuse(x, "messages",
                                  "messages[%ui]: tool_call_id \"%V\" "
                                  "answers no earlier assistant tool call",
                                  i, &a);
}


/*
 * Anthropic wants tool ids of [a-zA-Z0-9_-]; ids other providers made
 * ("functions.get_weather:0") are mapped the same way in tool_use and
 * tool_result blocks, so that they still pair.
 */

static cJSON *
ngx_ailink_anthropic_tool_id(ngx_ailink_xreq_t *x, cJSON *id)
{
    u_char     *p, *q, *last;
    ngx_str_t   s, out;

    ngx_ailink_json_str(id, &s);
    last = s.data + s.len;

    for (p = s.data; p < last; p++) {
        if (!ngx_ailink_anthropic_id_char(*p)) {
            break;
        }
    }

    if (p == last && s.len) {
        return ngx_ailink_json_string(&s);
    }

    /* a NUL, as any byte Anthropic does not allow, becomes '_' */
    out.data = ngx_pnalloc(x->pool, s.len + 1);
    if (out.data == NULL) {
        return NULL;
    }

    for (p = s.data, q = out.data; p < last; p++) {
        *q++ = ngx_ailink_anthropic_id_char(*p) ? *p : '_';
    }

    if (q == out.data) {
        *q++ = '_';
    }

    out.len = q - out.data;

    return ngx_ailink_json_string(&out);
}


/* tools[].function as Anthropic tools */

static ngx_int_t
ngx_ailink_anthropic_tools(ngx_ailink_xreq_t *x, cJSON *req, cJSON *out)
{
    cJSON       *tools, *tool, *type, *fn, *name, *desc, *params, *schema;
    cJSON       *list, *t, *cc;
    ngx_uint_t   k;

    tools = ngx_ailink_json_get(req, "tools");

    if (tools == NULL || cJSON_IsNull(tools)) {
        return NGX_OK;
    }

    if (!cJSON_IsArray(tools)) {
        return ngx_ailink_xreq_refuse(x, "tools",
                                      "\"tools\" must be an array");
    }

    if (cJSON_GetArraySize(tools) == 0) {
        return NGX_OK;
    }

    list = cJSON_CreateArray();

    if (ngx_ailink_anthropic_add(out, "tools", list) != NGX_OK) {
        return NGX_ERROR;
    }

    k = 0;

    cJSON_ArrayForEach(tool, tools) {
        type = ngx_ailink_json_get(tool, "type");
        fn = ngx_ailink_json_get(tool, "function");
        name = ngx_ailink_json_get(fn, "name");

        if ((type && !ngx_ailink_anthropic_is(type, "function"))
            || !cJSON_IsString(name))
        {
            return ngx_ailink_xreq_refuse(x, "tools",
                                          "tools[%ui] must be a "
                                          "function with a \"name\"", k);
        }

        desc = ngx_ailink_json_get(fn, "description");
        params = ngx_ailink_json_get(fn, "parameters");

        if (params && !cJSON_IsNull(params) && !cJSON_IsObject(params)) {
            return ngx_ailink_xreq_refuse(x, "tools",
                                          "tools[%ui].function."
                                          "parameters must be an "
                                          "object", k);
        }

        t = cJSON_CreateObject();

        if (ngx_ailink_anthropic_push(list, t) != NGX_OK
            || ngx_ailink_json_add_copy(t, "name", name) == NULL)
        {
            return NGX_ERROR;
        }

        if (cJSON_IsString(desc)
            && ngx_ailink_json_add_copy(t, "description", desc) == NULL)
        {
            return NGX_ERROR;
        }

        schema = cJSON_IsObject(params) ? ngx_ailink_json_copy(params)
                                        : cJSON_CreateObject();

        if (ngx_ailink_anthropic_add(t, "input_schema", schema) != NGX_OK) {
            return NGX_ERROR;
        }

        /* Anthropic insists on an object schema */
        if (ngx_ailink_json_get(schema, "type") == NULL
            && cJSON_AddStringToObject(schema, "type", "object") == NULL)
        {
            return NGX_ERROR;
        }

        if (!cJSON_IsObject(params)
            && cJSON_AddObjectToObject(schema, "properties") == NULL)
        {
            return NGX_ERROR;
        }

        cc = ngx_ailink_json_get(tool, "cache_control");
        if (cc == NULL) {
            cc = ngx_ailink_json_get(fn, "cache_control");
        }

        if (ngx_ailink_anthropic_cache(t, cc) != NGX_OK) {
            return NGX_ERROR;
        }

        k++;
    }

    return NGX_OK;
}


/*
 * "auto", "none", "required" or a named function; parallel_tool_calls
 * false asks for one call at a time.  Without tools there is no choice
 * to make, and Anthropic refuses one.
 */

static ngx_int_t
ngx_ailink_anthropic_tool_choice(ngx_ailink_xreq_t *x, cJSON *req,
    cJSON *out)
{
    cJSON       *choice, *tc, *name, *parallel;
    const char  *type;

    choice = ngx_ailink_json_get(req, "tool_choice");
    parallel = ngx_ailink_json_get(req, "parallel_tool_calls");

    if (ngx_ailink_json_get(out, "tools") == NULL) {
        return NGX_OK;
    }

    name = NULL;

    if (choice == NULL || cJSON_IsNull(choice)) {
        if (!cJSON_IsFalse(parallel)) {
            return NGX_OK;
        }

        type = "auto";

    } else if (ngx_ailink_anthropic_is(choice, "auto")) {
        type = "auto";

    } else if (ngx_ailink_anthropic_is(choice, "none")) {
        type = "none";

    } else if (ngx_ailink_anthropic_is(choice, "required")) {
        type = "any";

    } else if (cJSON_IsObject(choice)
               && ngx_ailink_anthropic_is(ngx_ailink_json_get(choice, "type"),
                                          "function"))
    {
        type = "tool";
        name = ngx_ailink_json_get(ngx_ailink_json_get(choice, "function"),
                                   "name");

        if (!cJSON_IsString(name)) {
            return ngx_ailink_xreq_refuse(x, "tool_choice",
                                          "\"tool_choice\" names no "
                                          "function");
        }

    } else {
        return ngx_ailink_xreq_refuse(x, "tool_choice",
                                      "\"tool_choice\" must be \"auto\", "
                                      "\"none\", \"required\" or a "
                                      "function");
    }

    tc = cJSON_AddObjectToObject(out, "tool_choice");

    if (tc == NULL || cJSON_AddStringToObject(tc, "type", type) == NULL) {
        return NGX_ERROR;
    }

    if (name && ngx_ailink_json_add_copy(tc, "name", name) == NULL)
    {
        return NGX_ERROR;
    }

    if (cJSON_IsFalse(parallel) && type[0] != 'n'
        && cJSON_AddTrueToObject(tc, "disable_parallel_tool_use") == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* max_tokens, sampling, stop sequences, user and stream */

static ngx_int_t
ngx_ailink_anthropic_params(ngx_ailink_xreq_t *x, cJSON *req, cJSON *out)
{
    cJSON       *v, *stop, *s, *md;
    double       max;
    const char  *name;

    name = "max_completion_tokens";
    v = ngx_ailink_json_get(req, name);

    if (v == NULL || cJSON_IsNull(v)) {
        name = "max_tokens";
        v = ngx_ailink_json_get(req, name);
    }

    if (v == NULL || cJSON_IsNull(v)) {
        max = x->provider && x->provider->max_tokens
              ? (double) x->provider->max_tokens : 4096;

    } else if (cJSON_IsNumber(v) && v->valuedouble >= 1
               && v->valuedouble <= 1e9
               && v->valuedouble == (double) (int64_t) v->valuedouble)
    {
        max = v->valuedouble;

    } else {
        return ngx_ailink_xreq_refuse(x, name,
                                      "\"%s\" must be a positive "
                                      "integer", name);
    }

    if (cJSON_AddNumberToObject(out, "max_tokens", max) == NULL) {
        return NGX_ERROR;
    }

    v = ngx_ailink_json_get(req, "temperature");

    if (cJSON_IsNumber(v)) {
        /* OpenAI allows up to 2, Anthropic up to 1; else as it came */
        if ((v->valuedouble > 1
             ? cJSON_AddNumberToObject(out, "temperature", 1)
             : ngx_ailink_json_add_copy(out, "temperature", v))
            == NULL)
        {
            return NGX_ERROR;
        }

    } else if (v && !cJSON_IsNull(v)) {
        return ngx_ailink_xreq_refuse(x, "temperature",
                                      "\"temperature\" must be a "
                                      "number");
    }

    v = ngx_ailink_json_get(req, "top_p");

    if (cJSON_IsNumber(v)) {
        if (ngx_ailink_json_add_copy(out, "top_p", v) == NULL) {
            return NGX_ERROR;
        }

    } else if (v && !cJSON_IsNull(v)) {
        return ngx_ailink_xreq_refuse(x, "top_p",
                                      "\"top_p\" must be a number");
    }

    v = ngx_ailink_json_get(req, "stop");

    if (cJSON_IsString(v) || (cJSON_IsArray(v) && cJSON_GetArraySize(v))) {
        stop = cJSON_AddArrayToObject(out, "stop_sequences");
        if (stop == NULL) {
            return NGX_ERROR;
        }

        if (cJSON_IsString(v)) {
            if (ngx_ailink_json_add_copy(stop, NULL, v) == NULL)
            {
                return NGX_ERROR;
            }

        } else {
            cJSON_ArrayForEach(s, v) {
                if (!cJSON_IsString(s)) {
                    return ngx_ailink_xreq_refuse(x, "stop",
                                                  "\"stop\" must be a "
                                                  "string or an array "
                                                  "of strings");
                }

                if (ngx_ailink_json_add_copy(stop, NULL, s) == NULL)
                {
                    return NGX_ERROR;
                }
            }
        }

    } else if (v && !cJSON_IsNull(v) && !cJSON_IsArray(v)) {
        return ngx_ailink_xreq_refuse(x, "stop",
                                      "\"stop\" must be a string or an "
                                      "array of strings");
    }

    v = ngx_ailink_json_get(req, "user");

    if (cJSON_IsString(v) && !ngx_ailink_json_empty(v)) {
        md = cJSON_AddObjectToObject(out, "metadata");

        if (md == NULL || ngx_ailink_json_add_copy(md, "user_id", v) == NULL)
        {
            return NGX_ERROR;
        }
    }

    if ((x->stream
         || cJSON_IsTrue(ngx_ailink_json_get(req, "stream")))
        && cJSON_AddTrueToObject(out, "stream") == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* Anthropic's stop_reason as an OpenAI finish_reason */

static const char *
ngx_ailink_anthropic_finish(cJSON *reason)
{
    ngx_str_t  s;

    if (cJSON_GetStringValue(reason) == NULL) {
        return NULL;
    }

    s.data = (u_char *) reason->valuestring;
    s.len = ngx_strlen(s.data);

    return ngx_ailink_anthropic_finish_reason(&s);
}


#define ngx_ailink_anthropic_reason_is(s, name)                               \
    ((s)->len == sizeof(name) - 1                                             \
     && ngx_memcmp((s)->data, name, sizeof(name) - 1) == 0)

const char *
ngx_ailink_anthropic_finish_reason(ngx_str_t *reason)
{
    if (ngx_ailink_anthropic_reason_is(reason, "max_tokens")
        || ngx_ailink_anthropic_reason_is(reason,
                                          "model_context_window_exceeded"))
    {
        return "length";
    }

    if (ngx_ailink_anthropic_reason_is(reason, "tool_use")) {
        return "tool_calls";
    }

    if (ngx_ailink_anthropic_reason_is(reason, "refusal")) {
        return "content_filter";
    }

    /* end_turn, stop_sequence, pause_turn and any newer reason */
    return "stop";
}


/*
 * Anthropic usage: input tokens exclude the cached prefix, so the OpenAI
 * prompt count adds the cache reads and writes back.  The counts are
 * cumulative: set, never add.
 */

static void
ngx_ailink_anthropic_usage(ngx_ailink_usage_t *usage, cJSON *json)
{
    ngx_uint_t  input, read, write, output;

    if (!cJSON_IsObject(json)) {
        return;
    }

    ngx_ailink_anthropic_usage_set(usage,
        ngx_ailink_json_count(json, "input_tokens", &input) == NGX_OK
        ? &input : NULL,
        ngx_ailink_json_count(json, "cache_read_input_tokens", &read) == NGX_OK
        ? &read : NULL,
        ngx_ailink_json_count(json, "cache_creation_input_tokens", &write)
        == NGX_OK ? &write : NULL,
        ngx_ailink_json_count(json, "output_tokens", &output) == NGX_OK
        ? &output : NULL);
}


/* the counts a usage object had (NULL: not there) */

void
ngx_ailink_anthropic_usage_set(ngx_ailink_usage_t *usage, ngx_uint_t *input,
    ngx_uint_t *read, ngx_uint_t *write, ngx_uint_t *output)
{
    ngx_uint_t  in, rd, wr;

    /* a message_delta may repeat any of them; what it omits is kept */

    rd = read ? *read : usage->cached;
    wr = write ? *write : usage->cache_write;
    in = input ? *input
               : usage->prompt - ngx_min(usage->prompt,
                                         usage->cached + usage->cache_write);

    if (input || read || write) {
        usage->prompt = in + rd + wr;
        usage->cached = rd;
        usage->cache_write = wr;
    }

    if (output) {
        usage->completion = *output;
    }

    usage->total = usage->prompt + usage->completion;
    usage->known = 1;
}


cJSON *
ngx_ailink_anthropic_response(ngx_ailink_xresp_t *x, cJSON *resp)
{
    cJSON        *content, *block, *type, *text, *root, *message, *calls;
    cJSON        *call, *fn, *id, *name, *input, *usage, *choice, *item;
    cJSON        *answer;
    char         *args;
    u_char       *buf, *p;
    size_t        len;
    const char   *finish;

    content = ngx_ailink_json_get(resp, "content");

    if (!cJSON_IsObject(resp)
        || !ngx_ailink_anthropic_is(ngx_ailink_json_get(resp, "type"),
                                    "message")
        || !cJSON_IsArray(content))
    {
        return NULL;
    }

    root = ngx_ailink_completion_new(x, &message);
    if (root == NULL) {
        return NULL;
    }

    /* response_format: the answer tool's input is the content */

    answer = NULL;

    cJSON_ArrayForEach(block, content) {
        if (ngx_ailink_anthropic_is(ngx_ailink_json_get(block, "type"),
                                    "tool_use")
            && ngx_ailink_anthropic_is(ngx_ailink_json_get(block, "name"),
                                       NGX_AILINK_ANSWER_TOOL))
        {
            answer = block;
            break;
        }
    }

    len = 0;

    if (answer) {
        input = ngx_ailink_json_get(answer, "input");
        args = cJSON_PrintUnformatted(input);

        if (args == NULL) {
            goto failed;
        }

        item = cJSON_AddStringToObject(message, "content", args);
        cJSON_free(args);

        if (item == NULL) {
            goto failed;
        }

        goto refusal;
    }

    /* the text blocks, joined */

    cJSON_ArrayForEach(block, content) {
        type = ngx_ailink_json_get(block, "type");
        text = ngx_ailink_json_get(block, "text");

        if (ngx_ailink_anthropic_is(type, "text") && cJSON_IsString(text)) {
            len += ngx_strlen(text->valuestring);
        }
    }

    if (len == 0) {
        if (cJSON_AddNullToObject(message, "content") == NULL) {
            goto failed;
        }

    } else {
        buf = malloc(len + 1);
        if (buf == NULL) {
            goto failed;
        }

        p = buf;

        cJSON_ArrayForEach(block, content) {
            type = ngx_ailink_json_get(block, "type");
            text = ngx_ailink_json_get(block, "text");

            if (ngx_ailink_anthropic_is(type, "text") && cJSON_IsString(text))
            {
                p = ngx_cpymem(p, text->valuestring,
                               ngx_strlen(text->valuestring));
            }
        }

        *p = '\0';

        item = cJSON_AddStringToObject(message, "content", (char *) buf);
        free(buf);

        if (item == NULL) {
            goto failed;
        }
    }

refusal:

    if (cJSON_AddNullToObject(message, "refusal") == NULL
        || ngx_ailink_anthropic_reasoning(content, message) != NGX_OK)
    {
        goto failed;
    }

    /* tool_use blocks, parallel ones too */

    calls = NULL;

    cJSON_ArrayForEach(block, content) {
        type = ngx_ailink_json_get(block, "type");

        if (!ngx_ailink_anthropic_is(type, "tool_use") || block == answer) {
            /* thinking, redacted_thinking and server tool blocks */
            continue;
        }

        id = ngx_ailink_json_get(block, "id");
        name = ngx_ailink_json_get(block, "name");
        input = ngx_ailink_json_get(block, "input");

        if (!cJSON_IsString(id) || !cJSON_IsString(name)) {
            goto failed;
        }

        if (calls == NULL) {
            calls = cJSON_AddArrayToObject(message, "tool_calls");
            if (calls == NULL) {
                goto failed;
            }
        }

        call = cJSON_CreateObject();

        if (ngx_ailink_anthropic_push(calls, call) != NGX_OK
            || cJSON_AddStringToObject(call, "id", id->valuestring) == NULL
            || cJSON_AddStringToObject(call, "type", "function") == NULL)
        {
            goto failed;
        }

        fn = cJSON_AddObjectToObject(call, "function");

        if (fn == NULL
            || cJSON_AddStringToObject(fn, "name", name->valuestring) == NULL)
        {
            goto failed;
        }

        args = input ? cJSON_PrintUnformatted(input) : NULL;

        item = cJSON_AddStringToObject(fn, "arguments", args ? args : "{}");

        if (args) {
            cJSON_free(args);

        } else if (input) {
            goto failed;
        }

        if (item == NULL) {
            goto failed;
        }
    }

    finish = ngx_ailink_anthropic_finish(
                 ngx_ailink_json_get(resp, "stop_reason"));

    if (finish == NULL || (answer && calls == NULL)) {
        finish = calls ? "tool_calls" : "stop";
    }

    choice = cJSON_GetArrayItem(ngx_ailink_json_get(root, "choices"), 0);

    item = cJSON_CreateString(finish);

    if (item == NULL
        || !cJSON_ReplaceItemInObjectCaseSensitive(choice, "finish_reason",
                                                   item))
    {
        ngx_ailink_json_delete(item);
        goto failed;
    }

    usage = ngx_ailink_json_get(resp, "usage");

    if (cJSON_IsObject(usage)) {
        ngx_ailink_anthropic_usage(x->usage, usage);

        if (ngx_ailink_anthropic_add(root, "usage",
                                     ngx_ailink_usage_json(x->usage))
            != NGX_OK)
        {
            goto failed;
        }
    }

    return root;

failed:

    ngx_ailink_json_delete(root);
    return NULL;
}


ngx_int_t
ngx_ailink_anthropic_stream(ngx_ailink_xstream_t *st, ngx_str_t *event,
    ngx_str_t *data)
{
    cJSON                          *json, *err, *item;
    ngx_int_t                       rc;
    ngx_str_t                       name;
    const char                     *type, *msg, *finish;
    ngx_ailink_anthropic_stream_t  *as;

    if (st->done) {
        return NGX_OK;
    }

    as = st->state;

    if (as == NULL) {
        as = ngx_palloc(st->resp.pool, sizeof(ngx_ailink_anthropic_stream_t));
        if (as == NULL) {
            return NGX_ERROR;
        }

        as->block = -1;
        as->tool = 0;
        as->tools = 0;
        as->args = 0;
        as->answer = 0;
        as->answered = 0;

        st->state = as;
    }

    if (data->len == 0) {
        return NGX_OK;
    }

    json = ngx_ailink_json_parse(data);

    if (!cJSON_IsObject(json)) {
        ngx_ailink_json_delete(json);

        ngx_log_error(NGX_LOG_ERR, st->resp.log, 0,
                      "ailink anthropic: stream event \"%V\" is not "
                      "a JSON object", event);
        return NGX_ERROR;
    }

    /* the event name, or the data's own "type" when the line is missing */

    name = *event;

    if (name.len == 0) {
        type = cJSON_GetStringValue(ngx_ailink_json_get(json, "type"));
        if (type) {
            name.data = (u_char *) type;
            name.len = ngx_strlen(type);
        }
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, st->resp.log, 0,
                   "ailink anthropic: stream event \"%V\"", &name);

    rc = NGX_OK;

    if (ngx_ailink_anthropic_event(&name, "content_block_delta")) {
        rc = ngx_ailink_anthropic_block_delta(st, as, json);

    } else if (ngx_ailink_anthropic_event(&name, "content_block_start")) {
        rc = ngx_ailink_anthropic_block_start(st, as, json);

    } else if (ngx_ailink_anthropic_event(&name, "content_block_stop")) {
        rc = ngx_ailink_anthropic_block_stop(st, as, json);

    } else if (ngx_ailink_anthropic_event(&name, "message_start")) {
        ngx_ailink_anthropic_usage(st->resp.usage,
                   ngx_ailink_json_get(ngx_ailink_json_get(json, "message"),
                                       "usage"));

        as->block = -1;
        as->tools = 0;

        rc = ngx_ailink_stream_role(st);

    } else if (ngx_ailink_anthropic_event(&name, "message_delta")) {
        item = ngx_ailink_json_get(json, "delta");
        finish = ngx_ailink_anthropic_finish(
                     ngx_ailink_json_get(item, "stop_reason"));
        if (finish) {
            /* the answer tool, and no other: a plain answer */
            st->finish_reason = (as->answered && as->tools == 0
                                 && finish[0] == 't')
                                ? "stop" : finish;
        }

        item = ngx_ailink_json_get(json, "usage");

        if (cJSON_IsObject(item)) {
            ngx_ailink_anthropic_usage(st->resp.usage, item);
        }

    } else if (ngx_ailink_anthropic_event(&name, "message_stop")) {
        rc = ngx_ailink_stream_finish(st);

    } else if (ngx_ailink_anthropic_event(&name, "error")) {
        err = ngx_ailink_json_get(json, "error");

        type = cJSON_GetStringValue(ngx_ailink_json_get(err, "type"));
        msg = cJSON_GetStringValue(ngx_ailink_json_get(err, "message"));

        ngx_log_error(NGX_LOG_WARN, st->resp.log, 0,
                      "ailink anthropic: error event in the stream: %s",
                      type ? type : "unknown");

        rc = ngx_ailink_stream_error(st, type ? type : "api_error",
                                     msg ? msg : "the provider reported an "
                                                 "error");
    }

    /* ping and event types added later produce nothing */

    ngx_ailink_json_delete(json);

    return rc;
}


static ngx_int_t
ngx_ailink_anthropic_block_start(ngx_ailink_xstream_t *st,
    ngx_ailink_anthropic_stream_t *as, cJSON *json)
{
    cJSON  *block, *index, *id, *name;

    block = ngx_ailink_json_get(json, "content_block");
    index = ngx_ailink_json_get(json, "index");

    if (ngx_ailink_anthropic_is(ngx_ailink_json_get(block, "type"),
                                "redacted_thinking"))
    {
        id = ngx_ailink_json_get(block, "data");

        if (!cJSON_IsString(id)) {
            return NGX_ERROR;
        }

        return ngx_ailink_reasoning_block_delta(st, "redacted_thinking",
                                                "data", id);
    }

    if (!ngx_ailink_anthropic_is(ngx_ailink_json_get(block, "type"),
                                 "tool_use"))
    {
        /* text, thinking, server tools: their deltas say what matters */
        return ngx_ailink_stream_role(st);
    }

    if (!cJSON_IsNumber(index)) {
        return NGX_ERROR;
    }

    as->block = index->valueint;
    as->args = 0;

    if (ngx_ailink_anthropic_is(ngx_ailink_json_get(block, "name"),
                                NGX_AILINK_ANSWER_TOOL))
    {
        /* response_format: its input streams as content */
        as->answer = 1;
        as->answered = 1;
        return ngx_ailink_stream_role(st);
    }

    as->answer = 0;
    as->tool = as->tools++;

    if (ngx_ailink_stream_role(st) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the first delta of a tool call carries its id and name */

    id = ngx_ailink_json_get(block, "id");
    name = ngx_ailink_json_get(block, "name");

    if (!cJSON_IsString(id) || !cJSON_IsString(name)) {
        return NGX_ERROR;
    }

    return ngx_ailink_anthropic_tool_delta(st, as->tool, id, name, "");
}


static ngx_int_t
ngx_ailink_anthropic_block_delta(ngx_ailink_xstream_t *st,
    ngx_ailink_anthropic_stream_t *as, cJSON *json)
{
    cJSON      *delta, *type, *text, *index;
    ngx_str_t   s;

    delta = ngx_ailink_json_get(json, "delta");
    type = ngx_ailink_json_get(delta, "type");

    if (ngx_ailink_anthropic_is(type, "text_delta")) {
        text = ngx_ailink_json_get(delta, "text");

        if (!cJSON_IsString(text)) {
            return NGX_ERROR;
        }

        return ngx_ailink_anthropic_content_delta(st, text);
    }

    if (ngx_ailink_anthropic_is(type, "input_json_delta")) {
        text = ngx_ailink_json_get(delta, "partial_json");
        index = ngx_ailink_json_get(json, "index");

        if (!cJSON_IsString(text)) {
            return NGX_ERROR;
        }

        /* a server tool's input (web search) is not the client's call */
        if (!cJSON_IsNumber(index) || index->valueint != as->block
            || text->valuestring[0] == '\0')
        {
            return NGX_OK;
        }

        as->args = 1;

        if (as->answer) {
            return ngx_ailink_anthropic_content_delta(st, text);
        }

        return ngx_ailink_anthropic_tool_delta(st, as->tool, NULL, NULL,
                                               text->valuestring);
    }

    if (ngx_ailink_anthropic_is(type, "thinking_delta")) {
        text = ngx_ailink_json_get(delta, "thinking");

        if (!cJSON_IsString(text)) {
            return NGX_ERROR;
        }

        ngx_ailink_json_str(text, &s);

        return ngx_ailink_reasoning_delta(st, &s);
    }

    if (ngx_ailink_anthropic_is(type, "signature_delta")) {
        text = ngx_ailink_json_get(delta, "signature");

        if (!cJSON_IsString(text)) {
            return NGX_ERROR;
        }

        return ngx_ailink_reasoning_block_delta(st, "thinking", "signature",
                                                text);
    }

    /* citations_delta */

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_anthropic_block_stop(ngx_ailink_xstream_t *st,
    ngx_ailink_anthropic_stream_t *as, cJSON *json)
{
    cJSON       *index;
    ngx_uint_t   args, answer;

    index = ngx_ailink_json_get(json, "index");

    if (as->block < 0 || !cJSON_IsNumber(index)
        || index->valueint != as->block)
    {
        return NGX_OK;
    }

    args = as->args;
    answer = as->answer;

    as->block = -1;
    as->args = 0;
    as->answer = 0;

    if (args) {
        return NGX_OK;
    }

    if (answer) {
        return ngx_ailink_stream_content(st, "{}");
    }

    /* a call without input: the arguments must still parse as JSON */

    return ngx_ailink_anthropic_tool_delta(st, as->tool, NULL, NULL, "{}");
}


/* {"content": text}: a text_delta, or the answer tool's input */

static ngx_int_t
ngx_ailink_anthropic_content_delta(ngx_ailink_xstream_t *st, cJSON *text)
{
    if (text->valuestring[0] == '\0') {
        return NGX_OK;
    }

    return ngx_ailink_stream_content(st, text->valuestring);
}


/* {"tool_calls": [{"index", "id"?, "type"?, "function": {...}}]} */

static ngx_int_t
ngx_ailink_anthropic_tool_delta(ngx_ailink_xstream_t *st, ngx_uint_t index,
    cJSON *id, cJSON *name, const char *arguments)
{
    cJSON  *chunk, *calls, *call, *fn;

    chunk = ngx_ailink_chunk_new(st);
    if (chunk == NULL) {
        return NGX_ERROR;
    }

    calls = cJSON_AddArrayToObject(ngx_ailink_chunk_delta(chunk),
                                   "tool_calls");
    if (calls == NULL) {
        goto failed;
    }

    call = cJSON_CreateObject();

    if (ngx_ailink_anthropic_push(calls, call) != NGX_OK
        || cJSON_AddNumberToObject(call, "index", (double) index) == NULL)
    {
        goto failed;
    }

    if (name) {
        if (!cJSON_IsString(id) || !cJSON_IsString(name)) {
            goto failed;
        }

        if (cJSON_AddStringToObject(call, "id", id->valuestring) == NULL
            || cJSON_AddStringToObject(call, "type", "function") == NULL)
        {
            goto failed;
        }
    }

    fn = cJSON_AddObjectToObject(call, "function");

    if (fn == NULL) {
        goto failed;
    }

    if (name && cJSON_AddStringToObject(fn, "name", name->valuestring) == NULL)
    {
        goto failed;
    }

    if (cJSON_AddStringToObject(fn, "arguments", arguments) == NULL) {
        goto failed;
    }

    return ngx_ailink_stream_emit(st, chunk);

failed:

    ngx_ailink_json_delete(chunk);
    return NGX_ERROR;
}
