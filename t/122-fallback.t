# Provider fallbacks: a model's "fallbacks" are tried in order when its
# upstream fails before anything was sent to the client (5xx, 429, a
# connection error, a timeout, an open breaker); each target gets the
# client's own request translated for its provider, with its own
# credential, and the answer says which target it came from.
# Streams: t/123-fallback-stream.t.

use lib 't/lib';
use AILink::Test;
use AILink::Fallback;
use Test::Nginx::Socket 'no_plan';

add_block_preprocessor(\&AILink::Fallback::defaults);
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: OpenAI answers 503: Claude answers, from an Anthropic body with the Anthropic key and no OpenAI key
--- request eval
["POST /_mock/reset", AILink::Fallback::mock_fail("/v1/chat/completions", 503),
 AILink::Fallback::chat("gpt-4o", "hello there"),
 "GET /_mock/requests?path_prefix=/v1/messages",
 "GET /_mock/requests?path_prefix=/v1/chat/completions"]
--- more_headers eval
["", "", $AILink::Fallback::AUTH, "", ""]
--- error_code eval
[200, 200, 200, 200, 200]
--- response_headers eval
["", "", "X-AILink-Provider: anthropic", "", ""]
--- response_body_like eval
[qr/ok/, qr/ok|armed|path_prefix/,
 qr/^\{"id":"chatcmpl-[0-9a-f]+","object":"chat.completion","created":\d+,"model":"claude-sonnet-4-5","choices":\[\{"index":0,"message":\{"role":"assistant","content":"Mock reply from anthropic to: hello there"/,
 qr/^\[\{"seq":\d+,(?=.*"x-api-key":"sk-ant-test-0001")(?!.*"authorization")(?!.*sk-test-openai)(?=.*"anthropic-version":"2023-06-01")(?=.*"json":\{"model":"claude-sonnet-4-5","messages":\[\{"role":"user","content":\[\{"type":"text","text":"hello there"\}\]\}\],"max_tokens":4096\})(?!.*"seq":\d+.*"seq").*\]$/s,
 qr/^\[\{"seq":\d+,(?=.*"authorization":"Bearer sk-test-openai-secret-0001")(?!.*x-api-key)(?=.*"json":\{"model":"gpt-4o","messages")(?!.*"seq":\d+.*"seq").*\]$/s]
--- no_error_log
[error]
[alert]
[crit]



=== TEST 2: the audit record names the target that answered and the attempt that failed
--- request eval
["POST /_mock/reset", AILink::Fallback::mock_fail("/v1/chat/completions", 500),
 AILink::Fallback::chat("gpt-4o", "audit me"), "GET /audit"]
--- more_headers eval
["", "", $AILink::Fallback::AUTH, ""]
--- error_code eval
[200, 200, 200, 200]
--- response_body_like eval
[qr/ok/, qr/.*/, qr/Mock reply from anthropic/,
 qr/"upstream":"http:\/\/127\.0\.0\.1:\d+\/v1","provider":"anthropic","model":"claude-sonnet-4-5","status":200,"error":null,.*"fallback_attempts":\[\{"provider":"openai","model":"gpt-4o","status":500,"error":"status 500"\}\]\}\n$/]
--- no_error_log
[error]



=== TEST 3: 429 falls back; OpenAI and Anthropic both failing leave Gemini, translated
--- request eval
["POST /_mock/reset", AILink::Fallback::mock_fail("/v1/chat/completions", 429),
 AILink::Fallback::mock_fail("/v1/messages", 529), AILink::Fallback::chat("gpt-4o", "third time"),
 "GET /_mock/requests?path_prefix=/v1beta", "GET /audit"]
--- more_headers eval
["", "", "", $AILink::Fallback::AUTH, "", ""]
--- error_code eval
[200, 200, 200, 200, 200, 200]
--- response_headers eval
["", "", "", "X-AILink-Provider: gemini", "", ""]
--- response_body_like eval
[qr/ok/, qr/.*/, qr/.*/,
 qr/"model":"gemini-2.5-pro".*"content":"Mock reply from gemini to: third time"/,
 qr/^\[\{"seq":\d+,"time":[\d.]+,"method":"POST","path":"\/v1beta\/models\/gemini-2\.5-pro:generateContent"(?=.*"x-goog-api-key":"gm-test-0001")(?!.*"authorization")(?!.*"x-api-key")(?!.*anthropic-version)(?=.*"contents":\[\{"role":"user","parts":\[\{"text":"third time"\}\]\}\])/s,
 qr/"provider":"gemini","model":"gemini-2.5-pro","status":200,.*"fallback_attempts":\[\{"provider":"openai","model":"gpt-4o","status":429,"error":"status 429"\},\{"provider":"anthropic","model":"claude-sonnet-4-5","status":529,"error":"status 529"\}\]\}\n$/]
--- no_error_log
[error]



=== TEST 4: connection refused falls back (through the error page)
--- request eval
["POST /_mock/reset", AILink::Fallback::chat("gpt-down-1", "anyone home"),
 "GET /_mock/requests?path_prefix=/v1/messages", "GET /audit"]
--- more_headers eval
["", $AILink::Fallback::AUTH, "", ""]
--- error_code eval
[200, 200, 200, 200]
--- response_headers eval
["", "X-AILink-Provider: anthropic", "", ""]
--- response_body_like eval
[qr/ok/, qr/"model":"claude-sonnet-4-5".*Mock reply from anthropic to: anyone home/,
 qr/^\[\{"seq":\d+,(?=.*"x-api-key":"sk-ant-test-0001")(?!.*"authorization")(?=.*"model":"claude-sonnet-4-5")(?!.*"seq":\d+.*"seq").*\]$/s,
 qr/"path":"\/v1\/chat\/completions","upstream":"http:\/\/127\.0\.0\.1:\d+\/v1","provider":"anthropic","model":"claude-sonnet-4-5","status":200,.*"fallback_attempts":\[\{"provider":"openai-down","model":"gpt-down-1","status":null,"error":"connection error"\}\]\}\n$/]
--- no_error_log
[alert]
[crit]



=== TEST 5: every target failing: the last upstream's own error, in the envelope
--- request eval
["POST /_mock/reset", AILink::Fallback::mock_fail("/v1/chat/completions", 503),
 AILink::Fallback::mock_fail("/v1/messages", 500), AILink::Fallback::mock_fail("/v1beta", 502),
 AILink::Fallback::chat("gpt-4o", "nobody"),
 "GET /_mock/requests?path_prefix=/v1", "GET /audit"]
--- more_headers eval
["", "", "", "", $AILink::Fallback::AUTH, "", ""]
--- error_code eval
[200, 200, 200, 200, 502, 200, 200]
--- response_body_like eval
[qr/ok/, qr/.*/, qr/.*/, qr/.*/,
 qr/^\{"error":\{.*"message":"mock error 502".*\}\}$/s,
 qr/^\[\{"seq":\d+,(?:(?!"seq").)*"seq":\d+,(?:(?!"seq").)*"seq":\d+,(?:(?!"seq").)*\]$/s,
 qr/"provider":"gemini","model":"gemini-2.5-pro","status":502,.*"fallback_attempts":\[\{"provider":"openai","model":"gpt-4o","status":503,"error":"status 503"\},\{"provider":"anthropic","model":"claude-sonnet-4-5","status":500,"error":"status 500"\}\]\}\n$/]
--- no_error_log
[alert]
[crit]



=== TEST 6: ailink_fallback_tries bounds the attempts: 2 tries, the second target's error is the client's
--- config eval
AILink::Fallback::config("ailink_fallback_tries 2;")
--- request eval
["POST /_mock/reset", AILink::Fallback::mock_fail("/v1/chat/completions", 503),
 AILink::Fallback::mock_fail("/v1/messages", 500), AILink::Fallback::chat("gpt-4o", "twice"),
 "GET /_mock/requests?path_prefix=/v1beta"]
--- more_headers eval
["", "", "", $AILink::Fallback::AUTH, ""]
--- error_code eval
[200, 200, 200, 500, 200]
--- response_body_like eval
[qr/ok/, qr/.*/, qr/.*/,
 qr/^\{"error":\{.*"message":"mock error 500"/s,
 qr/^\[\]$/]
--- no_error_log
[alert]
[crit]



=== TEST 7: ailink_fallback_on without 5xx: a 503 is the client's; 4xx never falls back
--- config eval
AILink::Fallback::config("ailink_fallback_on error timeout 429;")
--- request eval
["POST /_mock/reset", AILink::Fallback::mock_fail("/v1/chat/completions", 503),
 AILink::Fallback::chat("gpt-4o", "no"), AILink::Fallback::mock_fail("/v1/chat/completions", 400),
 AILink::Fallback::chat("gpt-4o", "no"), "GET /_mock/requests?path_prefix=/v1/messages"]
--- more_headers eval
["", "", $AILink::Fallback::AUTH, "", $AILink::Fallback::AUTH, ""]
--- error_code eval
[200, 200, 503, 200, 400, 200]
--- response_body_like eval
[qr/ok/, qr/.*/, qr/mock error 503/, qr/.*/, qr/mock error 400/, qr/^\[\]$/]
--- no_error_log
[alert]
[crit]



=== TEST 8: a model without fallbacks is unchanged: its 503 is the client's, nothing else is asked
--- request eval
["POST /_mock/reset", AILink::Fallback::mock_fail("/v1/chat/completions", 503),
 AILink::Fallback::chat("gpt-4o-mini", "solo"), "GET /_mock/requests?path_prefix=/v1/"]
--- more_headers eval
["", "", $AILink::Fallback::AUTH, ""]
--- error_code eval
[200, 200, 503, 200]
--- response_headers eval
["", "", "X-AILink-Provider: openai", ""]
--- response_body_like eval
[qr/ok/, qr/.*/, qr/mock error 503/,
 qr/^\[\{"seq":\d+,(?:(?!"seq").)*\]$/s]
--- no_error_log
[alert]
[crit]



=== TEST 9: an open breaker moves on without touching its upstream; failed attempts feed their breakers
--- config eval
AILink::Fallback::config("ailink_breaker on; ailink_breaker_threshold 1; ailink_breaker_cooldown 30s;")
--- request eval
["POST /_mock/reset", AILink::Fallback::mock_fail("/v1/chat/completions", 500),
 AILink::Fallback::chat("gpt-4o", "first"), AILink::Fallback::chat("gpt-4o", "second"),
 "GET /_mock/requests?path_prefix=/v1/chat/completions",
 "GET /api/v1/health/upstreams", "GET /audit"]
--- more_headers eval
["", "", $AILink::Fallback::AUTH, $AILink::Fallback::AUTH, "", "Authorization: Bearer ailink_admin_test0000000000000000000000001", ""]
--- user_files eval
[['fallback.yaml', $AILink::Fallback::YAML . "admin_keys:\n  - 01752923a82f2b42fac78da7725c9fccc1ab7c3c32e0d1219410e402054b4a67\n"]]
--- error_code eval
[200, 200, 200, 200, 200, 200, 200]
--- response_headers eval
["", "", "X-AILink-Provider: anthropic", "X-AILink-Provider: anthropic", "", "", ""]
--- response_body_like eval
[qr/ok/, qr/.*/, qr/Mock reply from anthropic to: first/,
 qr/Mock reply from anthropic to: second/,
 qr/^\[\{"seq":\d+,(?:(?!"seq").)*\]$/s,
 qr/^\{"upstreams":\[\{"name":"openai","state":"open","failures":1,"cooldown_remaining_secs":(30|29),"last_error":"status 500"\},\{"name":"anthropic","state":"closed","failures":0/,
 qr/"fallback_attempts":\[\{"provider":"openai","model":"gpt-4o","status":500,"error":"status 500"\}\]\}\n.*"provider":"anthropic","model":"claude-sonnet-4-5","status":200,.*"fallback_attempts":\[\{"provider":"openai","model":"gpt-4o","status":null,"error":"circuit open"\}\]\}\n$/s]
--- no_error_log
[error]



=== TEST 10: a target without a credential for an https provider is skipped; a pinned provider is used
--- request eval
["POST /_mock/reset", AILink::Fallback::mock_fail("/v1/chat/completions", 503),
 AILink::Fallback::chat("gpt-chain-x", "pinned"),
 "GET /_mock/requests?path_prefix=/v1/chat/completions", "GET /audit"]
--- more_headers eval
["", "", $AILink::Fallback::AUTH, "", ""]
--- error_code eval
[200, 200, 200, 200, 200]
--- response_headers eval
["", "", "X-AILink-Provider: openai", "", ""]
--- response_body_like eval
[qr/ok/, qr/.*/, qr/Mock reply from openai to: pinned/,
 qr/^\[\{"seq":\d+,.*"json":\{"model":"gpt-chain-x".*"seq":\d+,.*"json":\{"model":"gpt-4o-mini","messages"/s,
 qr/"provider":"openai","model":"gpt-4o-mini","status":200,.*"fallback_attempts":\[\{"provider":"openai","model":"gpt-chain-x","status":503,"error":"status 503"\},\{"provider":"anthropic-keyed","model":"claude-keyed-1","status":null,"error":"no credential for provider \\"anthropic-keyed\\": [^"]*"\}\]\}\n$/]
--- no_error_log
[error]
