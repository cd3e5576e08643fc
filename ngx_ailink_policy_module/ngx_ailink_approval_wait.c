
/*
 * Copyright (C) AILink
 *
 * Sync mode (X-AILink-Approval-Wait: N): the request is held, with no
 * worker blocked.  Each held request has a timer for its deadline (408
 * approval_timeout) and sits in its worker's queue; while the queue is
 * not empty, one timer per worker reads the store's "apr:gen" counter
 * every 50 ms, and only when it moved looks up the held approvals.  A
 * decision in any worker (with Redis: on any gateway) thus releases its
 * holders within about 50 ms, and held requests cost nothing while
 * nothing is decided: no event fires for them but that one timer.  A
 * decided approval is then claimed as a request with its id would claim
 * it: the policies run again and the hook claims it.  The client going
 * away ends the hold (the request's pool cleanup takes it out of the
 * queue, and cancels a lookup on its way).
 */


#include "ngx_ailink_approval.h"


#define NGX_AILINK_APPROVAL_POLL    50      /* ms */


typedef struct {
    ngx_http_request_t         *request;
    ngx_str_t                   id;
    ngx_event_t                 deadline;
    ngx_queue_t                 queue;
    ngx_ailink_approval_ctx_t  *actx;
    unsigned                    queued:1;
    unsigned                    looking:1;  /* its approval is read */
} ngx_ailink_approval_hold_t;


static void ngx_ailink_approval_poll_handler(ngx_event_t *ev);
static void ngx_ailink_approval_generation_handler(void *data, ngx_int_t rc,
    int64_t gen);
static void ngx_ailink_approval_looked(void *data, ngx_int_t rc,
    ngx_str_t *raw, ngx_array_t *records);
static void ngx_ailink_approval_decided(ngx_ailink_approval_hold_t *h,
    ngx_int_t rc, ngx_str_t *raw);
static void ngx_ailink_approval_deadline_handler(ngx_event_t *ev);
static void ngx_ailink_approval_unhold(void *data);


static ngx_queue_t   ngx_ailink_approval_held;
static ngx_event_t   ngx_ailink_approval_poll_ev;
static int64_t       ngx_ailink_approval_seen_gen;
static ngx_uint_t    ngx_ailink_approval_nheld;
static ngx_uint_t    ngx_ailink_approval_polling;   /* a read on its way */


ngx_int_t
ngx_ailink_approval_wait_init(ngx_cycle_t *cycle)
{
    ngx_queue_init(&ngx_ailink_approval_held);

    ngx_memzero(&ngx_ailink_approval_poll_ev, sizeof(ngx_event_t));
    ngx_ailink_approval_poll_ev.handler = ngx_ailink_approval_poll_handler;
    ngx_ailink_approval_poll_ev.log = cycle->log;
    ngx_ailink_approval_poll_ev.data = cycle;
    ngx_ailink_approval_poll_ev.cancelable = 1;

    return NGX_OK;
}


ngx_int_t
ngx_ailink_approval_hold(ngx_http_request_t *r,
    ngx_ailink_approval_ctx_t *actx, ngx_ailink_approval_t *apr, time_t wait)
{
    ngx_pool_cleanup_t          *cln;
    ngx_ailink_approval_hold_t  *h;

    h = ngx_pcalloc(r->pool, sizeof(ngx_ailink_approval_hold_t));
    if (h == NULL) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    h->request = r;
    h->id = apr->id;
    h->actx = actx;
    actx->hold = h;

    h->deadline.handler = ngx_ailink_approval_deadline_handler;
    h->deadline.data = h;
    h->deadline.log = r->connection->log;

    cln->handler = ngx_ailink_approval_unhold;
    cln->data = h;

    if (ngx_queue_empty(&ngx_ailink_approval_held)) {
        /* the first tick looks at every held approval */
        ngx_ailink_approval_seen_gen = -1;
    }

    ngx_queue_insert_tail(&ngx_ailink_approval_held, &h->queue);
    h->queued = 1;
    ngx_ailink_approval_nheld++;

    ngx_add_timer(&h->deadline, (ngx_msec_t) wait * 1000);

    if (!ngx_ailink_approval_poll_ev.timer_set) {
        ngx_add_timer(&ngx_ailink_approval_poll_ev,
                      NGX_AILINK_APPROVAL_POLL);
    }

    /* the client may go away meanwhile; nothing is written until then */
    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_request_empty_handler;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ailink approval %V held for %T s", &apr->id, wait);

    return NGX_OK;
}


static void
ngx_ailink_approval_release(ngx_ailink_approval_hold_t *h)
{
    if (h->queued) {
        ngx_queue_remove(&h->queue);
        h->queued = 0;
        ngx_ailink_approval_nheld--;
    }

    if (h->deadline.timer_set) {
        ngx_del_timer(&h->deadline);
    }

    h->actx->hold = NULL;
}


static void
ngx_ailink_approval_unhold(void *data)
{
    ngx_ailink_approval_hold_t  *h = data;

    if (h->actx->hold) {
        ngx_ailink_approval_release(h);
    }
}


static void
ngx_ailink_approval_deadline_handler(ngx_event_t *ev)
{
    ngx_connection_t            *c;
    ngx_http_request_t          *r;
    ngx_ailink_approval_hold_t  *h;
    ngx_ailink_approval_t        apr;

    h = ev->data;
    r = h->request;
    c = r->connection;

    ngx_ailink_approval_release(h);

    ngx_memzero(&apr, sizeof(ngx_ailink_approval_t));
    apr.id = h->id;

    h->actx->decision = "timeout";

    ngx_ailink_approval_refuse(r, &apr, NGX_HTTP_REQUEST_TIME_OUT);

    ngx_http_run_posted_requests(c);
}


/* the approval of a held request: read it, without blocking */

static void
ngx_ailink_approval_resolve(ngx_ailink_approval_hold_t *h,
    ngx_ailink_state_t *st)
{
    ngx_int_t            rc;
    ngx_str_t            key, raw;
    ngx_http_request_t  *r;

    if (h->looking) {
        return;
    }

    r = h->request;

    ngx_str_null(&raw);

    if (ngx_ailink_approval_key(r->pool, &h->id, &key) != NGX_OK) {
        rc = NGX_ERROR;

    } else if (st->ops->get_record_async) {
        /* the request's pool cleanup cancels it: h lives as long */
        rc = st->ops->get_record_async(st, &key, r->pool, &raw,
                                       ngx_ailink_approval_looked, h);

    } else {
        rc = ngx_ailink_state_get_record(st, &key, r->pool, &raw);
    }

    if (rc == NGX_AGAIN) {
        h->looking = 1;
        return;
    }

    ngx_ailink_approval_looked(h, rc, &raw, NULL);
}


/* the store's answer, at once or from its event */

static void
ngx_ailink_approval_looked(void *data, ngx_int_t rc, ngx_str_t *raw,
    ngx_array_t *records)
{
    ngx_ailink_approval_hold_t  *h = data;

    ngx_connection_t  *c;

    c = h->request->connection;
    h->looking = 0;

    ngx_ailink_approval_decided(h, rc, raw);

    ngx_http_run_posted_requests(c);
}


/*
 * the approval of a held request was read: still pending, it stays held;
 * decided, it is claimed as a request with its id would claim it (the
 * policies run again and the hook claims it, or refuses it and says why)
 */

static void
ngx_ailink_approval_decided(ngx_ailink_approval_hold_t *h, ngx_int_t rc,
    ngx_str_t *raw)
{
    ngx_http_request_t          *r;
    ngx_ailink_approval_t        apr;
    ngx_ailink_approval_ctx_t   *actx;

    r = h->request;
    actx = h->actx;

    if (rc == NGX_OK) {
        if (ngx_ailink_approval_parse(r->pool, raw, &apr) != NGX_OK) {
            rc = NGX_ERROR;

        } else if (ngx_ailink_approval_status(&apr, ngx_time())
                   == NGX_AILINK_APPROVAL_PENDING)
        {
            return;
        }
    }

    if (rc == NGX_ERROR) {
        /* the store cannot say (Redis away): held until the next tick
           that can, or the deadline */
        ngx_ailink_approval_seen_gen = -1;
        return;
    }

    ngx_ailink_approval_release(h);

    if (rc == NGX_DECLINED) {
        ngx_ailink_approval_refuse(r, NULL, 0);
        return;
    }

    actx->claim_id = h->id;
    actx->held = 1;

    ngx_ailink_replay_restart(&actx->replay, ngx_ailink_approval_resume);

    r->read_event_handler = ngx_http_block_reading;
    ngx_ailink_approval_resume(r);
}


static void
ngx_ailink_approval_poll_handler(ngx_event_t *ev)
{
    int64_t                      gen;
    ngx_int_t                    rc;
    ngx_queue_t                 *q;
    ngx_ailink_state_t          *st;
    ngx_ailink_approval_hold_t  *h;

    if (ngx_queue_empty(&ngx_ailink_approval_held)
        || ngx_ailink_approval_polling)
    {
        return;
    }

    q = ngx_queue_head(&ngx_ailink_approval_held);
    h = ngx_queue_data(q, ngx_ailink_approval_hold_t, queue);
    st = ngx_ailink_policy_state(h->request);

    rc = ngx_ailink_approval_generation(st, &gen,
                                    ngx_ailink_approval_generation_handler);

    if (rc == NGX_AGAIN) {
        ngx_ailink_approval_polling = 1;
        return;
    }

    ngx_ailink_approval_generation_handler(NULL, rc, gen);
}


static void
ngx_ailink_approval_generation_handler(void *data, ngx_int_t rc, int64_t gen)
{
    ngx_queue_t                 *q, *next;
    ngx_ailink_state_t          *st;
    ngx_ailink_approval_hold_t  *h;

    ngx_ailink_approval_polling = 0;

    if (ngx_queue_empty(&ngx_ailink_approval_held)) {
        return;
    }

    if (rc == NGX_DECLINED) {
        rc = NGX_OK;
        gen = 0;
    }

    if (rc == NGX_OK && gen != ngx_ailink_approval_seen_gen) {
        ngx_ailink_approval_seen_gen = gen;

        q = ngx_queue_head(&ngx_ailink_approval_held);
        h = ngx_queue_data(q, ngx_ailink_approval_hold_t, queue);
        st = ngx_ailink_policy_state(h->request);

        for (q = ngx_queue_head(&ngx_ailink_approval_held);
             q != ngx_queue_sentinel(&ngx_ailink_approval_held);
             q = next)
        {
            next = ngx_queue_next(q);
            h = ngx_queue_data(q, ngx_ailink_approval_hold_t, queue);

            /* one held request per connection: resolving one ends
               no other */
            ngx_ailink_approval_resolve(h, st);
        }
    }

    /* an old worker after a reload keeps polling for its holders */
    if (!ngx_queue_empty(&ngx_ailink_approval_held)
        && !ngx_ailink_approval_poll_ev.timer_set)
    {
        ngx_add_timer(&ngx_ailink_approval_poll_ev, NGX_AILINK_APPROVAL_POLL);
    }
}


/* a decision in this worker: look at once rather than at the next tick */

void
ngx_ailink_approval_wake(void)
{
    if (!ngx_queue_empty(&ngx_ailink_approval_held)) {
        ngx_post_event(&ngx_ailink_approval_poll_ev, &ngx_posted_events);
    }
}
