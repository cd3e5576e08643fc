# The usual chat request (a model, messages of text, a few numbers) is
# translated in one pass over the body, without a tree, and an answer of
# text back the same way (ngx_ailink_direct.c).  What the provider gets
# and what the client gets are the tree translators' to the byte (the
# fuzz target fuzz_direct holds that for any input); these check it end
# to end for the cases the one pass writes itself: escapes it writes the
# printer's way, content given as text parts, turns merged, developer
# messages as system ones, members of an answer it passes over; and that
# what it leaves to the tree (a lone surrogate) is refused as before.

use lib 't/lib';
use AILink::Test;
use Test::Nginx::Socket 'no_plan';

add_block_preprocessor(\&ailink_defaults);
no_shuffle();
no_root_location();
run_tests();


# A response with its per-request values fixed.
sub stable {
    my $b = shift;
    $b =~ s/"id":"chatcmpl-[0-9a-f]{32}"/"id":"chatcmpl-ID"/g;
    $b =~ s/"created":\d+/"created":0/g;
    return $b;
}

__DATA__

=== TEST 1: Anthropic: escapes as the printer writes them, text parts, merged turns, a developer message as system
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","messages":[
{"role":"developer","content":"Be \"brief\".\nAlways."},
{"content":[{"type":"text","text":"caf\u00e9 \/ \ud83d\ude00"},{"type":"text","text":""},{"text":"tab\there","type":"text"}],"role":"user"},
{"role":"user","content":"again\u0001"},
{"role":"assistant","content":""},
{"role":"assistant","content":[{"type":"text","text":"ok"}]}],
"max_tokens":300,"temperature":0.5,"top_p":1,"stream":false}},
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[\&main::error_of], [\&main::sent_body]]
--- response_body eval
["not an error\n", qq{{"model":"claude-sonnet-4-5","system":[{"type":"text","text":"Be \\"brief\\".\\nAlways."}],"messages":[{"role":"user","content":[{"type":"text","text":"caf\xc3\xa9 / \xf0\x9f\x98\x80"},{"type":"text","text":"tab\\there"},{"type":"text","text":"again\\u0001"}]},{"role":"assistant","content":[{"type":"text","text":"ok"}]}],"max_tokens":300,"temperature":0.5,"top_p":1}\n}]
--- no_error_log
[error]



=== TEST 2: Gemini: the same body, systemInstruction after the turns, generationConfig from the numbers
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","messages":[
{"role":"developer","content":"Be \"brief\".\nAlways."},
{"content":[{"type":"text","text":"caf\u00e9 \/ \ud83d\ude00"},{"type":"text","text":""},{"text":"tab\there","type":"text"}],"role":"user"},
{"role":"user","content":"again\u0001"},
{"role":"assistant","content":""},
{"role":"assistant","content":[{"type":"text","text":"ok"}]},
{"role":"user","content":"go on"}],
"max_completion_tokens":300,"temperature":0.5,"top_p":1}},
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[\&main::error_of], [\&main::sent_body]]
--- response_body eval
["not an error\n", qq{{"contents":[{"role":"user","parts":[{"text":"caf\xc3\xa9 / \xf0\x9f\x98\x80"},{"text":"tab\\there"},{"text":"again\\u0001"}]},{"role":"model","parts":[{"text":"ok"}]},{"role":"user","parts":[{"text":"go on"}]}],"systemInstruction":{"parts":[{"text":"Be \\"brief\\".\\nAlways."}]},"generationConfig":{"temperature":0.5,"topP":1,"maxOutputTokens":300}}\n}]
--- no_error_log
[error]



=== TEST 3: a lone surrogate, which the scan lets by, is left to the tree and refused as before
--- request
POST /v1/chat/completions
{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"half \ud800 a pair"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code: 400
--- response_body_filters eval
\&main::error_of
--- response_body
invalid_request: the request body is not JSON the gateway can translate



=== TEST 4: Anthropic answer: members the one pass passes over (service_tier, cache_creation, container), usage with cache reads and writes
--- request
POST /v1/chat/completions
{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Raw-Body: {"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Two \"words\"\n"},{"type":"text","text":"and caf\u00e9"}],"stop_reason":"max_tokens","stop_sequence":null,"usage":{"input_tokens":10,"cache_creation_input_tokens":2,"cache_read_input_tokens":3,"cache_creation":{"ephemeral_5m_input_tokens":2,"ephemeral_1h_input_tokens":0},"output_tokens":5,"service_tier":"standard"},"container":null}
--- response_body_filters eval
\&main::stable
--- response_body
{"id":"chatcmpl-ID","object":"chat.completion","created":0,"model":"claude-sonnet-4-5","choices":[{"index":0,"message":{"role":"assistant","content":"Two \"words\"\nand café","refusal":null},"logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":15,"completion_tokens":5,"total_tokens":20,"prompt_tokens_details":{"cached_tokens":3,"cache_creation_tokens":2}}}
--- no_error_log
[error]



=== TEST 5: Gemini answer: thought signatures, safety ratings and the response's ids passed over; thoughts counted as reasoning
--- request
POST /v1/chat/completions
{"model":"gemini-2.0-flash","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Raw-Body: {"candidates":[{"content":{"parts":[{"text":"Hello \"there\"\n","thoughtSignature":"c2ln"},{"text":"again","thought":false}],"role":"model"},"finishReason":"STOP","avgLogprobs":-0.5,"index":0,"safetyRatings":[{"category":"HARM_CATEGORY_HARASSMENT","probability":"NEGLIGIBLE"}]}],"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":4,"thoughtsTokenCount":3,"totalTokenCount":15,"promptTokensDetails":[{"modality":"TEXT","tokenCount":8}]},"modelVersion":"gemini-2.0-flash-001","responseId":"r1"}
--- response_body_filters eval
\&main::stable
--- response_body
{"id":"chatcmpl-ID","object":"chat.completion","created":0,"model":"gemini-2.0-flash","choices":[{"index":0,"message":{"role":"assistant","content":"Hello \"there\"\nagain","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":8,"completion_tokens":7,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":3}}}
--- no_error_log
[error]



=== TEST 6: the answer's usage reaches the audit record
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}},
"GET /audit"]
--- more_headers eval
["Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001\nX-Mock-Raw-Body: " . q{{"type":"message","content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn","usage":{"input_tokens":12,"output_tokens":4}}},
""]
--- response_body_like eval
[qr/"content":"ok"/,
 qr/"provider":"anthropic","model":"claude-sonnet-4-5","status":200,[^\n]*"prompt_tokens":12,"completion_tokens":4,"total_tokens":16,/]
--- no_error_log
[error]
