
/*
 * Copyright (C) AILink
 */


#include "ngx_ailink_state_replay.h"


typedef struct {
    ngx_int_t                      rc;
    int64_t                        number;
    ngx_str_t                      value;
    ngx_array_t                   *records;
} ngx_ailink_replay_answer_t;


static void ngx_ailink_replay_reply(void *data, ngx_int_t rc,
    ngx_str_t *value, ngx_array_t *records);
static void ngx_ailink_replay_counter_reply(void *data, ngx_int_t rc,
    int64_t value);


ngx_int_t
ngx_ailink_replay_init(ngx_ailink_replay_t *rp, ngx_http_request_t *r,
    ngx_ailink_replay_resume_pt resume)
{
    ngx_memzero(rp, sizeof(ngx_ailink_replay_t));

    rp->request = r;
    rp->resume = resume;

    return ngx_array_init(&rp->answers, r->pool, 4,
                          sizeof(ngx_ailink_replay_answer_t));
}


void
ngx_ailink_replay_restart(ngx_ailink_replay_t *rp,
    ngx_ailink_replay_resume_pt resume)
{
    rp->resume = resume;
    rp->answers.nelts = 0;
    rp->next = 0;
    rp->content = 0;
}


void
ngx_ailink_replay_enter(ngx_ailink_replay_t *rp,
    ngx_ailink_replay_resume_pt resume, ngx_uint_t content)
{
    if (rp->resume != resume) {
        ngx_ailink_replay_restart(rp, resume);
    }

    rp->content = content;
}


/* the answer of this run's next operation, when it came already */

static ngx_ailink_replay_answer_t *
ngx_ailink_replay_known(ngx_ailink_replay_t *rp)
{
    ngx_ailink_replay_answer_t  *a;

    if (rp->next < rp->answers.nelts) {
        a = rp->answers.elts;
        return &a[rp->next++];
    }

    return NULL;
}


static ngx_int_t
ngx_ailink_replay_keep(ngx_ailink_replay_t *rp, ngx_int_t rc,
    ngx_str_t *value, ngx_array_t *records, int64_t number)
{
    ngx_ailink_replay_answer_t  *a;

    a = ngx_array_push(&rp->answers);
    if (a == NULL) {
        return NGX_ERROR;
    }

    a->rc = rc;

    if (value) {
        a->value = *value;

    } else {
        ngx_str_null(&a->value);
    }

    a->records = records;
    a->number = number;
    rp->next = rp->answers.nelts;

    return rc;
}


/* an operation sent: the request waits for its reply */

static ngx_int_t
ngx_ailink_replay_wait(ngx_ailink_replay_t *rp)
{
    rp->waiting = 1;
    rp->request->main->count++;

    /* nothing runs the request meanwhile: the reply resumes it */
    rp->request->write_event_handler = ngx_http_request_empty_handler;

    return NGX_AGAIN;
}


static void
ngx_ailink_replay_answered(ngx_ailink_replay_t *rp, ngx_int_t rc,
    ngx_str_t *value, ngx_array_t *records, int64_t number)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = rp->request;
    c = r->connection;

    rp->waiting = 0;

    if (!rp->content) {
        r->main->count--;
    }

    if (ngx_ailink_replay_keep(rp, rc, value, records, number) == NGX_ERROR
        && rc != NGX_ERROR)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        ngx_http_run_posted_requests(c);
        return;
    }

    if (c->error) {
        ngx_http_finalize_request(r, NGX_HTTP_CLIENT_CLOSED_REQUEST);
        ngx_http_run_posted_requests(c);
        return;
    }

    rp->next = 0;
    rp->resume(r);

    ngx_http_run_posted_requests(c);
}


static void
ngx_ailink_replay_reply(void *data, ngx_int_t rc, ngx_str_t *value,
    ngx_array_t *records)
{
    ngx_ailink_replay_answered(data, rc, value, records, 0);
}


static void
ngx_ailink_replay_counter_reply(void *data, ngx_int_t rc, int64_t value)
{
    ngx_ailink_replay_answered(data, rc, NULL, NULL, value);
}


ngx_int_t
ngx_ailink_replay_get(ngx_ailink_replay_t *rp, ngx_ailink_state_t *st,
    ngx_str_t *key, int64_t *value)
{
    ngx_int_t                    rc;
    ngx_ailink_replay_answer_t  *a;

    a = ngx_ailink_replay_known(rp);

    if (a) {
        *value = a->number;
        return a->rc;
    }

    rc = ngx_ailink_state_get_async(st, key, value, rp->request->pool,
                                    ngx_ailink_replay_counter_reply, rp);
    if (rc == NGX_AGAIN) {
        return ngx_ailink_replay_wait(rp);
    }

    return ngx_ailink_replay_keep(rp, rc, NULL, NULL, *value);
}


ngx_int_t
ngx_ailink_replay_get_record(ngx_ailink_replay_t *rp, ngx_ailink_state_t *st,
    ngx_str_t *key, ngx_str_t *value)
{
    ngx_int_t                    rc;
    ngx_ailink_replay_answer_t  *a;

    a = ngx_ailink_replay_known(rp);

    if (a) {
        *value = a->value;
        return a->rc;
    }

    if (st->ops->get_record_async == NULL) {
        rc = ngx_ailink_state_get_record(st, key, rp->request->pool, value);

    } else {
        rc = st->ops->get_record_async(st, key, rp->request->pool, value,
                                       ngx_ailink_replay_reply, rp);
        if (rc == NGX_AGAIN) {
            return ngx_ailink_replay_wait(rp);
        }
    }

    return ngx_ailink_replay_keep(rp, rc, rc == NGX_OK ? value : NULL, NULL,
                                  0);
}


ngx_int_t
ngx_ailink_replay_cas_record(ngx_ailink_replay_t *rp, ngx_ailink_state_t *st,
    ngx_str_t *key, ngx_str_t *expect, ngx_str_t *value, time_t ttl,
    ngx_uint_t flags)
{
    ngx_int_t                    rc;
    ngx_ailink_replay_answer_t  *a;

    a = ngx_ailink_replay_known(rp);

    if (a) {
        return a->rc;
    }

    if (st->ops->cas_record_async == NULL) {
        rc = ngx_ailink_state_cas_record(st, key, expect, value, ttl, flags);

    } else {
        rc = st->ops->cas_record_async(st, key, expect, value, ttl, flags,
                                       rp->request->pool,
                                       ngx_ailink_replay_reply, rp);
        if (rc == NGX_AGAIN) {
            return ngx_ailink_replay_wait(rp);
        }
    }

    return ngx_ailink_replay_keep(rp, rc, NULL, NULL, 0);
}


ngx_int_t
ngx_ailink_replay_list_records(ngx_ailink_replay_t *rp,
    ngx_ailink_state_t *st, ngx_str_t *prefix, ngx_array_t *out)
{
    ngx_int_t                    rc;
    ngx_array_t                 *kept;
    ngx_ailink_replay_answer_t  *a;

    a = ngx_ailink_replay_known(rp);

    if (a) {
        if (a->records) {
            *out = *a->records;
        }

        return a->rc;
    }

    if (st->ops->list_records_async == NULL) {
        rc = ngx_ailink_state_list_records(st, prefix, rp->request->pool,
                                           out);

    } else {
        rc = st->ops->list_records_async(st, prefix, rp->request->pool, out,
                                         ngx_ailink_replay_reply, rp);
        if (rc == NGX_AGAIN) {
            return ngx_ailink_replay_wait(rp);
        }
    }

    /* out may be the caller's local: a run after this one gets a copy */
    kept = ngx_palloc(rp->request->pool, sizeof(ngx_array_t));
    if (kept == NULL) {
        return NGX_ERROR;
    }

    *kept = *out;

    return ngx_ailink_replay_keep(rp, rc, NULL, kept, 0);
}
