# Token authentication: the bearer token is looked up by its SHA-256; every
# refusal is a 401 in the contract's envelope, and is audited.

use lib 't/lib';
use AILink::Test;
use Test::Nginx::Socket 'no_plan';

add_block_preprocessor(\&ailink_defaults);
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: a valid token reaches the upstream
--- request
GET /v1/customers?limit=3
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001
--- error_code: 200
--- response_body_like: "path":\s*"/api/v1/customers"
--- response_headers_like
X-AILink-Request-Id: [0-9a-f]{32}
--- no_error_log
[error]
[alert]
[crit]



=== TEST 2: no Authorization header
--- request
GET /v1/customers
--- error_code: 401
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"error":\{"type":"authentication_error","code":"invalid_token","message":"missing bearer token in the Authorization header","param":null,"request_id":"[0-9a-f]{32}"\}\}$
--- error_log
ailink: token refused: missing bearer token



=== TEST 3: not a Bearer scheme
--- request
GET /v1/customers
--- more_headers
Authorization: Basic dXNlcjpwYXNz
--- error_code: 401
--- response_body_like: "code":"invalid_token","message":"the Authorization header must be \\"Bearer <token>\\""



=== TEST 4: unknown token with the right shape
--- request
GET /v1/customers
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_doesnotexist000000000000001
--- error_code: 401
--- response_body_like: "code":"invalid_token","message":"invalid token"
--- error_log
ailink: token refused: invalid token



=== TEST 5: a provider key instead of a virtual token
--- request
GET /v1/customers
--- more_headers
Authorization: Bearer sk-proj-abcdefghijklmnopqrstuvwxyz
--- error_code: 401
--- response_body_like: "code":"invalid_token","message":"invalid token"



=== TEST 6: a valid token with one character changed
--- request
GET /v1/customers
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000002
--- error_code: 401
--- response_body_like: "code":"invalid_token"



=== TEST 7: an overlong token is refused without hashing it
--- request eval
"GET /v1/customers"
--- more_headers eval
"Authorization: Bearer ailink_v1_proj_test_tok_" . ("a" x 300)
--- error_code: 401
--- response_body_like: "message":"invalid token"



=== TEST 8: disabled token
--- request
GET /v1/customers
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_disabled000000000000000001
--- error_code: 401
--- response_body_like: "code":"invalid_token","message":"token is disabled"



=== TEST 9: expired token
--- request
GET /v1/customers
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_expired0000000000000000001
--- error_code: 401
--- response_body_like: "code":"invalid_token","message":"token has expired"



=== TEST 10: the refusal is audited, without the token
--- request eval
["GET /v1/customers", "GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_disabled000000000000000001
X-AILink-Agent-Name: refused-agent
--- error_code eval
[401, 200]
--- response_body_like eval
[qr/\A(?!.*ailink_v1_proj).*token is disabled/s,
 qr/\A(?!.*ailink_v1_proj)\{"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z","request_id":"[0-9a-f]{32}","token_id":null,"token_name":null,"project":null,"agent_name":"refused-agent",[^\n]*"method":"GET","path":"\/v1\/customers",[^\n]*"status":401,"error":"invalid_token",[^\n]*\}\n\z/s]



=== TEST 11: the request id in the header is the one in the error body
The header and the body cannot be compared by the test runner, so /t asks
the gateway itself and writes the header it got into the body, next to the
body's own request_id.
--- config
    location = /t {
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/v1/customers;
        sub_filter_types application/json;
        sub_filter '"request_id":"'
                   '"header_request_id":"$upstream_http_x_ailink_request_id","request_id":"';
    }

    location / {
        ailink_auth on;
        include $TEST_NGINX_AILINK_ROOT/conf-examples/ailink-proxy.conf;
    }
--- request
GET /t
--- error_code: 401
--- response_body_like: "header_request_id":"([0-9a-f]{32})","request_id":"\1"\}\}
--- response_headers_like
X-AILink-Request-Id: [0-9a-f]{32}



=== TEST 12: a location without ailink_auth is not guarded
--- config
    location = /open {
        return 200 "open\n";
    }
--- request
GET /open
--- response_body
open
--- response_headers
!X-AILink-Request-Id



=== TEST 13: ailink_auth without ailink_config fails closed
--- http_config
--- config
    location / {
        ailink_auth on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request
GET /
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001
--- error_code: 500
--- response_body_like: "code":"internal_error"
--- error_log
"ailink_auth" is on but no "ailink_config" is set
