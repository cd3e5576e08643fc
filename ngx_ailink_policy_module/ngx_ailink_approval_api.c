
/*
 * Copyright (C) AILink
 *
 * The approvers' endpoints, until the admin API absorbs them:
 *
 *   location /api/v1/approvals { ailink_approvals_api; }
 *
 *   GET  .../approvals[?status=pending|approved|rejected|expired|claimed]
 *   GET  .../approvals/<id>
 *   POST .../approvals/<id>/decision  {"decision":"approve"|"reject",
 *                                      "reason":"..."}
 *
 * with "Authorization: Bearer ailink_admin_..." whose SHA-256 is among
 * the config file's "admin_keys" (ngx_ailink_admin_key.c, shared with the
 * cache and breaker APIs).  Every decision is logged with who decided and
 * why, and stored in the record.
 */


#include "ngx_ailink_approval.h"


static void ngx_ailink_approval_api_resume(ngx_http_request_t *r);
static void ngx_ailink_approval_decision_body(ngx_http_request_t *r);


static ngx_int_t
ngx_ailink_approval_send(ngx_http_request_t *r, ngx_uint_t status,
    u_char *data, u_char *last)
{
    ngx_str_t  json;

    json.data = data;
    json.len = last - data;

    return ngx_ailink_send_json(r, status, &json);
}


static ngx_int_t
ngx_ailink_approval_list(ngx_http_request_t *r, ngx_ailink_state_t *st,
    ngx_ailink_replay_t *rp)
{
    u_char                 *p, *buf;
    size_t                  len;
    time_t                  now;
    ngx_int_t               rc;
    ngx_str_t               want, prefix = ngx_string("apr:");
    ngx_uint_t              i, n;
    ngx_array_t             recs;
    ngx_keyval_t           *kv;
    const char             *name;
    ngx_ailink_approval_t  *aprs;

    ngx_str_null(&want);

    if (r->args.len
        && ngx_http_arg(r, (u_char *) "status", 6, &want) != NGX_OK)
    {
        ngx_str_null(&want);
    }

    if (ngx_array_init(&recs, r->pool, 16, sizeof(ngx_keyval_t)) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_ailink_replay_list_records(rp, st, &prefix, &recs);

    if (rc == NGX_AGAIN) {
        return NGX_DONE;
    }

    if (rc != NGX_OK) {
        return ngx_ailink_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                     "service_unavailable",
                                     "the approvals cannot be read now",
                                     NULL);
    }

    aprs = ngx_pcalloc(r->pool, (recs.nelts + 1)
                                * sizeof(ngx_ailink_approval_t));
    if (aprs == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    now = ngx_time();
    kv = recs.elts;
    len = sizeof("{\"object\":\"list\",\"data\":[]}");
    n = 0;

    for (i = 0; i < recs.nelts; i++) {
        if (ngx_ailink_approval_parse(r->pool, &kv[i].value, &aprs[n])
            != NGX_OK)
        {
            continue;
        }

        name = ngx_ailink_approval_status_name(
                   ngx_ailink_approval_status(&aprs[n], now));

        if (want.len
            && (want.len != ngx_strlen(name)
                || ngx_strncmp(want.data, name, want.len) != 0))
        {
            continue;
        }

        len += ngx_ailink_approval_view_len(&aprs[n]) + 1;
        n++;
    }

    buf = ngx_pnalloc(r->pool, len);
    if (buf == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(buf, "{\"object\":\"list\",\"data\":[",
                   sizeof("{\"object\":\"list\",\"data\":[") - 1);

    /* the oldest first: the order approvers work in */
    for (i = n; i > 0; i--) {
        if (i != n) {
            *p++ = ',';
        }

        p = ngx_ailink_approval_admin_view(p, &aprs[i - 1], now);
    }

    p = ngx_cpymem(p, "]}", 2);

    return ngx_ailink_approval_send(r, NGX_HTTP_OK, buf, p);
}


/* the store answered: the handler runs again and finds its answers */

static void
ngx_ailink_approval_api_resume(ngx_http_request_t *r)
{
    ngx_http_finalize_request(r, ngx_ailink_approval_api_handler(r));
}


ngx_int_t
ngx_ailink_approval_api_handler(ngx_http_request_t *r)
{
    u_char                     *p, *last, *slash, *buf;
    ngx_int_t                   rc;
    ngx_str_t                   id, rest, *who;
    ngx_ailink_state_t         *st;
    ngx_ailink_approval_t       apr;
    ngx_ailink_approval_ctx_t  *actx;

    if (ngx_ailink_create_ctx(r) == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    actx = ngx_ailink_approval_get_ctx(r);
    if (actx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_ailink_replay_enter(&actx->replay, ngx_ailink_approval_api_resume, 1);

    who = ngx_ailink_admin_key_find(r);

    if (who == NULL) {
        return ngx_ailink_send_error(r, NGX_HTTP_UNAUTHORIZED,
                                     "invalid_token",
                                     "an admin key is required", NULL);
    }

    st = ngx_ailink_policy_state(r);

    if (st == NULL) {
        return ngx_ailink_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                     "service_unavailable",
                                     "no \"ailink_state_zone\" holds "
                                     "approvals", NULL);
    }

    /* what follows ".../approvals" in the path */
    last = r->uri.data + r->uri.len;
    p = ngx_strlcasestrn(r->uri.data, last, (u_char *) "/approvals", 9);

    if (p == NULL) {
        goto not_found;
    }

    rest.data = p + sizeof("/approvals") - 1;
    rest.len = last - rest.data;

    if (rest.len == 0 || (rest.len == 1 && rest.data[0] == '/')) {
        if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
            goto not_allowed;
        }

        return ngx_ailink_approval_list(r, st, &actx->replay);
    }

    if (rest.data[0] != '/') {
        goto not_found;
    }

    id.data = rest.data + 1;
    slash = ngx_strlchr(id.data, last, '/');
    id.len = (slash ? slash : last) - id.data;

    if (id.len != NGX_AILINK_APPROVAL_ID_LEN) {
        goto not_found;
    }

    if (slash == NULL) {
        if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
            goto not_allowed;
        }

        rc = ngx_ailink_approval_load(&actx->replay, st, &id, &apr);

        if (rc == NGX_AGAIN) {
            return NGX_DONE;
        }

        if (rc == NGX_ERROR) {
            goto unavailable;
        }

        if (rc == NGX_DECLINED) {
            goto not_found;
        }

        buf = ngx_pnalloc(r->pool, ngx_ailink_approval_view_len(&apr));
        if (buf == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_ailink_approval_admin_view(buf, &apr, ngx_time());

        return ngx_ailink_approval_send(r, NGX_HTTP_OK, buf, p);
    }

    if ((size_t) (last - slash) != sizeof("/decision") - 1
        || ngx_strncmp(slash, "/decision", sizeof("/decision") - 1) != 0)
    {
        goto not_found;
    }

    if (r->method != NGX_HTTP_POST) {
        goto not_allowed;
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r,
                                        ngx_ailink_approval_decision_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;

not_found:

    return ngx_ailink_send_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                 "no such approval", NULL);

not_allowed:

    return ngx_ailink_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                 "method_not_allowed",
                                 "method not allowed on this route", NULL);

unavailable:

    return ngx_ailink_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "service_unavailable",
                                 "the approvals cannot be read now", NULL);
}


static void
ngx_ailink_approval_decision_body(ngx_http_request_t *r)
{
    u_char                 *p, *last, *buf;
    cJSON                  *json, *item;
    time_t                  now;
    ngx_int_t               rc;
    ngx_str_t               id, body, old, reason, *who;
    ngx_uint_t              decision, status;
    ngx_ailink_state_t         *st;
    ngx_ailink_approval_t       apr;
    ngx_ailink_approval_ctx_t  *actx;

    who = ngx_ailink_admin_key_find(r);
    st = ngx_ailink_policy_state(r);

    actx = ngx_ailink_approval_get_ctx(r);
    if (actx == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    /* the store's answers run this again; it finalizes on its own */
    ngx_ailink_replay_enter(&actx->replay, ngx_ailink_approval_decision_body,
                            0);

    last = r->uri.data + r->uri.len - (sizeof("/decision") - 1);
    id.data = last - NGX_AILINK_APPROVAL_ID_LEN;
    id.len = NGX_AILINK_APPROVAL_ID_LEN;

    ngx_str_null(&body);

    if (r->request_body && r->request_body->bufs
        && r->request_body->bufs->next == NULL
        && !r->request_body->bufs->buf->in_file)
    {
        body.data = r->request_body->bufs->buf->pos;
        body.len = r->request_body->bufs->buf->last - body.data;
    }

    json = body.len ? ngx_ailink_json_parse(&body) : NULL;
    item = json ? ngx_ailink_json_get(json, "decision") : NULL;

    if (item && ngx_ailink_json_is(item, "approve")) {
        decision = NGX_AILINK_APPROVAL_APPROVED;

    } else if (item && ngx_ailink_json_is(item, "reject")) {
        decision = NGX_AILINK_APPROVAL_REJECTED;

    } else {
        if (json) {
            ngx_ailink_json_delete(json);
        }

        ngx_ailink_finalize_error(r, NGX_HTTP_BAD_REQUEST, "invalid_request",
                                  "the body must be {\"decision\": "
                                  "\"approve\" or \"reject\", \"reason\": "
                                  "\"...\"}", "decision");
        return;
    }

    ngx_str_null(&reason);
    item = ngx_ailink_json_get(json, "reason");

    if (cJSON_IsString(item)) {
        reason.len = ngx_min(ngx_strlen(item->valuestring), 1024);
        reason.data = ngx_pnalloc(r->pool, reason.len);

        if (reason.data == NULL) {
            ngx_ailink_json_delete(json);
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        ngx_memcpy(reason.data, item->valuestring, reason.len);
    }

    ngx_ailink_json_delete(json);

    rc = ngx_ailink_approval_load(&actx->replay, st, &id, &apr);

    if (rc == NGX_AGAIN) {
        return;
    }

    if (rc == NGX_DECLINED) {
        ngx_ailink_finalize_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                  "no such approval", NULL);
        return;
    }

    if (rc != NGX_OK) {
        ngx_ailink_finalize_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "service_unavailable",
                                  "the approvals cannot be read now", NULL);
        return;
    }

    now = ngx_time();
    status = ngx_ailink_approval_status(&apr, now);

    if (status != NGX_AILINK_APPROVAL_PENDING) {
        ngx_ailink_finalize_error(r, NGX_HTTP_CONFLICT, "approval_decided",
                                  status == NGX_AILINK_APPROVAL_EXPIRED
                                  ? "the approval has expired"
                                  : "the approval was already decided",
                                  NULL);
        return;
    }

    old = apr.raw;
    apr.status = decision;
    apr.decided_at = now;
    apr.decided_by = *who;
    apr.decision_reason = reason;

    rc = ngx_ailink_approval_store(&actx->replay, st, &apr, &old);

    if (rc == NGX_AGAIN) {
        return;
    }

    if (rc == NGX_BUSY || rc == NGX_DECLINED) {
        ngx_ailink_finalize_error(r, NGX_HTTP_CONFLICT, "approval_decided",
                                  "the approval was decided meanwhile",
                                  NULL);
        return;
    }

    if (rc != NGX_OK) {
        ngx_ailink_finalize_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "service_unavailable",
                                  "the decision cannot be stored now", NULL);
        return;
    }

    ngx_ailink_approval_notify(st);
    ngx_ailink_approval_wake();

    /* the decision in this request's audit record */
    actx->id = apr.id;
    actx->decision = decision == NGX_AILINK_APPROVAL_APPROVED
                     ? "approved" : "rejected";
    actx->decided_by = *who;
    actx->reason = reason;

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "ailink approval %V %s by \"%V\": \"%V\" (policy \"%V\", "
                  "token \"%V\", %V %V)", &apr.id,
                  decision == NGX_AILINK_APPROVAL_APPROVED
                  ? "approved" : "rejected",
                  who, &reason, &apr.policy, &apr.token_id, &apr.method,
                  &apr.path);

    buf = ngx_pnalloc(r->pool, ngx_ailink_approval_view_len(&apr));
    if (buf == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = ngx_ailink_approval_admin_view(buf, &apr, now);

    ngx_http_finalize_request(r, ngx_ailink_approval_send(r, NGX_HTTP_OK,
                                                          buf, p));
}
