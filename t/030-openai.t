# OpenAI passthrough for LLM-routed tokens: the model picks the provider,
# the provider's credential is injected in its own scheme, responses and
# streams come back unchanged, and usage is read on the way.

use lib 't/lib';
use AILink::Test;
use Test::Nginx::Socket 'no_plan';

add_block_preprocessor(\&ailink_defaults);
check_worker_memory();
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: chat completion reaches OpenAI with the stored key
--- request eval
["POST /v1/chat/completions
{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello there\"}]}",
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
Content-Type: application/json
Accept-Encoding: gzip
X-AILink-Agent-Name: chat-agent
--- response_body_like eval
[qr/^\{"id":"chatcmpl-mock[^"]*","object":"chat.completion",.*"content":"Mock reply from openai to: Hello there"/,
 qr/\A(?!.*(?:ailink_v1_proj|x-ailink|accept-encoding|chat-agent)).*"path":\s*"\/v1\/chat\/completions".*"authorization":\s*"Bearer sk-test-openai-secret-0001"/s]
--- response_headers eval
["X-AILink-Provider: openai", "X-AILink-Provider:"]
--- no_error_log
[error]
[alert]



=== TEST 2: the audit record carries model, usage and cost
--- request eval
["POST /v1/chat/completions
{\"model\":\"mock-priced\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}",
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_like eval
[qr/Mock reply from openai to: Hello/,
 qr/"token_id":"tok_llm","token_name":"llm test token","project":"test","agent_name":"default-agent",[^\n]*"method":"POST","path":"\/v1\/chat\/completions","upstream":"http:\/\/127.0.0.1:\d+\/v1","provider":"openai","model":"mock-priced","status":200,"error":null,"stream":false,"latency_ms":\d+,"upstream_latency_ms":\d+,"ttft_ms":null,"prompt_tokens":2,"completion_tokens":6,"total_tokens":8,"cached_tokens":0,"cost_usd":14.00000000\}\n\z/]



=== TEST 3: usage is the response's own member, wherever it is and whatever the text says
--- request eval
["POST /v1/chat/completions
{\"model\":\"mock-priced\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}",
"GET /audit",
"POST /v1/chat/completions
{\"model\":\"mock-priced\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}",
"GET /audit"]
--- more_headers eval
["Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001\nX-Mock-Raw-Body: " . q{{"id":"c1","usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7},"choices":[{"index":0,"message":{"role":"assistant","content":"it said \"usage\":{\"prompt_tokens\":99}"},"finish_reason":"stop"}],"meta":{"usage":{"prompt_tokens":50}}}},
 "",
 "Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001\nX-Mock-Raw-Body: " . q{{"id":"c2","choices":[],"usage" : {"prompt_tokens":5,"completion_tokens":1,"total_tokens":6,"prompt_tokens_details":{"cached_tokens":2}} }},
 ""]
--- response_body_like eval
[qr/"c1"/,
 qr/"prompt_tokens":3,"completion_tokens":4,"total_tokens":7,"cached_tokens":0,[^\n]*\n\z/,
 qr/"c2"/,
 qr/"prompt_tokens":5,"completion_tokens":1,"total_tokens":6,"cached_tokens":2,[^\n]*\n\z/]



=== TEST 4: a streamed completion is passed through event by event
--- request
POST /v1/chat/completions
{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Count"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Events: 4
--- response_headers_like
Content-Type: text/event-stream.*
X-AILink-Provider: openai
--- response_body_like: ^data: \{"id":"chatcmpl-mock[^\n]*"role":"assistant"[^\n]*\n\n(data: \{[^\n]*"content":[^\n]*\n\n){4}data: \{[^\n]*"finish_reason":"stop"[^\n]*\n\ndata: \[DONE\]\n\n$
--- no_error_log
[error]



=== TEST 5: usage of a stream that asked for it is audited
--- request eval
["POST /v1/chat/completions
{\"model\":\"mock-priced\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}",
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Events: 3
--- response_body_like eval
[qr/"usage":\{"prompt_tokens":2,/,
 qr/"model":"mock-priced","status":200,"error":null,"stream":true,[^\n]*"ttft_ms":\d+,"prompt_tokens":2,"completion_tokens":\d+,"total_tokens":\d+,[^\n]*"cost_usd":\d+\.\d+\}\n\z/]



=== TEST 6: the gateway asks for stream usage the client did not ask for, and hides it
--- request eval
["POST /v1/chat/completions
{\"model\":\"mock-priced\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}",
"GET /_mock/requests/last", "GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Events: 3
--- response_body_like eval
[qr/\A(?!.*"choices":\[\])(data: \{[^\n]*"choices":\[\{[^\n]*\n\n)+data: \[DONE\]\n\n\z/s,
 qr/"stream_options":\s*\{"include_usage":\s*true\}/,
 qr/"stream":true,[^\n]*"prompt_tokens":2,"completion_tokens":\d+,"total_tokens":\d+,/]



=== TEST 7: other stream options of the client are kept
--- request eval
["POST /v1/chat/completions
{\"model\":\"gpt-4o\",\"stream\":true,\"stream_options\":{\"include_obfuscation\":false},\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}",
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_like eval
[qr/data: \[DONE\]/,
 qr/"stream_options":\s*\{"include_obfuscation":\s*false,\s*"include_usage":\s*true\}/]



=== TEST 8: a stream split into many small events keeps bounded memory and its usage
(read by a client slower than the provider: see AILink::Test)
--- http_config eval: $AILink::Test::SLOW_CLIENT_HTTP_CONFIG
--- config eval: $AILink::Test::SLOW_CLIENT_CONFIG
--- request eval
["GET /_worker",
"POST /slow/v1/chat/completions
{\"model\":\"gpt-4o\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"messages\":[{\"role\":\"user\",\"content\":\"Long\"}]}",
"GET /_worker?max_kb=200",
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Events: 2000
X-Mock-Chunk-Delay-Ms: 0
--- response_body_like eval
[qr/^worker \d+/,
 qr/data: \[DONE\]\n\n$/,
 qr/^worker \d+/,
 qr/"stream":true,[^\n]*"prompt_tokens":2,"completion_tokens":2000,/]
--- timeout: 30



=== TEST 9: embeddings
--- request eval
["POST /v1/embeddings
{\"model\":\"text-embedding-3-small\",\"input\":[\"a\",\"b\"]}",
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_like eval
[qr/"object":\s*"list"/,
 qr/"path":"\/v1\/embeddings",[^\n]*"provider":"openai","model":"text-embedding-3-small","status":200,[^\n]*"prompt_tokens":\d+,/]



=== TEST 10: other OpenAI endpoints pass through to OpenAI
--- request eval
["GET /v1/models", "GET /v1/files", "GET /v1/batches?limit=2", "POST /v1/fine_tuning/jobs
{\"training_file\":\"file-abc\",\"model\":\"gpt-4o-mini-2024-07-18\"}", "GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code eval
[200, 200, 200, 200, 200]
--- response_body_like eval
[qr/"object":\s*"list"/, qr/"object":\s*"list"/, qr/"object":\s*"list"/, qr/"fine_tuning.job"/,
 qr/"path":\s*"\/v1\/fine_tuning\/jobs".*"authorization":\s*"Bearer sk-test-openai-secret-0001"/]



=== TEST 11: a body that is not JSON
--- request
POST /v1/chat/completions
{"model": "gpt-4o", "messages": [
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code: 400
--- response_body_like: ^\{"error":\{"type":"invalid_request_error","code":"invalid_request","message":"the request body is not a JSON object","param":null,"request_id":"[0-9a-f]{32}"\}\}$



=== TEST 12: a JSON body that is not an object, and an empty body
--- request eval
["POST /v1/chat/completions\n[1,2]", "POST /v1/chat/completions"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code eval
[400, 400]
--- response_body_like eval
[qr/"code":"invalid_request","message":"the request body is not a JSON object"/,
 qr/"code":"invalid_request","message":"the request body is not a JSON object"/]



=== TEST 13: bodies that are not JSON in subtle ways are refused before any upstream
--- request eval
["POST /v1/chat/completions\n{\"model\":\"gpt-4o\",}",
 "POST /v1/chat/completions\n{\"model\":\"gpt-4o\"} x",
 "POST /v1/chat/completions\n{\"model\":\"gpt\x01\"}",
 "POST /v1/chat/completions\n{\"model\":\"gpt-4o\",\"n\":01}",
 "POST /v1/chat/completions\n{\"model\":\"a\\qb\"}",
 "POST /v1/chat/completions\n{\"model\":\"gpt-4o\",\"x\":" . ("[" x 600) . ("]" x 600) . "}",
 "POST /v1/chat/completions\n{\"model\":\"gpt-4o\",\"x\":\"\\u12\"}"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code eval
[400, 400, 400, 400, 400, 400, 400]
--- response_body_like eval
[(qr/"message":"the request body is not a JSON object"/) x 7]



=== TEST 14: a model name written with escapes is routed like the plain one
--- request eval
["POST /v1/chat/completions
{\"model\":\"gpt-4o\\u002dmini\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_like eval
[qr/Mock reply from openai/, qr/"provider":"openai","model":"gpt-4o-mini","status":200/]



=== TEST 15: a missing or non-string model
--- request eval
["POST /v1/chat/completions\n{\"messages\":[]}", "POST /v1/chat/completions\n{\"model\":42}"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code eval
[400, 400]
--- response_body_like eval
[qr/"message":"\\"model\\" is required and must be a string","param":"model"/,
 qr/"message":"\\"model\\" is required and must be a string","param":"model"/]



=== TEST 16: a model no route knows
--- request
POST /v1/chat/completions
{"model":"mystery-7b","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code: 400
--- response_body_like: "code":"invalid_request","message":"no provider route for model \\"mystery-7b\\"","param":"model"
--- no_error_log
[error]



=== TEST 17: an operator route sends llama-* to another OpenAI-compatible provider
--- request eval
["POST /v1/chat/completions
{\"model\":\"llama-3.1-8b\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_headers eval
["X-AILink-Provider: local", ""]
--- response_body_like eval
[qr/.*/, qr/"path":\s*"\/local\/v1\/chat\/completions"/]



=== TEST 18: Azure OpenAI by configuration: deployment URL, api-key header, api-version
--- request eval
["POST /v1/chat/completions
{\"model\":\"azure-gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_headers eval
["X-AILink-Provider: azure", ""]
--- response_body_like eval
[qr/.*/,
 qr/\A(?!.*"authorization").*"path":\s*"\/openai\/deployments\/gpt-4o\/chat\/completions",\s*"query":\s*"api-version=2024-10-21".*"api-key":\s*"sk-test-openai-secret-0001"/s]



=== TEST 19: an LLM token on a route that is not an LLM endpoint
--- request eval
["GET /v1/customers", "POST /v2/chat/completions\n{}", "GET /v1/chat/completions"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code eval
[404, 404, 404]
--- response_body_like eval
[qr/"code":"not_found"/, qr/"code":"not_found"/, qr/"code":"not_found"/]



=== TEST 20: a body over the limit is a 413 in the envelope
--- request eval
"POST /v1/chat/completions\n{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"" . ("x" x 70000) . "\"}]}"
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code: 413
--- response_body_like: ^\{"error":\{"type":"invalid_request_error","code":"payload_too_large","message":"[^"]+","param":null,"request_id":"[0-9a-f]{32}"\}\}$
--- response_headers_like
X-AILink-Request-Id: [0-9a-f]{32}



=== TEST 21: bring your own OpenAI key, sent in OpenAI's scheme
--- request eval
["POST /v1/chat/completions
{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llmbyok0000000000000000001
X-AILink-Upstream-Key: sk-user-own-key
--- response_body_like eval
[qr/Mock reply from openai/,
 qr/\A(?!.*x-ailink-upstream-key).*"authorization":\s*"Bearer sk-user-own-key"/s]



=== TEST 22: a passthrough token without a key gets the provider's own 401
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llmbyok0000000000000000001
--- error_code: 401
--- response_body_like: "code":\s*"invalid_api_key"



=== TEST 23: a provider error passes through with its status
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Status: 429
X-Mock-Retry-After: 7
--- error_code: 429
--- response_headers
Retry-After: 7
--- response_body_like: "message":\s*"mock error 429"



=== TEST 24: TLS upstream in a keepalive pool, with SNI and certificate checks
--- http_config
    ailink_config $TEST_NGINX_AILINK_ROOT/t/conf/tls.yaml;
    upstream mock_tls {
        server 127.0.0.1:$TEST_NGINX_MOCK_TLS_PORT;
        keepalive 4;
    }
--- config
    location /_mock/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    location / {
        ailink_auth on;
        proxy_pass $ailink_upstream_url;
        proxy_http_version 1.1;
        proxy_set_header Host $ailink_upstream_host;
        proxy_set_header Connection "";
        proxy_ssl_server_name on;
        proxy_ssl_name $ailink_upstream_host;
        proxy_ssl_verify on;
        proxy_ssl_trusted_certificate $TEST_NGINX_MOCK_CERT;
    }
--- request eval
["POST /v1/chat/completions
{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"one\"}]}",
"POST /v1/chat/completions
{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"two\"}]}",
"GET /_mock/requests?path_prefix=/v1/chat"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_like eval
[qr/to: one/, qr/to: two/,
 qr/"host":\s*"mock.test".*"sni":\s*"mock.test",\s*"conn":\s*(\d+),.*"host":\s*"mock.test".*"sni":\s*"mock.test",\s*"conn":\s*\1,/s]
--- no_error_log
[error]
