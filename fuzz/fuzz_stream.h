
/*
 * Copyright (C) AILink
 *
 * A provider stream through the SSE parser and a translator, as the
 * response filter drives them (ngx_ailink_response_filter.c): each event
 * goes to the translator until the stream is done, a translator error
 * becomes ngx_ailink_stream_error(), and the end of the input ends the
 * stream with ngx_ailink_stream_finish().  Everything lives in a fresh pool
 * per input.
 *
 * Input: byte 0 holds flags (bit 0: the client asked for usage; bit 1: a
 * small 512-byte event bound instead of the default 64k; bits 4-7: how many
 * cut sizes follow), then the cut sizes, then the SSE bytes.
 *
 * Checked, on every chunk emitted: it serializes and parses back; it is a
 * chat.completion.chunk with one choice and a delta object, or a usage
 * chunk with no choices, or an error event; finish reasons are OpenAI's;
 * a tool call's first delta for an index carries its id, type and name;
 * nothing comes after [DONE], which comes exactly once.
 */


#include "ngx_ailink_translate.h"
#include "fuzz_json_check.h"


typedef ngx_int_t (*fuzz_stream_pt)(ngx_ailink_xstream_t *st,
    ngx_str_t *event, ngx_str_t *data);


#define FUZZ_TOOL_INDEXES  64

typedef struct {
    ngx_ailink_xstream_t   st;
    ngx_ailink_usage_t     usage;
    fuzz_stream_pt         translate;
    ngx_uint_t             failed;
    ngx_uint_t             done_emitted;
    ngx_uint_t             chunks;
    u_char                 tool_seen[FUZZ_TOOL_INDEXES];
} fuzz_stream_t;


static void
fuzz_check_tool_calls(fuzz_stream_t *fs, cJSON *calls)
{
    int     index;
    cJSON  *call, *fn, *args;

    ngx_fuzz_assert(cJSON_IsArray(calls));

    cJSON_ArrayForEach(call, calls) {
        ngx_fuzz_assert(cJSON_IsObject(call));
        ngx_fuzz_assert(cJSON_IsNumber(fuzz_json_get(call, "index")));

        index = fuzz_json_get(call, "index")->valueint;
        ngx_fuzz_assert(index >= 0);

        fn = fuzz_json_get(call, "function");

        if (index < FUZZ_TOOL_INDEXES && !fs->tool_seen[index]) {
            /* the first delta of a tool call names it */
            fs->tool_seen[index] = 1;

            ngx_fuzz_assert(cJSON_IsString(fuzz_json_get(call, "id")));
            ngx_fuzz_assert(fuzz_json_str_is(fuzz_json_get(call, "type"),
                                             "function"));
            ngx_fuzz_assert(cJSON_IsObject(fn));
            ngx_fuzz_assert(cJSON_IsString(fuzz_json_get(fn, "name")));
        }

        if (fn) {
            ngx_fuzz_assert(cJSON_IsObject(fn));

            args = fuzz_json_get(fn, "arguments");
            ngx_fuzz_assert(args == NULL || cJSON_IsString(args));
        }
    }
}


static ngx_int_t
fuzz_stream_emit(ngx_ailink_xstream_t *st, cJSON *chunk)
{
    cJSON          *back, *choices, *choice, *delta, *err;
    fuzz_stream_t  *fs = st->data;

    ngx_fuzz_assert(!fs->done_emitted);

    if (chunk == NULL) {
        /* "data: [DONE]" */
        ngx_fuzz_assert(st->done);
        fs->done_emitted = 1;
        return NGX_OK;
    }

    fs->chunks++;

    back = fuzz_json_roundtrip(chunk);
    ngx_fuzz_assert(cJSON_IsObject(back));

    err = fuzz_json_get(back, "error");

    if (err) {
        ngx_fuzz_assert(cJSON_IsObject(err));
        ngx_fuzz_assert(cJSON_IsString(fuzz_json_get(err, "message")));
        ngx_fuzz_assert(cJSON_IsString(fuzz_json_get(err, "type")));
        cJSON_Delete(back);
        return NGX_OK;
    }

    ngx_fuzz_assert(fuzz_json_str_is(fuzz_json_get(back, "object"),
                                     "chat.completion.chunk"));
    ngx_fuzz_assert(cJSON_IsString(fuzz_json_get(back, "id")));

    choices = fuzz_json_get(back, "choices");
    ngx_fuzz_assert(cJSON_IsArray(choices));

    if (cJSON_GetArraySize(choices) == 0) {
        /* the usage chunk, only when the client asked */
        ngx_fuzz_assert(st->include_usage);
        fuzz_check_usage(fuzz_json_get(back, "usage"));
        cJSON_Delete(back);
        return NGX_OK;
    }

    ngx_fuzz_assert(cJSON_GetArraySize(choices) == 1);

    choice = cJSON_GetArrayItem(choices, 0);
    ngx_fuzz_assert(cJSON_IsNumber(fuzz_json_get(choice, "index")));
    ngx_fuzz_assert(fuzz_finish_reason_ok(fuzz_json_get(choice,
                                                        "finish_reason")));

    delta = fuzz_json_get(choice, "delta");
    ngx_fuzz_assert(cJSON_IsObject(delta));

    if (fuzz_json_get(delta, "tool_calls")) {
        fuzz_check_tool_calls(fs, fuzz_json_get(delta, "tool_calls"));
    }

    if (fuzz_json_get(delta, "content")) {
        ngx_fuzz_assert(cJSON_IsString(fuzz_json_get(delta, "content"))
                        || cJSON_IsNull(fuzz_json_get(delta, "content")));
    }

    cJSON_Delete(back);

    return NGX_OK;
}


/* ngx_ailink_resp_xlate_event() */

static void
fuzz_stream_event(void *data, ngx_str_t *event, ngx_str_t *payload)
{
    ngx_int_t       rc;
    fuzz_stream_t  *fs = data;

    if (fs->failed || fs->st.done) {
        return;
    }

    rc = fs->translate(&fs->st, event, payload);

    if (rc == NGX_OK) {
        return;
    }

    ngx_fuzz_assert(rc == NGX_ERROR);

    if (ngx_ailink_stream_error(&fs->st, "api_error",
                                "the provider sent a malformed stream event")
        != NGX_OK)
    {
        fs->failed = 1;
    }
}


static int
fuzz_stream_run(fuzz_stream_pt translate, const uint8_t *data, size_t size)
{
    size_t            n, ncuts, i;
    u_char           *piece;
    ngx_uint_t        flags;
    ngx_pool_t       *pool;
    const uint8_t    *cuts, *p, *last;
    fuzz_stream_t     fs;
    ngx_ailink_sse_t  sse;

    if (size < 1) {
        return 0;
    }

    flags = data[0];
    ncuts = ngx_min((size_t) (flags >> 4), size - 1);
    cuts = data + 1;
    p = cuts + ncuts;
    last = data + size;

    pool = ngx_fuzz_pool();

    ngx_memzero(&fs, sizeof(fuzz_stream_t));
    fs.translate = translate;

    fs.st.resp.pool = pool;
    fs.st.resp.log = &ngx_fuzz_log;
    ngx_str_set(&fs.st.resp.model, "fuzz-model");
    ngx_str_set(&fs.st.resp.id, "chatcmpl-fuzz");
    fs.st.resp.created = 1700000000;
    fs.st.resp.usage = &fs.usage;
    fs.st.include_usage = flags & 1;
    fs.st.emit = fuzz_stream_emit;
    fs.st.data = &fs;

    ngx_fuzz_assert(ngx_ailink_sse_init(&sse, pool,
                                        (flags & 2) ? 512 : 64 * 1024,
                                        fuzz_stream_event, &fs)
                    == NGX_OK);

    i = 0;

    while (p < last) {
        n = ncuts ? (size_t) cuts[i++ % ncuts] + 1 : (size_t) (last - p);
        n = ngx_min(n, (size_t) (last - p));

        /* each piece in a buffer of its own, as upstream buffers are */
        piece = malloc(n);
        ngx_fuzz_assert(piece != NULL);
        memcpy(piece, p, n);

        if (ngx_ailink_sse_feed(&sse, piece, piece + n) != NGX_OK) {
            fs.failed = 1;
        }

        free(piece);
        p += n;

        if (fs.failed) {
            break;
        }
    }

    if (!fs.failed && !fs.st.done) {
        ngx_fuzz_assert(ngx_ailink_stream_finish(&fs.st) == NGX_OK);
    }

    if (!fs.failed) {
        ngx_fuzz_assert(fs.st.done && fs.done_emitted);
    }

    ngx_destroy_pool(pool);

    return 0;
}
