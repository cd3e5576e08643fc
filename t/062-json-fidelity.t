# What the client wrote is what the provider gets: strings holding
# "\u0000" are carried whole, numbers keep their text (1e400, 2^64, a
# decimal of 34 digits), through the Anthropic and Gemini translations
# and the OpenAI body rewrite alike.  And every route reads a body the
# same way: a UTF-8 BOM, or bytes that are not UTF-8, are a 400
# invalid_request on the OpenAI, Claude and Gemini routes, and nothing
# is sent.  Checked in the mock provider's record of what it received.

use lib 't/lib';
use AILink::Test;
use Test::Nginx::Socket 'no_plan';
use JSON::PP ();

add_block_preprocessor(\&ailink_defaults);
no_shuffle();
no_root_location();
run_tests();


# The body the mock received, as the gateway wrote it.  Taken from the
# record's text: its parsed "json" may hold Python's Infinity, which is
# not JSON.
sub sent_body {
    my ($s) = shift =~ /"body":("(?:[^"\\]|\\.)*")/s
        or return "no body\n";
    my $b = JSON::PP->new->utf8->allow_nonref->decode($s);
    utf8::encode($b);
    return "$b\n";
}


# One key of the body the mock received, as the gateway wrote it.
sub sent_key {
    my $key = shift;

    return sub {
        my $b = sent_body(shift);
        my ($v) = $b =~ /"\Q$key\E":(.*)\n\z/s;
        return defined $v ? "$v\n" : "absent\n";
    };
}


# An error envelope's code and message; anything else as it is.
sub error_of {
    my $e = eval { JSON::PP->new->utf8->decode(shift) };
    return ($e && $e->{error}) ? "$e->{error}{code}: $e->{error}{message}\n"
                               : "not an error\n";
}

__DATA__

=== TEST 1: a UTF-8 BOM is refused alike on the OpenAI, Claude and Gemini routes, and nothing is sent
--- request eval
my $body = sub { "POST /v1/chat/completions\n\xef\xbb\xbf" . qq{{"model":"$_[0]","messages":[{"role":"user","content":"hi"}]}} };
["DELETE /_mock/requests", $body->("mock-gpt"), $body->("claude-sonnet-4-5"),
 $body->("gemini-2.0-flash"), "GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[sub { "" }], [\&main::error_of], [\&main::error_of], [\&main::error_of], [sub { "" }]]
--- response_body eval
["", "invalid_request: the request body is not a JSON object\n",
 "invalid_request: the request body is not a JSON object\n",
 "invalid_request: the request body is not a JSON object\n", ""]
--- error_code eval
[200, 400, 400, 400, 404]
--- no_error_log
[alert]
[crit]



=== TEST 2: a body that is not UTF-8 is refused alike on the OpenAI, Claude and Gemini routes, and nothing is sent
--- request eval
my $body = sub { "POST /v1/chat/completions\n" . qq{{"model":"$_[0]","messages":[{"role":"user","content":"caf\xe9 \xc0\xaf \xed\xa0\x80"}]}} };
["DELETE /_mock/requests", $body->("mock-gpt"), $body->("claude-sonnet-4-5"),
 $body->("gemini-2.0-flash"), "GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[sub { "" }], [\&main::error_of], [\&main::error_of], [\&main::error_of], [sub { "" }]]
--- response_body eval
["", "invalid_request: the request body is not a JSON object\n",
 "invalid_request: the request body is not a JSON object\n",
 "invalid_request: the request body is not a JSON object\n", ""]
--- error_code eval
[200, 400, 400, 400, 404]
--- no_error_log
[alert]
[crit]



=== TEST 3: valid UTF-8 of every length passes on every route, as it was written
--- request eval
my $text = "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf";
my $body = sub { "POST /v1/chat/completions\n" . qq{{"model":"$_[0]","messages":[{"role":"user","content":"$text"}]}} };
[$body->("mock-gpt"), "GET /_mock/requests/last",
 $body->("claude-sonnet-4-5"), "GET /_mock/requests/last",
 $body->("gemini-2.0-flash"), "GET /_mock/requests/last"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_filters eval
[[\&main::error_of], [main::sent_key('messages')], [\&main::error_of], [main::sent_key('messages')],
 [\&main::error_of], [main::sent_key('contents')]]
--- response_body eval
["not an error\n", "[{\"role\":\"user\",\"content\":\"caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\"}]}\n",
 "not an error\n", "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\"}]}],\"max_tokens\":4096}\n",
 "not an error\n", "[{\"role\":\"user\",\"parts\":[{\"text\":\"caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\"}]}]}\n"]
--- no_error_log
[error]
