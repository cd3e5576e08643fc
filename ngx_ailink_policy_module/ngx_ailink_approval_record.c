
/*
 * Copyright (C) AILink
 *
 * Approval records in the state store, one per approval under the key
 * "apr:<id>", as a JSON object.  Every change of state is a
 * compare-and-set of the whole record, so that two deciders or two
 * claims racing cannot both win; records are persistent (written to the
 * data directory with the spend counters) and kept a day past their
 * expiry so that agents can still read what became of them.  A counter,
 * "apr:gen", is bumped on every decision: held requests in every worker
 * poll it to learn that something changed.
 */


#include "ngx_ailink_approval.h"


static const char  *ngx_ailink_approval_states[] = {
    "pending", "approved", "rejected", "claimed", "expired"
};


ngx_int_t
ngx_ailink_approval_key(ngx_pool_t *pool, ngx_str_t *id, ngx_str_t *key)
{
    key->len = sizeof("apr:") - 1 + id->len;
    key->data = ngx_pnalloc(pool, key->len);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(key->data, "apr:%V", id);

    return NGX_OK;
}


const char *
ngx_ailink_approval_status_name(ngx_uint_t status)
{
    return status <= NGX_AILINK_APPROVAL_EXPIRED
           ? ngx_ailink_approval_states[status] : "unknown";
}


/* the state as the world sees it: pending and approved ones expire */

ngx_uint_t
ngx_ailink_approval_status(ngx_ailink_approval_t *apr, time_t now)
{
    if ((apr->status == NGX_AILINK_APPROVAL_PENDING
         || apr->status == NGX_AILINK_APPROVAL_APPROVED)
        && now >= apr->expires_at)
    {
        return NGX_AILINK_APPROVAL_EXPIRED;
    }

    return apr->status;
}


u_char *
ngx_ailink_approval_time(u_char *p, time_t t)
{
    ngx_tm_t  tm;

    ngx_gmtime(t, &tm);

    return ngx_sprintf(p, "%4d-%02d-%02dT%02d:%02d:%02dZ",
                       tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                       tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);
}


/* ,"key":"escaped" */

u_char *
ngx_ailink_approval_member(u_char *p, const char *key, ngx_str_t *s)
{
    *p++ = ',';
    *p++ = '"';
    p = ngx_cpymem(p, key, ngx_strlen(key));
    *p++ = '"';
    *p++ = ':';
    *p++ = '"';
    p = ngx_ailink_json_escape(p, s);
    *p++ = '"';

    return p;
}


size_t
ngx_ailink_approval_view_len(ngx_ailink_approval_t *apr)
{
    return 512 + 16 * 16
           + ngx_ailink_json_escape_len(&apr->id)
           + ngx_ailink_json_escape_len(&apr->token_id)
           + ngx_ailink_json_escape_len(&apr->project)
           + ngx_ailink_json_escape_len(&apr->agent)
           + ngx_ailink_json_escape_len(&apr->policy)
           + ngx_ailink_json_escape_len(&apr->rule)
           + ngx_ailink_json_escape_len(&apr->reason)
           + ngx_ailink_json_escape_len(&apr->notes)
           + ngx_ailink_json_escape_len(&apr->method)
           + ngx_ailink_json_escape_len(&apr->path)
           + ngx_ailink_json_escape_len(&apr->digest)
           + ngx_ailink_json_escape_len(&apr->preview)
           + ngx_ailink_json_escape_len(&apr->decided_by)
           + ngx_ailink_json_escape_len(&apr->decision_reason);
}


static u_char *
ngx_ailink_approval_common(u_char *p, ngx_ailink_approval_t *apr)
{
    p = ngx_ailink_approval_member(p, "token_id", &apr->token_id);
    p = ngx_ailink_approval_member(p, "project", &apr->project);
    p = ngx_ailink_approval_member(p, "agent", &apr->agent);
    p = ngx_ailink_approval_member(p, "policy_name", &apr->policy);
    p = ngx_ailink_approval_member(p, "rule", &apr->rule);
    p = ngx_ailink_approval_member(p, "reason", &apr->reason);
    p = ngx_ailink_approval_member(p, "notes", &apr->notes);
    p = ngx_ailink_approval_member(p, "method", &apr->method);
    p = ngx_ailink_approval_member(p, "path", &apr->path);
    p = ngx_ailink_approval_member(p, "body_preview", &apr->preview);
    p = ngx_ailink_approval_member(p, "decided_by", &apr->decided_by);
    p = ngx_ailink_approval_member(p, "decision_reason",
                                   &apr->decision_reason);

    return p;
}


/* what an approver sees (the admin API and the page) */

u_char *
ngx_ailink_approval_admin_view(u_char *p, ngx_ailink_approval_t *apr,
    time_t now)
{
    p = ngx_cpymem(p, "{\"id\":\"", sizeof("{\"id\":\"") - 1);
    p = ngx_ailink_json_escape(p, &apr->id);
    p = ngx_sprintf(p, "\",\"status\":\"%s\"",
                    ngx_ailink_approval_status_name(
                        ngx_ailink_approval_status(apr, now)));
    p = ngx_sprintf(p, ",\"claimed\":%s",
                    apr->status == NGX_AILINK_APPROVAL_CLAIMED
                    ? "true" : "false");
    p = ngx_ailink_approval_common(p, apr);

    p = ngx_cpymem(p, ",\"created_at\":\"", sizeof(",\"created_at\":\"") - 1);
    p = ngx_ailink_approval_time(p, apr->created_at);
    p = ngx_cpymem(p, "\",\"expires_at\":\"",
                   sizeof("\",\"expires_at\":\"") - 1);
    p = ngx_ailink_approval_time(p, apr->expires_at);
    *p++ = '"';

    if (apr->decided_at) {
        p = ngx_cpymem(p, ",\"decided_at\":\"",
                       sizeof(",\"decided_at\":\"") - 1);
        p = ngx_ailink_approval_time(p, apr->decided_at);
        *p++ = '"';
    }

    *p++ = '}';

    return p;
}


/* NGX_OK, NGX_BUSY or NGX_DECLINED (cas_record's), NGX_AGAIN, NGX_ERROR */

ngx_int_t
ngx_ailink_approval_store(ngx_ailink_replay_t *rp, ngx_ailink_state_t *st,
    ngx_ailink_approval_t *apr, ngx_str_t *expect)
{
    u_char      *p;
    time_t       ttl;
    ngx_int_t    rc;
    ngx_str_t    key, value;
    ngx_pool_t  *pool;

    pool = rp->request->pool;

    if (ngx_ailink_approval_key(pool, &apr->id, &key) != NGX_OK) {
        return NGX_ERROR;
    }

    value.data = ngx_pnalloc(pool, ngx_ailink_approval_view_len(apr)
                                   + ngx_ailink_json_escape_len(&apr->digest)
                                   + 128);
    if (value.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(value.data, "{\"id\":\"%V\",\"status\":\"%s\"",
                    &apr->id, ngx_ailink_approval_status_name(apr->status));
    p = ngx_ailink_approval_common(p, apr);
    p = ngx_ailink_approval_member(p, "digest", &apr->digest);
    p = ngx_sprintf(p, ",\"created_at\":%T,\"expires_at\":%T,"
                    "\"decided_at\":%T}", apr->created_at, apr->expires_at,
                    apr->decided_at);

    value.len = p - value.data;

    ttl = apr->expires_at + NGX_AILINK_APPROVAL_KEEP - ngx_time();
    ttl = ngx_max(ttl, 1);

    rc = ngx_ailink_replay_cas_record(rp, st, &key, expect, &value, ttl,
                                      NGX_AILINK_STATE_PERSIST);

    if (rc == NGX_OK) {
        apr->raw = value;
    }

    return rc;
}


static ngx_int_t
ngx_ailink_approval_str(ngx_pool_t *pool, cJSON *obj, const char *name,
    ngx_str_t *s)
{
    cJSON  *item;

    item = ngx_ailink_json_get(obj, name);

    if (item == NULL) {
        ngx_str_null(s);
        return NGX_OK;
    }

    if (!cJSON_IsString(item)) {
        return NGX_ERROR;
    }

    s->len = ngx_strlen(item->valuestring);
    s->data = ngx_pnalloc(pool, s->len + 1);
    if (s->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(s->data, item->valuestring, s->len + 1);

    return NGX_OK;
}


ngx_int_t
ngx_ailink_approval_parse(ngx_pool_t *pool, ngx_str_t *raw,
    ngx_ailink_approval_t *apr)
{
    cJSON       *json, *item;
    ngx_str_t    status;
    ngx_int_t    rc;
    ngx_uint_t   i;

    json = ngx_ailink_json_parse(raw);
    if (json == NULL || !cJSON_IsObject(json)) {
        if (json) {
            ngx_ailink_json_delete(json);
        }

        return NGX_ERROR;
    }

    ngx_memzero(apr, sizeof(ngx_ailink_approval_t));
    apr->raw = *raw;

    rc = NGX_ERROR;

    if (ngx_ailink_approval_str(pool, json, "id", &apr->id) != NGX_OK
        || ngx_ailink_approval_str(pool, json, "status", &status) != NGX_OK
        || ngx_ailink_approval_str(pool, json, "token_id", &apr->token_id)
           != NGX_OK
        || ngx_ailink_approval_str(pool, json, "project", &apr->project)
           != NGX_OK
        || ngx_ailink_approval_str(pool, json, "agent", &apr->agent) != NGX_OK
        || ngx_ailink_approval_str(pool, json, "policy_name", &apr->policy)
           != NGX_OK
        || ngx_ailink_approval_str(pool, json, "rule", &apr->rule) != NGX_OK
        || ngx_ailink_approval_str(pool, json, "reason", &apr->reason)
           != NGX_OK
        || ngx_ailink_approval_str(pool, json, "notes", &apr->notes) != NGX_OK
        || ngx_ailink_approval_str(pool, json, "method", &apr->method)
           != NGX_OK
        || ngx_ailink_approval_str(pool, json, "path", &apr->path) != NGX_OK
        || ngx_ailink_approval_str(pool, json, "digest", &apr->digest)
           != NGX_OK
        || ngx_ailink_approval_str(pool, json, "body_preview", &apr->preview)
           != NGX_OK
        || ngx_ailink_approval_str(pool, json, "decided_by",
                                   &apr->decided_by)
           != NGX_OK
        || ngx_ailink_approval_str(pool, json, "decision_reason",
                                   &apr->decision_reason)
           != NGX_OK
        || apr->id.len == 0 || apr->digest.len == 0)
    {
        goto done;
    }

    for (i = 0; i < NGX_AILINK_APPROVAL_EXPIRED; i++) {
        if (status.len == ngx_strlen(ngx_ailink_approval_states[i])
            && ngx_strncmp(status.data, ngx_ailink_approval_states[i],
                           status.len) == 0)
        {
            break;
        }
    }

    if (i == NGX_AILINK_APPROVAL_EXPIRED) {
        goto done;
    }

    apr->status = i;

    item = ngx_ailink_json_get(json, "created_at");
    apr->created_at = cJSON_IsNumber(item) ? (time_t) item->valuedouble : 0;
    item = ngx_ailink_json_get(json, "expires_at");
    apr->expires_at = cJSON_IsNumber(item) ? (time_t) item->valuedouble : 0;
    item = ngx_ailink_json_get(json, "decided_at");
    apr->decided_at = cJSON_IsNumber(item) ? (time_t) item->valuedouble : 0;

    rc = NGX_OK;

done:

    ngx_ailink_json_delete(json);

    return rc;
}


/*
 * NGX_OK, NGX_DECLINED when there is no such approval, NGX_AGAIN (the
 * store answers later), NGX_ERROR
 */

ngx_int_t
ngx_ailink_approval_load(ngx_ailink_replay_t *rp, ngx_ailink_state_t *st,
    ngx_str_t *id, ngx_ailink_approval_t *apr)
{
    ngx_int_t    rc;
    ngx_str_t    key, raw;
    ngx_pool_t  *pool;

    pool = rp->request->pool;

    if (ngx_ailink_approval_key(pool, id, &key) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_ailink_replay_get_record(rp, st, &key, &raw);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_ailink_approval_parse(pool, &raw, apr);
}


/*
 * "apr:gen" counts decisions and claims: held requests look at their
 * approvals only when it moved (ngx_ailink_approval_wait.c); with Redis,
 * the gateways count together, so a decision anywhere moves it
 */

void
ngx_ailink_approval_notify(ngx_ailink_state_t *st)
{
    int64_t    value;
    ngx_str_t  key = ngx_string("apr:gen");

    (void) ngx_ailink_state_add_async(st, &key, 1, -1, 86400 * 365, 0, &value,
                                      NULL, NULL, NULL);
}


/*
 * NGX_OK with *gen, NGX_DECLINED (never counted: 0), NGX_AGAIN when
 * handler gets it later, NGX_ERROR
 */

ngx_int_t
ngx_ailink_approval_generation(ngx_ailink_state_t *st, int64_t *gen,
    ngx_ailink_state_handler_pt handler)
{
    ngx_str_t  key = ngx_string("apr:gen");

    return ngx_ailink_state_get_async(st, &key, gen, NULL, handler, NULL);
}
