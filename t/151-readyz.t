# GET /readyz (ailink_ready): its checks in one JSON object, 200 when all
# are "ok" and 503 naming the failing one; /healthz checks nothing.  The
# probes are not counted in the metrics.

use lib 't/lib';
use AILink::Test;
use Test::Nginx::Socket 'no_plan';

add_block_preprocessor(\&ailink_defaults);
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: ready: every check named with its state
--- request
GET /readyz
--- error_code: 200
--- response_headers
Content-Type: application/json
--- response_headers_like
X-AILink-Request-Id: [0-9a-f]{32}
--- response_body
{"status":"ready","checks":{"config":"ok"}}



=== TEST 2: not ready: 503 names the check that fails
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



=== TEST 3: /healthz depends on nothing: 200 without a configuration
--- http_config
--- config
    location = /healthz {
        ailink_health;
    }
    location = /readyz {
        ailink_ready;
    }
--- request eval
["GET /healthz", "GET /readyz"]
--- error_code eval
[200, 503]
--- response_body eval
["{\"status\":\"ok\"}\n", "{\"status\":\"not_ready\",\"checks\":{\"config\":\"missing\"}}\n"]



=== TEST 4: HEAD is answered without a body, POST is refused in the envelope
--- request eval
["HEAD /readyz", "POST /readyz\n{}"]
--- error_code eval
[200, 405]
--- response_body_like eval
[qr/^$/, qr/^\{"error":\{"type":"invalid_request_error","code":"method_not_allowed",/]



=== TEST 5: probes are not counted in the metrics
--- http_config
    ailink_config $TEST_NGINX_AILINK_ROOT/t/conf/ailink.yaml;
    ailink_metrics_zone ailink_probe_metrics;
--- config
    location = /healthz {
        ailink_health;
    }
    location = /readyz {
        ailink_ready;
    }
    location = /metrics {
        ailink_metrics;
    }
--- request eval
["GET /readyz", "GET /healthz", "GET /readyz", "GET /metrics"]
--- error_code eval
[200, 200, 200, 200]
--- response_body_like eval
[qr/"ready"/, qr/"ok"/, qr/"ready"/, qr/\nailink_metrics_series 0\n/]
