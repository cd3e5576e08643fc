# Structured outputs ("response_format") through the translators.
# Anthropic: the schema is the input schema of a tool the model is made to
# call; the client gets its input as JSON text in content, finish_reason
# "stop", streamed as content deltas.  Gemini: responseMimeType and
# responseSchema; JSON mode with tools is refused for Gemini 2.x (as
# Gemini refuses it) and sent for Gemini 3.

use lib 't/lib';
use AILink::Test;
use Test::Nginx::Socket 'no_plan';
use JSON::PP ();

add_block_preprocessor(\&ailink_defaults);
check_worker_memory();
no_shuffle();
no_root_location();
run_tests();


# Keys of the recorded body, canonical, one line.
sub sent {
    my @keys = @_;

    return sub {
        my $j = JSON::PP->new->utf8->decode(shift)->{json};
        return JSON::PP->new->utf8->canonical->allow_nonref
                   ->encode([map { $j->{$_} } @keys]) . "\n";
    };
}


# The choice's message and finish reason, canonical.
sub message {
    my $r = JSON::PP->new->utf8->decode(shift);
    my $c = JSON::PP->new->utf8->canonical;

    return 'error ' . $c->encode($r->{error}) . "\n" if $r->{error};

    my $ch = $r->{choices}[0];

    return $c->encode($ch->{message}) . " finish $ch->{finish_reason}\n";
}


# A stream: the content put together, tool calls, the finish reason.
sub sse {
    my $body = shift;
    my $json = JSON::PP->new->utf8->canonical;
    my ($content, $calls, $finish, $n) = ('', 0, '', 0);

    while ($body =~ s/\Adata: ([^\n]*)\n\n//) {
        next if $1 eq '[DONE]';
        my $c = $json->decode($1);
        my $ch = $c->{choices}[0] or next;
        $n++;
        $content .= $ch->{delta}{content} // '';
        $calls += @{$ch->{delta}{tool_calls} || []};
        $finish = $ch->{finish_reason} if defined $ch->{finish_reason};
    }

    return "content $content calls $calls finish $finish\n";
}


__DATA__

=== TEST 1: Anthropic json_schema: a forced answer tool with the schema; its input comes back as the content, finish stop
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","response_format":{"type":"json_schema","json_schema":{"name":"answer","strict":true,"schema":{"type":"object","properties":{"city":{"type":"string"},"temp":{"type":"number"}},"required":["city","temp"],"additionalProperties":false}}},"messages":[{"role":"user","content":"Weather?"}]}},
 "GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[\&main::message], [main::sent('tools', 'tool_choice')]]
--- response_body eval
['{"content":"{\"city\":\"Paris\",\"temp\":1.5}","refusal":null,"role":"assistant"} finish stop
',
'[[{"description":"Give your final answer by calling this tool, once, with arguments that match its schema. Do not answer in text.","input_schema":{"additionalProperties":false,"properties":{"city":{"type":"string"},"temp":{"type":"number"}},"required":["city","temp"],"type":"object"},"name":"json_answer"}],{"name":"json_answer","type":"tool"}]
']
--- no_error_log
[error]



=== TEST 2: Anthropic json_object: any object; the schema's description is the tool's
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","response_format":{"type":"json_object"},"messages":[{"role":"user","content":"JSON please"}]}},
 "GET /_mock/requests/last",
 "POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","response_format":{"type":"json_schema","json_schema":{"name":"a","description":"The answer.","schema":{"type":"object"}}},"messages":[{"role":"user","content":"JSON please"}]}},
 "GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[\&main::message], [main::sent('tools', 'tool_choice')], [], [main::sent('tools')]]
--- response_body_like eval
[qr/^\Q{"content":"{}","refusal":null,"role":"assistant"} finish stop\E\n\z/,
 qr/^\Q[[{"description":"Give your final answer by calling this tool, once, with arguments that match its schema. Do not answer in text.","input_schema":{"type":"object"},"name":"json_answer"}],{"name":"json_answer","type":"tool"}]\E\n\z/,
 qr/"content":"\{\}"/,
 qr/^\Q[[{"description":"The answer.","input_schema":{"type":"object"},"name":"json_answer"}]]\E\n\z/]



=== TEST 3: Anthropic stream: the answer streams as content deltas, no tool calls, finish stop
--- request
POST /v1/chat/completions
{"model":"claude-sonnet-4-5","stream":true,"response_format":{"type":"json_schema","json_schema":{"name":"answer","schema":{"type":"object","properties":{"city":{"type":"string"},"temp":{"type":"number"}}}}},"messages":[{"role":"user","content":"Weather?"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
\&main::sse
--- response_body
content {"city": "Paris", "temp": 1.5} calls 0 finish stop
--- no_error_log
[error]



=== TEST 4: Anthropic: beside the client's tools the model must call one (any); a client tool call stays a tool call; with thinking the choice is left to the model
--- request eval
my $t = q{"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}}]};
["POST /v1/chat/completions\n" . qq{{"model":"claude-sonnet-4-5","response_format":{"type":"json_object"},$t,"messages":[{"role":"user","content":"Weather?"}]}},
 "GET /_mock/requests/last",
 "POST /v1/chat/completions\n" . qq{{"model":"claude-sonnet-4-5","reasoning_effort":"low","response_format":{"type":"json_object"},"messages":[{"role":"user","content":"Weather?"}]}},
 "GET /_mock/requests/last",
 "POST /v1/chat/completions\n" . qq{{"model":"claude-sonnet-4-5","response_format":{"type":"json_object"},$t,"tool_choice":"none","messages":[{"role":"user","content":"Weather?"}]}},
 "GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[\&main::message], [main::sent('tool_choice')], [], [main::sent('tool_choice', 'thinking')], [], [main::sent('tool_choice')]]
--- response_body_like eval
[qr/"tool_calls":\[\{"function":\{"arguments":"\{\\"location\\":\\"Paris\\"\}","name":"get_weather"\}.* finish tool_calls/,
 qr/^\Q[{"type":"any"}]\E\n\z/,
 qr/"finish_reason":"stop"/,
 qr/^\Q[{"type":"auto"},{"budget_tokens":2048,"type":"enabled"}]\E\n\z/,
 qr/"finish_reason":"stop"/,
 qr/^\Q[{"type":"none"}]\E\n\z/]



=== TEST 5: Anthropic: a schema that is not an object schema, an unknown type, and a client tool with the reserved name are 400s
--- request eval
my $p = "POST /v1/chat/completions\n";
[$p . q{{"model":"claude-sonnet-4-5","response_format":{"type":"json_schema","json_schema":{"name":"a","schema":{"type":"array"}}},"messages":[{"role":"user","content":"hi"}]}},
 $p . q{{"model":"claude-sonnet-4-5","response_format":{"type":"yaml"},"messages":[{"role":"user","content":"hi"}]}},
 $p . q{{"model":"claude-sonnet-4-5","tools":[{"type":"function","function":{"name":"json_answer"}}],"messages":[{"role":"user","content":"hi"}]}}]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code eval
[400, 400, 400]
--- response_body_like eval
[qr/"message":"\\"response_format.json_schema.schema\\" must be an object schema for Anthropic models","param":"response_format"/,
 qr/"message":"\\"response_format\\" type must be \\"text\\", \\"json_object\\" or \\"json_schema\\"","param":"response_format"/,
 qr/"message":"the tool name \\"json_answer\\" is reserved for response_format","param":"tools"/]



=== TEST 6: Gemini: JSON mode is JSON text in content, in JSON and in streams
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gemini-2.5-flash","response_format":{"type":"json_schema","json_schema":{"name":"a","strict":true,"schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"],"additionalProperties":false}}},"messages":[{"role":"user","content":"hi"}]}},
 "POST /v1/chat/completions\n" . q{{"model":"gemini-2.5-flash","stream":true,"response_format":{"type":"json_schema","json_schema":{"name":"a","strict":true,"schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"],"additionalProperties":false}}},"messages":[{"role":"user","content":"hi"}]}}]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[\&main::message], [\&main::sse]]
--- response_body eval
['{"content":"{\"city\": \"Paris\"}","refusal":null,"role":"assistant"} finish stop
', 'content {"city": "Paris"} calls 0 finish stop
']



=== TEST 7: Gemini 2.x: JSON mode with tools is refused by Gemini (the strict mock), so the gateway refuses it first, naming response_format; Gemini 3 takes both
--- request eval
my $t = q{"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}}]};
["DELETE /_mock/requests",
 "POST /v1/chat/completions\n" . qq{{"model":"gemini-2.5-flash","response_format":{"type":"json_object"},$t,"messages":[{"role":"user","content":"hi"}]}},
 "GET /_mock/requests/last",
 "POST /v1/chat/completions\n" . qq{{"model":"gemini-3-pro","response_format":{"type":"json_object"},$t,"messages":[{"role":"user","content":"hi"}]}},
 "POST /v1/chat/completions\n" . qq{{"model":"gemini-2.5-flash","response_format":{"type":"text"},$t,"messages":[{"role":"user","content":"hi"}]}}]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code eval
[200, 400, 404, 200, 200]
--- response_body_like eval
[qr/ok/,
 qr/"message":"Gemini models before Gemini 3 cannot use \\"response_format\\" JSON together with \\"tools\\": send one of them, or use a Gemini 3 model","param":"response_format"/,
 qr/no requests recorded/,
 qr/"content":"\{\\"reply\\": \\"Mock reply from gemini to: hi\\"\}"/,
 qr/"content":"Mock reply from gemini to: hi"/]
