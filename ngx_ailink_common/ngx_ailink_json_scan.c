
/*
 * Copyright (C) AILink
 *
 * Reading JSON text, three ways.
 *
 * The scan builds no tree.  Requests that pass through unchanged only need
 * a few top-level fields ("model", "stream"); building and freeing a tree
 * of the whole body for them cost several times what nginx spends on the
 * request.  The scan checks the whole text is JSON (RFC 8259, nesting
 * bounded) and returns the raw text of the fields asked for.
 *
 * The find checks nothing: it looks for one top-level member, in a
 * provider's response that passes through as it is ("usage"), or for a
 * hint before the body is read for real ("model").
 *
 * The parse builds a cJSON tree, for the translators, over the scan's
 * grammar, without cJSON's parser: that one reads every number with
 * localeconv() and strtod() and every string byte by byte, and was most
 * of a translation's cost.
 */


#include "ngx_ailink_common.h"
#include "ngx_ailink_json_scan.h"


/*
 * NGX_OK when the text is one JSON object; the fields found get the raw
 * text of their values (a missing field keeps value.len == 0; the last of
 * duplicate keys wins, as in most parsers).  A loop over three states
 * with a stack of open brackets, rather than recursion, keeps the cursor
 * in a register: this runs on every request that passes through.
 */

ngx_int_t
ngx_ailink_json_scan(ngx_str_t *text, ngx_ailink_json_field_t *fields,
    ngx_uint_t n)
{
    u_char                   *key, close, open[NGX_AILINK_JSON_MAX_DEPTH];
    size_t                    len;
    ngx_uint_t                i, depth;
    ngx_ailink_scan_t         s;
    ngx_ailink_json_field_t  *field;
    enum {
        sw_value = 0,
        sw_after_value,
        sw_member
    } state;

    for (i = 0; i < n; i++) {
        ngx_str_null(&fields[i].value);
    }

    s.p = text->data;
    s.last = text->data + text->len;

    ngx_ailink_scan_space(&s);

    if (s.p == s.last || *s.p != '{') {
        return NGX_ERROR;
    }

    depth = 0;
    field = NULL;
    state = sw_value;

    for ( ;; ) {

        switch (state) {

        /* at a value's first byte */
        case sw_value:

            switch (*s.p) {

            case '{':
            case '[':
                if (depth == NGX_AILINK_JSON_MAX_DEPTH) {
                    return NGX_ERROR;
                }

                open[depth++] = *s.p++;
                ngx_ailink_scan_space(&s);

                if (s.p == s.last) {
                    return NGX_ERROR;
                }

                close = (open[depth - 1] == '{') ? '}' : ']';

                if (*s.p == close) {
                    s.p++;
                    depth--;
                    state = sw_after_value;

                } else {
                    state = (close == '}') ? sw_member : sw_value;
                }

                continue;

            case '"':
                if (ngx_ailink_scan_string(&s) != NGX_OK) {
                    return NGX_ERROR;
                }

                break;

            case 't':
            case 'f':
            case 'n':
                if (ngx_ailink_scan_literal(&s) != NGX_OK) {
                    return NGX_ERROR;
                }

                break;

            default:
                if (ngx_ailink_scan_number(&s) != NGX_OK) {
                    return NGX_ERROR;
                }
            }

            state = sw_after_value;
            continue;

        /* after a value: a comma, a closing bracket or the end */
        case sw_after_value:

            if (field && depth == 1) {
                field->value.len = s.p - field->value.data;
                field = NULL;
            }

            ngx_ailink_scan_space(&s);

            if (depth == 0) {
                return (s.p == s.last) ? NGX_OK : NGX_ERROR;
            }

            if (s.p == s.last) {
                return NGX_ERROR;
            }

            close = (open[depth - 1] == '{') ? '}' : ']';

            if (*s.p == close) {
                s.p++;
                depth--;
                continue;
            }

            if (*s.p != ',') {
                return NGX_ERROR;
            }

            s.p++;
            ngx_ailink_scan_space(&s);

            if (s.p == s.last) {
                return NGX_ERROR;
            }

            state = (close == '}') ? sw_member : sw_value;
            continue;

        /* at an object member's key */
        case sw_member:

            if (*s.p != '"') {
                return NGX_ERROR;
            }

            key = s.p + 1;

            if (ngx_ailink_scan_string(&s) != NGX_OK) {
                return NGX_ERROR;
            }

            len = s.p - 1 - key;

            ngx_ailink_scan_space(&s);

            if (s.p == s.last || *s.p != ':') {
                return NGX_ERROR;
            }

            s.p++;
            ngx_ailink_scan_space(&s);

            if (s.p == s.last) {
                return NGX_ERROR;
            }

            /* top-level members only: the fields callers ask for */
            for (i = 0; depth == 1 && i < n; i++) {
                if (fields[i].key.len == len
                    && ngx_memcmp(fields[i].key.data, key, len) == 0)
                {
                    field = &fields[i];
                    field->value.data = s.p;
                    break;
                }
            }

            state = sw_value;
            continue;
        }
    }
}


/*
 * One value, checked and passed over, for readers that take some members
 * and skip the rest (the one-pass response translator).  NGX_DECLINED
 * when a string in it has "\u" or "\/": the scan lets lone surrogates by
 * and the parse refuses them, so a reader that must agree with the parse
 * leaves such text to it.
 */

ngx_int_t
ngx_ailink_scan_skip(ngx_ailink_scan_t *s)
{
    u_char     close;
    ngx_int_t  rc;

    switch (*s->p) {

    case '"':
        if (ngx_ailink_scan_string(s) != NGX_OK) {
            return NGX_ERROR;
        }

        return (s->escaped & NGX_AILINK_SCAN_REWRITE) ? NGX_DECLINED : NGX_OK;

    case 't':
    case 'f':
    case 'n':
        return ngx_ailink_scan_literal(s);

    case '{':
    case '[':
        break;

    default:
        return ngx_ailink_scan_number(s);
    }

    if (++s->depth > NGX_AILINK_JSON_MAX_DEPTH) {
        return NGX_ERROR;
    }

    close = (*s->p == '{') ? '}' : ']';

    s->p++;
    ngx_ailink_scan_space(s);

    if (s->p < s->last && *s->p == close) {
        s->p++;
        s->depth--;
        return NGX_OK;
    }

    for ( ;; ) {
        if (s->p == s->last) {
            return NGX_ERROR;
        }

        if (close == '}') {
            rc = (*s->p == '"') ? ngx_ailink_scan_skip(s) : NGX_ERROR;

            if (rc != NGX_OK) {
                return rc;
            }

            ngx_ailink_scan_space(s);

            if (s->p == s->last || *s->p != ':') {
                return NGX_ERROR;
            }

            s->p++;
            ngx_ailink_scan_space(s);

            if (s->p == s->last) {
                return NGX_ERROR;
            }
        }

        rc = ngx_ailink_scan_skip(s);
        if (rc != NGX_OK) {
            return rc;
        }

        ngx_ailink_scan_space(s);

        if (s->p == s->last) {
            return NGX_ERROR;
        }

        if (*s->p == close) {
            s->p++;
            s->depth--;
            return NGX_OK;
        }

        if (*s->p != ',') {
            return NGX_ERROR;
        }

        s->p++;
        ngx_ailink_scan_space(s);
    }
}


/*
 * A top-level member of an object, found without checking the text is
 * JSON: for a provider's response that passes through as it is, where a
 * member that cannot be found only means less to report.  Strings are
 * skipped a run at a time; only brackets outside strings count.
 */

/* after a string's opening quote: its closing quote, or NULL */

static u_char *
ngx_ailink_find_string_end(u_char *p, u_char *last)
{
    for ( ;; ) {
        p = ngx_ailink_json_plain_end(p, last);

        if (p == last) {
            return NULL;
        }

        if (*p == '"') {
            return p;
        }

        /* a backslash escapes the next byte; a control byte is not ours
         * to judge */
        if (*p == '\\' && ++p == last) {
            return NULL;
        }

        p++;
    }
}


/* the value ends at end, before blanks */

static void
ngx_ailink_find_value(ngx_str_t *value, u_char *start, u_char *end)
{
    while (end > start && ngx_ailink_json_space(end[-1])) {
        end--;
    }

    value->data = start;
    value->len = end - start;
}


/* from the start: the first member of that name at the top level */

ngx_int_t
ngx_ailink_json_find(ngx_str_t *text, ngx_str_t *key, ngx_str_t *value)
{
    u_char      *p, *last, *start, *found;
    ngx_uint_t   depth, expect_key;

    p = text->data;
    last = p + text->len;
    depth = 0;
    expect_key = 0;
    found = NULL;

    for ( /* void */ ; p < last; p++) {

        switch (*p) {

        case '"':
            start = p + 1;

            p = ngx_ailink_find_string_end(start, last);
            if (p == NULL) {
                return NGX_DECLINED;
            }

            if (expect_key && found == NULL
                && (size_t) (p - start) == key->len
                && ngx_memcmp(start, key->data, key->len) == 0)
            {
                /* the value starts after the colon */
                for (p++; p < last && (*p == ':' || ngx_ailink_json_space(*p));
                     p++)
                {
                    /* void */
                }

                found = p--;
            }

            expect_key = 0;
            break;

        case '{':
        case '[':
            depth++;
            expect_key = (depth == 1 && *p == '{');
            break;

        case '}':
        case ']':
        case ',':
            if (depth == 1 && found) {
                ngx_ailink_find_value(value, found, p);
                return NGX_OK;
            }

            if (*p == ',') {
                expect_key = (depth == 1);

            } else if (depth-- == 0) {
                return NGX_DECLINED;
            }

            break;
        }
    }

    return NGX_DECLINED;
}


/*
 * OpenAI, and the servers that copy its API, write "usage" last.  So the
 * last "key": in the text is tried first: when the walk from its value to
 * the end closes exactly one object, the top-level one, and nothing
 * follows, the key is the top-level object's.  An unescaped quote is a
 * string's edge, and one followed by the key, a quote and a colon starts
 * a key.
 */

static ngx_int_t
ngx_ailink_find_at_end(ngx_str_t *text, ngx_str_t *key, ngx_str_t *value)
{
    u_char      *p, *q, *last, *start, *end, *candidate;
    ngx_int_t    depth;
    ngx_uint_t   backslashes;

    last = text->data + text->len;
    candidate = NULL;

    /* quotes from the end (it is near there): the first that opens "key" */
    for (p = last;
         (q = memrchr(text->data, '"', p - text->data)) != NULL;
         p = q)
    {
        if ((size_t) (last - q) > key->len + 1
            && q[key->len + 1] == '"'
            && ngx_memcmp(q + 1, key->data, key->len) == 0)
        {
            candidate = q;
            break;
        }
    }

    if (candidate == NULL) {
        return NGX_DECLINED;
    }

    for (backslashes = 0, q = candidate;
         q > text->data && q[-1] == '\\';
         q--)
    {
        backslashes++;
    }

    if (backslashes % 2) {
        return NGX_DECLINED;
    }

    for (p = candidate + key->len + 2; p < last && ngx_ailink_json_space(*p);
         p++)
    {
        /* void */
    }

    if (p == last || *p != ':') {
        return NGX_DECLINED;
    }

    for (p++; p < last && ngx_ailink_json_space(*p); p++) {
        /* void */
    }

    start = p;
    end = NULL;
    depth = 0;

    for ( /* void */ ; p < last; p++) {

        switch (*p) {

        case '"':
            p = ngx_ailink_find_string_end(p + 1, last);
            if (p == NULL) {
                return NGX_DECLINED;
            }

            break;

        case '{':
        case '[':
            depth++;
            break;

        case ',':
            if (depth == 0 && end == NULL) {
                end = p;
            }

            break;

        case '}':
        case ']':
            if (depth-- > 0) {
                break;
            }

            if (*p != '}' || p == start) {
                return NGX_DECLINED;
            }

            if (end == NULL) {
                end = p;
            }

            for (p++; p < last && ngx_ailink_json_space(*p); p++) {
                /* void */
            }

            if (p != last) {
                return NGX_DECLINED;
            }

            ngx_ailink_find_value(value, start, end);
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/* a member written last, as "usage" is, found from the end first */

ngx_int_t
ngx_ailink_json_find_last(ngx_str_t *text, ngx_str_t *key, ngx_str_t *value)
{
    if (ngx_ailink_find_at_end(text, key, value) == NGX_OK) {
        return NGX_OK;
    }

    return ngx_ailink_json_find(text, key, value);
}


/* a scanned string value without escapes, as it is; else NGX_DECLINED */

ngx_int_t
ngx_ailink_json_plain_string(ngx_str_t *value, ngx_str_t *out)
{
    if (value->len < 2 || value->data[0] != '"'
        || ngx_strlchr(value->data, value->data + value->len, '\\'))
    {
        return NGX_DECLINED;
    }

    out->data = value->data + 1;
    out->len = value->len - 2;

    return NGX_OK;
}


/*
 * The parse.  Nodes and strings come from cJSON's allocator hooks, so a
 * tree is cJSON's own: cJSON_Delete() frees it, and inside a JSON arena
 * the request pool does.  Unlike cJSON_Parse(), trailing text after the
 * value is an error.
 */

static cJSON *ngx_ailink_parse_value(ngx_ailink_scan_t *s);


static cJSON *
ngx_ailink_parse_node(int type)
{
    cJSON  *item;

    item = ngx_ailink_json_alloc(sizeof(cJSON));
    if (item == NULL) {
        return NULL;
    }

    ngx_memzero(item, sizeof(cJSON));
    item->type = type;

    return item;
}


static u_char *
ngx_ailink_parse_utf8(u_char *dst, uint32_t cp)
{
    if (cp < 0x80) {
        *dst++ = (u_char) cp;

    } else if (cp < 0x800) {
        *dst++ = (u_char) (0xc0 | (cp >> 6));
        *dst++ = (u_char) (0x80 | (cp & 0x3f));

    } else if (cp < 0x10000) {
        *dst++ = (u_char) (0xe0 | (cp >> 12));
        *dst++ = (u_char) (0x80 | ((cp >> 6) & 0x3f));
        *dst++ = (u_char) (0x80 | (cp & 0x3f));

    } else {
        *dst++ = (u_char) (0xf0 | (cp >> 18));
        *dst++ = (u_char) (0x80 | ((cp >> 12) & 0x3f));
        *dst++ = (u_char) (0x80 | ((cp >> 6) & 0x3f));
        *dst++ = (u_char) (0x80 | (cp & 0x3f));
    }

    return dst;
}


/*
 * One escape of a scanned string (its hex digits are checked), p at the
 * backslash: the bytes it stands for go to dst (at most four), and *pp
 * moves past it.  NULL for a lone surrogate, which the scan lets by.
 */

u_char *
ngx_ailink_json_unescape(u_char **pp, u_char *last, u_char *dst)
{
    u_char    *p;
    uint32_t   cp, lo;

    p = *pp + 1;

    switch (*p) {
    case 'b': *dst++ = '\b'; break;
    case 'f': *dst++ = '\f'; break;
    case 'n': *dst++ = '\n'; break;
    case 'r': *dst++ = '\r'; break;
    case 't': *dst++ = '\t'; break;

    case 'u':
        cp = ngx_hextoi(p + 1, 4);
        p += 4;

        if (cp >= 0xdc00 && cp <= 0xdfff) {
            /* a lone low surrogate: rejected, as cJSON does */
            return NULL;
        }

        if (cp >= 0xd800 && cp <= 0xdbff) {
            if (last - p < 7 || p[1] != '\\' || p[2] != 'u') {
                return NULL;
            }

            lo = ngx_hextoi(p + 3, 4);

            if (lo < 0xdc00 || lo > 0xdfff) {
                return NULL;
            }

            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            p += 6;
        }

        dst = ngx_ailink_parse_utf8(dst, cp);
        break;

    default:
        /* '"', '\\', '/' */
        *dst++ = *p;
    }

    *pp = p + 1;

    return dst;
}


/*
 * A string's text, unescaped and NUL-terminated, its length in *len (a
 * "\u0000" makes it longer than strlen()); at the opening quote.  In
 * *printed, the length of the text ngx_ailink_json_print() writes for it:
 * the text read, less each escape, plus what the printer writes for the
 * bytes that escape stood for ("\/" is printed "/", "\u00e9" as its two
 * UTF-8 bytes, "\u000a" as "\n").
 */

static char *
ngx_ailink_parse_string(ngx_ailink_scan_t *s, size_t *len, size_t *printed)
{
    u_char  *p, *q, *last, *dst, *out, *c;

    p = s->p + 1;

    if (ngx_ailink_scan_string(s) != NGX_OK) {
        return NULL;
    }

    last = s->p - 1;
    *len = last - p;
    *printed = *len;

    /* unescaping only shortens */
    out = ngx_ailink_json_alloc(*len + 1);
    if (out == NULL) {
        return NULL;
    }

    if (!s->escaped) {
        ngx_memcpy(out, p, *len);
        out[*len] = '\0';
        return (char *) out;
    }

    dst = out;
    s->nul = 0;

    while (p < last) {
        q = memchr(p, '\\', last - p);

        if (q == NULL) {
            dst = ngx_cpymem(dst, p, last - p);
            break;
        }

        dst = ngx_cpymem(dst, p, q - p);
        p = q;
        c = dst;

        dst = ngx_ailink_json_unescape(&p, last, dst);
        if (dst == NULL) {
            cJSON_free(out);
            return NULL;
        }

        *printed -= p - q;

        for ( /* void */ ; c < dst; c++) {
            *printed += (*c == '"' || *c == '\\') ? 2
                        : (*c >= 0x20) ? 1
                        : ngx_ailink_json_short_escape[*c] ? 2 : 6;
            s->nul |= (*c == '\0');
        }
    }

    *dst = '\0';
    *len = dst - out;

    return (char *) out;
}


/*
 * Integers of up to 15 digits, nearly every number in these bodies, are
 * exact in a double and converted here; the rest go to strtod() (nginx
 * keeps the "C" locale, so '.' is the decimal point) and keep their text
 * in the node's valuestring, which cJSON leaves unused for numbers: the
 * printer writes it back as it came, so that 1e400, 2^64 or a decimal of
 * 40 digits pass through a translation unchanged.
 */

static cJSON *
ngx_ailink_parse_number(ngx_ailink_scan_t *s)
{
    u_char   *start, *p, *text;
    cJSON    *item;
    double    d;
    size_t    len;
    int64_t   n;

    start = s->p;

    if (ngx_ailink_scan_number(s) != NGX_OK) {
        return NULL;
    }

    p = (*start == '-') ? start + 1 : start;
    n = 0;

    if (s->p - p <= 15) {
        for ( /* void */ ; p < s->p && *p >= '0' && *p <= '9'; p++) {
            n = n * 10 + (*p - '0');
        }
    }

    item = ngx_ailink_parse_node(cJSON_Number);
    if (item == NULL) {
        return NULL;
    }

    if (p == s->p && !(n == 0 && *start == '-')) {
        /* printed back the same: no text kept */
        d = (*start == '-') ? -(double) n : (double) n;

    } else {
        len = s->p - start;

        text = ngx_ailink_json_alloc(len + 1);
        if (text == NULL) {
            ngx_ailink_json_delete(item);
            return NULL;
        }

        *ngx_cpymem(text, start, len) = '\0';

        d = strtod((char *) text, NULL);
        item->valuestring = (char *) text;
    }

    /* cJSON's valueint: the double, saturated */
    item->valuedouble = d;
    item->valueint = (d >= INT_MAX) ? INT_MAX
                     : (d <= (double) INT_MIN) ? INT_MIN : (int) d;

    return item;
}


/* an array or an object; at the opening bracket */

static cJSON *
ngx_ailink_parse_container(ngx_ailink_scan_t *s)
{
    char        *key;
    u_char       close;
    cJSON       *item, *child, *tail;
    size_t       len, printed;
    ngx_uint_t   object;

    object = (*s->p == '{');
    close = object ? '}' : ']';

    if (++s->depth > NGX_AILINK_JSON_MAX_DEPTH) {
        return NULL;
    }

    item = ngx_ailink_parse_node(object ? cJSON_Object : cJSON_Array);
    if (item == NULL) {
        return NULL;
    }

    s->p++;
    ngx_ailink_scan_space(s);

    if (s->p < s->last && *s->p == close) {
        s->p++;
        s->depth--;
        return item;
    }

    tail = NULL;

    for ( ;; ) {
        key = NULL;

        if (object) {
            if (s->p == s->last || *s->p != '"') {
                goto failed;
            }

            key = ngx_ailink_parse_string(s, &len, &printed);
            if (key == NULL) {
                goto failed;
            }

            if (s->escaped && s->nul) {
                /* a key is a C string in cJSON: one with NUL would be
                 * cut, so it is refused */
                cJSON_free(key);
                goto failed;
            }

            ngx_ailink_scan_space(s);

            if (s->p == s->last || *s->p != ':') {
                cJSON_free(key);
                goto failed;
            }

            s->p++;
            ngx_ailink_scan_space(s);
        }

        child = (s->p < s->last) ? ngx_ailink_parse_value(s) : NULL;

        if (child == NULL) {
            if (key) {
                cJSON_free(key);
            }

            goto failed;
        }

        child->string = key;

        /* cJSON keeps the last child in the first one's prev */
        if (tail == NULL) {
            item->child = child;

        } else {
            tail->next = child;
            child->prev = tail;
        }

        tail = child;
        item->child->prev = tail;

        ngx_ailink_scan_space(s);

        if (s->p == s->last) {
            goto failed;
        }

        if (*s->p == close) {
            s->p++;
            s->depth--;
            return item;
        }

        if (*s->p != ',') {
            goto failed;
        }

        s->p++;
        ngx_ailink_scan_space(s);
    }

failed:

    ngx_ailink_json_delete(item);

    return NULL;
}


static cJSON *
ngx_ailink_parse_literal(ngx_ailink_scan_t *s)
{
    int     type;
    cJSON  *item;

    type = (*s->p == 't') ? cJSON_True
           : (*s->p == 'f') ? cJSON_False : cJSON_NULL;

    if (ngx_ailink_scan_literal(s) != NGX_OK) {
        return NULL;
    }

    item = ngx_ailink_parse_node(type);

    if (item && type == cJSON_True) {
        item->valueint = 1;
    }

    return item;
}


static cJSON *
ngx_ailink_parse_value(ngx_ailink_scan_t *s)
{
    char    *text;
    cJSON   *item;
    size_t   len, printed;

    switch (*s->p) {

    case '{':
    case '[':
        return ngx_ailink_parse_container(s);

    case '"':
        text = ngx_ailink_parse_string(s, &len, &printed);
        if (text == NULL) {
            return NULL;
        }

        item = ngx_ailink_parse_node(cJSON_String);
        if (item == NULL) {
            cJSON_free(text);
            return NULL;
        }

        item->valuestring = text;

        item->valuedouble = (double) len;

        if (printed <= INT_MAX) {
            item->type |= s->escaped ? NGX_AILINK_JSON_PRINTED
                          : NGX_AILINK_JSON_PRINTED|NGX_AILINK_JSON_CLEAN;
            item->valueint = (int) printed;
        }

        if (s->escaped && s->nul) {
            /* "\u0000" inside: the length says where the text ends */
            item->type |= NGX_AILINK_JSON_SIZED;
        }

        return item;

    case 't':
    case 'f':
    case 'n':
        return ngx_ailink_parse_literal(s);

    default:
        return ngx_ailink_parse_number(s);
    }
}


/*
 * One JSON value, or NULL.  A UTF-8 BOM is refused, as the scan refuses
 * it (RFC 8259: a sender must not add one): a request is refused with a
 * BOM on every route, not only on the routes that pass through.
 */

cJSON *
ngx_ailink_json_parse(ngx_str_t *text)
{
    cJSON              *json;
    ngx_ailink_scan_t   s;

    s.p = text->data;
    s.last = text->data + text->len;
    s.depth = 0;
    s.escaped = 0;
    s.nul = 0;

    ngx_ailink_scan_space(&s);

    if (s.p == s.last) {
        return NULL;
    }

    json = ngx_ailink_parse_value(&s);
    if (json == NULL) {
        return NULL;
    }

    ngx_ailink_scan_space(&s);

    if (s.p != s.last) {
        ngx_ailink_json_delete(json);
        return NULL;
    }

    return json;
}
