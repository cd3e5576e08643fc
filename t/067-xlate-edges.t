# Translation edges: stream events of 100 KB (long tool arguments) are
# translated whole under the default ailink_stream_event_max_size; a tool
# message must answer an earlier tool call; Anthropic refuses what it
# cannot return (log probabilities) with a 400 naming the parameter.

use lib 't/lib';
use AILink::Test;
use Test::Nginx::Socket 'no_plan';
use JSON::PP ();

add_block_preprocessor(\&ailink_defaults);
check_worker_memory();
no_shuffle();
no_root_location();
run_tests();


# A stream summed up: chunks, the tool arguments of index 0 (length, valid
# JSON, the notes' length), the finish reason, errors, [DONE].
sub args {
    my $body = shift;
    my $json = JSON::PP->new->utf8->canonical;
    my ($n, $args, $finish, @err, $done) = (0, '', '');

    while ($body =~ s/\Adata: ([^\n]*)\n\n//) {
        my $d = $1;
        if ($d eq '[DONE]') {
            $done = 1;
            next;
        }
        my $c = $json->decode($d);
        if ($c->{error}) {
            push @err, $c->{error}{message};
            next;
        }
        $n++;
        for my $ch (@{$c->{choices}}) {
            $finish = $ch->{finish_reason} if defined $ch->{finish_reason};
            for my $tc (@{$ch->{delta}{tool_calls} || []}) {
                $args .= $tc->{function}{arguments} // '';
            }
        }
    }
    my $a = eval { $json->decode($args) };

    return "length " . length($args) . " "
           . ($a ? "notes " . length($a->{notes}) : "NOT JSON")
           . " finish $finish" . (@err ? " error @err" : "")
           . ($done ? " [DONE]" : "") . (length $body ? " left $body" : "")
           . "\n";
}


__DATA__

=== TEST 1: Anthropic: a 100 KB tool-argument event is translated whole
--- request
POST /v1/chat/completions
{"model":"claude-sonnet-4-5","stream":true,"tools":[{"type":"function","function":{"name":"save","parameters":{"type":"object"}}}],"messages":[{"role":"user","content":"save it"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Scenario: large_tool_call
X-Mock-Size: 102400
--- response_body_filters eval
\&main::args
--- response_body
length 102434 notes 102400 finish tool_calls [DONE]
--- no_error_log
[error]



=== TEST 2: Gemini: a 100 KB function call event is translated whole
--- request
POST /v1/chat/completions
{"model":"gemini-2.5-flash","stream":true,"tools":[{"type":"function","function":{"name":"save","parameters":{"type":"object"}}}],"messages":[{"role":"user","content":"save it"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Scenario: large_tool_call
X-Mock-Size: 102400
--- response_body_filters eval
\&main::args
--- response_body
length 102431 notes 102400 finish tool_calls [DONE]
--- no_error_log
[error]



=== TEST 3: the old 64k limit, set by hand, would end that stream with an error event (what the 1m default avoids)
--- config eval
$AILink::Test::CONFIG =~ s/(location \/ \{)/$1\n        ailink_stream_event_max_size 64k;/r
--- request
POST /v1/chat/completions
{"model":"claude-sonnet-4-5","stream":true,"tools":[{"type":"function","function":{"name":"save","parameters":{"type":"object"}}}],"messages":[{"role":"user","content":"save it"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Scenario: large_tool_call
X-Mock-Size: 102400
--- response_body_filters eval
\&main::args
--- response_body_like
^length 0 NOT JSON finish  error .*ailink_stream_event_max_size.* \[DONE\]$



=== TEST 4: Anthropic: a tool message answering no earlier tool call is our own 400, and nothing is sent; a matching one goes
--- request eval
my $p = "POST /v1/chat/completions\n";
["DELETE /_mock/requests",
 $p . q{{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"call_2","content":"r"}]}},
 $p . q{{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"},{"role":"tool","tool_call_id":"call_1","content":"r"},{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]}]}},
 "GET /_mock/requests/last",
 $p . q{{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"call_1","content":"r"}]}}]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code eval
[200, 400, 400, 404, 200]
--- response_body_like eval
[qr/ok/,
 qr/"message":"messages\[2\]: tool_call_id \\"call_2\\" answers no earlier assistant tool call","param":"messages"/,
 qr/"message":"messages\[1\]: tool_call_id \\"call_1\\" answers no earlier assistant tool call","param":"messages"/,
 qr/no requests recorded/,
 qr/"finish_reason":"stop"/]



=== TEST 5: Gemini: the same check, and a tool message with several text parts keeps them all
--- request eval
my $p = "POST /v1/chat/completions\n";
[$p . q{{"model":"gemini-2.5-flash","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"call_2","content":"r"}]}},
 $p . q{{"model":"gemini-2.5-flash","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"call_1","content":[{"type":"text","text":"part one, "},{"type":"text","text":"part two"}]}]}},
 "GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code eval
[400, 200, 200]
--- response_body_filters eval
[[], [], [sub { JSON::PP->new->canonical->encode(
    JSON::PP->new->utf8->decode(shift)->{json}{contents}[2]) . "\n" }]]
--- response_body_like eval
[qr/"message":"messages\[2\]: tool_call_id \\"call_2\\" answers no earlier assistant tool call","param":"messages"/,
 qr/"finish_reason":"stop"/,
 qr/^\Q{"parts":[{"functionResponse":{"name":"f","response":{"content":"part one, part two"}}}],"role":"user"}\E\n\z/]



=== TEST 6: Anthropic has no log probabilities: logprobs and top_logprobs are a 400 naming them; logprobs false is fine
--- request eval
my $p = "POST /v1/chat/completions\n";
[$p . q{{"model":"claude-sonnet-4-5","logprobs":true,"messages":[{"role":"user","content":"hi"}]}},
 $p . q{{"model":"claude-sonnet-4-5","top_logprobs":2,"messages":[{"role":"user","content":"hi"}]}},
 $p . q{{"model":"claude-sonnet-4-5","logprobs":false,"top_logprobs":null,"messages":[{"role":"user","content":"hi"}]}}]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code eval
[400, 400, 200]
--- response_body_like eval
[qr/"message":"Anthropic models do not return log probabilities: \\"logprobs\\" and \\"top_logprobs\\" cannot be used","param":"logprobs"/,
 qr/"param":"top_logprobs"/,
 qr/"finish_reason":"stop"/]



=== TEST 7: Gemini stream whose usage comes only in a last chunk of its own, after the finish reason: the usage chunk has it, reasoning tokens included
--- request eval
my $body = CORE::join('', map { "data: $_\r\n\r\n" }
  q{{"candidates":[{"content":{"role":"model","parts":[{"text":"thinking...","thought":true}]},"index":0}]}},
  q{{"candidates":[{"content":{"role":"model","parts":[{"text":"Hel"}]},"index":0}]}},
  q{{"candidates":[{"content":{"role":"model","parts":[{"text":"lo"}]},"finishReason":"STOP","index":0}]}},
  q{{"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":2,"thoughtsTokenCount":7,"totalTokenCount":13}}});
["POST /_mock/fail\n" . JSON::PP->new->canonical->encode({
     path_prefix => '/v1beta/models', status => 200,
     headers => { 'Content-Type' => 'text/event-stream' }, body => $body }),
 "POST /v1/chat/completions\n" . q{{"model":"gemini-2.5-flash","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}}]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[sub { "" }], [sub { my $b = shift; my @l;
            while ($b =~ s/\Adata: ([^\n]*)\n\n//) {
                my $d = $1;
                if ($d eq '[DONE]') { push @l, $d; next }
                my $c = JSON::PP->new->utf8->canonical->decode($d);
                push @l, $c->{usage}
                    ? 'usage ' . JSON::PP->new->canonical->encode($c->{usage})
                    : JSON::PP->new->canonical->encode($c->{choices}[0]{delta})
                      . ' ' . ($c->{choices}[0]{finish_reason} // '-');
            }
            CORE::join("\n", @l, $b) }]]
--- response_body eval
["", qq{{"content":"","role":"assistant"} -
{"reasoning_content":"thinking..."} -
{"content":"Hel"} -
{"content":"lo"} -
{} stop
usage {"completion_tokens":9,"completion_tokens_details":{"reasoning_tokens":7},"prompt_tokens":4,"prompt_tokens_details":{"cached_tokens":0},"total_tokens":13}
[DONE]
}]
--- no_error_log
[error]
