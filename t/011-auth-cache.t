# The per-worker cache of verified tokens (ngx_ailink_auth_cache.c): one
# worker serves every request of a block, so later requests hit the
# cache.  A hit must name the same token a SHA-256 lookup would, a token
# one character off must still be refused, and the checks after the
# lookup (disabled, expired) still apply.

use lib 't/lib';
use AILink::Test;
use Test::Nginx::Socket 'no_plan';

add_block_preprocessor(\&ailink_defaults);
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: cached tokens keep their identity; a near miss is refused
--- request eval
["GET /v1/me", "GET /v1/me", "GET /v1/me", "GET /v1/models", "GET /v1/me", "GET /audit"]
--- more_headers eval
["Authorization: Bearer $AILink::Test::ACTION_TOKEN",
 "Authorization: Bearer $AILink::Test::ACTION_TOKEN",
 "Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000002",
 "Authorization: Bearer $AILink::Test::LLM_TOKEN",
 "Authorization: Bearer $AILink::Test::ACTION_TOKEN",
 ""]
--- error_code eval
[200, 200, 401, 200, 200, 200]
--- response_body_like eval
[qr/"path"/, qr/"path"/, qr/"code":"invalid_token","message":"invalid token"/,
 qr/"object"/, qr/"path"/,
 qr/"token_id":"tok_action".*\n.*"token_id":"tok_action".*\n.*"status":401.*\n.*"token_id":"tok_llm".*\n.*"token_id":"tok_action"/]



=== TEST 2: a disabled and an expired token are refused every time
--- request eval
["GET /v1/me", "GET /v1/me", "GET /v1/me", "GET /v1/me"]
--- more_headers eval
["Authorization: Bearer $AILink::Test::DISABLED_TOKEN",
 "Authorization: Bearer $AILink::Test::DISABLED_TOKEN",
 "Authorization: Bearer $AILink::Test::EXPIRED_TOKEN",
 "Authorization: Bearer $AILink::Test::EXPIRED_TOKEN"]
--- error_code eval
[401, 401, 401, 401]
--- response_body_like eval
[qr/token is disabled/, qr/token is disabled/, qr/token has expired/,
 qr/token has expired/]
