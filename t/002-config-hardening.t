# Configuration hardening: what a credential, a base URL or a client's own
# key may hold, and what reaches the error log.
#
# The first part runs "nginx -t" on generated configurations (credential
# files with odd contents, modes and types are made here, in each case's
# own folder); the blocks after __DATA__ run the gateway.

use strict;
use warnings;
use lib 't/lib';
use AILink::Conf;
use File::Temp qw(tempdir);
use POSIX qw(mkfifo);
use Test::More;

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



done_testing();
