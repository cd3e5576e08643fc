# OpenAI chat.completions in, Anthropic Messages upstream: what the gateway
# sends (the mock provider's record, through /_mock/) and what the client
# gets back, JSON and streams, including the cases that break gateways:
# system messages anywhere, merged turns, images, prompt caching, tools and
# tool results, usage with cache tokens, errors.

use lib 't/lib';
use AILink::Test;
use Test::Nginx::Socket 'no_plan';
use JSON::PP ();

add_block_preprocessor(\&ailink_defaults);
check_worker_memory();
no_shuffle();
no_root_location();
run_tests();


# The request the mock recorded: method, path, the headers that matter and
# the JSON body exactly as the gateway sent it (key order kept).
sub upstream {
    my $raw = shift;
    my $rec = JSON::PP->new->utf8->decode($raw);
    my $h = $rec->{headers};
    my ($json) = $raw =~ /,"json":(.*),"sni":/s;

    return "$rec->{method} $rec->{path}\n"
           . "x-api-key: " . ($h->{'x-api-key'} // '-') . "\n"
           . "anthropic-version: " . ($h->{'anthropic-version'} // '-') . "\n"
           . "authorization: " . ($h->{authorization} // '-') . "\n"
           . ($json // 'no json') . "\n";
}


# One key of the recorded body, canonical.
sub sent {
    my $key = shift;

    return sub {
        my $rec = JSON::PP->new->utf8->decode(shift);
        my $v = $rec->{json}{$key};
        return defined $v ? JSON::PP->new->utf8->canonical->allow_nonref
                                    ->encode($v) . "\n"
                          : "absent\n";
    };
}


# A response with its per-request values fixed.
sub stable {
    my $b = shift;

    $b =~ s/"id":"chatcmpl-[0-9a-f]{32}"/"id":"chatcmpl-ID"/g;
    $b =~ s/"created":\d+/"created":0/g;
    $b =~ s/"request_id":"[0-9a-f]{32}"/"request_id":"ID"/g;

    return $b;
}


# An OpenAI stream, one line per event: each chunk's delta and finish
# reason, usage and error events, [DONE]; then checks that every chunk is
# well formed with one id, and the tool arguments each index adds up to.
sub sse {
    my $body = shift;
    my $json = JSON::PP->new->utf8->canonical;
    my (@out, %ids, %args);

    while ($body =~ s/\Adata: ([^\n]*)\n\n//) {
        my $d = $1;

        if ($d eq '[DONE]') {
            push @out, '[DONE]';
            next;
        }

        my $c = eval { $json->decode($d) };

        if (!$c) {
            push @out, "not JSON: $d";
            next;
        }

        if ($c->{error}) {
            push @out, 'error ' . $json->encode($c->{error});
            next;
        }

        $ids{$c->{id} // ''}++;

        if (($c->{object} // '') ne 'chat.completion.chunk'
            || ($c->{id} // '') !~ /^chatcmpl-[0-9a-f]{32}$/
            || ($c->{model} // '') !~ /^claude-/
            || ($c->{created} // '') !~ /^\d+$/)
        {
            push @out, "bad chunk: $d";
        }

        if ($c->{usage}) {
            push @out, 'usage ' . $json->encode($c->{usage}) . ' choices '
                       . scalar @{$c->{choices}};
            next;
        }

        my $ch = $c->{choices}[0];
        my $line = 'delta ' . $json->encode($ch->{delta});
        $line .= " finish $ch->{finish_reason}" if defined $ch->{finish_reason};
        push @out, $line;

        for my $tc (@{$ch->{delta}{tool_calls} || []}) {
            $args{$tc->{index}} .= $tc->{function}{arguments} // '';
        }
    }

    push @out, "left over: $body" if length $body;
    push @out, 'ids ' . scalar(keys %ids);

    for my $i (sort keys %args) {
        my $ok = eval { ref $json->decode($args{$i}) eq 'HASH' };
        push @out, "arguments $i $args{$i} " . ($ok ? 'valid' : 'NOT JSON');
    }

    return join("\n", @out) . "\n";
}



# Arms the mock to answer the next /v1/messages with a stream of our own
# making: [event name or undef, data] pairs, all in one buffer.  (The
# mock sends its own Content-Type first; nginx keeps the last one.)
sub armed_stream {
    my $body = '';

    for my $e (@_) {
        $body .= "event: $e->[0]\n" if defined $e->[0];
        $body .= "data: $e->[1]\n\n";
    }

    return "POST /_mock/fail\n"
           . JSON::PP->new->canonical->encode({
                 path_prefix => '/v1/messages', status => 200,
                 headers => { 'Content-Type' => 'text/event-stream' },
                 body => $body });
}

__DATA__

=== TEST 1: a chat completion goes to Anthropic's Messages API and comes back as OpenAI's
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello there"}]}},
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
Content-Type: application/json
--- response_body_filters eval
[[\&main::stable], [\&main::upstream]]
--- response_body eval
[q{{"id":"chatcmpl-ID","object":"chat.completion","created":0,"model":"claude-sonnet-4-5","choices":[{"index":0,"message":{"role":"assistant","content":"Mock reply from anthropic to: Hello there","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":6,"completion_tokens":7,"total_tokens":13,"prompt_tokens_details":{"cached_tokens":0}}}
},
q{POST /v1/messages
x-api-key: sk-ant-test-0001
anthropic-version: 2023-06-01
authorization: -
{"model":"claude-sonnet-4-5","system":[{"type":"text","text":"Be brief."}],"messages":[{"role":"user","content":[{"type":"text","text":"Hello there"}]}],"max_tokens":4096}
}]
--- response_headers eval
["X-AILink-Provider: anthropic\nContent-Type: application/json", ""]
--- no_error_log
[error]
[alert]
[crit]



=== TEST 2: the audit record of an Anthropic call: provider, model, tokens and cost
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello there"}]}},
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_like eval
[qr/Mock reply from anthropic to: Hello there/,
 qr/"token_id":"tok_llm",[^\n]*"method":"POST","path":"\/v1\/chat\/completions","upstream":"http:\/\/127.0.0.1:\d+\/v1","provider":"anthropic","model":"claude-sonnet-4-5","status":200,"error":null,"stream":false,"latency_ms":\d+,"upstream_latency_ms":\d+,"ttft_ms":null,"prompt_tokens":6,"completion_tokens":7,"total_tokens":13,"cached_tokens":0,"cost_usd":0.00012300\}\n\z/]
--- no_error_log
[error]



=== TEST 3: system and developer messages anywhere become "system" in order; same-role turns merge
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","messages":[
{"role":"system","content":"You are terse."},
{"role":"user","content":"First question."},
{"role":"developer","content":"Answer in French."},
{"role":"user","content":"Second question."},
{"role":"assistant","content":"Premiere reponse."},
{"role":"assistant","content":[{"type":"text","text":"Et la suite."}]},
{"role":"system","content":[{"type":"text","text":"Never use emoji."},{"type":"text","text":"Be polite."}]},
{"role":"user","content":"Third question."},
{"role":"user","content":[{"type":"text","text":"Fourth question."}]}]}},
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[\&main::stable], [\&main::upstream]]
--- response_body_like eval
[qr/"content":"Mock reply from anthropic to: Third question.Fourth question.","refusal":null\},"logprobs":null,"finish_reason":"stop"/,
qr/^POST \/v1\/messages
x-api-key: sk-ant-test-0001
anthropic-version: 2023-06-01
authorization: -
\Q{"model":"claude-sonnet-4-5","system":[{"type":"text","text":"You are terse."},{"type":"text","text":"Answer in French."},{"type":"text","text":"Never use emoji."},{"type":"text","text":"Be polite."}],"messages":[{"role":"user","content":[{"type":"text","text":"First question."},{"type":"text","text":"Second question."}]},{"role":"assistant","content":[{"type":"text","text":"Premiere reponse."},{"type":"text","text":"Et la suite."}]},{"role":"user","content":[{"type":"text","text":"Third question."},{"type":"text","text":"Fourth question."}]}],"max_tokens":4096}\E
\z/]
--- no_error_log
[error]



=== TEST 4: images as data: URL and https URL, with prompt-caching markers where the client put them
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","messages":[
{"role":"system","content":[{"type":"text","text":"You describe images for test four.","cache_control":{"type":"ephemeral"}}]},
{"role":"user","content":[{"type":"text","text":"Compare these"},
 {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo=","detail":"high"}},
 {"type":"image_url","image_url":{"url":"https://example.com/cat.jpg"},"cache_control":{"type":"ephemeral","ttl":"1h"}}]},
{"role":"assistant","content":"Two images."},
{"role":"user","content":"Which is larger?","cache_control":{"type":"ephemeral"}}]}},
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[\&main::stable], [\&main::upstream]]
--- response_body_like eval
[qr/"content":"Mock reply from anthropic to: Which is larger\?"/,
qr~^POST /v1/messages
x-api-key: sk-ant-test-0001
anthropic-version: 2023-06-01
authorization: -
\Q{"model":"claude-sonnet-4-5","system":[{"type":"text","text":"You describe images for test four.","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":[{"type":"text","text":"Compare these"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},{"type":"image","source":{"type":"url","url":"https://example.com/cat.jpg"},"cache_control":{"type":"ephemeral","ttl":"1h"}}]},{"role":"assistant","content":[{"type":"text","text":"Two images."}]},{"role":"user","content":[{"type":"text","text":"Which is larger?","cache_control":{"type":"ephemeral"}}]}],"max_tokens":4096}\E
\z~]
--- no_error_log
[error]



=== TEST 5: tools, and tool_choice in each of its forms
--- request eval
my $tools = '"tools":[{"type":"function","function":{"name":"get_weather","description":"Weather for a place","parameters":{"type":"object","properties":{"location":{"type":"string"}},"required":["location"]}}},{"type":"function","function":{"name":"ping"}}]';
my $req = sub { "POST /v1/chat/completions\n" . '{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"Weather?"}],' . $tools . $_[0] . '}' };
[$req->(''), "GET /_mock/requests/last",
 $req->(q{,"tool_choice":"auto"}), "GET /_mock/requests/last",
 $req->(q{,"tool_choice":"none"}), "GET /_mock/requests/last",
 $req->(q{,"tool_choice":"required"}), "GET /_mock/requests/last",
 $req->(q{,"tool_choice":{"type":"function","function":{"name":"get_weather"}}}), "GET /_mock/requests/last",
 $req->(q{,"tool_choice":"required","parallel_tool_calls":false}), "GET /_mock/requests/last",
 $req->(q{,"parallel_tool_calls":false}), "GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[], [\&main::upstream], [], [main::sent('tool_choice')], [], [main::sent('tool_choice')],
 [], [main::sent('tool_choice')], [], [main::sent('tool_choice')], [], [main::sent('tool_choice')],
 [], [main::sent('tool_choice')]]
--- response_body_like eval
[qr/Mock reply/, qr/^POST \/v1\/messages
x-api-key: sk-ant-test-0001
anthropic-version: 2023-06-01
authorization: -
\Q{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":[{"type":"text","text":"Weather?"}]}],"max_tokens":4096,"tools":[{"name":"get_weather","description":"Weather for a place","input_schema":{"type":"object","properties":{"location":{"type":"string"}},"required":["location"]}},{"name":"ping","input_schema":{"type":"object","properties":{}}}]}\E
\z/,
 qr/Mock reply/, qr/^\{"type":"auto"\}\n\z/,
 qr/Mock reply/, qr/^\{"type":"none"\}\n\z/,
 qr/"content":null,"refusal":null,"tool_calls":\[\{"id":"toolu_mock_1","type":"function","function":\{"name":"get_weather"/, qr/^\{"type":"any"\}\n\z/,
 qr/"content":null,"refusal":null,"tool_calls":\[\{"id":"toolu_mock_1","type":"function","function":\{"name":"get_weather"/, qr/^\{"name":"get_weather","type":"tool"\}\n\z/,
 qr/"content":null,"refusal":null,"tool_calls":\[\{"id":"toolu_mock_1","type":"function","function":\{"name":"get_weather"/, qr/^\{"disable_parallel_tool_use":true,"type":"any"\}\n\z/,
 qr/Mock reply/, qr/^\{"disable_parallel_tool_use":true,"type":"auto"\}\n\z/]
--- no_error_log
[error]



=== TEST 6: a tool round trip: tool calls in the assistant turn, two tool results in one user turn
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}}],"messages":[
{"role":"user","content":"Weather in Paris and London?"},
{"role":"assistant","content":"","tool_calls":[
 {"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Paris\"}"}},
 {"id":"call_2","type":"function","function":{"name":"get_weather","arguments":"{\"location\": \"London\"}"}}]},
{"role":"tool","tool_call_id":"call_1","content":"18C"},
{"role":"tool","tool_call_id":"call_2","content":[{"type":"text","text":"12C"}]}]}},
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[\&main::stable], [main::sent('messages')]]
--- response_body eval
[q{{"id":"chatcmpl-ID","object":"chat.completion","created":0,"model":"claude-sonnet-4-5","choices":[{"index":0,"message":{"role":"assistant","content":"Mock reply from anthropic to: 18C12C","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":6,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":0}}}
},
q{[{"content":[{"text":"Weather in Paris and London?","type":"text"}],"role":"user"},{"content":[{"id":"call_1","input":{"location":"Paris"},"name":"get_weather","type":"tool_use"},{"id":"call_2","input":{"location":"London"},"name":"get_weather","type":"tool_use"}],"role":"assistant"},{"content":[{"content":"18C","tool_use_id":"call_1","type":"tool_result"},{"content":[{"text":"12C","type":"text"}],"tool_use_id":"call_2","type":"tool_result"}],"role":"user"}]
}]
--- no_error_log
[error]



=== TEST 7: a user message after tool results joins their turn; a tool call without arguments
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","tools":[{"type":"function","function":{"name":"ping"}}],"messages":[
{"role":"user","content":"Ping it"},
{"role":"assistant","content":"Pinging.","tool_calls":[{"id":"call_p","type":"function","function":{"name":"ping","arguments":""}}]},
{"role":"tool","tool_call_id":"call_p","content":"pong"},
{"role":"user","content":"Thanks"}]}},
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[], [main::sent('messages')]]
--- response_body_like eval
[qr/"finish_reason":"stop"/, qr/^\Q[{"content":[{"text":"Ping it","type":"text"}],"role":"user"},{"content":[{"text":"Pinging.","type":"text"},{"id":"call_p","input":{},"name":"ping","type":"tool_use"}],"role":"assistant"},{"content":[{"content":"pong","tool_use_id":"call_p","type":"tool_result"},{"text":"Thanks","type":"text"}],"role":"user"}]\E\n\z/]



=== TEST 8: max_completion_tokens and max_tokens
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","max_completion_tokens":50,"messages":[{"role":"user","content":"hi"}]}},
"GET /_mock/requests/last",
"POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","max_tokens":77,"messages":[{"role":"user","content":"hi"}]}},
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[], [main::sent('max_tokens')], [], [main::sent('max_tokens')]]
--- response_body_like eval
[qr/Mock reply/, qr/^50\n\z/, qr/Mock reply/, qr/^77\n\z/]



=== TEST 9: stop, temperature (clamped to Anthropic's 1), top_p, user and stream map to their Anthropic names
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","stop":"END","temperature":1.5,"top_p":0.9,"user":"user-42","messages":[{"role":"user","content":"hi"}]}},
"GET /_mock/requests/last",
"POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","stop":["A","B"],"temperature":0.25,"stream":false,"messages":[{"role":"user","content":"hi"}]}},
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[], [\&main::upstream], [], [\&main::upstream]]
--- response_body_like eval
[qr/Mock reply/, qr/\Q{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_tokens":4096,"temperature":1,"top_p":0.9,"stop_sequences":["END"],"metadata":{"user_id":"user-42"}}\E\n\z/,
 qr/Mock reply/, qr/\Q{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_tokens":4096,"temperature":0.25,"stop_sequences":["A","B"]}\E\n\z/]



=== TEST 10: OpenAI-only fields are dropped (Anthropic rejects unknown fields)
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","frequency_penalty":0.5,"presence_penalty":0.1,"logit_bias":{"50256":-100},"response_format":{"type":"text"},"seed":7,"n":1,"logprobs":false,"store":true,"metadata":{"k":"v"},"service_tier":"auto","stream_options":null,"prediction":null,"modalities":["text"],"messages":[{"role":"user","content":"hi","name":"bob"}]}},
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code eval
[200, 200]
--- response_body_filters eval
[[], [\&main::upstream]]
--- response_body_like eval
[qr/Mock reply from anthropic to: hi/, qr/\Q{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_tokens":4096}\E\n\z/]



=== TEST 11: several choices cannot be had from Anthropic: n > 1 is a 400 and nothing is sent
--- request eval
["DELETE /_mock/requests",
"POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","n":2,"messages":[{"role":"user","content":"hi"}]}},
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code eval
[200, 400, 404]
--- response_body_filters eval
[[], [\&main::stable], []]
--- response_body eval
["{\"ok\":true}", q{{"error":{"type":"invalid_request_error","code":"invalid_request","message":"Anthropic models return one choice: \"n\" must be 1","param":"n","request_id":"ID"}}
}, "{\"error\":\"no requests recorded\"}"]



=== TEST 12: requests Anthropic cannot take are refused with a 400 naming the parameter
--- request eval
my $p = "POST /v1/chat/completions\n";
[$p . q{{"model":"claude-sonnet-4-5","messages":[]}},
 $p . q{{"model":"claude-sonnet-4-5","messages":[{"role":"system","content":"Only a system prompt."}]}},
 $p . q{{"model":"claude-sonnet-4-5","messages":[{"role":"assistant","content":"I start."},{"role":"user","content":"hi"}]}},
 $p . '{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"},{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{not json"}}]}]}',
 $p . q{{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"ftp://example.com/a.png"}}]}]}},
 $p . q{{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png,notbase64"}}]}]}},
 $p . q{{"model":"claude-sonnet-4-5","tool_choice":"sometimes","tools":[{"type":"function","function":{"name":"f"}}],"messages":[{"role":"user","content":"hi"}]}},
 $p . q{{"model":"claude-sonnet-4-5","max_tokens":0,"messages":[{"role":"user","content":"hi"}]}},
 $p . q{{"model":"claude-sonnet-4-5","messages":[{"role":"function","name":"f","content":"x"}]}}]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code eval
[400, 400, 400, 400, 400, 400, 400, 400, 400]
--- response_body_like eval
[qr/"code":"invalid_request","message":"\\"messages\\" must be a non-empty array","param":"messages"/,
 qr/"code":"invalid_request","message":"\\"messages\\" has no user or assistant content","param":"messages"/,
 qr/"code":"invalid_request","message":"the first non-system message must be from the user","param":"messages"/,
 qr/"code":"invalid_request","message":"messages\[1\].tool_calls\[0\].function.arguments is not a JSON object","param":"messages"/,
 qr/"code":"invalid_request","message":"messages\[0\]: an image must be a base64 data: URL or an http\(s\) URL","param":"messages"/,
 qr/"code":"invalid_request","message":"messages\[0\]: an image must be a base64 data: URL or an http\(s\) URL","param":"messages"/,
 qr/"code":"invalid_request","message":"\\"tool_choice\\" must be \\"auto\\", \\"none\\", \\"required\\" or a function","param":"tool_choice"/,
 qr/"code":"invalid_request","message":"\\"max_tokens\\" must be a positive integer","param":"max_tokens"/,
 qr/"code":"invalid_request","message":"messages\[0\]: role \\"function\\" is not supported with Anthropic models","param":"messages"/]
--- no_error_log
[alert]
[crit]



=== TEST 13: a tool call comes back as OpenAI tool_calls beside the text
--- request
POST /v1/chat/completions
{"model":"claude-sonnet-4-5","tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}}],"messages":[{"role":"user","content":"Weather in Paris?"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Scenario: tool_call
--- response_body_filters eval
\&main::stable
--- response_body
{"id":"chatcmpl-ID","object":"chat.completion","created":0,"model":"claude-sonnet-4-5","choices":[{"index":0,"message":{"role":"assistant","content":"Mock reply from anthropic to: Weather in Paris?","refusal":null,"tool_calls":[{"id":"toolu_mock_1","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Paris\"}"}}]},"logprobs":null,"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":5,"completion_tokens":14,"total_tokens":19,"prompt_tokens_details":{"cached_tokens":0}}}
--- no_error_log
[error]



=== TEST 14: parallel tool calls all survive, and their ids work in the next request
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}},{"type":"function","function":{"name":"get_time","parameters":{"type":"object","properties":{"zone":{"type":"string","enum":["UTC","CET"]}}}}}],"messages":[{"role":"user","content":"Weather and time?"}]}},
"POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}},{"type":"function","function":{"name":"get_time","parameters":{"type":"object","properties":{"zone":{"type":"string","enum":["UTC","CET"]}}}}}],"messages":[{"role":"user","content":"Weather and time?"},
{"role":"assistant","content":"Mock reply from anthropic to: Weather and time?","tool_calls":[{"id":"toolu_mock_1","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Paris\"}"}},{"id":"toolu_mock_2","type":"function","function":{"name":"get_time","arguments":"{\"zone\":\"UTC\"}"}}]},
{"role":"tool","tool_call_id":"toolu_mock_1","content":"sunny"},{"role":"tool","tool_call_id":"toolu_mock_2","content":"noon"}]}}]
--- more_headers eval
["Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001\nX-Mock-Scenario: parallel_tools",
 "Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001"]
--- response_body_filters eval
[[\&main::stable], [\&main::stable]]
--- response_body_like eval
[qr/^\Q{"id":"chatcmpl-ID","object":"chat.completion","created":0,"model":"claude-sonnet-4-5","choices":[{"index":0,"message":{"role":"assistant","content":"Mock reply from anthropic to: Weather and time?","refusal":null,"tool_calls":[{"id":"toolu_mock_1","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Paris\"}"}},{"id":"toolu_mock_2","type":"function","function":{"name":"get_time","arguments":"{\"zone\":\"UTC\"}"}}]},"logprobs":null,"finish_reason":"tool_calls"}]\E/,
 qr/"content":"Mock reply from anthropic to: sunnynoon","refusal":null\},"logprobs":null,"finish_reason":"stop"/]
--- no_error_log
[error]



=== TEST 15: stop reason max_tokens is finish_reason "length"
--- request
POST /v1/chat/completions
{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"Tell me a long story"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Scenario: max_tokens
--- response_body_like: "finish_reason":"length"\}\],"usage"



=== TEST 16: prompt caching: cache writes then cache reads are reported, and audited
--- request eval
my $r = "POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","messages":[{"role":"system","content":[{"type":"text","text":"You are the assistant of the prompt cache usage test.","cache_control":{"type":"ephemeral"}}]},{"role":"user","content":"Hi"}]}};
[$r, $r, "GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_like eval
[qr/"usage":\{"prompt_tokens":28,"completion_tokens":6,"total_tokens":34,"prompt_tokens_details":\{"cached_tokens":0,"cache_creation_tokens":14\}\}\}\n\z/,
 qr/"usage":\{"prompt_tokens":28,"completion_tokens":6,"total_tokens":34,"prompt_tokens_details":\{"cached_tokens":14\}\}\}\n\z/,
 qr/"provider":"anthropic","model":"claude-sonnet-4-5","status":200,[^\n]*"prompt_tokens":28,"completion_tokens":6,"total_tokens":34,"cached_tokens":14,"cost_usd":0\.\d+\}\n\z/]
--- no_error_log
[error]



=== TEST 17: a text stream: role, content deltas (ping ignored), finish chunk, [DONE]
--- request
POST /v1/chat/completions
{"model":"claude-sonnet-4-5","stream":true,"messages":[{"role":"user","content":"Hello there"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Events: 3
--- response_headers_like
Content-Type: text/event-stream
X-AILink-Provider: anthropic
--- response_body_filters eval
\&main::sse
--- response_body
delta {"content":"","role":"assistant"}
delta {"content":"Mock reply from "}
delta {"content":"anthropic to: "}
delta {"content":"Hello there"}
delta {} finish stop
[DONE]
ids 1
--- no_error_log
[error]
[alert]



=== TEST 18: the request sent for a stream asks Anthropic for one
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}},
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[], [\&main::upstream]]
--- response_body_like eval
[qr/data: \[DONE\]\n\n\z/, qr/\Q{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_tokens":4096,"stream":true}\E\n\z/]



=== TEST 19: a streamed tool call: id and name first, then argument deltas that add up to JSON
--- request
POST /v1/chat/completions
{"model":"claude-sonnet-4-5","stream":true,"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}}],"messages":[{"role":"user","content":"Hello there"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Scenario: tool_call
X-Mock-Events: 1
--- response_body_filters eval
\&main::sse
--- response_body
delta {"content":"","role":"assistant"}
delta {"content":"Mock reply from anthropic to: Hello there"}
delta {"tool_calls":[{"function":{"arguments":"","name":"get_weather"},"id":"toolu_mock_1","index":0,"type":"function"}]}
delta {"tool_calls":[{"function":{"arguments":"{\"loc"},"index":0}]}
delta {"tool_calls":[{"function":{"arguments":"ation"},"index":0}]}
delta {"tool_calls":[{"function":{"arguments":"\": \"P"},"index":0}]}
delta {"tool_calls":[{"function":{"arguments":"aris\""},"index":0}]}
delta {"tool_calls":[{"function":{"arguments":"}"},"index":0}]}
delta {} finish tool_calls
[DONE]
ids 1
arguments 0 {"location": "Paris"} valid
--- no_error_log
[error]



=== TEST 20: parallel streamed tool calls get indexes 0 and 1; include_usage gives the usage chunk
--- request
POST /v1/chat/completions
{"model":"claude-sonnet-4-5","stream":true,"stream_options":{"include_usage":true},"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}},{"type":"function","function":{"name":"ping"}}],"messages":[{"role":"user","content":"Hello there"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Scenario: parallel_tools
X-Mock-Events: 1
--- response_body_filters eval
\&main::sse
--- response_body
delta {"content":"","role":"assistant"}
delta {"content":"Mock reply from anthropic to: Hello there"}
delta {"tool_calls":[{"function":{"arguments":"","name":"get_weather"},"id":"toolu_mock_1","index":0,"type":"function"}]}
delta {"tool_calls":[{"function":{"arguments":"{\"loc"},"index":0}]}
delta {"tool_calls":[{"function":{"arguments":"ation"},"index":0}]}
delta {"tool_calls":[{"function":{"arguments":"\": \"P"},"index":0}]}
delta {"tool_calls":[{"function":{"arguments":"aris\""},"index":0}]}
delta {"tool_calls":[{"function":{"arguments":"}"},"index":0}]}
delta {"tool_calls":[{"function":{"arguments":"","name":"ping"},"id":"toolu_mock_2","index":1,"type":"function"}]}
delta {"tool_calls":[{"function":{"arguments":"{}"},"index":1}]}
delta {} finish tool_calls
usage {"completion_tokens":14,"prompt_tokens":3,"prompt_tokens_details":{"cached_tokens":0},"total_tokens":17} choices 0
[DONE]
ids 1
arguments 0 {"location": "Paris"} valid
arguments 1 {} valid
--- no_error_log
[error]



=== TEST 21: a stream's usage is audited whether or not the client asked for it
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","stream":true,"messages":[{"role":"user","content":"Hello there"}]}},
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Events: 3
--- response_body_like eval
[qr/\A(?!.*"usage")data: .*"finish_reason":"stop"\}\]\}\n\ndata: \[DONE\]\n\n\z/s,
 qr/"provider":"anthropic","model":"claude-sonnet-4-5","status":200,"error":null,"stream":true,[^\n]*"prompt_tokens":3,"completion_tokens":7,"total_tokens":10,"cached_tokens":0,"cost_usd":0.00011400\}\n\z/]



=== TEST 22: an error event in the middle of a stream ends it with an OpenAI error event and [DONE]
--- request
POST /v1/chat/completions
{"model":"claude-sonnet-4-5","stream":true,"messages":[{"role":"user","content":"Hello there"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Scenario: error_mid_stream
X-Mock-Events: 4
--- response_body_filters eval
\&main::sse
--- response_body
delta {"content":"","role":"assistant"}
delta {"content":"Mock reply "}
delta {"content":"from anthropic "}
error {"code":"upstream_error","message":"Overloaded","type":"overloaded_error"}
[DONE]
ids 1
--- error_log
ailink anthropic: error event in the stream: overloaded_error
--- no_error_log
[error]
[alert]



=== TEST 23: a stream the provider cuts off ends with an error event and [DONE]
--- request
POST /v1/chat/completions
{"model":"claude-sonnet-4-5","stream":true,"messages":[{"role":"user","content":"Hello there"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Events: 4
X-Mock-Drop-After: 5
--- response_body_filters eval
\&main::sse
--- response_body
delta {"content":"","role":"assistant"}
delta {"content":"Mock reply "}
delta {"content":"from anthropic "}
error {"code":"upstream_error","message":"the provider's stream ended early","type":"api_error"}
[DONE]
ids 1
--- error_log
stream from "http://127.0.0.1
ended early



=== TEST 24: UTF-8 text goes through untouched, both ways, streamed or not
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","messages":[{"role":"system","content":"Réponds en français ✓"},{"role":"user","content":"Grüße aus Köln 🌍 日本語"}]}},
"GET /_mock/requests/last",
"POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","stream":true,"messages":[{"role":"user","content":"Grüße aus Köln 🌍 日本語"}]}}]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Events: 3
--- response_body_filters eval
[[], [\&main::upstream], [\&main::sse]]
--- response_body_like eval
[qr/"content":"Mock reply from anthropic to: Grüße aus Köln 🌍 日本語"/,
 qr/\Q{"model":"claude-sonnet-4-5","system":[{"type":"text","text":"Réponds en français ✓"}],"messages":[{"role":"user","content":[{"type":"text","text":"Grüße aus Köln 🌍 日本語"}]}],"max_tokens":4096}\E\n\z/,
 qr/^\Qdelta {"content":"","role":"assistant"}
delta {"content":"Mock reply from anthropic "}
delta {"content":"to: Grüße aus "}
delta {"content":"Köln 🌍 日本語"}
delta {} finish stop
[DONE]
ids 1
\E\z/]



=== TEST 25: a provider 400 keeps its status and message, in the OpenAI envelope
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","temperature":-0.5,"messages":[{"role":"user","content":"hi"}]}},
"POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}}]
--- more_headers eval
["Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001",
 "Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001\nX-Mock-Status: 400"]
--- error_code eval
[400, 400]
--- response_body_filters eval
[[\&main::stable], [\&main::stable]]
--- response_body eval
[q{{"error":{"type":"invalid_request_error","code":"invalid_request_error","message":"temperature: Input should be greater than or equal to 0","param":null,"request_id":"ID"}}
},
q{{"error":{"type":"invalid_request_error","code":"invalid_request_error","message":"mock error 400","param":null,"request_id":"ID"}}
}]
--- response_headers eval
["Content-Type: application/json\nX-AILink-Provider: anthropic", "Content-Type: application/json"]



=== TEST 26: a provider 401, and a passthrough token without a key
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}},
"POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}}]
--- more_headers eval
["Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001\nX-Mock-Status: 401",
 "Authorization: Bearer ailink_v1_proj_test_tok_llmbyok0000000000000000001"]
--- error_code eval
[401, 401]
--- response_body_filters eval
[[\&main::stable], [\&main::stable]]
--- response_body eval
[q{{"error":{"type":"authentication_error","code":"authentication_error","message":"mock error 401","param":null,"request_id":"ID"}}
},
q{{"error":{"type":"authentication_error","code":"authentication_error","message":"x-api-key header is required","param":null,"request_id":"ID"}}
}]



=== TEST 27: bring your own Anthropic key: sent as x-api-key
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}},
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llmbyok0000000000000000001
X-AILink-Upstream-Key: sk-ant-user-own
--- response_body_filters eval
[[], [\&main::upstream]]
--- response_body_like eval
[qr/Mock reply from anthropic to: hi/, qr/^POST \/v1\/messages\nx-api-key: sk-ant-user-own\nanthropic-version: 2023-06-01\nauthorization: -\n/]



=== TEST 28: a provider 429 keeps its status and Retry-After
--- request
POST /v1/chat/completions
{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Status: 429
X-Mock-Retry-After: 7
--- error_code: 429
--- response_headers
Retry-After: 7
Content-Type: application/json
--- response_body_filters eval
\&main::stable
--- response_body
{"error":{"type":"rate_limit_error","code":"rate_limit_error","message":"mock error 429","param":null,"request_id":"ID"}}



=== TEST 29: Anthropic's 529 overloaded is a 503
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}},
"POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}}]
--- more_headers eval
["Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001\nX-Mock-Scenario: overloaded",
 "Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001\nX-Mock-Scenario: error_mid_stream"]
--- error_code eval
[503, 503]
--- response_body_filters eval
[[\&main::stable], [\&main::stable]]
--- response_body eval
[q{{"error":{"type":"api_error","code":"overloaded_error","message":"Overloaded","param":null,"request_id":"ID"}}
},
q{{"error":{"type":"api_error","code":"overloaded_error","message":"Overloaded","param":null,"request_id":"ID"}}
}]



=== TEST 30: a malformed provider body is a 502
--- request
POST /v1/chat/completions
{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Scenario: malformed
--- error_code: 502
--- response_body_like: ^\{"error":\{"type":"api_error","code":"upstream_error","message":"[^"]+","param":null,"request_id":"[0-9a-f]{32}"\}\}$
--- error_log
ailink: malformed anthropic response



=== TEST 31: JSON that is not an Anthropic message is a 502 too
--- request
POST /v1/chat/completions
{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Raw-Body: {"id":"chatcmpl-x","object":"chat.completion","choices":[]}
--- error_code: 502
--- response_body_like: "code":"upstream_error"
--- error_log
ailink: malformed anthropic response



=== TEST 32: a response cut off by the provider is a 502
--- request
POST /v1/chat/completions
{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Scenario: drop
--- error_code: 502
--- response_body_like: "code":"upstream_error"



=== TEST 33: tool call ids Anthropic would refuse are mapped the same way on both sides
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","tools":[{"type":"function","function":{"name":"now"}}],"messages":[
{"role":"user","content":"Time?"},
{"role":"assistant","content":null,"tool_calls":[{"id":"functions.now:0","type":"function","function":{"name":"now","arguments":"{}"}}]},
{"role":"tool","tool_call_id":"functions.now:0","content":"noon"}]}},
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[], [main::sent('messages')]]
--- response_body_like eval
[qr/"content":"Mock reply from anthropic to: noon"/, qr/^\Q[{"content":[{"text":"Time?","type":"text"}],"role":"user"},{"content":[{"id":"functions_now_0","input":{},"name":"now","type":"tool_use"}],"role":"assistant"},{"content":[{"content":"noon","tool_use_id":"functions_now_0","type":"tool_result"}],"role":"user"}]\E\n\z/]
--- no_error_log
[error]



=== TEST 34: a response with thinking and only a tool call: content null, the thinking as reasoning_content and thinking_blocks, usage with cache tokens
--- request
POST /v1/chat/completions
{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Raw-Body: {"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"thinking","thinking":"hmm","signature":"c2ln"},{"type":"tool_use","id":"toolu_1","name":"f","input":{"a":[1,2.5],"b":"\u00e9","c":{}}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":3,"cache_creation_input_tokens":2}}
--- response_body_filters eval
\&main::stable
--- response_body
{"id":"chatcmpl-ID","object":"chat.completion","created":0,"model":"claude-sonnet-4-5","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":null,"thinking_blocks":[{"type":"thinking","thinking":"hmm","signature":"c2ln"}],"reasoning_content":"hmm","tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"f","arguments":"{\"a\":[1,2.5],\"b\":\"é\",\"c\":{}}"}}]},"logprobs":null,"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":15,"completion_tokens":5,"total_tokens":20,"prompt_tokens_details":{"cached_tokens":3,"cache_creation_tokens":2}}}
--- no_error_log
[error]



=== TEST 35: stop reasons: refusal is content_filter, stop_sequence is stop; text blocks are joined
--- request eval
my $r = "POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}};
[$r, $r]
--- more_headers eval
["Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001\nX-Mock-Raw-Body: " . q{{"type":"message","role":"assistant","content":[],"stop_reason":"refusal","usage":{"input_tokens":4,"output_tokens":0}}},
 "Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001\nX-Mock-Raw-Body: " . q{{"type":"message","role":"assistant","content":[{"type":"text","text":"one, "},{"type":"text","text":"two"}],"stop_reason":"stop_sequence","stop_sequence":"END","usage":{"input_tokens":4,"output_tokens":2}}}]
--- response_body_like eval
[qr/"message":\{"role":"assistant","content":null,"refusal":null\},"logprobs":null,"finish_reason":"content_filter"\}/,
 qr/"message":\{"role":"assistant","content":"one, two","refusal":null\},"logprobs":null,"finish_reason":"stop"\}/]



=== TEST 36: stream events the mock never sends: thinking, data-only events, unknown events, server tools, a tool call without input, cumulative usage
--- request eval
[main::armed_stream(
  ['message_start', q{{"type":"message_start","message":{"id":"msg_x","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","usage":{"input_tokens":10,"cache_read_input_tokens":20,"cache_creation_input_tokens":0,"output_tokens":1}}}}],
  ['content_block_start', q{{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}}],
  ['content_block_delta', q{{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let me think"}}}],
  ['content_block_delta', q{{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"c2ln"}}}],
  ['content_block_stop', q{{"type":"content_block_stop","index":0}}],
  [undef, q{{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}}],
  [undef, q{{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Olá 👋 \"quoted\"\n"}}}],
  ['content_block_citation', q{{"type":"content_block_citation","index":1,"anything":[1,2]}}],
  ['content_block_stop', q{{"type":"content_block_stop","index":1}}],
  ['content_block_start', q{{"type":"content_block_start","index":2,"content_block":{"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{}}}}],
  ['content_block_delta', q{{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"query\": \"x\"}"}}}],
  ['content_block_stop', q{{"type":"content_block_stop","index":2}}],
  ['content_block_start', q{{"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"toolu_9","name":"now","input":{}}}}],
  ['content_block_delta', q{{"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":""}}}],
  ['content_block_stop', q{{"type":"content_block_stop","index":3}}],
  ['message_delta', q{{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":10,"cache_read_input_tokens":20,"output_tokens":42}}}],
  ['ping', q{{"type":"ping"}}],
  ['message_stop', q{{"type":"message_stop"}}]),
 "POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}},
 "GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[], [\&main::sse], []]
--- response_body_like eval
[qr/"ok":true/,
 qr/^\Qdelta {"content":"","role":"assistant"}
delta {"reasoning_content":"Let me think"}
delta {"thinking_blocks":[{"signature":"c2ln","type":"thinking"}]}
delta {"content":"Olá 👋 \"quoted\"\n"}
delta {"tool_calls":[{"function":{"arguments":"","name":"now"},"id":"toolu_9","index":0,"type":"function"}]}
delta {"tool_calls":[{"function":{"arguments":"{}"},"index":0}]}
delta {} finish tool_calls
usage {"completion_tokens":42,"prompt_tokens":30,"prompt_tokens_details":{"cached_tokens":20},"total_tokens":72} choices 0
[DONE]
ids 1
arguments 0 {} valid
\E\z/,
 qr/"stream":true,[^\n]*"prompt_tokens":30,"completion_tokens":42,"total_tokens":72,"cached_tokens":20,/]
--- no_error_log
[error]



=== TEST 37: a malformed event in a stream ends it with an error event and [DONE]
--- request eval
[main::armed_stream(
  ['message_start', q{{"type":"message_start","message":{"usage":{"input_tokens":3,"output_tokens":1}}}}],
  ['content_block_delta', q{{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"ok"}}}],
  ['content_block_delta', '{"type":"content_block_delta","index":0,"delta":'],
  ['content_block_delta', q{{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lost"}}}],
  ['message_stop', q{{"type":"message_stop"}}]),
 "POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","stream":true,"messages":[{"role":"user","content":"hi"}]}}]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[], [\&main::sse]]
--- response_body_like eval
[qr/"ok":true/, qr/^\Qdelta {"content":"","role":"assistant"}
delta {"content":"ok"}
error {"code":"upstream_error","message":"the provider sent a malformed stream event","type":"api_error"}
[DONE]
ids 1
\E\z/]
--- no_error_log
[alert]
[crit]



=== TEST 38: a long stream of small events: constant memory, exact usage
(read by a client slower than the provider: see AILink::Test)
--- http_config eval: $AILink::Test::SLOW_CLIENT_HTTP_CONFIG
--- config eval: $AILink::Test::SLOW_CLIENT_CONFIG
--- request eval
["GET /_worker",
"POST /slow/v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Long"}]}},
"GET /_worker?max_kb=200",
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Events: 2000
X-Mock-Chunk-Delay-Ms: 0
--- response_body_like eval
[qr/^worker \d+/,
 qr/^(data: \{[^\n]*\}\n\n){2002}data: \{[^\n]*"usage":\{"prompt_tokens":2,"completion_tokens":2000,"total_tokens":2002,[^\n]*\n\ndata: \[DONE\]\n\n\z/,
 qr/^worker \d+/,
 qr/"stream":true,[^\n]*"prompt_tokens":2,"completion_tokens":2000,/]
--- timeout: 30
--- no_error_log
[error]



=== TEST 39: JSON the scan accepts but no translator can read is a 400, not a 500
--- request eval
my $p = "POST /v1/chat/completions\n";
[$p . q{{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"half a pair \udc00"}]}},
 $p . q{{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi","key\u0000with NUL":1}]}},
 $p . q{{"model":"claude-sonnet-4-\u0035","messages":[{"role":"user","content":"escaped model name"}]}}]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code eval
[400, 400, 200]
--- response_body_like eval
[qr/"code":"invalid_request","message":"the request body is not JSON the gateway can translate"/,
 qr/"code":"invalid_request","message":"the request body is not JSON the gateway can translate"/,
 qr/"object":"chat.completion"[^\n]*Mock reply from anthropic to: escaped model name/]
--- no_error_log
[alert]
[crit]
