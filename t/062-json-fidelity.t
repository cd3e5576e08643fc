# What the client wrote is what the provider gets: strings holding
# "\u0000" are carried whole, numbers keep their text (1e400, 2^64, a
# decimal of 34 digits), through the Anthropic and Gemini translations
# and the OpenAI body rewrite alike.  And every route reads a body the
# same way: a UTF-8 BOM, or bytes that are not UTF-8, are a 400
# invalid_request on the OpenAI, Claude and Gemini routes, and nothing
# is sent.  Checked in the mock provider's record of what it received.

use lib 't/lib';
use AILink::Test;
use Test::Nginx::Socket 'no_plan';

add_block_preprocessor(\&ailink_defaults);
no_shuffle();
no_root_location();
run_tests();


# One key of the body the mock received, as the gateway wrote it.
sub sent_key {
    my $key = shift;

    return sub {
        my $b = sent_body(shift);
        my ($v) = $b =~ /"\Q$key\E":(.*)\n\z/s;
        return defined $v ? "$v\n" : "absent\n";
    };
}


__DATA__

=== TEST 1: Anthropic: strings with "\u0000" reach the provider whole
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5",
"tools":[{"type":"function","function":{"name":"f","description":"d\u0000","parameters":{"type":"object","properties":{"s":{"type":"string","description":"p\u0000q"}}}}}],
"messages":[{"role":"system","content":"sys\u0000tem"},
{"role":"user","content":"a\u0000b"},
{"role":"assistant","content":[{"type":"text","text":"\u0000"}],"tool_calls":[{"id":"call\u00001","type":"function","function":{"name":"f","arguments":"{\"s\":\"x\\\\u0000y\"}"}}]},
{"role":"tool","tool_call_id":"call\u00001","content":"r\u0000s"}],
"stop":["x\u0000y"],"user":"u\u0000"}},
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[\&main::error_of], [\&main::sent_body]]
--- response_body eval
["not an error\n", "{\"model\":\"claude-sonnet-4-5\",\"system\":[{\"type\":\"text\",\"text\":\"sys\\u0000tem\"}],\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\\u0000b\"}]},{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"\\u0000\"},{\"type\":\"tool_use\",\"id\":\"call_1\",\"name\":\"f\",\"input\":{\"s\":\"x\\u0000y\"}}]},{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"call_1\",\"content\":\"r\\u0000s\"}]}],\"max_tokens\":4096,\"stop_sequences\":[\"x\\u0000y\"],\"metadata\":{\"user_id\":\"u\\u0000\"},\"tools\":[{\"name\":\"f\",\"description\":\"d\\u0000\",\"input_schema\":{\"type\":\"object\",\"properties\":{\"s\":{\"type\":\"string\",\"description\":\"p\\u0000q\"}}}}]}\n"]
--- no_error_log
[error]



=== TEST 2: Gemini: strings with "\u0000" reach the provider whole
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash",
"tools":[{"type":"function","function":{"name":"f","description":"d\u0000","parameters":{"type":"object","properties":{"s":{"type":"string","description":"p\u0000q","enum":["e\u0000"]}}}}}],
"messages":[{"role":"system","content":"sys\u0000tem"},
{"role":"user","content":[{"type":"text","text":"a\u0000b"}]},
{"role":"assistant","content":"\u0000","tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"s\":\"x\\\\u0000y\"}"}}]},
{"role":"tool","tool_call_id":"call_1","content":"r\u0000s"},
{"role":"tool","tool_call_id":"call_1","content":"{\"t\":\"v\\\\u0000w\"}"}],
"stop":"x\u0000y"}},
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[\&main::error_of], [\&main::sent_body]]
--- response_body eval
["not an error\n", "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"a\\u0000b\"}]},{\"role\":\"model\",\"parts\":[{\"text\":\"\\u0000\"},{\"functionCall\":{\"name\":\"f\",\"args\":{\"s\":\"x\\u0000y\"}}}]},{\"role\":\"user\",\"parts\":[{\"functionResponse\":{\"name\":\"f\",\"response\":{\"content\":\"r\\u0000s\"}}},{\"functionResponse\":{\"name\":\"f\",\"response\":{\"t\":\"v\\u0000w\"}}}]}],\"systemInstruction\":{\"parts\":[{\"text\":\"sys\\u0000tem\"}]},\"tools\":[{\"functionDeclarations\":[{\"name\":\"f\",\"description\":\"d\\u0000\",\"parameters\":{\"type\":\"object\",\"properties\":{\"s\":{\"type\":\"string\",\"description\":\"p\\u0000q\",\"enum\":[\"e\\u0000\"]}}}}]}],\"generationConfig\":{\"stopSequences\":[\"x\\u0000y\"]}}\n"]
--- no_error_log
[error]



=== TEST 3: Anthropic: numbers keep their text in tool arguments, schemas and sampling
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","temperature":0.1000000000000000055511151231257827,"top_p":0.99999999999999999999,
"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"n":{"type":"integer","maximum":18446744073709551616,"minimum":-0}}}}}],
"messages":[{"role":"user","content":"go"},
{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"big\":1e400,\"n\":18446744073709551616,\"x\":0.1000000000000000055511151231257827,\"neg\":-0,\"e\":1E+2,\"small\":1e-400,\"i\":42}"}}]},
{"role":"tool","tool_call_id":"call_1","content":"ok"}]}},
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[\&main::error_of], [\&main::sent_body]]
--- response_body eval
["not an error\n", "{\"model\":\"claude-sonnet-4-5\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"go\"}]},{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"call_1\",\"name\":\"f\",\"input\":{\"big\":1e400,\"n\":18446744073709551616,\"x\":0.1000000000000000055511151231257827,\"neg\":-0,\"e\":1E+2,\"small\":1e-400,\"i\":42}}]},{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"call_1\",\"content\":\"ok\"}]}],\"max_tokens\":4096,\"temperature\":0.1000000000000000055511151231257827,\"top_p\":0.99999999999999999999,\"tools\":[{\"name\":\"f\",\"input_schema\":{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\",\"maximum\":18446744073709551616,\"minimum\":-0}}}}]}\n"]
--- no_error_log
[error]



=== TEST 4: Gemini: numbers keep their text in function calls, results, schemas and sampling
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","temperature":0.1000000000000000055511151231257827,"top_p":0.99999999999999999999,
"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"n":{"type":"integer","maximum":18446744073709551616,"minimum":-0}}}}}],
"messages":[{"role":"user","content":"go"},
{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"big\":1e400,\"n\":18446744073709551616,\"x\":0.1000000000000000055511151231257827,\"neg\":-0,\"e\":1E+2,\"small\":1e-400,\"i\":42}"}}]},
{"role":"tool","tool_call_id":"call_1","content":"{\"total\":18446744073709551616}"}]}},
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[\&main::error_of], [\&main::sent_body]]
--- response_body eval
["not an error\n", "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"go\"}]},{\"role\":\"model\",\"parts\":[{\"functionCall\":{\"name\":\"f\",\"args\":{\"big\":1e400,\"n\":18446744073709551616,\"x\":0.1000000000000000055511151231257827,\"neg\":-0,\"e\":1E+2,\"small\":1e-400,\"i\":42}}}]},{\"role\":\"user\",\"parts\":[{\"functionResponse\":{\"name\":\"f\",\"response\":{\"total\":18446744073709551616}}}]}],\"tools\":[{\"functionDeclarations\":[{\"name\":\"f\",\"parameters\":{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\",\"maximum\":18446744073709551616,\"minimum\":-0}}}}]}],\"generationConfig\":{\"temperature\":0.1000000000000000055511151231257827,\"topP\":0.99999999999999999999}}\n"]
--- no_error_log
[error]



=== TEST 5: OpenAI: a body the gateway rewrites (stream_options) keeps "\u0000" and numbers' text
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"mock-gpt","stream":true,"stream_options":{"x":1},"messages":[{"role":"user","content":"a\u0000b"}],"metadata":{"k":"v\u0000"},"seed":18446744073709551616,"logit_bias":{"50256":-1e400},"temperature":0.1000000000000000055511151231257827}},
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[sub { "" }], [\&main::sent_body]]
--- response_body eval
["", "{\"model\":\"mock-gpt\",\"stream\":true,\"stream_options\":{\"x\":1,\"include_usage\":true},\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000b\"}],\"metadata\":{\"k\":\"v\\u0000\"},\"seed\":18446744073709551616,\"logit_bias\":{\"50256\":-1e400},\"temperature\":0.1000000000000000055511151231257827}\n"]
--- no_error_log
[error]



=== TEST 6: a UTF-8 BOM is refused alike on the OpenAI, Claude and Gemini routes, and nothing is sent
--- request eval
my $body = sub { "POST /v1/chat/completions\n\xef\xbb\xbf" . qq{{"model":"$_[0]","messages":[{"role":"user","content":"hi"}]}} };
["DELETE /_mock/requests", $body->("mock-gpt"), $body->("claude-sonnet-4-5"),
 $body->("gemini-2.0-flash"), "GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[sub { "" }], [\&main::error_of], [\&main::error_of], [\&main::error_of], [sub { "" }]]
--- response_body eval
["", "invalid_request: the request body is not a JSON object\n",
 "invalid_request: the request body is not a JSON object\n",
 "invalid_request: the request body is not a JSON object\n", ""]
--- error_code eval
[200, 400, 400, 400, 404]
--- no_error_log
[alert]
[crit]



=== TEST 7: a body that is not UTF-8 is refused alike on the OpenAI, Claude and Gemini routes, and nothing is sent
--- request eval
my $body = sub { "POST /v1/chat/completions\n" . qq{{"model":"$_[0]","messages":[{"role":"user","content":"caf\xe9 \xc0\xaf \xed\xa0\x80"}]}} };
["DELETE /_mock/requests", $body->("mock-gpt"), $body->("claude-sonnet-4-5"),
 $body->("gemini-2.0-flash"), "GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[sub { "" }], [\&main::error_of], [\&main::error_of], [\&main::error_of], [sub { "" }]]
--- response_body eval
["", "invalid_request: the request body is not a JSON object\n",
 "invalid_request: the request body is not a JSON object\n",
 "invalid_request: the request body is not a JSON object\n", ""]
--- error_code eval
[200, 400, 400, 400, 404]
--- no_error_log
[alert]
[crit]



=== TEST 8: valid UTF-8 of every length passes on every route, as it was written
--- request eval
my $text = "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf";
my $body = sub { "POST /v1/chat/completions\n" . qq{{"model":"$_[0]","messages":[{"role":"user","content":"$text"}]}} };
[$body->("mock-gpt"), "GET /_mock/requests/last",
 $body->("claude-sonnet-4-5"), "GET /_mock/requests/last",
 $body->("gemini-2.0-flash"), "GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[\&main::error_of], [main::sent_key('messages')], [\&main::error_of], [main::sent_key('messages')],
 [\&main::error_of], [main::sent_key('contents')]]
--- response_body eval
["not an error\n", "[{\"role\":\"user\",\"content\":\"caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\"}]}\n",
 "not an error\n", "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\"}]}],\"max_tokens\":4096}\n",
 "not an error\n", "[{\"role\":\"user\",\"parts\":[{\"text\":\"caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\"}]}]}\n"]
--- no_error_log
[error]
