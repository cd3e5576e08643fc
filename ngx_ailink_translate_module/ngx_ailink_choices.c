
/*
 * Copyright (C) AILink
 *
 * Several choices and log probabilities, for Gemini: "n" is
 * candidateCount (each candidate a choice with its own index and finish
 * reason, in streams too), "logprobs" / "top_logprobs" are
 * responseLogprobs / logprobs, and a candidate's logprobsResult becomes
 * the choice's OpenAI "logprobs" object.
 */


#include "ngx_ailink_translate.h"


#define NGX_AILINK_GEMINI_MAX_CANDIDATES  8
#define NGX_AILINK_MAX_TOP_LOGPROBS       20
#define NGX_AILINK_MAX_TOKEN_BYTES        256


static cJSON *ngx_ailink_choices_token(cJSON *cand, ngx_uint_t top);


/* "n", "logprobs" and "top_logprobs" as generationConfig fields */

ngx_int_t
ngx_ailink_gemini_choices(ngx_ailink_xreq_t *x, cJSON *req, cJSON *gc)
{
    cJSON  *n, *lp, *top;

    n = ngx_ailink_json_get(req, "n");

    if (n && !cJSON_IsNull(n)
        && !(cJSON_IsNumber(n) && n->valuedouble >= 1
             && n->valuedouble <= NGX_AILINK_GEMINI_MAX_CANDIDATES
             && n->valuedouble == (double) (ngx_int_t) n->valuedouble))
    {
        return ngx_ailink_xreq_refuse(x, "n",
                                      "\"n\" must be an integer from 1 to "
                                      "%d for Gemini models",
                                      NGX_AILINK_GEMINI_MAX_CANDIDATES);
    }

    if (cJSON_IsNumber(n) && n->valuedouble > 1
        && cJSON_AddNumberToObject(gc, "candidateCount", n->valuedouble)
           == NULL)
    {
        return NGX_ERROR;
    }

    lp = ngx_ailink_json_get(req, "logprobs");
    top = ngx_ailink_json_get(req, "top_logprobs");

    if (top && !cJSON_IsNull(top)) {
        if (!cJSON_IsNumber(top) || top->valuedouble < 0
            || top->valuedouble > NGX_AILINK_MAX_TOP_LOGPROBS
            || top->valuedouble != (double) (ngx_int_t) top->valuedouble)
        {
            return ngx_ailink_xreq_refuse(x, "top_logprobs",
                                          "\"top_logprobs\" must be an "
                                          "integer from 0 to %d",
                                          NGX_AILINK_MAX_TOP_LOGPROBS);
        }

        if (!cJSON_IsTrue(lp)) {
            return ngx_ailink_xreq_refuse(x, "top_logprobs",
                                          "\"top_logprobs\" needs "
                                          "\"logprobs\": true");
        }
    }

    if (lp && !cJSON_IsNull(lp) && !cJSON_IsBool(lp)) {
        return ngx_ailink_xreq_refuse(x, "logprobs",
                                      "\"logprobs\" must be a boolean");
    }

    if (!cJSON_IsTrue(lp)) {
        return NGX_OK;
    }

    if (cJSON_AddTrueToObject(gc, "responseLogprobs") == NULL) {
        return NGX_ERROR;
    }

    if (cJSON_IsNumber(top) && top->valuedouble > 0
        && cJSON_AddNumberToObject(gc, "logprobs", top->valuedouble) == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * A candidate's logprobsResult as the choice's "logprobs":
 * {"content": [{token, logprob, bytes, top_logprobs: [...]}],
 *  "refusal": null}.  A candidate without one keeps "logprobs": null.
 */

ngx_int_t
ngx_ailink_gemini_logprobs(cJSON *cand, cJSON *choice)
{
    cJSON       *res, *chosen, *tops, *lp, *content, *tok, *top, *list, *c;
    cJSON       *t;
    ngx_uint_t   i;

    res = ngx_ailink_json_get(cand, "logprobsResult");
    chosen = ngx_ailink_json_get(res, "chosenCandidates");

    if (!cJSON_IsArray(chosen)) {
        return NGX_OK;
    }

    tops = ngx_ailink_json_get(res, "topCandidates");

    lp = cJSON_CreateObject();
    if (lp == NULL) {
        return NGX_ERROR;
    }

    if (ngx_ailink_json_get(choice, "logprobs")) {
        cJSON_ReplaceItemInObjectCaseSensitive(choice, "logprobs", lp);

    } else {
        cJSON_AddItemToObject(choice, "logprobs", lp);
    }

    content = cJSON_AddArrayToObject(lp, "content");

    if (content == NULL || cJSON_AddNullToObject(lp, "refusal") == NULL) {
        return NGX_ERROR;
    }

    i = 0;

    cJSON_ArrayForEach(c, chosen) {
        tok = ngx_ailink_choices_token(c, 1);
        if (tok == NULL) {
            return NGX_ERROR;
        }

        cJSON_AddItemToArray(content, tok);

        list = ngx_ailink_json_get(tok, "top_logprobs");

        cJSON_ArrayForEach(top, ngx_ailink_json_get(
                                    cJSON_GetArrayItem(tops, (int) i),
                                    "candidates"))
        {
            t = ngx_ailink_choices_token(top, 0);
            if (t == NULL) {
                return NGX_ERROR;
            }

            cJSON_AddItemToArray(list, t);
        }

        i++;
    }

    return NGX_OK;
}


/* {"token", "logprob", "bytes": [UTF-8 bytes], "top_logprobs": []?} */

static cJSON *
ngx_ailink_choices_token(cJSON *cand, ngx_uint_t top)
{
    cJSON      *tok, *t, *p, *bytes;
    ngx_str_t   s;
    ngx_uint_t  k;

    t = ngx_ailink_json_get(cand, "token");
    p = ngx_ailink_json_get(cand, "logProbability");

    tok = cJSON_CreateObject();
    if (tok == NULL) {
        return NULL;
    }

    if (cJSON_IsString(t)) {
        ngx_ailink_json_str(t, &s);

    } else {
        ngx_str_set(&s, "");
    }

    if ((cJSON_IsString(t)
         ? ngx_ailink_json_add_copy(tok, "token", t)
         : cJSON_AddStringToObject(tok, "token", ""))
        == NULL
        || cJSON_AddNumberToObject(tok, "logprob",
                                   cJSON_IsNumber(p) ? p->valuedouble : 0)
           == NULL)
    {
        goto failed;
    }

    if (s.len > NGX_AILINK_MAX_TOKEN_BYTES) {
        /* no token is this long: bounded, as OpenAI allows, by null */
        if (cJSON_AddNullToObject(tok, "bytes") == NULL) {
            goto failed;
        }

        s.len = 0;
        bytes = NULL;

    } else {
        bytes = cJSON_AddArrayToObject(tok, "bytes");
        if (bytes == NULL) {
            goto failed;
        }
    }

    for (k = 0; k < s.len; k++) {
        p = cJSON_CreateNumber((double) s.data[k]);
        if (p == NULL) {
            goto failed;
        }

        cJSON_AddItemToArray(bytes, p);
    }

    if (top && cJSON_AddArrayToObject(tok, "top_logprobs") == NULL) {
        goto failed;
    }

    return tok;

failed:

    ngx_ailink_json_delete(tok);
    return NULL;
}


/* the first chunk of choice "index" > 0 in a stream names the role */

ngx_int_t
ngx_ailink_stream_choice_role(ngx_ailink_xstream_t *st, ngx_uint_t index)
{
    cJSON       *chunk, *delta;
    ngx_uint_t   choice;

    choice = st->choice;
    st->choice = index;

    chunk = ngx_ailink_chunk_new(st);

    st->choice = choice;

    if (chunk == NULL) {
        return NGX_ERROR;
    }

    delta = ngx_ailink_chunk_delta(chunk);

    if (cJSON_AddStringToObject(delta, "role", "assistant") == NULL
        || cJSON_AddStringToObject(delta, "content", "") == NULL)
    {
        ngx_ailink_json_delete(chunk);
        return NGX_ERROR;
    }

    return ngx_ailink_stream_emit(st, chunk);
}


/* {"index": index, "delta": {}, "finish_reason": reason} */

ngx_int_t
ngx_ailink_stream_choice_finish(ngx_ailink_xstream_t *st, ngx_uint_t index,
    const char *reason)
{
    cJSON       *chunk, *choice, *item;
    ngx_uint_t   saved;

    saved = st->choice;
    st->choice = index;

    chunk = ngx_ailink_chunk_new(st);

    st->choice = saved;

    if (chunk == NULL) {
        return NGX_ERROR;
    }

    choice = cJSON_GetArrayItem(ngx_ailink_json_get(chunk, "choices"), 0);
    item = cJSON_CreateString(reason);

    if (item == NULL
        || !cJSON_ReplaceItemInObjectCaseSensitive(choice, "finish_reason",
                                                   item))
    {
        ngx_ailink_json_delete(item);
        ngx_ailink_json_delete(chunk);
        return NGX_ERROR;
    }

    return ngx_ailink_stream_emit(st, chunk);
}
