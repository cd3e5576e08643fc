
/*
 * Copyright (C) AILink
 *
 * Reasoning, both ways.  OpenAI's "reasoning_effort" becomes Anthropic's
 * "thinking" budget or Gemini's "thinkingConfig"; the thinking a model
 * returns comes back as "reasoning_content" (the field OpenAI-compatible
 * clients read), never in "content".  Anthropic signs its thinking
 * blocks and wants them back with the assistant turn they belong to:
 * responses carry them as "thinking_blocks" and requests accept them
 * there, unchanged.
 */


#include "ngx_ailink_translate.h"


/* Anthropic budget_tokens and Gemini 2.x thinkingBudget, by effort */
static ngx_uint_t  ngx_ailink_reasoning_anthropic_budget[] = {
    0, 1024, 2048, 8192, 16384
};

static ngx_uint_t  ngx_ailink_reasoning_gemini_budget[] = {
    0, 1024, 1024, 8192, 24576
};

static const char  *ngx_ailink_reasoning_names[] = {
    "none", "minimal", "low", "medium", "high"
};


static ngx_int_t ngx_ailink_reasoning_block(ngx_ailink_xreq_t *x,
    ngx_uint_t i, cJSON *tb, cJSON *text, cJSON *blocks);


/*
 * "reasoning_effort": NGX_AILINK_EFFORT_* in *effort, NGX_DECLINED with a
 * refusal for a value no provider knows.  Absent and null are "unset".
 */

ngx_int_t
ngx_ailink_reasoning_effort(ngx_ailink_xreq_t *x, cJSON *req,
    ngx_uint_t *effort)
{
    cJSON       *v;
    ngx_uint_t   k;

    *effort = NGX_AILINK_EFFORT_UNSET;

    v = ngx_ailink_json_get(req, "reasoning_effort");

    if (v == NULL || cJSON_IsNull(v)) {
        return NGX_OK;
    }

    for (k = 0; k < sizeof(ngx_ailink_reasoning_names) / sizeof(char *); k++)
    {
        if (ngx_ailink_json_is(v, ngx_ailink_reasoning_names[k])) {
            *effort = k;
            return NGX_OK;
        }
    }

    return ngx_ailink_xreq_refuse(x, "reasoning_effort",
                                  "\"reasoning_effort\" must be \"none\", "
                                  "\"minimal\", \"low\", \"medium\" or "
                                  "\"high\"");
}


/*
 * Anthropic "thinking", once the rest of the request is built: the
 * budget stays below max_tokens (a client's max_tokens counts thinking,
 * as OpenAI's counts reasoning; without one, the budget is added to the
 * default), and what Anthropic refuses beside thinking is refused here,
 * naming the client's parameter.
 */

ngx_int_t
ngx_ailink_anthropic_thinking(ngx_ailink_xreq_t *x, cJSON *req, cJSON *out)
{
    cJSON       *max, *v, *th, *tc;
    ngx_int_t    rc;
    ngx_uint_t   effort, budget, given;
    const char  *name;

    rc = ngx_ailink_reasoning_effort(x, req, &effort);
    if (rc != NGX_OK) {
        return rc;
    }

    if (effort == NGX_AILINK_EFFORT_UNSET
        || effort == NGX_AILINK_EFFORT_NONE)
    {
        return NGX_OK;
    }

    budget = ngx_ailink_reasoning_anthropic_budget[effort];

    max = ngx_ailink_json_get(out, "max_tokens");
    if (!cJSON_IsNumber(max)) {
        return NGX_ERROR;
    }

    name = "max_completion_tokens";
    v = ngx_ailink_json_get(req, name);

    if (v == NULL || cJSON_IsNull(v)) {
        name = "max_tokens";
        v = ngx_ailink_json_get(req, name);
    }

    given = (v != NULL && !cJSON_IsNull(v));

    if (!given) {
        cJSON_SetNumberValue(max, max->valuedouble + (double) budget);

    } else if ((double) budget >= max->valuedouble) {
        /* half of a small limit for thinking, the rest for the answer */
        budget = (ngx_uint_t) (max->valuedouble / 2);

        if (budget < 1024) {
            return ngx_ailink_xreq_refuse(x, name,
                                          "\"%s\" must be at least 2048 "
                                          "with \"reasoning_effort\" on "
                                          "Anthropic models (thinking "
                                          "takes at least 1024 tokens "
                                          "of it)", name);
        }
    }

    v = ngx_ailink_json_get(out, "temperature");

    if (v && v->valuedouble != 1) {
        return ngx_ailink_xreq_refuse(x, "temperature",
                                      "\"temperature\" can only be 1 or "
                                      "unset with \"reasoning_effort\" on "
                                      "Anthropic models");
    }

    v = ngx_ailink_json_get(out, "top_p");

    if (v && v->valuedouble < 0.95) {
        return ngx_ailink_xreq_refuse(x, "top_p",
                                      "\"top_p\" must be at least 0.95 or "
                                      "unset with \"reasoning_effort\" on "
                                      "Anthropic models");
    }

    tc = ngx_ailink_json_get(out, "tool_choice");
    v = ngx_ailink_json_get(tc, "type");

    if (v && !ngx_ailink_json_is(v, "auto") && !ngx_ailink_json_is(v, "none"))
    {
        return ngx_ailink_xreq_refuse(x, "tool_choice",
                                      "\"tool_choice\" can only be "
                                      "\"auto\" or \"none\" with "
                                      "\"reasoning_effort\" on Anthropic "
                                      "models: they cannot be forced to "
                                      "call a tool while thinking");
    }

    th = cJSON_AddObjectToObject(out, "thinking");

    if (th == NULL
        || cJSON_AddStringToObject(th, "type", "enabled") == NULL
        || cJSON_AddNumberToObject(th, "budget_tokens", (double) budget)
           == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * An assistant message's "thinking_blocks" (as our responses give them)
 * back as Anthropic blocks, first in the turn as Anthropic wants them.
 * A thinking block without its text (a stream gives the text as
 * reasoning_content deltas and the signature apart) takes the message's
 * "reasoning_content".
 */

ngx_int_t
ngx_ailink_anthropic_thinking_blocks(ngx_ailink_xreq_t *x, ngx_uint_t i,
    cJSON *msg, cJSON *blocks)
{
    cJSON      *tbs, *tb, *text;
    ngx_int_t   rc;

    tbs = ngx_ailink_json_get(msg, "thinking_blocks");

    if (tbs == NULL || cJSON_IsNull(tbs)) {
        return NGX_OK;
    }

    if (!cJSON_IsArray(tbs)) {
        return ngx_ailink_xreq_refuse(x, "messages",
                                      "messages[%ui].thinking_blocks must "
                                      "be an array", i);
    }

    text = ngx_ailink_json_get(msg, "reasoning_content");

    if (!cJSON_IsString(text)) {
        text = NULL;
    }

    cJSON_ArrayForEach(tb, tbs) {
        rc = ngx_ailink_reasoning_block(x, i, tb, text, blocks);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_reasoning_block(ngx_ailink_xreq_t *x, ngx_uint_t i, cJSON *tb,
    cJSON *text, cJSON *blocks)
{
    cJSON  *type, *block, *thinking, *sig, *data;

    type = ngx_ailink_json_get(tb, "type");
    block = cJSON_CreateObject();

    if (block == NULL) {
        return NGX_ERROR;
    }

    if (ngx_ailink_json_is(type, "thinking")) {
        thinking = ngx_ailink_json_get(tb, "thinking");
        sig = ngx_ailink_json_get(tb, "signature");

        if ((thinking == NULL || cJSON_IsNull(thinking)
             || (cJSON_IsString(thinking) && ngx_ailink_json_empty(thinking)))
            && text)
        {
            thinking = text;
        }

        if (!cJSON_IsString(thinking) || !cJSON_IsString(sig)) {
            ngx_ailink_json_delete(block);
            return ngx_ailink_xreq_refuse(x, "messages",
                                          "messages[%ui].thinking_blocks: "
                                          "a thinking block needs "
                                          "\"thinking\" and \"signature\" "
                                          "strings", i);
        }

        if (cJSON_AddStringToObject(block, "type", "thinking") == NULL
            || ngx_ailink_json_add_copy(block, "thinking", thinking) == NULL
            || ngx_ailink_json_add_copy(block, "signature", sig) == NULL)
        {
            ngx_ailink_json_delete(block);
            return NGX_ERROR;
        }

    } else if (ngx_ailink_json_is(type, "redacted_thinking")) {
        data = ngx_ailink_json_get(tb, "data");

        if (!cJSON_IsString(data)) {
            ngx_ailink_json_delete(block);
            return ngx_ailink_xreq_refuse(x, "messages",
                                          "messages[%ui].thinking_blocks: "
                                          "a redacted_thinking block needs "
                                          "a \"data\" string", i);
        }

        if (cJSON_AddStringToObject(block, "type", "redacted_thinking")
            == NULL
            || ngx_ailink_json_add_copy(block, "data", data) == NULL)
        {
            ngx_ailink_json_delete(block);
            return NGX_ERROR;
        }

    } else {
        ngx_ailink_json_delete(block);
        return ngx_ailink_xreq_refuse(x, "messages",
                                      "messages[%ui].thinking_blocks: the "
                                      "type must be \"thinking\" or "
                                      "\"redacted_thinking\"", i);
    }

    cJSON_AddItemToArray(blocks, block);

    return NGX_OK;
}


/*
 * The thinking and redacted_thinking blocks of an Anthropic response as
 * "reasoning_content" (the thinking text, joined) and "thinking_blocks"
 * (each block as it came, for the next request) on the message.
 */

ngx_int_t
ngx_ailink_anthropic_reasoning(cJSON *content, cJSON *message)
{
    cJSON      *block, *type, *text, *tbs, *tb, *item;
    u_char     *buf, *p;
    size_t      len;
    ngx_str_t   s;

    tbs = NULL;
    len = 0;

    cJSON_ArrayForEach(block, content) {
        type = ngx_ailink_json_get(block, "type");

        if (!ngx_ailink_json_is(type, "thinking")
            && !ngx_ailink_json_is(type, "redacted_thinking"))
        {
            continue;
        }

        if (tbs == NULL) {
            tbs = cJSON_CreateArray();
            if (tbs == NULL) {
                return NGX_ERROR;
            }

            if (!cJSON_AddItemToObject(message, "thinking_blocks", tbs)) {
                ngx_ailink_json_delete(tbs);
                return NGX_ERROR;
            }
        }

        tb = cJSON_CreateObject();
        if (tb == NULL) {
            return NGX_ERROR;
        }

        cJSON_AddItemToArray(tbs, tb);

        if (ngx_ailink_json_add_copy(tb, "type", type) == NULL) {
            return NGX_ERROR;
        }

        cJSON_ArrayForEach(item, block) {
            if (item->string == NULL || ngx_strcmp(item->string, "type") == 0)
            {
                continue;
            }

            if (ngx_ailink_json_add_copy(tb, item->string, item) == NULL) {
                return NGX_ERROR;
            }
        }

        text = ngx_ailink_json_get(block, "thinking");

        if (cJSON_IsString(text)) {
            len += ngx_ailink_json_strlen(text);
        }
    }

    if (tbs == NULL) {
        return NGX_OK;
    }

    buf = malloc(len + 1);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    p = buf;

    cJSON_ArrayForEach(block, content) {
        text = ngx_ailink_json_get(block, "thinking");

        if (ngx_ailink_json_is(ngx_ailink_json_get(block, "type"), "thinking")
            && cJSON_IsString(text))
        {
            ngx_ailink_json_str(text, &s);
            p = ngx_cpymem(p, s.data, s.len);
        }
    }

    s.data = buf;
    s.len = p - buf;

    item = ngx_ailink_json_string(&s);
    free(buf);

    if (item == NULL) {
        return NGX_ERROR;
    }

    if (!cJSON_AddItemToObject(message, "reasoning_content", item)) {
        ngx_ailink_json_delete(item);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Gemini "thinkingConfig" in generationConfig: a budget for 2.x models, a
 * level for Gemini 3, and the thoughts themselves asked for, to come back
 * as reasoning_content.
 */

ngx_int_t
ngx_ailink_gemini_thinking(ngx_ailink_xreq_t *x, cJSON *req, cJSON *gc)
{
    cJSON       *tc;
    ngx_int_t    rc;
    ngx_uint_t   effort, v3, flash;
    const char  *level;

    rc = ngx_ailink_reasoning_effort(x, req, &effort);
    if (rc != NGX_OK) {
        return rc;
    }

    if (effort == NGX_AILINK_EFFORT_UNSET) {
        return NGX_OK;
    }

    v3 = (ngx_strlcasestrn(x->model.data, x->model.data + x->model.len,
                           (u_char *) "gemini-3", 8 - 1)
          != NULL);
    flash = (ngx_strlcasestrn(x->model.data, x->model.data + x->model.len,
                              (u_char *) "flash", 5 - 1)
             != NULL);

    tc = cJSON_AddObjectToObject(gc, "thinkingConfig");
    if (tc == NULL) {
        return NGX_ERROR;
    }

    if (effort == NGX_AILINK_EFFORT_NONE) {
        if (v3) {
            return ngx_ailink_xreq_refuse(x, "reasoning_effort",
                                          "Gemini 3 models always think: "
                                          "\"reasoning_effort\" cannot be "
                                          "\"none\"");
        }

        return cJSON_AddNumberToObject(tc, "thinkingBudget", 0)
               ? NGX_OK : NGX_ERROR;
    }

    if (cJSON_AddTrueToObject(tc, "includeThoughts") == NULL) {
        return NGX_ERROR;
    }

    if (!v3) {
        return cJSON_AddNumberToObject(tc, "thinkingBudget",
                   (double) ngx_ailink_reasoning_gemini_budget[effort])
               ? NGX_OK : NGX_ERROR;
    }

    /* Gemini 3 Pro knows "low" and "high"; Flash all four */

    level = ngx_ailink_reasoning_names[effort];

    if (!flash) {
        level = (effort <= NGX_AILINK_EFFORT_LOW) ? "low" : "high";
    }

    return cJSON_AddStringToObject(tc, "thinkingLevel", level)
           ? NGX_OK : NGX_ERROR;
}


/* a chunk whose delta is {"reasoning_content": text} */

ngx_int_t
ngx_ailink_reasoning_delta(ngx_ailink_xstream_t *st, ngx_str_t *text)
{
    cJSON  *chunk, *item;

    if (text->len == 0) {
        return NGX_OK;
    }

    if (ngx_ailink_stream_role(st) != NGX_OK) {
        return NGX_ERROR;
    }

    chunk = ngx_ailink_chunk_new(st);
    if (chunk == NULL) {
        return NGX_ERROR;
    }

    item = ngx_ailink_json_string(text);

    if (item == NULL
        || !cJSON_AddItemToObject(ngx_ailink_chunk_delta(chunk),
                                  "reasoning_content", item))
    {
        ngx_ailink_json_delete(item);
        ngx_ailink_json_delete(chunk);
        return NGX_ERROR;
    }

    return ngx_ailink_stream_emit(st, chunk);
}


/*
 * A chunk whose delta is {"thinking_blocks": [block]}: a thinking block's
 * signature (its text went as reasoning_content) or a redacted block.
 */

ngx_int_t
ngx_ailink_reasoning_block_delta(ngx_ailink_xstream_t *st, const char *type,
    const char *key, cJSON *value)
{
    cJSON  *chunk, *tbs, *tb;

    if (ngx_ailink_stream_role(st) != NGX_OK) {
        return NGX_ERROR;
    }

    chunk = ngx_ailink_chunk_new(st);
    if (chunk == NULL) {
        return NGX_ERROR;
    }

    tbs = cJSON_AddArrayToObject(ngx_ailink_chunk_delta(chunk),
                                 "thinking_blocks");
    tb = cJSON_CreateObject();

    if (tbs == NULL || tb == NULL) {
        ngx_ailink_json_delete(tb);
        ngx_ailink_json_delete(chunk);
        return NGX_ERROR;
    }

    cJSON_AddItemToArray(tbs, tb);

    if (cJSON_AddStringToObject(tb, "type", type) == NULL
        || ngx_ailink_json_add_copy(tb, key, value) == NULL)
    {
        ngx_ailink_json_delete(chunk);
        return NGX_ERROR;
    }

    return ngx_ailink_stream_emit(st, chunk);
}
