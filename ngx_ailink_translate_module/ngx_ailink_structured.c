
/*
 * Copyright (C) AILink
 *
 * Structured outputs ("response_format") for providers without OpenAI's
 * form of it.  Anthropic: the schema becomes the input schema of a tool
 * the model is made to call (NGX_AILINK_ANSWER_TOOL); the response
 * translator gives that tool's input back as the message content, with
 * finish_reason "stop", and streams it as content deltas.  Gemini: JSON
 * mode and tools together are refused where Gemini 2.x refuses them.
 */


#include "ngx_ailink_translate.h"


static const char  ngx_ailink_structured_desc[] =
    "Give your final answer by calling this tool, once, with arguments "
    "that match its schema. Do not answer in text.";


/*
 * "response_format": NGX_OK with *schema NULL for text, the schema (the
 * client's, or {"type":"object"} for json_object, in *own when made
 * here) for JSON; NGX_DECLINED with a refusal.
 */

static ngx_int_t
ngx_ailink_structured_schema(ngx_ailink_xreq_t *x, cJSON *req,
    cJSON **schema, cJSON **desc)
{
    cJSON  *rf, *type, *js, *s, *t;

    *schema = NULL;
    *desc = NULL;

    rf = ngx_ailink_json_get(req, "response_format");

    if (rf == NULL || cJSON_IsNull(rf)) {
        return NGX_OK;
    }

    type = ngx_ailink_json_get(rf, "type");

    if (ngx_ailink_json_is(type, "text")) {
        return NGX_OK;
    }

    if (ngx_ailink_json_is(type, "json_object")) {
        *schema = rf;     /* no schema: any object */
        return NGX_OK;
    }

    if (!ngx_ailink_json_is(type, "json_schema")) {
        return ngx_ailink_xreq_refuse(x, "response_format",
                                      "\"response_format\" type must be "
                                      "\"text\", \"json_object\" or "
                                      "\"json_schema\"");
    }

    js = ngx_ailink_json_get(rf, "json_schema");
    s = ngx_ailink_json_get(js, "schema");
    t = ngx_ailink_json_get(s, "type");

    if (!cJSON_IsObject(s) || (t && !ngx_ailink_json_is(t, "object"))) {
        return ngx_ailink_xreq_refuse(x, "response_format",
                                      "\"response_format.json_schema."
                                      "schema\" must be an object schema "
                                      "for Anthropic models");
    }

    *schema = s;
    *desc = ngx_ailink_json_get(js, "description");

    if (!cJSON_IsString(*desc)) {
        *desc = NULL;
    }

    return NGX_OK;
}


/*
 * After tools and tool_choice: the answer tool is added to "tools", and
 * chosen: by name when nothing else may be called, "any" beside the
 * client's tools when the client let the model choose, and left to the
 * model ("auto") while thinking, which cannot be forced to call a tool.
 */

ngx_int_t
ngx_ailink_anthropic_structured(ngx_ailink_xreq_t *x, cJSON *req,
    cJSON *out)
{
    cJSON       *schema, *desc, *tools, *tool, *is, *tc, *type, *choice;
    ngx_int_t    rc;
    ngx_uint_t   effort, thinking;
    const char  *how;

    cJSON_ArrayForEach(tool, ngx_ailink_json_get(out, "tools")) {
        if (ngx_ailink_json_is(ngx_ailink_json_get(tool, "name"),
                               NGX_AILINK_ANSWER_TOOL))
        {
            return ngx_ailink_xreq_refuse(x, "tools",
                                          "the tool name \""
                                          NGX_AILINK_ANSWER_TOOL "\" is "
                                          "reserved for response_format");
        }
    }

    rc = ngx_ailink_structured_schema(x, req, &schema, &desc);

    if (rc != NGX_OK || schema == NULL) {
        return rc;
    }

    rc = ngx_ailink_reasoning_effort(x, req, &effort);
    if (rc != NGX_OK) {
        return rc;
    }

    thinking = (effort != NGX_AILINK_EFFORT_UNSET
                && effort != NGX_AILINK_EFFORT_NONE);

    tools = ngx_ailink_json_get(out, "tools");
    choice = ngx_ailink_json_get(req, "tool_choice");

    if (tools == NULL) {
        tools = cJSON_AddArrayToObject(out, "tools");
        if (tools == NULL) {
            return NGX_ERROR;
        }

        how = thinking ? "auto" : "tool";

    } else if (choice == NULL || cJSON_IsNull(choice)
               || ngx_ailink_json_is(choice, "auto"))
    {
        how = thinking ? "auto" : "any";

    } else {
        /* "none", "required" or a named tool: as the client chose */
        how = NULL;
    }

    tool = cJSON_CreateObject();
    if (tool == NULL) {
        return NGX_ERROR;
    }

    cJSON_AddItemToArray(tools, tool);

    if (cJSON_AddStringToObject(tool, "name", NGX_AILINK_ANSWER_TOOL) == NULL
        || (desc
            ? ngx_ailink_json_add_copy(tool, "description", desc)
            : cJSON_AddStringToObject(tool, "description",
                                      ngx_ailink_structured_desc))
           == NULL)
    {
        return NGX_ERROR;
    }

    if (schema == ngx_ailink_json_get(req, "response_format")) {
        is = cJSON_AddObjectToObject(tool, "input_schema");

        if (is == NULL || cJSON_AddStringToObject(is, "type", "object") == NULL)
        {
            return NGX_ERROR;
        }

    } else if (ngx_ailink_json_add_copy(tool, "input_schema", schema) == NULL)
    {
        return NGX_ERROR;
    }

    if (how == NULL) {
        return NGX_OK;
    }

    tc = ngx_ailink_json_get(out, "tool_choice");

    if (tc == NULL) {
        tc = cJSON_AddObjectToObject(out, "tool_choice");
        if (tc == NULL) {
            return NGX_ERROR;
        }
    }

    type = cJSON_CreateString(how);

    if (type == NULL) {
        return NGX_ERROR;
    }

    if (ngx_ailink_json_get(tc, "type")) {
        cJSON_ReplaceItemInObjectCaseSensitive(tc, "type", type);

    } else {
        cJSON_AddItemToObject(tc, "type", type);
    }

    if (how[0] == 't'
        && cJSON_AddStringToObject(tc, "name", NGX_AILINK_ANSWER_TOOL)
           == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Gemini 2.x refuses JSON mode (responseMimeType application/json) with
 * function declarations; Gemini 3 takes both.  The combination is
 * refused here, naming response_format, rather than by Gemini.
 */

ngx_int_t
ngx_ailink_gemini_structured(ngx_ailink_xreq_t *x, cJSON *req, cJSON *body)
{
    cJSON  *rf, *type;

    rf = ngx_ailink_json_get(req, "response_format");
    type = ngx_ailink_json_get(rf, "type");

    if (!ngx_ailink_json_is(type, "json_object")
        && !ngx_ailink_json_is(type, "json_schema"))
    {
        return NGX_OK;
    }

    if (ngx_ailink_json_get(body, "tools") == NULL
        || ngx_strlcasestrn(x->model.data, x->model.data + x->model.len,
                            (u_char *) "gemini-3", 8 - 1)
           != NULL)
    {
        return NGX_OK;
    }

    return ngx_ailink_xreq_refuse(x, "response_format",
                                  "Gemini models before Gemini 3 cannot "
                                  "use \"response_format\" JSON together "
                                  "with \"tools\": send one of them, or "
                                  "use a Gemini 3 model");
}
