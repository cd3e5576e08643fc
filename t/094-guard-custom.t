# Custom guardrails from the config-as-code file ("guardrails:"): named
# PCRE2 patterns and word lists with redact, block or log, asked for by
# X-AILink-Guardrails or attached to a token ("guardrails: [...]"); what
# the provider received is checked at the mock, the audit has names and
# counts, never the text.  Then "nginx -t" on bad ones: each fails naming
# the guardrail.

use lib 't/lib';
use AILink::Test;
use AILink::Policy;
use Test::Nginx::Socket 'no_plan';
use Test::More;
use File::Temp qw(tempdir);
use Cwd qw(abs_path);
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

our $CONFIG = <<'CONF';
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
CONF

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('config', $CONFIG) unless defined $block->config;
    policy_defaults($block);
});

nginx_t_checks();

no_shuffle();
no_root_location();
run_tests();


# the texts of the messages the mock received, one per line
sub texts {
    my $rec = JSON::PP->new->utf8->decode(shift);
    return join("\n", map { $_->{content} } @{ $rec->{json}{messages} })
           . "\n";
}


sub nginx_t {
    my ($yaml, $token_extra) = @_;
    my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
    my $root = abs_path('.');
    my @modules = split ' ', ($ENV{TEST_NGINX_LOAD_MODULES}
                              || "$root/build/release/ngx_ailink_module.so");
    my $dir = tempdir(CLEANUP => 1);

    local $ENV{TEST_NGINX_MOCK_PORT} = $ENV{TEST_NGINX_MOCK_PORT} || 1;
    local $ENV{AILINK_TEST_OPENAI_KEY} = 'sk-test';
    local $ENV{AILINK_TEST_ACTION_KEY} = 'sk-test';

    mkdir "$dir/logs";
    open my $y, '>', "$dir/ailink.yaml" or die $!;
    print $y policy_yaml($yaml, $token_extra);
    close $y;
    open my $c, '>', "$dir/nginx.conf" or die $!;
    print $c "load_module $_;\n" for @modules;
    print $c "error_log logs/error.log;\npid logs/nginx.pid;\nevents {}\n"
           . "http {\n ailink_config ailink.yaml;\n"
           . " server { listen 127.0.0.1:1; }\n}\n";
    close $c;

    my $out = `$nginx -t -p $dir/ -c $dir/nginx.conf 2>&1`;
    return ($? == 0, $out);
}


sub nginx_t_checks {
    my ($ok, $out) = nginx_t($GUARDS,
                             "    guardrails: [pii_redaction, competitors]\n");
    ok($ok, 'nginx -t: good custom guardrails') or diag($out);

    for my $case (
        [qq{guardrails:\n  - {name: ids, pattern: "ID-[0-9"}\n},
         qr/guardrails\[0\] "ids": bad pattern at offset \d+: missing terminating \]/],
        [qq{guardrails:\n  - {name: a, pattern: "x"}\n  - {name: b, pattern: "(?<n"}\n},
         qr/guardrails\[1\] "b": bad pattern at offset/],
        [qq{guardrails:\n  - {name: pii_redaction, pattern: "x"}\n},
         qr/guardrails\[0\]\.name: "pii_redaction" is taken/],
        [qq{guardrails:\n  - {name: a, pattern: "x"}\n  - {name: a, words: [y]}\n},
         qr/guardrails\[1\]\.name: "a" is taken/],
        [qq{guardrails:\n  - {name: Bad, pattern: "x"}\n},
         qr/guardrails\[0\]\.name: must be lowercase/],
        [qq{guardrails:\n  - {name: a, pattern: "x", words: [y]}\n},
         qr/guardrails\[0\] "a": needs a pattern or words \(one of them\)/],
        [qq{guardrails:\n  - {name: a, words: []}\n},
         qr/guardrails\[0\] "a": words must be a list of non-empty strings/],
        [qq{guardrails:\n  - {name: a, pattern: "x", action: drop}\n},
         qr/guardrails\[0\] "a": action must be redact, block or log/],
        [qq{guardrails:\n  - {name: a, pattern: "x", placeholder: "a b"}\n},
         qr/guardrails\[0\] "a": placeholder must be capitals/],
        [qq{guardrails:\n  - {name: a, pattern: "x", colour: red}\n},
         qr/guardrails\[0\]: unknown key "colour"/],
        [$GUARDS, qr/tokens\[0\]\.guardrails: unknown guardrail "toxicity"/,
         "    guardrails: [pii_redaction, toxicity]\n"])
    {
        my ($yaml, $message, $token_extra) = @$case;
        ($ok, $out) = nginx_t($yaml, $token_extra);
        ok(!$ok, "nginx -t fails: $message");
        like($out, $message, "nginx -t names it: $message");
    }
}

__DATA__

=== TEST 1: a custom pattern redacts, the same value the same placeholder; the audit counts it
--- user_files eval
AILink::Policy::policy_files($main::GUARDS)
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gpt-4o-mini","messages":[{"role":"system","content":"Context: PRJ-1234"},{"role":"user","content":"Status of PRJ-1234 and PRJ-9876? Mail ann@example.com"}]}},
"GET /_mock/requests/last", "GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-AILink-Guardrails: project_codes
--- response_body_filters eval
[[], [\&main::texts], []]
--- response_body_like eval
[qr/Mock reply/,
qr/^Context: \[PROJECT_1\]\nStatus of \[PROJECT_1\] and \[PROJECT_2\]\? Mail ann\@example\.com\n\z/,
qr/"guardrails":\{"requested":\["project_codes"\],"custom":\{"project_codes":3\},"response_custom":\{"project_codes":0\},"response":"checked"\}\}\n\z/]
--- no_error_log
[error]



=== TEST 2: a word list blocks, whole words in any case: 403 content_blocked naming the guardrail, never the word
--- user_files eval
AILink::Policy::policy_files($main::GUARDS)
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gpt-4o-mini","messages":[{"role":"user","content":"What about Project NIGHT  owl? no: night owl"}]}},
"POST /v1/chat/completions\n" . q{{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Bluebirds and nightowls are birds"}]}},
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-AILink-Guardrails: secret_projects
--- error_code eval
[403, 200, 200]
--- response_body_like eval
[qr/^\{"error":\{"type":"permission_error","code":"content_blocked","message":"the request was blocked by the secret_projects guardrail","param":null,"guardrail":"secret_projects","matches":\["secret_projects"\],"request_id":"[0-9a-f]{32}"\}\}$/,
qr/Mock reply from openai to: Bluebirds and nightowls/,
qr/"status":403,.*"custom":\{"secret_projects":1\},"response_custom":\{"secret_projects":0\},"response":null\}\}\n.*"status":200,.*"custom":\{"secret_projects":0\},"response_custom":\{"secret_projects":0\},"response":"checked"\}\}\n\z/s]



=== TEST 3: log only counts: the text goes on as it was
--- user_files eval
AILink::Policy::policy_files($main::GUARDS)
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Is ACME better than Acme Corp?"}]}},
"GET /_mock/requests/last", "GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-AILink-Guardrails: competitors
--- response_body_filters eval
[[], [\&main::texts], []]
--- response_body_like eval
[qr/Mock reply/,
qr/^Is ACME better than Acme Corp\?\n\z/,
qr/"requested":\["competitors"\],"custom":\{"competitors":2\},"response_custom":\{"competitors":2\},"response":"checked"\}\}\n\z/]
--- no_error_log
[error]



=== TEST 4: a token's guardrails apply without the header; the header adds to them
--- user_files eval
AILink::Policy::policy_files($main::GUARDS,
    "    guardrails: [pii_redaction, project_codes]\n")
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gpt-4o-mini","messages":[{"role":"user","content":"PRJ-0001 for bob@example.com, ACME"}]}},
"GET /_mock/requests/last", "GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-AILink-Guardrails: competitors
--- response_body_filters eval
[[], [\&main::texts], []]
--- response_body_like eval
[qr/Mock reply/,
qr/^\[PROJECT_1\] for \[EMAIL_1\], ACME\n\z/,
qr/"requested":\["pii_redaction","project_codes","competitors"\],"custom":\{"project_codes":1,"competitors":1\},"response_custom":\{"project_codes":0,"competitors":1\},"pii":\{"email":1\}/]
--- no_error_log
[error]



=== TEST 5: another token (none attached) goes unchecked; an unknown name is still a 400
--- user_files eval
AILink::Policy::policy_files($main::GUARDS,
    "    guardrails: [project_codes]\n")
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gpt-4o-mini","messages":[{"role":"user","content":"PRJ-0001"}]}},
"GET /_mock/requests/last",
"POST /v1/chat/completions\n" . q{{"model":"gpt-4o-mini","messages":[{"role":"user","content":"PRJ-0001"}]}}]
--- more_headers eval
["Authorization: Bearer $AILink::Policy::OTHER_TOKEN",
"",
"Authorization: Bearer $AILink::Policy::OTHER_TOKEN\nX-AILink-Guardrails: project_kodes"]
--- response_body_filters eval
[[], [\&main::texts], []]
--- error_code eval
[200, 200, 400]
--- response_body_like eval
[qr/Mock reply/,
qr/^PRJ-0001\n\z/,
qr/"code":"invalid_request","message":"unknown guardrail \\"project_kodes\\" in X-AILink-Guardrails/]
