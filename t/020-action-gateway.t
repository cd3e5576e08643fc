# The action gateway: a token bound to an upstream base URL forwards any
# method and path verbatim with the real credential injected, the client's
# Authorization and X-AILink-* headers removed, and the response unchanged.

use lib 't/lib';
use AILink::Test;
use Test::Nginx::Socket 'no_plan';

add_block_preprocessor(\&ailink_defaults);
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: path and query are forwarded verbatim below the base URL
--- request
GET /v1/customers/cus_1%3A2?limit=3&expand[]=x
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001
--- response_body_like: "path":\s*"/api/v1/customers/cus_1%3A2",\s*"query":\s*"limit=3&expand\[\]=x"
--- no_error_log
[error]
[alert]
[crit]



=== TEST 2: the credential replaces the virtual token; X-AILink-* headers stay behind
--- request
GET /v1/balance
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001
X-AILink-Agent-Name: billing-agent
X-AILink-Session-Id: s-1
X-Custom-Header: kept
traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01
--- response_body_like: ^(?!.*(?:ailink_v1_proj|"authorization"|x-ailink|billing-agent)).*"x-api-key":\s*"sk-test-action-secret-0001"



=== TEST 3: other client headers and traceparent are forwarded
--- request
GET /v1/balance
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001
X-Custom-Header: kept
traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01
--- response_body_like: "x-custom-header":\s*"kept".*"traceparent":\s*"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"



=== TEST 4: a client cannot supply its own value of the credential header
--- request
GET /v1/balance
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001
X-Api-Key: forged
--- response_body_like: ^(?!.*forged).*"x-api-key":\s*"sk-test-action-secret-0001"



=== TEST 5: POST body, content type and method are forwarded unchanged
--- request
POST /v1/charges
{"amount": 5000, "currency": "usd"}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001
Content-Type: application/json
--- response_body_like: "method":\s*"POST",\s*"path":\s*"/api/v1/charges".*"content-type":\s*"application/json".*"body":\s*"\{\\"amount\\": 5000, \\"currency\\": \\"usd\\"\}"



=== TEST 6: other methods
--- request eval
["DELETE /v1/customers/cus_1", "PATCH /v1/customers/cus_1\n{\"a\":1}", "PUT /v1/x\n{}"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001
--- response_body_like eval
[qr/"method":\s*"DELETE"/, qr/"method":\s*"PATCH"/, qr/"method":\s*"PUT"/]



=== TEST 7: query parameter credential
--- request
GET /v1/search?q=books
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_query00000000000000000001
--- response_body_like: "path":\s*"/v1/search",\s*"query":\s*"q=books&api_key=sk-test-action-secret-0001"



=== TEST 8: query parameter credential on a path without a query
--- request
GET /v1/search
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_query00000000000000000001
--- response_body_like: "query":\s*"api_key=sk-test-action-secret-0001"



=== TEST 9: basic credential
--- request
GET /v1/me
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_basic00000000000000000001
--- response_body_like: "authorization":\s*"Basic dXNlcjp0ZXN0LWJhc2ljLXNlY3JldC0wMDAx"



=== TEST 10: bring your own key, injected in the token's scheme and not forwarded as sent
--- request
GET /v1/me
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_byok000000000000000000001
X-AILink-Upstream-Key: my-own-upstream-key
--- response_body_like: ^(?!.*x-ailink-upstream-key).*"x-api-key":\s*"my-own-upstream-key"



=== TEST 11: the upstream key never reaches the audit record or the log
The log is read at the info level: at debug nginx itself logs every header.
--- request eval
["GET /v1/me", "GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_byok000000000000000000001
X-AILink-Upstream-Key: my-own-upstream-key
--- response_body_like eval
[qr/"x-api-key":\s*"my-own-upstream-key"/,
 qr/\A(?!.*(?:my-own-upstream-key|ailink_v1_proj))\{[^\n]*"token_id":"tok_byok"[^\n]*\}\n\z/s]
--- log_level: info
--- no_error_log
[error]
my-own-upstream-key
ailink_v1_proj



=== TEST 12: a token without credential or key sends no authorization upstream
--- request
GET /v1/me
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_keyless0000000000000000001
--- response_body_like: ^(?!.*(?:"authorization"|x-api-key|ailink_v1))\{"echo":\{.*"headers":\s*\{



=== TEST 13: upstream status, headers and body come back unchanged
--- request
GET /v1/missing
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001
X-Mock-Status: 404
--- error_code: 404
--- response_body chomp
{"error":{"status":404,"message":"mock error 404"}}
--- response_headers_like
X-Mock-Seq: \d+



=== TEST 14: upstream response headers pass through, cookies included
--- request
GET /v1/me
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001
--- response_headers
X-Upstream-Echo: 1
Set-Cookie: a=b



=== TEST 15: an upstream event stream is passed through
--- request
GET /v1/events
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001
X-Mock-Scenario: sse
X-Mock-Events: 3
--- response_headers_like
Content-Type: text/event-stream.*
--- response_body_like: ^data: \{"n":\s*0\}\n\ndata: \{"n":\s*1\}\n\ndata: \{"n":\s*2\}\n\n



=== TEST 16: an unreachable upstream is a 502 in the envelope, the query credential masked in the log
--- request
GET /v1/anything?x=1
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_dead0000000000000000000001
--- log_level: info
--- error_code: 502
--- response_body_like: ^\{"error":\{"type":"api_error","code":"upstream_error","message":"[^"]+","param":null,"request_id":"[0-9a-f]{32}"\}\}$
--- response_headers_like
X-AILink-Request-Id: [0-9a-f]{32}
--- error_log
connect() failed
api_key=**************************
--- no_error_log
sk-test-action-secret-0001



=== TEST 17: the 502 is audited with the token that made it
--- request eval
["GET /v1/anything", "GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_dead0000000000000000000001
--- error_code eval
[502, 200]
--- response_body_like eval
[qr/upstream_error/, qr/"token_id":"tok_dead",[^\n]*"upstream":"http:\/\/127.0.0.1:1",[^\n]*"status":502,"error":"upstream_error"/]



=== TEST 18: an upstream that does not answer in time is a 504
--- config
    error_page 502 504 @ailink_error;
    location @ailink_error {
        ailink_error_page;
    }
    location / {
        ailink_auth on;
        include $TEST_NGINX_AILINK_ROOT/conf-examples/ailink-proxy.conf;
        proxy_read_timeout 300ms;
    }
--- request
GET /v1/slow
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001
X-Mock-Delay-Ms: 2000
--- error_code: 504
--- response_body_like: "code":"upstream_timeout"
--- error_log
upstream timed out



=== TEST 19: the audit record of an action call
--- request eval
["POST /v1/charges?x=1\n{\"amount\":1}", "GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001
X-AILink-Agent-Name: billing-agent
X-AILink-Session-Id: sess-42
X-AILink-Parent-Span-Id: span-7
X-AILink-Properties: {"env": "prod", "n": 1}
--- response_body_like eval
[qr/"method":\s*"POST"/,
 qr/^\{"time":"[^"]+","request_id":"[0-9a-f]{32}","token_id":"tok_action","token_name":"action test token","project":"test","agent_name":"billing-agent","session_id":"sess-42","parent_span_id":"span-7","properties":\{"env":"prod","n":1\},"method":"POST","path":"\/v1\/charges","upstream":"http:\/\/127.0.0.1:\d+\/api\/","provider":null,"model":null,"status":200,"error":null,"stream":false,"latency_ms":\d+,"upstream_latency_ms":\d+,"ttft_ms":null,"prompt_tokens":null,"completion_tokens":null,"total_tokens":null,"cached_tokens":null,"cost_usd":null\}\n\z/]
