# Config as code through the admin API: GET /config/export (YAML, no
# secrets), POST /config/import (validated whole, all or nothing, upsert by
# name, the file's objects read-only), the export -> import round trip,
# and the export accepted by ailink_config (without store-only objects).

use strict;
use warnings;
use lib 't/lib';
use AILink::Test;
use AILink::Admin;
use Test::More;
use HTTP::Tiny;
use File::Temp qw(tempdir);

my $mock = $ENV{TEST_NGINX_MOCK_PORT};
my $gw = admin_gateway();

my $r = admin($gw, 'POST', '/credentials', { name => 'vault1', secret => 'sk-SECRET-export-1' });
is $r->{status}, 201, 'a vault credential';
$r = admin($gw, 'POST', '/tokens', { name => 'exported', upstream_url => "http://127.0.0.1:$mock/api",
                                     credential_id => 'vault1' });
is $r->{status}, 201, 'a token';
my $tok = $r->{json}{token};
$r = admin($gw, 'POST', '/services', { name => 'svc', base_url => "http://127.0.0.1:$mock/s",
                                       credential_id => 'action' });
is $r->{status}, 201, 'a service';

$r = admin($gw, 'GET', '/config/export');
is $r->{status}, 200, 'export';
like $r->{headers}{'content-type'}, qr{application/yaml}, '... YAML';
my $yaml = $r->{content};
like $yaml, qr/"tokens":/, '... with tokens';
like $yaml, qr/"exported"/, '... the API token';
like $yaml, qr/"tok_action"/, '... and the file\'s';
like $yaml, qr/"svc"/, '... the service';
like $yaml, qr/"vault1":\n\s+"source": "vault"/, '... credentials as references';
unlike $yaml, qr/SECRET|sk-test-action-secret|sealed/, '... no secret';
unlike $yaml, qr/\Q$tok\E/, '... never a token';

# round trip: importing the export changes nothing
$r = admin($gw, 'POST', '/config/import', $yaml, type => 'application/yaml');
is $r->{status}, 200, 'import the export';
diag $r->{content} if $r->{status} != 200;
is $r->{json}{tokens}{created}, 0, '... nothing created';
is $r->{json}{tokens}{updated}, 0, '... nothing updated';
my $again = admin($gw, 'GET', '/config/export')->{content};
is $again, $yaml, 'export -> import -> export is the identity';

# upsert by name
(my $renamed = $yaml) =~ s{"upstream": "http://127.0.0.1:$mock/api"}{"upstream": "http://127.0.0.1:$mock/api2"};
$r = admin($gw, 'POST', '/config/import', $renamed, type => 'application/yaml');
is $r->{status}, 200, 'import a change';
is $r->{json}{tokens}{updated}, 1, '... one token updated';
my $c = call($gw, $tok, 'GET', '/v1/x');
is $c->{json}{echo}{path}, '/api2/v1/x', '... in effect at once';

# dry run
$r = admin($gw, 'POST', '/config/import?dry_run=true', $yaml, type => 'application/yaml');
is $r->{status}, 200, 'dry run';
ok $r->{json}{dry_run}, '... says so';
$c = call($gw, $tok, 'GET', '/v1/x');
is $c->{json}{echo}{path}, '/api2/v1/x', '... and changes nothing';

# all or nothing: one bad object, nothing applied
my $bad = <<"YAML";
tokens:
  - id: tok_new1
    name: new-one
    project: p
    hash: "@{[ '1' x 64 ]}"
    upstream: http://127.0.0.1:$mock/new
  - id: tok_new2
    name: new-two
    project: p
    hash: "@{[ '2' x 64 ]}"
    credential: nope
services:
  - name: svc
    base_url: http://127.0.0.1:$mock/changed
YAML
$r = admin($gw, 'POST', '/config/import', $bad, type => 'application/yaml');
is $r->{status}, 400, 'an import with one bad token: 400';
like $r->{json}{error}{message}, qr/unknown credential "nope"/, '... naming it';
$r = admin($gw, 'GET', '/tokens');
ok !(grep { $_->{name} eq 'new-one' } @{ $r->{json}{data} }), '... nothing applied';
is admin($gw, 'GET', '/services/svc')->{json}{base_url}, "http://127.0.0.1:$mock/s",
   '... not even the valid service change';

(my $ok = $bad) =~ s/credential: nope/credential: action/;
$r = admin($gw, 'POST', '/config/import', $ok, type => 'application/yaml');
is $r->{status}, 200, 'the corrected import applies';
is $r->{json}{tokens}{created}, 2, '... two tokens created';
is $r->{json}{services}{updated}, 1, '... one service updated';

# errors
$r = admin($gw, 'POST', '/config/import', "tokens: [unclosed", type => 'application/yaml');
is $r->{status}, 400, 'YAML that does not parse: 400';
$r = admin($gw, 'POST', '/config/import', "providers: {}\n", type => 'application/yaml');
is $r->{status}, 400, 'providers cannot be imported: 400';
(my $yamlchg = $yaml) =~ s/"action test token"/"hijacked"/;
$r = admin($gw, 'POST', '/config/import', $yamlchg, type => 'application/yaml');
is $r->{status}, 409, 'changing a token of the file: 409';
$r = admin($gw, 'POST', '/config/import', "tokens:\n  - id: tok_shadow\n    name: shadow\n    project: p\n    hash: \"860d4db8f91eef05a37663c5902c6716238c78dbcd7eb463abaad99a55d1c58a\"\n", type => 'application/yaml');
is $r->{status}, 400, 'a token with the hash of a token of the file: 400';
like $r->{json}{error}{message}, qr/hash of token "tok_action"/, '... naming it';
$r = admin($gw, 'POST', '/config/import', "credentials:\n  x: {secret: abc}\n", type => 'application/yaml');
is $r->{status}, 400, 'a secret in an import: 400';
$r = admin($gw, 'POST', '/config/import', "tokens:\n  - id: t\n    name: \${AILINK_TEST_ACTION_KEY}\n    project: p\n    hash: \"@{[ '3' x 64 ]}\"\n", type => 'application/yaml');
is $r->{status}, 200, 'an import with ${VAR}';
unlike admin($gw, 'GET', '/config/export')->{content}, qr/sk-test-action-secret/,
       '... is never expanded from the gateway\'s environment';

# the export (file tokens and services aside) is accepted by ailink_config
my $dir = tempdir(CLEANUP => 1);
my $file_yaml = admin($gw, 'GET', '/config/export')->{content};
$file_yaml =~ s/^"services":.*//ms;
$file_yaml =~ s/^"credentials":\n(?:  .*\n)*//m;
$file_yaml =~ s/"credential": "vault1"/"credential": "action"/;
open my $f, '>', "$dir/exported.yaml" or die;
print $f "credentials:\n  action: { env: AILINK_TEST_ACTION_KEY }\n  openai: { env: AILINK_TEST_OPENAI_KEY }\n"
       . "  anthropic: { env: AILINK_TEST_OPENAI_KEY }\n  gemini: { env: AILINK_TEST_OPENAI_KEY }\n"
       . "  query: { env: AILINK_TEST_OPENAI_KEY }\n  basic: { env: AILINK_TEST_BASIC_KEY, scheme: basic }\n"
       . "providers:\n  gemini-safe: {type: gemini, base_url: http://127.0.0.1:1/v1beta}\n"
       . "  anthropic-down: {type: anthropic, base_url: http://127.0.0.1:1/v1}\n"
       . "  azure: {type: openai, base_url: http://127.0.0.1:1/v1}\n"
       . $file_yaml;
close $f;
my $bin = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
my $root = $ENV{TEST_NGINX_AILINK_ROOT};
open my $nc, '>', "$dir/nginx.conf" or die;
print $nc "load_module $root/build/release/ngx_ailink_module.so;\nevents {}\nhttp { ailink_config $dir/exported.yaml; }\n";
close $nc;
my $out = `$bin -t -p $dir/ -c $dir/nginx.conf 2>&1`;
like $out, qr/test is successful/, 'the export is accepted by ailink_config (nginx -t)'
    or diag $out;

stop_gateway($gw);

# a file token's guardrails, circuit breaker and cache TTL are exported
# (they were left out) and the export imports back unchanged
my $fdir = tempdir(CLEANUP => 1);
open my $fy, '>', "$fdir/ailink.yaml" or die;
print $fy <<"YAML";
credentials:
  action: { env: AILINK_TEST_ACTION_KEY }
guardrails:
  - name: project_codes
    pattern: 'PRJ-[0-9]{4}'
    action: redact
tokens:
  - id: tok_guarded
    name: guarded
    project: p
    hash: "@{[ '4' x 64 ]}"
    upstream: http://127.0.0.1:$mock/api
    credential: action
    guardrails: [project_codes, pii_redaction]
    circuit_breaker: { enabled: true, failure_threshold: 3, recovery_cooldown_secs: 20 }
    cache_ttl_secs: 60
YAML
close $fy;
$gw = admin_gateway(config => "$fdir/ailink.yaml");
$yaml = admin($gw, 'GET', '/config/export')->{content};
like $yaml, qr/"guardrails":\n\s+- "pii_redaction"\n\s+- "project_codes"/,
     'a file token\'s guardrails are exported' or diag $yaml;
like $yaml, qr/"circuit_breaker":\n\s+"enabled": true\n\s+"failure_threshold": 3\n\s+"recovery_cooldown_secs": 20\n/,
     '... its circuit breaker, the fields the file sets';
unlike $yaml, qr/half_open_max_requests/, '... and none it leaves out';
like $yaml, qr/"cache_ttl_secs": 60/, '... its cache TTL';
$r = admin($gw, 'POST', '/config/import', $yaml, type => 'application/yaml');
is $r->{status}, 200, 'the export imports back';
is $r->{json}{tokens}{unchanged}, 1, '... the file token unchanged';
stop_gateway($gw);

done_testing();
