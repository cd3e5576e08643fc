
/*
 * Copyright (C) AILink
 *
 * A request's record operations on a store that may answer later (Redis),
 * for code written as if every answer came at once.  The code (a phase
 * handler's step, a content handler) runs again from its start after each
 * reply and asks its operations in the same order every time: those
 * answered already are returned at once from what was kept, the first
 * one not answered is sent (NGX_AGAIN: the caller returns and waits, the
 * request's count held) and its reply calls resume(r), which runs the
 * code again.  With a synchronous store every operation answers at once
 * and nothing runs twice.  Anything else the code does before its last
 * operation must thus be safe to repeat (or kept by the caller, as a new
 * record's id).
 */


#ifndef _NGX_AILINK_STATE_REPLAY_H_INCLUDED_
#define _NGX_AILINK_STATE_REPLAY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_ailink_state.h"


typedef void (*ngx_ailink_replay_resume_pt)(ngx_http_request_t *r);


typedef struct {
    ngx_http_request_t            *request;
    ngx_ailink_replay_resume_pt    resume;
    ngx_array_t                    answers;    /* the operations' */
    ngx_uint_t                     next;       /* this run's next one */
    unsigned                       waiting:1;
    /*
     * a content handler's: it returns NGX_DONE while it waits, and the
     * content phase gives back the count the wait took
     */
    unsigned                       content:1;
} ngx_ailink_replay_t;


ngx_int_t ngx_ailink_replay_init(ngx_ailink_replay_t *rp,
    ngx_http_request_t *r, ngx_ailink_replay_resume_pt resume);
/* the code starts over with new operations (what was kept is dropped) */
void ngx_ailink_replay_restart(ngx_ailink_replay_t *rp,
    ngx_ailink_replay_resume_pt resume);
/*
 * the code that resume runs again is running: the answers kept for
 * another code of the request are dropped, its own are kept
 */
void ngx_ailink_replay_enter(ngx_ailink_replay_t *rp,
    ngx_ailink_replay_resume_pt resume, ngx_uint_t content);

/* a counter */
ngx_int_t ngx_ailink_replay_get(ngx_ailink_replay_t *rp,
    ngx_ailink_state_t *st, ngx_str_t *key, int64_t *value);
ngx_int_t ngx_ailink_replay_get_record(ngx_ailink_replay_t *rp,
    ngx_ailink_state_t *st, ngx_str_t *key, ngx_str_t *value);
ngx_int_t ngx_ailink_replay_cas_record(ngx_ailink_replay_t *rp,
    ngx_ailink_state_t *st, ngx_str_t *key, ngx_str_t *expect,
    ngx_str_t *value, time_t ttl, ngx_uint_t flags);
/* out: ngx_keyval_t, initialized by the caller */
ngx_int_t ngx_ailink_replay_list_records(ngx_ailink_replay_t *rp,
    ngx_ailink_state_t *st, ngx_str_t *prefix, ngx_array_t *out);


#endif /* _NGX_AILINK_STATE_REPLAY_H_INCLUDED_ */
