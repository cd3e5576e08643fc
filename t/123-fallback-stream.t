# Fallbacks and streams: a stream falls back only before its first byte
# (a failing status, a connection error, a timeout before the response
# headers); once a response started, it is the client's, cut or not.
# Also: the total time bound (ailink_fallback_timeout).

use lib 't/lib';
use AILink::Test;
use AILink::Fallback;
use Test::Nginx::Socket 'no_plan';

add_block_preprocessor(\&AILink::Fallback::defaults);
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: a stream whose OpenAI upstream answers 503 is Claude's stream, translated, ending in [DONE]
--- request eval
["POST /_mock/reset", AILink::Fallback::mock_fail("/v1/chat/completions", 503),
 AILink::Fallback::chat("gpt-4o", "stream it", ",\"stream\":true"),
 "GET /_mock/requests?path_prefix=/v1/messages"]
--- more_headers eval
["", "", $AILink::Fallback::AUTH, ""]
--- error_code eval
[200, 200, 200, 200]
--- response_headers eval
["", "", "X-AILink-Provider: anthropic\nContent-Type: text/event-stream", ""]
--- response_body_like eval
[qr/ok/, qr/.*/,
 qr/^data: \{"id":"chatcmpl-[0-9a-f]+","object":"chat.completion.chunk","created":\d+,"model":"claude-sonnet-4-5".*"content":"Mock.*\n\ndata: \[DONE\]\n\n$/s,
 qr/^\[\{"seq":\d+,(?=.*"x-api-key":"sk-ant-test-0001")(?!.*"authorization")(?=.*"json":\{"model":"claude-sonnet-4-5","messages":.*"stream":true)(?!.*"seq":\d+.*"seq").*\]$/s]
--- no_error_log
[error]



=== TEST 2: a stream cut after its first events is not retried: the client keeps what it got
--- request eval
["POST /_mock/reset",
 "POST /_mock/next\n{\"path_prefix\":\"/v1/chat/completions\",\"count\":1,\"headers\":{\"x-mock-drop-after\":\"2\",\"x-mock-events\":\"5\"}}",
 AILink::Fallback::chat("gpt-4o", "cut me", ",\"stream\":true"),
 "GET /_mock/requests?path_prefix=/v1/messages", "GET /audit"]
--- more_headers eval
["", "", $AILink::Fallback::AUTH, "", ""]
--- error_code eval
[200, 200, 200, 200, 200]
--- response_headers eval
["", "", "X-AILink-Provider: openai", "", ""]
--- response_body_like eval
[qr/ok/, qr/.*/,
 qr/^data: \{"id":"chatcmpl-[^\n]*"model":"gpt-4o"/s,
 qr/^\[\]$/,
 qr/"provider":"openai","model":"gpt-4o","status":200,(?!.*fallback_attempts)/]
--- no_error_log
[alert]
[crit]



=== TEST 3: a timeout before the response headers falls back (504, through the error page)
--- config eval
AILink::Fallback::config("proxy_read_timeout 500ms;")
--- request eval
["POST /_mock/reset",
 "POST /_mock/next\n{\"path_prefix\":\"/v1/chat/completions\",\"count\":1,\"headers\":{\"x-mock-delay-ms\":\"1500\"}}",
 AILink::Fallback::chat("gpt-4o", "too slow", ",\"stream\":true"),
 "GET /audit"]
--- more_headers eval
["", "", $AILink::Fallback::AUTH, ""]
--- error_code eval
[200, 200, 200, 200]
--- response_headers eval
["", "", "X-AILink-Provider: anthropic", ""]
--- response_body_like eval
[qr/ok/, qr/.*/,
 qr/^data: .*"model":"claude-sonnet-4-5".*data: \[DONE\]\n\n$/s,
 qr/"provider":"anthropic","model":"claude-sonnet-4-5","status":200,.*"fallback_attempts":\[\{"provider":"openai","model":"gpt-4o","status":null,"error":"timeout"\}\]\}\n$/]
--- no_error_log
[alert]
[crit]



=== TEST 4: an OpenAI target of a stream is asked for usage; the chunk the client did not ask for is dropped
--- user_files eval
[['fallback.yaml', $AILink::Fallback::YAML . "  claude-first: [gpt-4o-mini]\n"]]
--- request eval
["POST /_mock/reset", AILink::Fallback::mock_fail("/v1/messages", 500),
 AILink::Fallback::chat("claude-first", "usage", ",\"stream\":true"),
 "GET /_mock/requests?path_prefix=/v1/chat/completions"]
--- more_headers eval
["", "", $AILink::Fallback::AUTH, ""]
--- error_code eval
[200, 200, 200, 200]
--- response_headers eval
["", "", "X-AILink-Provider: openai", ""]
--- response_body_like eval
[qr/ok/, qr/.*/,
 qr/^(?!.*"usage":\{).*"model":"gpt-4o-mini".*data: \[DONE\]\n\n$/s,
 qr/^\[\{"seq":\d+,(?=.*"authorization":"Bearer sk-test-openai-secret-0001")(?!.*x-api-key)(?!.*anthropic-version)(?=.*"json":\{"stream_options":\{"include_usage":true\},"model":"gpt-4o-mini")(?!.*"seq":\d+.*"seq").*\]$/s]
--- no_error_log
[error]



=== TEST 5: ailink_fallback_timeout: a failure after the total time is the client's
--- config eval
AILink::Fallback::config("ailink_fallback_timeout 300ms;")
--- request eval
["POST /_mock/reset",
 "POST /_mock/next\n{\"path_prefix\":\"/v1/chat/completions\",\"count\":1,\"headers\":{\"x-mock-delay-ms\":\"600\",\"x-mock-status\":\"503\"}}",
 AILink::Fallback::chat("gpt-4o", "late"),
 "GET /_mock/requests?path_prefix=/v1/messages"]
--- more_headers eval
["", "", $AILink::Fallback::AUTH, ""]
--- error_code eval
[200, 200, 503, 200]
--- response_body_like eval
[qr/ok/, qr/.*/, qr/mock error 503/, qr/^\[\]$/]
--- no_error_log
[alert]
[crit]
