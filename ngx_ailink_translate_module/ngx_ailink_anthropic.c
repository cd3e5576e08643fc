
/*
 * Copyright (C) AILink
 *
 * OpenAI chat.completions <-> anthropic: placeholder until the translator lands.
 */


#include "ngx_ailink_translate.h"


cJSON *
ngx_ailink_anthropic_request(ngx_ailink_xreq_t *x, cJSON *req)
{
    x->error = "translation is not available";
    return NULL;
}


cJSON *
ngx_ailink_anthropic_response(ngx_ailink_xresp_t *x, cJSON *resp)
{
    return NULL;
}


ngx_int_t
ngx_ailink_anthropic_stream(ngx_ailink_xstream_t *st, ngx_str_t *event,
    ngx_str_t *data)
{
    return NGX_ERROR;
}
