# Several choices ("n") and log probabilities through the Gemini
# translator: candidateCount with each candidate its own choice (index,
# finish reason) in JSON and streams; responseLogprobs / logprobs mapped
# into OpenAI's choices[].logprobs.  Anthropic has neither: a 400.

use lib 't/lib';
use AILink::Test;
use Test::Nginx::Socket 'no_plan';
use JSON::PP ();

add_block_preprocessor(\&ailink_defaults);
check_worker_memory();
no_shuffle();
no_root_location();
run_tests();


# One key of the recorded body, canonical.
sub sent {
    my $key = shift;

    return sub {
        my $v = JSON::PP->new->utf8->decode(shift)->{json}{$key};
        return JSON::PP->new->utf8->canonical->allow_nonref->encode($v)
               . "\n";
    };
}


# Each choice: index, content, finish reason, logprobs (canonical).
sub choices {
    my $r = JSON::PP->new->utf8->decode(shift);
    my $c = JSON::PP->new->utf8->canonical->allow_nonref;

    return 'error ' . $c->encode($r->{error}) . "\n" if $r->{error};

    return join('', map { "$_->{index} $_->{message}{content} "
                          . "$_->{finish_reason} "
                          . $c->encode($_->{logprobs}) . "\n" }
                        @{$r->{choices}});
}


# A stream, per choice: the content put together, its finish reason, the
# tokens of its logprobs; and chunks with more than one choice.
sub sse {
    my $body = shift;
    my $json = JSON::PP->new->utf8->canonical;
    my (%content, %finish, %roles, %tokens, @out);

    while ($body =~ s/\Adata: ([^\n]*)\n\n//) {
        next if $1 eq '[DONE]';
        my $c = $json->decode($1);
        if ($c->{usage}) {
            push @out, "usage $c->{usage}{completion_tokens}";
            next;
        }
        push @out, 'chunk with ' . @{$c->{choices}} . ' choices'
            if @{$c->{choices}} != 1;
        for my $ch (@{$c->{choices}}) {
            my $i = $ch->{index};
            $roles{$i}++ if defined $ch->{delta}{role};
            $content{$i} .= $ch->{delta}{content} // '';
            $finish{$i} = $ch->{finish_reason} if defined $ch->{finish_reason};
            for my $t (@{$ch->{logprobs}{content} || []}) {
                $tokens{$i} .= "[$t->{token}|$t->{logprob}|"
                               . scalar(@{$t->{top_logprobs}}) . ']';
            }
        }
    }
    for my $i (sort keys %content) {
        push @out, "$i roles $roles{$i} finish " . ($finish{$i} // 'none')
                   . " content $content{$i}"
                   . (defined $tokens{$i} ? " logprobs $tokens{$i}" : '');
    }

    return join("\n", @out) . "\n";
}


__DATA__

=== TEST 1: Gemini n=3: candidateCount 3, three choices indexed 0..2; n=1 sends no candidateCount
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gemini-2.5-flash","n":3,"messages":[{"role":"user","content":"hi"}]}},
 "GET /_mock/requests/last",
 "POST /v1/chat/completions\n" . q{{"model":"gemini-2.5-flash","n":1,"messages":[{"role":"user","content":"hi"}]}},
 "GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[\&main::choices], [main::sent('generationConfig')], [\&main::choices], [main::sent('generationConfig')]]
--- response_body eval
["0 Mock reply from gemini to: hi stop null\n1 Mock reply from gemini to: hi stop null\n2 Mock reply from gemini to: hi stop null\n",
 qq{{"candidateCount":3}\n},
 "0 Mock reply from gemini to: hi stop null\n", "null\n"]



=== TEST 2: Gemini n=2 stream: each candidate is its own choice with its role, content and finish reason; the usage chunk still ends it
--- request
POST /v1/chat/completions
{"model":"gemini-2.5-flash","n":2,"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Scenario: n_lengths
--- response_body_filters eval
\&main::sse
--- response_body
usage 16
0 roles 1 finish stop content Mock reply from gemini to: hi
1 roles 1 finish length content Mock reply from gemini to: hi
--- no_error_log
[error]



=== TEST 3: n out of Gemini's range (1 to 8) is a 400 naming n
--- request eval
my $p = "POST /v1/chat/completions\n";
[$p . q{{"model":"gemini-2.5-flash","n":9,"messages":[{"role":"user","content":"hi"}]}},
 $p . q{{"model":"gemini-2.5-flash","n":0,"messages":[{"role":"user","content":"hi"}]}},
 $p . q{{"model":"gemini-2.5-flash","n":1.5,"messages":[{"role":"user","content":"hi"}]}}]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code eval
[400, 400, 400]
--- response_body_like eval
[(qr/"message":"\\"n\\" must be an integer from 1 to 8 for Gemini models","param":"n"/) x 3]



=== TEST 4: Gemini logprobs: responseLogprobs and logprobs sent; logprobsResult as choices[].logprobs with tokens, bytes and top_logprobs
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gemini-2.5-flash","logprobs":true,"top_logprobs":2,"messages":[{"role":"user","content":"hi"}]}},
 "GET /_mock/requests/last",
 "POST /v1/chat/completions\n" . q{{"model":"gemini-2.5-flash","logprobs":true,"messages":[{"role":"user","content":"hi"}]}},
 "GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[\&main::choices], [main::sent('generationConfig')], [\&main::choices], [main::sent('generationConfig')]]
--- response_body_like eval
[qr/^\Q0 Mock reply from gemini to: hi stop {"content":[{"bytes":[77,111,99,107,32],"logprob":-0.125,"token":"Mock ","top_logprobs":[{"bytes":[77,111,99,107,32],"logprob":-0.125,"token":"Mock "},{"bytes":[97,108,116,49],"logprob":-1.125,"token":"alt1"}]},{"bytes":[114,101,112,108,121,32],"logprob":-0.25,"token":"reply ",\E/,
 qr/^\Q{"logprobs":2,"responseLogprobs":true}\E\n\z/,
 qr/^\Q0 Mock reply from gemini to: hi stop {"content":[{"bytes":[77,111,99,107,32],"logprob":-0.125,"token":"Mock ","top_logprobs":[]},\E.*\Q{"bytes":[104,105],"logprob":-0.75,"token":"hi","top_logprobs":[]}],"refusal":null}\E\n\z/,
 qr/^\Q{"responseLogprobs":true}\E\n\z/]



=== TEST 5: Gemini logprobs in a stream: each content chunk carries the logprobs of its text
--- request
POST /v1/chat/completions
{"model":"gemini-2.5-flash","logprobs":true,"top_logprobs":1,"stream":true,"messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Events: 2
--- response_body_filters eval
\&main::sse
--- response_body
0 roles 1 finish stop content Mock reply from gemini to: hi logprobs [Mock |-0.125|1][reply |-0.25|1][from |-0.375|1][gemini |-0.125|1][to: |-0.25|1][hi|-0.375|1]
--- no_error_log
[error]



=== TEST 6: Gemini: top_logprobs without logprobs, or out of range, and a logprobs that is not a boolean are 400s
--- request eval
my $p = "POST /v1/chat/completions\n";
[$p . q{{"model":"gemini-2.5-flash","top_logprobs":2,"messages":[{"role":"user","content":"hi"}]}},
 $p . q{{"model":"gemini-2.5-flash","logprobs":true,"top_logprobs":21,"messages":[{"role":"user","content":"hi"}]}},
 $p . q{{"model":"gemini-2.5-flash","logprobs":"yes","messages":[{"role":"user","content":"hi"}]}}]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code eval
[400, 400, 400]
--- response_body_like eval
[qr/"message":"\\"top_logprobs\\" needs \\"logprobs\\": true","param":"top_logprobs"/,
 qr/"message":"\\"top_logprobs\\" must be an integer from 0 to 20","param":"top_logprobs"/,
 qr/"message":"\\"logprobs\\" must be a boolean","param":"logprobs"/]
