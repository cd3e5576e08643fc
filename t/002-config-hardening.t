# Configuration hardening: what a credential, a base URL or a client's own
# key may hold, and what reaches the error log.
#
# The first part runs "nginx -t" on generated configurations (credential
# files with odd contents, modes and types are made here, in each case's
# own folder); the blocks after __DATA__ run the gateway.

use strict;
use warnings;
use lib 't/lib';
use AILink::Test;
use AILink::Conf;
use File::Temp qw(tempdir);
use POSIX qw(mkfifo);
use Test::Nginx::Socket 'no_plan';

my $with_yaml = "ailink_config ailink.yaml;";
my $token = "tokens:\n  - id: t1\n    project: p\n    hash: "
            . ('a' x 64) . "\n";

# a credential file with these bytes and mode, in a folder of its own
sub secret_file {
    my ($bytes, $mode) = @_;
    my $dir = tempdir(CLEANUP => 1);
    open my $f, '>', "$dir/key" or die $!;
    binmode $f;
    print $f $bytes;
    close $f;
    chmod $mode // 0600, "$dir/key" or die $!;
    return "$dir/key";
}

sub file_cred {
    my ($path, $more) = @_;
    return "credentials:\n  k: { file: \"$path\"" . ($more // '') . " }\n";
}

# a secret with a line break in it would write a header of its own into
# every upstream request
for my $case (["CR LF", "sk-file-secret-1\r\nX-Injected: 1\n"],
              ["LF", "sk-file-secret-1\nX-Injected: 1\n"],
              ["NUL", "sk-file-secret-1\0tail"],
              ["tab", "sk-file\tsecret-1"],
              ["DEL", "sk-file-secret-1\x7f"])
{
    my $out = rejects("credential file with $case->[0] inside", $with_yaml,
                      file_cred(secret_file($case->[1])),
                      qr/ailink_config ".*ailink\.yaml": credentials\.k\.file: the secret holds a control character/);
    unlike($out, qr/sk-file|X-Injected/,
           "credential file with $case->[0]: the secret is not printed");
}

{
    my ($ok, $out) = nginx_t($with_yaml,
                             file_cred(secret_file("sk-file-secret-1\r\n")));
    ok($ok, 'a trailing CR LF is not part of the secret') or diag($out);
}

# the same for a secret from the environment
{
    local $ENV{AILINK_HARDEN_KEY} = "sk-env-secret-1\r\nX-Injected: 1";
    my $out = rejects('environment secret with CR LF inside', $with_yaml,
                      "credentials:\n  k: { env: AILINK_HARDEN_KEY }\n",
                      qr/credentials\.k\.env: the secret holds a control character/);
    unlike($out, qr/sk-env|X-Injected/, 'the environment secret is not printed');

    $ENV{AILINK_HARDEN_KEY} = "sk-env-secret-1\x01";
    rejects('environment secret with a control character', $with_yaml,
            "credentials:\n  k: { env: AILINK_HARDEN_KEY }\n",
            qr/credentials\.k\.env: the secret holds a control character/);

    $ENV{AILINK_HARDEN_KEY} = "sk-env-secret-1\n";
    my ($ok, $out2) = nginx_t($with_yaml,
                              "credentials:\n  k: { env: AILINK_HARDEN_KEY }\n");
    ok($ok, 'a trailing newline in the environment is not part of the secret')
        or diag($out2);
}

# a credential file others can read: nginx -t passes, with a warning
{
    my ($ok, $out) = nginx_t($with_yaml,
                             file_cred(secret_file("sk-file-secret-1\n", 0644)));
    ok($ok, 'a world-readable credential file is accepted') or diag($out);
    like($out, qr/\[warn\] .*ailink_config ".*ailink\.yaml": credentials\.k\.file: ".*key" is readable by group or others/,
         'a world-readable credential file is warned about');

    ($ok, $out) = nginx_t($with_yaml,
                          file_cred(secret_file("sk-file-secret-1\n", 0640)));
    ok($ok, 'a group-readable credential file is accepted') or diag($out);
    like($out, qr/credentials\.k\.file: ".*key" is readable by group or others/,
         'a group-readable credential file is warned about');

    ($ok, $out) = nginx_t($with_yaml,
                          file_cred(secret_file("sk-file-secret-1\n", 0600)));
    ok($ok, 'a private credential file is accepted') or diag($out);
    unlike($out, qr/readable by group or others/,
           'a private credential file is not warned about');
}

# a FIFO would block nginx -t, a reload and the master in open()
{
    my $dir = tempdir(CLEANUP => 1);
    mkfifo("$dir/key", 0600) or die "mkfifo: $!";
    my $out = rejects('credential file that is a FIFO', $with_yaml,
                      file_cred("$dir/key"),
                      qr/credentials\.k\.file: ".*key" is not a regular file/);
    unlike($out, qr/timed out/, 'a FIFO does not block nginx -t');

    rejects('credential file that is a directory', $with_yaml,
            file_cred($dir),
            qr/credentials\.k\.file: ".*" is not a regular file/);
    rejects('credential file that is a device', $with_yaml,
            file_cred('/dev/zero'),
            qr/credentials\.k\.file: "\/dev\/zero" is not a regular file/);
    rejects('credential file too large', $with_yaml,
            file_cred(secret_file('k' x 70000)),
            qr/credentials\.k\.file: ".*key" is larger than 64k/);

    # the config-as-code file itself
    mkfifo("$dir/ailink.yaml", 0600) or die "mkfifo: $!";
    my ($ok, $out2) = nginx_t($with_yaml, undef, $dir);
    ok(!$ok, 'ailink_config naming a FIFO: nginx -t fails');
    like($out2, qr/ailink_config ".*ailink\.yaml" is not a regular file/,
         'ailink_config naming a FIFO: the message names it') or diag($out2);
}

# base URLs: no query, fragment, credentials, spaces, and a port in range
for my $case (["query", "https://api.example.com/v1?key=sk-url-secret",
               qr/must be a base URL without credentials, query or fragment/],
              ["query after the host", "https://api.example.com?key=sk-url-secret",
               qr/must be a base URL without credentials, query or fragment/],
              ["fragment", "https://api.example.com/v1#sk-url-secret",
               qr/must be a base URL without credentials, query or fragment/],
              ["credentials", "https://user:sk-url-secret\@api.example.com",
               qr/must be a base URL without credentials, query or fragment/],
              ["a space in the path", "https://api.example.com/v 1",
               qr/the URL holds a space or a control character/],
              ["a CR LF", "https://api.example.com/v1\\r\\nX-Injected: 1",
               qr/the URL holds a space or a control character/],
              ["a port out of range", "http://127.0.0.1:65536/v1",
               qr/"http:\/\/127\.0\.0\.1:65536\/v1" has an invalid port/],
              ["port 0", "http://127.0.0.1:0",
               qr/"http:\/\/127\.0\.0\.1:0" has an invalid port/],
              ["an empty port", "http://127.0.0.1:/v1",
               qr/has an invalid port/],
              ["a port that is not a number", "http://127.0.0.1:8o/v1",
               qr/has an invalid port/],
              ["an IPv6 port out of range", "http://[::1]:99999/v1",
               qr/has an invalid port/],
              ["an unclosed IPv6 address", "http://[::1/v1",
               qr/has an invalid host/])
{
    my ($what, $url, $message) = @$case;
    my $out = rejects("provider base_url with $what", $with_yaml,
                      "providers:\n  p: { type: openai, base_url: \"$url\" }\n",
                      qr/providers\.p(?:\.base_url)?: .*$message/);
    unlike($out, qr/sk-url-secret|X-Injected/,
           "provider base_url with $what: the URL's secret is not printed");

    rejects("token upstream with $what", $with_yaml,
            $token . "    upstream: \"$url\"\n",
            qr/tokens\[0\](?:\.upstream)?: .*$message/);
}

for my $url ("http://127.0.0.1:65535/v1", "http://[::1]:8080/v1",
             "https://api.example.com:443", "http://[::1]/v1/")
{
    my ($ok, $out) = nginx_t($with_yaml,
                             "providers:\n  p: { type: openai, base_url: \"$url\" }\n");
    ok($ok, "base_url $url is accepted") or diag($out);
}

rejects('nginx_upstream with a slash', $with_yaml,
        $token . "    upstream: https://api.example.com\n"
        . "    nginx_upstream: \"pool/x\"\n",
        qr/tokens\[0\]\.nginx_upstream: must be the name of an upstream\{\} block/);
rejects('provider query with a space', $with_yaml,
        "providers:\n  p: { type: openai, base_url: \"https://x.example\", "
        . "query: \"v=1 HTTP/1.1\\r\\nX-Injected: 1\" }\n",
        qr/providers\.p\.query: must be URL query arguments without spaces/);

# the names credentials are sent under
rejects('header name with CR LF', $with_yaml,
        "credentials:\n  k: { env: AILINK_TEST_ACTION_KEY, scheme: header, "
        . "name: \"X-Key\\r\\nX-Injected: 1\" }\n",
        qr/credentials\.k\.name: must be an HTTP header name/);
rejects('header name with a colon', $with_yaml,
        "credentials:\n  k: { env: AILINK_TEST_ACTION_KEY, scheme: header, "
        . "name: \"X-Key: x\" }\n",
        qr/credentials\.k\.name: must be an HTTP header name/);
rejects('query name with an ampersand', $with_yaml,
        "credentials:\n  k: { env: AILINK_TEST_ACTION_KEY, scheme: query, "
        . "name: \"a&b\" }\n",
        qr/credentials\.k\.name: must be a query argument name/);
rejects('BYOK header name with a space', $with_yaml,
        $token . "    upstream: https://api.example.com\n"
        . "    byok: { scheme: header, name: \"X Key\" }\n",
        qr/tokens\[0\]\.byok\.name: must be an HTTP header name/);
rejects('provider auth header name with a CR', $with_yaml,
        "providers:\n  p: { type: openai, base_url: \"https://x.example\", "
        . "auth: { scheme: header, name: \"api-key\\r\" } }\n",
        qr/providers\.p\.auth\.name: must be an HTTP header name/);


# The error log: the gateway's own lines ("ailink..." after the connection
# number) never hold a virtual token, a credential or a BYOK key, at any
# level; nginx's own lines at notice and above do not either.
our $SECRETS = qr/ailink_v1_|sk-test-action-secret-0001|sk-ant-test-0001|sk-byok-secret-0001/;
our $OUR_LINE = qr/\] \d+#\d+: (?:\*\d+ )?ailink[^\n]*$SECRETS/;
our $LOUD_LINE = qr/\[(?:notice|warn|error|crit|alert|emerg)\][^\n]*$SECRETS/;

add_block_preprocessor(\&ailink_defaults);
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: a BYOK key with a control character is refused, not injected
--- request
GET /v1/me
--- more_headers eval
"Authorization: Bearer ailink_v1_proj_test_tok_byok000000000000000000001
X-AILink-Upstream-Key: sk-byok-secret-0001\x01X-Injected: 1"
--- error_code: 400
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"error":\{"type":"invalid_request_error","code":"invalid_request","message":"X-AILink-Upstream-Key holds a control character","param":null,"request_id":"[0-9a-f]{32}"\}\}$
--- error_log
ailink: X-AILink-Upstream-Key refused: it holds a control character
--- no_error_log eval
[$::OUR_LINE, $::LOUD_LINE]



=== TEST 2: a BYOK key with a tab inside is refused
--- request
GET /v1/me
--- more_headers eval
"Authorization: Bearer ailink_v1_proj_test_tok_byok000000000000000000001
X-AILink-Upstream-Key: sk-byok\tsecret-0001"
--- error_code: 400
--- response_body_like: "code":"invalid_request","message":"X-AILink-Upstream-Key holds a control character"



=== TEST 3: a BYOK key with DEL is refused
--- request
GET /v1/me
--- more_headers eval
"Authorization: Bearer ailink_v1_proj_test_tok_byok000000000000000000001
X-AILink-Upstream-Key: sk-byok-secret-0001\x7f"
--- error_code: 400
--- response_body_like: "code":"invalid_request"



=== TEST 4: a BYOK key for an LLM passthrough token is checked the same way
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}
--- more_headers eval
"Authorization: Bearer ailink_v1_proj_test_tok_llmbyok0000000000000000001
X-AILink-Upstream-Key: sk-byok-secret-0001\x1b[0m"
--- error_code: 400
--- response_body_like: ^\{"error":\{"type":"invalid_request_error","code":"invalid_request","message":"X-AILink-Upstream-Key holds a control character"



=== TEST 5: a BYOK key with a lone CR is refused by nginx itself, in the envelope
--- raw_request eval
"GET /v1/me HTTP/1.1\r
Host: localhost\r
Connection: close\r
Authorization: Bearer ailink_v1_proj_test_tok_byok000000000000000000001\r
X-AILink-Upstream-Key: sk-byok-secret-0001\rX-Injected: 1\r
\r
"
--- error_code: 400
--- response_body_like: ^\{"error":\{"type":"invalid_request_error","code":"invalid_request",
--- error_log
client sent invalid header line



=== TEST 6: a good BYOK key still reaches the upstream
--- request
GET /v1/me
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_byok000000000000000000001
X-AILink-Upstream-Key: sk-byok-secret-0001
--- error_code: 200
--- response_body_like: "x-api-key":\s*"sk-byok-secret-0001"
--- no_error_log eval
[$::OUR_LINE, $::LOUD_LINE, qr/\[error\]/]



=== TEST 7: debug log, header credential: none of our lines holds a secret
--- log_level: debug
--- request
GET /v1/customers
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001
--- error_code: 200
--- error_log
ailink auth: token "tok_action" project "test"
ailink route: token "tok_action" to
--- no_error_log eval
[$::OUR_LINE, $::LOUD_LINE]



=== TEST 8: debug log: nginx itself writes the token and the injected credential
--- log_level: debug
--- request
GET /v1/customers
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001
--- error_code: 200
--- error_log eval
[qr/http header: "Authorization: Bearer ailink_v1_proj_test_tok_action/,
 qr/^X-Api-Key: sk-test-action-secret-0001/]



=== TEST 9: debug log: nginx itself writes the upstream URL with a query credential
--- log_level: debug
--- request
GET /v1/x
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_query00000000000000000001
--- error_code: 200
--- error_log eval
[qr/http script var: "http:\/\/127\.0\.0\.1:\d+\/v1\/x\?api_key=sk-test-action-secret-0001"/]
--- no_error_log eval
[$::OUR_LINE, $::LOUD_LINE]



=== TEST 10: debug log, query credential and an unreachable upstream: masked at error level
--- log_level: debug
--- request
GET /v1/x
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_dead0000000000000000000001
--- error_code: 502
--- error_log eval
[qr/\[error\] .*upstream: "http:\/\/127\.0\.0\.1:1\/v1\/x\?api_key=\*+"/]
--- no_error_log eval
[$::OUR_LINE, $::LOUD_LINE]



=== TEST 11: debug log, BYOK key: none of our lines holds it
--- log_level: debug
--- request
GET /v1/me
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_byok000000000000000000001
X-AILink-Upstream-Key: sk-byok-secret-0001
--- error_code: 200
--- error_log
ailink route: token "tok_byok"
--- no_error_log eval
[$::OUR_LINE, $::LOUD_LINE]



=== TEST 12: debug log, an Anthropic translation: none of our lines holds a secret
--- log_level: debug
--- request
POST /v1/chat/completions
{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}],"stream":true}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code: 200
--- error_log
ailink anthropic: stream event
--- no_error_log eval
[$::OUR_LINE, $::LOUD_LINE]



=== TEST 13: debug log, refused tokens: none of our lines holds them
--- log_level: debug
--- request eval
["GET /v1/x", "GET /v1/x", "GET /v1/x"]
--- more_headers eval
["Authorization: Bearer ailink_v1_proj_test_tok_unknown00000000000000001",
 "Authorization: Bearer ailink_v1_proj_test_tok_disabled000000000000000001",
 "Authorization: Bearer ailink_v1_proj_test_tok_expired0000000000000000001"]
--- error_code eval
[401, 401, 401]
--- no_error_log eval
[$::OUR_LINE, $::LOUD_LINE]



=== TEST 14: info log: nginx writes both tokens of a duplicate Authorization
--- log_level: info
--- raw_request eval
"GET /v1/x HTTP/1.1\r
Host: localhost\r
Connection: close\r
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001\r
Authorization: Bearer ailink_v1_proj_test_tok_byok000000000000000000001\r
\r
"
--- error_code: 400
--- error_log eval
[qr/\[info\] .*client sent duplicate header line: "Authorization: Bearer ailink_v1_proj_test_tok_byok0+1", previous value: "Authorization: Bearer ailink_v1_proj_test_tok_action0+1"/]



=== TEST 15: info log: nginx writes a BYOK key it refuses as an invalid header line
--- log_level: info
--- raw_request eval
"GET /v1/me HTTP/1.1\r
Host: localhost\r
Connection: close\r
Authorization: Bearer ailink_v1_proj_test_tok_byok000000000000000000001\r
X-AILink-Upstream-Key: sk-byok-secret-0001\rX\r
\r
"
--- error_code: 400
--- error_log eval
[qr/\[info\] .*client sent invalid header line: "X-AILink-Upstream-Key: sk-byok-secret-0001\\x0d\.\.\."/]



=== TEST 16: notice log: a duplicate Authorization leaves no token in the log
--- log_level: notice
--- raw_request eval
"GET /v1/x HTTP/1.1\r
Host: localhost\r
Connection: close\r
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001\r
Authorization: Bearer ailink_v1_proj_test_tok_byok000000000000000000001\r
\r
"
--- error_code: 400
--- no_error_log eval
[$::SECRETS]



=== TEST 17: notice log: an invalid BYOK header line leaves no key in the log
--- log_level: notice
--- raw_request eval
"GET /v1/me HTTP/1.1\r
Host: localhost\r
Connection: close\r
Authorization: Bearer ailink_v1_proj_test_tok_byok000000000000000000001\r
X-AILink-Upstream-Key: sk-byok-secret-0001\rX\r
\r
"
--- error_code: 400
--- no_error_log eval
[$::SECRETS]
