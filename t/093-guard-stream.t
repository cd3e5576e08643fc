# Guardrails on streamed output: PII in the model's stream redacted across
# event boundaries (a card number or an e-mail address cut over events),
# for OpenAI streams passed through and Anthropic and Gemini streams
# translated; clean text delayed by one event at most; held text sent at
# the finish or before an error; placeholders restored across events; a
# tail longer than the look-behind audited, or the stream ended, never
# passed silently.  X-Mock-Stream-Pieces makes the mock stream exactly
# the pieces given.

use lib 't/lib';
use AILink::Test;
use Test::Nginx::Socket 'no_plan';
use JSON::PP ();

add_block_preprocessor(\&ailink_defaults);
check_worker_memory();
no_shuffle();
no_root_location();
run_tests();


# The stream as its events' texts: "|" between events, the first choice's
# delta.content of each (with "F:" before a finishing one), ERR for an
# error event and DONE for [DONE]; the role and usage chunks left out.
sub events {
    my $body = shift;
    my $json = JSON::PP->new->utf8;
    my @out;

    for my $line (split /\n/, $body) {
        next unless $line =~ /^data: (.*)$/;
        my $data = $1;

        if ($data eq '[DONE]') {
            push @out, 'DONE';
            next;
        }

        my $ev = $json->decode($data);

        if ($ev->{error}) {
            push @out, 'ERR';
            next;
        }

        my $c = $ev->{choices}[0] or next;
        next if defined $c->{delta}{role};

        my $text = $c->{delta}{content};
        $text = '' unless defined $text;

        push @out, (defined $c->{finish_reason} ? 'F:' : '') . $text;
    }

    return join('|', @out) . "\n";
}


sub next_pieces {
    my $pieces = JSON::PP->new->canonical->encode(\@_);
    return "POST /_mock/next\n" . JSON::PP->new->canonical->encode(
        { headers => { 'x-mock-stream-pieces' => $pieces }, count => 1 });
}

__DATA__

=== TEST 1: OpenAI passthrough: a card and an e-mail address cut over events are redacted
--- request eval
[main::next_pieces("Card 4111 1111 ", "1111 1111 and mail ", "jo", "hn\@exa",
                   "mple.com ok"),
"POST /v1/chat/completions\n" . q{{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hi"}]}},
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-AILink-Guardrails: pii_redaction
--- response_body_filters eval
[[], [\&main::events], []]
--- response_body_like eval
[qr/"count":1/,
qr/^Card \|\[CARD_1\] and mail \|\|\|\[EMAIL_1\] \|F:ok\|DONE\n\z/,
qr/"response_pii":\{"email":1,"card":1\},"response":"checked"\}\}\n\z/]
--- no_error_log
[error]



=== TEST 2: Anthropic, translated: the same splits, redacted
--- request eval
[main::next_pieces("Card 4111 1111 ", "1111 1111 and mail ", "jo", "hn\@exa",
                   "mple.com ok"),
"POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","stream":true,"messages":[{"role":"user","content":"Hi"}]}},
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-AILink-Guardrails: pii_redaction
--- response_body_filters eval
[[], [\&main::events], []]
--- response_body_like eval
[qr/"count":1/,
qr/^Card \|\[CARD_1\] and mail \|\|\|\[EMAIL_1\] \|.*ok.*\|DONE\n\z/,
qr/"response_pii":\{"email":1,"card":1\},"response":"checked"\}\}\n\z/]
--- no_error_log
[error]



=== TEST 3: Gemini, translated: an IBAN in groups and a phone number cut over events
--- request eval
[main::next_pieces("Pay DE89 3704 ", "0044 0532 0130 00 or call +1 415 55",
                   "5 2671 today"),
"POST /v1/chat/completions\n" . q{{"model":"gemini-2.0-flash","stream":true,"messages":[{"role":"user","content":"Hi"}]}},
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-AILink-Guardrails: pii_redaction
--- response_body_filters eval
[[], [\&main::events], []]
--- response_body_like eval
[qr/"count":1/,
qr/^Pay \|\[IBAN_1\] or call \|\[PHONE_1\] \|.*today.*\|DONE\n\z/,
qr/"response_pii":\{"phone":1,"iban":1\},"response":"checked"\}\}\n\z/]
--- no_error_log
[error]



=== TEST 4: clean text is delayed by one event at most: a word cut in two waits for its end
--- request eval
[main::next_pieces("Hello ", "wor", "ld, how ", "are you", " today? ", "Fine."),
"POST /v1/chat/completions\n" . q{{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hi"}]}}]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-AILink-Guardrails: pii_redaction
--- response_body_filters eval
[[], [\&main::events]]
--- response_body_like eval
[qr/"count":1/,
qr/^Hello \|\|world, how \|are \|you today\? \|\|F:Fine\.\|DONE\n\z/]
--- no_error_log
[error]



=== TEST 5: without guardrails the stream is the provider's, event for event
--- request eval
[main::next_pieces("Card 4111 1111 ", "1111 1111 and"),
"POST /v1/chat/completions\n" . q{{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hi"}]}}]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[], [\&main::events]]
--- response_body_like eval
[qr/"count":1/,
qr/^Card 4111 1111 \|1111 1111 and\|F:\|DONE\n\z/]
--- no_error_log
[error]



=== TEST 6: restore: the request's placeholder cut over events comes back as its value
--- config
    ailink_audit_log logs/audit.jsonl;
    location /_mock/ {
        ailink_audit_log off;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    location / {
        ailink_auth on;
        ailink_guardrails_restore on;
        include $TEST_NGINX_AILINK_ROOT/conf-examples/ailink-proxy.conf;
    }
--- request eval
[main::next_pieces("Writing to [EMA", "IL_1] and ", "dan\@exam", "ple.org now"),
"POST /v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","stream":true,"messages":[{"role":"user","content":"Mail erin@example.com"}]}}]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-AILink-Guardrails: pii_redaction
--- response_body_filters eval
[[], [\&main::events]]
--- response_body_like eval
[qr/"count":1/,
qr/^Writing to \|erin\@example\.com and \|\|\[EMAIL_2\] \|.*now.*\|DONE\n\z/]
--- no_error_log
[error]



=== TEST 7: a stream cut off: what was held goes out, redacted, before the error event
--- request eval
["POST /_mock/next\n" . q{{"count":1,"headers":{"x-mock-drop-after":"3","x-mock-stream-pieces":"[\"a 4111 1111 1111 \",\"1111 b\",\"more\"]"}}},
"POST /v1/chat/completions\n" . q{{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hi"}]}}]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-AILink-Guardrails: pii_redaction
--- response_body_filters eval
[[], [\&main::events]]
--- response_body_like eval
[qr/"count":1/,
qr/^a \|\[CARD_1\] \|b\|ERR\|DONE\n\z/]



=== TEST 8: a tail past the look-behind is audited as such, or ends the stream (refuse)
--- config
    ailink_audit_log logs/audit.jsonl;
    location = /audit {
        ailink_audit_log off;
        default_type text/plain;
        alias logs/audit.jsonl;
    }
    location /_mock/ {
        ailink_audit_log off;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    location /refuse/ {
        ailink_auth on;
        ailink_guardrails_unchecked refuse;
        rewrite ^/refuse(/.*)$ $1 break;
        include $TEST_NGINX_AILINK_ROOT/conf-examples/ailink-proxy.conf;
    }
    location / {
        ailink_auth on;
        include $TEST_NGINX_AILINK_ROOT/conf-examples/ailink-proxy.conf;
    }
--- request eval
[main::next_pieces("x" x 3000, "y" x 3000, " done"),
"POST /v1/chat/completions\n" . q{{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hi"}]}},
"GET /audit",
main::next_pieces("x" x 3000, "y" x 3000, " done"),
"POST /refuse/v1/chat/completions\n" . q{{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hi"}]}},
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-AILink-Guardrails: pii_redaction
--- response_body_filters eval
[[], [\&main::events], [], [], [\&main::events], []]
--- response_body_like eval
[qr/"count":1/,
qr/^\|x{1904}\|x{1096}y{3000} \|F:done\|DONE\n\z/,
qr/"response":"unchecked_window"\}\}\n\z/,
qr/"count":1/,
qr/^\|ERR\|DONE\n\z/,
qr/"response":"refused_window"\}\}\n\z/]



=== TEST 9: An OpenAI stream passed through with guardrails, read by a slow client, keeps bounded memory
--- http_config eval: $AILink::Test::SLOW_CLIENT_HTTP_CONFIG
--- config eval: $AILink::Test::SLOW_CLIENT_CONFIG
--- request eval
["GET /_worker",
"POST /slow/v1/chat/completions\n" . q{{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Long 4111 1111 1111 1111"}]}},
"GET /_worker?max_kb=200"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-AILink-Guardrails: pii_redaction
X-Mock-Events: 2000
X-Mock-Chunk-Delay-Ms: 0
--- response_body_filters eval
[[], [\&main::events], []]
--- response_body_like eval
[qr/^worker \d+/,
 qr/^Mock \|reply \|from \|\w+ \|to: \|Long \|\[CARD_1\] \|word1 \|(?:word\d+ \|)+\|F:word199\d\|DONE\n\z/,
 qr/^worker \d+/]
--- timeout: 30
--- no_error_log
[error]



=== TEST 10: A translated (Anthropic) stream with guardrails, read by a slow client, keeps bounded memory
--- http_config eval: $AILink::Test::SLOW_CLIENT_HTTP_CONFIG
--- config eval: $AILink::Test::SLOW_CLIENT_CONFIG
--- request eval
["GET /_worker",
"POST /slow/v1/chat/completions\n" . q{{"model":"claude-sonnet-4-5","stream":true,"messages":[{"role":"user","content":"Long 4111 1111 1111 1111"}]}},
"GET /_worker?max_kb=200"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-AILink-Guardrails: pii_redaction
X-Mock-Events: 2000
X-Mock-Chunk-Delay-Ms: 0
--- response_body_filters eval
[[], [\&main::events], []]
--- response_body_like eval
[qr/^worker \d+/,
 qr/^Mock \|reply \|from \|\w+ \|to: \|Long \|\[CARD_1\] \|word1 \|(?:word\d+ \|)+\|F:word199\d\|DONE\n\z/,
 qr/^worker \d+/]
--- timeout: 30
--- no_error_log
[error]



=== TEST 11: a stream the guardrails cannot read (compressed) is audited as such, or refused with 502 (refuse)
--- http_config eval
$AILink::Test::HTTP_CONFIG . <<'CONF';
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_2;

        location / {
            default_type text/event-stream;
            add_header Content-Encoding gzip;
            return 200 'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"ann@example.com"},"finish_reason":null}]}\n\ndata: [DONE]\n\n';
        }
    }
CONF
--- config
    ailink_audit_log logs/audit.jsonl;

    include $TEST_NGINX_AILINK_ROOT/conf-examples/ailink-errors.conf;

    location = /audit {
        ailink_audit_log off;
        default_type text/plain;
        alias logs/audit.jsonl;
    }

    location /refuse/ {
        ailink_auth on;
        ailink_guardrails_unchecked refuse;
        rewrite ^/refuse(/.*)$ $1 break;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_2;
        proxy_http_version 1.1;
        proxy_buffering off;
    }

    location / {
        ailink_auth on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_2;
        proxy_http_version 1.1;
        proxy_buffering off;
    }
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Hi"}]}},
"POST /refuse/v1/chat/completions\n" . q{{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Hi"}]}},
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-AILink-Guardrails: pii_redaction
--- error_code eval
[200, 502, 200]
--- response_body_like eval
[qr/ann\@example\.com/,
qr/^\{"error":\{"type":"api_error","code":"[a-z_]+","message":"[^"]+","param":null,"request_id":"[0-9a-f]{32}"\}\}$/,
qr/"response":"unchecked_encoded"\}\}\n.*"status":502,.*"response":"refused_encoded"\}\}\n\z/s]



=== TEST 12: a JSON response over ailink_response_buffer_size: audited as unchecked, or a 502 (refuse)
--- config
    ailink_audit_log logs/audit.jsonl;

    include $TEST_NGINX_AILINK_ROOT/conf-examples/ailink-errors.conf;

    location = /audit {
        ailink_audit_log off;
        default_type text/plain;
        alias logs/audit.jsonl;
    }

    location /refuse/ {
        ailink_auth on;
        ailink_response_buffer_size 1k;
        ailink_guardrails_unchecked refuse;
        rewrite ^/refuse(/.*)$ $1 break;
        include $TEST_NGINX_AILINK_ROOT/conf-examples/ailink-proxy.conf;
    }

    location / {
        ailink_auth on;
        ailink_response_buffer_size 1k;
        include $TEST_NGINX_AILINK_ROOT/conf-examples/ailink-proxy.conf;
    }
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hi"}]}},
"POST /refuse/v1/chat/completions\n" . q{{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hi"}]}},
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-AILink-Guardrails: pii_redaction
X-Mock-Raw-Body: {"id":"chatcmpl-x","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Mail ann@example.com xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},"finish_reason":"stop"}]}
--- error_code eval
[200, 502, 200]
--- response_body_like eval
[qr/Mail ann\@example\.com x+/,
qr/^\{"error":\{"type":"api_error","code":"[a-z_]+","message":"[^"]+","param":null,"request_id":"[0-9a-f]{32}"\}\}$/,
qr/"response":"unchecked_too_large"\}\}\n.*"status":502,.*"response":"refused_too_large"\}\}\n\z/s]
