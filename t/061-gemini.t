# OpenAI chat.completions in, Gemini generateContent upstream: what the
# gateway sends (the mock provider's record, through /_mock/) and what the
# client gets back, JSON and streams, including the cases that break
# gateways: system messages anywhere, roles, merged turns, images, tool
# schemas Gemini refuses, tool results by name, Gemini 3 thought
# signatures, safety settings per route, blocked prompts, cumulative stream
# usage, thought tokens, errors.

use lib 't/lib';
use AILink::Test;
use Test::Nginx::Socket 'no_plan';
use JSON::PP ();
use HTTP::Tiny ();
use MIME::Base64 qw(decode_base64 decode_base64url);
use Encode qw(encode_utf8);

add_block_preprocessor(\&ailink_defaults);
no_shuffle();
no_root_location();
run_tests();


# The request the mock recorded: method, path and query, the key headers
# and the body exactly as the gateway sent it.
sub upstream {
    my $rec = JSON::PP->new->utf8->decode(shift);
    my $h = $rec->{headers};

    return "$rec->{method} $rec->{path}"
           . (length $rec->{query} ? "?$rec->{query}" : '') . "\n"
           . "x-goog-api-key: " . ($h->{'x-goog-api-key'} // '-') . "\n"
           . "authorization: " . ($h->{authorization} // '-') . "\n"
           . encode_utf8($rec->{body} // 'no body') . "\n";
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
    $b =~ s/"call_[0-9a-f]{12}_(\d+)/"call_ID_$1/g;
    $b =~ s/__thought__[A-Za-z0-9_-]+"/__thought__SIG"/g;

    return $b;
}


# An OpenAI stream, one line per event: each chunk's delta and finish
# reason, usage and error events, [DONE]; then checks that every chunk is
# well formed with one id, and the text the deltas add up to.
sub sse {
    my $body = shift;
    my $json = JSON::PP->new->utf8->canonical;
    my (@out, %ids, $text);

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
            || ($c->{model} // '') !~ /^gemini-/
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
        push @out, stable($line);

        $text .= $ch->{delta}{content} // '';
    }

    push @out, "left over: $body" if length $body;
    push @out, 'ids ' . scalar(keys %ids);
    push @out, 'text [' . encode_utf8($text) . ']' if defined $text;

    return join("\n", @out) . "\n";
}


# The content of a chat.completion.
sub content {
    my $r = eval { JSON::PP->new->utf8->decode(shift) };

    return "not JSON\n" unless $r;
    return encode_utf8($r->{choices}[0]{message}{content} // 'null') . "\n";
}


sub weather_tool {
    return {type => 'function', function => {name => 'get_weather',
            parameters => {type => 'object',
                           properties => {location => {type => 'string'}}}}};
}


# POSTs a chat completion to the gateway under test (it is running while
# the response filters are)
sub chat {
    my $req = shift;
    my $port = $Test::Nginx::Socket::ServerPortForClient
               || $Test::Nginx::Socket::ServerPort;

    return HTTP::Tiny->new(timeout => 10)->post(
        "http://127.0.0.1:$port/v1/chat/completions",
        {headers => {Authorization => "Bearer $LLM_TOKEN",
                     'Content-Type' => 'application/json'},
         content => JSON::PP->new->utf8->encode($req)});
}


# Gemini 3 thought signatures, from the response that carries one: the
# next turn with the tool call ids as returned must pass the mock's check
# (it wants exactly the signature it issued, on that functionCall part);
# the same turn with the signature cut from the id must not.
sub signature_round_trip {
    my $body = shift;
    my $json = JSON::PP->new->utf8->canonical;
    my (@out, $res, $rec);

    my $r = eval { $json->decode($body) } or return "not JSON: $body\n";
    my $calls = $r->{choices}[0]{message}{tool_calls} || [];

    for my $c (@$calls) {
        my ($enc) = $c->{id} =~ /__thought__([A-Za-z0-9_-]+)\z/;
        my $sig = defined $enc ? decode_base64url($enc) : '';

        push @out, "call $c->{function}{name} $c->{function}{arguments} "
                   . ($sig ? 'signed ' . (decode_base64($sig)
                                          =~ /^mock-thought-sig:/
                                          ? 'by the mock' : "($sig)")
                           : 'unsigned');
    }

    return join("\n", @out, "no tool call\n") unless @$calls;

    my ($enc) = $calls->[0]{id} =~ /__thought__([A-Za-z0-9_-]+)\z/;
    my $sig = defined $enc ? decode_base64url($enc) : '-';

    my $turn = sub {
        my @tc = @_;

        return {model => 'gemini-3-pro', tools => [weather_tool()], messages => [
            {role => 'user', content => 'Weather in Paris?'},
            {role => 'assistant', content => undef, tool_calls => \@tc},
            map({ {role => 'tool', tool_call_id => $_->{id},
                   content => 'sunny'} } @tc)]};
    };

    $res = chat($turn->(@$calls));
    $rec = $json->decode(mock_get('/_mock/requests/last'));
    push @out, "ids as returned: $res->{status}, thoughtSignature sent "
               . (($rec->{json}{contents}[1]{parts}[0]{thoughtSignature}
                   // '') eq $sig ? 'as issued' : 'WRONG');

    my @bare = map { my %c = %$_; $c{id} =~ s/__thought__.*//; \%c } @$calls;

    $res = chat($turn->(@bare));
    $rec = $json->decode(mock_get('/_mock/requests/last'));
    push @out, "signature cut off: $res->{status}, thoughtSignature sent "
               . ($rec->{json}{contents}[1]{parts}[0]{thoughtSignature}
                  // 'none') . ', '
               . ($res->{content} =~ /"message":"Function call is missing a thought_signature/
                  ? "Gemini's message" : $res->{content});

    return join("\n", @out) . "\n";
}


__DATA__

=== TEST 1: a chat completion goes to generateContent with the Gemini key and comes back as OpenAI's
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello there"},{"role":"developer","content":"Answer in English."}]}},
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
Content-Type: application/json
--- response_body_filters eval
[[\&main::stable], [\&main::upstream]]
--- response_body_like eval
[qr/^\Q{"id":"chatcmpl-ID","object":"chat.completion","created":0,"model":"gemini-2.0-flash","choices":[{"index":0,"message":{"role":"assistant","content":"Mock reply from gemini to: Hello there","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":7,"total_tokens":17,"prompt_tokens_details":{"cached_tokens":0}}}\E\n?\z/,
qr/^\QPOST \/v1beta\/models\/gemini-2.0-flash:generateContent
x-goog-api-key: gm-test-0001
authorization: -
{"contents":[{"role":"user","parts":[{"text":"Hello there"}]}],"systemInstruction":{"parts":[{"text":"Be brief."},{"text":"Answer in English."}]}}\E
\z/]
--- response_headers eval
["X-AILink-Provider: gemini\nContent-Type: application/json", ""]
--- no_error_log
[error]
[alert]
[crit]



=== TEST 2: the audit record of a Gemini call: provider, model, tokens and cost
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello there"},{"role":"developer","content":"Answer in English."}]}},
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_like eval
[qr/Mock reply from gemini to: Hello there/,
 qr/"token_id":"tok_llm",[^\n]*"method":"POST","path":"\/v1\/chat\/completions","upstream":"http:\/\/127.0.0.1:\d+\/v1beta","provider":"gemini","model":"gemini-2.0-flash","status":200,"error":null,"stream":false,"latency_ms":\d+,"upstream_latency_ms":\d+,"ttft_ms":null,"prompt_tokens":10,"completion_tokens":7,"total_tokens":17,"cached_tokens":0,"cost_usd":0.00000380\}\n\z/]
--- no_error_log
[error]



=== TEST 3: system and developer messages anywhere go to systemInstruction in order; roles user/model; same-role turns merge
--- request eval
my $r = "POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","messages":[
{"role":"system","content":"You are terse."},
{"role":"user","content":"First question."},
{"role":"developer","content":"Answer in French."},
{"role":"user","content":"Second question."},
{"role":"assistant","content":"Premiere reponse."},
{"role":"assistant","content":[{"type":"text","text":"Et la suite."}]},
{"role":"system","content":[{"type":"text","text":"Never use emoji."},{"type":"text","text":"Be polite."}]},
{"role":"user","content":"Third question."},
{"role":"user","content":[{"type":"text","text":"Fourth question."}]}]}};
[$r, "GET /_mock/requests/last", $r, "GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[\&main::content], [main::sent('contents')], [\&main::content], [main::sent('systemInstruction')]]
--- response_body eval
["Mock reply from gemini to: Third question.Fourth question.\n",
q{[{"parts":[{"text":"First question."},{"text":"Second question."}],"role":"user"},{"parts":[{"text":"Premiere reponse."},{"text":"Et la suite."}],"role":"model"},{"parts":[{"text":"Third question."},{"text":"Fourth question."}],"role":"user"}]
},
"Mock reply from gemini to: Third question.Fourth question.\n",
q{{"parts":[{"text":"You are terse."},{"text":"Answer in French."},{"text":"Never use emoji."},{"text":"Be polite."}]}
}]
--- no_error_log
[error]



=== TEST 4: images: a data: URL is inlineData, an https URL is fileData with the type from its extension
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","messages":[
{"role":"user","content":[{"type":"text","text":"Compare these"},
 {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo=","detail":"high"}},
 {"type":"image_url","image_url":{"url":"https://example.com/cat.png"}},
 {"type":"image_url","image_url":{"url":"https://example.com/photos/dog.JPEG?size=large"}},
 {"type":"image_url","image_url":{"url":"https://example.com/doc.pdf#page=2"}}]}]}},
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[\&main::content], [main::sent('contents')]]
--- response_body eval
["Mock reply from gemini to: Compare these\n",
q{[{"parts":[{"text":"Compare these"},{"inlineData":{"data":"iVBORw0KGgo=","mimeType":"image/png"}},{"fileData":{"fileUri":"https://example.com/cat.png","mimeType":"image/png"}},{"fileData":{"fileUri":"https://example.com/photos/dog.JPEG?size=large","mimeType":"image/jpeg"}},{"fileData":{"fileUri":"https://example.com/doc.pdf#page=2","mimeType":"application/pdf"}}],"role":"user"}]
}]
--- no_error_log
[error]



=== TEST 5: an image URL Gemini cannot take is a 400 that says why, and nothing is sent
--- request eval
["DELETE /_mock/requests",
"POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","messages":[{"role":"user","content":[{"type":"text","text":"What is this?"},{"type":"image_url","image_url":{"url":"https://example.com/render?id=7"}}]}]}},
"POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"ftp://example.com/a.png"}}]}]}},
"POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png,rawbytes"}}]}]}},
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code eval
[200, 400, 400, 400, 404]
--- response_body_like eval
[qr/^\{"ok":true\}\z/,
 qr/^\{"error":\{"type":"invalid_request_error","code":"invalid_request","message":"messages\[0\]\.content: cannot tell the media type of \\"https:\/\/example.com\/render\?id=7\\" \(Gemini needs one\): use a URL ending in \.png, \.jpg, \.jpeg, \.gif, \.webp or \.pdf, or a data: URL","param":"messages","request_id":"[0-9a-f]{32}"\}\}\n?\z/,
 qr/"code":"invalid_request","message":"messages\[0\]\.content: unsupported media URL \\"ftp:\/\/example.com\/a.png\\": use a data: or https: URL","param":"messages"/,
 qr/"code":"invalid_request","message":"messages\[0\]\.content: a data: URL must be base64 with a media type","param":"messages"/,
 qr/^\{"error":"no requests recorded"\}\z/]



=== TEST 6: tool schemas lose what Gemini refuses (additionalProperties, $schema, strict, type lists, $ref)
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","messages":[{"role":"user","content":"Weather?"}],"tools":[
{"type":"function","function":{"name":"get_weather","description":"Weather for a place","strict":true,"parameters":{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","additionalProperties":false,
 "properties":{"location":{"type":"string","description":"City"},"unit":{"type":["string","null"],"enum":["C","F"]},"when":{"anyOf":[{"$ref":"#/$defs/Day"},{"type":"null"}]},
  "tags":{"type":"array","items":{"type":"object","additionalProperties":false,"properties":{"k":{"type":"string","format":"uri"}},"required":["k"]}}},
 "required":["location","unit"],"$defs":{"Day":{"type":"string","format":"date-time","title":"Day"}}}}},
{"type":"function","function":{"name":"ping","description":"No arguments"}},
{"type":"function","function":{"name":"noop","parameters":{"type":"object","properties":{},"additionalProperties":false}}}]}},
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[\&main::content], [main::sent('tools')]]
--- response_body eval
["Mock reply from gemini to: Weather?\n",
q{[{"functionDeclarations":[{"description":"Weather for a place","name":"get_weather","parameters":{"properties":{"location":{"description":"City","type":"string"},"tags":{"items":{"properties":{"k":{"type":"string"}},"required":["k"],"type":"object"},"type":"array"},"unit":{"enum":["C","F"],"nullable":true,"type":"string"},"when":{"format":"date-time","nullable":true,"title":"Day","type":"string"}},"required":["location","unit"],"type":"object"}},{"description":"No arguments","name":"ping"},{"name":"noop"}]}]
}]
--- no_error_log
[error]



=== TEST 7: tool_choice in each of its forms becomes toolConfig.functionCallingConfig
--- request eval
my $req = sub { "POST /v1/chat/completions\n" . '{"model":"gemini-2.0-flash","messages":[{"role":"user","content":"Weather?"}],"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}},{"type":"function","function":{"name":"ping"}}]' . $_[0] . '}' };
[$req->(''), "GET /_mock/requests/last",
 $req->(q{,"tool_choice":"auto"}), "GET /_mock/requests/last",
 $req->(q{,"tool_choice":"none"}), "GET /_mock/requests/last",
 $req->(q{,"tool_choice":"required","parallel_tool_calls":false}), "GET /_mock/requests/last",
 $req->(q{,"tool_choice":{"type":"function","function":{"name":"get_weather"}}}), "GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[\&main::content], [main::sent('toolConfig')], [\&main::content], [main::sent('toolConfig')],
 [\&main::content], [main::sent('toolConfig')], [\&main::content], [main::sent('toolConfig')],
 [\&main::content], [main::sent('toolConfig')]]
--- response_body eval
["Mock reply from gemini to: Weather?\n", "absent\n",
 "Mock reply from gemini to: Weather?\n", qq{{"functionCallingConfig":{"mode":"AUTO"}}\n},
 "Mock reply from gemini to: Weather?\n", qq{{"functionCallingConfig":{"mode":"NONE"}}\n},
 "Mock reply from gemini to: Weather?\n", qq{{"functionCallingConfig":{"mode":"ANY"}}\n},
 "Mock reply from gemini to: Weather?\n", qq{{"functionCallingConfig":{"allowedFunctionNames":["get_weather"],"mode":"ANY"}}\n}]
--- no_error_log
[error]



=== TEST 8: a tool call comes back as OpenAI tool_calls, content null, finish_reason tool_calls
--- request
POST /v1/chat/completions
{"model":"gemini-2.0-flash","tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}}],"messages":[{"role":"user","content":"Weather in Paris?"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Scenario: tool_call
--- response_body_filters eval
\&main::stable
--- response_body_like eval
qr/^\Q{"id":"chatcmpl-ID","object":"chat.completion","created":0,"model":"gemini-2.0-flash","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":null,"tool_calls":[{"id":"call_ID_0","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Paris\"}"}}]},"logprobs":null,"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":5,"completion_tokens":6,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":0}}}\E\n?\z/
--- no_error_log
[error]



=== TEST 9: the tool round trip: tool calls are functionCall parts, tool results functionResponse parts named after their call, in one turn
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}},{"type":"function","function":{"name":"get_time"}}],"messages":[
{"role":"user","content":"Weather and time in Paris?"},
{"role":"assistant","content":null,"tool_calls":[
 {"id":"call_0123456789ab_0","type":"function","function":{"name":"get_weather","arguments":"{\"location\": \"Paris\"}"}},
 {"id":"call_0123456789ab_1","type":"function","function":{"name":"get_time","arguments":""}}]},
{"role":"tool","tool_call_id":"call_0123456789ab_0","content":"{\"temp\": 18, \"sky\": \"clear\"}"},
{"role":"tool","tool_call_id":"call_0123456789ab_1","content":[{"type":"text","text":"noon"}]},
{"role":"user","content":"Thanks"}]}},
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[\&main::content], [main::sent('contents')]]
--- response_body eval
["Mock reply from gemini to: Thanks\n",
q{[{"parts":[{"text":"Weather and time in Paris?"}],"role":"user"},{"parts":[{"functionCall":{"args":{"location":"Paris"},"name":"get_weather"}},{"functionCall":{"args":{},"name":"get_time"}}],"role":"model"},{"parts":[{"functionResponse":{"name":"get_weather","response":{"sky":"clear","temp":18}}},{"functionResponse":{"name":"get_time","response":{"content":"noon"}}},{"text":"Thanks"}],"role":"user"}]
}]
--- no_error_log
[error]



=== TEST 10: a tool result for no earlier tool call, and tool call arguments that are not an object, are 400s
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","messages":[{"role":"user","content":"hi"},{"role":"assistant","tool_calls":[{"id":"call_a","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"call_b","content":"x"}]}},
"POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","messages":[{"role":"user","content":"hi"},{"role":"assistant","tool_calls":[{"id":"call_a","type":"function","function":{"name":"f","arguments":"[1,2]"}}]},{"role":"tool","tool_call_id":"call_a","content":"x"}]}},
"POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","messages":[]}},
"POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","messages":[{"role":"system","content":"Only a system prompt"}]}}]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code eval
[400, 400, 400, 400]
--- response_body_like eval
[qr/"code":"invalid_request","message":"messages\[2\]: tool_call_id \\"call_b\\" answers no earlier assistant tool call","param":"messages"/,
 qr/"code":"invalid_request","message":"messages\[1\]: the arguments of tool call \\"f\\" are not a JSON object","param":"messages"/,
 qr/"code":"invalid_request","message":"\\"messages\\" must be a non-empty array","param":"messages"/,
 qr/"code":"invalid_request","message":"\\"messages\\" must hold at least one user or assistant message with content","param":"messages"/]



=== TEST 11: parallel tool calls all survive, with distinct ids
--- request
POST /v1/chat/completions
{"model":"gemini-2.0-flash","tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}},{"type":"function","function":{"name":"get_time","parameters":{"type":"object","properties":{"zone":{"type":"string","enum":["UTC","CET"]}}}}}],"messages":[{"role":"user","content":"Weather and time?"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Scenario: parallel_tools
--- response_body_filters eval
\&main::stable
--- response_body_like eval
qr/\Q"message":{"role":"assistant","content":null,"refusal":null,"tool_calls":[{"id":"call_ID_0","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Paris\"}"}},{"id":"call_ID_1","type":"function","function":{"name":"get_time","arguments":"{\"zone\":\"UTC\"}"}}]},"logprobs":null,"finish_reason":"tool_calls"}]\E/
--- no_error_log
[error]



=== TEST 12: text and a tool call in one response are both kept
--- request
POST /v1/chat/completions
{"model":"gemini-2.0-flash","tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}}],"messages":[{"role":"user","content":"Weather in Paris?"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Scenario: text_and_tool
--- response_body_filters eval
\&main::stable
--- response_body_like eval
qr/\Q"message":{"role":"assistant","content":"Mock reply from gemini to: Weather in Paris?","refusal":null,"tool_calls":[{"id":"call_ID_0","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Paris\"}"}}]},"logprobs":null,"finish_reason":"tool_calls"}]\E/
--- no_error_log
[error]



=== TEST 13: Gemini 3 thought signatures travel in the tool call id and come back on the functionCall part
--- request eval
["POST /_mock/reset", "POST /v1/chat/completions\n" . q{{"model":"gemini-3-pro","tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}}],"messages":[{"role":"user","content":"Weather in Paris?"}]}}]
--- more_headers eval
["", "Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001\nX-Mock-Scenario: tool_call"]
--- response_body_filters eval
[[], [\&main::signature_round_trip]]
--- response_body eval
[qr/.*/, q{call get_weather {"location":"Paris"} signed by the mock
ids as returned: 200, thoughtSignature sent as issued
signature cut off: 400, thoughtSignature sent skip_thought_signature_validator, Gemini's message
}]



=== TEST 14: response_format json_object and json_schema (cleaned like tool schemas)
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","response_format":{"type":"json_object"},"messages":[{"role":"user","content":"JSON please"}]}},
"GET /_mock/requests/last",
"POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","response_format":{"type":"json_schema","json_schema":{"name":"answer","strict":true,"schema":{"type":"object","properties":{"answer":{"type":"string"},"score":{"type":["number","null"]}},"required":["answer","score"],"additionalProperties":false}}},"messages":[{"role":"user","content":"JSON please"}]}},
"GET /_mock/requests/last",
"POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","response_format":{"type":"text"},"messages":[{"role":"user","content":"JSON please"}]}},
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[\&main::content], [main::sent('generationConfig')], [\&main::content], [main::sent('generationConfig')], [\&main::content], [main::sent('generationConfig')]]
--- response_body eval
[qq{{"reply": "Mock reply from gemini to: JSON please"}\n}, qq{{"responseMimeType":"application/json"}\n},
 qq{{"answer": "mock", "score": 1.5}\n}, qq{{"responseMimeType":"application/json","responseSchema":{"properties":{"answer":{"type":"string"},"score":{"nullable":true,"type":"number"}},"required":["answer","score"],"type":"object"}}\n},
 "Mock reply from gemini to: JSON please\n", "absent\n"]
--- no_error_log
[error]



=== TEST 15: stop, temperature, top_p, max_tokens, n, seed go to generationConfig; OpenAI-only fields are dropped
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","stop":"END","temperature":0.5,"top_p":0.9,"max_tokens":100,"seed":42,"user":"u-1","parallel_tool_calls":true,"frequency_penalty":0.1,"logit_bias":{"1":2},"store":false,"metadata":{"a":"b"},"messages":[{"role":"user","content":"hi"}]}},
"GET /_mock/requests/last",
"POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","stop":["A","B"],"max_tokens":100,"max_completion_tokens":50,"n":2,"messages":[{"role":"user","content":"hi"}]}},
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[\&main::content], [\&main::upstream], [\&main::stable], [main::sent('generationConfig')]]
--- response_body_like eval
[qr/^Mock reply from gemini to: hi\n\z/,
 qr/\n\Q{"contents":[{"role":"user","parts":[{"text":"hi"}]}],"generationConfig":{"temperature":0.5,"topP":0.9,"maxOutputTokens":100,"stopSequences":["END"],"seed":42}}\E\n\z/,
 qr/"choices":\[\{"index":0,"message":\{"role":"assistant","content":"Mock reply from gemini to: hi","refusal":null\},"logprobs":null,"finish_reason":"stop"\},\{"index":1,"message":\{"role":"assistant","content":"Mock reply from gemini to: hi","refusal":null\},"logprobs":null,"finish_reason":"stop"\}\]/,
 qr/^\Q{"candidateCount":2,"maxOutputTokens":50,"stopSequences":["A","B"]}\E\n\z/]
--- no_error_log
[error]



=== TEST 16: a route's safety settings are sent; other routes send none
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gemini-safe-2.0-flash","messages":[{"role":"user","content":"hi"}]}},
"GET /_mock/requests/last",
"POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","messages":[{"role":"user","content":"hi"}]}},
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[\&main::content], [main::sent('safetySettings')], [\&main::content], [main::sent('safetySettings')]]
--- response_body eval
["Mock reply from gemini to: hi\n",
 qq{[{"category":"HARM_CATEGORY_HARASSMENT","threshold":"BLOCK_NONE"},{"category":"HARM_CATEGORY_DANGEROUS_CONTENT","threshold":"BLOCK_ONLY_HIGH"}]\n},
 "Mock reply from gemini to: hi\n", "absent\n"]
--- no_error_log
[error]



=== TEST 17: a candidate stopped for safety is finish_reason content_filter
--- request
POST /v1/chat/completions
{"model":"gemini-2.0-flash","messages":[{"role":"user","content":"Something risky"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Scenario: safety_block
--- response_body_filters eval
\&main::stable
--- response_body_like eval
qr/^\Q{"id":"chatcmpl-ID","object":"chat.completion","created":0,"model":"gemini-2.0-flash","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":null},"logprobs":null,"finish_reason":"content_filter"}],"usage":{"prompt_tokens":4,"completion_tokens":0,"total_tokens":4,"prompt_tokens_details":{"cached_tokens":0}}}\E\n?\z/
--- no_error_log
[error]



=== TEST 18: a blocked prompt is a 200 content_filter answer, not an error and not an empty success
--- request
POST /v1/chat/completions
{"model":"gemini-2.0-flash","messages":[{"role":"user","content":"Something risky"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Scenario: prompt_block
--- error_code: 200
--- response_body_filters eval
\&main::stable
--- response_body_like eval
qr/^\Q{"id":"chatcmpl-ID","object":"chat.completion","created":0,"model":"gemini-2.0-flash","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":null},"logprobs":null,"finish_reason":"content_filter"}],"usage":{"prompt_tokens":4,"completion_tokens":0,"total_tokens":4,"prompt_tokens_details":{"cached_tokens":0}}}\E\n?\z/
--- no_error_log
[error]



=== TEST 19: MAX_TOKENS is finish_reason length
--- request
POST /v1/chat/completions
{"model":"gemini-2.0-flash","max_tokens":5,"messages":[{"role":"user","content":"Tell me a long story"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Scenario: max_tokens
--- response_body_like: "finish_reason":"length"\}\],"usage"



=== TEST 20: thought tokens count as completion tokens (and reasoning tokens), in the answer and the audit
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gemini-2.5-flash","messages":[{"role":"user","content":"Hello there"}]}},
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_like eval
[qr/"usage":\{"prompt_tokens":3,"completion_tokens":17,"total_tokens":20,"prompt_tokens_details":\{"cached_tokens":0\},"completion_tokens_details":\{"reasoning_tokens":10\}\}\}\n?\z/,
 qr/"provider":"gemini","model":"gemini-2.5-flash","status":200,"error":null,"stream":false,[^\n]*"prompt_tokens":3,"completion_tokens":17,"total_tokens":20,"cached_tokens":0,"cost_usd":0.00004340\}\n\z/]
--- no_error_log
[error]



=== TEST 21: a streamed text goes to streamGenerateContent?alt=sse and adds up to the text of the same request unstreamed
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","stream":true,"messages":[{"role":"user","content":"Hello there"}]}},
"GET /_mock/requests/last",
"POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","messages":[{"role":"user","content":"Hello there"}]}}]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Events: 3
--- response_body_filters eval
[[\&main::sse], [\&main::upstream], [\&main::content]]
--- response_body eval
[q{delta {"content":"","role":"assistant"}
delta {"content":"Mock reply from "}
delta {"content":"gemini to: "}
delta {"content":"Hello there"}
delta {} finish stop
[DONE]
ids 1
text [Mock reply from gemini to: Hello there]
},
q{POST /v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse
x-goog-api-key: gm-test-0001
authorization: -
{"contents":[{"role":"user","parts":[{"text":"Hello there"}]}]}
},
"Mock reply from gemini to: Hello there\n"]
--- response_headers_like eval
["Content-Type: text/event-stream.*", "", ""]
--- no_error_log
[error]
[alert]



=== TEST 22: a streamed tool call arrives whole: index, id, name and all the arguments in one delta
--- request
POST /v1/chat/completions
{"model":"gemini-2.0-flash","stream":true,"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}}],"messages":[{"role":"user","content":"Hello there"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Scenario: tool_call
--- response_body_filters eval
\&main::sse
--- response_body
delta {"content":"","role":"assistant"}
delta {"tool_calls":[{"function":{"arguments":"{\"location\":\"Paris\"}","name":"get_weather"},"id":"call_ID_0","index":0,"type":"function"}]}
delta {} finish tool_calls
[DONE]
ids 1
text []
--- no_error_log
[error]



=== TEST 23: streamed text then parallel tool calls; include_usage gives the cumulative usage
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","stream":true,"stream_options":{"include_usage":true},"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}}],"messages":[{"role":"user","content":"Hello there"}]}},
"POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","stream":true,"stream_options":{"include_usage":true},"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}}],"messages":[{"role":"user","content":"Hello there"}]}}]
--- more_headers eval
["Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001\nX-Mock-Scenario: text_and_tool\nX-Mock-Events: 2",
 "Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001\nX-Mock-Scenario: parallel_tools"]
--- response_body_filters eval
[[\&main::sse], [\&main::sse]]
--- response_body eval
[q{delta {"content":"","role":"assistant"}
delta {"content":"Mock reply from gemini "}
delta {"content":"to: Hello there"}
delta {"tool_calls":[{"function":{"arguments":"{\"location\":\"Paris\"}","name":"get_weather"},"id":"call_ID_0","index":0,"type":"function"}]}
delta {} finish tool_calls
usage {"completion_tokens":13,"prompt_tokens":3,"prompt_tokens_details":{"cached_tokens":0},"total_tokens":16} choices 0
[DONE]
ids 1
text [Mock reply from gemini to: Hello there]
},
q{delta {"content":"","role":"assistant"}
delta {"tool_calls":[{"function":{"arguments":"{\"location\":\"Paris\"}","name":"get_weather"},"id":"call_ID_0","index":0,"type":"function"},{"function":{"arguments":"{\"location\":\"London\"}","name":"get_weather"},"id":"call_ID_1","index":1,"type":"function"}]}
delta {} finish tool_calls
usage {"completion_tokens":12,"prompt_tokens":3,"prompt_tokens_details":{"cached_tokens":0},"total_tokens":15} choices 0
[DONE]
ids 1
text []
}]
--- no_error_log
[error]



=== TEST 24: a stream's usage is audited whether or not the client asked for it
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gemini-2.5-flash","stream":true,"messages":[{"role":"user","content":"Hello there"}]}},
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Events: 3
--- response_body_like eval
[qr/\A(?!.*"usage")data: .*"finish_reason":"stop"\}\]\}\n\ndata: \[DONE\]\n\n\z/s,
 qr/"provider":"gemini","model":"gemini-2.5-flash","status":200,"error":null,"stream":true,[^\n]*"prompt_tokens":3,"completion_tokens":17,"total_tokens":20,"cached_tokens":0,"cost_usd":0.00004340\}\n\z/]



=== TEST 25: blocked streams end with finish_reason content_filter
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","stream":true,"messages":[{"role":"user","content":"Something risky"}]}},
"POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","stream":true,"messages":[{"role":"user","content":"Something risky"}]}}]
--- more_headers eval
["Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001\nX-Mock-Scenario: prompt_block",
 "Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001\nX-Mock-Scenario: safety_block"]
--- response_body_filters eval
[[\&main::sse], [\&main::sse]]
--- response_body eval
[q{delta {"content":"","role":"assistant"}
delta {} finish content_filter
[DONE]
ids 1
text []
},
q{delta {"content":"","role":"assistant"}
delta {} finish content_filter
[DONE]
ids 1
text []
}]
--- no_error_log
[error]



=== TEST 26: an error in the middle of a stream ends it with an OpenAI error event and [DONE]
--- request
POST /v1/chat/completions
{"model":"gemini-2.0-flash","stream":true,"messages":[{"role":"user","content":"Hello there"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Scenario: error_mid_stream
X-Mock-Events: 4
--- response_body_filters eval
\&main::sse
--- response_body
delta {"content":"","role":"assistant"}
delta {"content":"Mock reply "}
delta {"content":"from gemini "}
error {"code":"upstream_error","message":"The model is overloaded. Please try again later.","type":"server_error"}
[DONE]
ids 1
text [Mock reply from gemini ]
--- error_log
ailink gemini: error in stream: 503 "The model is overloaded. Please try again later."
--- no_error_log
[alert]



=== TEST 27: UTF-8 text goes through untouched, both ways, streamed or not
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","messages":[{"role":"system","content":"Réponds en français ✓"},{"role":"user","content":"Grüße aus Köln 🌍 日本語"}]}},
"GET /_mock/requests/last",
"POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","stream":true,"messages":[{"role":"user","content":"Grüße aus Köln 🌍 日本語"}]}}]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Events: 3
--- response_body_filters eval
[[], [\&main::upstream], [\&main::sse]]
--- response_body_like eval
[qr/"content":"Mock reply from gemini to: Grüße aus Köln 🌍 日本語"/,
 qr/\Q{"contents":[{"role":"user","parts":[{"text":"Grüße aus Köln 🌍 日本語"}]}],"systemInstruction":{"parts":[{"text":"Réponds en français ✓"}]}}\E\n\z/,
 qr/\Qtext [Mock reply from gemini to: Grüße aus Köln 🌍 日本語]\E\n\z/]



=== TEST 28: provider errors keep their status and message, in the OpenAI envelope
--- request eval
[map { "POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","messages":[{"role":"user","content":"hi"}]}} } 1 .. 5]
--- more_headers eval
[map { "Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001\nX-Mock-Status: $_" } 400, 403, 404, 500, 503]
--- error_code eval
[400, 403, 404, 500, 503]
--- response_body_like eval
[map { qr/^\{"error":\{"type":"[a-z_]+","code":"[^"]+","message":"mock error $_",[^\n]*"request_id":"[0-9a-f]{32}"[^\n]*\}\}\n?\z/ } 400, 403, 404, 500, 503]
--- response_headers eval
[map { "Content-Type: application/json" } 1 .. 5]



=== TEST 29: Gemini's own validation message reaches the client
--- request
POST /v1/chat/completions
{"model":"gemini-2.0-flash","temperature":3,"messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code: 400
--- response_body_like: ^\{"error":\{[^\n]*"message":"\* GenerateContentRequest.generation_config.temperature: temperature must be in the range \[0, 2\]\\n",



=== TEST 30: a provider 429 keeps its status and Retry-After
--- request
POST /v1/chat/completions
{"model":"gemini-2.0-flash","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Status: 429
X-Mock-Retry-After: 7
--- error_code: 429
--- response_headers
Retry-After: 7
Content-Type: application/json
--- response_body_like: ^\{"error":\{"type":"[a-z_]+","code":"[^"]+","message":"mock error 429",



=== TEST 31: bring your own Gemini key: sent as x-goog-api-key; without one, Gemini's 403
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","messages":[{"role":"user","content":"hi"}]}},
"GET /_mock/requests/last",
"POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","messages":[{"role":"user","content":"hi"}]}}]
--- more_headers eval
["Authorization: Bearer ailink_v1_proj_test_tok_llmbyok0000000000000000001\nX-AILink-Upstream-Key: gm-user-own",
 "",
 "Authorization: Bearer ailink_v1_proj_test_tok_llmbyok0000000000000000001"]
--- error_code eval
[200, 200, 403]
--- response_body_filters eval
[[], [\&main::upstream], []]
--- response_body_like eval
[qr/Mock reply from gemini to: hi/,
 qr/^POST \/v1beta\/models\/gemini-2.0-flash:generateContent\nx-goog-api-key: gm-user-own\nauthorization: -\n/,
 qr/"message":"Method doesn't allow unregistered callers/]



=== TEST 32: a malformed provider body is a 502
--- request
POST /v1/chat/completions
{"model":"gemini-2.0-flash","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Scenario: malformed
--- error_code: 502
--- response_body_like: ^\{"error":\{"type":"[a-z_]+","code":"upstream_error","message":"[^"]+",[^\n]*"request_id":"[0-9a-f]{32}"



=== TEST 33: JSON that is not a Gemini response is a 502 too
--- request
POST /v1/chat/completions
{"model":"gemini-2.0-flash","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Raw-Body: {"id":"chatcmpl-x","object":"chat.completion","choices":[]}
--- error_code: 502
--- response_body_like: "code":"upstream_error"



=== TEST 34: a response cut off by the provider is a 502
--- request
POST /v1/chat/completions
{"model":"gemini-2.0-flash","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Scenario: drop
--- error_code: 502
--- response_body_like: "code":"upstream_error"



=== TEST 35: a stream the provider cuts off ends with an error event and [DONE]
--- request
POST /v1/chat/completions
{"model":"gemini-2.0-flash","stream":true,"messages":[{"role":"user","content":"Hello there"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Events: 4
X-Mock-Drop-After: 2
--- response_body_filters eval
\&main::sse
--- response_body
delta {"content":"","role":"assistant"}
delta {"content":"Mock reply "}
delta {"content":"from gemini "}
error {"code":"upstream_error","message":"the provider's stream ended early","type":"api_error"}
[DONE]
ids 1
text [Mock reply from gemini ]
--- error_log
ailink: gemini stream from "http://127.0.0.1
ended early



=== TEST 36: a stream with no text still ends properly
--- request
POST /v1/chat/completions
{"model":"gemini-2.0-flash","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hello there"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Events: 0
--- response_body_filters eval
\&main::sse
--- response_body
delta {"content":"","role":"assistant"}
delta {} finish stop
usage {"completion_tokens":0,"prompt_tokens":3,"prompt_tokens_details":{"cached_tokens":0},"total_tokens":3} choices 0
[DONE]
ids 1
text []
--- no_error_log
[error]



=== TEST 37: a malformed provider body for a stream request is a 502
--- request
POST /v1/chat/completions
{"model":"gemini-2.0-flash","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Scenario: malformed
--- error_code: 502
--- response_body_like: "code":"upstream_error"
