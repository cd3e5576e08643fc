# The response cache: MISS then HIT for the same request (key order and
# whitespace do not matter), X-AILink-No-Cache, project isolation,
# temperature, expiry, what is never stored (errors, cut streams, answers
# over the entry limit), eviction in a full zone, audit fields, policies
# still applied to hits, the stats/flush API.  Streams: t/120-cache-stream.t.

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

=== TEST 1: MISS, then HIT whatever the key order and whitespace; one upstream call
--- request eval
["POST /_mock/reset",
"POST /v1/chat/completions
{\"model\":\"mock-1\",\"messages\":[{\"role\":\"user\",\"content\":\"cache one\"}],\"max_tokens\":5}",
"POST /v1/chat/completions
{ \"max_tokens\" : 5.0,
  \"messages\": [ {\"content\":\"cache one\", \"role\":\"user\"} ],
  \"model\": \"mock-1\" }",
"GET /_mock/requests?path_prefix=/v1/chat/completions"]
--- more_headers eval
["", $AILink::Cache::LLM, $AILink::Cache::LLM, ""]
--- error_code eval
[200, 200, 200, 200]
--- response_headers eval
["", "X-AILink-Cache: MISS\nX-AILink-Provider: openai",
 "X-AILink-Cache: HIT\nX-AILink-Provider: openai\nContent-Type: application/json\nX-Mock-Seq:", ""]
--- response_body_like eval
[qr/ok/, qr/^\{.*"content":"Mock reply from openai to: cache one"/s,
 qr/^\{.*"content":"Mock reply from openai to: cache one"/s,
 qr/^\[\{"seq":\d+,(?:(?!"seq").)*\]$/s]
--- no_error_log
[error]



=== TEST 2: the hit is the miss's body, byte for byte
--- request eval
["POST /v1/chat/completions
{\"model\":\"mock-1\",\"messages\":[{\"role\":\"user\",\"content\":\"same bytes\"}]}",
"POST /v1/chat/completions
{\"model\":\"mock-1\",\"messages\":[{\"role\":\"user\",\"content\":\"same bytes\"}]}"]
--- more_headers eval
[$AILink::Cache::LLM, $AILink::Cache::LLM]
--- response_body_like eval
[qr/"id":"(chatcmpl-[^"]+)"/, qr/"id":"chatcmpl-[^"]+"/]
--- response_headers eval
["X-AILink-Cache: MISS", "X-AILink-Cache: HIT"]
--- no_error_log
[error]



=== TEST 3: different values, models or paths are different keys
--- request eval
["POST /v1/chat/completions
{\"model\":\"mock-1\",\"messages\":[{\"role\":\"user\",\"content\":\"k\"}]}",
"POST /v1/chat/completions
{\"model\":\"mock-2\",\"messages\":[{\"role\":\"user\",\"content\":\"k\"}]}",
"POST /v1/chat/completions
{\"model\":\"mock-1\",\"messages\":[{\"role\":\"user\",\"content\":\"k \"}]}",
"POST /v1/chat/completions
{\"model\":\"mock-1\",\"messages\":[{\"role\":\"user\",\"content\":\"k\"}],\"n\":1}",
"POST /v1/chat/completions
{\"model\":\"mock-1\",\"messages\":[{\"content\":\"k\",\"role\":\"user\"}]}",
"POST /v1/embeddings
{\"model\":\"mock-1\",\"input\":\"k\"}",
"POST /v1/embeddings
{\"input\":\"k\",\"model\":\"mock-1\"}"]
--- more_headers eval
[($AILink::Cache::LLM) x 7]
--- error_code eval
[200, 200, 200, 200, 200, 200, 200]
--- response_headers eval
["X-AILink-Cache: MISS", "X-AILink-Cache: MISS", "X-AILink-Cache: MISS",
 "X-AILink-Cache: MISS", "X-AILink-Cache: HIT", "X-AILink-Cache: MISS",
 "X-AILink-Cache: HIT"]
--- no_error_log
[error]



=== TEST 4: X-AILink-No-Cache: true neither reads nor writes
--- request eval
my $r = "POST /v1/chat/completions
{\"model\":\"mock-1\",\"messages\":[{\"role\":\"user\",\"content\":\"no cache\"}]}";
[$r, $r, $r, $r]
--- more_headers eval
[$AILink::Cache::LLM . "\nX-AILink-No-Cache: true",
 $AILink::Cache::LLM . "\nX-AILink-No-Cache: TRUE",
 $AILink::Cache::LLM, $AILink::Cache::LLM . "\nX-AILink-No-Cache: true"]
--- response_headers eval
["X-AILink-Cache: BYPASS", "X-AILink-Cache: BYPASS", "X-AILink-Cache: MISS",
 "X-AILink-Cache: BYPASS"]
--- response_body_like eval
[qr/Mock reply/, qr/Mock reply/, qr/Mock reply/, qr/Mock reply/]
--- no_error_log
[error]



=== TEST 5: projects never share entries; tokens of one project do
--- request eval
my $r = "POST /v1/chat/completions
{\"model\":\"mock-1\",\"messages\":[{\"role\":\"user\",\"content\":\"isolated\"}]}";
[$r, $r, $r, $r]
--- more_headers eval
[$AILink::Cache::LLM, $AILink::Cache::OTHER, $AILink::Cache::OTHER2,
 $AILink::Cache::LLM]
--- response_headers eval
["X-AILink-Cache: MISS", "X-AILink-Cache: MISS", "X-AILink-Cache: HIT",
 "X-AILink-Cache: HIT"]
--- no_error_log
[error]



=== TEST 6: ailink_cache_shared on: one entry for every project
--- config eval: AILink::Cache::cache_config("ailink_cache_shared on;")
--- request eval
my $r = "POST /v1/chat/completions
{\"model\":\"mock-1\",\"messages\":[{\"role\":\"user\",\"content\":\"shared\"}]}";
[$r, $r]
--- more_headers eval
[$AILink::Cache::LLM, $AILink::Cache::OTHER]
--- response_headers eval
["X-AILink-Cache: MISS", "X-AILink-Cache: HIT"]
--- no_error_log
[error]



=== TEST 7: temperature above 0 bypasses unless ailink_cache_nondeterministic
--- request eval
my $r = "POST /v1/chat/completions
{\"model\":\"mock-1\",\"temperature\":0.7,\"messages\":[{\"role\":\"user\",\"content\":\"hot\"}]}";
my $z = "POST /v1/chat/completions
{\"model\":\"mock-1\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"hot\"}]}";
[$r, $r, $z, $z]
--- more_headers eval
[($AILink::Cache::LLM) x 4]
--- response_headers eval
["X-AILink-Cache: BYPASS", "X-AILink-Cache: BYPASS", "X-AILink-Cache: MISS",
 "X-AILink-Cache: HIT"]
--- no_error_log
[error]



=== TEST 8: ailink_cache_nondeterministic on caches them
--- config eval: AILink::Cache::cache_config("ailink_cache_nondeterministic on;")
--- request eval
my $r = "POST /v1/chat/completions
{\"model\":\"mock-1\",\"temperature\":0.7,\"messages\":[{\"role\":\"user\",\"content\":\"hot\"}]}";
[$r, $r]
--- more_headers eval
[($AILink::Cache::LLM) x 2]
--- response_headers eval
["X-AILink-Cache: MISS", "X-AILink-Cache: HIT"]
--- no_error_log
[error]



=== TEST 9: entries expire after ailink_cache_ttl
--- config eval: AILink::Cache::cache_config("ailink_cache_ttl 2s;")
--- request eval
my $r = "POST /v1/chat/completions
{\"model\":\"mock-1\",\"messages\":[{\"role\":\"user\",\"content\":\"short lived\"}]}";
[$r, $r, "GET /sleep", $r, $r]
--- more_headers eval
[$AILink::Cache::LLM, $AILink::Cache::LLM, "", $AILink::Cache::LLM,
 $AILink::Cache::LLM]
--- response_headers eval
["X-AILink-Cache: MISS", "X-AILink-Cache: HIT", "", "X-AILink-Cache: MISS",
 "X-AILink-Cache: HIT"]
--- timeout: 10
--- no_error_log
[error]



=== TEST 10: errors are not stored: a 500, then the same request is a MISS
--- request eval
my $r = "POST /v1/chat/completions
{\"model\":\"mock-1\",\"messages\":[{\"role\":\"user\",\"content\":\"flaky\"}]}";
[$r, $r, $r]
--- more_headers eval
[$AILink::Cache::LLM . "\nX-Mock-Status: 500", $AILink::Cache::LLM,
 $AILink::Cache::LLM]
--- error_code eval
[500, 200, 200]
--- response_headers eval
["X-AILink-Cache: MISS", "X-AILink-Cache: MISS", "X-AILink-Cache: HIT"]
--- no_error_log
[crit]



=== TEST 11: answers over ailink_cache_max_entry are not stored
--- config eval: AILink::Cache::cache_config("ailink_cache_max_entry 1k;")
--- request eval
my $b = "POST /v1/chat/completions
{\"model\":\"mock-1\",\"messages\":[{\"role\":\"user\",\"content\":\"big\"}]}";
my $s = "POST /v1/chat/completions
{\"model\":\"mock-1\",\"messages\":[{\"role\":\"user\",\"content\":\"small\"}]}";
[$b, $b, $s, $s]
--- more_headers eval
[$AILink::Cache::LLM . "\nX-Mock-Raw-Body: {\"id\":\"x\",\"pad\":\""
 . ("x" x 2000) . "\"}",
 $AILink::Cache::LLM, $AILink::Cache::LLM, $AILink::Cache::LLM]
--- response_headers eval
["X-AILink-Cache: MISS", "X-AILink-Cache: MISS", "X-AILink-Cache: MISS",
 "X-AILink-Cache: HIT"]
--- no_error_log
[error]



=== TEST 12: a full zone evicts the oldest entries and keeps answering
--- http_config
    ailink_config $TEST_NGINX_HTML_DIR/policy.yaml;
    ailink_state_zone ailink_state 1m;
    ailink_cache_zone ailink_cache_small 32k;
--- request eval
my @r = map { "POST /v1/chat/completions
{\"model\":\"mock-1\",\"messages\":[{\"role\":\"user\",\"content\":\"evict $_\"}]}" } 1 .. 40;
[@r, $r[39], $r[0]]
--- more_headers eval
[($AILink::Cache::LLM) x 42]
--- error_code eval
[(200) x 42]
--- response_headers eval
[(("X-AILink-Cache: MISS") x 40), "X-AILink-Cache: HIT", "X-AILink-Cache: MISS"]
--- no_error_log
[error]



=== TEST 13: the audit: MISS, then HIT with cost 0 and the cost it saved
--- request eval
my $r = "POST /v1/chat/completions
{\"model\":\"mock-priced\",\"messages\":[{\"role\":\"user\",\"content\":\"audit me\"}]}";
[$r, $r, "GET /audit"]
--- more_headers eval
[$AILink::Cache::LLM, $AILink::Cache::LLM, ""]
--- response_body_like eval
[qr/Mock reply/, qr/Mock reply/,
 qr/"status":200,.*"cost_usd":\d+\.\d+.*,"cache":"MISS"\}\n.*"status":200,.*"prompt_tokens":null.*"cost_usd":0,.*"cache":"HIT","cache_saved_usd":[1-9]\d*\.\d{8},"cache_saved_tokens":[1-9]\d*\}\n$/s]
--- no_error_log
[error]



=== TEST 14: policies still apply to hits: a rate limit counts them
--- user_files eval
AILink::Cache::cache_files(<<'YAML')
policies:
  - name: two-a-minute
    apply_to: all
    rules:
      - then: {rate_limit: {requests_per_minute: 2}}
YAML
--- request eval
my $r = "POST /v1/chat/completions
{\"model\":\"mock-1\",\"messages\":[{\"role\":\"user\",\"content\":\"limited\"}]}";
[$r, $r, $r]
--- more_headers eval
[($AILink::Cache::LLM) x 3]
--- error_code eval
[200, 200, 429]
--- response_headers eval
["X-AILink-Cache: MISS", "X-AILink-Cache: HIT", "X-AILink-Cache:"]
--- no_error_log
[error]



=== TEST 15: the cache API: stats and flush need an admin key; a flush empties
--- request eval
my $r = "POST /v1/chat/completions
{\"model\":\"mock-1\",\"messages\":[{\"role\":\"user\",\"content\":\"flush me\"}]}";
[$r, $r, "GET /api/v1/cache/stats", "POST /api/v1/cache/flush",
 "POST /api/v1/cache/flush", "GET /api/v1/cache/stats", $r, $r]
--- more_headers eval
[$AILink::Cache::LLM, $AILink::Cache::LLM,
 "Authorization: Bearer $AILink::Cache::ADMIN_KEY",
 "Authorization: Bearer ailink_admin_wrong00000000000000000000001",
 "Authorization: Bearer $AILink::Cache::ADMIN_KEY",
 $AILink::Cache::LLM, $AILink::Cache::LLM, $AILink::Cache::LLM]
--- error_code eval
[200, 200, 200, 401, 200, 401, 200, 200]
--- response_body_like eval
[qr/Mock reply/, qr/Mock reply/,
 qr/^\{"zone":"ailink_cache","hits":1,"misses":1,"bypasses":0,"stores":1,"store_skips":0,"flushes":0\}$/,
 qr/"code":"invalid_token"/,
 qr/^\{"zone":"ailink_cache","hits":1,"misses":1,"bypasses":0,"stores":1,"store_skips":0,"flushes":1\}$/,
 qr/"code":"invalid_token"/, qr/Mock reply/, qr/Mock reply/]
--- response_headers eval
["X-AILink-Cache: MISS", "X-AILink-Cache: HIT", "", "", "", "",
 "X-AILink-Cache: MISS", "X-AILink-Cache: HIT"]
--- no_error_log
[error]



=== TEST 16: a token's cache_ttl_secs: 0 never caches for it; other tokens do
--- user_files eval
AILink::Cache::cache_files(undef, "    cache_ttl_secs: 0\n")
--- request eval
my $r = "POST /v1/chat/completions
{\"model\":\"mock-1\",\"messages\":[{\"role\":\"user\",\"content\":\"token ttl\"}]}";
[$r, $r, $r, $r]
--- more_headers eval
[$AILink::Cache::LLM, $AILink::Cache::LLM, $AILink::Cache::OTHER,
 $AILink::Cache::OTHER2]
--- response_headers eval
["X-AILink-Cache: BYPASS", "X-AILink-Cache: BYPASS", "X-AILink-Cache: MISS",
 "X-AILink-Cache: HIT"]
--- no_error_log
[error]



=== TEST 17: a token's cache_ttl_secs overrides ailink_cache_ttl
--- user_files eval
AILink::Cache::cache_files(undef, "    cache_ttl_secs: 2\n")
--- config eval: AILink::Cache::cache_config("ailink_cache_ttl 1h;")
--- request eval
my $r = "POST /v1/chat/completions
{\"model\":\"mock-1\",\"messages\":[{\"role\":\"user\",\"content\":\"token ttl 2\"}]}";
[$r, $r, "GET /sleep", $r]
--- more_headers eval
[$AILink::Cache::LLM, $AILink::Cache::LLM, "", $AILink::Cache::LLM]
--- response_headers eval
["X-AILink-Cache: MISS", "X-AILink-Cache: HIT", "", "X-AILink-Cache: MISS"]
--- timeout: 10
--- no_error_log
[error]



=== TEST 18: an error page after a miss (cache on for the server) looks up nothing again
--- user_files eval
[['policy.yaml', <<'YAML']]
admin_keys:
  - 01752923a82f2b42fac78da7725c9fccc1ab7c3c32e0d1219410e402054b4a67
providers:
  down:
    type: openai
    base_url: http://127.0.0.1:1/v1
routes:
  - prefix: down-
    provider: down
credentials:
  openai: { env: AILINK_TEST_OPENAI_KEY }
tokens:
  - id: tok_llm
    project: test
    hash: 3db0ccb2481b4bf8de27af48aa74736c884db6030c77fc055ee12db3b46cc89f
    credentials: { down: openai }
YAML
--- config eval
"ailink_cache on;\n" . AILink::Cache::cache_config()
--- request eval
["POST /v1/chat/completions
{\"model\":\"down-1\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
 "GET /api/v1/cache/stats"]
--- more_headers eval
[$AILink::Cache::LLM, "Authorization: Bearer $AILink::Cache::ADMIN_KEY"]
--- error_code eval
[502, 200]
--- response_body_like eval
[qr/"code":"upstream_error"/,
 qr/^\{"zone":"ailink_cache","hits":0,"misses":1,"bypasses":0,"stores":0,/]
