
/*
 * Copyright (C) AILink
 *
 * JSON helpers: string escaping for records we write by hand, and small
 * conveniences over cJSON for what we parse.
 */


#include <math.h>

#include "ngx_ailink_common.h"


/*
 * cJSON allocates through hooks.  While an arena is open, trees come from
 * a request pool and free() does nothing: the pool releases them all at
 * once.  An arena is opened only around work that builds and drops its
 * trees in one go (translating a request or a whole response), never
 * around a stream, whose memory must not grow with its length.
 *
 * A translation makes a few hundred small allocations; they are cut from
 * chunks of the pool, since ngx_palloc() walks the request pool's blocks
 * for each one.
 */

#define NGX_AILINK_JSON_CHUNK  4096

static void ngx_ailink_json_free(void *p);


/* ngx_ailink_write_uint()'s pairs of digits */
const u_char  ngx_ailink_digits2[200] =
    "00010203040506070809" "10111213141516171819"
    "20212223242526272829" "30313233343536373839"
    "40414243444546474849" "50515253545556575859"
    "60616263646566676869" "70717273747576777879"
    "80818283848586878889" "90919293949596979899";


static ngx_pool_t  *ngx_ailink_json_pool;
static u_char      *ngx_ailink_json_pos;
static u_char      *ngx_ailink_json_end;


void *
ngx_ailink_json_alloc(size_t size)
{
    u_char  *p;

    if (ngx_ailink_json_pool == NULL) {
        return malloc(size);
    }

    size = ngx_align(size, NGX_ALIGNMENT);

    if ((size_t) (ngx_ailink_json_end - ngx_ailink_json_pos) < size) {

        if (size > NGX_AILINK_JSON_CHUNK / 4) {
            return ngx_palloc(ngx_ailink_json_pool, size);
        }

        p = ngx_palloc(ngx_ailink_json_pool, NGX_AILINK_JSON_CHUNK);
        if (p == NULL) {
            return NULL;
        }

        ngx_ailink_json_pos = p;
        ngx_ailink_json_end = p + NGX_AILINK_JSON_CHUNK;
    }

    p = ngx_ailink_json_pos;
    ngx_ailink_json_pos += size;

    return p;
}


/* a tree in an arena is the pool's: walking it to free nothing is skipped */

void
ngx_ailink_json_delete(cJSON *json)
{
    if (ngx_ailink_json_pool == NULL) {
        cJSON_Delete(json);
    }
}


/* a copy of a C string in cJSON's memory */

static char *
ngx_ailink_json_strdup(const char *s)
{
    char    *p;
    size_t   len;

    len = ngx_strlen(s) + 1;

    p = ngx_ailink_json_alloc(len);
    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(p, s, len);

    return p;
}


/* a string node of s, NUL bytes and all */

cJSON *
ngx_ailink_json_string(ngx_str_t *s)
{
    char   *text;
    cJSON  *item;

    item = ngx_ailink_json_alloc(sizeof(cJSON));
    text = ngx_ailink_json_alloc(s->len + 1);

    if (item == NULL || text == NULL) {
        ngx_ailink_json_free(item);
        ngx_ailink_json_free(text);
        return NULL;
    }

    ngx_memzero(item, sizeof(cJSON));
    item->type = cJSON_String;

    if (s->len) {
        ngx_memcpy(text, s->data, s->len);
    }

    text[s->len] = '\0';
    item->valuestring = text;

    if (memchr(text, '\0', s->len) != NULL) {
        item->type |= NGX_AILINK_JSON_SIZED;
        item->valuedouble = (double) s->len;
    }

    return item;
}


/*
 * A deep copy that keeps what cJSON_Duplicate() loses: strings holding
 * NUL and the text of numbers.  The copy has no key of its own.
 */

cJSON *
ngx_ailink_json_copy(cJSON *item)
{
    cJSON      *copy, *child, *c, *tail;
    ngx_str_t   s;

    if (cJSON_IsString(item)) {
        ngx_ailink_json_str(item, &s);

        copy = ngx_ailink_json_string(&s);

        if (copy) {
            /* the same text: what the parser knew of it stays true */
            copy->type |= item->type
                          & (NGX_AILINK_JSON_PRINTED|NGX_AILINK_JSON_CLEAN);
            copy->valueint = item->valueint;
            copy->valuedouble = item->valuedouble;
        }

        return copy;
    }

    copy = ngx_ailink_json_alloc(sizeof(cJSON));
    if (copy == NULL) {
        return NULL;
    }

    ngx_memzero(copy, sizeof(cJSON));
    copy->type = item->type & ~(cJSON_IsReference|cJSON_StringIsConst);
    copy->valueint = item->valueint;
    copy->valuedouble = item->valuedouble;

    if (item->valuestring) {
        /* a number's text, a raw value */
        copy->valuestring = ngx_ailink_json_strdup(item->valuestring);
        if (copy->valuestring == NULL) {
            goto failed;
        }
    }

    tail = NULL;

    for (child = item->child; child; child = child->next) {
        c = ngx_ailink_json_copy(child);
        if (c == NULL) {
            goto failed;
        }

        /* linked first, so that a failure below frees it with the copy */
        if (tail == NULL) {
            copy->child = c;

        } else {
            tail->next = c;
            c->prev = tail;
        }

        tail = c;
        copy->child->prev = tail;

        if (child->string) {
            c->string = ngx_ailink_json_strdup(child->string);
            if (c->string == NULL) {
                goto failed;
            }
        }
    }

    return copy;

failed:

    ngx_ailink_json_delete(copy);

    return NULL;
}


/*
 * Adds a copy of item to an object under key, or to an array (key NULL);
 * returns the copy, or NULL (nothing added, nothing leaked).
 */

cJSON *
ngx_ailink_json_add_copy(cJSON *obj, const char *key, cJSON *item)
{
    cJSON  *copy;

    if (obj == NULL || item == NULL) {
        return NULL;
    }

    copy = ngx_ailink_json_copy(item);
    if (copy == NULL) {
        return NULL;
    }

    if (!(key ? cJSON_AddItemToObject(obj, key, copy)
              : cJSON_AddItemToArray(obj, copy)))
    {
        ngx_ailink_json_delete(copy);
        return NULL;
    }

    return copy;
}


static void
ngx_ailink_json_free(void *p)
{
    if (ngx_ailink_json_pool == NULL) {
        free(p);
    }
}


#if (defined __SSE2__ && defined __GNUC__)

#include <immintrin.h>

/*
 * ngx_ailink_json_run_end() of a long run, 64 bytes a test: the stop, or
 * where fewer than 32 bytes are left.  AVX2 compares into a new register,
 * where SSE2 copies one first, and twice the bytes: a third of the
 * instructions a byte, for the texts of long histories that every request
 * scans.
 */

__attribute__((target("avx2"), always_inline))
static ngx_inline __m256i
ngx_ailink_json_special32(const u_char *p, ngx_uint_t high)
{
    __m256i  v, m;

    v = _mm256_loadu_si256((const __m256i *) p);

    m = _mm256_or_si256(_mm256_cmpeq_epi8(v, _mm256_set1_epi8('"')),
                        _mm256_cmpeq_epi8(v, _mm256_set1_epi8('\\')));

    /* signed, bytes >= 0x80 are below 0x20 too; else v <= 0x1f */
    return _mm256_or_si256(m, high
                              ? _mm256_cmpgt_epi8(_mm256_set1_epi8(0x20), v)
                              : _mm256_cmpeq_epi8(
                                    _mm256_min_epu8(v, _mm256_set1_epi8(0x1f)),
                                    v));
}


__attribute__((target("avx2"), always_inline))
static ngx_inline u_char *
ngx_ailink_json_run_avx2(u_char *p, u_char *last, ngx_uint_t high)
{
    int      mask;
    __m256i  m0, m1, m;

    while (last - p >= 64) {
        m0 = ngx_ailink_json_special32(p, high);
        m1 = ngx_ailink_json_special32(p + 32, high);
        m = _mm256_or_si256(m0, m1);

        if (!_mm256_testz_si256(m, m)) {
            mask = _mm256_movemask_epi8(m0);

            return mask ? p + __builtin_ctz(mask)
                        : p + 32 + __builtin_ctz(_mm256_movemask_epi8(m1));
        }

        p += 64;
    }

    if (last - p >= 32) {
        mask = _mm256_movemask_epi8(ngx_ailink_json_special32(p, high));
        p = mask ? p + __builtin_ctz(mask) : p + 32;
    }

    return p;
}


__attribute__((target("avx2")))
static u_char *
ngx_ailink_json_long_run_end_avx2(u_char *p, u_char *last, ngx_uint_t high)
{
    /* each variant its own loop */
    return high ? ngx_ailink_json_run_avx2(p, last, 1)
                : ngx_ailink_json_run_avx2(p, last, 0);
}

#endif


u_char *(*ngx_ailink_json_long_run_end)(u_char *p, u_char *last,
    ngx_uint_t high);


void
ngx_ailink_json_init(void)
{
    cJSON_Hooks  hooks = { ngx_ailink_json_alloc, ngx_ailink_json_free };

    cJSON_InitHooks(&hooks);

#if (defined __SSE2__ && defined __GNUC__)
    if (__builtin_cpu_supports("avx2")) {
        ngx_ailink_json_long_run_end = ngx_ailink_json_long_run_end_avx2;
    }
#endif
}


void
ngx_ailink_json_arena(ngx_pool_t *pool)
{
    ngx_ailink_json_pool = pool;
    ngx_ailink_json_pos = NULL;
    ngx_ailink_json_end = NULL;
}


/*
 * Escaping: '"', '\\' and the control bytes; valid UTF-8 goes as it is,
 * and what is not UTF-8 (a stray byte, an overlong form, a surrogate, a
 * code point above U+10FFFF, a cut sequence) becomes U+FFFD, "\ufffd":
 * what is written is JSON whatever the bytes were (a decoded path, a
 * client's header).  Runs of plain ASCII are found many bytes at a time
 * and copied whole; only bytes >= 0x80 take the slow path.
 */

u_char  ngx_ailink_json_short_escape[0x20] = {
    0,   0,   0,   0,   0,   0,   0,   0,  'b', 't', 'n',  0,  'f', 'r',  0,  0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,  0
};


#define NGX_AILINK_JSON_REPLACEMENT      "\\ufffd"
#define NGX_AILINK_JSON_REPLACEMENT_LEN  (sizeof("\\ufffd") - 1)


static size_t
ngx_ailink_json_escaped_len(u_char *p, u_char *last)
{
    u_char     *run;
    size_t      len;
    ngx_int_t   n;

    for (len = 0; /* void */ ; /* void */ ) {
        run = p;
        p = ngx_ailink_json_ascii_end(p, last);
        len += p - run;

        if (p == last) {
            return len;
        }

        if (*p >= 0x80) {
            n = ngx_ailink_utf8_sequence(p, last);

            if (n > 0) {
                len += n;
                p += n;

            } else {
                len += NGX_AILINK_JSON_REPLACEMENT_LEN;
                p -= n;
            }

            continue;
        }

        /* \" \\ \n ..., or \u00XX */
        len += (*p >= 0x20 || ngx_ailink_json_short_escape[*p]) ? 2 : 6;
        p++;
    }
}


static u_char *
ngx_ailink_json_escaped(u_char *dst, u_char *p, u_char *last)
{
    u_char         c, *run;
    ngx_int_t      n;
    static u_char  hex[] = "0123456789abcdef";

    for ( ;; ) {
        run = p;
        p = ngx_ailink_json_ascii_end(p, last);
        dst = ngx_cpymem(dst, run, p - run);

        if (p == last) {
            return dst;
        }

        if (*p >= 0x80) {
            n = ngx_ailink_utf8_sequence(p, last);

            if (n > 0) {
                dst = ngx_cpymem(dst, p, n);
                p += n;

            } else {
                dst = ngx_cpymem(dst, NGX_AILINK_JSON_REPLACEMENT,
                                 NGX_AILINK_JSON_REPLACEMENT_LEN);
                p -= n;
            }

            continue;
        }

        c = *p++;
        *dst++ = '\\';

        if (c >= 0x20) {
            *dst++ = c;

        } else if (ngx_ailink_json_short_escape[c]) {
            *dst++ = ngx_ailink_json_short_escape[c];

        } else {
            *dst++ = 'u';
            *dst++ = '0';
            *dst++ = '0';
            *dst++ = hex[c >> 4];
            *dst++ = hex[c & 0xf];
        }
    }
}


size_t
ngx_ailink_json_escape_len(ngx_str_t *s)
{
    /* an empty string's data may be NULL */
    return s->len ? ngx_ailink_json_escaped_len(s->data, s->data + s->len) : 0;
}


u_char *
ngx_ailink_json_escape(u_char *dst, ngx_str_t *s)
{
    return s->len ? ngx_ailink_json_escaped(dst, s->data, s->data + s->len)
                  : dst;
}


/*
 * Printing a cJSON tree: the length first, then the text into a buffer of
 * that size, so a body is written once into memory the caller chose (a
 * pool, a stream's recycled buffer) instead of cJSON's doubling buffers.
 * A number the parser read as its text; others as cJSON prints them,
 * integers without cJSON's sprintf() and sscanf() round trip.
 */

#define NGX_AILINK_JSON_NUMBER_LEN  32


static u_char *
ngx_ailink_json_number(u_char *p, double d)
{
    int         len;
    u_char      buf[NGX_AILINK_JSON_NUMBER_LEN];
    int64_t     n;
    ngx_uint_t  i, digits;

    if (isnan(d) || isinf(d)) {
        return ngx_cpymem(p, "null", 4);
    }

    if (d > -1e15 && d < 1e15 && d == (double) (int64_t) d) {
        /* a dozen numbers in every answer's usage: no format to parse */
        return ngx_ailink_write_int(p, (int64_t) d);
    }

    /*
     * A few decimals (0.2, 0.95): when n / 10^6 rounds to d, the decimal
     * n / 10^6 reads back as d (IEEE division rounds correctly), and it is
     * what %.15g prints (no exponent from 1e-4 on), without printf's
     * arbitrary-precision digits.
     */

    if ((d > -1e9 && d <= -1e-4) || (d >= 1e-4 && d < 1e9)) {
        n = (int64_t) (d * 1e6 + (d < 0 ? -0.5 : 0.5));

        if ((double) n / 1e6 == d) {
            if (n < 0) {
                *p++ = '-';
                n = -n;
            }

            p = ngx_ailink_write_uint(p, (uint64_t) (n / 1000000));
            *p++ = '.';

            /* the fraction's digits, leading zeros kept, trailing dropped */
            for (n %= 1000000, digits = 6; n % 10 == 0 && digits; digits--) {
                n /= 10;
            }

            for (i = digits; i > 0; i--) {
                p[i - 1] = (u_char) ('0' + n % 10);
                n /= 10;
            }

            return p + digits;
        }
    }

    /* the shortest of 15 or 17 digits that reads back the same */
    /* into a buffer of its own: snprintf() adds a NUL the output has no
     * room for */
    len = snprintf((char *) buf, sizeof(buf), "%.15g", d);

    if (strtod((char *) buf, NULL) != d) {
        len = snprintf((char *) buf, sizeof(buf), "%.17g", d);
    }

    return ngx_cpymem(p, buf, len);
}


/* a string node: its text to its length, "\u0000" included */

static size_t
ngx_ailink_json_string_len(cJSON *item)
{
    u_char  *p;

    if (item->valuestring == NULL) {
        return 2;
    }

    if (item->type & NGX_AILINK_JSON_PRINTED) {
        return (size_t) item->valueint + 2;
    }

    p = (u_char *) item->valuestring;

    return ngx_ailink_json_escaped_len(p, p + ngx_ailink_json_strlen(item))
           + 2;
}


static u_char *
ngx_ailink_json_string_print(u_char *p, cJSON *item)
{
    u_char  *q;

    *p++ = '"';

    if (item->type & NGX_AILINK_JSON_CLEAN) {
        p = ngx_cpymem(p, item->valuestring, item->valueint);

    } else if (item->valuestring) {
        q = (u_char *) item->valuestring;
        p = ngx_ailink_json_escaped(p, q, q + ngx_ailink_json_strlen(item));
    }

    *p++ = '"';

    return p;
}


static size_t
ngx_ailink_json_cstr_len(const char *s)
{
    u_char  *p;

    if (s == NULL) {
        return 2;
    }

    p = (u_char *) s;

    return ngx_ailink_json_escaped_len(p, p + ngx_strlen(s)) + 2;
}


static u_char *
ngx_ailink_json_cstr(u_char *p, const char *s)
{
    u_char  *q;

    *p++ = '"';

    if (s) {
        q = (u_char *) s;
        p = ngx_ailink_json_escaped(p, q, q + ngx_strlen(s));
    }

    *p++ = '"';

    return p;
}


size_t
ngx_ailink_json_print_len(cJSON *item)
{
    size_t   len;
    cJSON   *child;
    u_char   num[NGX_AILINK_JSON_NUMBER_LEN];

    switch (item->type & 0xff) {

    case cJSON_False:
        return sizeof("false") - 1;

    case cJSON_True:
        return sizeof("true") - 1;

    case cJSON_Number:
        if (item->valuestring) {
            return ngx_strlen(item->valuestring);
        }

        return ngx_ailink_json_number(num, item->valuedouble) - num;

    case cJSON_String:
        return ngx_ailink_json_string_len(item);

    case cJSON_Raw:
        return item->valuestring ? ngx_strlen(item->valuestring) : 4;

    case cJSON_Array:
    case cJSON_Object:
        len = 2;

        for (child = item->child; child; child = child->next) {
            len += ngx_ailink_json_print_len(child) + (child->next != NULL);

            if ((item->type & 0xff) == cJSON_Object) {
                len += ngx_ailink_json_cstr_len(child->string) + 1;
            }
        }

        return len;

    default:
        /* cJSON_NULL; cJSON_Invalid, never built, alike */
        return sizeof("null") - 1;
    }
}


/* p has ngx_ailink_json_print_len(item) bytes; returns their end */

u_char *
ngx_ailink_json_print(u_char *p, cJSON *item)
{
    cJSON       *child;
    ngx_uint_t   object;

    switch (item->type & 0xff) {

    case cJSON_False:
        return ngx_cpymem(p, "false", 5);

    case cJSON_True:
        return ngx_cpymem(p, "true", 4);

    case cJSON_Number:
        if (item->valuestring) {
            /* the text it was read from */
            return ngx_cpymem(p, item->valuestring,
                              ngx_strlen(item->valuestring));
        }

        return ngx_ailink_json_number(p, item->valuedouble);

    case cJSON_String:
        return ngx_ailink_json_string_print(p, item);

    case cJSON_Raw:
        return item->valuestring
               ? ngx_cpymem(p, item->valuestring, ngx_strlen(item->valuestring))
               : ngx_cpymem(p, "null", 4);

    case cJSON_Array:
    case cJSON_Object:
        object = ((item->type & 0xff) == cJSON_Object);
        *p++ = object ? '{' : '[';

        for (child = item->child; child; child = child->next) {
            if (object) {
                p = ngx_ailink_json_cstr(p, child->string);
                *p++ = ':';
            }

            p = ngx_ailink_json_print(p, child);

            if (child->next) {
                *p++ = ',';
            }
        }

        *p++ = object ? '}' : ']';
        return p;

    default:
        return ngx_cpymem(p, "null", 4);
    }
}


/* serializes into the pool; the cJSON tree stays the caller's */

ngx_int_t
ngx_ailink_json_to_str(ngx_pool_t *pool, cJSON *json, ngx_str_t *out)
{
    out->len = ngx_ailink_json_print_len(json);

    out->data = ngx_pnalloc(pool, out->len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    ngx_ailink_json_print(out->data, json);

    return NGX_OK;
}


/*
 * A count from a provider (tokens, a status code): a non-negative number,
 * clamped, since a cast of a double beyond the integer range is undefined.
 * NGX_DECLINED when the key holds no number.
 */

#define NGX_AILINK_JSON_COUNT_MAX  1e12

static ngx_int_t
ngx_ailink_json_count_item(cJSON *item, ngx_uint_t *value)
{
    double  d;

    if (!cJSON_IsNumber(item)) {
        return NGX_DECLINED;
    }

    d = item->valuedouble;

    if (!(d > 0)) {
        /* negative and NaN alike */
        d = 0;

    } else if (d > NGX_AILINK_JSON_COUNT_MAX) {
        d = NGX_AILINK_JSON_COUNT_MAX;
    }

    *value = (ngx_uint_t) d;

    return NGX_OK;
}


ngx_int_t
ngx_ailink_json_count(cJSON *obj, const char *key, ngx_uint_t *value)
{
    return ngx_ailink_json_count_item(ngx_ailink_json_get(obj, key), value);
}


ngx_uint_t
ngx_ailink_json_uint(cJSON *obj, const char *key)
{
    ngx_uint_t  n;

    return ngx_ailink_json_count(obj, key, &n) == NGX_OK ? n : 0;
}


/* an OpenAI usage object: {"prompt_tokens", "completion_tokens", ...} */

void
ngx_ailink_openai_usage(ngx_ailink_usage_t *usage, cJSON *u)
{
    if (!cJSON_IsObject(u)) {
        return;
    }

    usage->prompt = ngx_ailink_json_uint(u, "prompt_tokens");
    usage->completion = ngx_ailink_json_uint(u, "completion_tokens");
    usage->total = ngx_ailink_json_uint(u, "total_tokens");

    if (usage->total == 0) {
        usage->total = usage->prompt + usage->completion;
    }

    usage->cached = ngx_ailink_json_uint(
        ngx_ailink_json_get(u, "prompt_tokens_details"), "cached_tokens");

    usage->known = 1;
}


/* the same from the object's text, without a tree */

static ngx_uint_t
ngx_ailink_json_count_text(ngx_str_t *value)
{
    cJSON       *json;
    ngx_int_t    n;
    ngx_uint_t   count;

    if (value->len == 0) {
        return 0;
    }

    n = ngx_atoi(value->data, value->len);

    if (n != NGX_ERROR && n <= NGX_AILINK_JSON_COUNT_MAX) {
        return n;
    }

    /* 12.0, 1e3, -1, a huge count: as ngx_ailink_json_count() reads them */

    json = ngx_ailink_json_parse(value);

    count = 0;
    (void) ngx_ailink_json_count_item(json, &count);

    ngx_ailink_json_delete(json);

    return count;
}


void
ngx_ailink_openai_usage_text(ngx_ailink_usage_t *usage, ngx_str_t *text)
{
    ngx_ailink_json_field_t  f[] = {
        { ngx_string("prompt_tokens"), ngx_null_string },
        { ngx_string("completion_tokens"), ngx_null_string },
        { ngx_string("total_tokens"), ngx_null_string },
        { ngx_string("prompt_tokens_details"), ngx_null_string }
    };
    ngx_ailink_json_field_t  cached = { ngx_string("cached_tokens"),
                                        ngx_null_string };

    if (ngx_ailink_json_scan(text, f, 4) != NGX_OK) {
        return;
    }

    usage->prompt = ngx_ailink_json_count_text(&f[0].value);
    usage->completion = ngx_ailink_json_count_text(&f[1].value);
    usage->total = ngx_ailink_json_count_text(&f[2].value);

    if (usage->total == 0) {
        usage->total = usage->prompt + usage->completion;
    }

    if (f[3].value.len
        && ngx_ailink_json_scan(&f[3].value, &cached, 1) == NGX_OK)
    {
        usage->cached = ngx_ailink_json_count_text(&cached.value);
    }

    usage->known = 1;
}


/* an OpenAI response or chunk: {"usage": {...}} */

void
ngx_ailink_usage_from_openai(ngx_ailink_usage_t *usage, cJSON *json)
{
    ngx_ailink_openai_usage(usage,
                            ngx_ailink_json_get(json, "usage"));
}
