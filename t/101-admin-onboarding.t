# Onboarding: a token with no credential for the provider its model routes
# to, and no X-AILink-Upstream-Key, gets a 401 naming the provider when the
# provider is hosted (https), instead of a request sent without a key.  A
# keyless server on plain http (a local model server) still gets none.

use lib 't/lib';
use AILink::Test;
use Test::Nginx::Socket 'no_plan';

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', <<'CONF') unless defined $block->http_config;
    ailink_config $TEST_NGINX_SERVER_ROOT/html/onboard.yaml;
    resolver 127.0.0.1:1 valid=1s;
    resolver_timeout 200ms;
CONF
    $block->set_value('user_files', <<'FILES') unless defined $block->user_files;
>>> onboard.yaml
providers:
  hosted:
    type: openai
    base_url: https://api.example.invalid/v1
  local:
    type: openai
    base_url: http://127.0.0.1:${TEST_NGINX_MOCK_PORT}/local/v1
routes:
  - prefix: hosted-
    provider: hosted
  - prefix: llama-
    provider: local
tokens:
  - id: tok_llm_byok
    project: test
    hash: sha256:adc6f5c2480f2b9addf57e78c462178f4dc2c52d2d41f55d60450ad0b3b23a4f
FILES
    ailink_defaults($block);
});
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: no credential for a hosted provider and no BYOK key: 401 naming it
--- request
POST /v1/chat/completions
{"model":"hosted-1","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llmbyok0000000000000000001
--- error_code: 401
--- response_body_like: ^\{"error":\{"type":"authentication_error","code":"missing_credential","message":"no credential for provider \\"hosted\\": the token has none for it and the request has no X-AILink-Upstream-Key","param":null,"request_id":"[0-9a-f]{32}"\}\}$
--- no_error_log
[error]



=== TEST 2: with X-AILink-Upstream-Key it is forwarded (here to a host that does not resolve)
--- request
POST /v1/chat/completions
{"model":"hosted-1","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llmbyok0000000000000000001
X-AILink-Upstream-Key: sk-own
--- error_code_like: ^50[234]$
--- response_body_unlike: missing_credential



=== TEST 3: a keyless local server on http still gets the request without a key
--- request
POST /v1/chat/completions
{"model":"llama-3","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llmbyok0000000000000000001
--- error_code: 200
--- response_body_like: ^\{"echo":\{"method":"POST","path":"/local/v1/chat/completions","query":"","headers":\{"host":"[^"]+","content-length":"63"\}
