
/*
 * Copyright (C) AILink
 *
 * The gateway's own JSON reader and writer (ngx_ailink_json_parse(),
 * ngx_ailink_json_print()) against cJSON, whose trees they build and
 * print.  The first byte picks where nodes come from: malloc, freed node
 * by node by cJSON_Delete() (odd), or a pool arena (even); the rest is the
 * text.
 *
 * Checked, for every text our parser accepts:
 *   - cJSON accepts it too and builds the same tree as far as cJSON can
 *     tell (ours is stricter: trailing text, bare control bytes, loose
 *     numbers and whitespace, a BOM, bytes that are not UTF-8 and keys
 *     with "\u0000" are refused), with cJSON's list links (the first
 *     child's prev is the last);
 *   - the scan accepts it too, when it is an object;
 *   - our printer writes exactly the length it computed, and the text
 *     parses back with cJSON to the same tree, and with ours to exactly
 *     the same tree: strings to their length ("\u0000" kept), numbers to
 *     the text they were read from;
 *   - every string knows its length and the length of its printed text,
 *     as strlen() and the slow path measure them, and a clean one (no
 *     escape) is that text.
 * And for any bytes at all: the escape writes what its length said, and
 * the escaped text in quotes is a JSON string our strict parser reads.
 */


#include "ngx_fuzz.h"
#include "ngx_ailink_common.h"

#include <math.h>


#define FUZZ_JSON_KNOWN  (NGX_AILINK_JSON_PRINTED|NGX_AILINK_JSON_CLEAN)


/* the same tree: order, keys, types and values, exactly */

static ngx_uint_t
fuzz_json_same(cJSON *a, cJSON *b)
{
    cJSON  *ca, *cb;

    if ((a->type & 0xff) != (b->type & 0xff)) {
        /* an overflowing number reads as infinity and prints as null */
        return cJSON_IsNumber(a) && isinf(a->valuedouble) && cJSON_IsNull(b);
    }

    if ((a->string == NULL) != (b->string == NULL)
        || (a->string && strcmp(a->string, b->string) != 0))
    {
        return 0;
    }

    switch (a->type & 0xff) {

    case cJSON_Number:
        return (a->valuedouble == b->valuedouble
                || (isnan(a->valuedouble) && isnan(b->valuedouble)))
               && a->valueint == b->valueint;

    case cJSON_String:
        return strcmp(a->valuestring, b->valuestring) == 0;

    case cJSON_True:
        return a->valueint == b->valueint;

    case cJSON_Array:
    case cJSON_Object:
        for (ca = a->child, cb = b->child;
             ca && cb;
             ca = ca->next, cb = cb->next)
        {
            if (!fuzz_json_same(ca, cb)) {
                return 0;
            }
        }

        return ca == NULL && cb == NULL;

    default:
        return 1;
    }
}


/* ours against ours: strings to their length, numbers to their text */

static ngx_uint_t
fuzz_json_exact(cJSON *a, cJSON *b)
{
    cJSON      *ca, *cb;
    ngx_str_t   sa, sb;

    /* what the parser knew of a string's printed text is checked apart */
    if ((a->type & ~FUZZ_JSON_KNOWN) != (b->type & ~FUZZ_JSON_KNOWN)
        || (a->string == NULL) != (b->string == NULL)
        || (a->string && strcmp(a->string, b->string) != 0))
    {
        return 0;
    }

    switch (a->type & 0xff) {

    case cJSON_Number:
        if ((a->valuestring == NULL) != (b->valuestring == NULL)
            || (a->valuestring && strcmp(a->valuestring, b->valuestring) != 0))
        {
            return 0;
        }

        return a->valuedouble == b->valuedouble
               || (isnan(a->valuedouble) && isnan(b->valuedouble));

    case cJSON_String:
        ngx_ailink_json_str(a, &sa);
        ngx_ailink_json_str(b, &sb);

        return sa.len == sb.len && ngx_memcmp(sa.data, sb.data, sa.len) == 0;

    case cJSON_Array:
    case cJSON_Object:
        for (ca = a->child, cb = b->child;
             ca && cb;
             ca = ca->next, cb = cb->next)
        {
            if (!fuzz_json_exact(ca, cb)) {
                return 0;
            }
        }

        return ca == NULL && cb == NULL;

    default:
        return 1;
    }
}


/* any bytes, escaped, make a JSON string */

static void
fuzz_json_escape(ngx_pool_t *pool, ngx_str_t *text)
{
    u_char     *p, *end;
    cJSON      *json;
    size_t      len;
    ngx_str_t   quoted;

    len = ngx_ailink_json_escape_len(text);

    p = ngx_pnalloc(pool, len + 2);
    ngx_fuzz_assert(p != NULL);

    p[0] = '"';
    end = ngx_ailink_json_escape(p + 1, text);
    ngx_fuzz_assert((size_t) (end - (p + 1)) == len);
    *end++ = '"';

    quoted.data = p;
    quoted.len = end - p;

    json = ngx_ailink_json_parse(&quoted);
    ngx_fuzz_assert(cJSON_IsString(json));
    ngx_ailink_json_delete(json);
}


/*
 * What the parser keeps of a string's printed text: its length, and that
 * a clean string is its own text; both as the printer's slow path says.
 */

static void
fuzz_json_printed(cJSON *item)
{
    cJSON      *c;
    ngx_str_t   s;

    if (cJSON_IsString(item)) {
        ngx_fuzz_assert(item->type & NGX_AILINK_JSON_PRINTED);

        ngx_ailink_json_str(item, &s);
        ngx_fuzz_assert((size_t) item->valueint
                        == ngx_ailink_json_escape_len(&s));

        if (!(item->type & NGX_AILINK_JSON_SIZED)) {
            ngx_fuzz_assert(s.len == ngx_strlen(item->valuestring));
        }

        if (item->type & NGX_AILINK_JSON_CLEAN) {
            ngx_fuzz_assert(s.len == (size_t) item->valueint);
            ngx_fuzz_assert(s.len == ngx_strlen(item->valuestring));
        }
    }

    for (c = item->child; c; c = c->next) {
        fuzz_json_printed(c);
    }
}


/* cJSON's links: next/prev agree, and the first child's prev is the last */

static void
fuzz_json_links(cJSON *item)
{
    cJSON  *c, *last;

    if (item->child == NULL) {
        return;
    }

    last = NULL;

    for (c = item->child; c; c = c->next) {
        if (last) {
            ngx_fuzz_assert(c->prev == last);
        }

        fuzz_json_links(c);
        last = c;
    }

    ngx_fuzz_assert(item->child->prev == last);
}


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    /* cJSON_Delete() must free with the allocator the parser used */
    ngx_ailink_json_init();

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                   *p, *end;
    cJSON                    *ours, *theirs, *back;
    size_t                    len;
    const char               *rest;
    ngx_str_t                 text, printed;
    ngx_pool_t               *pool;
    ngx_uint_t                arena;
    ngx_ailink_json_field_t   field = { ngx_string("model"),
                                        ngx_null_string };

    if (size < 1) {
        return 0;
    }

    arena = !(data[0] & 1);
    text.data = (u_char *) data + 1;
    text.len = size - 1;

    pool = ngx_fuzz_pool();

    if (arena) {
        ngx_ailink_json_arena(pool);
    }

    fuzz_json_escape(pool, &text);

    ours = ngx_ailink_json_parse(&text);

    if (ours == NULL) {
        ngx_ailink_json_arena(NULL);
        ngx_destroy_pool(pool);
        return 0;
    }

    fuzz_json_links(ours);
    fuzz_json_printed(ours);

    theirs = cJSON_ParseWithLengthOpts((const char *) text.data, text.len,
                                       NULL, 0);
    ngx_fuzz_assert(theirs != NULL);
    ngx_fuzz_assert(fuzz_json_same(ours, theirs));
    cJSON_Delete(theirs);

    if (cJSON_IsObject(ours)) {
        ngx_fuzz_assert(ngx_ailink_json_scan(&text, &field, 1) == NGX_OK);
    }

    len = ngx_ailink_json_print_len(ours);
    p = ngx_pnalloc(pool, len);
    ngx_fuzz_assert(p != NULL);

    end = ngx_ailink_json_print(p, ours);
    ngx_fuzz_assert((size_t) (end - p) == len);

    printed.data = p;
    printed.len = len;

    back = ngx_ailink_json_parse(&printed);
    ngx_fuzz_assert(back != NULL);
    ngx_fuzz_assert(fuzz_json_exact(ours, back));
    cJSON_Delete(back);

    back = cJSON_ParseWithLengthOpts((const char *) p, len, &rest, 0);
    ngx_fuzz_assert(back != NULL);
    ngx_fuzz_assert(rest == (const char *) end);
    ngx_fuzz_assert(fuzz_json_same(ours, back));
    cJSON_Delete(back);

    cJSON_Delete(ours);
    ngx_ailink_json_arena(NULL);
    ngx_destroy_pool(pool);

    return 0;
}
