
/*
 * Copyright (C) AILink
 *
 * The service registry: {name, base_url, service_type, credential_id},
 * create, list, get, delete.  "/v1/proxy/services/<name>/<rest>" forwards
 * below the base URL with the service's credential (the translate
 * module, through ngx_ailink_service_find).
 */


#include "ngx_ailink_admin.h"


static cJSON *
ngx_ailink_admin_find_name(cJSON *list, ngx_str_t *name)
{
    cJSON  *item, *v;

    cJSON_ArrayForEach(item, list) {
        v = ngx_ailink_json_get(item, "name");

        if (cJSON_IsString(v) && ngx_strlen(v->valuestring) == name->len
            && ngx_strncmp(v->valuestring, name->data, name->len) == 0)
        {
            return item;
        }
    }

    return NULL;
}


ngx_int_t
ngx_ailink_admin_services(ngx_ailink_admin_req_t *ar)
{
    u_char              *p;
    cJSON               *doc, *list, *rec, *v, *out, *item;
    ngx_int_t            rc;
    ngx_str_t            text, name;
    ngx_uint_t           gen, method;
    ngx_ailink_store_t  *st;

    static const char  *fields[] = { "name", "base_url", "service_type",
                                     "credential_id", NULL };

    method = ar->request->method;
    st = ar->amcf->store;

    if (ar->sub.len) {
        return ngx_ailink_admin_fail(ar, NGX_HTTP_NOT_FOUND, "not_found",
                                     "no such admin resource");
    }

    if (method == NGX_HTTP_GET) {
        if (st->ops->read(st, ar->request->pool, &text, &gen) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        doc = cJSON_Parse(text.len ? (char *) text.data : "{}");
        if (doc == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        list = ngx_ailink_json_get(doc, "services");

        if (ar->id.len) {
            rec = ngx_ailink_admin_find_name(list, &ar->id);
            out = rec ? cJSON_Duplicate(rec, 1) : NULL;
            cJSON_Delete(doc);

            if (out == NULL) {
                return ngx_ailink_admin_fail(ar, NGX_HTTP_NOT_FOUND,
                                             "not_found", "no service \"%V\"",
                                             &ar->id);
            }

            return ngx_ailink_admin_reply(ar, NGX_HTTP_OK, out);
        }

        out = cJSON_CreateObject();
        cJSON_AddItemToObject(out, "data",
                              list ? cJSON_Duplicate(list, 1)
                                   : cJSON_CreateArray());
        cJSON_Delete(doc);

        return ngx_ailink_admin_reply(ar, NGX_HTTP_OK, out);
    }

    if (method == NGX_HTTP_POST && ar->id.len == 0) {
        if (ar->json == NULL) {
            return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request",
                                         "a JSON body is required");
        }

        cJSON_ArrayForEach(v, ar->json) {
            const char  **f;

            for (f = fields; *f; f++) {
                if (ngx_strcmp(v->string, *f) == 0) {
                    break;
                }
            }

            if (*f == NULL) {
                return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                             "invalid_request",
                                             "unknown field \"%s\"",
                                             v->string);
            }

            if (!cJSON_IsString(v) && !cJSON_IsNull(v)) {
                return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                             "invalid_request",
                                             "\"%s\" must be a string",
                                             v->string);
            }
        }

        v = ngx_ailink_json_get(ar->json, "name");
        if (!cJSON_IsString(v) || v->valuestring[0] == '\0'
            || ngx_strlen(v->valuestring) > 64)
        {
            return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request",
                                         "\"name\" is required (at most 64 "
                                         "characters)");
        }

        for (p = (u_char *) v->valuestring; *p; p++) {
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                  || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'
                  || *p == '.')
                || (p == (u_char *) v->valuestring && *p == '.'))
            {
                return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                             "invalid_request",
                                             "\"name\" takes letters, "
                                             "digits, '-', '_' and '.'");
            }
        }

        name.data = (u_char *) v->valuestring;
        name.len = ngx_strlen(v->valuestring);

        if (!cJSON_IsString(ngx_ailink_json_get(ar->json, "base_url"))) {
            return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request",
                                         "\"base_url\" is required");
        }

        rc = ngx_ailink_admin_lock(ar);
        if (rc != NGX_OK) {
            return rc == NGX_BUSY ? NGX_BUSY : NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        list = ngx_ailink_json_get(ar->doc, "services");
        if (list == NULL) {
            list = cJSON_AddArrayToObject(ar->doc, "services");
        }

        if (ngx_ailink_admin_find_name(list, &name)) {
            return ngx_ailink_admin_fail(ar, NGX_HTTP_CONFLICT, "conflict",
                                         "a service named \"%V\" exists",
                                         &name);
        }

        rec = cJSON_CreateObject();

        cJSON_ArrayForEach(v, ar->json) {
            if (cJSON_IsString(v)) {
                cJSON_AddItemToObject(rec, v->string, cJSON_Duplicate(v, 1));
            }
        }

        if (ngx_ailink_json_get(rec, "service_type") == NULL) {
            cJSON_AddStringToObject(rec, "service_type", "generic");
        }

        ngx_ailink_admin_time(ngx_time(), rec, "created_at");
        cJSON_AddItemToArray(list, rec);

        rc = ngx_ailink_admin_check(ar);
        if (rc != NGX_OK) {
            return rc;
        }

        ar->status = NGX_HTTP_CREATED;
        out = cJSON_Duplicate(rec, 1);

    } else if (method == NGX_HTTP_DELETE && ar->id.len) {
        rc = ngx_ailink_admin_lock(ar);
        if (rc != NGX_OK) {
            return rc == NGX_BUSY ? NGX_BUSY : NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        name = ar->id;
        list = ngx_ailink_json_get(ar->doc, "services");
        rec = ngx_ailink_admin_find_name(list, &name);

        if (rec == NULL) {
            return ngx_ailink_admin_fail(ar, NGX_HTTP_NOT_FOUND, "not_found",
                                         "no service \"%V\"", &name);
        }

        item = cJSON_DetachItemViaPointer(list, rec);
        cJSON_Delete(item);

        out = cJSON_CreateObject();
        cJSON_AddItemToObject(out, "name", ngx_ailink_json_string(&name));
        cJSON_AddBoolToObject(out, "deleted", 1);

    } else {
        return ngx_ailink_admin_fail(ar, NGX_HTTP_NOT_ALLOWED,
                                     "method_not_allowed",
                                     "method not allowed here");
    }

    ar->audit.data = ngx_pnalloc(ar->request->pool, 64 + name.len);
    if (ar->audit.data) {
        ar->audit.len = ngx_sprintf(ar->audit.data, "service \"%V\" %s",
                                    &name, method == NGX_HTTP_DELETE
                                    ? "deleted" : "created")
                        - ar->audit.data;
    }

    return ngx_ailink_admin_answer(ar, out);
}
