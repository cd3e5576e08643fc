# The audit sink and the $ailink_* variables: one JSON line per request,
# written directly or through a buffer flushed by a timer; the same values
# available to log_format, map and proxy_set_header.

use lib 't/lib';
use AILink::Test;
use Test::Nginx::Socket 'no_plan';

add_block_preprocessor(\&ailink_defaults);
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: variables in an access log format
--- http_config
    ailink_config $TEST_NGINX_AILINK_ROOT/t/conf/ailink.yaml;
    log_format ailink '$ailink_token_id|$ailink_token_name|$ailink_project|$ailink_agent_name|$ailink_session_id|$ailink_provider|$ailink_model|$ailink_prompt_tokens|$ailink_completion_tokens|$ailink_total_tokens|$ailink_cost_usd|$ailink_upstream|$ailink_upstream_host|$ailink_request_id';
--- config
    location = /vars {
        default_type text/plain;
        alias logs/vars.log;
    }
    location / {
        ailink_auth on;
        access_log logs/vars.log ailink;
        include $TEST_NGINX_AILINK_ROOT/conf-examples/ailink-proxy.conf;
    }
--- request eval
["POST /v1/chat/completions
{\"model\":\"mock-priced\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}",
"GET /vars"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-AILink-Agent-Name: var-agent
X-AILink-Session-Id: sess-var
--- response_body_like eval
[qr/Mock reply/,
 qr/^tok_llm\|llm test token\|test\|var-agent\|sess-var\|openai\|mock-priced\|2\|6\|8\|14\.000000\|http:\/\/127\.0\.0\.1:\d+\/v1\|127\.0\.0\.1:\d+\|[0-9a-f]{32}\n\z/]



=== TEST 2: variables are empty where nothing is known
--- http_config
    ailink_config $TEST_NGINX_AILINK_ROOT/t/conf/ailink.yaml;
--- config
    location / {
        return 200 "[$ailink_token_id][$ailink_model][$ailink_cost_usd][$ailink_upstream_url]\n";
    }
--- request
GET /x
--- response_body
[][][][]



=== TEST 3: a variable feeds proxy_set_header
--- http_config
    ailink_config $TEST_NGINX_AILINK_ROOT/t/conf/ailink.yaml;
--- config
    location / {
        ailink_auth on;
        include $TEST_NGINX_AILINK_ROOT/conf-examples/ailink-proxy.conf;
        proxy_set_header X-Project $ailink_project;
    }
--- request
GET /v1/me
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001
--- response_body_like: "x-project":\s*"test"



=== TEST 4: a buffered audit log is written when its flush timer fires
--- config
    ailink_audit_log logs/buffered.jsonl buffer=64k flush=300ms;
    location = /buffered {
        ailink_audit_log off;
        default_type text/plain;
        alias logs/buffered.jsonl;
    }
    location / {
        ailink_auth on;
        include $TEST_NGINX_AILINK_ROOT/conf-examples/ailink-proxy.conf;
    }
--- request eval
["GET /v1/me?first", "GET /buffered", "GET /v1/me?wait", "GET /buffered"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001
X-Mock-Delay-Ms: 500
--- error_code eval
[200, 200, 200, 200]
--- response_body_like eval
[qr/"path"/, qr/^\z/, qr/"path"/, qr/^\{[^\n]*"token_id":"tok_action"[^\n]*\}\n\z/]



=== TEST 5: X-AILink-Properties that is not a JSON object is kept as a string
--- request eval
["GET /v1/me", "GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001
X-AILink-Properties: env=prod "quoted"
--- response_body_like eval
[qr/"path"/, qr/"properties":"env=prod \\"quoted\\""/]



=== TEST 6: records of requests without a token, on a location with audit on
--- request eval
["GET /nowhere", "GET /audit"]
--- error_code eval
[401, 200]
--- response_body_like eval
[qr/invalid_token/, qr/"token_id":null,[^\n]*"path":"\/nowhere",[^\n]*"status":401,/]



=== TEST 7: a record: UTC time to the millisecond, numbers as numbers, properties as JSON
--- request eval
["POST /v1/chat/completions
{\"model\":\"mock-priced\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}",
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-AILink-Properties: {"env":"prod","n":2}
--- response_body_like eval
my @t = gmtime;
my $today = sprintf("%04d-%02d-%02d", $t[5] + 1900, $t[4] + 1, $t[3]);
[qr/Mock reply/,
 qr/^\{"time":"${today}T\d\d:\d\d:\d\d\.\d{3}Z","request_id":"[0-9a-f]{32}","token_id":"tok_llm",[^\n]*"properties":\{"env":"prod","n":2\},"method":"POST",[^\n]*"status":200,"error":null,"stream":false,"latency_ms":\d+,"upstream_latency_ms":\d+,"ttft_ms":null,"prompt_tokens":2,"completion_tokens":6,"total_tokens":8,"cached_tokens":0,"cost_usd":14\.00000000\}\n\z/]
