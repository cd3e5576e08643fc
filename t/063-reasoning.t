# Reasoning through the translators: "reasoning_effort" as Anthropic's
# thinking budget and Gemini's thinkingConfig, what each provider refuses
# beside it (refused here, naming the parameter), the thinking coming back
# as reasoning_content (never in content) in JSON and streams, reasoning
# tokens in usage, and Anthropic's signed thinking blocks carried through
# the OpenAI-format history of a tool-use conversation.

use lib 't/lib';
use AILink::Test;
use Test::Nginx::Socket 'no_plan';
use JSON::PP ();
use Digest::SHA ();
use MIME::Base64 ();

add_block_preprocessor(\&ailink_defaults);
check_worker_memory();
no_shuffle();
no_root_location();
run_tests();


# One key of the recorded body, canonical; a path of keys goes deeper.
sub sent {
    my @path = @_;

    return sub {
        my $v = JSON::PP->new->utf8->decode(shift)->{json};
        $v = ref $v eq 'HASH' ? $v->{$_} : undef for @path;
        return defined $v ? JSON::PP->new->utf8->canonical->allow_nonref
                                    ->encode($v) . "\n"
                          : "absent\n";
    };
}


# The choice's message, or the error, canonical.
sub message {
    my $r = JSON::PP->new->utf8->decode(shift);
    my $c = JSON::PP->new->utf8->canonical;

    return 'error ' . $c->encode($r->{error}) . "\n" if $r->{error};

    my $ch = $r->{choices}[0];

    return $c->encode($ch->{message}) . " finish $ch->{finish_reason}\n"
           . 'usage ' . $c->encode($r->{usage}) . "\n";
}


# A stream, one line per chunk: the delta (or usage), the finish reason.
sub sse {
    my $body = shift;
    my $json = JSON::PP->new->utf8->canonical;
    my @out;

    while ($body =~ s/\Adata: ([^\n]*)\n\n//) {
        my $d = $1;
        if ($d eq '[DONE]') {
            push @out, '[DONE]';
            next;
        }
        my $c = eval { $json->decode($d) } or do {
            push @out, "not JSON: $d";
            next;
        };
        if ($c->{usage}) {
            push @out, 'usage ' . $json->encode($c->{usage});
            next;
        }
        for my $ch (@{$c->{choices}}) {
            my $line = "$ch->{index} " . $json->encode($ch->{delta});
            $line .= " finish $ch->{finish_reason}"
                if defined $ch->{finish_reason};
            push @out, $line;
        }
    }
    push @out, "left over: $body" if length $body;

    return join("\n", @out) . "\n";
}


# What the mock signs (and checks) for a thinking text.
sub sig {
    my $h = substr(Digest::SHA::sha256_hex(shift), 0, 32);
    return MIME::Base64::encode_base64("mocksig:$h", '');
}

sub thought {
    my ($user, $budget) = @_;
    return "Let me think about \"$user\" step by step (budget $budget).";
}


__DATA__

=== TEST 1: Anthropic: reasoning_effort low is a 2048-token thinking budget added to the default max_tokens; thinking comes back apart from the content
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","reasoning_effort":"low","messages":[{"role":"user","content":"hi"}]}},
"GET /_mock/requests/last", "GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[\&main::message], [main::sent('thinking')], [main::sent('max_tokens')]]
--- response_body eval
['{"content":"Mock reply from anthropic to: hi","reasoning_content":"' . main::thought('hi', 2048) =~ s/"/\\"/gr . '","refusal":null,"role":"assistant","thinking_blocks":[{"signature":"' . main::sig(main::thought('hi', 2048)) . '","thinking":"' . main::thought('hi', 2048) =~ s/"/\\"/gr . '","type":"thinking"}]} finish stop
usage {"completion_tokens":16,"prompt_tokens":1,"prompt_tokens_details":{"cached_tokens":0},"total_tokens":17}
', qq{{"budget_tokens":2048,"type":"enabled"}\n}, "6144\n"]
--- no_error_log
[error]



=== TEST 2: Anthropic: each effort's budget; a client's max_completion_tokens counts the thinking (a budget too big takes half of it); none and null send no thinking
--- request eval
my $p = "POST /v1/chat/completions\n";
my @r;
for my $b (q{"reasoning_effort":"minimal"}, q{"reasoning_effort":"medium"},
           q{"reasoning_effort":"high","max_tokens":40000},
           q{"reasoning_effort":"high","max_completion_tokens":3000},
           q{"reasoning_effort":"none"}, q{"reasoning_effort":null})
{
    push @r, $p . qq{{"model":"claude-sonnet-4-5",$b,"messages":[{"role":"user","content":"hi"}]}},
         "GET /_mock/requests/last";
}
\@r
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[map { ([], [sub { my $r = JSON::PP->new->utf8->decode(shift)->{json};
                  JSON::PP->new->canonical->encode(
                      [$r->{max_tokens}, $r->{thinking} // 'none']) . "\n" }]) } 1 .. 6]
--- response_body_like eval
[map { my $e = $_; (qr/Mock reply/, qr/^\Q$e\E\n\z/) }
 '[5120,{"budget_tokens":1024,"type":"enabled"}]',
 '[12288,{"budget_tokens":8192,"type":"enabled"}]',
 '[40000,{"budget_tokens":16384,"type":"enabled"}]',
 '[3000,{"budget_tokens":1500,"type":"enabled"}]',
 '[4096,"none"]', '[4096,"none"]']



=== TEST 3: Anthropic: what it refuses beside thinking is a 400 naming the parameter, and nothing is sent
--- request eval
my $p = "POST /v1/chat/completions\n";
my $t = q{"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]};
["DELETE /_mock/requests",
 $p . q{{"model":"claude-sonnet-4-5","reasoning_effort":"extreme","messages":[{"role":"user","content":"hi"}]}},
 $p . q{{"model":"claude-sonnet-4-5","reasoning_effort":"low","max_tokens":2000,"messages":[{"role":"user","content":"hi"}]}},
 $p . q{{"model":"claude-sonnet-4-5","reasoning_effort":"low","temperature":0.2,"messages":[{"role":"user","content":"hi"}]}},
 $p . q{{"model":"claude-sonnet-4-5","reasoning_effort":"low","top_p":0.5,"messages":[{"role":"user","content":"hi"}]}},
 $p . qq{{"model":"claude-sonnet-4-5","reasoning_effort":"low",$t,"tool_choice":"required","messages":[{"role":"user","content":"hi"}]}},
 $p . qq{{"model":"claude-sonnet-4-5","reasoning_effort":"low",$t,"tool_choice":{"type":"function","function":{"name":"f"}},"messages":[{"role":"user","content":"hi"}]}},
 $p . q{{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"x","thinking_blocks":[{"type":"thinking","thinking":"t"}]},{"role":"user","content":"again"}]}},
 "GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code eval
[200, 400, 400, 400, 400, 400, 400, 400, 404]
--- response_body_like eval
[qr/ok/,
 qr/"message":"\\"reasoning_effort\\" must be \\"none\\", \\"minimal\\", \\"low\\", \\"medium\\" or \\"high\\"","param":"reasoning_effort"/,
 qr/"message":"\\"max_tokens\\" must be at least 2048 with \\"reasoning_effort\\" on Anthropic models.*","param":"max_tokens"/,
 qr/"param":"temperature"/,
 qr/"param":"top_p"/,
 qr/"message":"\\"tool_choice\\" can only be \\"auto\\" or \\"none\\".*","param":"tool_choice"/,
 qr/"param":"tool_choice"/,
 qr/"message":"messages\[1\].thinking_blocks: a thinking block needs \\"thinking\\" and \\"signature\\" strings","param":"messages"/,
 qr/no requests recorded/]



=== TEST 4: Anthropic: a temperature above 1 is sent as 1, which thinking allows
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","reasoning_effort":"minimal","temperature":1.5,"messages":[{"role":"user","content":"hi"}]}},
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[], [main::sent('temperature')]]
--- response_body_like eval
[qr/"reasoning_content":"Let me think/, qr/^1\n\z/]



=== TEST 5: Anthropic stream: thinking as reasoning_content deltas, the signature as a thinking_blocks delta, then the content; never thinking in content
--- request
POST /v1/chat/completions
{"model":"claude-sonnet-4-5","stream":true,"stream_options":{"include_usage":true},"reasoning_effort":"minimal","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Events: 2
--- response_body_filters eval
\&main::sse
--- response_body eval
my $t = main::thought('hi', 1024);
my @f = unpack('(a12)*', $t);
CORE::join('', qq{0 {"content":"","role":"assistant"}\n},
     map({ my $x = $_ =~ s/"/\\"/gr; qq{0 {"reasoning_content":"$x"}\n} } @f),
     '0 {"thinking_blocks":[{"signature":"' . main::sig($t) . qq~","type":"thinking"}]}\n~,
     qq{0 {"content":"Mock reply from "}\n0 {"content":"anthropic to: hi"}\n0 {} finish stop\n},
     qq{usage {"completion_tokens":16,"prompt_tokens":1,"prompt_tokens_details":{"cached_tokens":0},"total_tokens":17}\n[DONE]\n})
--- no_error_log
[error]



=== TEST 6: Anthropic tool use with thinking: the next turn brings the signed thinking back through thinking_blocks and it is sent first in the assistant turn
--- request eval
my $t = main::thought('Weather in Paris?', 2048);
my $tb = JSON::PP->new->encode([{type => 'thinking', thinking => $t, signature => main::sig($t)}]);
["POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","reasoning_effort":"low","tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"location":{"type":"string"}},"required":["location"]}}}],"messages":[{"role":"user","content":"Weather in Paris?"}]}},
 "POST /v1/chat/completions\n" . q~{"model":"claude-sonnet-4-5","reasoning_effort":"low","tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"location":{"type":"string"}},"required":["location"]}}}],"messages":[{"role":"user","content":"Weather in Paris?"},{"role":"assistant","content":"Mock reply from anthropic to: Weather in Paris?","thinking_blocks":~ . $tb . q~,"tool_calls":[{"id":"toolu_mock_1","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Paris\"}"}}]},{"role":"tool","tool_call_id":"toolu_mock_1","content":"sunny"}]}~,
 "GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Scenario: tool_call
--- response_body_filters eval
[[], [], [sub { my $m = JSON::PP->new->utf8->decode(shift)->{json}{messages}[1];
               CORE::join(',', map { $_->{type} } @{$m->{content}}) . "\n" }]]
--- response_body_like eval
[qr/"thinking_blocks":\[\{"type":"thinking","thinking":"Let me think about \\"Weather in Paris\?\\" step by step \(budget 2048\).","signature":"[^"]+"\}\],"reasoning_content":"Let me think.*?","tool_calls":\[\{"id":"toolu_mock_1"/,
 qr/"finish_reason":"tool_calls"/,
 qr/^thinking,text,tool_use\n\z/]
--- no_error_log
[error]



=== TEST 7: Anthropic tool use with thinking: without the thinking blocks, or with a changed thinking text, Anthropic (the strict mock) refuses the next turn and the client gets its 400
--- request eval
my $t = main::thought('Weather in Paris?', 2048);
my $tb = JSON::PP->new->encode([{type => 'thinking', thinking => "$t!", signature => main::sig($t)}]);
my $h = q~{"model":"claude-sonnet-4-5","reasoning_effort":"low","tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}],"messages":[{"role":"user","content":"Weather in Paris?"},{"role":"assistant","content":null,~;
my $tail = q~"tool_calls":[{"id":"toolu_mock_1","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},{"role":"tool","tool_call_id":"toolu_mock_1","content":"sunny"}]}~;
["POST /v1/chat/completions\n" . $h . $tail,
 "POST /v1/chat/completions\n" . $h . '"thinking_blocks":' . $tb . ',' . $tail]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code eval
[400, 400]
--- response_body_like eval
[qr/"message":"messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found `tool_use`/,
 qr/Invalid `signature` in `thinking` block/]



=== TEST 8: Anthropic: the signature from a stream with the text from its reasoning_content deltas makes a valid block; redacted thinking goes both ways
--- request eval
my $t = main::thought('Weather in Paris?', 2048);
my $tail = q~"tool_calls":[{"id":"toolu_mock_1","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},{"role":"tool","tool_call_id":"toolu_mock_1","content":"sunny"}]}~;
my $h = q~{"model":"claude-sonnet-4-5","reasoning_effort":"low","tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}],"messages":[{"role":"user","content":"Weather in Paris?"},{"role":"assistant","content":"",~;
["POST /v1/chat/completions\n" . $h . '"reasoning_content":' . JSON::PP->new->encode([$t]) =~ s/^\[|\]$//gr . ',"thinking_blocks":[{"type":"thinking","signature":"' . main::sig($t) . '"}],' . $tail,
 "GET /_mock/requests/last",
 "POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","reasoning_effort":"low","messages":[{"role":"user","content":"hi"}]}},
 "POST /v1/chat/completions\n" . $h . '"thinking_blocks":[{"type":"redacted_thinking","data":"b3BhcXVl"}],' . $tail,
 "GET /_mock/requests/last"]
--- more_headers eval
my $a = "Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001";
[$a, $a, "$a\nX-Mock-Scenario: redacted_thinking", $a, $a]
--- response_body_filters eval
my $blocks = sub { my $m = JSON::PP->new->utf8->decode(shift)->{json}{messages}[1];
                   JSON::PP->new->canonical->encode($m->{content}[0]) . "\n" };
[[], [$blocks], [], [], [$blocks]]
--- response_body_like eval
my $t = main::thought('Weather in Paris?', 2048);
[qr/"finish_reason":"stop"/,
 qr/^\Q{"signature":"${\ main::sig($t)}","thinking":"${\ ($t =~ s!"!\\"!gr)}","type":"thinking"}\E\n\z/,
 qr/"thinking_blocks":\[\{"type":"thinking",[^\]]*\},\{"type":"redacted_thinking","data":"[A-Za-z0-9+\/=]+"\}\]/,
 qr/"finish_reason":"stop"/,
 qr/^\Q{"data":"b3BhcXVl","type":"redacted_thinking"}\E\n\z/]



=== TEST 9: Anthropic stream: a redacted thinking block is a thinking_blocks delta
--- request
POST /v1/chat/completions
{"model":"claude-sonnet-4-5","stream":true,"reasoning_effort":"minimal","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Scenario: redacted_thinking
--- response_body_filters eval
\&main::sse
--- response_body_like eval
qr/^0 \{"thinking_blocks":\[\{"data":"[A-Za-z0-9+\/=]+","type":"redacted_thinking"\}\]\}$/m



=== TEST 10: Gemini 2.5: reasoning_effort is a thinkingBudget with the thoughts asked for; they come back as reasoning_content, their tokens as reasoning_tokens
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gemini-2.5-flash","reasoning_effort":"medium","messages":[{"role":"user","content":"hi"}]}},
 "GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[\&main::message], [main::sent('generationConfig')]]
--- response_body eval
['{"content":"Mock reply from gemini to: hi","reasoning_content":"**Thinking** about \"hi\" (budget 8192).","refusal":null,"role":"assistant"} finish stop
usage {"completion_tokens":16,"completion_tokens_details":{"reasoning_tokens":10},"prompt_tokens":1,"prompt_tokens_details":{"cached_tokens":0},"total_tokens":17}
', qq{{"thinkingConfig":{"includeThoughts":true,"thinkingBudget":8192}}\n}]
--- no_error_log
[error]



=== TEST 11: Gemini: each effort's mapping by model; Gemini 3 takes a level, none turns 2.5 Flash thinking off and is refused for Gemini 3
--- request eval
my $p = "POST /v1/chat/completions\n";
my @r;
for my $m (['gemini-2.5-flash', 'minimal'], ['gemini-2.5-pro', 'high'],
           ['gemini-2.5-flash', 'none'], ['gemini-3-pro', 'minimal'],
           ['gemini-3-pro', 'medium'], ['gemini-3-flash', 'medium'])
{
    push @r, $p . qq{{"model":"$m->[0]","reasoning_effort":"$m->[1]","messages":[{"role":"user","content":"hi"}]}},
         "GET /_mock/requests/last";
}
push @r, $p . q{{"model":"gemini-3-pro","reasoning_effort":"none","messages":[{"role":"user","content":"hi"}]}};
\@r
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code eval
[(200) x 12, 400]
--- response_body_filters eval
[(map { ([], [main::sent('generationConfig', 'thinkingConfig')]) } 1 .. 6), []]
--- response_body_like eval
[(map { my $e = $_; (qr/"choices"/, qr/^\Q$e\E\n\z/) }
 '{"includeThoughts":true,"thinkingBudget":1024}',
 '{"includeThoughts":true,"thinkingBudget":24576}',
 '{"thinkingBudget":0}',
 '{"includeThoughts":true,"thinkingLevel":"low"}',
 '{"includeThoughts":true,"thinkingLevel":"high"}',
 '{"includeThoughts":true,"thinkingLevel":"medium"}'),
 qr/"message":"Gemini 3 models always think: \\"reasoning_effort\\" cannot be \\"none\\"","param":"reasoning_effort"/]



=== TEST 12: Gemini stream: thoughts as reasoning_content deltas before the content, reasoning tokens in the usage chunk that ends the stream
--- request
POST /v1/chat/completions
{"model":"gemini-2.5-flash","stream":true,"stream_options":{"include_usage":true},"reasoning_effort":"low","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Events: 2
--- response_body_filters eval
\&main::sse
--- response_body
0 {"content":"","role":"assistant"}
0 {"reasoning_content":"**Thinking** abo"}
0 {"reasoning_content":"ut \"hi\" (budget "}
0 {"reasoning_content":"1024)."}
0 {"content":"Mock reply from "}
0 {"content":"gemini to: hi"}
0 {} finish stop
usage {"completion_tokens":16,"completion_tokens_details":{"reasoning_tokens":10},"prompt_tokens":1,"prompt_tokens_details":{"cached_tokens":0},"total_tokens":17}
[DONE]
--- no_error_log
[error]
