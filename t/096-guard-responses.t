# Guardrails on the model's output, the paths issue 12 left open: a
# streamed legacy /v1/completions (choices[].text) redacted across
# events; custom guardrails (patterns and word lists, redact, block and
# log) on JSON answers and on streams, a match cut over events still
# caught; and the stream paths where a text cannot be checked (text in
# a shape not read, an event larger than the gateway reads) audited or
# refused, never passed as checked.

use lib 't/lib';
use AILink::Test;
use AILink::Policy;
use Test::Nginx::Socket 'no_plan';
use JSON::PP ();

our $GUARDS = <<'YAML';
guardrails:
  - name: project_codes
    pattern: "PRJ-[0-9]{4}"
    action: redact
    placeholder: PROJECT
  - name: secret_projects
    words: [bluebird, "night owl"]
    action: block
  - name: competitors
    words: [acme]
    action: log
YAML

# a location of the gateway whose upstream is a canned answer (server 2)
our $CANNED_CONFIG = <<'CONF';
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
CONF

add_block_preprocessor(sub {
    my $block = shift;
    policy_defaults($block);
});

no_shuffle();
no_root_location();
run_tests();


# The stream as its events' texts: "|" between events, the first choice's
# delta.content or (legacy) text, "F:" before a finishing one, ERR:code
# for an error event, DONE for [DONE]; role and usage chunks left out.
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
            push @out, 'ERR:' . ($ev->{error}{code} // '');
            next;
        }

        my $c = $ev->{choices}[0] or next;
        next if defined $c->{delta} && defined $c->{delta}{role};

        my $text = defined $c->{text} ? $c->{text} : $c->{delta}{content};
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


# a legacy completions stream of these texts, as "return 200" can send it
sub legacy_sse {
    my @pieces = @_;
    my $json = JSON::PP->new->canonical;
    my $out = '';
    my $n = 0;

    for my $p (@pieces) {
        $n++;
        $out .= 'data: ' . $json->encode({
            id => 'cmpl-1', object => 'text_completion', created => 1,
            model => 'gpt-4o-mini',
            choices => [{ index => 0, text => $p, logprobs => undef,
                          finish_reason => $n == @pieces ? 'stop' : undef }]
        }) . "\\n\\n";
    }

    $out .= "data: [DONE]\\n\\n";
    $out =~ s/'/\\'/g;
    return $out;
}


sub canned_server {
    my ($body, $extra) = @_;
    $extra //= '';
    return $AILink::Policy::POLICY_HTTP . <<"CONF";
    server {
        listen 127.0.0.1:\$TEST_NGINX_RAND_PORT_2;
        $extra
        location / {
            default_type text/event-stream;
            return 200 '$body';
        }
    }
CONF
}

__DATA__

=== TEST 1: a streamed legacy completion: choices[].text redacted across events
--- user_files eval
AILink::Policy::policy_files('')
--- http_config eval
main::canned_server(main::legacy_sse("Mail jo", "hn\@exa", "mple.com or card 4111 1111 ",
                                     "1111 1111 now", " bye"))
--- config eval: $main::CANNED_CONFIG
--- request eval
["POST /v1/completions\n" . q{{"model":"gpt-4o-mini","stream":true,"prompt":"Who?"}},
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-AILink-Guardrails: pii_redaction
--- response_body_filters eval
[[\&main::events], []]
--- response_body_like eval
[qr/^Mail \|\|\[EMAIL_1\] or card \|\[CARD_1\] \|F:now bye\|DONE\n\z/,
qr/"response_pii":\{"email":1,"card":1\},"response":"checked"\}\}\n\z/]
--- no_error_log
[error]



=== TEST 2: a legacy stream that ends holding text: it goes out redacted, as a text_completion chunk
--- user_files eval
AILink::Policy::policy_files('')
--- http_config eval
main::canned_server(main::legacy_sse("Card 4111 1111 1111 1111") =~ s/"finish_reason":"stop"/"finish_reason":null/r)
--- config eval: $main::CANNED_CONFIG
--- request eval
["POST /v1/completions\n" . q{{"model":"gpt-4o-mini","stream":true,"prompt":"Who?"}},
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-AILink-Guardrails: pii_redaction
--- response_body_like eval
[qr/^data: \{"choices":\[\{"finish_reason":null,"index":0,"logprobs":null,"text":"Card "\}\],"created":1,"id":"cmpl-1","model":"gpt-4o-mini","object":"text_completion"\}\n\ndata: \{"id":"cmpl-1","object":"text_completion","created":1,"model":"gpt-4o-mini","choices":\[\{"index":0,"text":"\[CARD_1\]","finish_reason":null\}\]\}\n\ndata: \[DONE\]\n\n\z/,
qr/"response_pii":\{"card":1\},"response":"checked"\}\}\n\z/]
--- no_error_log
[error]



=== TEST 3: custom guardrails on a JSON answer: redact (numbered after the request's), log counted
--- user_files eval
AILink::Policy::policy_files($main::GUARDS)
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gpt-4o-mini","messages":[{"role":"user","content":"About PRJ-0001"}]}},
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-AILink-Guardrails: project_codes,competitors
X-Mock-Raw-Body: {"id":"chatcmpl-x","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"[PROJECT_1] is like PRJ-7777 and PRJ-0001 at Acme"},"finish_reason":"stop"}]}
--- response_body_like eval
[qr/"content":"\[PROJECT_1\] is like \[PROJECT_2\] and \[PROJECT_1\] at Acme"/,
qr/"requested":\["project_codes","competitors"\],"custom":\{"project_codes":1,"competitors":0\},"response_custom":\{"project_codes":2,"competitors":1\},"response":"checked"\}\}\n\z/]
--- no_error_log
[error]



=== TEST 4: a custom block on a JSON answer: 403 content_blocked naming it, the answer not sent
--- user_files eval
AILink::Policy::policy_files($main::GUARDS)
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Any plans?"}]}},
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-AILink-Guardrails: secret_projects
X-Mock-Raw-Body: {"id":"chatcmpl-x","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Yes: Project Bluebird ships soon"},"finish_reason":"stop"}]}
--- error_code eval
[403, 200]
--- response_body_like eval
[qr/^\{"error":\{"type":"permission_error","code":"content_blocked","message":"the response was blocked by the secret_projects guardrail","param":null,"guardrail":"secret_projects","matches":\["secret_projects"\],"request_id":"[0-9a-f]{32}"\}\}\n\z/,
qr/"status":403,[^\n]*"custom":\{"secret_projects":0\},"response_custom":\{"secret_projects":1\},"response":"blocked"\}\}\n\z/]
--- no_error_log
[error]



=== TEST 5: a custom pattern cut over stream events is redacted; clean text is not held
--- user_files eval
AILink::Policy::policy_files($main::GUARDS)
--- request eval
[main::next_pieces("See PR", "J-12", "34 and ", "PRJ-5678", " done"),
"POST /v1/chat/completions\n" . q{{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hi"}]}},
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-AILink-Guardrails: project_codes
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
    location / {
        ailink_auth on;
        include $TEST_NGINX_AILINK_ROOT/conf-examples/ailink-proxy.conf;
    }
--- response_body_filters eval
[[], [\&main::events], []]
--- response_body_like eval
[qr/"count":1/,
qr/^See \|\|\[PROJECT_1\] and \|\[PROJECT_2\]\| done\|F:\|DONE\n\z/,
qr/"custom":\{"project_codes":0\},"response_custom":\{"project_codes":2\},"response":"checked"\}\}\n\z/]
--- no_error_log
[error]



=== TEST 6: a blocked phrase cut over events ends the stream with content_blocked before any of it goes
--- user_files eval
AILink::Policy::policy_files($main::GUARDS)
--- request eval
[main::next_pieces("The plan: night ", "owl", " is next"),
"POST /v1/chat/completions\n" . q{{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hi"}]}},
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-AILink-Guardrails: secret_projects
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
    location / {
        ailink_auth on;
        include $TEST_NGINX_AILINK_ROOT/conf-examples/ailink-proxy.conf;
    }
--- response_body_filters eval
[[], [\&main::events], []]
--- response_body_like eval
[qr/"count":1/,
qr/^The plan: \|\|ERR:content_blocked\|DONE\n\z/,
qr/"response_custom":\{"secret_projects":1\},"response":"blocked"\}\}\n\z/]
--- no_error_log
[error]



=== TEST 7: text in a shape the stream guardrails do not read: audited, or the stream ended (refuse)
--- user_files eval
AILink::Policy::policy_files('')
--- http_config eval
main::canned_server('data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":[{"type":"text","text":"ann@example.com"}]},"finish_reason":null}]}\n\ndata: [DONE]\n\n')
--- config eval: $main::CANNED_CONFIG
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hi"}]}},
"POST /refuse/v1/chat/completions\n" . q{{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hi"}]}},
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-AILink-Guardrails: pii_redaction
--- response_body_like eval
[qr/ann\@example\.com/,
qr/^data: \{"error":\{"type":"api_error","code":"upstream_error",[^\n]*\}\}\n\ndata: \[DONE\]\n\n\z/,
qr/"response":"unchecked_event"\}\}\n.*"response":"refused_event"\}\}\n\z/s]



=== TEST 8: an event larger than the gateway reads ends a guarded stream; the audit says so
--- user_files eval
AILink::Policy::policy_files('')
--- http_config eval
main::canned_server('data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"ok "},"finish_reason":null}]}\n\ndata: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"' . ('x' x 3000) . ' ann@example.com"},"finish_reason":null}]}\n\ndata: [DONE]\n\n')
--- config eval
$main::CANNED_CONFIG =~ s/(location \/ \{\n)/$1        ailink_stream_event_max_size 1k;\n/r
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hi"}]}},
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-AILink-Guardrails: pii_redaction
--- response_body_filters eval
[[\&main::events], []]
--- response_body_like eval
[qr/^ok \|ERR:upstream_error\|DONE\n\z/,
qr/"response":"refused_event"\}\}\n\z/]



=== TEST 9: a clean body is let through at a glance; a value behind a \u escape is still found, and a body that is not strict JSON still refused
--- user_files eval
AILink::Policy::policy_files('')
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
    location / {
        ailink_auth on;
        include $TEST_NGINX_AILINK_ROOT/conf-examples/ailink-proxy.conf;
    }
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gpt-4o-mini", "messages":[{"role":"user","content":"plain words, \"quoted\"\nand a new line"}]}},
"GET /_mock/requests/last",
"POST /v1/chat/completions\n" . q{{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Mail ann\u0040example.com"}]}},
"GET /_mock/requests/last",
"POST /v1/chat/completions\n" . qq{{"model":"gpt-4o-mini","messages":[{"role":"user","content":"tab\there"}]}},
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-AILink-Guardrails: pii_redaction
--- error_code eval
[200, 200, 200, 200, 400, 200]
--- response_body_like eval
[qr/Mock reply/,
qr/"body":"\{\\"model\\":\\"gpt-4o-mini\\", \\"messages\\":\[\{\\"role\\":\\"user\\",\\"content\\":\\"plain words, \\\\\\"quoted\\\\\\"\\\\nand a new line\\"\}\]\}"/,
qr/Mock reply/,
qr/"content":"Mail \[EMAIL_1\]"/,
qr/"code":"invalid_request","message":"the request body is not JSON the guardrails can read"/,
qr/"pii":\{\},"response_pii":\{\},"response":"checked"\}\}\n[^\n]*"pii":\{"email":1\},[^\n]*\n[^\n]*"status":400,[^\n]*\n\z/]
--- no_error_log
[error]



=== TEST 10: pii_redaction alone on a clean answer: sent as it came at a glance, its metadata's digits not taken for PII, audited as checked
--- user_files eval
AILink::Policy::policy_files('')
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}},
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-AILink-Guardrails: pii_redaction
X-Mock-Raw-Body: {"id":"chatcmpl-2024-07-18-5550100","object":"chat.completion","created":1,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Note: nothing private here"},"finish_reason":"stop"}],"system_fingerprint":"fp_10.0.0.1"}
--- response_body_like eval
[qr/^\{"id":"chatcmpl-2024-07-18-5550100","object":"chat.completion","created":1,"model":"gpt-4o-mini-2024-07-18","choices":\[\{"index":0,"message":\{"role":"assistant","content":"Note: nothing private here"\},"finish_reason":"stop"\}\],"system_fingerprint":"fp_10.0.0.1"\}\z/,
qr/"response_pii":\{\},"response":"checked"\}\}\n\z/]
--- no_error_log
[error]



=== TEST 11: an answer whose "choices" key is written with an escape is still read and redacted
--- user_files eval
AILink::Policy::policy_files('')
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}},
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-AILink-Guardrails: pii_redaction
X-Mock-Raw-Body: {"id":"chatcmpl-x","object":"chat.completion","created":1,"model":"gpt-4o-mini","ch\u006fices":[{"index":0,"message":{"role":"assistant","content":"Write to ann@example.com"},"finish_reason":"stop"}]}
--- response_body_like eval
[qr/"content":"Write to \[EMAIL_1\]"/,
qr/"response_pii":\{"email":1\},"response":"checked"\}\}\n\z/]
--- no_error_log
[error]
