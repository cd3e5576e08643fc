
/*
 * Copyright (C) AILink
 *
 * Custom guardrails, from the config-as-code file:
 *
 *   guardrails:
 *     - name: project_codes            # as X-AILink-Guardrails names it
 *       pattern: "PRJ-[0-9]{4}"        # PCRE2, JIT-compiled at nginx -t
 *       action: redact                 # redact | block | log
 *       placeholder: PROJECT           # [PROJECT_1]; default: the name
 *     - name: secret_projects
 *       words: [bluebird, "night owl"] # whole words, any case
 *       action: block
 *
 *   tokens:
 *     - id: tok_x
 *       guardrails: [pii_redaction, project_codes]
 *
 * A custom guardrail runs over the same texts as pii_redaction (every
 * message's text, tool results, earlier tool-call arguments): redact
 * replaces each match by a numbered placeholder (the same value, the same
 * one), block refuses the request with 403 content_blocked naming the
 * guardrail, log only counts; the audit has the counts, never the text.
 */


#include "ngx_ailink_guard.h"


static void ngx_ailink_guard_conf_cleanup(void *data);


static void ngx_cdecl
ngx_ailink_guard_conf_error(ngx_conf_t *cf, ngx_ailink_conf_t *conf,
    const char *fmt, ...)
{
    u_char   buf[NGX_MAX_CONF_ERRSTR], *p;
    va_list  args;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, buf + sizeof(buf), fmt, args);
    va_end(args);

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "ailink_config \"%V\": %*s",
                       &conf->file, p - buf, buf);
}


static ngx_uint_t
ngx_ailink_guard_name_ok(u_char *p)
{
    if (*p == '\0') {
        return 0;
    }

    for ( /* void */ ; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')
              || *p == '_' || *p == '-'))
        {
            return 0;
        }
    }

    return 1;
}


/* words: \b(?:\Qw1\E|\Qw2\E)\b, caseless */

static u_char *
ngx_ailink_guard_words(ngx_conf_t *cf, cJSON *words)
{
    u_char  *pattern, *p, *w;
    size_t   len;
    cJSON   *item;

    len = sizeof("\\b(?:)\\b");

    cJSON_ArrayForEach(item, words) {
        if (!cJSON_IsString(item) || item->valuestring[0] == '\0') {
            return NULL;
        }

        /* \E inside a word is written \E\\E\Q */
        len += 5 * ngx_strlen(item->valuestring) + sizeof("\\Q\\E|");
    }

    pattern = ngx_pnalloc(cf->pool, len);
    if (pattern == NULL) {
        return NULL;
    }

    p = ngx_cpymem(pattern, "\\b(?:", 5);

    cJSON_ArrayForEach(item, words) {
        if (p[-1] != ':') {
            *p++ = '|';
        }

        p = ngx_cpymem(p, "\\Q", 2);

        for (w = (u_char *) item->valuestring; *w; w++) {
            if (w[0] == '\\' && w[1] == 'E') {
                p = ngx_cpymem(p, "\\E\\\\E\\Q", 8);
                w++;
                continue;
            }

            *p++ = *w;
        }

        p = ngx_cpymem(p, "\\E", 2);
    }

    p = ngx_cpymem(p, ")\\b", 3);
    *p = '\0';

    return pattern;
}


static ngx_int_t
ngx_ailink_guard_conf_one(ngx_conf_t *cf, ngx_ailink_conf_t *conf,
    ngx_ailink_guard_conf_t *gc, cJSON *item, ngx_uint_t i)
{
    int                         errcode;
    u_char                      errstr[128], *pattern, *p;
    cJSON                      *name, *pat, *words, *action, *label, *cs, *k;
    uint32_t                    options;
    PCRE2_SIZE                  erroff;
    ngx_str_t                   tmp;
    ngx_uint_t                  j, mask;
    ngx_pool_cleanup_t         *cln;
    ngx_ailink_guard_custom_t  *c;

    static const char  *known[] = { "name", "pattern", "words", "action",
                                    "placeholder", "case_sensitive", NULL };

    if (!cJSON_IsObject(item)) {
        ngx_ailink_guard_conf_error(cf, conf, "guardrails[%ui]: must be a "
                                    "mapping", i);
        return NGX_ERROR;
    }

    cJSON_ArrayForEach(k, item) {
        for (j = 0; known[j]; j++) {
            if (ngx_strcmp(k->string, known[j]) == 0) {
                break;
            }
        }

        if (known[j] == NULL) {
            ngx_ailink_guard_conf_error(cf, conf, "guardrails[%ui]: unknown "
                                        "key \"%s\" (name, pattern, words, "
                                        "action, placeholder, "
                                        "case_sensitive)", i, k->string);
            return NGX_ERROR;
        }
    }

    name = ngx_ailink_json_get(item, "name");

    if (!cJSON_IsString(name)
        || !ngx_ailink_guard_name_ok((u_char *) name->valuestring))
    {
        ngx_ailink_guard_conf_error(cf, conf, "guardrails[%ui].name: must be "
                                    "lowercase letters, digits, \"_\" and "
                                    "\"-\"", i);
        return NGX_ERROR;
    }

    tmp.data = (u_char *) name->valuestring;
    tmp.len = ngx_strlen(name->valuestring);
    mask = 0;

    if (ngx_ailink_guard_names(gc, &tmp, &mask, &tmp) == NGX_OK) {
        ngx_ailink_guard_conf_error(cf, conf, "guardrails[%ui].name: \"%s\" "
                                    "is taken", i, name->valuestring);
        return NGX_ERROR;
    }

    if (gc->ncustoms == NGX_AILINK_GUARD_CUSTOM_MAX) {
        ngx_ailink_guard_conf_error(cf, conf, "guardrails[%ui]: at most %d "
                                    "custom guardrails", i,
                                    NGX_AILINK_GUARD_CUSTOM_MAX);
        return NGX_ERROR;
    }

    c = &gc->customs[gc->ncustoms];

    c->name.len = ngx_strlen(name->valuestring);
    c->name.data = ngx_pstrdup(cf->pool, &tmp);
    if (c->name.data == NULL) {
        return NGX_ERROR;
    }

    /* the action */
    action = ngx_ailink_json_get(item, "action");

    if (action == NULL
        || (cJSON_IsString(action)
            && ngx_strcmp(action->valuestring, "redact") == 0))
    {
        c->action = NGX_AILINK_GUARD_ACT_REDACT;

    } else if (cJSON_IsString(action)
               && ngx_strcmp(action->valuestring, "block") == 0)
    {
        c->action = NGX_AILINK_GUARD_ACT_BLOCK;

    } else if (cJSON_IsString(action)
               && ngx_strcmp(action->valuestring, "log") == 0)
    {
        c->action = NGX_AILINK_GUARD_ACT_LOG;

    } else {
        ngx_ailink_guard_conf_error(cf, conf, "guardrails[%ui] \"%V\": action "
                                    "must be redact, block or log", i,
                                    &c->name);
        return NGX_ERROR;
    }

    /* the placeholder's label: PROJECT, or the name in capitals */
    label = ngx_ailink_json_get(item, "placeholder");

    if (label) {
        if (!cJSON_IsString(label) || label->valuestring[0] == '\0') {
            goto bad_label;
        }

        for (p = (u_char *) label->valuestring; *p; p++) {
            if (!((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')
                  || *p == '_'))
            {
                goto bad_label;
            }
        }

        tmp.data = (u_char *) label->valuestring;
        tmp.len = ngx_strlen(label->valuestring);

    } else {
        tmp = c->name;
    }

    c->label.len = tmp.len;
    c->label.data = ngx_pnalloc(cf->pool, tmp.len);
    if (c->label.data == NULL) {
        return NGX_ERROR;
    }

    for (j = 0; j < tmp.len; j++) {
        c->label.data[j] = (tmp.data[j] == '-') ? '_'
                                                : ngx_toupper(tmp.data[j]);
    }

    /* the pattern, or the words */
    pat = ngx_ailink_json_get(item, "pattern");
    words = ngx_ailink_json_get(item, "words");
    cs = ngx_ailink_json_get(item, "case_sensitive");

    if ((pat == NULL) == (words == NULL)) {
        ngx_ailink_guard_conf_error(cf, conf, "guardrails[%ui] \"%V\": needs "
                                    "a pattern or words (one of them)", i,
                                    &c->name);
        return NGX_ERROR;
    }

    if (cs && !cJSON_IsBool(cs)) {
        ngx_ailink_guard_conf_error(cf, conf, "guardrails[%ui] \"%V\": "
                                    "case_sensitive must be true or false",
                                    i, &c->name);
        return NGX_ERROR;
    }

    options = PCRE2_UTF | PCRE2_NO_UTF_CHECK;

    if (pat) {
        if (!cJSON_IsString(pat) || pat->valuestring[0] == '\0') {
            ngx_ailink_guard_conf_error(cf, conf, "guardrails[%ui] \"%V\": "
                                        "pattern must be a non-empty string",
                                        i, &c->name);
            return NGX_ERROR;
        }

        pattern = (u_char *) pat->valuestring;

        if (cs && cJSON_IsFalse(cs)) {
            options |= PCRE2_CASELESS;
        }

    } else {
        pattern = (cJSON_IsArray(words) && cJSON_GetArraySize(words))
                  ? ngx_ailink_guard_words(cf, words) : NULL;

        if (pattern == NULL) {
            ngx_ailink_guard_conf_error(cf, conf, "guardrails[%ui] \"%V\": "
                                        "words must be a list of non-empty "
                                        "strings", i, &c->name);
            return NGX_ERROR;
        }

        if (!(cs && cJSON_IsTrue(cs))) {
            options |= PCRE2_CASELESS;
        }
    }

    /* checked as UTF-8 here, once: texts are valid JSON strings */
    c->code = pcre2_compile((PCRE2_SPTR) pattern, PCRE2_ZERO_TERMINATED,
                            options & ~PCRE2_NO_UTF_CHECK, &errcode, &erroff,
                            NULL);

    if (c->code == NULL) {
        pcre2_get_error_message(errcode, errstr, sizeof(errstr));
        ngx_ailink_guard_conf_error(cf, conf, "guardrails[%ui] \"%V\": bad "
                                    "pattern at offset %uz: %s", i, &c->name,
                                    (size_t) erroff, errstr);
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        pcre2_code_free(c->code);
        return NGX_ERROR;
    }

    cln->handler = (ngx_pool_cleanup_pt) pcre2_code_free;
    cln->data = c->code;

    /* partial matches find what a stream's next event may complete */
    (void) pcre2_jit_compile(c->code, PCRE2_JIT_COMPLETE
                                      | PCRE2_JIT_PARTIAL_HARD);

    gc->ncustoms++;

    return NGX_OK;

bad_label:

    ngx_ailink_guard_conf_error(cf, conf, "guardrails[%ui] \"%V\": "
                                "placeholder must be capitals, digits and "
                                "\"_\"", i, &c->name);
    return NGX_ERROR;
}


ngx_int_t
ngx_ailink_guard_conf_load(ngx_conf_t *cf, ngx_ailink_conf_t *conf,
    cJSON *root)
{
    cJSON                    *list, *item, *own, *id, *nm;
    ngx_str_t                 name, bad;
    ngx_uint_t                i, j, mask;
    ngx_pool_cleanup_t       *cln;
    ngx_ailink_token_t       *tok;
    ngx_ailink_guard_conf_t  *gc;

    gc = ngx_pcalloc(cf->pool, sizeof(ngx_ailink_guard_conf_t));
    if (gc == NULL) {
        return NGX_ERROR;
    }

    conf->guard = gc;

    gc->customs = ngx_pcalloc(cf->pool, NGX_AILINK_GUARD_CUSTOM_MAX
                                        * sizeof(ngx_ailink_guard_custom_t));
    if (gc->customs == NULL) {
        return NGX_ERROR;
    }

    list = ngx_ailink_json_get(root, "guardrails");

    if (list && !cJSON_IsArray(list)) {
        ngx_ailink_guard_conf_error(cf, conf, "guardrails: must be a list");
        return NGX_ERROR;
    }

    i = 0;

    cJSON_ArrayForEach(item, list) {
        if (ngx_ailink_guard_conf_one(cf, conf, gc, item, i++) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (gc->ncustoms) {
        gc->match_data = pcre2_match_data_create(1, NULL);
        if (gc->match_data == NULL) {
            return NGX_ERROR;
        }

        cln = ngx_pool_cleanup_add(cf->pool, 0);
        if (cln == NULL) {
            pcre2_match_data_free(gc->match_data);
            return NGX_ERROR;
        }

        cln->handler = ngx_ailink_guard_conf_cleanup;
        cln->data = gc->match_data;
    }

    /* the tokens' own "guardrails: [...]" */
    list = ngx_ailink_json_get(root, "tokens");
    i = 0;

    cJSON_ArrayForEach(item, list) {
        own = ngx_ailink_json_get(item, "guardrails");
        id = ngx_ailink_json_get(item, "id");
        i++;

        if (own == NULL || !cJSON_IsString(id)) {
            continue;
        }

        if (!cJSON_IsArray(own)) {
            ngx_ailink_guard_conf_error(cf, conf, "tokens[%ui].guardrails: "
                                        "must be a list of guardrail names",
                                        i - 1);
            return NGX_ERROR;
        }

        mask = 0;

        cJSON_ArrayForEach(nm, own) {
            if (!cJSON_IsString(nm)) {
                ngx_ailink_guard_conf_error(cf, conf, "tokens[%ui]."
                                            "guardrails: must be a list of "
                                            "guardrail names", i - 1);
                return NGX_ERROR;
            }

            name.data = (u_char *) nm->valuestring;
            name.len = ngx_strlen(nm->valuestring);

            if (name.len == 0
                || ngx_ailink_guard_names(gc, &name, &mask, &bad) != NGX_OK)
            {
                ngx_ailink_guard_conf_error(cf, conf, "tokens[%ui]."
                                            "guardrails: unknown guardrail "
                                            "\"%V\"", i - 1, &name);
                return NGX_ERROR;
            }
        }

        name.data = (u_char *) id->valuestring;
        name.len = ngx_strlen(id->valuestring);
        tok = conf->tokens.elts;

        for (j = 0; j < conf->tokens.nelts; j++) {
            if (tok[j].id.len == name.len
                && ngx_strncmp(tok[j].id.data, name.data, name.len) == 0)
            {
                tok[j].guardrails = mask;
            }
        }
    }

    return NGX_OK;
}


static void
ngx_ailink_guard_conf_cleanup(void *data)
{
    pcre2_match_data_free(data);
}


/*
 * a token's "guardrails" for the export: the built-in ones, then the
 * custom ones in the order the file declares them
 */

cJSON *
ngx_ailink_guard_conf_token_own(ngx_ailink_conf_t *conf,
    ngx_ailink_token_t *tok)
{
    cJSON                    *list;
    ngx_uint_t                i;
    ngx_ailink_guard_conf_t  *gc;

    if (tok->guardrails == 0) {
        return NULL;
    }

    list = cJSON_CreateArray();

    if (tok->guardrails & NGX_AILINK_GUARD_PII) {
        cJSON_AddItemToArray(list, cJSON_CreateString("pii_redaction"));
    }

    if (tok->guardrails & NGX_AILINK_GUARD_INJECTION) {
        cJSON_AddItemToArray(list, cJSON_CreateString("prompt_injection"));
    }

    gc = conf->guard;

    for (i = 0; gc && i < gc->ncustoms; i++) {
        if (tok->guardrails
            & ((ngx_uint_t) 1 << (NGX_AILINK_GUARD_CUSTOM_SHIFT + i)))
        {
            cJSON_AddItemToArray(list, ngx_ailink_json_string(
                                           &gc->customs[i].name));
        }
    }

    return list;
}


/* "pii_redaction, project_codes" → a mask; the first unknown name */

ngx_int_t
ngx_ailink_guard_names(ngx_ailink_guard_conf_t *gc, ngx_str_t *list,
    ngx_uint_t *mask, ngx_str_t *bad)
{
    u_char      *p, *last, *start;
    ngx_str_t    name;
    ngx_uint_t   i;

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

        if (ngx_ailink_guard_parse_names(&name, mask, bad) == NGX_OK) {
            continue;
        }

        for (i = 0; gc && i < gc->ncustoms; i++) {
            if (gc->customs[i].name.len == name.len
                && ngx_strncasecmp(gc->customs[i].name.data, name.data,
                                   name.len) == 0)
            {
                *mask |= (ngx_uint_t) 1 << (NGX_AILINK_GUARD_CUSTOM_SHIFT + i);
                break;
            }
        }

        if (gc == NULL || i == gc->ncustoms) {
            *bad = name;
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/* the placeholder of a custom value: the one it already has, or the next */

static ngx_int_t
ngx_ailink_guard_custom_placeholder(ngx_ailink_guard_req_t *gr,
    ngx_ailink_guard_custom_t *c, u_char *p, size_t len, ngx_str_t *ph)
{
    u_char        *d;
    ngx_uint_t     i, n;
    ngx_keyval_t  *kv;
    ngx_pool_t    *pool;

    pool = gr->session.pool;

    if (gr->custom_values == NULL) {
        gr->custom_values = ngx_array_create(pool, 4, sizeof(ngx_keyval_t));
        if (gr->custom_values == NULL) {
            return NGX_ERROR;
        }
    }

    kv = gr->custom_values->elts;
    n = 0;

    for (i = 0; i < gr->custom_values->nelts; i++) {
        if (kv[i].key.len == len && ngx_memcmp(kv[i].key.data, p, len) == 0
            && kv[i].value.len > c->label.len + 1
            && ngx_memcmp(kv[i].value.data + 1, c->label.data, c->label.len)
               == 0
            && kv[i].value.data[c->label.len + 1] == '_')
        {
            *ph = kv[i].value;
            return NGX_OK;
        }

        if (kv[i].value.len > c->label.len + 1
            && ngx_memcmp(kv[i].value.data + 1, c->label.data, c->label.len)
               == 0
            && kv[i].value.data[c->label.len + 1] == '_')
        {
            n++;
        }
    }

    kv = ngx_array_push(gr->custom_values);
    if (kv == NULL) {
        return NGX_ERROR;
    }

    d = ngx_pnalloc(pool, len + c->label.len + sizeof("[_]") - 1
                          + NGX_INT_T_LEN);
    if (d == NULL) {
        return NGX_ERROR;
    }

    kv->key.data = d;
    kv->key.len = len;
    d = ngx_cpymem(d, p, len);

    kv->value.data = d;
    kv->value.len = ngx_sprintf(d, "[%V_%ui]", &c->label, n + 1) - d;

    *ph = kv->value;

    return NGX_OK;
}


/*
 * One text through the custom guardrails the request has: out is the
 * text itself when nothing was replaced.  A block is remembered; the
 * caller refuses the request.
 */

ngx_int_t
ngx_ailink_guard_custom_text(ngx_ailink_guard_req_t *gr, ngx_str_t *text,
    ngx_str_t *out)
{
    int                         rc;
    u_char                     *p;
    size_t                      offset, start, end;
    ngx_str_t                   cur, ph;
    ngx_uint_t                  i, changed, bit, shadow, *hits;
    PCRE2_SIZE                 *ov;
    ngx_ailink_guard_conf_t    *gc;
    ngx_ailink_guard_custom_t  *c;

    *out = *text;
    gc = gr->gc;

    if (gc == NULL || gc->ncustoms == 0 || text->len == 0) {
        return NGX_OK;
    }

    cur = *text;
    hits = gr->session.in_response ? gr->response_custom_hits
                                   : gr->custom_hits;

    for (i = 0; i < gc->ncustoms; i++) {
        bit = (ngx_uint_t) 1 << (NGX_AILINK_GUARD_CUSTOM_SHIFT + i);

        if (!(gr->guardrails & bit)) {
            continue;
        }

        /* a shadow policy's: counted, what it would do recorded */
        shadow = gr->shadow & bit;

        c = &gc->customs[i];
        changed = 0;
        offset = 0;

        for ( ;; ) {
            if (offset > cur.len) {
                break;
            }

            rc = pcre2_match(c->code, (PCRE2_SPTR) cur.data, cur.len, offset,
                             PCRE2_NO_UTF_CHECK, gc->match_data, NULL);

            if (rc == PCRE2_ERROR_NOMATCH) {
                break;
            }

            if (rc < 0) {
                /* a match limit: an error, never taken as clean */
                return NGX_ERROR;
            }

            ov = pcre2_get_ovector_pointer(gc->match_data);
            start = ov[0];
            end = ov[1];

            if (end <= start) {
                offset = start + 1;
                continue;
            }

            hits[i]++;

            if (shadow) {
                if (c->action == NGX_AILINK_GUARD_ACT_BLOCK) {
                    gr->would_block |= bit;
                }

                offset = end;
                continue;
            }

            if (c->action == NGX_AILINK_GUARD_ACT_BLOCK) {
                if (gr->custom_blocked < 0) {
                    gr->custom_blocked = i;
                }

                break;
            }

            if (c->action == NGX_AILINK_GUARD_ACT_LOG) {
                offset = end;
                continue;
            }

            if (ngx_ailink_guard_custom_placeholder(gr, c, cur.data + start,
                                                    end - start, &ph)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            p = ngx_pnalloc(gr->session.pool,
                            cur.len - (end - start) + ph.len + 1);
            if (p == NULL) {
                return NGX_ERROR;
            }

            ngx_memcpy(p, cur.data, start);
            ngx_memcpy(p + start, ph.data, ph.len);
            ngx_memcpy(p + start + ph.len, cur.data + end, cur.len - end);

            cur.len = cur.len - (end - start) + ph.len;
            p[cur.len] = '\0';
            cur.data = p;
            offset = start + ph.len;
            changed = 1;
        }

        if (changed) {
            *out = cur;
        }
    }

    return NGX_OK;
}


/* the custom guardrails a request has, as mask bits */

ngx_uint_t
ngx_ailink_guard_customs(ngx_ailink_guard_req_t *gr)
{
    if (gr->gc == NULL || gr->gc->ncustoms == 0) {
        return 0;
    }

    return gr->guardrails & ~(ngx_uint_t) (NGX_AILINK_GUARD_PII
                                           | NGX_AILINK_GUARD_INJECTION);
}


/*
 * A stream's text (p, len), of which what is before *h is to go now: *h
 * moves back to the start of a custom match that reaches past it, or of
 * a partial match at the end (PCRE2_PARTIAL_HARD: the next event may
 * complete it).
 */

ngx_int_t
ngx_ailink_guard_custom_hold(ngx_ailink_guard_req_t *gr, u_char *p,
    size_t len, size_t *h)
{
    int                       rc;
    size_t                    offset, start, end;
    ngx_uint_t                i;
    PCRE2_SIZE               *ov;
    ngx_ailink_guard_conf_t  *gc;

    if (!ngx_ailink_guard_customs(gr) || len == 0) {
        return NGX_OK;
    }

    gc = gr->gc;

    for (i = 0; i < gc->ncustoms; i++) {
        if (!(gr->guardrails
              & ((ngx_uint_t) 1 << (NGX_AILINK_GUARD_CUSTOM_SHIFT + i))))
        {
            continue;
        }

        offset = 0;

        while (offset <= len) {
            rc = pcre2_match(gc->customs[i].code, (PCRE2_SPTR) p, len,
                             offset, PCRE2_NO_UTF_CHECK | PCRE2_PARTIAL_HARD,
                             gc->match_data, NULL);

            if (rc == PCRE2_ERROR_NOMATCH) {
                break;
            }

            ov = pcre2_get_ovector_pointer(gc->match_data);

            if (rc == PCRE2_ERROR_PARTIAL) {
                if (ov[0] < *h) {
                    *h = ov[0];
                }

                break;
            }

            if (rc < 0) {
                return NGX_ERROR;
            }

            start = ov[0];
            end = ov[1];

            if (start >= *h) {
                break;
            }

            if (end > *h) {
                *h = start;
                break;
            }

            offset = (end > start) ? end : start + 1;
        }
    }

    return NGX_OK;
}


/* the audit: "custom":{"name":hits,...} */

size_t
ngx_ailink_guard_custom_audit_len(ngx_ailink_guard_req_t *gr)
{
    size_t      len;
    ngx_uint_t  i;

    if (gr->gc == NULL) {
        return 0;
    }

    len = sizeof(",\"custom\":{},\"response_custom\":{}");

    for (i = 0; i < gr->gc->ncustoms; i++) {
        /* in requested, shadow, would_block and two counts */
        len += 5 * (gr->gc->customs[i].name.len + 4) + 2 * NGX_INT_T_LEN;
    }

    return len;
}


/*
 * what: NGX_AILINK_GUARD_AUDIT_NAMES, the names of the guardrails in mask
 * (for "requested", "shadow", "would_block"); else "custom" or
 * "response_custom" and their counts
 */

u_char *
ngx_ailink_guard_custom_audit(u_char *p, ngx_ailink_guard_req_t *gr,
    ngx_uint_t what, ngx_uint_t mask)
{
    u_char      *start;
    ngx_uint_t   i, bit, *hits;

    if (gr->gc == NULL) {
        return p;
    }

    hits = NULL;

    if (what != NGX_AILINK_GUARD_AUDIT_NAMES) {
        if (!(mask >> NGX_AILINK_GUARD_CUSTOM_SHIFT)) {
            return p;
        }

        if (what == NGX_AILINK_GUARD_AUDIT_RESPONSE) {
            hits = gr->response_custom_hits;
            p = ngx_cpymem(p, ",\"response_custom\":{",
                           sizeof(",\"response_custom\":{") - 1);

        } else {
            hits = gr->custom_hits;
            p = ngx_cpymem(p, ",\"custom\":{", sizeof(",\"custom\":{") - 1);
        }
    }

    start = p;

    for (i = 0; i < gr->gc->ncustoms; i++) {
        bit = (ngx_uint_t) 1 << (NGX_AILINK_GUARD_CUSTOM_SHIFT + i);

        if (!(mask & bit)) {
            continue;
        }

        if (what == NGX_AILINK_GUARD_AUDIT_NAMES) {
            if (p[-1] != '[') {
                *p++ = ',';
            }

            p = ngx_sprintf(p, "\"%V\"", &gr->gc->customs[i].name);
            continue;
        }

        if (p != start) {
            *p++ = ',';
        }

        p = ngx_sprintf(p, "\"%V\":%ui", &gr->gc->customs[i].name,
                        hits ? hits[i] : 0);
    }

    if (what != NGX_AILINK_GUARD_AUDIT_NAMES) {
        *p++ = '}';
    }

    return p;
}
