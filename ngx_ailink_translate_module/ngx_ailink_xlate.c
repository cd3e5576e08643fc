
/*
 * Copyright (C) AILink
 *
 * What the provider translators share: the OpenAI objects they produce
 * (chat.completion, chat.completion.chunk, usage) and the way an OpenAI
 * stream ends (final chunk, usage chunk when asked, "data: [DONE]").
 */


#include "ngx_ailink_translate.h"


static cJSON *
ngx_ailink_add_str(cJSON *obj, const char *key, ngx_str_t *s)
{
    cJSON  *item;
    char   *v;

    v = malloc(s->len + 1);
    if (v == NULL) {
        return NULL;
    }

    ngx_memcpy(v, s->data, s->len);
    v[s->len] = '\0';

    item = cJSON_AddStringToObject(obj, key, v);
    free(v);

    return item;
}


static cJSON *
ngx_ailink_object_new(ngx_ailink_xresp_t *x, const char *object)
{
    cJSON  *root;

    root = cJSON_CreateObject();
    if (root == NULL) {
        return NULL;
    }

    if (ngx_ailink_add_str(root, "id", &x->id) == NULL
        || cJSON_AddStringToObject(root, "object", object) == NULL
        || cJSON_AddNumberToObject(root, "created", (double) x->created)
           == NULL
        || ngx_ailink_add_str(root, "model", &x->model) == NULL)
    {
        ngx_ailink_json_delete(root);
        return NULL;
    }

    return root;
}


/* the object with "choices": [one choice], the choice handed back */

static cJSON *
ngx_ailink_choice_new(ngx_ailink_xresp_t *x, const char *object,
    cJSON **choice)
{
    cJSON  *root, *choices;

    root = ngx_ailink_object_new(x, object);
    if (root == NULL) {
        return NULL;
    }

    choices = cJSON_AddArrayToObject(root, "choices");
    *choice = cJSON_CreateObject();

    if (choices == NULL || *choice == NULL) {
        ngx_ailink_json_delete(*choice);
        ngx_ailink_json_delete(root);
        return NULL;
    }

    cJSON_AddItemToArray(choices, *choice);

    return root;
}


/* a refusal for the glue to send as a 400 about "param";
 * NGX_DECLINED, or NGX_ERROR without memory */

ngx_int_t ngx_cdecl
ngx_ailink_xreq_refuse(ngx_ailink_xreq_t *x, const char *param,
    const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    p = ngx_pnalloc(x->pool, NGX_MAX_ERROR_STR);
    if (p == NULL) {
        return NGX_ERROR;
    }

    va_start(args, fmt);
    *ngx_vslprintf(p, p + NGX_MAX_ERROR_STR - 1, fmt, args) = '\0';
    va_end(args);

    x->error = (char *) p;
    x->error_param = param;

    return NGX_DECLINED;
}


/* {"id", "object": "chat.completion.chunk", ..., "choices": [{delta}]} */

cJSON *
ngx_ailink_chunk_new(ngx_ailink_xstream_t *st)
{
    cJSON  *root, *choice;

    root = ngx_ailink_choice_new(&st->resp, "chat.completion.chunk", &choice);
    if (root == NULL) {
        return NULL;
    }

    if (cJSON_AddNumberToObject(choice, "index", (double) st->choice) == NULL
        || cJSON_AddObjectToObject(choice, "delta") == NULL
        || cJSON_AddNullToObject(choice, "logprobs") == NULL
        || cJSON_AddNullToObject(choice, "finish_reason") == NULL)
    {
        ngx_ailink_json_delete(root);
        return NULL;
    }

    return root;
}


cJSON *
ngx_ailink_chunk_delta(cJSON *chunk)
{
    cJSON  *choices;

    choices = ngx_ailink_json_get(chunk, "choices");

    return ngx_ailink_json_get(cJSON_GetArrayItem(choices, 0), "delta");
}


/* emits a chunk and frees it, whatever st->emit made of it */

ngx_int_t
ngx_ailink_stream_emit(ngx_ailink_xstream_t *st, cJSON *chunk)
{
    ngx_int_t  rc;

    rc = st->emit(st, chunk);
    ngx_ailink_json_delete(chunk);

    return rc;
}


/* the first chunk of an OpenAI stream names the role */

ngx_int_t
ngx_ailink_stream_role(ngx_ailink_xstream_t *st)
{
    cJSON  *chunk, *delta;

    if (st->role_sent) {
        return NGX_OK;
    }

    st->role_sent = 1;

    chunk = ngx_ailink_chunk_new(st);
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


/* a chunk whose delta is {"content": text} */

ngx_int_t
ngx_ailink_stream_content(ngx_ailink_xstream_t *st, const char *text)
{
    cJSON  *chunk;

    if (ngx_ailink_stream_role(st) != NGX_OK) {
        return NGX_ERROR;
    }

    chunk = ngx_ailink_chunk_new(st);
    if (chunk == NULL) {
        return NGX_ERROR;
    }

    if (cJSON_AddStringToObject(ngx_ailink_chunk_delta(chunk), "content",
                                text)
        == NULL)
    {
        ngx_ailink_json_delete(chunk);
        return NGX_ERROR;
    }

    return ngx_ailink_stream_emit(st, chunk);
}


cJSON *
ngx_ailink_usage_json(ngx_ailink_usage_t *usage)
{
    cJSON  *u, *details;

    u = cJSON_CreateObject();
    if (u == NULL) {
        return NULL;
    }

    cJSON_AddNumberToObject(u, "prompt_tokens", (double) usage->prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", (double) usage->completion);
    cJSON_AddNumberToObject(u, "total_tokens", (double) usage->total);

    details = cJSON_AddObjectToObject(u, "prompt_tokens_details");
    if (details == NULL) {
        ngx_ailink_json_delete(u);
        return NULL;
    }

    cJSON_AddNumberToObject(details, "cached_tokens", (double) usage->cached);

    if (usage->cache_write) {
        /* Anthropic's cache writes, as LiteLLM and others name them */
        cJSON_AddNumberToObject(details, "cache_creation_tokens",
                                (double) usage->cache_write);
    }

    if (usage->reasoning) {
        details = cJSON_AddObjectToObject(u, "completion_tokens_details");
        if (details == NULL) {
            ngx_ailink_json_delete(u);
            return NULL;
        }

        cJSON_AddNumberToObject(details, "reasoning_tokens",
                                (double) usage->reasoning);
    }

    return u;
}


/*
 * The final chunk of an OpenAI stream, with the finish reason, once.  A
 * provider whose usage may still follow (Gemini) stops here and finishes
 * when its stream ends.
 */

ngx_int_t
ngx_ailink_stream_final(ngx_ailink_xstream_t *st)
{
    cJSON  *chunk, *choice;

    if (st->finished) {
        return NGX_OK;
    }

    if (ngx_ailink_stream_role(st) != NGX_OK) {
        return NGX_ERROR;
    }

    st->finished = 1;

    chunk = ngx_ailink_chunk_new(st);
    if (chunk == NULL) {
        return NGX_ERROR;
    }

    choice = cJSON_GetArrayItem(ngx_ailink_json_get(chunk, "choices"), 0);
    cJSON_ReplaceItemInObjectCaseSensitive(choice, "finish_reason",
                    cJSON_CreateString(st->finish_reason
                                       ? st->finish_reason : "stop"));

    return ngx_ailink_stream_emit(st, chunk);
}


/*
 * Ends an OpenAI stream: a final chunk with the finish reason, the usage
 * chunk ("choices": []) when the client asked for it, and "data: [DONE]".
 */

ngx_int_t
ngx_ailink_stream_finish(ngx_ailink_xstream_t *st)
{
    cJSON  *chunk, *usage;

    if (st->done) {
        return NGX_OK;
    }

    if (ngx_ailink_stream_final(st) != NGX_OK) {
        return NGX_ERROR;
    }

    if (st->include_usage && st->resp.usage->known) {
        chunk = ngx_ailink_object_new(&st->resp, "chat.completion.chunk");
        if (chunk == NULL) {
            return NGX_ERROR;
        }

        usage = ngx_ailink_usage_json(st->resp.usage);

        if (usage == NULL
            || cJSON_AddArrayToObject(chunk, "choices") == NULL)
        {
            ngx_ailink_json_delete(usage);
            ngx_ailink_json_delete(chunk);
            return NGX_ERROR;
        }

        cJSON_AddItemToObject(chunk, "usage", usage);

        if (ngx_ailink_stream_emit(st, chunk) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    st->done = 1;

    return st->emit(st, NULL);
}


/*
 * A provider error in the middle of a stream: an OpenAI-style error event
 * (what OpenAI itself sends), then a clean end.
 */

ngx_int_t
ngx_ailink_stream_error(ngx_ailink_xstream_t *st, const char *type,
    const char *message)
{
    cJSON  *root, *err;

    if (st->done) {
        return NGX_OK;
    }

    root = cJSON_CreateObject();
    err = cJSON_AddObjectToObject(root, "error");

    if (err == NULL
        || cJSON_AddStringToObject(err, "type", type) == NULL
        || cJSON_AddStringToObject(err, "code", "upstream_error") == NULL
        || cJSON_AddStringToObject(err, "message", message) == NULL)
    {
        ngx_ailink_json_delete(root);
        return NGX_ERROR;
    }

    st->finished = 1;
    st->done = 1;

    if (ngx_ailink_stream_emit(st, root) != NGX_OK) {
        return NGX_ERROR;
    }

    return st->emit(st, NULL);
}


/* {"id", "object": "chat.completion", ..., "choices": [{message}]} */

cJSON *
ngx_ailink_completion_new(ngx_ailink_xresp_t *x, cJSON **message)
{
    cJSON  *root, *choice;

    root = ngx_ailink_choice_new(x, "chat.completion", &choice);
    if (root == NULL) {
        return NULL;
    }

    cJSON_AddNumberToObject(choice, "index", 0);
    *message = cJSON_AddObjectToObject(choice, "message");
    cJSON_AddNullToObject(choice, "logprobs");
    cJSON_AddNullToObject(choice, "finish_reason");

    if (*message == NULL
        || cJSON_AddStringToObject(*message, "role", "assistant") == NULL)
    {
        ngx_ailink_json_delete(root);
        return NULL;
    }

    return root;
}


/*
 * "data:image/png;base64,AAAA" → media type and base64 data.
 * NGX_DECLINED when the URL is not a data URL, NGX_ERROR when it is one
 * but not base64.
 */

ngx_int_t
ngx_ailink_data_url(ngx_pool_t *pool, const char *url, ngx_str_t *media_type,
    ngx_str_t *data)
{
    const char  *semi, *comma;

    if (ngx_strncmp(url, "data:", 5) != 0) {
        return NGX_DECLINED;
    }

    comma = strchr(url, ',');
    semi = strchr(url, ';');

    if (comma == NULL || semi == NULL || semi > comma
        || ngx_strncmp(semi, ";base64,", 8) != 0 || semi == url + 5)
    {
        return NGX_ERROR;
    }

    media_type->len = semi - (url + 5);
    media_type->data = ngx_pnalloc(pool, media_type->len + 1);
    if (media_type->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(media_type->data, url + 5, media_type->len);
    media_type->data[media_type->len] = '\0';

    /* the data itself stays in the caller's string */
    data->data = (u_char *) comma + 1;
    data->len = ngx_strlen(comma + 1);

    return NGX_OK;
}
