
/*
 * Copyright (C) AILink
 *
 * The guardrails' detector engine: patterns compiled once, PII found and
 * replaced by typed placeholders numbered per type and request (the same
 * value is always the same placeholder), placeholders restored, prompt
 * injection scored.  Nothing here knows about HTTP.
 */


#define NGX_AILINK_GUARD_ENGINE_ONLY
#include "ngx_ailink_guard.h"

#if (defined __SSE2__)
#include <emmintrin.h>
#endif


struct ngx_ailink_guard_engine_s {
    ngx_ailink_guard_pattern_t *pii;
    ngx_uint_t                  npii;
    ngx_ailink_guard_pattern_t *inject;
    ngx_uint_t                  ninject;
    pcre2_match_data           *match_data;
};


static void ngx_ailink_guard_engine_cleanup(void *data);
static void ngx_ailink_guard_glance_init(void);


static const char  *ngx_ailink_guard_types[] = {
    "email", "phone", "card", "ssn", "iban", "ip", "secret"
};

static ngx_str_t  ngx_ailink_guard_labels[] = {
    ngx_string("EMAIL"), ngx_string("PHONE"), ngx_string("CARD"),
    ngx_string("SSN"), ngx_string("IBAN"), ngx_string("IP"),
    ngx_string("SECRET")
};

/* of two overlapping finds, the one of higher priority stays */
static ngx_uint_t  ngx_ailink_guard_priority[] = {
    4,      /* email */
    2,      /* phone */
    5,      /* card */
    3,      /* ssn */
    6,      /* iban: checksummed, and often holds a Luhn-valid run */
    1,      /* ip */
    7       /* secret */
};


const char *
ngx_ailink_guard_type_name(ngx_uint_t type)
{
    return type < NGX_AILINK_GUARD_NTYPES ? ngx_ailink_guard_types[type]
                                          : "unknown";
}


const char *
ngx_ailink_guard_rule_name(ngx_uint_t rule)
{
    ngx_uint_t  weight;

    return ngx_ailink_guard_inject_rule(rule, &weight);
}


/* "pii_redaction, prompt_injection" → a mask; the first unknown name */

ngx_int_t
ngx_ailink_guard_parse_names(ngx_str_t *list, ngx_uint_t *mask,
    ngx_str_t *bad)
{
    u_char     *p, *last, *start;
    ngx_str_t   name;

    p = list->data;
    last = p + list->len;

    while (p < last) {

        while (p < last && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        start = p;

        while (p < last && *p != ',' && *p != ' ' && *p != '\t') {
            p++;
        }

        name.data = start;
        name.len = p - start;

        if (name.len == 0) {
            continue;
        }

        if (name.len == sizeof("pii_redaction") - 1
            && ngx_strncasecmp(name.data, (u_char *) "pii_redaction",
                               name.len) == 0)
        {
            *mask |= NGX_AILINK_GUARD_PII;

        } else if (name.len == sizeof("prompt_injection") - 1
                   && ngx_strncasecmp(name.data,
                                      (u_char *) "prompt_injection",
                                      name.len) == 0)
        {
            *mask |= NGX_AILINK_GUARD_INJECTION;

        } else {
            *bad = name;
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/* compiles a pattern with JIT; the pool's cleanup frees it */

ngx_int_t
ngx_ailink_guard_compile(ngx_pool_t *pool, ngx_log_t *log,
    const char *pattern, uint32_t options, pcre2_code **code)
{
    int                  errcode;
    u_char               errstr[128];
    PCRE2_SIZE           erroff;
    pcre2_code          *re;
    ngx_pool_cleanup_t  *cln;

    re = pcre2_compile((PCRE2_SPTR) pattern, PCRE2_ZERO_TERMINATED, options,
                       &errcode, &erroff, NULL);

    if (re == NULL) {
        pcre2_get_error_message(errcode, errstr, sizeof(errstr));
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "ailink guard: pattern \"%s\" at offset %uz: %s",
                      pattern, (size_t) erroff, errstr);
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        pcre2_code_free(re);
        return NGX_ERROR;
    }

    cln->handler = (ngx_pool_cleanup_pt) pcre2_code_free;
    cln->data = re;

    /* without JIT (no support, no executable memory) it still matches */
    (void) pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);

    *code = re;

    return NGX_OK;
}


ngx_ailink_guard_engine_t *
ngx_ailink_guard_engine_create(ngx_pool_t *pool, ngx_log_t *log)
{
    ngx_pool_cleanup_t         *cln;
    ngx_ailink_guard_engine_t  *e;

    e = ngx_pcalloc(pool, sizeof(ngx_ailink_guard_engine_t));
    if (e == NULL) {
        return NULL;
    }

    ngx_ailink_guard_glance_init();

    if (ngx_ailink_guard_pii_init(pool, log, &e->pii, &e->npii) != NGX_OK
        || ngx_ailink_guard_inject_init(pool, log, &e->inject, &e->ninject)
           != NGX_OK)
    {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    e->match_data = pcre2_match_data_create(8, NULL);
    if (e->match_data == NULL) {
        return NULL;
    }

    cln->handler = ngx_ailink_guard_engine_cleanup;
    cln->data = e;

    return e;
}


static void
ngx_ailink_guard_engine_cleanup(void *data)
{
    ngx_ailink_guard_engine_t  *e = data;

    pcre2_match_data_free(e->match_data);
}


/* the next match at or after offset: NGX_OK, NGX_DECLINED, NGX_ERROR */

ngx_int_t
ngx_ailink_guard_exec(ngx_ailink_guard_engine_t *e, pcre2_code *code,
    u_char *p, size_t len, size_t offset, size_t *start, size_t *end)
{
    int          rc;
    PCRE2_SIZE  *ov;

    rc = pcre2_match(code, (PCRE2_SPTR) p, len, offset, 0, e->match_data,
                     NULL);

    if (rc == PCRE2_ERROR_NOMATCH) {
        return NGX_DECLINED;
    }

    if (rc < 0) {
        /* a match limit: refused as an error, never taken as clean */
        return NGX_ERROR;
    }

    ov = pcre2_get_ovector_pointer(e->match_data);

    *start = ov[0];
    *end = ov[1];

    if (*start > *end) {
        /* \K in a lookahead can report a start past the end */
        *start = *end;
    }

    return NGX_OK;
}


ngx_int_t
ngx_ailink_guard_session_init(ngx_ailink_guard_session_t *s,
    ngx_pool_t *pool, ngx_ailink_guard_engine_t *engine)
{
    ngx_memzero(s, sizeof(ngx_ailink_guard_session_t));

    s->pool = pool;
    s->engine = engine;
    s->keep = 1.0;

    return NGX_OK;
}


/* a quick look at the text before any pattern runs over it */

typedef struct {
    ngx_uint_t   digits;
    unsigned     secret:1;
    unsigned     at:1;
    unsigned     dot:1;
    unsigned     colon:1;        /* two colons at least */
    unsigned     upper:1;
} ngx_ailink_guard_glance_t;


/*
 * Whether a secret may start here: every branch of the secret pattern
 * begins with one of these (its AWS key assignment holds "secret" in any
 * case), so text without any is not worth the pattern, whose first
 * characters are common letters.
 */

static ngx_uint_t
ngx_ailink_guard_secret_start(u_char *p, u_char *last)
{
    size_t  n;

    n = last - p;

    switch (*p) {

    case 'r':
        return n >= 3 && p[1] == 'k' && p[2] == '_';

    case 's':
        if (n >= 3 && p[1] == 'k' && (p[2] == '-' || p[2] == '_')) {
            return 1;
        }

        /* fall through */

    case 'S':
        /* "secret" in any case: aws_secret_access_key = ... */
        return n >= 6 && ngx_strncasecmp(p, (u_char *) "secret", 6) == 0;

    case 'A':
        return n >= 4
               && ((p[2] == 'I' && p[3] == 'A'
                    && (p[1] == 'K' || p[1] == 'S' || p[1] == 'B'))
                   || (p[1] == 'C' && p[2] == 'C' && p[3] == 'A')
                   || (p[1] == 'I' && p[2] == 'z' && p[3] == 'a'));

    case 'g':
        /* ghp_, gho_, ...; github_pat_ */
        return (n >= 4 && p[1] == 'h' && p[3] == '_')
               || (n >= 11 && p[1] == 'i'
                   && ngx_strncmp(p, "github_pat_", 11) == 0);

    case 'w':
        return n >= 6 && p[1] == 'h' && ngx_strncmp(p, "whsec_", 6) == 0;

    case 'x':
        return n >= 4 && p[1] == 'o' && p[2] == 'x';

    case 'e':
        return n >= 3 && p[1] == 'y' && p[2] == 'J';

    case '-':
        return n >= 10 && p[1] == '-'
               && ngx_strncmp(p, "-----BEGIN", 10) == 0;

    default:
        return 0;
    }
}


/* what each byte tells the glance: one look-up per byte of prose */

#define NGX_AILINK_GLANCE_DIGIT    0x01
#define NGX_AILINK_GLANCE_AT       0x02
#define NGX_AILINK_GLANCE_DOT      0x04
#define NGX_AILINK_GLANCE_COLON    0x08
#define NGX_AILINK_GLANCE_UPPER    0x10
#define NGX_AILINK_GLANCE_SECRET   0x20    /* a secret may start with it */

static u_char  ngx_ailink_guard_glance_class[256];



/*
 * Where the glance looks for a secret: at bytes rare in prose that every
 * secret holds at a known place (sk-, sk_ and rk_ at their "k", AKIA and
 * the like, AIza, gh?_, github_pat_, whsec_, xox, eyJ at its "J",
 * -----BEGIN, "secret" in any case at its "c"), so that common letters
 * cost one look-up.
 */

static ngx_uint_t
ngx_ailink_guard_secret_at(u_char *p, u_char *start, u_char *last)
{
    switch (*p) {

    case 'k':
        return p > start && (p[-1] == 's' || p[-1] == 'r')
               && ngx_ailink_guard_secret_start(p - 1, last);

    case 'J':
        return p - start >= 2 && p[-2] == 'e' && p[-1] == 'y';

    case 'c':
    case 'C':
        return p - start >= 2 && (p[-2] | 0x20) == 's'
               && ngx_ailink_guard_secret_start(p - 2, last);

    default:
        /* A, g, w, x, - */
        return ngx_ailink_guard_secret_start(p, last);
    }
}


static void
ngx_ailink_guard_glance_init(void)
{
    u_char      *c;
    ngx_uint_t   i;

    c = ngx_ailink_guard_glance_class;

    for (i = '0'; i <= '9'; i++) {
        c[i] = NGX_AILINK_GLANCE_DIGIT;
    }

    for (i = 'A'; i <= 'Z'; i++) {
        c[i] = NGX_AILINK_GLANCE_UPPER;
    }

    c['@'] = NGX_AILINK_GLANCE_AT;
    c['.'] = NGX_AILINK_GLANCE_DOT;
    c[':'] = NGX_AILINK_GLANCE_COLON;

    for (i = 0; i < sizeof("kAgwxJ-cC") - 1; i++) {
        c[(u_char) "kAgwxJ-cC"[i]] |= NGX_AILINK_GLANCE_SECRET;
    }
}


#if (defined __SSE2__)

/*
 * Sixteen bytes at a time: the classes by comparisons, OR-ed into
 * vectors read once at the end, the digits and colons counted per lane
 * (summed every 255 blocks), and only the bytes a secret may start at (a
 * few in prose) looked at one by one, until a secret start is seen.
 */

static u_char *
ngx_ailink_guard_glance16(u_char *p, u_char *last, u_char *start,
    ngx_uint_t *digits, ngx_uint_t *colons, u_char *seen,
    ngx_ailink_guard_glance_t *g)
{
    int          mask;
    __m128i      v, t, d, ndig, ncolon, at, dot, upper, zero;
    ngx_uint_t   n;

    zero = _mm_setzero_si128();
    at = zero;
    dot = zero;
    upper = zero;

    while (last - p >= 16) {

        /* digits and colons per lane in bytes: summed before a lane
         * can wrap */
        ndig = zero;
        ncolon = zero;

        for (n = 0; n < 255 && last - p >= 16; n++, p += 16) {
            v = _mm_loadu_si128((const __m128i *) p);

            /* x in [a, a + n]: (x - a) unsigned, its minimum with n is it */
            t = _mm_sub_epi8(v, _mm_set1_epi8('0'));
            d = _mm_cmpeq_epi8(_mm_min_epu8(t, _mm_set1_epi8(9)), t);
            ndig = _mm_sub_epi8(ndig, d);

            t = _mm_sub_epi8(v, _mm_set1_epi8('A'));
            upper = _mm_or_si128(upper,
                        _mm_cmpeq_epi8(_mm_min_epu8(t, _mm_set1_epi8(25)),
                                       t));

            at = _mm_or_si128(at, _mm_cmpeq_epi8(v, _mm_set1_epi8('@')));
            dot = _mm_or_si128(dot, _mm_cmpeq_epi8(v, _mm_set1_epi8('.')));
            ncolon = _mm_sub_epi8(ncolon,
                                  _mm_cmpeq_epi8(v, _mm_set1_epi8(':')));

            if (g->secret) {
                continue;
            }

            t = _mm_or_si128(
                    _mm_or_si128(
                        _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('k')),
                                     _mm_cmpeq_epi8(v, _mm_set1_epi8('A'))),
                        _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('g')),
                                     _mm_cmpeq_epi8(v, _mm_set1_epi8('w')))),
                    _mm_or_si128(
                        _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('x')),
                                     _mm_cmpeq_epi8(v, _mm_set1_epi8('J'))),
                        _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('-')),
                                     _mm_cmpeq_epi8(
                                         _mm_or_si128(v,
                                                      _mm_set1_epi8(0x20)),
                                         _mm_set1_epi8('c')))));

            mask = _mm_movemask_epi8(t);

            while (mask) {
                if (ngx_ailink_guard_secret_at(p + __builtin_ctz(mask), start,
                                               last))
                {
                    g->secret = 1;
                    break;
                }

                mask &= mask - 1;
            }
        }

        /* the lanes' counts, summed in two halves */
        t = _mm_sad_epu8(ndig, zero);
        *digits += (ngx_uint_t) _mm_cvtsi128_si32(t)
                   + (ngx_uint_t) _mm_cvtsi128_si32(_mm_srli_si128(t, 8));

        t = _mm_sad_epu8(ncolon, zero);
        *colons += (ngx_uint_t) _mm_cvtsi128_si32(t)
                   + (ngx_uint_t) _mm_cvtsi128_si32(_mm_srli_si128(t, 8));
    }

    *seen |= (_mm_movemask_epi8(at) ? NGX_AILINK_GLANCE_AT : 0)
             | (_mm_movemask_epi8(dot) ? NGX_AILINK_GLANCE_DOT : 0)
             | (_mm_movemask_epi8(upper) ? NGX_AILINK_GLANCE_UPPER : 0);

    return p;
}

#endif


static void
ngx_ailink_guard_glance(u_char *p, size_t len, ngx_ailink_guard_glance_t *g)
{
    u_char      *start, *last, c, seen;
    ngx_uint_t   digits, colons;

    start = p;
    last = p + len;
    seen = 0;
    digits = 0;
    colons = 0;
    g->secret = 0;

#if (defined __SSE2__)
    p = ngx_ailink_guard_glance16(p, last, start, &digits, &colons, &seen, g);
#endif

    for ( /* void */ ; p < last; p++) {
        c = ngx_ailink_guard_glance_class[*p];

        if (c == 0) {
            continue;
        }

        digits += (c & NGX_AILINK_GLANCE_DIGIT);
        colons += (c == NGX_AILINK_GLANCE_COLON);
        seen |= c;

        if ((c & NGX_AILINK_GLANCE_SECRET) && !g->secret
            && ngx_ailink_guard_secret_at(p, start, last))
        {
            g->secret = 1;
        }
    }

    g->digits = digits;
    g->at = (seen & NGX_AILINK_GLANCE_AT) ? 1 : 0;
    g->dot = (seen & NGX_AILINK_GLANCE_DOT) ? 1 : 0;
    /* an IPv6 address has two colons at least: prose has "note: ..." */
    g->colon = (colons >= 2);
    g->upper = (seen & NGX_AILINK_GLANCE_UPPER) ? 1 : 0;
}


static ngx_uint_t
ngx_ailink_guard_worth(ngx_uint_t type, ngx_ailink_guard_glance_t *g)
{
    switch (type) {

    case NGX_AILINK_GUARD_EMAIL:
        return g->at;

    case NGX_AILINK_GUARD_PHONE:
        return g->digits >= 7;

    case NGX_AILINK_GUARD_CARD:
        return g->digits >= 13;

    case NGX_AILINK_GUARD_SSN:
        return g->digits >= 9;

    case NGX_AILINK_GUARD_IBAN:
        /* the check digits: a BBAN may be all letters (its checksum
         * passes by chance, or in a real alphanumeric one) */
        return g->upper && g->digits >= 2;

    case NGX_AILINK_GUARD_IP:
        return (g->dot && g->digits >= 4) || g->colon;

    case NGX_AILINK_GUARD_SECRET:
        return g->secret;

    default:
        return 1;
    }
}


/* whether the glance finds any PII pattern worth running on the text */

ngx_uint_t
ngx_ailink_guard_pii_worth(ngx_ailink_guard_engine_t *e, u_char *p,
    size_t len)
{
    ngx_uint_t                 i;
    ngx_ailink_guard_glance_t  g;

    if (len == 0) {
        return 0;
    }

    ngx_ailink_guard_glance(p, len, &g);

    for (i = 0; i < e->npii; i++) {
        if (ngx_ailink_guard_worth(e->pii[i].type, &g)) {
            return 1;
        }
    }

    return 0;
}


/*
 * Whether the glance would run a pattern of this type on a text: true of
 * every value the type's patterns find, on the value's own bytes, or the
 * glance would miss it (fuzz_guard checks it of every find).
 */

ngx_uint_t
ngx_ailink_guard_type_worth(u_char *p, size_t len, ngx_uint_t type)
{
    ngx_ailink_guard_glance_t  g;

    ngx_ailink_guard_glance(p, len, &g);

    return ngx_ailink_guard_worth(type, &g);
}


/*
 * Every PII value in the text, validated, overlaps resolved by priority
 * (a card number is not also a phone number), in text order.
 */

ngx_int_t
ngx_ailink_guard_pii_find(ngx_ailink_guard_engine_t *e, ngx_pool_t *pool,
    ngx_str_t *text, ngx_ailink_guard_match_t **matches, ngx_uint_t *n)
{
    size_t                      start, end, offset, len;
    ngx_int_t                   rc;
    ngx_uint_t                  i, j, k, nm, nalloc, pa, pb;
    ngx_ailink_guard_match_t   *m, *nmem, tmp;
    ngx_ailink_guard_pattern_t *pat;
    ngx_ailink_guard_glance_t   g;

    *matches = NULL;
    *n = 0;

    if (text->len == 0) {
        return NGX_OK;
    }

    ngx_ailink_guard_glance(text->data, text->len, &g);

    m = NULL;
    nm = 0;
    nalloc = 0;

    for (i = 0; i < e->npii; i++) {
        pat = &e->pii[i];

        if (!ngx_ailink_guard_worth(pat->type, &g)) {
            continue;
        }

        for (offset = 0; offset < text->len; offset = end) {

            rc = ngx_ailink_guard_exec(e, pat->code, text->data, text->len,
                                       offset, &start, &end);
            if (rc == NGX_DECLINED) {
                break;
            }

            if (rc == NGX_ERROR) {
                return NGX_ERROR;
            }

            if (end == start) {
                end = start + 1;
                continue;
            }

            len = end - start;

            if (pat->check && !pat->check(text->data + start, &len)) {
                /* not this one; the pattern may match from the next byte */
                end = start + 1;
                continue;
            }

            end = start + len;

            if (nm == nalloc) {
                nalloc = nalloc ? 2 * nalloc : 16;
                nmem = ngx_palloc(pool,
                                  nalloc * sizeof(ngx_ailink_guard_match_t));
                if (nmem == NULL) {
                    return NGX_ERROR;
                }

                if (nm) {
                    ngx_memcpy(nmem, m, nm * sizeof(ngx_ailink_guard_match_t));
                }

                m = nmem;
            }

            m[nm].start = start;
            m[nm].end = end;
            m[nm].type = pat->type;
            nm++;
        }
    }

    if (nm == 0) {
        return NGX_OK;
    }

    /* highest priority first, then longest, then leftmost (insertion) */
    for (i = 1; i < nm; i++) {
        tmp = m[i];
        pb = ngx_ailink_guard_priority[tmp.type];

        for (j = i; j > 0; j--) {
            pa = ngx_ailink_guard_priority[m[j - 1].type];

            if (pa > pb
                || (pa == pb
                    && (m[j - 1].end - m[j - 1].start > tmp.end - tmp.start
                        || (m[j - 1].end - m[j - 1].start
                            == tmp.end - tmp.start
                            && m[j - 1].start <= tmp.start))))
            {
                break;
            }

            m[j] = m[j - 1];
        }

        m[j] = tmp;
    }

    /* keep each one that overlaps none kept before it */
    k = 0;

    for (i = 0; i < nm; i++) {
        for (j = 0; j < k; j++) {
            if (m[i].start < m[j].end && m[j].start < m[i].end) {
                break;
            }
        }

        if (j == k) {
            m[k++] = m[i];
        }
    }

    /* text order */
    for (i = 1; i < k; i++) {
        tmp = m[i];

        for (j = i; j > 0 && m[j - 1].start > tmp.start; j--) {
            m[j] = m[j - 1];
        }

        m[j] = tmp;
    }

    *matches = m;
    *n = k;

    return NGX_OK;
}


/* the placeholder of a value: the one it already has, or the next one */

static ngx_ailink_guard_entity_t *
ngx_ailink_guard_entity(ngx_ailink_guard_session_t *s, ngx_uint_t type,
    u_char *p, size_t len)
{
    u_char                     *d;
    ngx_uint_t                  i;
    ngx_ailink_guard_entity_t  *en, *nmem;

    for (i = 0; i < s->nentities; i++) {
        en = &s->entities[i];

        if (en->type == type && en->value.len == len
            && ngx_memcmp(en->value.data, p, len) == 0)
        {
            return en;
        }
    }

    if (s->nentities == s->nalloc) {
        s->nalloc = s->nalloc ? 2 * s->nalloc : 8;
        nmem = ngx_palloc(s->pool,
                          s->nalloc * sizeof(ngx_ailink_guard_entity_t));
        if (nmem == NULL) {
            return NULL;
        }

        if (s->nentities) {
            ngx_memcpy(nmem, s->entities,
                       s->nentities * sizeof(ngx_ailink_guard_entity_t));
        }

        s->entities = nmem;
    }

    en = &s->entities[s->nentities];

    d = ngx_pnalloc(s->pool, len + sizeof("[_]") - 1
                             + ngx_ailink_guard_labels[type].len
                             + NGX_INT_T_LEN);
    if (d == NULL) {
        return NULL;
    }

    en->type = type;
    en->index = ++s->next[type];
    en->request = !s->in_response;

    en->value.data = d;
    en->value.len = len;
    d = ngx_cpymem(d, p, len);

    en->placeholder.data = d;
    en->placeholder.len = ngx_sprintf(d, "[%V_%ui]",
                                      &ngx_ailink_guard_labels[type],
                                      en->index)
                          - d;

    s->nentities++;

    return en;
}


/*
 * The text with every PII value replaced; out is the text itself when
 * nothing was found.  Counts go to the request's or the response's side.
 */

ngx_int_t
ngx_ailink_guard_redact(ngx_ailink_guard_session_t *s, ngx_str_t *text,
    ngx_str_t *out)
{
    u_char                     *p;
    size_t                      len, pos;
    ngx_uint_t                  i, n;
    ngx_pool_t                 *temp;
    ngx_ailink_guard_match_t   *m;
    ngx_ailink_guard_entity_t  *en, **ens;

    *out = *text;
    temp = s->temp ? s->temp : s->pool;

    if (ngx_ailink_guard_pii_find(s->engine, temp, text, &m, &n)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (n == 0) {
        return NGX_OK;
    }

    ens = ngx_palloc(temp, n * sizeof(ngx_ailink_guard_entity_t *));
    if (ens == NULL) {
        return NGX_ERROR;
    }

    len = text->len;

    for (i = 0; i < n; i++) {
        en = ngx_ailink_guard_entity(s, m[i].type, text->data + m[i].start,
                                     m[i].end - m[i].start);
        if (en == NULL) {
            return NGX_ERROR;
        }

        ens[i] = en;
        len = len - (m[i].end - m[i].start) + en->placeholder.len;

        if (s->in_response) {
            s->response_redacted[m[i].type]++;

        } else {
            s->redacted[m[i].type]++;
        }
    }

    p = ngx_pnalloc(temp, len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;
    pos = 0;

    for (i = 0; i < n; i++) {
        p = ngx_cpymem(p, text->data + pos, m[i].start - pos);
        p = ngx_cpymem(p, ens[i]->placeholder.data, ens[i]->placeholder.len);
        pos = m[i].end;
    }

    p = ngx_cpymem(p, text->data + pos, text->len - pos);
    *p = '\0';

    out->len = p - out->data;

    return NGX_OK;
}


/*
 * Placeholders made from the request's values back into their values
 * (reversible redaction); a response's own finds stay redacted.
 */

ngx_int_t
ngx_ailink_guard_restore(ngx_ailink_guard_session_t *s, ngx_str_t *text,
    ngx_str_t *out)
{
    u_char                     *p, *q, *last, *d;
    size_t                      len;
    ngx_uint_t                  i, found;
    ngx_ailink_guard_entity_t  *en;

    *out = *text;

    if (s->nentities == 0
        || ngx_strlchr(text->data, text->data + text->len, '[') == NULL)
    {
        return NGX_OK;
    }

    /* two passes: the length, then the copy */
    len = 0;
    found = 0;
    d = NULL;

    for ( ;; ) {
        p = text->data;
        last = text->data + text->len;

        while (p < last) {
            q = ngx_strlchr(p, last, '[');

            if (q == NULL) {
                q = last;
            }

            if (d) {
                d = ngx_cpymem(d, p, q - p);

            } else {
                len += q - p;
            }

            if (q == last) {
                break;
            }

            en = NULL;

            for (i = 0; i < s->nentities; i++) {
                en = &s->entities[i];

                if (en->request && (size_t) (last - q) >= en->placeholder.len
                    && ngx_memcmp(q, en->placeholder.data,
                                  en->placeholder.len) == 0)
                {
                    break;
                }

                en = NULL;
            }

            if (en == NULL) {
                if (d) {
                    *d++ = '[';

                } else {
                    len++;
                }

                p = q + 1;
                continue;
            }

            found++;

            if (d) {
                d = ngx_cpymem(d, en->value.data, en->value.len);

            } else {
                len += en->value.len;
            }

            p = q + en->placeholder.len;
        }

        if (d) {
            *d = '\0';
            out->len = d - out->data;
            return NGX_OK;
        }

        if (found == 0) {
            return NGX_OK;
        }

        d = ngx_pnalloc(s->temp ? s->temp : s->pool, len + 1);
        if (d == NULL) {
            return NGX_ERROR;
        }

        out->data = d;
    }
}


/* prompt injection: every rule the text matches adds to the score */

ngx_int_t
ngx_ailink_guard_inject_scan(ngx_ailink_guard_session_t *s, ngx_str_t *text)
{
    size_t                       start, end;
    ngx_int_t                    rc;
    ngx_uint_t                   i;
    ngx_ailink_guard_pattern_t  *pat;
    ngx_ailink_guard_engine_t   *e;

    if (text->len == 0) {
        return NGX_OK;
    }

    e = s->engine;

    for (i = 0; i < e->ninject; i++) {
        pat = &e->inject[i];

        if (s->rules & (1u << pat->type)) {
            continue;
        }

        rc = ngx_ailink_guard_exec(e, pat->code, text->data, text->len, 0,
                                   &start, &end);
        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_OK) {
            ngx_ailink_guard_inject_hit(s, pat->type);
        }
    }

    ngx_ailink_guard_inject_unicode(s, text->data, text->len);
    ngx_ailink_guard_inject_encoded(s, text->data, text->len);

    return NGX_OK;
}


void
ngx_ailink_guard_inject_hit(ngx_ailink_guard_session_t *s, ngx_uint_t rule)
{
    ngx_uint_t  weight;

    if (s->rules & (1u << rule)) {
        return;
    }

    (void) ngx_ailink_guard_inject_rule(rule, &weight);

    s->rules |= 1u << rule;
    s->keep *= 1.0 - (double) weight / 100;
}


/* the score in percent */

ngx_uint_t
ngx_ailink_guard_inject_score(ngx_ailink_guard_session_t *s)
{
    return (ngx_uint_t) ((1.0 - s->keep) * 100 + 0.5);
}
