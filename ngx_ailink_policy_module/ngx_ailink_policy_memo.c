
/*
 * Copyright (C) AILink
 *
 * Which of a token's pre-phase rules match depends only on the request
 * fields their conditions read, and agents send the same few combinations
 * over and over: one model, one agent name, the same method and path.
 * Each worker therefore remembers, for a token and the exact values of
 * every field its conditions read, which rules matched, in a
 * direct-mapped table of a bounded size.  A request with a combination
 * seen before costs building its key and one lookup, whatever the number
 * of rules; a new one costs the key and one evaluation of every rule.
 *
 * Rules that read what changes between two requests with the same key
 * (spend, and the response fields, absent before it) are "dynamic": they
 * are evaluated every time.  A key too long for the table, or a condition
 * that fails, leaves the request to the plain evaluation in order.
 */


#include "ngx_ailink_policy.h"


#define NGX_AILINK_POLICY_MEMO_SLOTS     1024
#define NGX_AILINK_POLICY_MEMO_KEY_MAX   1024
#define NGX_AILINK_POLICY_MEMO_FIELDS    32


typedef struct {
    ngx_cycle_t                *cycle;      /* a reload is another cycle */
    ngx_ailink_policy_set_t    *set;
    uint64_t                    serial;     /* of the set */
    uint32_t                    hash;
    size_t                      len;
    u_char                     *key;
    uint64_t                   *bits;       /* one allocation: bits, key */
} ngx_ailink_policy_memo_entry_t;


static ngx_ailink_policy_memo_entry_t
    ngx_ailink_policy_memo_table[NGX_AILINK_POLICY_MEMO_SLOTS];

static uint64_t  ngx_ailink_policy_memo_serial;


/* fields whose value cannot change between two requests of one token */

static ngx_uint_t
ngx_ailink_policy_memo_constant(ngx_uint_t field)
{
    return field == NGX_AILINK_PF_TOKEN_ID
           || field == NGX_AILINK_PF_TOKEN_NAME
           || field == NGX_AILINK_PF_PROJECT;
}


static ngx_uint_t
ngx_ailink_policy_memo_changing(ngx_uint_t field)
{
    return field == NGX_AILINK_PF_SPEND
           || field == NGX_AILINK_PF_STATUS
           || field == NGX_AILINK_PF_PROMPT_TOKENS
           || field == NGX_AILINK_PF_COMPLETION_TOKENS
           || field == NGX_AILINK_PF_TOTAL_TOKENS
           || field == NGX_AILINK_PF_COST;
}


static ngx_uint_t
ngx_ailink_policy_memo_dynamic(ngx_ailink_policy_cond_t *c)
{
    ngx_uint_t  i;

    if (c->type == NGX_AILINK_POLICY_LEAF) {
        return ngx_ailink_policy_memo_changing(c->field);
    }

    for (i = 0; i < c->nchildren; i++) {
        if (ngx_ailink_policy_memo_dynamic(c->children[i])) {
            return 1;
        }
    }

    return 0;
}


/* adds the leaves' fields to the key's, once each; 0 when too many */

static ngx_uint_t
ngx_ailink_policy_memo_collect(ngx_ailink_policy_set_t *set,
    ngx_ailink_policy_cond_t *c, ngx_ailink_policy_tz_t *tz)
{
    ngx_uint_t                       i, time;
    ngx_ailink_policy_memo_field_t  *f;

    if (c->type != NGX_AILINK_POLICY_LEAF) {
        for (i = 0; i < c->nchildren; i++) {
            if (!ngx_ailink_policy_memo_collect(set, c->children[i], tz)) {
                return 0;
            }
        }

        return 1;
    }

    if (ngx_ailink_policy_memo_constant(c->field)) {
        return 1;
    }

    time = (c->field == NGX_AILINK_PF_HOUR || c->field == NGX_AILINK_PF_MINUTE
            || c->field == NGX_AILINK_PF_WEEKDAY);

    for (i = 0; i < set->nmemo_fields; i++) {
        f = &set->memo_fields[i];

        if (f->field == c->field
            && c->field != NGX_AILINK_PF_BODY
            && f->arg.len == c->arg.len
            && (c->arg.len == 0
                || ngx_strncmp(f->arg.data, c->arg.data, c->arg.len) == 0)
            && (!time || f->tz == tz))
        {
            return 1;
        }
    }

    if (set->nmemo_fields == NGX_AILINK_POLICY_MEMO_FIELDS) {
        return 0;
    }

    f = &set->memo_fields[set->nmemo_fields++];
    f->field = c->field;
    f->arg = c->arg;
    f->cond = c;
    f->tz = tz;

    return 1;
}


ngx_int_t
ngx_ailink_policy_memo_init(ngx_pool_t *pool, ngx_ailink_policy_set_t *set)
{
    ngx_uint_t                 i, j, n, pure, fit;
    ngx_ailink_policy_t       *p;
    ngx_ailink_policy_rule_t  *rule;

    set->memo_fields = ngx_palloc(pool, NGX_AILINK_POLICY_MEMO_FIELDS
                                        * sizeof(ngx_ailink_policy_memo_field_t));
    if (set->memo_fields == NULL) {
        return NGX_ERROR;
    }

    set->nmemo_fields = 0;
    set->nrules = 0;
    set->serial = ++ngx_ailink_policy_memo_serial;
    set->memo_last = NULL;
    pure = 0;
    fit = 1;

    for (i = 0; i < set->npre; i++) {
        p = set->pre[i];
        set->nrules += p->nrules;

        for (j = 0; j < p->nrules; j++) {
            rule = &p->rules[j];
            rule->dynamic = ngx_ailink_policy_memo_dynamic(rule->when);

            if (rule->dynamic) {
                continue;
            }

            pure++;

            if (fit) {
                fit = ngx_ailink_policy_memo_collect(set, rule->when, p->tz);
            }
        }
    }

    /* a key of that many fields, or one rule, is not worth keeping */
    if (!fit || pure < 2) {
        set->memo_fields = NULL;
        return NGX_OK;
    }

    /* from a rule's bit to its policy, to skip policies with none set */
    set->rule_policy = ngx_palloc(pool, set->nrules * sizeof(ngx_uint_t));
    set->rule_base = ngx_palloc(pool, set->npre * sizeof(ngx_uint_t));
    if (set->rule_policy == NULL || set->rule_base == NULL) {
        return NGX_ERROR;
    }

    n = 0;

    for (i = 0; i < set->npre; i++) {
        set->rule_base[i] = n;

        for (j = 0; j < set->pre[i]->nrules; j++) {
            set->rule_policy[n++] = i;
        }
    }

    return NGX_OK;
}


/* the key: each field as absent, a number, or a length and its bytes */

static ngx_int_t
ngx_ailink_policy_memo_key(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_ailink_policy_ctx_t *pctx, u_char *buf, size_t *len)
{
    u_char                          *p, *last;
    uint32_t                         n;
    ngx_uint_t                       i;
    ngx_table_elt_t                 *h;
    ngx_ailink_policy_value_t        v;
    ngx_ailink_policy_set_t         *set;
    ngx_ailink_policy_memo_field_t  *f;

    set = pctx->set;
    p = buf;
    last = buf + NGX_AILINK_POLICY_MEMO_KEY_MAX;

    for (i = 0; i < set->nmemo_fields; i++) {
        f = &set->memo_fields[i];

        if (f->field == NGX_AILINK_PF_HEADER) {
            /* as ngx_ailink_policy_field() */
            h = ngx_ailink_find_header(r, (char *) f->arg.data, f->arg.len);

            v.is_number = 0;
            v.found = (h != NULL);

            if (h) {
                v.str = h->value;
            }

        } else if (!ngx_ailink_policy_field_str(r, ctx, f->field, &v)) {
            pctx->tz = f->tz;

            if (ngx_ailink_policy_field(r, ctx, pctx, f->field, &f->arg,
                                        f->cond, &v)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        if (!v.found) {
            if (p == last) {
                return NGX_DECLINED;
            }

            *p++ = 0;
            continue;
        }

        if (v.is_number) {
            if ((size_t) (last - p) < 1 + sizeof(double)) {
                return NGX_DECLINED;
            }

            *p++ = 1;
            p = ngx_cpymem(p, &v.number, sizeof(double));
            continue;
        }

        if ((size_t) (last - p) < 1 + sizeof(uint32_t) + v.str.len) {
            return NGX_DECLINED;
        }

        n = (uint32_t) v.str.len;
        *p++ = 2;
        p = ngx_cpymem(p, &n, sizeof(uint32_t));
        p = ngx_cpymem(p, v.str.data, v.str.len);
    }

    *len = p - buf;

    return NGX_OK;
}


/*
 * The token's pre-phase rules, one bit each in the order they run, for
 * this request's key: set for a rule that matched and for a dynamic rule,
 * which is still to be evaluated; NULL: evaluate every rule in order.
 */

uint64_t *
ngx_ailink_policy_memo(ngx_http_request_t *r, ngx_ailink_ctx_t *ctx,
    ngx_ailink_policy_ctx_t *pctx)
{
    u_char                          *mem;
    u_char                           buf[NGX_AILINK_POLICY_MEMO_KEY_MAX];
    size_t                           len, size;
    uint32_t                         hash;
    uint64_t                        *bits;
    ngx_int_t                        rc;
    ngx_uint_t                       i, j, n, base;
    ngx_ailink_policy_t             *p;
    ngx_ailink_policy_set_t         *set;
    ngx_ailink_policy_memo_entry_t  *e;

    set = pctx->set;

    if (set->memo_fields == NULL
        || ngx_ailink_policy_memo_key(r, ctx, pctx, buf, &len) != NGX_OK)
    {
        return NULL;
    }

    /* the same key as the set's last request: no hash */
    e = set->memo_last;

    if (e && e->set == set && e->serial == set->serial
        && e->cycle == (ngx_cycle_t *) ngx_cycle
        && e->len == len && ngx_memcmp(e->key, buf, len) == 0)
    {
        return e->bits;
    }

    hash = ngx_murmur_hash2(buf, len)
           ^ (uint32_t) (((uintptr_t) set >> 4) * 2654435761u);

    e = &ngx_ailink_policy_memo_table[hash % NGX_AILINK_POLICY_MEMO_SLOTS];

    if (e->set == set && e->serial == set->serial
        && e->cycle == (ngx_cycle_t *) ngx_cycle
        && e->hash == hash && e->len == len
        && ngx_memcmp(e->key, buf, len) == 0)
    {
        set->memo_last = e;
        return e->bits;
    }

    n = (set->nrules + 63) / 64;
    size = n * sizeof(uint64_t) + len;

    mem = ngx_alloc(size, r->connection->log);
    if (mem == NULL) {
        return NULL;
    }

    bits = (uint64_t *) mem;
    ngx_memzero(bits, n * sizeof(uint64_t));

    base = 0;

    for (i = 0; i < set->npre; i++) {
        p = set->pre[i];
        pctx->tz = p->tz;

        for (j = 0; j < p->nrules; j++) {
            rc = p->rules[j].dynamic
                 ? 1 : ngx_ailink_policy_eval(r, ctx, pctx, p->rules[j].when);

            if (rc == NGX_ERROR) {
                /* the rules in order will meet it where it matters */
                ngx_free(mem);
                return NULL;
            }

            if (rc) {
                bits[(base + j) / 64] |= (uint64_t) 1 << ((base + j) % 64);
            }
        }

        base += p->nrules;
    }

    if (e->bits) {
        ngx_free(e->bits);
    }

    e->cycle = (ngx_cycle_t *) ngx_cycle;
    e->set = set;
    e->serial = set->serial;
    e->hash = hash;
    e->len = len;
    e->bits = bits;
    e->key = ngx_cpymem(mem + n * sizeof(uint64_t), buf, len) - len;
    set->memo_last = e;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ailink policy memo: token \"%V\", new key of %uz bytes",
                   &ctx->token->id, len);

    return bits;
}


void
ngx_ailink_policy_memo_exit(void)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_AILINK_POLICY_MEMO_SLOTS; i++) {
        if (ngx_ailink_policy_memo_table[i].bits) {
            ngx_free(ngx_ailink_policy_memo_table[i].bits);
        }
    }

    ngx_memzero(ngx_ailink_policy_memo_table,
                sizeof(ngx_ailink_policy_memo_table));
}
