# The response cache and streams: a completed stream is stored as the
# client was sent it and replayed as a well-formed SSE stream (chunks, the
# usage chunk if asked, [DONE]); a cut stream is never stored; a stream
# translated from Anthropic is replayed in OpenAI's format.

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

=== TEST 1: a stream: MISS, then HIT replaying it as SSE; stream and non-stream differ
--- request eval
my $s = "POST /v1/chat/completions
{\"model\":\"mock-1\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"stream me\"}]}";
my $n = "POST /v1/chat/completions
{\"model\":\"mock-1\",\"messages\":[{\"role\":\"user\",\"content\":\"stream me\"}]}";
["POST /_mock/reset", $s, $s, $n,
 "GET /_mock/requests?path_prefix=/v1/chat/completions"]
--- more_headers eval
["", $AILink::Cache::LLM, $AILink::Cache::LLM, $AILink::Cache::LLM, ""]
--- error_code eval
[200, 200, 200, 200, 200]
--- response_headers eval
["", "X-AILink-Cache: MISS\nContent-Type: text/event-stream; charset=utf-8",
 "X-AILink-Cache: HIT\nContent-Type: text/event-stream; charset=utf-8",
 "X-AILink-Cache: MISS\nContent-Type: application/json", ""]
--- response_body_like eval
[qr/ok/,
 qr/^(data: \{"id":"chatcmpl-[^\n]*\n\n)+data: \[DONE\]\n\n$/s,
 qr/^(data: \{"id":"chatcmpl-[^\n]*\n\n)+data: \[DONE\]\n\n$/s,
 qr/^\{"id"/,
 qr/^\[\{"seq":\d+,(?:(?!"seq").)*"seq":\d+,(?:(?!"seq").)*\]$/s]
--- no_error_log
[error]



=== TEST 2: the replay is the stream as first sent, usage chunk included
--- request eval
my $s = "POST /v1/chat/completions
{\"model\":\"mock-1\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"messages\":[{\"role\":\"user\",\"content\":\"usage please\"}]}";
[$s, $s]
--- more_headers eval
[$AILink::Cache::LLM, $AILink::Cache::LLM]
--- response_headers eval
["X-AILink-Cache: MISS", "X-AILink-Cache: HIT"]
--- response_body_like eval
[qr/"usage":\{"prompt_tokens":\d+.*data: \[DONE\]\n\n$/s,
 qr/^data: .*"content":"Mock.*"usage":\{"prompt_tokens":\d+.*data: \[DONE\]\n\n$/s]
--- no_error_log
[error]



=== TEST 3: a cut stream is not stored: the next one is a MISS
--- request eval
my $s = "POST /v1/chat/completions
{\"model\":\"mock-1\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"cut me\"}]}";
[$s, $s, $s]
--- more_headers eval
[$AILink::Cache::LLM . "\nX-Mock-Drop-After: 2", $AILink::Cache::LLM,
 $AILink::Cache::LLM]
--- response_headers eval
["X-AILink-Cache: MISS", "X-AILink-Cache: MISS", "X-AILink-Cache: HIT"]
--- response_body_like eval
[qr/^data: /, qr/data: \[DONE\]\n\n$/, qr/data: \[DONE\]\n\n$/]
--- no_error_log
[crit]



=== TEST 4: a stream translated from Anthropic is replayed in OpenAI's format
--- user_files eval
[['policy.yaml', <<'YAML']]
admin_keys:
  - 01752923a82f2b42fac78da7725c9fccc1ab7c3c32e0d1219410e402054b4a67
providers:
  openai:
    base_url: http://127.0.0.1:${TEST_NGINX_MOCK_PORT}/v1
  anthropic:
    base_url: http://127.0.0.1:${TEST_NGINX_MOCK_PORT}/v1
credentials:
  openai: { env: AILINK_TEST_OPENAI_KEY }
  anthropic: { env: AILINK_TEST_ANTHROPIC_KEY }
tokens:
  - id: tok_llm
    project: test
    hash: 3db0ccb2481b4bf8de27af48aa74736c884db6030c77fc055ee12db3b46cc89f
    credentials: { openai: openai, anthropic: anthropic }
YAML
--- request eval
my $s = "POST /v1/chat/completions
{\"model\":\"claude-3-5-sonnet-20241022\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"claude stream\"}]}";
my $n = "POST /v1/chat/completions
{\"model\":\"claude-3-5-sonnet-20241022\",\"messages\":[{\"role\":\"user\",\"content\":\"claude once\"}]}";
[$s, $s, $n, $n]
--- more_headers eval
[($AILink::Cache::LLM) x 4]
--- response_headers eval
["X-AILink-Cache: MISS\nX-AILink-Provider: anthropic",
 "X-AILink-Cache: HIT\nX-AILink-Provider: anthropic",
 "X-AILink-Cache: MISS", "X-AILink-Cache: HIT\nContent-Type: application/json"]
--- response_body_like eval
[qr/^data: \{"id":"[^\n]*"object":"chat\.completion\.chunk".*data: \[DONE\]\n\n$/s,
 qr/^data: \{"id":"[^\n]*"object":"chat\.completion\.chunk".*"content":"Mock reply from ".*"content":"anthropic to: ".*data: \[DONE\]\n\n$/s,
 qr/^\{"id":"[^"]*","object":"chat\.completion".*Mock reply from anthropic to: claude once/s,
 qr/^\{"id":"[^"]*","object":"chat\.completion".*Mock reply from anthropic to: claude once/s]
--- no_error_log
[error]
