
/*
 * Copyright (C) AILink
 *
 * OpenAI chat.completions <-> Gemini generateContent.
 *
 * Requests: system and developer messages become systemInstruction, the
 * turns become "user" and "model" contents (consecutive turns of one role
 * merged), tool calls and tool results become functionCall and
 * functionResponse parts, tool schemas are cut down to what Gemini's Schema
 * takes.  Responses and stream chunks come back as OpenAI objects.
 *
 * Gemini 3 models return a thoughtSignature on function call parts and
 * reject the next turn unless it comes back on that part.  OpenAI clients
 * keep nothing but the tool call id, so the signature travels in it:
 * "call_<response>_<n>__thought__<base64url(signature)>".
 */


#include "ngx_ailink_translate.h"


#define NGX_AILINK_GEMINI_SIG_SEP      "__thought__"
#define NGX_AILINK_GEMINI_SKIP_SIG     "skip_thought_signature_validator"

/* bounds on what one tool schema may expand to ($ref inlining) */
#define NGX_AILINK_GEMINI_SCHEMA_DEPTH 32
#define NGX_AILINK_GEMINI_SCHEMA_NODES 4096
#define NGX_AILINK_GEMINI_SCHEMA_REFS  4


typedef struct {
    cJSON                      *root;       /* for "$ref" */
    ngx_uint_t                  nodes;      /* left to create */
    ngx_uint_t                  refs;       /* "$ref"s being expanded */
} ngx_ailink_gemini_schema_ctx_t;


/* the translator's own per-stream state, st->state */
#define NGX_AILINK_GEMINI_CHOICES      8

typedef struct {
    ngx_uint_t                  calls;      /* tool calls sent so far */
    ngx_uint_t                  more[NGX_AILINK_GEMINI_CHOICES];
                                            /* the same, candidates 1+ */
    ngx_uint_t                  seen;       /* candidates seen, a bit each */
    ngx_uint_t                  ended;      /* candidates finished */
    const char                 *finish;     /* candidate 0's reason */
} ngx_ailink_gemini_stream_t;


static ngx_int_t ngx_ailink_gemini_message(ngx_ailink_xreq_t *x,
    cJSON *messages, cJSON *msg, ngx_uint_t i, cJSON *sys, cJSON *parts,
    const char **role);
static ngx_int_t ngx_ailink_gemini_text_content(ngx_ailink_xreq_t *x,
    cJSON *content, ngx_uint_t i, cJSON *parts);
static ngx_int_t ngx_ailink_gemini_user_content(ngx_ailink_xreq_t *x,
    cJSON *content, ngx_uint_t i, cJSON *parts);
static ngx_int_t ngx_ailink_gemini_media(ngx_ailink_xreq_t *x,
    cJSON *item, ngx_uint_t i, cJSON *parts);
static const char *ngx_ailink_gemini_mime(const char *url);
static ngx_int_t ngx_ailink_gemini_assistant(ngx_ailink_xreq_t *x,
    cJSON *msg, ngx_uint_t i, cJSON *parts);
static ngx_int_t ngx_ailink_gemini_function_call(ngx_ailink_xreq_t *x,
    cJSON *function, const char *id, ngx_uint_t i, cJSON *parts);
static ngx_int_t ngx_ailink_gemini_signature(const char *id, cJSON *part);
static ngx_int_t ngx_ailink_gemini_tool_result(ngx_ailink_xreq_t *x,
    cJSON *messages, cJSON *msg, ngx_uint_t i, cJSON *parts);
static cJSON *ngx_ailink_gemini_tool_name(cJSON *messages, cJSON *msg,
    const char *id);
static ngx_int_t ngx_ailink_gemini_merge(cJSON *contents, cJSON *parts,
    const char *role);
static void ngx_ailink_gemini_skip_signatures(cJSON *contents);
static ngx_int_t ngx_ailink_gemini_tools(ngx_ailink_xreq_t *x, cJSON *req,
    cJSON *body);
static ngx_int_t ngx_ailink_gemini_tool_choice(ngx_ailink_xreq_t *x,
    cJSON *req, cJSON *body);
static ngx_int_t ngx_ailink_gemini_generation(ngx_ailink_xreq_t *x,
    cJSON *req, cJSON *body);
static ngx_int_t ngx_ailink_gemini_safety(ngx_ailink_xreq_t *x, cJSON *body);
static cJSON *ngx_ailink_gemini_clean_schema(cJSON *schema);
static cJSON *ngx_ailink_gemini_schema(ngx_ailink_gemini_schema_ctx_t *sc,
    cJSON *s, ngx_uint_t depth);
static ngx_int_t ngx_ailink_gemini_schema_types(cJSON *out, cJSON *types);
static ngx_int_t ngx_ailink_gemini_schema_any(
    ngx_ailink_gemini_schema_ctx_t *sc, cJSON *out, cJSON *list,
    ngx_uint_t depth);
static void ngx_ailink_gemini_schema_merge(cJSON *out, cJSON *from);
static void ngx_ailink_gemini_schema_required(cJSON *out);
static cJSON *ngx_ailink_gemini_schema_ref(cJSON *root, const char *ref);

static cJSON *ngx_ailink_gemini_choice(cJSON *choices, ngx_uint_t index,
    cJSON **message);
static ngx_int_t ngx_ailink_gemini_candidate(ngx_ailink_xresp_t *x,
    cJSON *cand, cJSON *choice, cJSON *message, ngx_uint_t *calls);
static char *ngx_ailink_gemini_parts_text(cJSON *parts, ngx_uint_t thought,
    ngx_uint_t *found);
static cJSON *ngx_ailink_gemini_tool_call(ngx_ailink_xresp_t *x,
    cJSON *part, ngx_uint_t n, ngx_int_t index);
static char *ngx_ailink_gemini_call_id(ngx_ailink_xresp_t *x, ngx_uint_t n,
    cJSON *signature);
static const char *ngx_ailink_gemini_finish(cJSON *reason, ngx_uint_t calls);
static ngx_uint_t ngx_ailink_gemini_usage(ngx_ailink_usage_t *usage,
    cJSON *meta);
static ngx_int_t ngx_ailink_gemini_stream_error(ngx_ailink_xstream_t *st,
    cJSON *err);
static ngx_int_t ngx_ailink_gemini_stream_cand(ngx_ailink_xstream_t *st,
    ngx_ailink_gemini_stream_t *gs, cJSON *cand, ngx_uint_t k);
static ngx_int_t ngx_ailink_gemini_stream_parts(ngx_ailink_xstream_t *st,
    ngx_uint_t *calls, cJSON *cand, cJSON *parts);
static cJSON *ngx_ailink_gemini_new_part(cJSON *parts);
static ngx_int_t ngx_ailink_gemini_add_text(cJSON *parts, cJSON *text);
static ngx_int_t ngx_ailink_gemini_add(cJSON *obj, const char *key,
    cJSON *item);
static double ngx_ailink_gemini_int32(double d);


/* cJSON_HasObjectItem() ignores case; JSON keys do not */
#define ngx_ailink_gemini_has(obj, key)                                       \
    (ngx_ailink_json_get(obj, key) != NULL)


/* Gemini Schema fields copied as they are */
static const char  *ngx_ailink_gemini_schema_keys[] = {
    "title", "description", "nullable", "enum", "maxItems", "minItems",
    "required", "minProperties", "maxProperties", "minLength", "maxLength",
    "pattern", "example", "propertyOrdering", "default", "minimum",
    "maximum", NULL
};

/* the formats Gemini's Schema accepts; others ("uri", "email") it refuses */
static const char  *ngx_ailink_gemini_schema_formats[] = {
    "enum", "date-time", "int32", "int64", "float", "double", NULL
};


/* OpenAI chat.completions request -> GenerateContentRequest */

cJSON *
ngx_ailink_gemini_request(ngx_ailink_xreq_t *x, cJSON *req)
{
    cJSON       *body, *messages, *msg, *contents, *sys, *parts, *si;
    ngx_int_t    rc;
    ngx_uint_t   i;
    const char  *role;

    messages = ngx_ailink_json_get(req, "messages");

    if (!cJSON_IsArray(messages) || cJSON_GetArraySize(messages) == 0) {
        (void) ngx_ailink_xreq_refuse(x, "messages", "\"messages\" must be "
                                      "a non-empty array");
        return NULL;
    }

    body = cJSON_CreateObject();
    sys = cJSON_CreateArray();

    if (body == NULL || sys == NULL) {
        goto failed;
    }

    contents = cJSON_AddArrayToObject(body, "contents");
    if (contents == NULL) {
        goto failed;
    }

    i = 0;

    cJSON_ArrayForEach(msg, messages) {
        parts = cJSON_CreateArray();
        if (parts == NULL) {
            goto failed;
        }

        role = NULL;

        rc = ngx_ailink_gemini_message(x, messages, msg, i, sys, parts,
                                       &role);

        if (rc == NGX_OK && role != NULL) {
            rc = ngx_ailink_gemini_merge(contents, parts, role);
        }

        ngx_ailink_json_delete(parts);

        if (rc != NGX_OK) {
            goto failed;
        }

        i++;
    }

    if (cJSON_GetArraySize(contents) == 0) {
        (void) ngx_ailink_xreq_refuse(x, "messages", "\"messages\" must "
                                      "hold at least one user or assistant "
                                      "message with content");
        goto failed;
    }

    if (ngx_strnstr(x->model.data, "gemini-3", x->model.len) != NULL) {
        ngx_ailink_gemini_skip_signatures(contents);
    }

    if (cJSON_GetArraySize(sys) > 0) {
        si = cJSON_AddObjectToObject(body, "systemInstruction");

        if (si == NULL || !cJSON_AddItemToObject(si, "parts", sys)) {
            goto failed;
        }

        sys = NULL;
    }

    if (ngx_ailink_gemini_tools(x, req, body) != NGX_OK
        || ngx_ailink_gemini_tool_choice(x, req, body) != NGX_OK
        || ngx_ailink_gemini_structured(x, req, body) != NGX_OK
        || ngx_ailink_gemini_generation(x, req, body) != NGX_OK
        || ngx_ailink_gemini_safety(x, body) != NGX_OK)
    {
        goto failed;
    }

    ngx_ailink_json_delete(sys);

    return body;

failed:

    ngx_ailink_json_delete(sys);
    ngx_ailink_json_delete(body);

    return NULL;
}


/*
 * One OpenAI message: its parts go to "parts" and *role is set to the
 * Gemini role of the turn, or stays NULL (system messages, whose text
 * goes to "sys").
 */

static ngx_int_t
ngx_ailink_gemini_message(ngx_ailink_xreq_t *x, cJSON *messages, cJSON *msg,
    ngx_uint_t i, cJSON *sys, cJSON *parts, const char **role)
{
    cJSON       *content;
    const char  *r;

    if (!cJSON_IsObject(msg)) {
        return ngx_ailink_xreq_refuse(x, "messages", "messages[%ui] is not "
                                      "an object", i);
    }

    r = cJSON_GetStringValue(ngx_ailink_json_get(msg, "role"));

    if (r == NULL) {
        return ngx_ailink_xreq_refuse(x, "messages", "messages[%ui].role "
                                      "must be a string", i);
    }

    content = ngx_ailink_json_get(msg, "content");

    if (ngx_strcmp(r, "system") == 0 || ngx_strcmp(r, "developer") == 0) {
        return ngx_ailink_gemini_text_content(x, content, i, sys);
    }

    if (ngx_strcmp(r, "user") == 0) {
        *role = "user";
        return ngx_ailink_gemini_user_content(x, content, i, parts);
    }

    if (ngx_strcmp(r, "assistant") == 0) {
        *role = "model";
        return ngx_ailink_gemini_assistant(x, msg, i, parts);
    }

    if (ngx_strcmp(r, "tool") == 0 || ngx_strcmp(r, "function") == 0) {
        *role = "user";
        return ngx_ailink_gemini_tool_result(x, messages, msg, i, parts);
    }

    return ngx_ailink_xreq_refuse(x, "messages", "messages[%ui].role \"%s\" "
                                  "is not supported", i, r);
}


/* a string, or an array of text parts (system messages, assistant text) */

static ngx_int_t
ngx_ailink_gemini_text_content(ngx_ailink_xreq_t *x, cJSON *content,
    ngx_uint_t i, cJSON *parts)
{
    cJSON       *part, *text;
    const char  *type;

    if (content == NULL || cJSON_IsNull(content)) {
        return NGX_OK;
    }

    if (cJSON_IsString(content)) {
        return ngx_ailink_gemini_add_text(parts, content);
    }

    if (!cJSON_IsArray(content)) {
        return ngx_ailink_xreq_refuse(x, "messages", "messages[%ui].content "
                                      "must be a string or an array", i);
    }

    cJSON_ArrayForEach(part, content) {
        type = cJSON_GetStringValue(ngx_ailink_json_get(part, "type"));

        if (type != NULL && ngx_strcmp(type, "refusal") == 0) {
            text = ngx_ailink_json_get(part, "refusal");

        } else if (type != NULL && ngx_strcmp(type, "text") == 0) {
            text = ngx_ailink_json_get(part, "text");

        } else {
            return ngx_ailink_xreq_refuse(x, "messages",
                                          "messages[%ui].content: only text "
                                          "parts are allowed here", i);
        }

        if (!cJSON_IsString(text)) {
            return ngx_ailink_xreq_refuse(x, "messages",
                                          "messages[%ui].content: a text "
                                          "part without text", i);
        }

        if (ngx_ailink_gemini_add_text(parts, text) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_gemini_user_content(ngx_ailink_xreq_t *x, cJSON *content,
    ngx_uint_t i, cJSON *parts)
{
    cJSON       *part, *item, *inline_data, *data;
    ngx_int_t    rc;
    const char  *type, *s, *format;

    if (content == NULL || cJSON_IsNull(content)) {
        return NGX_OK;
    }

    if (cJSON_IsString(content)) {
        return ngx_ailink_gemini_add_text(parts, content);
    }

    if (!cJSON_IsArray(content)) {
        return ngx_ailink_xreq_refuse(x, "messages", "messages[%ui].content "
                                      "must be a string or an array", i);
    }

    cJSON_ArrayForEach(part, content) {
        type = cJSON_GetStringValue(ngx_ailink_json_get(part, "type"));

        if (type == NULL) {
            return ngx_ailink_xreq_refuse(x, "messages",
                                          "messages[%ui].content: a part "
                                          "without a type", i);
        }

        if (ngx_strcmp(type, "text") == 0) {
            item = ngx_ailink_json_get(part, "text");

            if (!cJSON_IsString(item)) {
                return ngx_ailink_xreq_refuse(x, "messages",
                                              "messages[%ui].content: a "
                                              "text part without text", i);
            }

            rc = ngx_ailink_gemini_add_text(parts, item);

        } else if (ngx_strcmp(type, "image_url") == 0) {
            item = ngx_ailink_json_get(part, "image_url");

            if (!cJSON_IsString(item)) {
                item = ngx_ailink_json_get(item, "url");
            }

            s = cJSON_GetStringValue(item);

            if (s == NULL) {
                return ngx_ailink_xreq_refuse(x, "messages",
                                              "messages[%ui].content: an "
                                              "image_url part without a "
                                              "url", i);
            }

            rc = ngx_ailink_gemini_media(x, item, i, parts);

        } else if (ngx_strcmp(type, "file") == 0) {
            item = ngx_ailink_json_get(ngx_ailink_json_get(part, "file"),
                                       "file_data");
            s = cJSON_GetStringValue(item);

            if (s == NULL) {
                return ngx_ailink_xreq_refuse(x, "messages",
                                              "messages[%ui].content: "
                                              "Gemini takes files as "
                                              "file_data (a data: URL), "
                                              "not by file_id", i);
            }

            rc = ngx_ailink_gemini_media(x, item, i, parts);

        } else if (ngx_strcmp(type, "input_audio") == 0) {
            item = ngx_ailink_json_get(part, "input_audio");
            data = ngx_ailink_json_get(item, "data");
            format = cJSON_GetStringValue(ngx_ailink_json_get(item, "format"));

            if (!cJSON_IsString(data) || format == NULL
                || (ngx_strcmp(format, "wav") != 0
                    && ngx_strcmp(format, "mp3") != 0))
            {
                return ngx_ailink_xreq_refuse(x, "messages",
                                              "messages[%ui].content: "
                                              "input_audio needs data and "
                                              "a format of wav or mp3", i);
            }

            item = ngx_ailink_gemini_new_part(parts);
            inline_data = cJSON_AddObjectToObject(item, "inlineData");

            if (inline_data == NULL
                || cJSON_AddStringToObject(inline_data, "mimeType",
                                           format[0] == 'w' ? "audio/wav"
                                                            : "audio/mp3")
                   == NULL
                || ngx_ailink_json_add_copy(inline_data, "data", data) == NULL)
            {
                return NGX_ERROR;
            }

            rc = NGX_OK;

        } else {
            return ngx_ailink_xreq_refuse(x, "messages",
                                          "messages[%ui].content: part type "
                                          "\"%s\" is not supported for "
                                          "Gemini", i, type);
        }

        if (rc != NGX_OK) {
            return rc;
        }
    }

    return NGX_OK;
}


/* an image or file URL: data: inline, http(s) and gs: by reference */

static ngx_int_t
ngx_ailink_gemini_media(ngx_ailink_xreq_t *x, cJSON *item, ngx_uint_t i,
    cJSON *parts)
{
    cJSON       *part, *data;
    size_t       len;
    ngx_int_t    rc;
    ngx_str_t    media_type, payload;
    const char  *mime, *url;

    url = item->valuestring;

    /* a URL with "\u0000" in it is no URL: refused, not cut short */
    rc = (item->type & NGX_AILINK_JSON_SIZED)
         ? NGX_ERROR : ngx_ailink_data_url(x->pool, url, &media_type, &payload);

    if (rc == NGX_ERROR) {
        return ngx_ailink_xreq_refuse(x, "messages", "messages[%ui].content: "
                                      "a data: URL must be base64 with a "
                                      "media type", i);
    }

    part = ngx_ailink_gemini_new_part(parts);

    if (rc == NGX_OK) {
        data = cJSON_AddObjectToObject(part, "inlineData");

        /* both are NUL-terminated: the media type copied, the data the tail */
        if (data == NULL
            || cJSON_AddStringToObject(data, "mimeType",
                                       (char *) media_type.data) == NULL
            || cJSON_AddStringToObject(data, "data", (char *) payload.data)
               == NULL)
        {
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    len = ngx_strlen(url);

    if (ngx_strncasecmp((u_char *) url, (u_char *) "https://", 8) != 0
        && ngx_strncasecmp((u_char *) url, (u_char *) "http://", 7) != 0
        && ngx_strncasecmp((u_char *) url, (u_char *) "gs://", 5) != 0)
    {
        return ngx_ailink_xreq_refuse(x, "messages", "messages[%ui].content: "
                                      "unsupported media URL \"%*s%s\": use "
                                      "a data: or https: URL", i,
                                      ngx_min(len, 64), url,
                                      len > 64 ? "..." : "");
    }

    mime = ngx_ailink_gemini_mime(url);

    if (mime == NULL) {
        return ngx_ailink_xreq_refuse(x, "messages", "messages[%ui].content: "
                                      "cannot tell the media type of "
                                      "\"%*s%s\" (Gemini needs one): use a "
                                      "URL ending in .png, .jpg, .jpeg, "
                                      ".gif, .webp or .pdf, or a data: URL",
                                      i, ngx_min(len, 64), url,
                                      len > 64 ? "..." : "");
    }

    data = cJSON_AddObjectToObject(part, "fileData");

    if (data == NULL
        || cJSON_AddStringToObject(data, "mimeType", mime) == NULL
        || cJSON_AddStringToObject(data, "fileUri", url) == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the media type of a URL from the extension of its path */

static const char *
ngx_ailink_gemini_mime(const char *url)
{
    size_t       len;
    const char  *end, *dot, *p;

    end = url + strcspn(url, "?#");
    dot = NULL;

    for (p = url; p < end; p++) {
        if (*p == '/') {
            dot = NULL;

        } else if (*p == '.') {
            dot = p + 1;
        }
    }

    if (dot == NULL) {
        return NULL;
    }

    len = end - dot;

#define ngx_ailink_gemini_ext(ext)                                            \
    (len == sizeof(ext) - 1                                                   \
     && ngx_strncasecmp((u_char *) dot, (u_char *) ext, len) == 0)

    if (ngx_ailink_gemini_ext("png")) {
        return "image/png";
    }

    if (ngx_ailink_gemini_ext("jpg") || ngx_ailink_gemini_ext("jpeg")) {
        return "image/jpeg";
    }

    if (ngx_ailink_gemini_ext("gif")) {
        return "image/gif";
    }

    if (ngx_ailink_gemini_ext("webp")) {
        return "image/webp";
    }

    if (ngx_ailink_gemini_ext("pdf")) {
        return "application/pdf";
    }

#undef ngx_ailink_gemini_ext

    return NULL;
}


static ngx_int_t
ngx_ailink_gemini_assistant(ngx_ailink_xreq_t *x, cJSON *msg, ngx_uint_t i,
    cJSON *parts)
{
    cJSON       *calls, *call, *function;
    ngx_int_t    rc;
    const char  *id;

    rc = ngx_ailink_gemini_text_content(x,
                              ngx_ailink_json_get(msg, "content"), i, parts);
    if (rc != NGX_OK) {
        return rc;
    }

    calls = ngx_ailink_json_get(msg, "tool_calls");

    if (calls != NULL && !cJSON_IsNull(calls) && !cJSON_IsArray(calls)) {
        return ngx_ailink_xreq_refuse(x, "messages", "messages[%ui]."
                                      "tool_calls must be an array", i);
    }

    cJSON_ArrayForEach(call, calls) {
        id = cJSON_GetStringValue(ngx_ailink_json_get(call, "id"));
        function = ngx_ailink_json_get(call, "function");

        rc = ngx_ailink_gemini_function_call(x, function, id, i, parts);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    /* the deprecated single "function_call" */
    function = ngx_ailink_json_get(msg, "function_call");

    if (cJSON_IsObject(function)) {
        return ngx_ailink_gemini_function_call(x, function, NULL, i, parts);
    }

    return NGX_OK;
}


/* {"name", "arguments": "<json>"} -> {"functionCall": {name, args}} */

static ngx_int_t
ngx_ailink_gemini_function_call(ngx_ailink_xreq_t *x, cJSON *function,
    const char *id, ngx_uint_t i, cJSON *parts)
{
    u_char      *p, *last;
    cJSON       *part, *fc, *args, *item;
    ngx_str_t    arguments;
    const char  *name;

    item = ngx_ailink_json_get(function, "name");
    name = cJSON_GetStringValue(item);

    if (name == NULL || ngx_ailink_json_empty(item)) {
        return ngx_ailink_xreq_refuse(x, "messages", "messages[%ui]: a tool "
                                      "call without a function name", i);
    }

    args = ngx_ailink_json_get(function, "arguments");
    arguments.len = 0;
    arguments.data = (u_char *) "";

    if (cJSON_IsString(args)) {
        ngx_ailink_json_str(args, &arguments);
    }

    last = arguments.data + arguments.len;

    for (p = arguments.data;
         p < last && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n');
         p++)
    {
        /* void */
    }

    if (p == last) {
        args = cJSON_CreateObject();

    } else {
        args = ngx_ailink_json_parse(&arguments);

        if (!cJSON_IsObject(args)) {
            ngx_ailink_json_delete(args);
            return ngx_ailink_xreq_refuse(x, "messages", "messages[%ui]: "
                                          "the arguments of tool call "
                                          "\"%s\" are not a JSON object",
                                          i, name);
        }
    }

    part = ngx_ailink_gemini_new_part(parts);
    fc = cJSON_AddObjectToObject(part, "functionCall");

    if (fc == NULL || ngx_ailink_json_add_copy(fc, "name", item) == NULL) {
        ngx_ailink_json_delete(args);
        return NGX_ERROR;
    }

    if (ngx_ailink_gemini_add(fc, "args", args) != NGX_OK) {
        return NGX_ERROR;
    }

    if (id != NULL) {
        return ngx_ailink_gemini_signature(id, part);
    }

    return NGX_OK;
}


/* restores the thoughtSignature a tool call id carries */

static ngx_int_t
ngx_ailink_gemini_signature(const char *id, cJSON *part)
{
    char        *sig;
    cJSON       *item;
    ngx_str_t    src, dst;
    const char  *p;

    p = strstr(id, NGX_AILINK_GEMINI_SIG_SEP);
    if (p == NULL) {
        return NGX_OK;
    }

    src.data = (u_char *) p + sizeof(NGX_AILINK_GEMINI_SIG_SEP) - 1;
    src.len = ngx_strlen(src.data);

    if (src.len == 0) {
        return NGX_OK;
    }

    sig = malloc(ngx_base64_decoded_length(src.len) + 1);
    if (sig == NULL) {
        return NGX_ERROR;
    }

    dst.data = (u_char *) sig;

    if (strspn((char *) src.data, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "abcdefghijklmnopqrstuvwxyz0123456789-_")
        == src.len
        && ngx_decode_base64url(&dst, &src) == NGX_OK
        && memchr(dst.data, '\0', dst.len) == NULL)
    {
        sig[dst.len] = '\0';
        item = cJSON_AddStringToObject(part, "thoughtSignature", sig);

    } else {
        /* not ours: a signature a client put in the id as it was */
        item = cJSON_AddStringToObject(part, "thoughtSignature",
                                       (char *) src.data);
    }

    free(sig);

    return item ? NGX_OK : NGX_ERROR;
}


/* a "tool" message -> {"functionResponse": {name, response}} */

static ngx_int_t
ngx_ailink_gemini_tool_result(ngx_ailink_xreq_t *x, cJSON *messages,
    cJSON *msg, ngx_uint_t i, cJSON *parts)
{
    u_char      *p;
    cJSON       *content, *item, *t, *part, *fr, *response, *name;
    ngx_str_t    text, s;
    const char  *id;

    id = cJSON_GetStringValue(ngx_ailink_json_get(msg, "tool_call_id"));

    if (id != NULL) {
        name = ngx_ailink_gemini_tool_name(messages, msg, id);

        if (name == NULL) {
            return ngx_ailink_xreq_refuse(x, "messages", "messages[%ui]: "
                                          "tool_call_id \"%s\" answers no "
                                          "earlier assistant tool call",
                                          i, id);
        }

    } else {
        name = ngx_ailink_json_get(msg, "name");

        if (!cJSON_IsString(name)) {
            return ngx_ailink_xreq_refuse(x, "messages", "messages[%ui]: a "
                                          "tool message needs a "
                                          "tool_call_id", i);
        }
    }

    content = ngx_ailink_json_get(msg, "content");

    if (cJSON_IsString(content)) {
        ngx_ailink_json_str(content, &text);

    } else if (cJSON_IsArray(content)) {
        text.len = 0;

        cJSON_ArrayForEach(item, content) {
            t = ngx_ailink_json_get(item, "text");
            text.len += cJSON_IsString(t) ? ngx_ailink_json_strlen(t) : 0;
        }

        text.data = ngx_pnalloc(x->pool, text.len + 1);
        if (text.data == NULL) {
            return NGX_ERROR;
        }

        p = text.data;

        cJSON_ArrayForEach(item, content) {
            t = ngx_ailink_json_get(item, "text");

            if (cJSON_IsString(t)) {
                ngx_ailink_json_str(t, &s);
                p = ngx_cpymem(p, s.data, s.len);
            }
        }

    } else if (content == NULL || cJSON_IsNull(content)) {
        ngx_str_set(&text, "");

    } else {
        return ngx_ailink_xreq_refuse(x, "messages", "messages[%ui].content "
                                      "must be a string or an array", i);
    }

    /* a result that is a JSON object is the response object itself */
    response = ngx_ailink_json_parse(&text);

    if (!cJSON_IsObject(response)) {
        ngx_ailink_json_delete(response);

        response = cJSON_CreateObject();
        if (response == NULL
            || ngx_ailink_gemini_add(response, "content",
                                     ngx_ailink_json_string(&text))
               != NGX_OK)
        {
            ngx_ailink_json_delete(response);
            return NGX_ERROR;
        }
    }

    part = ngx_ailink_gemini_new_part(parts);
    fr = cJSON_AddObjectToObject(part, "functionResponse");

    if (fr == NULL || ngx_ailink_json_add_copy(fr, "name", name) == NULL) {
        ngx_ailink_json_delete(response);
        return NGX_ERROR;
    }

    return ngx_ailink_gemini_add(fr, "response", response);
}


/* the name of the latest assistant tool call with this id before msg */

static cJSON *
ngx_ailink_gemini_tool_name(cJSON *messages, cJSON *msg, const char *id)
{
    cJSON       *m, *call, *n, *name;
    const char  *s;

    name = NULL;

    cJSON_ArrayForEach(m, messages) {
        if (m == msg) {
            break;
        }

        cJSON_ArrayForEach(call,
                           ngx_ailink_json_get(m, "tool_calls"))
        {
            s = cJSON_GetStringValue(ngx_ailink_json_get(call, "id"));

            if (s != NULL && ngx_strcmp(s, id) == 0) {
                n = ngx_ailink_json_get(ngx_ailink_json_get(call, "function"),
                                        "name");
                if (cJSON_IsString(n)) {
                    name = n;
                }
            }
        }
    }

    return name;
}


/* appends a message's parts to the last turn when the role is the same */

static ngx_int_t
ngx_ailink_gemini_merge(cJSON *contents, cJSON *parts, const char *role)
{
    cJSON       *turn, *turn_parts, *part;
    const char  *last;

    if (cJSON_GetArraySize(parts) == 0) {
        return NGX_OK;
    }

    turn = cJSON_GetArrayItem(contents, cJSON_GetArraySize(contents) - 1);
    last = cJSON_GetStringValue(ngx_ailink_json_get(turn, "role"));

    if (last != NULL && ngx_strcmp(last, role) == 0) {
        turn_parts = ngx_ailink_json_get(turn, "parts");

    } else {
        turn = cJSON_CreateObject();

        if (turn == NULL || !cJSON_AddItemToArray(contents, turn)) {
            ngx_ailink_json_delete(turn);
            return NGX_ERROR;
        }

        if (cJSON_AddStringToObject(turn, "role", role) == NULL) {
            return NGX_ERROR;
        }

        turn_parts = cJSON_AddArrayToObject(turn, "parts");
        if (turn_parts == NULL) {
            return NGX_ERROR;
        }
    }

    while (parts->child) {
        part = cJSON_DetachItemFromArray(parts, 0);
        cJSON_AddItemToArray(turn_parts, part);
    }

    return NGX_OK;
}


/*
 * Gemini 3 refuses a model turn whose first function call has no
 * signature, which is every call another model made or a client lost the
 * id of.  Google documents this value for exactly that case; a call whose
 * signature came back keeps it.
 */

static void
ngx_ailink_gemini_skip_signatures(cJSON *contents)
{
    cJSON       *turn, *part;
    const char  *role;

    cJSON_ArrayForEach(turn, contents) {
        role = cJSON_GetStringValue(ngx_ailink_json_get(turn, "role"));

        if (role == NULL || ngx_strcmp(role, "model") != 0) {
            continue;
        }

        cJSON_ArrayForEach(part,
                           ngx_ailink_json_get(turn, "parts"))
        {
            if (!ngx_ailink_gemini_has(part, "functionCall")) {
                continue;
            }

            if (!ngx_ailink_gemini_has(part, "thoughtSignature")) {
                /* without memory the request goes without: Gemini says why */
                (void) cJSON_AddStringToObject(part, "thoughtSignature",
                                               NGX_AILINK_GEMINI_SKIP_SIG);
            }

            break;
        }
    }
}


/* tools[].function -> tools[0].functionDeclarations[] */

static ngx_int_t
ngx_ailink_gemini_tools(ngx_ailink_xreq_t *x, cJSON *req, cJSON *body)
{
    cJSON       *tools, *tool, *fn, *decls, *decl, *item, *params, *props;
    cJSON       *name;
    ngx_uint_t   i;
    const char  *type;

    tools = ngx_ailink_json_get(req, "tools");

    if (tools == NULL || cJSON_IsNull(tools)) {
        return NGX_OK;
    }

    if (!cJSON_IsArray(tools)) {
        return ngx_ailink_xreq_refuse(x, "tools", "\"tools\" must be an "
                                      "array");
    }

    decls = NULL;
    i = 0;

    cJSON_ArrayForEach(tool, tools) {
        type = cJSON_GetStringValue(ngx_ailink_json_get(tool, "type"));
        fn = ngx_ailink_json_get(tool, "function");

        if (type != NULL && ngx_strcmp(type, "function") != 0) {
            return ngx_ailink_xreq_refuse(x, "tools", "tools[%ui]: tool "
                                          "type \"%s\" is not supported "
                                          "for Gemini", i, type);
        }

        name = ngx_ailink_json_get(fn, "name");

        if (!cJSON_IsString(name)) {
            return ngx_ailink_xreq_refuse(x, "tools", "tools[%ui].function."
                                          "name is required", i);
        }

        if (decls == NULL) {
            item = ngx_ailink_gemini_new_part(cJSON_AddArrayToObject(body,
                                                                     "tools"));
            decls = cJSON_AddArrayToObject(item, "functionDeclarations");

            if (decls == NULL) {
                return NGX_ERROR;
            }
        }

        decl = ngx_ailink_gemini_new_part(decls);

        if (decl == NULL
            || ngx_ailink_json_add_copy(decl, "name", name) == NULL)
        {
            return NGX_ERROR;
        }

        item = ngx_ailink_json_get(fn, "description");

        if (cJSON_IsString(item)
            && ngx_ailink_json_add_copy(decl, "description", item) == NULL)
        {
            return NGX_ERROR;
        }

        item = ngx_ailink_json_get(fn, "parameters");

        if (cJSON_IsObject(item)) {
            params = ngx_ailink_gemini_clean_schema(item);
            if (params == NULL) {
                return NGX_ERROR;
            }

            /* Gemini refuses an OBJECT with no properties: leave it out */
            props = ngx_ailink_json_get(params, "properties");

            if (props == NULL || props->child == NULL) {
                ngx_ailink_json_delete(params);

            } else if (ngx_ailink_gemini_add(decl, "parameters", params)
                       != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        i++;
    }

    return NGX_OK;
}


/* "auto" | "none" | "required" | {"function": {"name"}} -> toolConfig */

static ngx_int_t
ngx_ailink_gemini_tool_choice(ngx_ailink_xreq_t *x, cJSON *req, cJSON *body)
{
    cJSON       *choice, *fcc, *names, *name;
    const char  *mode;

    choice = ngx_ailink_json_get(req, "tool_choice");

    if (choice == NULL || cJSON_IsNull(choice)
        || !ngx_ailink_gemini_has(body, "tools"))
    {
        return NGX_OK;
    }

    name = NULL;

    if (cJSON_IsString(choice)) {
        if (ngx_ailink_json_is(choice, "auto")) {
            mode = "AUTO";

        } else if (ngx_ailink_json_is(choice, "none")) {
            mode = "NONE";

        } else if (ngx_ailink_json_is(choice, "required")) {
            mode = "ANY";

        } else {
            return ngx_ailink_xreq_refuse(x, "tool_choice", "tool_choice "
                                          "\"%s\" is not one of auto, "
                                          "none, required",
                                          choice->valuestring);
        }

    } else {
        name = ngx_ailink_json_get(ngx_ailink_json_get(choice, "function"),
                                   "name");

        if (!cJSON_IsString(name)) {
            return ngx_ailink_xreq_refuse(x, "tool_choice", "tool_choice "
                                          "must be a string or "
                                          "{\"type\": \"function\", "
                                          "\"function\": {\"name\"}}");
        }

        mode = "ANY";
    }

    fcc = cJSON_AddObjectToObject(cJSON_AddObjectToObject(body, "toolConfig"),
                                  "functionCallingConfig");

    if (fcc == NULL || cJSON_AddStringToObject(fcc, "mode", mode) == NULL) {
        return NGX_ERROR;
    }

    if (name != NULL) {
        names = cJSON_AddArrayToObject(fcc, "allowedFunctionNames");

        if (names == NULL
            || ngx_ailink_json_add_copy(names, NULL, name) == NULL)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_gemini_generation(ngx_ailink_xreq_t *x, cJSON *req, cJSON *body)
{
    cJSON       *gc, *item, *stop, *s, *schema;
    const char  *type;

    gc = cJSON_CreateObject();
    if (gc == NULL) {
        return NGX_ERROR;
    }

    item = ngx_ailink_json_get(req, "temperature");

    if (cJSON_IsNumber(item)
        && ngx_ailink_json_add_copy(gc, "temperature", item) == NULL)
    {
        goto failed;
    }

    item = ngx_ailink_json_get(req, "top_p");

    if (cJSON_IsNumber(item)
        && ngx_ailink_json_add_copy(gc, "topP", item) == NULL)
    {
        goto failed;
    }

    item = ngx_ailink_json_get(req, "max_completion_tokens");

    if (!cJSON_IsNumber(item)) {
        item = ngx_ailink_json_get(req, "max_tokens");
    }

    if (cJSON_IsNumber(item)
        && cJSON_AddNumberToObject(gc, "maxOutputTokens",
                                   ngx_ailink_gemini_int32(item->valuedouble))
           == NULL)
    {
        goto failed;
    }

    item = ngx_ailink_json_get(req, "stop");

    if (cJSON_IsString(item) || cJSON_IsArray(item)) {
        stop = cJSON_CreateArray();

        if (stop == NULL || !cJSON_AddItemToObject(gc, "stopSequences", stop)) {
            ngx_ailink_json_delete(stop);
            goto failed;
        }

        if (cJSON_IsString(item)) {
            if (ngx_ailink_json_add_copy(stop, NULL, item) == NULL)
            {
                goto failed;
            }

        } else {
            cJSON_ArrayForEach(s, item) {
                if (cJSON_IsString(s)
                    && ngx_ailink_json_add_copy(stop, NULL, s) == NULL)
                {
                    goto failed;
                }
            }
        }

        if (stop->child == NULL) {
            cJSON_DeleteItemFromObjectCaseSensitive(gc, "stopSequences");
        }
    }

    if (ngx_ailink_gemini_choices(x, req, gc) != NGX_OK) {
        goto failed;
    }

    item = ngx_ailink_json_get(req, "seed");

    /* Gemini's seed is an int32, OpenAI's any integer */
    if (cJSON_IsNumber(item)
        && cJSON_AddNumberToObject(gc, "seed",
                                   ngx_ailink_gemini_int32(item->valuedouble))
           == NULL)
    {
        goto failed;
    }

    if (ngx_ailink_gemini_thinking(x, req, gc) != NGX_OK) {
        goto failed;
    }

    item = ngx_ailink_json_get(req, "response_format");
    type = cJSON_GetStringValue(ngx_ailink_json_get(item, "type"));

    if (type != NULL
        && (ngx_strcmp(type, "json_object") == 0
            || ngx_strcmp(type, "json_schema") == 0))
    {
        if (cJSON_AddStringToObject(gc, "responseMimeType",
                                    "application/json") == NULL)
        {
            goto failed;
        }

        schema = ngx_ailink_json_get(ngx_ailink_json_get(item, "json_schema"),
                                     "schema");

        if (ngx_strcmp(type, "json_schema") == 0 && cJSON_IsObject(schema)
            && ngx_ailink_gemini_add(gc, "responseSchema",
                                     ngx_ailink_gemini_clean_schema(schema))
               != NGX_OK)
        {
            goto failed;
        }
    }

    if (gc->child == NULL) {
        ngx_ailink_json_delete(gc);
        return NGX_OK;
    }

    if (!cJSON_AddItemToObject(body, "generationConfig", gc)) {
        goto failed;
    }

    return NGX_OK;

failed:

    ngx_ailink_json_delete(gc);

    return NGX_ERROR;
}


/* the route's safetySettings, validated as a list when loaded */

static ngx_int_t
ngx_ailink_gemini_safety(ngx_ailink_xreq_t *x, cJSON *body)
{
    cJSON  *ss;

    if (x->provider == NULL || x->provider->safety_settings.len == 0) {
        return NGX_OK;
    }

    ss = ngx_ailink_json_parse(&x->provider->safety_settings);

    if (!cJSON_IsArray(ss)) {
        ngx_log_error(NGX_LOG_ERR, x->log, 0,
                      "ailink gemini: safety_settings of provider \"%V\" "
                      "are not a JSON list", &x->provider->name);
        ngx_ailink_json_delete(ss);
        return NGX_ERROR;
    }

    return ngx_ailink_gemini_add(body, "safetySettings", ss);
}


/* a copy of a JSON Schema in the subset Gemini's Schema takes */

static cJSON *
ngx_ailink_gemini_clean_schema(cJSON *schema)
{
    ngx_ailink_gemini_schema_ctx_t  sc;

    sc.root = schema;
    sc.nodes = NGX_AILINK_GEMINI_SCHEMA_NODES;
    sc.refs = 0;

    return ngx_ailink_gemini_schema(&sc, schema, 0);
}


static cJSON *
ngx_ailink_gemini_schema(ngx_ailink_gemini_schema_ctx_t *sc, cJSON *s,
    ngx_uint_t depth)
{
    cJSON        *out, *item, *v, *props, *prop, *c;
    ngx_uint_t    k;
    const char   *key, *ref;

    if (depth > NGX_AILINK_GEMINI_SCHEMA_DEPTH || sc->nodes == 0
        || !cJSON_IsObject(s))
    {
        /* true, {} or beyond the bounds: any value */
        return cJSON_CreateObject();
    }

    sc->nodes--;

    /* Pydantic and zod put nested models in $defs and point at them */
    ref = cJSON_GetStringValue(ngx_ailink_json_get(s, "$ref"));

    if (ref != NULL) {
        if (sc->refs == NGX_AILINK_GEMINI_SCHEMA_REFS) {
            /* a recursive model, cut short */
            return cJSON_CreateObject();
        }

        sc->refs++;
        c = ngx_ailink_gemini_schema(sc,
                                     ngx_ailink_gemini_schema_ref(sc->root,
                                                                  ref),
                                     depth + 1);
        sc->refs--;
        item = ngx_ailink_json_get(s, "description");

        if (c != NULL && cJSON_IsString(item)
            && !ngx_ailink_gemini_has(c, "description"))
        {
            (void) ngx_ailink_json_add_copy(c, "description", item);
        }

        return c;
    }

    out = cJSON_CreateObject();
    if (out == NULL) {
        return NULL;
    }

    cJSON_ArrayForEach(item, s) {
        key = item->string;

        if (ngx_ailink_gemini_has(out, key)) {
            continue;
        }

        if (ngx_strcmp(key, "type") == 0) {
            if (cJSON_IsArray(item)) {
                if (ngx_ailink_gemini_schema_types(out, item) != NGX_OK) {
                    goto failed;
                }

                continue;
            }

            if (!cJSON_IsString(item)) {
                continue;
            }

            v = ngx_ailink_json_copy(item);

        } else if (ngx_strcmp(key, "properties") == 0) {
            if (!cJSON_IsObject(item) || item->child == NULL) {
                continue;
            }

            props = cJSON_CreateObject();
            if (props == NULL) {
                goto failed;
            }

            cJSON_ArrayForEach(prop, item) {
                c = ngx_ailink_gemini_schema(sc, prop, depth + 1);

                if (ngx_ailink_gemini_add(props, prop->string, c) != NGX_OK) {
                    ngx_ailink_json_delete(props);
                    goto failed;
                }
            }

            v = props;

        } else if (ngx_strcmp(key, "items") == 0) {
            /* a tuple's item schemas: Gemini has one for all */
            v = ngx_ailink_gemini_schema(sc, cJSON_IsArray(item)
                                             ? item->child : item,
                                         depth + 1);

        } else if (ngx_strcmp(key, "anyOf") == 0
                   || ngx_strcmp(key, "oneOf") == 0)
        {
            if (!cJSON_IsArray(item) || ngx_ailink_gemini_has(out, "anyOf")) {
                continue;
            }

            if (ngx_ailink_gemini_schema_any(sc, out, item, depth) != NGX_OK) {
                goto failed;
            }

            continue;

        } else if (ngx_strcmp(key, "allOf") == 0) {
            cJSON_ArrayForEach(prop, item) {
                c = ngx_ailink_gemini_schema(sc, prop, depth + 1);
                if (c == NULL) {
                    goto failed;
                }

                ngx_ailink_gemini_schema_merge(out, c);
                ngx_ailink_json_delete(c);
            }

            continue;

        } else if (ngx_strcmp(key, "const") == 0) {
            if (ngx_ailink_gemini_has(s, "enum")) {
                continue;
            }

            /* Gemini's enums are of strings */
            if (!cJSON_IsString(item)) {
                continue;
            }

            if (!ngx_ailink_gemini_has(s, "type")
                && cJSON_AddStringToObject(out, "type", "string") == NULL)
            {
                goto failed;
            }

            key = "enum";
            v = cJSON_CreateArray();

            if (v != NULL && ngx_ailink_json_add_copy(v, NULL, item) == NULL)
            {
                ngx_ailink_json_delete(v);
                goto failed;
            }

        } else if (ngx_strcmp(key, "format") == 0) {
            if (!cJSON_IsString(item)) {
                continue;
            }

            for (k = 0; ngx_ailink_gemini_schema_formats[k]; k++) {
                if (ngx_strcmp(item->valuestring,
                               ngx_ailink_gemini_schema_formats[k]) == 0)
                {
                    break;
                }
            }

            if (ngx_ailink_gemini_schema_formats[k] == NULL) {
                continue;
            }

            v = ngx_ailink_json_copy(item);

        } else {
            for (k = 0; ngx_ailink_gemini_schema_keys[k]; k++) {
                if (ngx_strcmp(key, ngx_ailink_gemini_schema_keys[k]) == 0) {
                    break;
                }
            }

            /* additionalProperties, $schema, strict, $defs, ... */
            if (ngx_ailink_gemini_schema_keys[k] == NULL) {
                continue;
            }

            v = ngx_ailink_json_copy(item);
        }

        if (ngx_ailink_gemini_add(out, key, v) != NGX_OK) {
            goto failed;
        }
    }

    ngx_ailink_gemini_schema_required(out);

    return out;

failed:

    ngx_ailink_json_delete(out);

    return NULL;
}


/* "type": ["string", "null"] -> "type": "string", "nullable": true */

static ngx_int_t
ngx_ailink_gemini_schema_types(cJSON *out, cJSON *types)
{
    cJSON       *t, *any, *one;
    ngx_uint_t   n, nullable;
    const char  *first;

    n = 0;
    nullable = 0;
    first = NULL;

    cJSON_ArrayForEach(t, types) {
        if (!cJSON_IsString(t)) {
            continue;
        }

        if (ngx_strcmp(t->valuestring, "null") == 0) {
            nullable = 1;
            continue;
        }

        if (first == NULL) {
            first = t->valuestring;
        }

        n++;
    }

    if (nullable
        && !ngx_ailink_gemini_has(out, "nullable")
        && cJSON_AddTrueToObject(out, "nullable") == NULL)
    {
        return NGX_ERROR;
    }

    if (n == 0 && !nullable) {
        return NGX_OK;
    }

    if (n <= 1) {
        if (cJSON_AddStringToObject(out, "type", n ? first : "null") == NULL) {
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (ngx_ailink_gemini_has(out, "anyOf")) {
        return NGX_OK;
    }

    any = cJSON_AddArrayToObject(out, "anyOf");
    if (any == NULL) {
        return NGX_ERROR;
    }

    cJSON_ArrayForEach(t, types) {
        if (!cJSON_IsString(t) || ngx_strcmp(t->valuestring, "null") == 0) {
            continue;
        }

        one = ngx_ailink_gemini_new_part(any);

        if (one == NULL
            || cJSON_AddStringToObject(one, "type", t->valuestring) == NULL)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * anyOf / oneOf: a {"type": "null"} member becomes "nullable", and a
 * single member left is the schema itself (Pydantic's Optional[X]).
 */

static ngx_int_t
ngx_ailink_gemini_schema_any(ngx_ailink_gemini_schema_ctx_t *sc, cJSON *out,
    cJSON *list, ngx_uint_t depth)
{
    cJSON       *any, *member, *c;
    ngx_uint_t   nullable;
    const char  *type;

    any = cJSON_CreateArray();
    if (any == NULL) {
        return NGX_ERROR;
    }

    nullable = 0;

    cJSON_ArrayForEach(member, list) {
        type = cJSON_GetStringValue(ngx_ailink_json_get(member, "type"));

        if (type != NULL && ngx_strcmp(type, "null") == 0) {
            nullable = 1;
            continue;
        }

        c = ngx_ailink_gemini_schema(sc, member, depth + 1);

        if (ngx_ailink_gemini_add(any, NULL, c) != NGX_OK) {
            ngx_ailink_json_delete(any);
            return NGX_ERROR;
        }
    }

    if (nullable
        && !ngx_ailink_gemini_has(out, "nullable")
        && cJSON_AddTrueToObject(out, "nullable") == NULL)
    {
        ngx_ailink_json_delete(any);
        return NGX_ERROR;
    }

    if (cJSON_GetArraySize(any) == 1) {
        ngx_ailink_gemini_schema_merge(out, any->child);
        ngx_ailink_json_delete(any);
        return NGX_OK;
    }

    if (any->child == NULL) {
        ngx_ailink_json_delete(any);
        return NGX_OK;
    }

    return ngx_ailink_gemini_add(out, "anyOf", any);
}


/* moves the keys of "from" that "out" lacks into "out" */

static void
ngx_ailink_gemini_schema_merge(cJSON *out, cJSON *from)
{
    cJSON  *item, *next;

    for (item = from->child; item; item = next) {
        next = item->next;

        if (item->string == NULL || ngx_ailink_gemini_has(out, item->string)) {
            continue;
        }

        item = cJSON_DetachItemViaPointer(from, item);

        if (!cJSON_AddItemToObject(out, item->string, item)) {
            ngx_ailink_json_delete(item);
        }
    }
}


/* Gemini refuses "required" names that are not properties */

static void
ngx_ailink_gemini_schema_required(cJSON *out)
{
    cJSON  *req, *props, *name, *next;

    req = ngx_ailink_json_get(out, "required");

    if (req == NULL) {
        return;
    }

    props = ngx_ailink_json_get(out, "properties");

    if (!cJSON_IsArray(req) || props == NULL) {
        cJSON_DeleteItemFromObjectCaseSensitive(out, "required");
        return;
    }

    for (name = req->child; name; name = next) {
        next = name->next;

        if (!cJSON_IsString(name)
            || !ngx_ailink_gemini_has(props, name->valuestring))
        {
            ngx_ailink_json_delete(cJSON_DetachItemViaPointer(req, name));
        }
    }

    if (req->child == NULL) {
        cJSON_DeleteItemFromObjectCaseSensitive(out, "required");
    }
}


/* a local reference: a JSON pointer into the schema ("#/$defs/Name") */

static cJSON *
ngx_ailink_gemini_schema_ref(cJSON *root, const char *ref)
{
    u_char       name[256], *n;
    cJSON       *node;
    const char  *p;

    if (ref[0] != '#' || (ref[1] != '\0' && ref[1] != '/')) {
        return NULL;
    }

    node = root;
    p = ref + 1;

    while (*p == '/' && node != NULL) {
        p++;
        n = name;

        while (*p != '\0' && *p != '/') {
            if (n == name + sizeof(name) - 1) {
                return NULL;
            }

            if (p[0] == '~' && (p[1] == '0' || p[1] == '1')) {
                *n++ = (p[1] == '0') ? '~' : '/';
                p += 2;
                continue;
            }

            *n++ = *p++;
        }

        *n = '\0';

        if (cJSON_IsArray(node)) {
            node = cJSON_GetArrayItem(node, ngx_atoi(name, n - name));

        } else {
            node = ngx_ailink_json_get(node, (char *) name);
        }
    }

    return node;
}


/* GenerateContentResponse -> chat.completion */

cJSON *
ngx_ailink_gemini_response(ngx_ailink_xresp_t *x, cJSON *resp)
{
    cJSON       *root, *candidates, *cand, *choices, *choice, *message,
                *feedback, *usage;
    ngx_uint_t   n, calls;
    const char  *block;

    candidates = ngx_ailink_json_get(resp, "candidates");
    feedback = ngx_ailink_json_get(resp, "promptFeedback");

    if (!cJSON_IsObject(resp)
        || (!cJSON_IsArray(candidates) && !cJSON_IsObject(feedback)))
    {
        return NULL;
    }

    root = ngx_ailink_completion_new(x, &message);
    if (root == NULL) {
        return NULL;
    }

    choices = ngx_ailink_json_get(root, "choices");
    choice = cJSON_GetArrayItem(choices, 0);

    n = 0;
    calls = 0;

    if (!cJSON_IsArray(candidates)) {
        candidates = NULL;
    }

    cJSON_ArrayForEach(cand, candidates) {
        if (n > 0) {
            choice = ngx_ailink_gemini_choice(choices, n, &message);
            if (choice == NULL) {
                goto failed;
            }
        }

        if (ngx_ailink_gemini_candidate(x, cand, choice, message, &calls)
            != NGX_OK)
        {
            goto failed;
        }

        n++;
    }

    if (n == 0) {
        /* a blocked prompt: an answer the content filter stopped */
        block = cJSON_GetStringValue(
                    ngx_ailink_json_get(feedback, "blockReason"));

        if (cJSON_AddNullToObject(message, "content") == NULL
            || cJSON_AddNullToObject(message, "refusal") == NULL
            || !cJSON_ReplaceItemInObjectCaseSensitive(choice, "finish_reason",
                   cJSON_CreateString(block ? "content_filter" : "stop")))
        {
            goto failed;
        }
    }

    if (x->usage) {
        (void) ngx_ailink_gemini_usage(x->usage,
                   ngx_ailink_json_get(resp, "usageMetadata"));

        usage = ngx_ailink_usage_json(x->usage);

        if (usage == NULL || !cJSON_AddItemToObject(root, "usage", usage)) {
            ngx_ailink_json_delete(usage);
            goto failed;
        }
    }

    return root;

failed:

    ngx_ailink_json_delete(root);

    return NULL;
}


/* choices[n] beyond the first, for candidateCount ("n") */

static cJSON *
ngx_ailink_gemini_choice(cJSON *choices, ngx_uint_t index, cJSON **message)
{
    cJSON  *choice;

    choice = ngx_ailink_gemini_new_part(choices);

    if (choice == NULL
        || cJSON_AddNumberToObject(choice, "index", (double) index) == NULL)
    {
        return NULL;
    }

    *message = cJSON_AddObjectToObject(choice, "message");

    if (*message == NULL
        || cJSON_AddStringToObject(*message, "role", "assistant") == NULL
        || cJSON_AddNullToObject(choice, "logprobs") == NULL
        || cJSON_AddNullToObject(choice, "finish_reason") == NULL)
    {
        return NULL;
    }

    return choice;
}


static ngx_int_t
ngx_ailink_gemini_candidate(ngx_ailink_xresp_t *x, cJSON *cand,
    cJSON *choice, cJSON *message, ngx_uint_t *calls)
{
    char        *text;
    cJSON       *parts, *part, *tool_calls, *call, *item;
    ngx_uint_t   found, n;
    const char  *finish;

    parts = ngx_ailink_json_get(ngx_ailink_json_get(cand, "content"), "parts");

    text = ngx_ailink_gemini_parts_text(parts, 0, &found);
    if (text == NULL) {
        return NGX_ERROR;
    }

    item = found ? cJSON_AddStringToObject(message, "content", text)
                 : cJSON_AddNullToObject(message, "content");
    free(text);

    if (item == NULL || cJSON_AddNullToObject(message, "refusal") == NULL) {
        return NGX_ERROR;
    }

    /* thought summaries (includeThoughts) */

    text = ngx_ailink_gemini_parts_text(parts, 1, &found);
    if (text == NULL) {
        return NGX_ERROR;
    }

    item = found ? cJSON_AddStringToObject(message, "reasoning_content", text)
                 : message;
    free(text);

    if (item == NULL) {
        return NGX_ERROR;
    }

    tool_calls = NULL;
    n = 0;

    cJSON_ArrayForEach(part, parts) {
        if (!cJSON_IsObject(ngx_ailink_json_get(part, "functionCall")))
        {
            continue;
        }

        if (tool_calls == NULL) {
            tool_calls = cJSON_AddArrayToObject(message, "tool_calls");
            if (tool_calls == NULL) {
                return NGX_ERROR;
            }
        }

        call = ngx_ailink_gemini_tool_call(x, part, (*calls)++, -1);

        if (ngx_ailink_gemini_add(tool_calls, NULL, call) != NGX_OK) {
            return NGX_ERROR;
        }

        n++;
    }

    if (ngx_ailink_gemini_logprobs(cand, choice) != NGX_OK) {
        return NGX_ERROR;
    }

    finish = ngx_ailink_gemini_finish(
                 ngx_ailink_json_get(cand, "finishReason"), n);

    if (!cJSON_ReplaceItemInObjectCaseSensitive(choice, "finish_reason",
                                cJSON_CreateString(finish ? finish : "stop")))
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * The text of the parts, thoughts only or thoughts left out ("thought"),
 * in malloc()ed memory; NULL
 * only without memory.  *found tells whether any part had text.
 */

static char *
ngx_ailink_gemini_parts_text(cJSON *parts, ngx_uint_t thought,
    ngx_uint_t *found)
{
    char    *text, *p;
    cJSON   *part, *t;
    size_t   len, n;

    *found = 0;
    len = 0;

    cJSON_ArrayForEach(part, parts) {
        t = ngx_ailink_json_get(part, "text");

        if (cJSON_IsString(t)
            && (ngx_uint_t) cJSON_IsTrue(ngx_ailink_json_get(part, "thought"))
               == thought)
        {
            len += ngx_strlen(t->valuestring);
            *found = 1;
        }
    }

    text = malloc(len + 1);
    if (text == NULL) {
        return NULL;
    }

    p = text;

    cJSON_ArrayForEach(part, parts) {
        t = ngx_ailink_json_get(part, "text");

        if (cJSON_IsString(t)
            && (ngx_uint_t) cJSON_IsTrue(ngx_ailink_json_get(part, "thought"))
               == thought)
        {
            n = ngx_strlen(t->valuestring);
            p = (char *) ngx_cpymem(p, t->valuestring, n);
        }
    }

    *p = '\0';

    return text;
}


/*
 * {"functionCall": {name, args}} -> an OpenAI tool call; "index" is set
 * for stream deltas (index >= 0).
 */

static cJSON *
ngx_ailink_gemini_tool_call(ngx_ailink_xresp_t *x, cJSON *part, ngx_uint_t n,
    ngx_int_t index)
{
    char        *id, *args;
    cJSON       *fc, *call, *fn, *a;
    const char  *name;

    fc = ngx_ailink_json_get(part, "functionCall");
    name = cJSON_GetStringValue(ngx_ailink_json_get(fc, "name"));
    a = ngx_ailink_json_get(fc, "args");

    call = cJSON_CreateObject();
    if (call == NULL) {
        return NULL;
    }

    if (index >= 0
        && cJSON_AddNumberToObject(call, "index", (double) index) == NULL)
    {
        goto failed;
    }

    id = ngx_ailink_gemini_call_id(x, n,
                   ngx_ailink_json_get(part, "thoughtSignature"));
    if (id == NULL) {
        goto failed;
    }

    fn = cJSON_AddStringToObject(call, "id", id);
    free(id);

    if (fn == NULL
        || cJSON_AddStringToObject(call, "type", "function") == NULL)
    {
        goto failed;
    }

    fn = cJSON_AddObjectToObject(call, "function");

    if (fn == NULL
        || cJSON_AddStringToObject(fn, "name", name ? name : "") == NULL)
    {
        goto failed;
    }

    if (a == NULL) {
        if (cJSON_AddStringToObject(fn, "arguments", "{}") == NULL) {
            goto failed;
        }

        return call;
    }

    args = cJSON_PrintUnformatted(a);
    if (args == NULL) {
        goto failed;
    }

    fn = cJSON_AddStringToObject(fn, "arguments", args);
    cJSON_free(args);

    if (fn == NULL) {
        goto failed;
    }

    return call;

failed:

    ngx_ailink_json_delete(call);

    return NULL;
}


/* "call_<response>_<n>", and the signature, in malloc()ed memory */

static char *
ngx_ailink_gemini_call_id(ngx_ailink_xresp_t *x, ngx_uint_t n,
    cJSON *signature)
{
    u_char     *id, *p;
    size_t      len;
    ngx_str_t   rid, sig, enc;

    rid = x->id;

    if (rid.len > sizeof("chatcmpl-") - 1
        && ngx_strncmp(rid.data, "chatcmpl-", sizeof("chatcmpl-") - 1) == 0)
    {
        rid.data += sizeof("chatcmpl-") - 1;
        rid.len -= sizeof("chatcmpl-") - 1;
    }

    rid.len = ngx_min(rid.len, 12);

    ngx_str_null(&sig);

    if (cJSON_IsString(signature) && signature->valuestring[0] != '\0') {
        sig.data = (u_char *) signature->valuestring;
        sig.len = ngx_strlen(sig.data);
    }

    len = sizeof("call__") + rid.len + NGX_INT_T_LEN
          + sizeof(NGX_AILINK_GEMINI_SIG_SEP)
          + ngx_base64_encoded_length(sig.len);

    id = malloc(len);
    if (id == NULL) {
        return NULL;
    }

    if (rid.len) {
        p = ngx_sprintf(id, "call_%V_%ui", &rid, n);

    } else {
        p = ngx_sprintf(id, "call_%ui", n);
    }

    if (sig.len) {
        p = ngx_cpymem(p, NGX_AILINK_GEMINI_SIG_SEP,
                       sizeof(NGX_AILINK_GEMINI_SIG_SEP) - 1);
        enc.data = p;
        ngx_encode_base64url(&enc, &sig);
        p += enc.len;
    }

    *p = '\0';

    return (char *) id;
}


static const char *
ngx_ailink_gemini_finish(cJSON *reason, ngx_uint_t calls)
{
    ngx_str_t  r;

    if (cJSON_GetStringValue(reason) == NULL) {
        return NULL;
    }

    r.data = (u_char *) reason->valuestring;
    r.len = ngx_strlen(r.data);

    return ngx_ailink_gemini_finish_reason(&r, calls);
}


const char *
ngx_ailink_gemini_finish_reason(ngx_str_t *r, ngx_uint_t calls)
{
    ngx_uint_t          i;
    static ngx_str_t    filtered[] = {
        ngx_string("SAFETY"), ngx_string("RECITATION"),
        ngx_string("BLOCKLIST"), ngx_string("PROHIBITED_CONTENT"),
        ngx_string("SPII"), ngx_string("IMAGE_SAFETY"),
        ngx_string("IMAGE_PROHIBITED_CONTENT"),
        ngx_string("IMAGE_RECITATION"), ngx_null_string
    };

    if (r->len == 4 && ngx_memcmp(r->data, "STOP", 4) == 0) {
        return calls ? "tool_calls" : "stop";
    }

    if (r->len == 10 && ngx_memcmp(r->data, "MAX_TOKENS", 10) == 0) {
        return "length";
    }

    for (i = 0; filtered[i].len; i++) {
        if (r->len == filtered[i].len
            && ngx_memcmp(r->data, filtered[i].data, r->len) == 0)
        {
            return "content_filter";
        }
    }

    return "stop";
}


/* usageMetadata -> usage (set, not added); returns the thought tokens */

static ngx_uint_t
ngx_ailink_gemini_usage(ngx_ailink_usage_t *usage, cJSON *meta)
{
    ngx_uint_t  i, counts[NGX_AILINK_GEMINI_COUNTS];

    static const char  *names[] = {
        "promptTokenCount", "toolUsePromptTokenCount",
        "candidatesTokenCount", "thoughtsTokenCount", "totalTokenCount",
        "cachedContentTokenCount"
    };

    if (!cJSON_IsObject(meta)) {
        return 0;
    }

    for (i = 0; i < NGX_AILINK_GEMINI_COUNTS; i++) {
        counts[i] = ngx_ailink_json_uint(meta, names[i]);
    }

    ngx_ailink_gemini_usage_set(usage, counts);

    return usage->reasoning;
}


/* usageMetadata's counts, in the order above (0: not there) */

void
ngx_ailink_gemini_usage_set(ngx_ailink_usage_t *usage, ngx_uint_t *counts)
{
    ngx_uint_t  thoughts;

    thoughts = counts[3];

    usage->prompt = counts[0] + counts[1];
    usage->completion = counts[2] + thoughts;
    usage->total = counts[4];

    if (usage->total == 0) {
        usage->total = usage->prompt + usage->completion;
    }

    usage->cached = counts[5];
    usage->cache_write = 0;
    usage->reasoning = thoughts;
    usage->known = 1;
}


/* one SSE event of ":streamGenerateContent?alt=sse" */

ngx_int_t
ngx_ailink_gemini_stream(ngx_ailink_xstream_t *st, ngx_str_t *event,
    ngx_str_t *data)
{
    cJSON                       *json, *cand, *err, *feedback;
    ngx_int_t                    rc;
    ngx_uint_t                   finish, k;
    ngx_ailink_gemini_stream_t  *gs;

    gs = st->state;

    if (gs == NULL) {
        gs = ngx_pcalloc(st->resp.pool, sizeof(ngx_ailink_gemini_stream_t));
        if (gs == NULL) {
            return NGX_ERROR;
        }

        st->state = gs;
    }

    /* an event without data, or an OpenAI-style end: nothing to say */
    if (data->len == 0
        || (data->len == sizeof("[DONE]") - 1
            && ngx_strncmp(data->data, "[DONE]", data->len) == 0))
    {
        return NGX_OK;
    }

    json = ngx_ailink_json_parse(data);

    if (!cJSON_IsObject(json)) {
        ngx_ailink_json_delete(json);

        /* the glue logs the failure; the content only at debug level */
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, st->resp.log, 0,
                       "ailink gemini: stream event is not a JSON object: "
                       "\"%*s\"", ngx_min(data->len, 128), data->data);
        return NGX_ERROR;
    }

    err = ngx_ailink_json_get(json, "error");

    if (err != NULL) {
        rc = ngx_ailink_gemini_stream_error(st, err);
        ngx_ailink_json_delete(json);
        return rc;
    }

    /* cumulative: the last one seen is the whole stream's */
    if (st->resp.usage) {
        (void) ngx_ailink_gemini_usage(st->resp.usage,
                   ngx_ailink_json_get(json, "usageMetadata"));
    }

    if (st->finished) {
        /* after the final chunk nothing more goes to the client */
        ngx_ailink_json_delete(json);
        return NGX_OK;
    }

    if (ngx_ailink_stream_role(st) != NGX_OK) {
        goto failed;
    }

    finish = 0;
    k = 0;

    /* each candidate ("n") is a choice of its own */

    cJSON_ArrayForEach(cand, ngx_ailink_json_get(json, "candidates")) {
        if (ngx_ailink_gemini_stream_cand(st, gs, cand, k++) != NGX_OK) {
            goto failed;
        }
    }

    st->choice = 0;

    if (gs->seen && gs->ended == gs->seen) {
        /* every candidate has finished */
        st->finish_reason = gs->finish ? gs->finish : "stop";
        finish = 1;
    }

    feedback = ngx_ailink_json_get(json, "promptFeedback");

    if (cJSON_IsString(ngx_ailink_json_get(feedback, "blockReason")))
    {
        st->finish_reason = "content_filter";
        finish = 1;
    }

    ngx_ailink_json_delete(json);

    if (finish) {
        /* the usage may come in a chunk of its own after this one: the
         * usage chunk and [DONE] wait for the end of the stream */
        return ngx_ailink_stream_final(st);
    }

    return NGX_OK;

failed:

    ngx_ailink_json_delete(json);

    return NGX_ERROR;
}


/* {"error": {"code", "message", "status"}} in the middle of a stream */

static ngx_int_t
ngx_ailink_gemini_stream_error(ngx_ailink_xstream_t *st, cJSON *err)
{
    ngx_uint_t   code;
    const char  *message, *type;

    message = cJSON_GetStringValue(ngx_ailink_json_get(err, "message"));

    if (message == NULL) {
        message = cJSON_GetStringValue(err);
    }

    code = ngx_ailink_json_uint(err, "code");

    if (code == 429) {
        type = "rate_limit_error";

    } else if (code >= 400 && code < 500) {
        type = "invalid_request_error";

    } else {
        type = "server_error";
    }

    ngx_log_error(NGX_LOG_WARN, st->resp.log, 0,
                  "ailink gemini: error in stream: %ui \"%s\"", code,
                  message ? message : "");

    return ngx_ailink_stream_error(st, type,
                                   message ? message : "upstream error");
}


/*
 * One candidate of a stream event, as choice "index" (or its place "k"):
 * its deltas, and its finish reason; candidate 0's ends the stream (when
 * the others have ended too), the others' go out as they come.
 */

static ngx_int_t
ngx_ailink_gemini_stream_cand(ngx_ailink_xstream_t *st,
    ngx_ailink_gemini_stream_t *gs, cJSON *cand, ngx_uint_t k)
{
    cJSON       *index, *reason;
    ngx_uint_t  *calls, bit;
    const char  *finish;

    index = ngx_ailink_json_get(cand, "index");

    if (cJSON_IsNumber(index)) {
        k = (index->valuedouble >= 0
             && index->valuedouble < NGX_AILINK_GEMINI_CHOICES)
            ? (ngx_uint_t) index->valuedouble : NGX_AILINK_GEMINI_CHOICES;
    }

    if (k >= NGX_AILINK_GEMINI_CHOICES) {
        /* more candidates than anyone can ask for ("n" is at most 8) */
        return NGX_ERROR;
    }

    bit = (ngx_uint_t) 1 << k;

    if (gs->ended & bit) {
        return NGX_OK;
    }

    if (k > 0 && !(gs->seen & bit)
        && ngx_ailink_stream_choice_role(st, k) != NGX_OK)
    {
        return NGX_ERROR;
    }

    gs->seen |= bit;
    st->choice = k;
    calls = k ? &gs->more[k] : &gs->calls;

    if (ngx_ailink_gemini_stream_parts(st, calls, cand,
            ngx_ailink_json_get(ngx_ailink_json_get(cand, "content"),
                                "parts"))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    reason = ngx_ailink_json_get(cand, "finishReason");

    if (!cJSON_IsString(reason)) {
        return NGX_OK;
    }

    gs->ended |= bit;
    finish = ngx_ailink_gemini_finish(reason, *calls);

    if (k == 0) {
        gs->finish = finish;
        return NGX_OK;
    }

    return ngx_ailink_stream_choice_finish(st, k, finish ? finish : "stop");
}


/* text parts -> one content delta; function calls -> one tool_calls delta */

static ngx_int_t
ngx_ailink_gemini_stream_parts(ngx_ailink_xstream_t *st, ngx_uint_t *calls,
    cJSON *cand, cJSON *parts)
{
    char        *text;
    cJSON       *chunk, *delta, *list, *part, *call;
    ngx_int_t    rc;
    ngx_str_t    s;
    ngx_uint_t   found;

    text = ngx_ailink_gemini_parts_text(parts, 1, &found);
    if (text == NULL) {
        return NGX_ERROR;
    }

    s.data = (u_char *) text;
    s.len = ngx_strlen(text);

    rc = ngx_ailink_reasoning_delta(st, &s);
    free(text);

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    text = ngx_ailink_gemini_parts_text(parts, 0, &found);
    if (text == NULL) {
        return NGX_ERROR;
    }

    if (text[0] != '\0') {
        chunk = ngx_ailink_chunk_new(st);
        delta = ngx_ailink_chunk_delta(chunk);

        if (delta == NULL
            || cJSON_AddStringToObject(delta, "content", text) == NULL
            || ngx_ailink_gemini_logprobs(cand,
                   cJSON_GetArrayItem(ngx_ailink_json_get(chunk, "choices"),
                                      0))
               != NGX_OK)
        {
            free(text);
            ngx_ailink_json_delete(chunk);
            return NGX_ERROR;
        }

        free(text);

        if (ngx_ailink_stream_emit(st, chunk) != NGX_OK) {
            return NGX_ERROR;
        }

    } else {
        free(text);
    }

    chunk = NULL;
    list = NULL;

    cJSON_ArrayForEach(part, parts) {
        if (!cJSON_IsObject(ngx_ailink_json_get(part, "functionCall")))
        {
            continue;
        }

        if (chunk == NULL) {
            chunk = ngx_ailink_chunk_new(st);
            list = cJSON_AddArrayToObject(ngx_ailink_chunk_delta(chunk),
                                          "tool_calls");
            if (list == NULL) {
                ngx_ailink_json_delete(chunk);
                return NGX_ERROR;
            }
        }

        /* Gemini sends whole calls: id, name and all arguments at once */
        call = ngx_ailink_gemini_tool_call(&st->resp, part, *calls,
                                           (ngx_int_t) *calls);

        if (ngx_ailink_gemini_add(list, NULL, call) != NGX_OK) {
            ngx_ailink_json_delete(chunk);
            return NGX_ERROR;
        }

        (*calls)++;
    }

    if (chunk == NULL) {
        return NGX_OK;
    }

    return ngx_ailink_stream_emit(st, chunk);
}


/* a new empty object at the end of an array */

static cJSON *
ngx_ailink_gemini_new_part(cJSON *parts)
{
    cJSON  *part;

    part = cJSON_CreateObject();

    if (part == NULL || !cJSON_AddItemToArray(parts, part)) {
        ngx_ailink_json_delete(part);
        return NULL;
    }

    return part;
}


static ngx_int_t
ngx_ailink_gemini_add_text(cJSON *parts, cJSON *text)
{
    cJSON  *part;

    /* Gemini refuses empty text parts */
    if (ngx_ailink_json_empty(text)) {
        return NGX_OK;
    }

    part = ngx_ailink_gemini_new_part(parts);

    if (part == NULL || ngx_ailink_json_add_copy(part, "text", text) == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Adds an item to an object (key) or an array (key NULL); the item is
 * freed when that fails.  A NULL item (a failed allocation) is an error.
 */

static ngx_int_t
ngx_ailink_gemini_add(cJSON *obj, const char *key, cJSON *item)
{
    cJSON_bool  ok;

    if (item == NULL || obj == NULL) {
        ngx_ailink_json_delete(item);
        return NGX_ERROR;
    }

    ok = key ? cJSON_AddItemToObject(obj, key, item)
             : cJSON_AddItemToArray(obj, item);

    if (!ok) {
        ngx_ailink_json_delete(item);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* an integer in int32 range, without the undefined cast of a huge double */

static double
ngx_ailink_gemini_int32(double d)
{
    if (d != d) {
        return 0;
    }

    if (d > 2147483647.0) {
        return 2147483647.0;
    }

    if (d < -2147483648.0) {
        return -2147483648.0;
    }

    return (double) (int32_t) d;
}
