# Guardrails (X-AILink-Guardrails, ailink_guardrails*): PII in every
# message replaced by typed placeholders before any provider sees it
# (checked in what the mock provider received), prompt injection refused
# with 403 content_blocked naming rule ids only, model output redacted,
# placeholders restored on request, and the audit's types and counts.

use lib 't/lib';
use AILink::Test;
use Test::Nginx::Socket 'no_plan';
use JSON::PP ();

add_block_preprocessor(\&ailink_defaults);
no_shuffle();
no_root_location();
run_tests();


# The texts of the request body the mock received, one per line: every
# message's string content, text parts, tool-call arguments; Anthropic's
# and Gemini's text blocks and parts alike.
sub texts {
    my $rec = JSON::PP->new->utf8->decode(shift);
    my @out;
    my $walk;

    $walk = sub {
        my $v = shift;

        if (ref $v eq 'HASH') {
            for my $k (sort keys %$v) {
                if ($k =~ /^(content|text|arguments|input|prompt)$/
                    && !ref $v->{$k})
                {
                    push @out, $v->{$k};
                } else {
                    $walk->($v->{$k});
                }
            }
        } elsif (ref $v eq 'ARRAY') {
            $walk->($_) for @$v;
        }
    };

    $walk->($rec->{json});

    return join("\n", @out) . "\n";
}


sub stable {
    my $b = shift;
    $b =~ s/"request_id":"[0-9a-f]{32}"/"request_id":"ID"/g;
    return $b;
}

__DATA__

=== TEST 1: OpenAI: PII in every message becomes placeholders, the same value the same placeholder
--- request eval
["POST /v1/chat/completions\n" . q{{"model":"gpt-4o-mini","messages":[
{"role":"system","content":"Support agent. Escalations go to ops@example.com."},
{"role":"user","content":"I am alice.smith@example.org, card 4111 1111 1111 1111, call +44 20 7946 0958."},
{"role":"assistant","content":"Thanks alice.smith@example.org, checking."},
{"role":"user","content":[{"type":"text","text":"My SSN is 123-45-6789 and IBAN GB82 WEST 1234 5698 7654 32, server 10.1.2.3."}]}]}},
"GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-AILink-Guardrails: pii_redaction
--- response_body_filters eval
[[], [\&main::texts]]
--- response_body_like eval
[qr/"object":"chat.completion"/,
qr{^\QSupport agent. Escalations go to [EMAIL_1].
I am [EMAIL_2], card [CARD_1], call [PHONE_1].
Thanks [EMAIL_2], checking.
My SSN is [SSN_1] and IBAN [IBAN_1], server [IP_1].\E
\z}]
--- no_error_log
[error]
[alert]
[crit]
