
/*
 * Copyright (C) AILink
 *
 * The guardrails' detector engine on any bytes: PII found and redacted,
 * placeholders restored, prompt injection scored.  The engine (every
 * pattern compiled with JIT) is built once; each input gets its own pool
 * and session.  Byte 0: bit 0 redacts as response text (numbering goes on
 * from the request's, restore leaves it alone); the rest is the text.
 *
 * Checked:
 *   - finds lie inside the text, in order, never overlap, of a known type,
 *     and each is, on its own bytes, worth its type's patterns to the
 *     glance that skips them (else a text holding only it would be
 *     passed unredacted);
 *   - redacting the same text twice in one session gives the same text
 *     (a value keeps its placeholder);
 *   - restoring a request's redacted text gives the original back when
 *     the original held no '[' (a placeholder of its own would be
 *     restored too);
 *   - the injection score is 0..100 and every rule bit is a known rule.
 */


#define NGX_AILINK_GUARD_ENGINE_ONLY
#include "ngx_ailink_guard.h"
#include "ngx_fuzz.h"


static ngx_ailink_guard_engine_t  *fuzz_engine;
static ngx_pool_t                 *fuzz_engine_pool;


/* the patterns are freed by their pool's cleanups, before the leak check */

static void
fuzz_guard_exit(void)
{
    ngx_destroy_pool(fuzz_engine_pool);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_str_t                    text, out, again, back;
    ngx_uint_t                   i, n, response, score, nrules;
    ngx_pool_t                  *pool;
    ngx_ailink_guard_match_t    *m;
    ngx_ailink_guard_session_t   s;

    if (fuzz_engine == NULL) {
        /* lives as long as the process, as a configuration's would */
        fuzz_engine_pool = ngx_fuzz_pool();
        fuzz_engine = ngx_ailink_guard_engine_create(fuzz_engine_pool,
                                                     &ngx_fuzz_log);
        ngx_fuzz_assert(fuzz_engine != NULL);
        atexit(fuzz_guard_exit);
    }

    if (size < 1) {
        return 0;
    }

    response = data[0] & 1;

    pool = ngx_fuzz_pool();

    /* a copy of exactly the input's length: reads past it are caught */
    text.len = size - 1;
    text.data = ngx_pnalloc(pool, text.len + 1);
    ngx_fuzz_assert(text.data != NULL);
    ngx_memcpy(text.data, data + 1, text.len);

    /* finds */
    ngx_fuzz_assert(ngx_ailink_guard_pii_find(fuzz_engine, pool, &text, &m,
                                              &n)
                    == NGX_OK);

    for (i = 0; i < n; i++) {
        ngx_fuzz_assert(m[i].start < m[i].end && m[i].end <= text.len);
        ngx_fuzz_assert(m[i].type < NGX_AILINK_GUARD_NTYPES);
        ngx_fuzz_assert(i == 0 || m[i - 1].end <= m[i].start);

        /* the glance that skips patterns would not have skipped this one */
        ngx_fuzz_assert(ngx_ailink_guard_type_worth(text.data + m[i].start,
                                                    m[i].end - m[i].start,
                                                    m[i].type));
    }

    /* redaction */
    ngx_ailink_guard_session_init(&s, pool, fuzz_engine);
    s.in_response = response;

    ngx_fuzz_assert(ngx_ailink_guard_redact(&s, &text, &out) == NGX_OK);
    ngx_fuzz_assert(ngx_ailink_guard_redact(&s, &text, &again) == NGX_OK);

    ngx_fuzz_assert(out.len == again.len
                    && ngx_memcmp(out.data, again.data, out.len) == 0);
    ngx_fuzz_assert((n == 0) == (out.data == text.data));

    for (i = 0; i < s.nentities; i++) {
        ngx_fuzz_assert(s.entities[i].value.len > 0);
        ngx_fuzz_assert(s.entities[i].type < NGX_AILINK_GUARD_NTYPES);
        ngx_fuzz_assert(s.entities[i].index >= 1);
    }

    /* restoring */
    ngx_fuzz_assert(ngx_ailink_guard_restore(&s, &out, &back) == NGX_OK);

    if (!response && memchr(text.data, '[', text.len) == NULL) {
        ngx_fuzz_assert(back.len == text.len
                        && ngx_memcmp(back.data, text.data, text.len) == 0);
    }

    /* injection */
    ngx_fuzz_assert(ngx_ailink_guard_inject_scan(&s, &text) == NGX_OK);

    score = ngx_ailink_guard_inject_score(&s);
    nrules = ngx_ailink_guard_inject_nrules();

    ngx_fuzz_assert(score <= 100);
    ngx_fuzz_assert(nrules == 32 || (s.rules >> nrules) == 0);
    ngx_fuzz_assert((s.rules == 0) == (score == 0));

    ngx_destroy_pool(pool);

    return 0;
}
