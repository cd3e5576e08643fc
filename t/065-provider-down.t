# A translated provider that cannot be reached: the gateway's own 502 in
# the envelope, not mistaken for a provider error and translated again.

use lib 't/lib';
use AILink::Test;
use Test::Nginx::Socket 'no_plan';

add_block_preprocessor(\&ailink_defaults);
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: an unreachable Anthropic upstream
--- request
POST /v1/chat/completions
{"model":"claude-down-1","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code: 502
--- response_body_like: ^\{"error":\{"type":"api_error","code":"upstream_error","message":"the upstream could not be reached or sent an invalid response","param":null,"request_id":"[0-9a-f]{32}"\}\}$
--- error_log
connect() failed



=== TEST 2: the same as a stream
--- request
POST /v1/chat/completions
{"model":"claude-down-1","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code: 502
--- response_body_like: "code":"upstream_error"
