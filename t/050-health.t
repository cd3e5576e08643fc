# Endpoints that need no token, and nginx's own errors turned into the
# contract's JSON envelope by ailink_error_page.

use lib 't/lib';
use AILink::Test;
use Test::Nginx::Socket 'no_plan';

add_block_preprocessor(\&ailink_defaults);
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: liveness
--- request
GET /healthz
--- response_headers
Content-Type: application/json
--- response_headers_like
X-AILink-Request-Id: [0-9a-f]{32}
--- response_body
{"status":"ok"}



=== TEST 2: readiness with the configuration loaded
--- request
GET /readyz
--- response_body
{"status":"ready","checks":{"config":"ok"}}



=== TEST 3: readiness without a configuration
--- http_config
--- config
    location = /readyz {
        ailink_ready;
    }
--- request
GET /readyz
--- error_code: 503
--- response_body
{"status":"not_ready","checks":{"config":"missing"}}



=== TEST 4: HEAD is answered, other methods are refused in the envelope
--- request eval
["HEAD /healthz", "POST /healthz\n{}"]
--- error_code eval
[200, 405]
--- response_body_like eval
[qr/^$/, qr/^\{"error":\{"type":"invalid_request_error","code":"method_not_allowed",/]



=== TEST 5: an nginx 404 becomes a JSON 404
--- config
    error_page 404 @ailink_error;
    location @ailink_error {
        ailink_error_page;
    }
    location /static/ {
        root html;
    }
--- request
GET /static/missing.txt
--- error_code: 404
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"error":\{"type":"invalid_request_error","code":"not_found","message":"unknown route","param":null,"request_id":"[0-9a-f]{32}"\}\}$



=== TEST 6: ailink_error_page as a catch-all location answers 404
--- config
    location / {
        ailink_error_page;
    }
--- request
GET /anything/else
--- error_code: 404
--- response_body_like: "code":"not_found"



=== TEST 7: a request line nginx cannot parse gets a JSON 400
--- raw_request eval
"GET /healthz HTTP/1.1\r\nHost: localhost\r\nHost: twice\r\nConnection: close\r\n\r\n"
--- error_code: 400
--- response_body_like: "code":"invalid_request"
