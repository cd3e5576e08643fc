
/*
 * Copyright (C) AILink
 *
 * Idempotency keys (Idempotency-Key or X-AILink-Idempotency-Key).  The
 * first request with a key, per token, takes it in the state store with
 * a compare-and-set ("in flight"); its upstream response (status,
 * headers, body) is captured by filters that sit below every other
 * AILink filter, so that what is stored is what the client got, and kept
 * for ailink_idempotency_ttl.  A repeat with the same method, path and
 * body is answered from the record, with X-AILink-Idempotent-Replay:
 * true, and the upstream is not called; a repeat while the first is in
 * flight gets 409 idempotency_conflict; a repeat with another method,
 * path or body gets 422 idempotency_key_reused, never the other
 * request's response.
 *
 * Not stored (the key is released, so a retry runs again): the
 * gateway's own answers (errors, 202 pending_approval), upstream 5xx,
 * responses larger
 * than ailink_idempotency_max_size, and streams (text/event-stream),
 * which are not replayed.  A request that holds an approval id is
 * idempotent by itself: a repeated claim replays the claimed response.
 *
 * The check runs first in the precontent phase (registered by the
 * approval module, the last of the list), before policies and routing;
 * the body is read for its digest when no one has read it yet.  With
 * backend=redis the keys are in Redis, taken once for every gateway: the
 * check then runs again on each reply (ngx_ailink_state_replay.h), and
 * the response is stored, or the key released, without waiting.
 */


#include "ngx_ailink_approval.h"

#include <openssl/sha.h>


#define NGX_AILINK_IDEM_INFLIGHT_TTL   300

#define NGX_AILINK_IDEM_HEAD  "ailink-idem 1 "


typedef struct {
    time_t                      ttl;
    size_t                      max_size;
} ngx_ailink_idem_conf_t;


typedef struct {
    ngx_str_t                   key;        /* the header's value */
    ngx_str_t                   state_key;  /* idem:<token>:<hash> */
    ngx_str_t                   digest;
    ngx_str_t                   inflight;   /* the in-flight record */
    ngx_chain_t                *body;       /* captured */
    ngx_chain_t               **last;
    size_t                      size;
    ngx_str_t                   head;       /* status and headers */
    ngx_ailink_replay_t         replay;     /* the store's answers */
    unsigned                    owner:1;
    unsigned                    capture:1;
    unsigned                    stored:1;
    unsigned                    checked:1;
    unsigned                    reading:1;
    unsigned                    claim:1;    /* the key is an approval id */
    unsigned                    replayed:1;
} ngx_ailink_idem_ctx_t;


static void ngx_ailink_idem_resume(ngx_http_request_t *r);
static ngx_int_t ngx_ailink_idem_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_ailink_idem_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static void *ngx_ailink_idem_create_main_conf(ngx_conf_t *cf);
static char *ngx_ailink_idem_init_main_conf(ngx_conf_t *cf, void *conf);
static ngx_int_t ngx_ailink_idem_postconfiguration(ngx_conf_t *cf);


static ngx_command_t  ngx_ailink_idem_commands[] = {

    { ngx_string("ailink_idempotency_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_ailink_idem_conf_t, ttl),
      NULL },

    { ngx_string("ailink_idempotency_max_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_ailink_idem_conf_t, max_size),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_ailink_idem_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_ailink_idem_postconfiguration,     /* postconfiguration */

    ngx_ailink_idem_create_main_conf,      /* create main configuration */
    ngx_ailink_idem_init_main_conf,        /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_ailink_idempotency_module = {
    NGX_MODULE_V1,
    &ngx_ailink_idem_module_ctx,           /* module context */
    ngx_ailink_idem_commands,              /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


static ngx_ailink_idem_ctx_t *
ngx_ailink_idem_get_ctx(ngx_http_request_t *r)
{
    ngx_ailink_idem_ctx_t  *ictx;

    ictx = ngx_http_get_module_ctx(r, ngx_ailink_idempotency_module);

    if (ictx == NULL) {
        ictx = ngx_pcalloc(r->pool, sizeof(ngx_ailink_idem_ctx_t));
        if (ictx == NULL) {
            return NULL;
        }

        if (ngx_ailink_replay_init(&ictx->replay, r, ngx_ailink_idem_resume)
            != NGX_OK)
        {
            return NULL;
        }

        ngx_http_set_ctx(r, ictx, ngx_ailink_idempotency_module);
    }

    return ictx;
}


/*
 * ACCESS phase, before the auth module drops X-AILink-* headers: the key
 * (Idempotency-Key wins over X-AILink-Idempotency-Key)
 */

ngx_int_t
ngx_ailink_idempotency_headers(ngx_http_request_t *r)
{
    ngx_uint_t              i;
    ngx_list_part_t        *part;
    ngx_table_elt_t        *h, *found;
    ngx_ailink_idem_ctx_t  *ictx;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    found = NULL;
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("Idempotency-Key") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Idempotency-Key",
                               sizeof("Idempotency-Key") - 1) == 0)
        {
            found = &h[i];
            break;
        }

        if (h[i].key.len == sizeof("X-AILink-Idempotency-Key") - 1
            && ngx_strncasecmp(h[i].key.data,
                               (u_char *) "X-AILink-Idempotency-Key",
                               sizeof("X-AILink-Idempotency-Key") - 1) == 0)
        {
            found = &h[i];
        }
    }

    if (found == NULL || found->value.len == 0) {
        return NGX_DECLINED;
    }

    ictx = ngx_ailink_idem_get_ctx(r);
    if (ictx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ictx->key = found->value;

    return NGX_DECLINED;
}


/* the store answered: the check runs again and finds its answers */

static void
ngx_ailink_idem_resume(ngx_http_request_t *r)
{
    ngx_ailink_idem_ctx_t  *ictx;

    ictx = ngx_http_get_module_ctx(r, ngx_ailink_idempotency_module);
    ictx->checked = 0;

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


static void
ngx_ailink_idem_body_read(ngx_http_request_t *r)
{
    ngx_ailink_idem_ctx_t  *ictx;

    ictx = ngx_http_get_module_ctx(r, ngx_ailink_idempotency_module);
    ictx->reading = 0;

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


static ngx_int_t
ngx_ailink_idem_digest(ngx_http_request_t *r, ngx_ailink_idem_ctx_t *ictx,
    ngx_str_t *token_id)
{
    u_char        md[SHA256_DIGEST_LENGTH], *p;
    ngx_buf_t    *b;
    SHA256_CTX    sha;
    ngx_chain_t  *cl;

    SHA256_Init(&sha);
    SHA256_Update(&sha, r->method_name.data, r->method_name.len);
    SHA256_Update(&sha, "", 1);
    SHA256_Update(&sha, r->unparsed_uri.data, r->unparsed_uri.len);
    SHA256_Update(&sha, "", 1);

    if (r->request_body) {
        for (cl = r->request_body->bufs; cl; cl = cl->next) {
            b = cl->buf;

            if (b->in_file) {
                /* not read back on the event loop: refused */
                return NGX_DECLINED;
            }

            SHA256_Update(&sha, b->pos, b->last - b->pos);
        }
    }

    SHA256_Final(md, &sha);

    ictx->digest.data = ngx_pnalloc(r->pool, 2 * sizeof(md));
    if (ictx->digest.data == NULL) {
        return NGX_ERROR;
    }

    ictx->digest.len = ngx_hex_dump(ictx->digest.data, md, sizeof(md))
                       - ictx->digest.data;

    /* idem:<token id>:<SHA-256 of the key> */
    SHA256(ictx->key.data, ictx->key.len, md);

    ictx->state_key.data = ngx_pnalloc(r->pool, sizeof("idem::") + 64
                                                + token_id->len + 6);
    if (ictx->state_key.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(ictx->state_key.data, "idem%s:%V:",
                    ictx->claim ? "-claim" : "", token_id);
    p = ngx_hex_dump(p, md, sizeof(md));
    ictx->state_key.len = p - ictx->state_key.data;

    return NGX_OK;
}


/* the key is released when the response is not stored */

static void
ngx_ailink_idem_release(void *data)
{
    ngx_http_request_t  *r = data;

    ngx_ailink_state_t     *st;
    ngx_ailink_idem_ctx_t  *ictx;

    ictx = ngx_http_get_module_ctx(r, ngx_ailink_idempotency_module);

    if (ictx == NULL || !ictx->owner || ictx->stored) {
        return;
    }

    st = ngx_ailink_policy_state(r);

    /* only our own in-flight mark */
    (void) ngx_ailink_state_cas_record_nowait(st, &ictx->state_key,
                                              &ictx->inflight, NULL, 1, 0);
}


static ngx_int_t
ngx_ailink_idem_replay(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_str_t *rec)
{
    u_char           *p, *last, *nl, *colon;
    ngx_int_t         rc, status;
    ngx_buf_t        *b;
    ngx_chain_t       out;
    ngx_table_elt_t  *h;

    /* "<status>\n" then "Name: value\n" lines, "\n", the body */
    p = rec->data;
    last = rec->data + rec->len;

    nl = ngx_strlchr(p, last, '\n');
    if (nl == NULL) {
        return NGX_ERROR;
    }

    status = ngx_atoi(p, nl - p);
    if (status == NGX_ERROR) {
        return NGX_ERROR;
    }

    ctx->own_response = 1;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    r->headers_out.status = status;
    p = nl + 1;

    while (p < last && *p != '\n') {
        nl = ngx_strlchr(p, last, '\n');
        colon = nl ? ngx_strlchr(p, nl, ':') : NULL;

        if (colon == NULL) {
            return NGX_ERROR;
        }

        if (colon - p == sizeof("Content-Type") - 1
            && ngx_strncasecmp(p, (u_char *) "Content-Type",
                               sizeof("Content-Type") - 1) == 0)
        {
            r->headers_out.content_type.data = colon + 2;
            r->headers_out.content_type.len = nl - colon - 2;
            r->headers_out.content_type_len =
                                        r->headers_out.content_type.len;

        } else {
            h = ngx_list_push(&r->headers_out.headers);
            if (h == NULL) {
                return NGX_ERROR;
            }

            h->hash = 1;
            h->key.data = p;
            h->key.len = colon - p;
            h->value.data = colon + 2;
            h->value.len = nl - colon - 2;
        }

        p = nl + 1;
    }

    if (p >= last) {
        return NGX_ERROR;
    }

    p++;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "X-AILink-Idempotent-Replay");
    ngx_str_set(&h->value, "true");

    r->headers_out.content_length_n = last - p;

    if (r->method == NGX_HTTP_HEAD || last == p) {
        r->header_only = 1;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = p;
    b->last = last;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* PRECONTENT, first: replay, refuse, or take the key */

ngx_int_t
ngx_ailink_idempotency_handler(ngx_http_request_t *r)
{
    u_char                     *p, *last;
    ngx_int_t                   rc;
    ngx_str_t                   rec, digest;
    ngx_ailink_ctx_t           *ctx;
    ngx_pool_cleanup_t         *cln;
    ngx_ailink_state_t         *st;
    ngx_ailink_idem_ctx_t      *ictx;
    ngx_ailink_approval_ctx_t  *actx;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    ictx = ngx_http_get_module_ctx(r, ngx_ailink_idempotency_module);
    ctx = ngx_ailink_get_ctx(r);

    if (ctx == NULL || ctx->token == NULL) {
        return NGX_DECLINED;
    }

    if (ictx == NULL || ictx->key.len == 0) {
        /* a claim is idempotent by its approval id */
        actx = ngx_http_get_module_ctx(r, ngx_ailink_approval_module);

        if (actx == NULL || actx->claim_id.len == 0) {
            return NGX_DECLINED;
        }

        ictx = ngx_ailink_idem_get_ctx(r);
        if (ictx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ictx->key = actx->claim_id;
        ictx->claim = 1;
    }

    if (ictx->checked) {
        return NGX_DECLINED;
    }

    if (ictx->reading) {
        return NGX_DONE;
    }

    st = ngx_ailink_policy_state(r);

    if (st == NULL) {
        if (ictx->claim) {
            return NGX_DECLINED;
        }

        ngx_ailink_finalize_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "service_unavailable",
                                  "idempotency keys need an "
                                  "\"ailink_state_zone\"", NULL);
        return NGX_DONE;
    }

    if (r->request_body == NULL) {
        ictx->reading = 1;
        r->request_body_in_single_buf = 1;

        rc = ngx_http_read_client_request_body(r, ngx_ailink_idem_body_read);

        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            return rc;
        }

        ngx_http_finalize_request(r, NGX_DONE);
        return NGX_DONE;
    }

    ictx->checked = 1;

    rc = ngx_ailink_idem_digest(r, ictx, &ctx->token->id);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_ailink_finalize_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                  "payload_too_large",
                                  "a request with an idempotency key must "
                                  "fit in client_body_buffer_size", NULL);
        return NGX_DONE;
    }

    /* the in-flight mark: "ailink-idem 1 F <digest>" */
    ictx->inflight.data = ngx_pnalloc(r->pool, sizeof(NGX_AILINK_IDEM_HEAD)
                                               + 2 + ictx->digest.len);
    if (ictx->inflight.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(ictx->inflight.data, NGX_AILINK_IDEM_HEAD "F %V",
                    &ictx->digest);
    ictx->inflight.len = p - ictx->inflight.data;

    rc = ngx_ailink_replay_cas_record(&ictx->replay, st, &ictx->state_key,
                                      NULL, &ictx->inflight,
                                      NGX_AILINK_IDEM_INFLIGHT_TTL, 0);

    if (rc == NGX_AGAIN) {
        return NGX_DONE;
    }

    if (rc == NGX_OK) {
        ictx->owner = 1;
        ictx->capture = 1;

        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cln->handler = ngx_ailink_idem_release;
        cln->data = r;

        return NGX_DECLINED;
    }

    if (rc == NGX_ERROR) {
        ngx_ailink_finalize_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "service_unavailable",
                                  "the idempotency key cannot be kept",
                                  NULL);
        return NGX_DONE;
    }

    /* the key is taken: in flight, or done */

    rc = ngx_ailink_replay_get_record(&ictx->replay, st, &ictx->state_key,
                                      &rec);

    if (rc == NGX_AGAIN) {
        return NGX_DONE;
    }

    if (rc == NGX_DECLINED && ictx->claim) {
        /* released meanwhile: the claim decides */
        return NGX_DECLINED;
    }

    if (rc == NGX_OK && ictx->claim
        && rec.len > sizeof(NGX_AILINK_IDEM_HEAD)
        && rec.data[sizeof(NGX_AILINK_IDEM_HEAD) - 1] == 'F')
    {
        /* a claim racing another: the approval decides which runs */
        return NGX_DECLINED;
    }

    if (rc != NGX_OK
        || rec.len < sizeof(NGX_AILINK_IDEM_HEAD) + 1 + ictx->digest.len
        || ngx_strncmp(rec.data, NGX_AILINK_IDEM_HEAD,
                       sizeof(NGX_AILINK_IDEM_HEAD) - 1) != 0)
    {
        ngx_ailink_finalize_error(r, NGX_HTTP_CONFLICT,
                                  "idempotency_conflict",
                                  "a request with this idempotency key is "
                                  "in flight", NULL);
        return NGX_DONE;
    }

    digest.data = rec.data + sizeof(NGX_AILINK_IDEM_HEAD) + 1;
    digest.len = ictx->digest.len;

    if (ngx_strncmp(digest.data, ictx->digest.data, digest.len) != 0) {
        if (ictx->claim) {
            /* another request on the same approval: the claim refuses */
            return NGX_DECLINED;
        }

        ngx_ailink_finalize_error(r, 422,  /* Unprocessable Content */
                                  "idempotency_key_reused",
                                  "this idempotency key was used for "
                                  "another request (method, path or body)",
                                  NULL);
        return NGX_DONE;
    }

    if (rec.data[sizeof(NGX_AILINK_IDEM_HEAD) - 1] == 'F') {
        ngx_ailink_finalize_error(r, NGX_HTTP_CONFLICT,
                                  "idempotency_conflict",
                                  "a request with this idempotency key is "
                                  "in flight", NULL);
        return NGX_DONE;
    }

    /* "D <digest>\n<status>\n..." */
    last = rec.data + rec.len;
    rec.data = digest.data + digest.len + 1;

    if (rec.data > last) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rec.len = last - rec.data;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "ailink idempotency: response replayed");

    ictx->replayed = 1;

    rc = ngx_ailink_idem_replay(r, ctx, &rec);

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


/* for the audit record */

ngx_uint_t
ngx_ailink_idempotency_replayed(ngx_http_request_t *r)
{
    ngx_ailink_idem_ctx_t  *ictx;

    ictx = ngx_http_get_module_ctx(r, ngx_ailink_idempotency_module);

    return ictx && ictx->replayed;
}


static ngx_uint_t
ngx_ailink_idem_skip_header(ngx_table_elt_t *h)
{
    static ngx_str_t  skip[] = {
        ngx_string("Connection"),
        ngx_string("Keep-Alive"),
        ngx_string("Transfer-Encoding"),
        ngx_string("Content-Length"),
        ngx_string("Date"),
        ngx_string("Server"),
        ngx_string("X-AILink-Request-Id"),
        ngx_null_string
    };

    ngx_str_t  *s;

    if (h->hash == 0) {
        return 1;
    }

    for (s = skip; s->len; s++) {
        if (h->key.len == s->len
            && ngx_strncasecmp(h->key.data, s->data, s->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


static ngx_int_t
ngx_ailink_idem_header_filter(ngx_http_request_t *r)
{
    u_char                  *p;
    size_t                   len;
    ngx_uint_t               i;
    ngx_list_part_t         *part;
    ngx_table_elt_t         *h;
    ngx_ailink_ctx_t        *ctx;
    ngx_ailink_idem_ctx_t   *ictx;

    ictx = ngx_http_get_module_ctx(r, ngx_ailink_idempotency_module);

    if (ictx == NULL || !ictx->capture || r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_ailink_get_ctx(r);

    if (ctx == NULL || ctx->own_response || r->upstream == NULL
        || r->headers_out.status >= NGX_HTTP_INTERNAL_SERVER_ERROR
        || (ictx->claim && !((ngx_ailink_approval_ctx_t *)
                             ngx_http_get_module_ctx(r,
                                 ngx_ailink_approval_module))->claimed)
        || (r->headers_out.content_type.len >= sizeof("text/event-stream") - 1
            && ngx_strncasecmp(r->headers_out.content_type.data,
                               (u_char *) "text/event-stream",
                               sizeof("text/event-stream") - 1) == 0))
    {
        /* the gateway's own answers, upstream failures (5xx: a retry
           should run again) and streams are not kept */
        ictx->capture = 0;
        return ngx_http_next_header_filter(r);
    }

    len = NGX_INT_T_LEN + 2 + sizeof("Content-Type: \n")
          + r->headers_out.content_type.len;

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {
        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (!ngx_ailink_idem_skip_header(&h[i])) {
            len += h[i].key.len + h[i].value.len + 3;
        }
    }

    ictx->head.data = ngx_pnalloc(r->pool, len);
    if (ictx->head.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(ictx->head.data, "%ui\n", r->headers_out.status);

    if (r->headers_out.content_type.len) {
        p = ngx_sprintf(p, "Content-Type: %V\n",
                        &r->headers_out.content_type);
    }

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {
        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (!ngx_ailink_idem_skip_header(&h[i])) {
            p = ngx_sprintf(p, "%V: %V\n", &h[i].key, &h[i].value);
        }
    }

    *p++ = '\n';
    ictx->head.len = p - ictx->head.data;
    ictx->last = &ictx->body;

    return ngx_http_next_header_filter(r);
}


static void
ngx_ailink_idem_store(ngx_http_request_t *r, ngx_ailink_idem_ctx_t *ictx)
{
    u_char                  *p;
    ngx_str_t                rec;
    ngx_chain_t             *cl;
    ngx_ailink_state_t      *st;
    ngx_ailink_idem_conf_t  *icf;

    icf = ngx_http_get_module_main_conf(r, ngx_ailink_idempotency_module);
    st = ngx_ailink_policy_state(r);

    rec.len = sizeof(NGX_AILINK_IDEM_HEAD) + 2 + ictx->digest.len
              + ictx->head.len + ictx->size;
    rec.data = ngx_pnalloc(r->pool, rec.len);
    if (rec.data == NULL) {
        return;
    }

    p = ngx_sprintf(rec.data, NGX_AILINK_IDEM_HEAD "D %V\n%V",
                    &ictx->digest, &ictx->head);

    for (cl = ictx->body; cl; cl = cl->next) {
        p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
    }

    rec.len = p - rec.data;

    /* only over our own in-flight mark (Redis: sent, not waited for) */
    if (ngx_ailink_state_cas_record_nowait(st, &ictx->state_key,
                                           &ictx->inflight, &rec, icf->ttl, 0)
        == NGX_OK)
    {
        ictx->stored = 1;

    } else {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "ailink idempotency: the response could not be "
                      "stored; the key is released");
    }
}


static ngx_int_t
ngx_ailink_idem_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    size_t                   n;
    ngx_buf_t               *b;
    ngx_chain_t             *cl, *nc;
    ngx_ailink_idem_ctx_t   *ictx;
    ngx_ailink_idem_conf_t  *icf;

    ictx = ngx_http_get_module_ctx(r, ngx_ailink_idempotency_module);

    if (ictx == NULL || !ictx->capture || r != r->main || ictx->last == NULL)
    {
        return ngx_http_next_body_filter(r, in);
    }

    icf = ngx_http_get_module_main_conf(r, ngx_ailink_idempotency_module);

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file && !ngx_buf_in_memory(b)) {
            /* a file body is not copied on the event loop */
            ictx->capture = 0;
            break;
        }

        n = b->last - b->pos;

        if (n) {
            if (ictx->size + n > icf->max_size) {
                ictx->capture = 0;
                break;
            }

            nc = ngx_alloc_chain_link(r->pool);
            if (nc == NULL) {
                return NGX_ERROR;
            }

            nc->buf = ngx_create_temp_buf(r->pool, n);
            if (nc->buf == NULL) {
                return NGX_ERROR;
            }

            nc->buf->last = ngx_cpymem(nc->buf->pos, b->pos, n);
            nc->next = NULL;
            *ictx->last = nc;
            ictx->last = &nc->next;
            ictx->size += n;
        }

        if (b->last_buf) {
            ictx->capture = 0;

            if (r->upstream && r->upstream->length > 0) {
                /* the upstream's body ended short: not a completed
                   response */
                break;
            }

            ngx_ailink_idem_store(r, ictx);
            break;
        }
    }

    return ngx_http_next_body_filter(r, in);
}


static void *
ngx_ailink_idem_create_main_conf(ngx_conf_t *cf)
{
    ngx_ailink_idem_conf_t  *icf;

    icf = ngx_pcalloc(cf->pool, sizeof(ngx_ailink_idem_conf_t));
    if (icf == NULL) {
        return NULL;
    }

    icf->ttl = NGX_CONF_UNSET;
    icf->max_size = NGX_CONF_UNSET_SIZE;

    return icf;
}


static char *
ngx_ailink_idem_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_ailink_idem_conf_t  *icf = conf;

    ngx_conf_init_value(icf->ttl, 86400);
    ngx_conf_init_size_value(icf->max_size, 1024 * 1024);

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_ailink_idem_postconfiguration(ngx_conf_t *cf)
{
    /* early in the list: its filters run after the other AILink filters
       but the auth module's, on what the client gets */
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_ailink_idem_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_ailink_idem_body_filter;

    return NGX_OK;
}
