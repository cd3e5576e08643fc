# Circuit breakers: per upstream (ailink_breaker_*) and per token (the
# token's circuit_breaker): closed -> open after N consecutive failures
# (5xx, connection errors; 429 only with ailink_breaker_429) -> 503
# circuit_open with Retry-After, the upstream untouched -> half-open after
# the cooldown, a probe through -> closed on success, open on failure.
# The API: GET /api/v1/health/upstreams, GET|PATCH the token's settings.
# Workers, concurrent probes and reload: t/121-breaker-workers.t.

use lib 't/lib';
use AILink::Test;
use AILink::Policy;
use AILink::Cache;
use Test::Nginx::Socket 'no_plan';

add_block_preprocessor(\&cache_defaults);
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: two failures open the upstream's breaker: 503 circuit_open, upstream untouched
--- config eval
AILink::Cache::cache_config("ailink_breaker on; ailink_breaker_threshold 2; ailink_breaker_cooldown 30s;", "off")
--- request eval
my $r = "POST /v1/chat/completions
{\"model\":\"mock-1\",\"messages\":[{\"role\":\"user\",\"content\":\"fail\"}]}";
["POST /_mock/reset", $r, $r, $r, $r,
 "GET /_mock/requests?path_prefix=/v1/chat/completions",
 "GET /api/v1/health/upstreams"]
--- more_headers eval
["", $AILink::Cache::LLM . "\nX-Mock-Status: 500",
 $AILink::Cache::LLM . "\nX-Mock-Status: 503", $AILink::Cache::LLM,
 $AILink::Cache::OTHER, "",
 "Authorization: Bearer $AILink::Cache::ADMIN_KEY"]
--- error_code eval
[200, 500, 503, 503, 503, 200, 200]
--- response_headers_like eval
["", "Retry-After:", "Retry-After:", "Retry-After: (30|29)", "Retry-After: (30|29)", "", ""]
--- response_body_like eval
[qr/ok/, qr/mock error 500/, qr/mock error 503/,
 qr/^\{"error":\{"type":"api_error","code":"circuit_open","message":"the circuit breaker for this upstream is open","param":null,"retry_after":30,"request_id":"[0-9a-f]{32}"\}\}$/,
 qr/"code":"circuit_open"/,
 qr/^\[\{"seq":\d+,(?:(?!"seq").)*"seq":\d+,(?:(?!"seq").)*\]$/s,
 qr/^\{"upstreams":\[\{"name":"openai","state":"open","failures":2,"cooldown_remaining_secs":(30|29),"last_error":"status 503"\},\{"name":"anthropic","state":"closed","failures":0,"cooldown_remaining_secs":0,"last_error":null\},\{"name":"gemini","state":"closed","failures":0,"cooldown_remaining_secs":0,"last_error":null\}\]\}$/]
--- no_error_log
[crit]



=== TEST 2: a success resets the count; 4xx and 429 are not failures by default
--- config eval
AILink::Cache::cache_config("ailink_breaker on; ailink_breaker_threshold 2;", "off")
--- request eval
my $r = "POST /v1/chat/completions
{\"model\":\"mock-1\",\"messages\":[{\"role\":\"user\",\"content\":\"flaky\"}]}";
[$r, $r, $r, $r, $r, $r, "GET /api/v1/health/upstreams"]
--- more_headers eval
[$AILink::Cache::LLM . "\nX-Mock-Status: 500", $AILink::Cache::LLM,
 $AILink::Cache::LLM . "\nX-Mock-Status: 500",
 $AILink::Cache::LLM . "\nX-Mock-Status: 429",
 $AILink::Cache::LLM . "\nX-Mock-Status: 400", $AILink::Cache::LLM,
 "Authorization: Bearer $AILink::Cache::ADMIN_KEY"]
--- error_code eval
[500, 200, 500, 429, 400, 200, 200]
--- response_body_like eval
[qr/mock error/, qr/Mock reply/, qr/mock error/, qr/mock error/,
 qr/mock error/, qr/Mock reply/,
 qr/^\{"upstreams":\[\{"name":"openai","state":"closed","failures":0,"cooldown_remaining_secs":0,"last_error":"status 500"\},\{"name":"anthropic","state":"closed","failures":0,"cooldown_remaining_secs":0,"last_error":null\},\{"name":"gemini","state":"closed","failures":0,"cooldown_remaining_secs":0,"last_error":null\}\]\}$/]
--- no_error_log
[crit]



=== TEST 3: ailink_breaker_429 on counts 429 as a failure
--- config eval
AILink::Cache::cache_config("ailink_breaker on; ailink_breaker_threshold 2; ailink_breaker_429 on;", "off")
--- request eval
my $r = "POST /v1/chat/completions
{\"model\":\"mock-1\",\"messages\":[{\"role\":\"user\",\"content\":\"busy\"}]}";
[$r, $r, $r]
--- more_headers eval
[$AILink::Cache::LLM . "\nX-Mock-Status: 429",
 $AILink::Cache::LLM . "\nX-Mock-Status: 429", $AILink::Cache::LLM]
--- error_code eval
[429, 429, 503]
--- response_body_like eval
[qr/mock error/, qr/mock error/, qr/"code":"circuit_open"/]
--- no_error_log
[crit]



=== TEST 4: after the cooldown a probe goes through; its success closes the breaker
--- config eval
AILink::Cache::cache_config("ailink_breaker on; ailink_breaker_threshold 2; ailink_breaker_cooldown 2s;", "off")
--- request eval
my $r = "POST /v1/chat/completions
{\"model\":\"mock-1\",\"messages\":[{\"role\":\"user\",\"content\":\"recover\"}]}";
[$r, $r, $r, "GET /sleep", $r, $r, "GET /api/v1/health/upstreams"]
--- more_headers eval
[$AILink::Cache::LLM . "\nX-Mock-Status: 500",
 $AILink::Cache::LLM . "\nX-Mock-Status: 500", $AILink::Cache::LLM, "",
 $AILink::Cache::LLM, $AILink::Cache::LLM,
 "Authorization: Bearer $AILink::Cache::ADMIN_KEY"]
--- error_code eval
[500, 500, 503, 200, 200, 200, 200]
--- response_body_like eval
[qr/mock error/, qr/mock error/, qr/"code":"circuit_open","message":"[^"]*","param":null,"retry_after":(1|2),/,
 qr//, qr/Mock reply/, qr/Mock reply/,
 qr/"state":"closed","failures":0,"cooldown_remaining_secs":0/]
--- timeout: 10
--- no_error_log
[crit]



=== TEST 5: a probe that fails opens the breaker again
--- config eval
AILink::Cache::cache_config("ailink_breaker on; ailink_breaker_threshold 2; ailink_breaker_cooldown 2s;", "off")
--- request eval
my $r = "POST /v1/chat/completions
{\"model\":\"mock-1\",\"messages\":[{\"role\":\"user\",\"content\":\"still down\"}]}";
[$r, $r, "GET /sleep", $r, $r, "GET /api/v1/health/upstreams"]
--- more_headers eval
[$AILink::Cache::LLM . "\nX-Mock-Status: 500",
 $AILink::Cache::LLM . "\nX-Mock-Status: 500", "",
 $AILink::Cache::LLM . "\nX-Mock-Status: 502", $AILink::Cache::LLM,
 "Authorization: Bearer $AILink::Cache::ADMIN_KEY"]
--- error_code eval
[500, 500, 200, 502, 503, 200]
--- response_body_like eval
[qr/mock error/, qr/mock error/, qr//, qr/mock error 502/,
 qr/"code":"circuit_open"/,
 qr/"state":"open","failures":3,"cooldown_remaining_secs":(1|2),"last_error":"status 502"/]
--- timeout: 10
--- no_error_log
[crit]



=== TEST 6: connection errors count; another upstream is not affected
--- user_files eval
[['policy.yaml', <<'YAML']]
admin_keys:
  - 01752923a82f2b42fac78da7725c9fccc1ab7c3c32e0d1219410e402054b4a67
providers:
  openai:
    base_url: http://127.0.0.1:${TEST_NGINX_MOCK_PORT}/v1
  down:
    type: openai
    base_url: http://127.0.0.1:1/v1
routes:
  - prefix: down-
    provider: down
  - prefix: mock-
    provider: openai
credentials:
  openai: { env: AILINK_TEST_OPENAI_KEY }
tokens:
  - id: tok_llm
    project: test
    hash: 3db0ccb2481b4bf8de27af48aa74736c884db6030c77fc055ee12db3b46cc89f
    credentials: { openai: openai, down: openai }
YAML
--- config eval
AILink::Cache::cache_config("ailink_breaker on; ailink_breaker_threshold 2;", "off")
--- request eval
my $d = "POST /v1/chat/completions
{\"model\":\"down-1\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}";
my $m = "POST /v1/chat/completions
{\"model\":\"mock-1\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}";
[$d, $d, $d, $m, "GET /api/v1/health/upstreams"]
--- more_headers eval
[($AILink::Cache::LLM) x 4, "Authorization: Bearer $AILink::Cache::ADMIN_KEY"]
--- error_code eval
[502, 502, 503, 200, 200]
--- response_body_like eval
[qr/"code":"upstream_error"/, qr/"code":"upstream_error"/,
 qr/"code":"circuit_open"/, qr/Mock reply/,
 qr/^\{"upstreams":\[\{"name":"openai","state":"closed","failures":0,"cooldown_remaining_secs":0,"last_error":null\},\{"name":"anthropic","state":"closed","failures":0,"cooldown_remaining_secs":0,"last_error":null\},\{"name":"gemini","state":"closed","failures":0,"cooldown_remaining_secs":0,"last_error":null\},\{"name":"down","state":"open","failures":2,"cooldown_remaining_secs":(30|29),"last_error":"connection error"\}\]\}$/]



=== TEST 7: a token's own breaker from the file; other tokens go on
--- user_files eval
AILink::Cache::cache_files(undef, "    circuit_breaker: {enabled: true, failure_threshold: 1, recovery_cooldown_secs: 60}\n")
--- config eval
AILink::Cache::cache_config("", "off")
--- request eval
my $r = "POST /v1/chat/completions
{\"model\":\"mock-1\",\"messages\":[{\"role\":\"user\",\"content\":\"mine\"}]}";
[$r, $r, $r, "GET /api/v1/tokens/tok_llm/circuit-breaker"]
--- more_headers eval
[$AILink::Cache::LLM . "\nX-Mock-Status: 500", $AILink::Cache::LLM,
 $AILink::Cache::OTHER, "Authorization: Bearer $AILink::Cache::ADMIN_KEY"]
--- error_code eval
[500, 503, 200, 200]
--- response_headers_like eval
["", "Retry-After: (60|59)", "", ""]
--- response_body_like eval
[qr/mock error/, qr/"code":"circuit_open"/, qr/Mock reply/,
 qr/^\{"token_id":"tok_llm","enabled":true,"failure_threshold":1,"recovery_cooldown_secs":60,"half_open_max_requests":1,"state":"open","cooldown_remaining_secs":(60|59)\}$/]
--- no_error_log
[crit]



=== TEST 8: PATCH changes only the fields given; GET reads them back
--- user_files eval
AILink::Cache::cache_files(undef, "    circuit_breaker: {enabled: true, failure_threshold: 5, recovery_cooldown_secs: 60}\n")
--- config eval
AILink::Cache::cache_config("", "off")
--- request eval
["GET /api/v1/tokens/tok_llm/circuit-breaker",
 "PATCH /api/v1/tokens/tok_llm/circuit-breaker
{\"enabled\":true,\"failure_threshold\":3}",
 "GET /api/v1/tokens/tok_llm/circuit-breaker",
 "PATCH /api/v1/tokens/tok_llm/circuit-breaker
{\"half_open_max_requests\":2}",
 "PATCH /api/v1/tokens/tok_llm/circuit-breaker
{\"failure_threshold\":0}",
 "PATCH /api/v1/tokens/tok_llm/circuit-breaker
{\"colour\":\"red\"}",
 "PATCH /api/v1/tokens/tok_nope/circuit-breaker
{}",
 "GET /api/v1/tokens/tok_other/circuit-breaker",
 "GET /api/v1/tokens/tok_llm/circuit-breaker"]
--- more_headers eval
[("Authorization: Bearer $AILink::Cache::ADMIN_KEY") x 8,
 "Authorization: Bearer ailink_admin_wrong00000000000000000000001"]
--- error_code eval
[200, 200, 200, 200, 400, 400, 404, 200, 401]
--- response_body_like eval
[qr/^\{"token_id":"tok_llm","enabled":true,"failure_threshold":5,"recovery_cooldown_secs":60,"half_open_max_requests":1,"state":"closed","cooldown_remaining_secs":0\}$/,
 qr/^\{"token_id":"tok_llm","enabled":true,"failure_threshold":3,"recovery_cooldown_secs":60,"half_open_max_requests":1,/,
 qr/^\{"token_id":"tok_llm","enabled":true,"failure_threshold":3,"recovery_cooldown_secs":60,"half_open_max_requests":1,/,
 qr/^\{"token_id":"tok_llm","enabled":true,"failure_threshold":3,"recovery_cooldown_secs":60,"half_open_max_requests":2,/,
 qr/"code":"invalid_request"/, qr/"code":"invalid_request"/,
 qr/"code":"not_found"/,
 qr/^\{"token_id":"tok_other","enabled":false,"failure_threshold":5,"recovery_cooldown_secs":30,"half_open_max_requests":1,/,
 qr/"code":"invalid_token"/]
--- no_error_log
[crit]



=== TEST 9: a breaker enabled by PATCH takes effect at once
--- config eval
AILink::Cache::cache_config("", "off")
--- request eval
my $r = "POST /v1/chat/completions
{\"model\":\"mock-1\",\"messages\":[{\"role\":\"user\",\"content\":\"patched\"}]}";
[$r, "PATCH /api/v1/tokens/tok_other/circuit-breaker
{\"enabled\":true,\"failure_threshold\":1}", $r, $r, $r]
--- more_headers eval
[$AILink::Cache::OTHER . "\nX-Mock-Status: 500",
 "Authorization: Bearer $AILink::Cache::ADMIN_KEY",
 $AILink::Cache::OTHER . "\nX-Mock-Status: 500", $AILink::Cache::OTHER,
 $AILink::Cache::OTHER2]
--- error_code eval
[500, 200, 500, 503, 200]
--- no_error_log
[crit]



=== TEST 10: a cache hit is served while the breaker is open
--- config eval
AILink::Cache::cache_config("ailink_breaker on; ailink_breaker_threshold 1;")
--- request eval
my $r = "POST /v1/chat/completions
{\"model\":\"mock-1\",\"messages\":[{\"role\":\"user\",\"content\":\"cached before\"}]}";
my $f = "POST /v1/chat/completions
{\"model\":\"mock-1\",\"messages\":[{\"role\":\"user\",\"content\":\"then down\"}]}";
[$r, $f, $f, $r]
--- more_headers eval
[$AILink::Cache::LLM, $AILink::Cache::LLM . "\nX-Mock-Status: 500",
 $AILink::Cache::LLM, $AILink::Cache::LLM]
--- error_code eval
[200, 500, 503, 200]
--- response_headers eval
["X-AILink-Cache: MISS", "X-AILink-Cache: MISS", "", "X-AILink-Cache: HIT"]
--- no_error_log
[crit]
