# Rate limits: requests per second/minute/hour and tokens per minute, per
# token or any key; 429 rate_limited with Retry-After; OpenAI-style
# x-ratelimit-* headers on every response of a limited route; shadow
# limits; a full state zone.  Several workers: t/084-limits-workers.t.

use lib 't/lib';
use AILink::Test;
use AILink::Policy;
use Test::Nginx::Socket 'no_plan';

add_block_preprocessor(\&policy_defaults);
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: requests per minute: the fourth request gets 429 with Retry-After
--- user_files eval
AILink::Policy::policy_files(<<'YAML')
policies:
  - name: rpm
    apply_to: all
    rules:
      - then: {rate_limit: {requests_per_minute: 3}}
YAML
--- request eval
["GET /v1/me?1", "GET /v1/me?2", "GET /v1/me?3", "GET /v1/me?4"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001
--- error_code eval
[200, 200, 200, 429]
--- response_headers_like eval
["x-ratelimit-limit-requests: 3\nx-ratelimit-remaining-requests: 2\nx-ratelimit-reset-requests: \\d+s",
 "x-ratelimit-remaining-requests: 1",
 "x-ratelimit-remaining-requests: 0",
 "Retry-After: \\d+\nx-ratelimit-limit-requests: 3\nx-ratelimit-remaining-requests: 0"]
--- response_body_like eval
[qr/"echo"/, qr/"echo"/, qr/"echo"/,
 qr/^\{"error":\{"type":"rate_limit_error","code":"rate_limited","message":"rate limit of policy \\"rpm\\" reached; retry after \d+ s","param":null,"policy_name":"rpm","retry_after":\d+,"request_id":"[0-9a-f]{32}"\}\}$/]
--- no_error_log
[error]



=== TEST 2: tokens per minute count the usage of finished responses
--- user_files eval
AILink::Policy::policy_files(<<'YAML')
policies:
  - name: tpm
    apply_to: all
    rules:
      - then: {rate_limit: {tokens_per_minute: 10}}
YAML
--- request eval
["POST /v1/chat/completions
{\"model\":\"mock-1\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}",
"POST /v1/chat/completions
{\"model\":\"mock-1\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}",
"POST /v1/chat/completions
{\"model\":\"mock-1\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code eval
[200, 200, 429]
--- response_headers_like eval
["x-ratelimit-limit-tokens: 10\nx-ratelimit-remaining-tokens: 10\nx-ratelimit-reset-tokens: \\d+s",
 "x-ratelimit-remaining-tokens: 2",
 "x-ratelimit-remaining-tokens: 0\nRetry-After: \\d+"]
--- no_error_log
[error]



=== TEST 3: a limit keyed by model counts each model apart
--- user_files eval
AILink::Policy::policy_files(<<'YAML')
policies:
  - name: per-model
    apply_to: all
    rules:
      - then: {rate_limit: {requests_per_hour: 1, key: [token, model]}}
YAML
--- request eval
["POST /v1/chat/completions
{\"model\":\"mock-a\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}",
"POST /v1/chat/completions
{\"model\":\"mock-b\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}",
"POST /v1/chat/completions
{\"model\":\"mock-a\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code eval
[200, 200, 429]
--- no_error_log
[error]



=== TEST 4: a limit applies only where its rule matches, and per token
--- user_files eval
AILink::Policy::policy_files(<<'YAML')
policies:
  - name: posts
    apply_to: {projects: [other]}
    rules:
      - when: {field: request.method, op: eq, value: POST}
        then: {rate_limit: {requests_per_minute: 1}}
YAML
--- request eval
["POST /v1/chat/completions
{\"model\":\"mock-a\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}",
"POST /v1/chat/completions
{\"model\":\"mock-a\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}",
"POST /v1/chat/completions
{\"model\":\"mock-a\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}",
"GET /v1/models"]
--- more_headers eval
["Authorization: Bearer $AILink::Policy::OTHER_TOKEN",
 "Authorization: Bearer $AILink::Policy::OTHER_TOKEN",
 "Authorization: Bearer $AILink::Policy::OTHER2_TOKEN",
 "Authorization: Bearer $AILink::Policy::OTHER_TOKEN"]
--- error_code eval
[200, 429, 200, 200]
--- no_error_log
[error]



=== TEST 5: a shadow limit lets every request through and audits what it would do
--- user_files eval
AILink::Policy::policy_files(<<'YAML')
policies:
  - name: shadow-rpm
    mode: shadow
    apply_to: all
    rules:
      - then: {rate_limit: {requests_per_minute: 1}}
YAML
--- request eval
["GET /v1/me?1", "GET /v1/me?2", "GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001
--- error_code eval
[200, 200, 200]
--- response_body_like eval
[qr/"echo"/, qr/"echo"/,
 qr/"policies":\[\{"policy":"shadow-rpm","rule":"rules\[0\]","action":"rate_limit","mode":"shadow","result":"allowed"\}\],"tags":\[\]\}\n.*"policies":\[\{"policy":"shadow-rpm","rule":"rules\[0\]","action":"rate_limit","mode":"shadow","result":"would_limit"\}\],"tags":\[\]\}\n\z/s]
--- no_error_log
[error]



=== TEST 6: a key the state zone cannot take fails closed with 503
--- user_files eval
AILink::Policy::policy_files(<<'YAML')
policies:
  - name: by-header
    apply_to: all
    rules:
      - then: {rate_limit: {requests_per_minute: 5, key: request.headers.x-user}}
YAML
--- request
GET /v1/me
--- more_headers eval
"Authorization: Bearer $AILink::Test::ACTION_TOKEN\nX-User: " . ("u" x 1500)
--- error_code: 503
--- response_body_like: "code":"limits_unavailable"
--- error_log
could not be decided



=== TEST 7: a full zone evicts the least recently used counters, and keeps serving
--- http_config
    ailink_config $TEST_NGINX_HTML_DIR/policy.yaml;
    ailink_state_zone tiny 32k;
--- user_files eval
AILink::Policy::policy_files(<<'YAML')
policies:
  - name: by-header
    apply_to: all
    rules:
      - then: {rate_limit: {requests_per_hour: 1, key: request.headers.x-user}}
YAML
--- request eval
[map { "GET /v1/me?$_" } 0 .. 401]
--- more_headers eval
[map { "Authorization: Bearer $AILink::Test::ACTION_TOKEN\nX-User: user-$_-" . ("k" x 200) } 0 .. 400, 0]
--- error_code eval
[(200) x 402]
--- no_error_log
[error]
[crit]
