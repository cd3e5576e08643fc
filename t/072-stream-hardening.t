# Streams under stress: a client slower than the provider (memory stays
# bounded: the gateway stops reading the upstream while the client's
# output is full), events larger than ailink_stream_event_max_size,
# streams that break off, and usage that arrives in a stream's last chunk.

use lib 't/lib';
use AILink::Test;
use Test::Nginx::Socket 'no_plan';
use JSON::PP;

add_block_preprocessor(\&ailink_defaults);
check_worker_memory();
no_shuffle();
no_root_location();
run_tests();


# A stream, one line per event: a content delta (long ones cut short),
# the finish reason, usage, an error, [DONE]; the /_worker and /audit
# answers as they are.  A long stream: its count of events, and the last
# lines.
sub events {
    my $body = shift;
    my $json = JSON::PP->new->canonical;
    my @out;

    return $body if $body =~ /^(?:worker |\{"time")/;

    for my $ev (split /\n\n/, $body) {
        my ($d) = $ev =~ /\Adata: (.*)\z/s;

        if (!defined $d) {
            push @out, "not an event: " . substr($ev, 0, 40);
            next;
        }

        if ($d eq '[DONE]') {
            push @out, '[DONE]';
            next;
        }

        my $c = eval { $json->decode($d) };

        if (!$c) {
            push @out, "not JSON: " . substr($d, 0, 40);

        } elsif ($c->{error}) {
            push @out, "error $c->{error}{message}";

        } elsif ($c->{usage}) {
            push @out, "usage $c->{usage}{prompt_tokens}/"
                       . "$c->{usage}{completion_tokens}/"
                       . "$c->{usage}{total_tokens}";

        } else {
            my $ch = $c->{choices}[0];
            my $text = $ch->{delta}{content} // '';
            $text = substr($text, 0, 8) . '...(' . length($text) . ')'
                if length $text > 20;
            push @out, "delta [$text]"
                       . (defined $ch->{finish_reason}
                          ? " finish $ch->{finish_reason}" : '');
        }
    }

    if (@out > 10) {
        @out = (scalar(@out) . ' events', @out[-3 .. -1]);
    }

    return join("\n", @out) . "\n";
}

# A provider that answers with a canned stream (X-Canned: anthropic,
# gemini, openai) in which the third event is 2000 bytes of text: over an
# ailink_stream_event_max_size of 1k.
sub canned_server {
    my $big = 'x' x 2000;
    my %s = (
        anthropic => join('',
            'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"usage":{"input_tokens":3,"output_tokens":1}}}\n\n',
            'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n',
            'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi "}}\n\n',
            'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"' . $big . '"}}\n\n',
            'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
            'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":2}}\n\n',
            'event: message_stop\ndata: {"type":"message_stop"}\n\n'),
        gemini => join('',
            'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"Hi "}]},"index":0}]}\r\n\r\n',
            'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"' . $big . '"}]},"index":0}]}\r\n\r\n',
            'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"!"}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":2,"totalTokenCount":5}}\r\n\r\n'),
        openai => join('',
            'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n',
            'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Hi "},"finish_reason":null}]}\n\n',
            'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"' . $big . '"},"finish_reason":null}]}\n\n',
            'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n',
            'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n',
            'data: [DONE]\n\n'),
    );

    my $ifs = join '', map { <<"IF" } sort keys %s;
            if (\$http_x_canned = $_) {
                return 200 '$s{$_}';
            }
IF

    return $AILink::Test::HTTP_CONFIG . <<"CONF";
    server {
        listen 127.0.0.1:\$TEST_NGINX_RAND_PORT_2;

        location / {
            default_type text/event-stream;
$ifs
            return 404;
        }
    }
CONF
}

sub canned_config {
    return <<'CONF';
    ailink_audit_log logs/audit.jsonl;

    location = /audit {
        ailink_audit_log off;
        default_type text/plain;
        alias logs/audit.jsonl;
    }

    location / {
        ailink_auth on;
        ailink_stream_event_max_size 1k;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_2;
        proxy_http_version 1.1;
        proxy_buffering off;
    }
CONF
}

__DATA__

=== TEST 1: a translated (Anthropic) stream read by a slow client keeps bounded memory
--- http_config eval: $AILink::Test::SLOW_CLIENT_HTTP_CONFIG
--- config eval: $AILink::Test::SLOW_CLIENT_CONFIG
--- request eval
["GET /_worker",
"POST /slow/v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","stream":true,"messages":[{"role":"user","content":"Long"}]}},
"GET /_worker?max_kb=200"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Events: 2000
X-Mock-Chunk-Delay-Ms: 0
--- response_body_filters eval
\&main::events
--- response_body_like eval
[qr/^worker \d+/,
 qr/^2003 events\ndelta \[word1994\]\ndelta \[\] finish stop\n\[DONE\]\n\z/,
 qr/^worker \d+/]
--- timeout: 30
--- no_error_log
[error]



=== TEST 2: a translated (Gemini) stream read by a slow client keeps bounded memory
--- http_config eval: $AILink::Test::SLOW_CLIENT_HTTP_CONFIG
--- config eval: $AILink::Test::SLOW_CLIENT_CONFIG
--- request eval
["GET /_worker",
"POST /slow/v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","stream":true,"messages":[{"role":"user","content":"Long"}]}},
"GET /_worker?max_kb=200"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Events: 2000
X-Mock-Chunk-Delay-Ms: 0
--- response_body_filters eval
\&main::events
--- response_body_like eval
[qr/^worker \d+/,
 qr/^2003 events\ndelta \[word1994\]\ndelta \[\] finish stop\n\[DONE\]\n\z/,
 qr/^worker \d+/]
--- timeout: 30
--- no_error_log
[error]



=== TEST 3: an OpenAI stream whose usage chunk is stripped, read by a slow client, keeps bounded memory
--- http_config eval: $AILink::Test::SLOW_CLIENT_HTTP_CONFIG
--- config eval: $AILink::Test::SLOW_CLIENT_CONFIG
--- request eval
["GET /_worker",
"POST /slow/v1/chat/completions\n" . q{{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Long"}]}},
"GET /_worker?max_kb=200"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Events: 2000
X-Mock-Chunk-Delay-Ms: 0
--- response_body_filters eval
\&main::events
--- response_body_like eval
[qr/^worker \d+/,
 qr/^200\d events\ndelta \[word1994\]\ndelta \[\] finish stop\n\[DONE\]\n\z/,
 qr/^worker \d+/]
--- timeout: 30
--- no_error_log
[error]



=== TEST 4: a translated stream with an event over ailink_stream_event_max_size ends with an error event and [DONE]
--- http_config eval: main::canned_server()
--- config eval: main::canned_config()
--- request
POST /v1/chat/completions
{"model":"claude-sonnet-4-5","stream":true,"messages":[{"role":"user","content":"Hello"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Canned: anthropic
--- response_body_filters eval
\&main::events
--- response_body
delta []
delta [Hi ]
error the provider sent a stream event larger than the gateway reads (ailink_stream_event_max_size)
[DONE]
--- error_log eval
[qr/\[error\] .*ailink: anthropic stream event from "http:[^"]*" larger than ailink_stream_event_max_size 1024, stream ended/]



=== TEST 5: the same for Gemini
--- http_config eval: main::canned_server()
--- config eval: main::canned_config()
--- request
POST /v1/chat/completions
{"model":"gemini-2.0-flash","stream":true,"messages":[{"role":"user","content":"Hello"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Canned: gemini
--- response_body_filters eval
\&main::events
--- response_body
delta []
delta [Hi ]
error the provider sent a stream event larger than the gateway reads (ailink_stream_event_max_size)
[DONE]
--- error_log eval
[qr/\[error\] .*ailink: gemini stream event from "http:[^"]*" larger than ailink_stream_event_max_size 1024, stream ended/]



=== TEST 6: the same for an OpenAI stream whose usage chunk is stripped
--- http_config eval: main::canned_server()
--- config eval: main::canned_config()
--- request
POST /v1/chat/completions
{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Hello"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Canned: openai
--- response_body_filters eval
\&main::events
--- response_body
delta []
delta [Hi ]
error the provider sent a stream event larger than the gateway reads (ailink_stream_event_max_size)
[DONE]
--- error_log eval
[qr/\[error\] .*ailink: openai stream event from "http:[^"]*" larger than ailink_stream_event_max_size 1024, stream ended/]



=== TEST 7: a passed-through OpenAI stream carries a large event whole, and says it went unread
--- http_config eval: main::canned_server()
--- config eval: main::canned_config()
--- request
POST /v1/chat/completions
{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hello"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Canned: openai
--- response_body_filters eval
\&main::events
--- response_body
delta []
delta [Hi ]
delta [xxxxxxxx...(2000)]
delta [] finish stop
usage 3/2/5
[DONE]
--- error_log
stream event larger than ailink_stream_event_max_size 1024 passed unread
--- no_error_log
[error]



=== TEST 8: its usage is still read
--- http_config eval: main::canned_server()
--- config eval: main::canned_config()
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hello"}]}},
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Canned: openai
--- response_body_like eval
[qr/data: \[DONE\]\n\n\z/,
 qr/"stream":true,[^\n]*"prompt_tokens":3,"completion_tokens":2,"total_tokens":5,/]
--- no_error_log
[error]



=== TEST 9: a passed-through OpenAI stream that breaks off ends with an error event and [DONE]
--- request
POST /v1/chat/completions
{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hello there"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Events: 6
X-Mock-Drop-After: 3
--- response_body_filters eval
\&main::events
--- response_body_like eval
qr/^delta \[\]\n(?:delta \[[^\]]+\]\n){2}error the provider's stream ended early\n\[DONE\]\n\z/
--- error_log eval
[qr/\[error\] .*ailink: openai stream from "http:[^"]*" ended early/]



=== TEST 10: so does one whose usage chunk is stripped
--- request
POST /v1/chat/completions
{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Hello there"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-Mock-Events: 6
X-Mock-Drop-After: 3
--- response_body_filters eval
\&main::events
--- response_body_like eval
qr/^delta \[\]\n(?:delta \[[^\]]+\]\n){2}error the provider's stream ended early\n\[DONE\]\n\z/
--- error_log eval
[qr/\[error\] .*ailink: openai stream from "http:[^"]*" ended early/]



=== TEST 11: a passed-through stream cut inside an event: the piece is closed off, then the error event and [DONE]
--- http_config eval
$AILink::Test::HTTP_CONFIG . <<'CONF';
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_2;

        location / {
            default_type text/event-stream;
            # a length longer than the body: nginx 1.22 takes the last
            # Content-Length, and the connection closes mid-event
            add_header Content-Length 400;
            return 200 'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\ndata: {"id":"c1","object":"chat.comp';
        }
    }
CONF
--- config
    location / {
        ailink_auth on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_2;
        proxy_http_version 1.1;
        proxy_buffering off;
    }
--- request
POST /v1/chat/completions
{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hello there"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
\&main::events
--- response_body
delta [Hi]
not JSON: {"id":"c1","object":"chat.comp
error the provider's stream ended early
[DONE]
--- error_log eval
[qr/\[error\] .*ailink: openai stream from "http:[^"]*" ended early/]



=== TEST 12: a Gemini stream whose last chunk carries only usageMetadata reports that usage
--- http_config eval
$AILink::Test::HTTP_CONFIG . <<'CONF';
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_2;

        location / {
            default_type text/event-stream;
            return 200 'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"Hi"}]},"index":0}],"modelVersion":"gemini-2.0-flash"}\r\n\r\ndata: {"candidates":[{"content":{"role":"model","parts":[{"text":" there"}]},"finishReason":"STOP","index":0}],"modelVersion":"gemini-2.0-flash"}\r\n\r\ndata: {"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":2,"totalTokenCount":5},"modelVersion":"gemini-2.0-flash"}\r\n\r\n';
        }
    }
CONF
--- config
    ailink_audit_log logs/audit.jsonl;

    location = /audit {
        ailink_audit_log off;
        default_type text/plain;
        alias logs/audit.jsonl;
    }

    location / {
        ailink_auth on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_2;
        proxy_http_version 1.1;
        proxy_buffering off;
    }
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hello"}]}},
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
\&main::events
--- response_body_like eval
[qr/^delta \[\]\ndelta \[Hi\]\ndelta \[ there\]\ndelta \[\] finish stop\nusage 3\/2\/5\n\[DONE\]\n\z/,
 qr/"provider":"gemini",[^\n]*"stream":true,[^\n]*"prompt_tokens":3,"completion_tokens":2,"total_tokens":5,/]
--- no_error_log
[error]
