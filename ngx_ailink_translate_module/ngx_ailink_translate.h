
/*
 * Copyright (C) AILink
 */


#ifndef _NGX_AILINK_TRANSLATE_H_INCLUDED_
#define _NGX_AILINK_TRANSLATE_H_INCLUDED_


#include "ngx_ailink_common.h"
#include "ngx_ailink_auth.h"


typedef struct {
    size_t      response_buffer_size;
    size_t      stream_event_max_size;
} ngx_ailink_translate_loc_conf_t;


/* ngx_ailink_usage_filter.c */
ngx_int_t ngx_ailink_usage_filter_init(ngx_conf_t *cf);


#endif /* _NGX_AILINK_TRANSLATE_H_INCLUDED_ */
