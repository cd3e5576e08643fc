
/*
 * Copyright (C) AILink
 *
 * Reads the config-as-code YAML file into a cJSON tree at configuration
 * time (in the master process, never on the request path).  Plain scalars
 * are typed as YAML 1.2's core schema types them; quoted scalars are always
 * strings.  "${NAME}" and "${NAME:-default}" inside scalars are replaced
 * with the environment, so one file serves several deployments.
 */


#include "ngx_ailink_common.h"
#include <yaml.h>


#define NGX_AILINK_YAML_MAX_DEPTH  32


typedef struct {
    ngx_conf_t     *cf;
    ngx_str_t      *file;
    yaml_parser_t   parser;
    ngx_uint_t      no_env;     /* text from a client: no ${VAR} */
} ngx_ailink_yaml_t;


static cJSON *ngx_ailink_yaml_node(ngx_ailink_yaml_t *y, yaml_event_t *ev,
    ngx_uint_t depth);


static void
ngx_ailink_yaml_error(ngx_ailink_yaml_t *y, size_t line, const char *what)
{
    ngx_conf_log_error(NGX_LOG_EMERG, y->cf, 0,
                       "ailink_config \"%V\": %s at line %uz",
                       y->file, what, line + 1);
}


typedef struct {
    char      *data;
    size_t     len;
    size_t     size;
} ngx_ailink_yaml_buf_t;


static ngx_int_t
ngx_ailink_yaml_append(ngx_ailink_yaml_buf_t *b, const char *s, size_t n)
{
    char    *p;
    size_t   size;

    if (b->len + n + 1 > b->size) {
        size = ngx_max(b->size * 2, b->len + n + 1);

        p = realloc(b->data, size);
        if (p == NULL) {
            return NGX_ERROR;
        }

        b->data = p;
        b->size = size;
    }

    ngx_memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';

    return NGX_OK;
}


/* returns a malloc()ed, NUL-terminated string, as cJSON wants */

static char *
ngx_ailink_yaml_interpolate(ngx_ailink_yaml_t *y, const char *in, size_t line)
{
    char                   *name, *def, *val;
    const char             *p, *end;
    ngx_int_t               rc;
    ngx_ailink_yaml_buf_t   b;

    b.data = NULL;
    b.len = 0;
    b.size = 0;

    if (ngx_ailink_yaml_append(&b, "", 0) != NGX_OK) {
        return NULL;
    }

    for (p = in; *p; /* void */) {

        if (p[0] != '$' || p[1] != '{') {
            end = strstr(p + 1, "${");
            if (end == NULL) {
                end = p + ngx_strlen(p);
            }

            if (ngx_ailink_yaml_append(&b, p, end - p) != NGX_OK) {
                goto failed;
            }

            p = end;
            continue;
        }

        end = strchr(p + 2, '}');
        if (end == NULL) {
            ngx_ailink_yaml_error(y, line, "unterminated \"${\"");
            goto failed;
        }

        name = strndup(p + 2, end - p - 2);
        if (name == NULL) {
            goto failed;
        }

        def = strstr(name, ":-");
        if (def) {
            *def = '\0';
            def += 2;
        }

        val = getenv(name);
        if (val == NULL || *val == '\0') {
            val = def;
        }

        if (val == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, y->cf, 0,
                               "ailink_config \"%V\": environment variable "
                               "\"%s\" is not set at line %uz",
                               y->file, name, line + 1);
            free(name);
            goto failed;
        }

        rc = ngx_ailink_yaml_append(&b, val, ngx_strlen(val));
        free(name);

        if (rc != NGX_OK) {
            goto failed;
        }

        p = end + 1;
    }

    return b.data;

failed:

    free(b.data);
    return NULL;
}


static cJSON *
ngx_ailink_yaml_scalar(ngx_ailink_yaml_t *y, yaml_event_t *ev)
{
    char        *s, *end;
    cJSON       *item;
    double       d;
    const char  *v;

    v = (const char *) ev->data.scalar.value;

    if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {

        if (strcmp(v, "true") == 0 || strcmp(v, "True") == 0) {
            return cJSON_CreateTrue();
        }

        if (strcmp(v, "false") == 0 || strcmp(v, "False") == 0) {
            return cJSON_CreateFalse();
        }

        if (*v == '\0' || strcmp(v, "null") == 0 || strcmp(v, "~") == 0) {
            return cJSON_CreateNull();
        }

        if (strchr("+-.0123456789", *v)) {
            d = strtod(v, &end);
            if (*end == '\0') {
                return cJSON_CreateNumber(d);
            }
        }
    }

    s = y->no_env ? strdup(v)
                  : ngx_ailink_yaml_interpolate(y, v, ev->start_mark.line);
    if (s == NULL) {
        return NULL;
    }

    item = cJSON_CreateString(s);
    free(s);

    return item;
}


static ngx_int_t
ngx_ailink_yaml_next(ngx_ailink_yaml_t *y, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&y->parser, ev)) {
        ngx_ailink_yaml_error(y, y->parser.problem_mark.line,
                              y->parser.problem ? y->parser.problem
                                                : "syntax error");
        return NGX_ERROR;
    }

    return NGX_OK;
}


static cJSON *
ngx_ailink_yaml_collection(ngx_ailink_yaml_t *y, ngx_uint_t mapping,
    ngx_uint_t depth)
{
    cJSON         *coll, *key, *val;
    yaml_event_t   ev;

    if (depth > NGX_AILINK_YAML_MAX_DEPTH) {
        ngx_ailink_yaml_error(y, y->parser.mark.line, "nesting too deep");
        return NULL;
    }

    coll = mapping ? cJSON_CreateObject() : cJSON_CreateArray();
    if (coll == NULL) {
        return NULL;
    }

    for ( ;; ) {
        if (ngx_ailink_yaml_next(y, &ev) != NGX_OK) {
            goto failed;
        }

        if (ev.type == YAML_MAPPING_END_EVENT
            || ev.type == YAML_SEQUENCE_END_EVENT)
        {
            yaml_event_delete(&ev);
            return coll;
        }

        if (!mapping) {
            val = ngx_ailink_yaml_node(y, &ev, depth + 1);
            yaml_event_delete(&ev);

            if (val == NULL) {
                goto failed;
            }

            cJSON_AddItemToArray(coll, val);
            continue;
        }

        if (ev.type != YAML_SCALAR_EVENT) {
            ngx_ailink_yaml_error(y, ev.start_mark.line,
                                  "mapping keys must be scalars");
            yaml_event_delete(&ev);
            goto failed;
        }

        key = cJSON_CreateString((const char *) ev.data.scalar.value);
        yaml_event_delete(&ev);

        if (key == NULL || ngx_ailink_yaml_next(y, &ev) != NGX_OK) {
            cJSON_Delete(key);
            goto failed;
        }

        if (cJSON_GetObjectItemCaseSensitive(coll, key->valuestring)) {
            ngx_ailink_yaml_error(y, ev.start_mark.line, "duplicate key");
            yaml_event_delete(&ev);
            cJSON_Delete(key);
            goto failed;
        }

        val = ngx_ailink_yaml_node(y, &ev, depth + 1);
        yaml_event_delete(&ev);

        if (val == NULL) {
            cJSON_Delete(key);
            goto failed;
        }

        cJSON_AddItemToObject(coll, key->valuestring, val);
        cJSON_Delete(key);
    }

failed:

    cJSON_Delete(coll);
    return NULL;
}


static cJSON *
ngx_ailink_yaml_node(ngx_ailink_yaml_t *y, yaml_event_t *ev, ngx_uint_t depth)
{
    switch (ev->type) {

    case YAML_SCALAR_EVENT:
        return ngx_ailink_yaml_scalar(y, ev);

    case YAML_SEQUENCE_START_EVENT:
        return ngx_ailink_yaml_collection(y, 0, depth);

    case YAML_MAPPING_START_EVENT:
        return ngx_ailink_yaml_collection(y, 1, depth);

    case YAML_ALIAS_EVENT:
        ngx_ailink_yaml_error(y, ev->start_mark.line,
                              "aliases are not supported");
        return NULL;

    default:
        ngx_ailink_yaml_error(y, ev->start_mark.line, "unexpected event");
        return NULL;
    }
}


/* STREAM-START, DOCUMENT-START, the root node */

static cJSON *
ngx_ailink_yaml_root(ngx_ailink_yaml_t *y)
{
    cJSON         *root;
    yaml_event_t   ev;

    root = NULL;

    for ( ;; ) {
        if (ngx_ailink_yaml_next(y, &ev) != NGX_OK) {
            break;
        }

        if (ev.type == YAML_STREAM_START_EVENT
            || ev.type == YAML_DOCUMENT_START_EVENT)
        {
            yaml_event_delete(&ev);
            continue;
        }

        if (ev.type == YAML_STREAM_END_EVENT) {
            /* an empty file is an empty configuration */
            yaml_event_delete(&ev);
            root = cJSON_CreateObject();
            break;
        }

        root = ngx_ailink_yaml_node(y, &ev, 0);
        yaml_event_delete(&ev);
        break;
    }

    return root;
}


cJSON *
ngx_ailink_yaml_load(ngx_conf_t *cf, ngx_str_t *file)
{
    FILE               *fp;
    cJSON              *root;
    ngx_fd_t            fd;
    ngx_file_info_t     fi;
    ngx_ailink_yaml_t   y;

    /* not blocking: a FIFO would hold up nginx -t, a reload, the master */

    fd = ngx_open_file(file->data, NGX_FILE_RDONLY|NGX_FILE_NONBLOCK|O_NOCTTY,
                       NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "ailink_config: cannot open \"%V\"", file);
        return NULL;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR || !ngx_is_file(&fi)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ailink_config \"%V\" is not a regular file", file);
        ngx_close_file(fd);
        return NULL;
    }

    fp = fdopen(fd, "r");
    if (fp == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "ailink_config: cannot open \"%V\"", file);
        ngx_close_file(fd);
        return NULL;
    }

    y.cf = cf;
    y.file = file;
    y.no_env = 0;

    if (!yaml_parser_initialize(&y.parser)) {
        fclose(fp);
        return NULL;
    }

    yaml_parser_set_input_file(&y.parser, fp);

    root = ngx_ailink_yaml_root(&y);

    yaml_parser_delete(&y.parser);
    fclose(fp);

    if (root && !cJSON_IsObject(root)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ailink_config \"%V\": the top level must be "
                           "a mapping", file);
        cJSON_Delete(root);
        return NULL;
    }

    return root;
}


/*
 * YAML text from a client (the admin API's config import): parsed like
 * the file, but "${VAR}" is left as it is, never the gateway's
 * environment.  Errors go to cf's log, naming "name".
 */

cJSON *
ngx_ailink_yaml_parse(ngx_conf_t *cf, ngx_str_t *name, ngx_str_t *text)
{
    cJSON              *root;
    ngx_ailink_yaml_t   y;

    y.cf = cf;
    y.file = name;
    y.no_env = 1;

    if (!yaml_parser_initialize(&y.parser)) {
        return NULL;
    }

    yaml_parser_set_input_string(&y.parser, text->data, text->len);

    root = ngx_ailink_yaml_root(&y);

    yaml_parser_delete(&y.parser);

    if (root && !cJSON_IsObject(root)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ailink_config \"%V\": the top level must be "
                           "a mapping", name);
        cJSON_Delete(root);
        return NULL;
    }

    return root;
}
