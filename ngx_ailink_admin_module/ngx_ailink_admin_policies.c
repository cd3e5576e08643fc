
/*
 * Copyright (C) AILink
 *
 * The admin API's policies: create, list, get, patch, delete.  A record
 * of the store is a policy in the config file's shape ("name", "mode",
 * "phase", "apply_to", "timezone", "rules", "description") plus
 * "created_at" and "updated_at"; every change is compiled with the
 * store's other objects by the file's own loader
 * (ngx_ailink_policy_conf_store) before it is committed, so a bad regex
 * or an unknown field is a 400 naming the policy and the rule.  The
 * file's policies are listed too ("source": "yaml") and are read-only
 * (409).  A policy that a token of the store names cannot be deleted
 * (409 in_use).
 */


#include "ngx_ailink_admin.h"


static cJSON *
ngx_ailink_admin_policy_find(cJSON *list, ngx_str_t *name)
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


/* a record as the API shows it */

static cJSON *
ngx_ailink_admin_policy_view(cJSON *rec, const char *source)
{
    cJSON  *out;

    out = cJSON_Duplicate(rec, 1);

    if (out) {
        cJSON_AddStringToObject(out, "source", source);
    }

    return out;
}


static ngx_int_t
ngx_ailink_admin_policy_name_ok(const char *name)
{
    const u_char  *p;

    if (name[0] == '\0' || ngx_strlen(name) > 128) {
        return NGX_ERROR;
    }

    for (p = (const u_char *) name; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'
              || *p == '.')
            || (p == (const u_char *) name && *p == '.'))
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_admin_policy_get(ngx_ailink_admin_req_t *ar, cJSON *file)
{
    cJSON               *doc, *list, *rec, *out, *data, *item;
    ngx_str_t            text;
    ngx_uint_t           gen;
    ngx_ailink_store_t  *st;

    st = ar->amcf->store;

    if (st->ops->read(st, ar->request->pool, &text, &gen) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    doc = cJSON_Parse(text.len ? (char *) text.data : "{}");
    if (doc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    list = ngx_ailink_json_get(doc, "policies");

    if (ar->id.len) {
        rec = ngx_ailink_admin_policy_find(file, &ar->id);

        if (rec) {
            out = ngx_ailink_admin_policy_view(rec, "yaml");

        } else {
            rec = ngx_ailink_admin_policy_find(list, &ar->id);
            out = rec ? ngx_ailink_admin_policy_view(rec, "api") : NULL;
        }

        cJSON_Delete(doc);

        if (out == NULL) {
            return ngx_ailink_admin_fail(ar, NGX_HTTP_NOT_FOUND, "not_found",
                                         "no policy \"%V\"", &ar->id);
        }

        return ngx_ailink_admin_reply(ar, NGX_HTTP_OK, out);
    }

    out = cJSON_CreateObject();
    data = cJSON_AddArrayToObject(out, "data");

    if (out == NULL || data == NULL) {
        cJSON_Delete(out);
        cJSON_Delete(doc);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cJSON_ArrayForEach(item, file) {
        cJSON_AddItemToArray(data, ngx_ailink_admin_policy_view(item, "yaml"));
    }

    cJSON_ArrayForEach(item, list) {
        cJSON_AddItemToArray(data, ngx_ailink_admin_policy_view(item, "api"));
    }

    cJSON_Delete(doc);

    return ngx_ailink_admin_reply(ar, NGX_HTTP_OK, out);
}


/* the store's tokens (revoked ones too: they are compiled) naming it */

static cJSON *
ngx_ailink_admin_policy_user(cJSON *doc, ngx_str_t *name)
{
    cJSON  *tok, *v;

    cJSON_ArrayForEach(tok, ngx_ailink_json_get(doc, "tokens")) {
        cJSON_ArrayForEach(v, ngx_ailink_json_get(tok, "policies")) {
            if (cJSON_IsString(v) && ngx_strlen(v->valuestring) == name->len
                && ngx_strncmp(v->valuestring, name->data, name->len) == 0)
            {
                return tok;
            }
        }
    }

    return NULL;
}


ngx_int_t
ngx_ailink_admin_policies(ngx_ailink_admin_req_t *ar)
{
    cJSON        *file, *list, *rec, *v, *out, *item, *id;
    ngx_int_t     rc;
    ngx_str_t     name;
    ngx_uint_t    method;
    const char   *what;

    method = ar->request->method;

    if (ar->sub.len) {
        return ngx_ailink_admin_fail(ar, NGX_HTTP_NOT_FOUND, "not_found",
                                     "no such admin resource");
    }

    file = ngx_ailink_policy_conf_file_list(ar->request);
    if (file == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (method == NGX_HTTP_GET) {
        rc = ngx_ailink_admin_policy_get(ar, file);
        cJSON_Delete(file);
        return rc;
    }

    if (method == NGX_HTTP_POST && ar->id.len == 0) {
        name.len = 0;
        v = ar->json ? ngx_ailink_json_get(ar->json, "name") : NULL;

        if (!cJSON_IsString(v)
            || ngx_ailink_admin_policy_name_ok(v->valuestring) != NGX_OK)
        {
            cJSON_Delete(file);
            return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request",
                                         "\"name\" is required: letters, "
                                         "digits, '-', '_' and '.' (at most "
                                         "128)");
        }

        name.data = (u_char *) v->valuestring;
        name.len = ngx_strlen(v->valuestring);
        what = "created";

    } else if ((method == NGX_HTTP_PATCH || method == NGX_HTTP_DELETE)
               && ar->id.len)
    {
        name = ar->id;
        what = (method == NGX_HTTP_PATCH) ? "updated" : "deleted";

        if (method == NGX_HTTP_PATCH && ar->json == NULL) {
            cJSON_Delete(file);
            return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request",
                                         "a JSON body is required");
        }

    } else {
        cJSON_Delete(file);
        return ngx_ailink_admin_fail(ar, NGX_HTTP_NOT_ALLOWED,
                                     "method_not_allowed",
                                     "method not allowed here");
    }

    /* the file's are changed in the file */

    rec = ngx_ailink_admin_policy_find(file, &name);
    cJSON_Delete(file);

    if (rec) {
        return ngx_ailink_admin_fail(ar, NGX_HTTP_CONFLICT, "conflict",
                                     "policy \"%V\" is managed by the config "
                                     "file and is read-only through the API",
                                     &name);
    }

    rc = ngx_ailink_admin_lock(ar);
    if (rc != NGX_OK) {
        return rc == NGX_BUSY ? NGX_BUSY : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    list = ngx_ailink_json_get(ar->doc, "policies");
    if (list == NULL) {
        list = cJSON_AddArrayToObject(ar->doc, "policies");
        if (list == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    rec = ngx_ailink_admin_policy_find(list, &name);

    if (method == NGX_HTTP_POST) {
        if (rec) {
            return ngx_ailink_admin_fail(ar, NGX_HTTP_CONFLICT, "conflict",
                                         "a policy named \"%V\" exists",
                                         &name);
        }

        rec = cJSON_Duplicate(ar->json, 1);
        if (rec == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /* what GET adds is not part of the policy */
        cJSON_DeleteItemFromObjectCaseSensitive(rec, "source");
        cJSON_DeleteItemFromObjectCaseSensitive(rec, "created_at");
        cJSON_DeleteItemFromObjectCaseSensitive(rec, "updated_at");
        ngx_ailink_admin_time(ngx_time(), rec, "created_at");
        cJSON_AddItemToArray(list, rec);

        ar->status = NGX_HTTP_CREATED;

    } else if (rec == NULL) {
        return ngx_ailink_admin_fail(ar, NGX_HTTP_NOT_FOUND, "not_found",
                                     "no policy \"%V\"", &name);

    } else if (method == NGX_HTTP_PATCH) {

        /* the fields given replace the record's; null removes one */

        cJSON_ArrayForEach(v, ar->json) {
            if (ngx_strcmp(v->string, "created_at") == 0
                || ngx_strcmp(v->string, "updated_at") == 0
                || ngx_strcmp(v->string, "source") == 0)
            {
                continue;
            }

            if (ngx_strcmp(v->string, "name") == 0) {
                if (!cJSON_IsString(v)
                    || ngx_strlen(v->valuestring) != name.len
                    || ngx_strncmp(v->valuestring, name.data, name.len) != 0)
                {
                    return ngx_ailink_admin_fail(ar, NGX_HTTP_BAD_REQUEST,
                                                 "invalid_request",
                                                 "a policy cannot be "
                                                 "renamed: create the new "
                                                 "one, move the tokens, "
                                                 "delete the old one");
                }

                continue;
            }

            cJSON_DeleteItemFromObjectCaseSensitive(rec, v->string);

            if (!cJSON_IsNull(v)) {
                item = cJSON_Duplicate(v, 1);
                if (item == NULL) {
                    return NGX_HTTP_INTERNAL_SERVER_ERROR;
                }

                cJSON_AddItemToObject(rec, v->string, item);
            }
        }

        cJSON_DeleteItemFromObjectCaseSensitive(rec, "updated_at");
        ngx_ailink_admin_time(ngx_time(), rec, "updated_at");

    } else {
        item = ngx_ailink_admin_policy_user(ar->doc, &name);

        if (item) {
            id = ngx_ailink_json_get(item, "id");

            return ngx_ailink_admin_fail(ar, NGX_HTTP_CONFLICT, "in_use",
                                         "policy \"%V\" is named by token "
                                         "\"%s\": remove it from the "
                                         "token's \"policies\" first",
                                         &name, cJSON_IsString(id)
                                         ? id->valuestring : "?");
        }

        cJSON_Delete(cJSON_DetachItemViaPointer(list, rec));
        rec = NULL;
    }

    /* the whole store compiles with it, or nothing changes */
    rc = ngx_ailink_admin_check(ar);
    if (rc != NGX_OK) {
        return rc;
    }

    if (rec) {
        out = ngx_ailink_admin_policy_view(rec, "api");

    } else {
        out = cJSON_CreateObject();
        cJSON_AddItemToObject(out, "name", ngx_ailink_json_string(&name));
        cJSON_AddBoolToObject(out, "deleted", 1);
    }

    ar->audit.data = ngx_pnalloc(ar->request->pool, 32 + name.len);
    if (ar->audit.data) {
        ar->audit.len = ngx_sprintf(ar->audit.data, "policy \"%V\" %s",
                                    &name, what)
                        - ar->audit.data;
    }

    return ngx_ailink_admin_answer(ar, out);
}
