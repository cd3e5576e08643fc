
/*
 * Copyright (C) AILink
 *
 * The SSE parser fed in pieces.  The first bytes of the input choose the
 * event size bound and where the rest is cut into buffers; every cut is a
 * separate ngx_ailink_sse_feed() call, as upstream buffers would be.
 *
 * Checked: an event handed to the handler never exceeds the bound; the
 * carried line, event and data never exceed it either; where the buffers
 * are cut does not change what comes out: the same bytes fed whole and fed
 * in pieces produce the same events when no line is longer than the bound
 * (only a carried line is bounded), and otherwise the pieces may lose
 * events (an overlong carried line drops its event) but never make up one
 * the whole parse did not see.
 */


#include "ngx_ailink_common.h"
#include "ngx_fuzz.h"


#define FUZZ_MAX_EVENTS  4096


typedef struct {
    size_t       max;
    ngx_uint_t   n;
    uint32_t     hash[FUZZ_MAX_EVENTS];
} fuzz_sse_log_t;


static uint32_t
fuzz_hash(uint32_t h, ngx_str_t *s)
{
    size_t  i;

    for (i = 0; i < s->len; i++) {
        h = (h ^ s->data[i]) * 16777619u;
    }

    return (h ^ (uint32_t) s->len) * 16777619u;
}


static void
fuzz_sse_handler(void *data, ngx_str_t *event, ngx_str_t *payload)
{
    fuzz_sse_log_t  *log = data;
    volatile u_char  sink;

    ngx_fuzz_assert(event->len <= log->max);
    ngx_fuzz_assert(payload->len <= log->max);
    ngx_fuzz_assert(event->len || payload->len);

    /* every byte handed out must be readable */
    if (event->len) {
        sink = event->data[0];
        sink = event->data[event->len - 1];
    }

    if (payload->len) {
        sink = payload->data[0];
        sink = payload->data[payload->len - 1];
    }

    (void) sink;

    if (log->n < FUZZ_MAX_EVENTS) {
        log->hash[log->n] = fuzz_hash(fuzz_hash(2166136261u, event), payload);
    }

    log->n++;
}


static void
fuzz_sse_run(ngx_pool_t *pool, size_t max, const uint8_t *cuts, size_t ncuts,
    const uint8_t *data, size_t size, fuzz_sse_log_t *log)
{
    size_t            n, i;
    u_char           *copy, *p, *last;
    ngx_ailink_sse_t  sse;

    ngx_memzero(log, sizeof(fuzz_sse_log_t));
    log->max = max;

    ngx_fuzz_assert(ngx_ailink_sse_init(&sse, pool, max, fuzz_sse_handler,
                                        log)
                    == NGX_OK);

    /* a copy per run, so a read past the input is an ASan report */
    copy = malloc(size ? size : 1);
    ngx_fuzz_assert(copy != NULL);
    if (size) {
        memcpy(copy, data, size);
    }

    p = copy;
    last = copy + size;
    i = 0;

    while (p < last) {
        n = (ncuts == 0) ? (size_t) (last - p) : (size_t) cuts[i++ % ncuts] + 1;
        n = ngx_min(n, (size_t) (last - p));

        /* each piece in its own buffer: reads past it are caught */
        {
            u_char  *piece = malloc(n);

            ngx_fuzz_assert(piece != NULL);
            memcpy(piece, p, n);

            ngx_fuzz_assert(ngx_ailink_sse_feed(&sse, piece, piece + n)
                            == NGX_OK);
            free(piece);
        }

        ngx_fuzz_assert(sse.line.len <= max);
        ngx_fuzz_assert(sse.event.len <= max);
        ngx_fuzz_assert(sse.data.len <= max);
        ngx_fuzz_assert(sse.line_size <= max || sse.line_size == 0);
        ngx_fuzz_assert(sse.data_size <= max || sse.data_size == 0);
        ngx_fuzz_assert(sse.event_size <= max || sse.event_size == 0);

        p += n;
    }

    free(copy);
}


static size_t
fuzz_longest_line(const uint8_t *p, size_t size)
{
    size_t  i, len, longest;

    longest = 0;

    for (i = 0, len = 0; i < size; i++) {
        if (p[i] == '\r' || p[i] == '\n') {
            len = 0;
            continue;
        }

        len++;
        longest = ngx_max(longest, len);
    }

    return longest;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t           max, ncuts;
    ngx_uint_t       i, n;
    ngx_pool_t      *pool;
    const uint8_t   *cuts;
    static fuzz_sse_log_t  whole, pieces;

    if (size < 2) {
        return 0;
    }

    /* byte 0: the bound, 1..256 (small, to reach the overflow paths);
     * byte 1: how many of the next bytes are cut sizes (0..15) */

    max = (size_t) data[0] + 1;
    ncuts = data[1] & 0x0f;
    data += 2;
    size -= 2;

    ncuts = ngx_min(ncuts, size);
    cuts = data;
    data += ncuts;
    size -= ncuts;

    pool = ngx_fuzz_pool();

    fuzz_sse_run(pool, max, NULL, 0, data, size, &whole);
    fuzz_sse_run(pool, max, cuts, ncuts, data, size, &pieces);

    if (whole.n <= FUZZ_MAX_EVENTS && pieces.n <= FUZZ_MAX_EVENTS) {

        if (fuzz_longest_line(data, size) <= max) {
            /* where the buffers are cut must not change what comes out */
            ngx_fuzz_assert(whole.n == pieces.n);

            for (i = 0; i < whole.n; i++) {
                ngx_fuzz_assert(whole.hash[i] == pieces.hash[i]);
            }

        } else {
            /* pieces: a subsequence of the whole parse's events */
            for (i = 0, n = 0; i < pieces.n; i++, n++) {
                while (n < whole.n && whole.hash[n] != pieces.hash[i]) {
                    n++;
                }

                ngx_fuzz_assert(n < whole.n);
            }
        }
    }

    ngx_destroy_pool(pool);

    return 0;
}
