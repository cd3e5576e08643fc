
/*
 * Copyright (C) AILink
 *
 * The approvals page (ailink_approvals_page [api_url]): one HTML document
 * with a little JavaScript, no framework.  The page itself holds no data:
 * the approver types an admin key, kept in the tab's sessionStorage, and
 * every call the page makes to the approvals API carries it.  Pending
 * approvals show token, agent, policy, method, path, the redacted body
 * preview and the policy's reason; approve and reject take a reason.
 * Everything shown comes from agents, so it is put in the page as text
 * (textContent), never as markup, and a strict Content-Security-Policy
 * keeps the page to its own inline script and the API.
 */


#include "ngx_ailink_approval.h"


static u_char  ngx_ailink_approval_page_head[] =
"<!DOCTYPE html>\n"
"<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
"<title>AILink approvals</title>\n"
"<style>\n"
"body{font:14px system-ui,sans-serif;margin:2em;color:#222}\n"
"table{border-collapse:collapse;width:100%}\n"
"th,td{border-bottom:1px solid #ddd;padding:.4em;text-align:left;"
"vertical-align:top}\n"
"pre{margin:0;white-space:pre-wrap;word-break:break-all;max-width:30em}\n"
"#status{margin:.5em 0;color:#555}\n"
"button{margin-right:.3em}\n"
"</style></head><body>\n"
"<h1>Pending approvals</h1>\n"
"<form id=\"login\"><label>Admin key <input id=\"key\" type=\"password\" "
"autocomplete=\"off\" size=\"50\"></label> <button id=\"use\">Use</button>"
"</form>\n"
"<div id=\"status\"></div>\n"
"<table id=\"approvals\"><thead><tr><th>id</th><th>token</th><th>agent</th>"
"<th>policy</th><th>method</th><th>path</th><th>body</th><th>reason</th>"
"<th>expires</th><th>decision</th></tr></thead><tbody></tbody></table>\n"
"<script>\n"
"\"use strict\";\n"
"const API = ";

/* the API URL goes here, as a JSON string */

static u_char  ngx_ailink_approval_page_tail[] =
";\n"
"const $ = (id) => document.getElementById(id);\n"
"function key() {\n"
"  return sessionStorage.getItem(\"ailink_admin_key\") || \"\";\n"
"}\n"
"function say(text) { $(\"status\").textContent = text; }\n"
"async function call(method, path, body) {\n"
"  const r = await fetch(API + path, {method: method, headers: {\n"
"    \"Authorization\": \"Bearer \" + key(),\n"
"    \"Content-Type\": \"application/json\"},\n"
"    body: body ? JSON.stringify(body) : undefined});\n"
"  const data = await r.json().catch(() => ({}));\n"
"  if (!r.ok) {\n"
"    throw new Error((data.error && data.error.message) || r.statusText);\n"
"  }\n"
"  return data;\n"
"}\n"
"function cell(tr, text, pre) {\n"
"  const td = document.createElement(\"td\");\n"
"  const el = pre ? document.createElement(\"pre\") : td;\n"
"  el.textContent = text == null ? \"\" : String(text);\n"
"  if (pre) { td.appendChild(el); }\n"
"  tr.appendChild(td);\n"
"  return td;\n"
"}\n"
"async function decide(id, decision, reason) {\n"
"  let text;\n"
"  try {\n"
"    await call(\"POST\", \"/\" + encodeURIComponent(id) + \"/decision\",\n"
"               {decision: decision, reason: reason});\n"
"    text = id + \": \" + (decision === \"approve\" ? \"approved\" "
": \"rejected\");\n"
"  } catch (e) { text = id + \": \" + e.message; }\n"
"  await load();\n"
"  say(text);\n"
"}\n"
"async function load() {\n"
"  const body = $(\"approvals\").tBodies[0];\n"
"  if (!key()) { say(\"Enter an admin key.\"); return; }\n"
"  let list;\n"
"  try { list = await call(\"GET\", \"?status=pending\"); }\n"
"  catch (e) { say(\"Cannot list approvals: \" + e.message); return; }\n"
"  body.replaceChildren();\n"
"  for (const a of list.data) {\n"
"    const tr = document.createElement(\"tr\");\n"
"    tr.dataset.id = a.id;\n"
"    cell(tr, a.id); cell(tr, a.token_id); cell(tr, a.agent);\n"
"    cell(tr, a.policy_name); cell(tr, a.method); cell(tr, a.path);\n"
"    cell(tr, a.body_preview, true);\n"
"    cell(tr, a.reason + (a.notes ? \" (\" + a.notes + \")\" : \"\"));\n"
"    cell(tr, a.expires_at);\n"
"    const td = cell(tr, \"\");\n"
"    const why = document.createElement(\"input\");\n"
"    why.placeholder = \"reason\"; why.className = \"reason\";\n"
"    td.appendChild(why);\n"
"    for (const d of [\"approve\", \"reject\"]) {\n"
"      const b = document.createElement(\"button\");\n"
"      b.textContent = d; b.className = d;\n"
"      b.addEventListener(\"click\", () => decide(a.id, d, why.value));\n"
"      td.appendChild(b);\n"
"    }\n"
"    body.appendChild(tr);\n"
"  }\n"
"  say(list.data.length + \" pending\");\n"
"}\n"
"$(\"login\").addEventListener(\"submit\", (e) => {\n"
"  e.preventDefault();\n"
"  sessionStorage.setItem(\"ailink_admin_key\", $(\"key\").value);\n"
"  $(\"key\").value = \"\";\n"
"  load();\n"
"});\n"
"load();\n"
"setInterval(() => { if (key()) { load(); } }, 5000);\n"
"</script></body></html>\n";


static ngx_int_t
ngx_ailink_approval_page_handler(ngx_http_request_t *r)
{
    size_t                        len;
    u_char                       *p;
    ngx_int_t                     rc;
    ngx_buf_t                    *b;
    ngx_chain_t                   out;
    ngx_table_elt_t              *h;
    ngx_ailink_approval_loc_t    *page;

    if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    page = ngx_http_get_module_loc_conf(r, ngx_ailink_approval_module);

    len = sizeof(ngx_ailink_approval_page_head) - 1
          + page->api.len + 2
          + sizeof(ngx_ailink_approval_page_tail) - 1;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Content-Security-Policy");
    ngx_str_set(&h->value, "default-src 'none'; script-src 'unsafe-inline'; "
                           "style-src 'unsafe-inline'; connect-src 'self'; "
                           "frame-ancestors 'none'; form-action 'none'");

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Cache-Control");
    ngx_str_set(&h->value, "no-store");

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = len;
    ngx_str_set(&r->headers_out.content_type, "text/html; charset=utf-8");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    if (r->method == NGX_HTTP_HEAD) {
        r->header_only = 1;
        return ngx_http_send_header(r);
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(b->last, ngx_ailink_approval_page_head,
                   sizeof(ngx_ailink_approval_page_head) - 1);
    *p++ = '"';
    p = ngx_cpymem(p, page->api.data, page->api.len);
    *p++ = '"';
    p = ngx_cpymem(p, ngx_ailink_approval_page_tail,
                   sizeof(ngx_ailink_approval_page_tail) - 1);

    b->last = p;
    b->last_buf = 1;
    b->last_in_chain = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* ailink_approvals_page [api_url]: the API's URL, "/api/v1/approvals" */

char *
ngx_ailink_approval_page(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_str_t                  *value;
    ngx_uint_t                  i;
    ngx_http_core_loc_conf_t   *clcf;
    ngx_ailink_approval_loc_t  *page = conf;

    if (page->api.data) {
        return "is duplicate";
    }

    ngx_str_set(&page->api, "/api/v1/approvals");

    if (cf->args->nelts == 2) {
        value = cf->args->elts;
        page->api = value[1];

        /* it is written into a JavaScript string */
        for (i = 0; i < page->api.len; i++) {
            if (page->api.data[i] < 0x21 || page->api.data[i] > 0x7e
                || ngx_strchr("\"\\<>'`", page->api.data[i]))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "ailink_approvals_page: \"%V\" is not a "
                                   "plain URL", &page->api);
                return NGX_CONF_ERROR;
            }
        }

        while (page->api.len && page->api.data[page->api.len - 1] == '/') {
            page->api.len--;
        }
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_ailink_approval_page_handler;

    return NGX_CONF_OK;
}
