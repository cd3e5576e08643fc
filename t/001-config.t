# "nginx -t" rejects every bad directive value and every mistake in the
# config-as-code file with a message naming it.  Plain Test::More: each
# case writes a configuration and runs "nginx -t" on it.

use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use lib 't/lib';
use AILink::Conf;

my $hash = 'a' x 64;

$ENV{AILINK_CONF_TEST_KEY} = 'sk-config-test';
delete $ENV{AILINK_CONF_UNSET};

my $with_yaml = "ailink_config ailink.yaml;";
my $token = "tokens:\n  - id: t1\n    project: p\n    hash: $hash\n";

# a good configuration first: the cases below differ from it in one place
my ($ok, $out) = nginx_t(<<"HTTP", <<"YAML");
    $with_yaml
    server {
        listen 127.0.0.1:1;
        ailink_audit_log logs/a.jsonl buffer=8k flush=2s;
        ailink_response_buffer_size 256k;
        ailink_stream_event_max_size 16k;
        location \@e { ailink_error_page; }
        location = /healthz { ailink_health; ailink_audit_log off; }
        location = /readyz { ailink_ready; }
        location / { ailink_auth on; proxy_pass \$ailink_upstream_url; }
    }
HTTP
providers:
  groq: { type: openai, base_url: "https://api.groq.com/openai/v1" }
routes:
  - { prefix: llama-, provider: groq }
credentials:
  k1: { env: AILINK_CONF_TEST_KEY }
  k2: { env: AILINK_CONF_TEST_KEY, scheme: query, name: key }
$token    credentials: { openai: k1, groq: k1 }
  - id: t2
    project: p
    hash: sha256:${\ ('b' x 64)}
    upstream: "https://api.stripe.com"
    credential: k2
    expires_at: 2030-01-01T00:00:00+02:00
prices:
  my-model: { input: 1, output: 2 }
YAML
ok($ok, 'a valid configuration passes nginx -t') or diag($out);

# directives
rejects('ailink_auth value', 'server { location / { ailink_auth maybe; } }',
        '', qr/invalid value "maybe" in "ailink_auth" directive/);
rejects('flush without buffer', 'ailink_audit_log logs/a flush=1s;', '',
        qr/"ailink_audit_log" directive has "flush" without "buffer"/);
rejects('bad buffer size', 'ailink_audit_log logs/a buffer=12q;', '',
        qr/invalid buffer size "12q"/);
rejects('small buffer', 'ailink_audit_log logs/a buffer=100;', '',
        qr/invalid buffer size "100" \(512 bytes or more\)/);
rejects('bad flush', 'ailink_audit_log logs/a buffer=4k flush=soon;', '',
        qr/invalid flush time "soon"/);
rejects('unknown audit parameter', 'ailink_audit_log logs/a gzip;', '',
        qr/invalid parameter "gzip"/);
rejects('audit off with parameters', 'ailink_audit_log off buffer=4k;', '',
        qr/takes no parameters after "off"/);
rejects('response buffer bounds', 'ailink_response_buffer_size 10;', '',
        qr/"ailink_response_buffer_size" directive must be between 1k and 64m/);
rejects('duplicate ailink_config', "$with_yaml $with_yaml", '',
        qr/"ailink_config" directive is duplicate/);
rejects('ailink_config outside http', "server { $with_yaml }", '',
        qr/"ailink_config" directive is not allowed here/);
rejects('two content handlers',
        'server { location / { ailink_health; ailink_ready; } }', '',
        qr/already has a content handler/);

# the config-as-code file
rejects('missing file', 'ailink_config nope.yaml;', '',
        qr/ailink_config: cannot open ".*nope.yaml"/);
rejects('YAML syntax', $with_yaml, "tokens: [\n  - a: b\n",
        qr/ailink_config ".*ailink.yaml": .* at line \d+/);
rejects('top level not a mapping', $with_yaml, "- a\n- b\n",
        qr/the top level must be a mapping/);
rejects('unknown top-level key', $with_yaml, "tokenz: []\n",
        qr/top level: unknown key "tokenz"/);
rejects('token without id', $with_yaml,
        "tokens:\n  - project: p\n    hash: $hash\n",
        qr/tokens\[0\]: "id" is required/);
rejects('unknown token key', $with_yaml, $token . "    secret: x\n",
        qr/tokens\[0\]: unknown key "secret"/);
rejects('bad hash', $with_yaml,
        "tokens:\n  - id: t\n    project: p\n    hash: abc\n",
        qr/tokens\[0\]\.hash: must be 64 hex digits/);
rejects('duplicate hash', $with_yaml,
        $token . "  - id: t2\n    project: p\n    hash: $hash\n",
        qr/tokens: "t1" and "t2" have the same hash|"t2" and "t1" have the same hash/);
rejects('duplicate id', $with_yaml,
        $token . "  - id: t1\n    project: p\n    hash: ${\ ('c' x 64)}\n",
        qr/tokens: id "t1" is used twice/);
rejects('bad expiry', $with_yaml, $token . "    expires_at: tomorrow\n",
        qr/tokens\[0\]\.expires_at: "tomorrow" is not an RFC 3339 time/);
rejects('enabled not a boolean', $with_yaml, $token . "    enabled: yes please\n",
        qr/tokens\[0\]\.enabled: must be true or false/);
rejects('bad upstream URL', $with_yaml, $token . "    upstream: ftp://x\n",
        qr/tokens\[0\]: "ftp:\/\/x" is not an http:\/\/ or https:\/\/ URL/);
rejects('credentials in the URL', $with_yaml,
        $token . "    upstream: https://u:p\@api.example.com\n",
        qr/must be a base URL without credentials, query or fragment/);
rejects('unknown credential', $with_yaml, $token . "    credential: nope\n",
        qr/tokens\[0\]\.credential: unknown credential "nope"/);
rejects('credential map on an upstream token', $with_yaml,
        "credentials:\n  k: { env: AILINK_CONF_TEST_KEY }\n" . $token
        . "    upstream: https://x.example\n    credentials: { openai: k }\n",
        qr/tokens\[0\]\.credentials: a mapping of provider to credential/);
rejects('credential for an unknown provider', $with_yaml,
        "credentials:\n  k: { env: AILINK_CONF_TEST_KEY }\n" . $token
        . "    credentials: { cohere: k }\n",
        qr/tokens\[0\]\.credentials\.cohere: unknown provider/);
rejects('secret neither env nor file', $with_yaml,
        "credentials:\n  k: { scheme: bearer }\n",
        qr/credentials\.k: exactly one of "env" or "file" is required/);
rejects('inline secret', $with_yaml, "credentials:\n  k: { value: sk-x }\n",
        qr/credentials\.k: unknown key "value"/);
rejects('unset environment variable', $with_yaml,
        "credentials:\n  k: { env: AILINK_CONF_UNSET }\n",
        qr/credentials\.k\.env: environment variable "AILINK_CONF_UNSET" is not set/);
rejects('missing secret file', $with_yaml,
        "credentials:\n  k: { file: /nonexistent/key }\n",
        qr/credentials\.k\.file: cannot open "\/nonexistent\/key"/);
rejects('bad scheme', $with_yaml,
        "credentials:\n  k: { env: AILINK_CONF_TEST_KEY, scheme: digest }\n",
        qr/credentials\.k\.scheme: "digest" is not one of bearer, header, basic, query/);
rejects('header scheme without a name', $with_yaml,
        "credentials:\n  k: { env: AILINK_CONF_TEST_KEY, scheme: header }\n",
        qr/credentials\.k: scheme "header" needs "name"/);
rejects('route to an unknown provider', $with_yaml,
        "routes:\n  - { prefix: x-, provider: nope }\n",
        qr/routes\[0\]: unknown provider "nope"/);
rejects('provider type', $with_yaml,
        "providers:\n  c: { type: cohere, base_url: https://x.example }\n",
        qr/providers\.c\.type: "cohere" is not one of openai, anthropic, gemini/);
rejects('provider without base_url', $with_yaml,
        "providers:\n  c: { type: openai }\n",
        qr/providers\.c: "base_url" is required/);
rejects('price not a number', $with_yaml,
        "prices:\n  gpt-4o: { input: cheap }\n",
        qr/prices\.gpt-4o\.input must be a number/);
rejects('unknown price key', $with_yaml,
        "prices:\n  gpt-4o: { per_call: 1 }\n",
        qr/prices\.gpt-4o: unknown key "per_call"/);
rejects('unset ${VAR} in a value', $with_yaml,
        "providers:\n  openai: { base_url: \"\${AILINK_CONF_UNSET}\" }\n",
        qr/environment variable "AILINK_CONF_UNSET" is not set at line 2/);
rejects('YAML aliases', $with_yaml,
        "providers:\n  a: &x { base_url: https://x.example }\n  b: *x\n",
        qr/aliases are not supported/);

# a file secret is read at nginx -t time too
{
    my $dir = tempdir(CLEANUP => 1);
    open my $f, '>', "$dir/key" or die $!;
    print $f "sk-from-file\n";
    close $f;
    my ($ok, $out) = nginx_t($with_yaml,
                             "credentials:\n  k: { file: $dir/key }\n");
    ok($ok, 'a secret file is accepted') or diag($out);
    unlike($out, qr/sk-from-file/, 'the secret is never printed');
}

done_testing();
