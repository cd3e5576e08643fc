# Audit lines and error envelopes are JSON whatever bytes the client sent:
# each field that comes from the client (the decoded path, the
# X-AILink-Session-Id, -Agent-Name, -Parent-Span-Id and -Properties
# headers) carries the bytes 0x80-0xff, and every record and envelope
# must still parse as strict UTF-8 JSON, with what was not UTF-8 replaced
# by U+FFFD and valid UTF-8 kept as it was.

use lib 't/lib';
use AILink::Test;
use Test::Nginx::Socket 'no_plan';
use JSON::PP ();

add_block_preprocessor(\&ailink_defaults);
no_shuffle();
no_root_location();
run_tests();


# every byte from 0x80 to 0xff: none of them starts a sequence the next
# byte completes, so each is one U+FFFD
sub high_bytes { join '', map { chr } 0x80 .. 0xff }

sub high_path { join '', map { sprintf '%%%02X', $_ } 0x80 .. 0xff }


# The last audit line, decoded strictly (JSON::PP dies on invalid UTF-8),
# with the client's fields described: how many U+FFFD they hold, and the
# rest of their text as UTF-8.
sub audit_fields {
    my @lines = split /\n/, shift;
    my $rec = eval { JSON::PP->new->utf8->decode($lines[-1]) };

    return "not JSON: $@" unless $rec;

    my $out = '';

    for my $k (qw(path agent_name session_id parent_span_id properties)) {
        my $v = $rec->{$k} // 'null';
        my $n = () = $v =~ /\x{fffd}/g;
        (my $rest = $v) =~ s/\x{fffd}//g;
        utf8::encode($rest);
        $out .= "$k: $n U+FFFD" . (length $rest ? " + $rest" : '') . "\n";
    }

    return $out;
}


# an error envelope, decoded strictly: its message, as UTF-8
sub envelope {
    my $e = eval { JSON::PP->new->utf8->decode(shift) };

    return "not JSON: $@" unless $e;

    my $m = $e->{error}{message};
    utf8::encode($m);

    return "$e->{error}{code}: $m\n";
}

__DATA__

=== TEST 1: each client field with the bytes 0x80-0xff: the audit line is valid JSON
--- request eval
["GET /v1/models/" . main::high_path(), "GET /audit"]
--- more_headers eval
"Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-AILink-Agent-Name: " . main::high_bytes() . "
X-AILink-Session-Id: " . main::high_bytes() . "
X-AILink-Parent-Span-Id: " . main::high_bytes() . "
X-AILink-Properties: " . main::high_bytes() . "\n"
--- response_body_filters eval
[[sub { "" }], [\&main::audit_fields]]
--- response_body eval
["", "path: 128 U+FFFD + /v1/models/
agent_name: 128 U+FFFD
session_id: 128 U+FFFD
parent_span_id: 128 U+FFFD
properties: 128 U+FFFD
"]
--- no_error_log
[alert]
[crit]



=== TEST 2: valid UTF-8 is kept; overlongs, surrogates, code points past U+10FFFF and cut sequences are replaced
--- request eval
["GET /v1/models", "GET /audit"]
--- more_headers eval
"Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-AILink-Agent-Name: caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80
X-AILink-Session-Id: a\xc0\xafb\xed\xa0\x80c
X-AILink-Parent-Span-Id: \xf4\x90\x80\x80d\xf8\x88\x80\x80\x80
X-AILink-Properties: e\xe2\x82x\xf0\x9f\x98\n"
--- response_body_filters eval
[[sub { "" }], [\&main::audit_fields]]
--- response_body eval
["", "path: 0 U+FFFD + /v1/models
agent_name: 0 U+FFFD + caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80
session_id: 5 U+FFFD + abc
parent_span_id: 9 U+FFFD + d
properties: 2 U+FFFD + ex
"]
--- no_error_log
[alert]
[crit]



=== TEST 3: an error message that quotes a client's URL cut inside a character is valid JSON
--- request eval
["POST /v1/chat/completions\n{\"model\":\"gemini-2.0-flash\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"ftp://x" . ("\xc3\xa9" x 40) . "\"}}]}]}",
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[\&main::envelope], [\&main::audit_fields]]
--- response_body eval
["invalid_request: messages[0].content: unsupported media URL \"ftp://x" . ("\xc3\xa9" x 28) . "\xef\xbf\xbd...\": use a data: or https: URL\n",
"path: 0 U+FFFD + /v1/chat/completions
agent_name: 0 U+FFFD + default-agent
session_id: 0 U+FFFD + null
parent_span_id: 0 U+FFFD + null
properties: 0 U+FFFD + null
"]
--- error_code eval
[400, 200]
--- no_error_log
[alert]
[crit]
