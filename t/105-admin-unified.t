# The admin API's whole surface under one location (issue 13): one set of
# admin keys (the "ailink_admin_key" directive and the config file's
# "admin_keys" both work on every admin endpoint, the standalone ones
# too), the approvals, cache and breaker resources mounted in the admin
# API's resource table (GET /approvals, /approvals/<id>, POST
# /approvals/<id>/decision, GET /cache/stats, POST /cache/flush, GET
# /health/upstreams, GET|PATCH /tokens/<id>/circuit-breaker, for tokens of
# the file and of the API), and "circuit_breaker" on POST|PATCH /tokens,
# stored and exported.  Plain Test::More: the flow needs ids.

use strict;
use warnings;
use lib 't/lib';
use AILink::Test;
use AILink::Policy;
use Test::More;
use HTTP::Tiny;
use JSON::PP;
use Digest::SHA qw(sha256_hex);
use File::Temp qw(tempdir);

my $root = $ENV{TEST_NGINX_AILINK_ROOT};
my $mock = $ENV{TEST_NGINX_MOCK_PORT};
my $http = HTTP::Tiny->new(timeout => 10);
my $json = JSON::PP->new->canonical;

# one key declared by the directive, one by the file
my $KEY_D = 'ailink_admin_unified000000000000000000000001';
my $KEY_Y = 'ailink_admin_unified000000000000000000000002';
my $HASH_D = sha256_hex($KEY_D);
my $HASH_Y = sha256_hex($KEY_Y);

my $conf_dir = tempdir(CLEANUP => 1);
my $keydir = tempdir(CLEANUP => 1);
my $data = tempdir(CLEANUP => 1);

open my $k, '>', "$keydir/master.key" or die $!;
print $k ('d' x 64) . "\n";
close $k;

open my $y, '>', "$conf_dir/policy.yaml" or die $!;
print $y policy_yaml(<<"YAML");
admin_keys:
  - {name: carol, hash: $HASH_Y}
policies:
  - name: charges-need-approval
    apply_to: {tokens: [tok_action]}
    rules:
      - when: {field: request.path, op: starts_with, value: /v1/charges}
        then: {require_approval: {reason: "charges need a human"}}
YAML
close $y;

my $http_conf = <<"CONF";
    ailink_config $conf_dir/policy.yaml;
    ailink_state_zone ailink_state 1m;
    ailink_cache_zone ailink_cache 1m;
    ailink_breaker_zone ailink_breaker 1m;
    ailink_store_dir $data;
    ailink_admin_key $HASH_D;
    ailink_vault_master_key file:$keydir/master.key;
    ailink_audit_log logs/audit.jsonl;
    ailink_admin_audit_source logs/audit.jsonl;
CONF

my $server = <<"CONF";
        location /api/v1/ {
            ailink_admin_api;
        }
        location /legacy/api/v1/approvals {
            ailink_approvals_api;
        }
        location /legacy/api/v1/cache/ {
            ailink_cache_api;
        }
        location ~ ^/legacy/api/v1/(health/upstreams|tokens/[^/]+/circuit-breaker)\$ {
            ailink_breaker_api;
        }
        location / {
            ailink_auth on;
            ailink_cache on;
            include $root/conf-examples/ailink-proxy.conf;
        }
CONF

my $gw = start_nginx(master => 1, workers => 2, http => $http_conf,
                     server => $server);

sub req {
    my ($key, $method, $path, $body) = @_;
    my $res = $http->request($method, "$gw->{url}$path", {
        headers => { Authorization => "Bearer $key",
                     'Content-Type' => 'application/json' },
        defined $body ? (content => ref $body ? $json->encode($body) : $body)
                      : () });
    $res->{json} = eval { decode_json($res->{content}) };
    return $res;
}

sub admin { my ($m, $p, $b, $key) = @_; req($key // $KEY_D, $m, "/api/v1$p", $b) }

# --- one key set, every endpoint

for my $key ([$KEY_D, 'the directive\'s key'], [$KEY_Y, 'the file\'s key']) {
    my ($kv, $what) = @$key;
    is admin('GET', '/tokens', undef, $kv)->{status}, 200,
       "$what: the admin API's tokens";
    is admin('GET', '/approvals', undef, $kv)->{status}, 200,
       "$what: GET /approvals";
    is admin('GET', '/cache/stats', undef, $kv)->{status}, 200,
       "$what: GET /cache/stats";
    is admin('GET', '/health/upstreams', undef, $kv)->{status}, 200,
       "$what: GET /health/upstreams";
    is req($kv, 'GET', '/legacy/api/v1/approvals')->{status}, 200,
       "$what: the standalone approvals API";
    is req($kv, 'GET', '/legacy/api/v1/cache/stats')->{status}, 200,
       "$what: the standalone cache API";
    is req($kv, 'GET', '/legacy/api/v1/health/upstreams')->{status}, 200,
       "$what: the standalone breaker API";
}

for my $p ('/tokens', '/approvals', '/cache/stats', '/health/upstreams',
           '/tokens/tok_llm/circuit-breaker')
{
    my $r = admin('GET', $p, undef, 'ailink_admin_unified000000000000000000000009');
    is $r->{status}, 401, "an unknown admin key: 401 on $p";
    is $r->{json}{error}{code}, 'invalid_token', '... invalid_token';
    is admin('GET', $p, undef, $ACTION_TOKEN)->{status}, 403,
       "a data-plane token: 403 on $p";
}
is req($ACTION_TOKEN, 'GET', '/legacy/api/v1/approvals')->{status}, 401,
   'the standalone API refuses a data-plane token';

# --- approvals through the admin API

my $r = req($ACTION_TOKEN, 'POST', '/v1/charges', '{"amount":5}');
is $r->{status}, 202, 'a held request: 202';
my $apr = $r->{json}{request_id};
like $apr, qr/^apr_[0-9a-f]{24}$/, '... an approval id';

$r = admin('GET', '/approvals?status=pending');
is $r->{status}, 200, 'GET /approvals?status=pending';
ok((grep { $_->{id} eq $apr } @{ $r->{json}{data} }), '... lists it');

$r = admin('GET', "/approvals/$apr");
is $r->{status}, 200, 'GET /approvals/<id>';
is $r->{json}{id}, $apr, '... that approval';
is $r->{json}{status}, 'pending', '... pending';

is admin('GET', '/approvals/apr_000000000000000000000000')->{status}, 404,
   'an unknown approval: 404';
is admin('PUT', "/approvals/$apr")->{status}, 405,
   'PUT /approvals/<id>: 405';

$r = admin('POST', "/approvals/$apr/decision", '{"decision":"maybe"}');
is $r->{status}, 400, 'a bad decision: 400';

$r = admin('POST', "/approvals/$apr/decision",
           { decision => 'approve', reason => 'fine' }, $KEY_Y);
is $r->{status}, 200, 'POST /approvals/<id>/decision with the file\'s key';
is $r->{json}{status}, 'approved', '... approved';
is $r->{json}{decided_by}, 'carol', '... by the key\'s name';

$r = admin('POST', "/approvals/$apr/decision", { decision => 'reject' });
is $r->{status}, 409, 'decided twice: 409';

$r = req($ACTION_TOKEN, 'POST', '/v1/charges', '{"amount":6}');
my $apr2 = $r->{json}{request_id};
$r = admin('POST', "/approvals/$apr2/decision", { decision => 'reject' });
is $r->{json}{decided_by}, 'admin:' . substr($HASH_D, 0, 8),
   'the directive\'s key decides as admin:<hash prefix>';

# --- cache

$r = admin('GET', '/cache/stats');
is $r->{json}{zone}, 'ailink_cache', 'GET /cache/stats: the zone';
my $flushes = $r->{json}{flushes};
$r = admin('POST', '/cache/flush');
is $r->{status}, 200, 'POST /cache/flush';
is $r->{json}{flushes}, $flushes + 1, '... counted';
is admin('POST', '/cache/stats')->{status}, 405, 'POST /cache/stats: 405';
is admin('GET', '/cache/flush')->{status}, 405, 'GET /cache/flush: 405';
is admin('GET', '/cache/other')->{status}, 404, 'GET /cache/other: 404';
is admin('GET', '/cache')->{status}, 404, 'GET /cache: 404';

# --- breakers: the file's token

$r = admin('GET', '/health/upstreams');
is $r->{status}, 200, 'GET /health/upstreams';
ok((grep { $_->{name} eq 'openai' && $_->{state} eq 'closed' }
    @{ $r->{json}{upstreams} }), '... the provider, closed');
is admin('GET', '/health/other')->{status}, 404, 'GET /health/other: 404';

$r = admin('GET', '/tokens/tok_llm/circuit-breaker');
is $r->{status}, 200, 'GET /tokens/<file token>/circuit-breaker';
is $r->{json}{token_id}, 'tok_llm', '... that token';
$r = admin('PATCH', '/tokens/tok_llm/circuit-breaker',
           { enabled => JSON::PP::true, failure_threshold => 7 });
is $r->{status}, 200, 'PATCH /tokens/<file token>/circuit-breaker';
is $r->{json}{failure_threshold}, 7, '... changed';
is admin('GET', '/tokens/tok_llm/circuit-breaker')->{json}{failure_threshold},
   7, '... and kept';
is admin('GET', '/tokens/tok_nope/circuit-breaker')->{status}, 404,
   'an unknown token: 404';
is admin('GET', '/tokens/tok_llm/other')->{status}, 404,
   'another sub-resource: 404';
is admin('PATCH', '/tokens/tok_llm/circuit-breaker',
         { failure_threshold => 0 })->{status}, 400,
   'failure_threshold 0: 400';

# --- tokens of the API, with circuit_breaker

$r = admin('POST', '/tokens', { name => 'cb-token', project => 'test',
                                credentials => { openai => 'openai' },
                                circuit_breaker => {
                                    enabled => JSON::PP::true,
                                    failure_threshold => 5,
                                    recovery_cooldown_secs => 60 } });
is $r->{status}, 201, 'POST /tokens with circuit_breaker: 201';
my $id = $r->{json}{id};
is $r->{json}{circuit_breaker}{failure_threshold}, 5, '... shown';

$r = admin('GET', "/tokens/$id/circuit-breaker");
is $r->{status}, 200, 'GET /tokens/<API token>/circuit-breaker';
is $r->{json}{enabled}, JSON::PP::true, '... enabled, from the token';
is $r->{json}{failure_threshold}, 5, '... failure_threshold 5';
is $r->{json}{recovery_cooldown_secs}, 60, '... recovery_cooldown_secs 60';

$r = admin('PATCH', "/tokens/$id/circuit-breaker", { failure_threshold => 3 });
is $r->{status}, 200, 'PATCH /tokens/<API token>/circuit-breaker';
$r = admin('GET', "/tokens/$id/circuit-breaker");
is $r->{json}{failure_threshold}, 3, '... failure_threshold 3';
is $r->{json}{recovery_cooldown_secs}, 60, '... the cooldown kept';

is admin('GET', "/tokens/$id")->{json}{circuit_breaker}{recovery_cooldown_secs},
   60, 'GET /tokens/<id> shows circuit_breaker';

$r = admin('POST', '/tokens', { name => 'cb2', credentials => { openai => 'openai' } });
my $id2 = $r->{json}{id};
is admin('GET', "/tokens/$id2/circuit-breaker")->{json}{enabled},
   JSON::PP::false, 'a token without circuit_breaker: disabled';
$r = admin('PATCH', "/tokens/$id2", { circuit_breaker => {
    enabled => JSON::PP::true, half_open_max_requests => 2 } });
is $r->{status}, 200, 'PATCH /tokens/<id> with circuit_breaker';
$r = admin('GET', "/tokens/$id2/circuit-breaker");
is $r->{json}{enabled}, JSON::PP::true, '... enabled';
is $r->{json}{half_open_max_requests}, 2, '... half_open_max_requests 2';

for my $bad ({ failure_threshold => 0 }, { enabled => 'yes' },
             { colour => 'red' })
{
    $r = admin('POST', '/tokens', { name => 'bad-cb',
                                    circuit_breaker => $bad });
    is $r->{status}, 400, 'a bad circuit_breaker: 400 (' . $json->encode($bad) . ')';
    like $r->{json}{error}{message}, qr/circuit_breaker/, '... saying so';
}
is admin('POST', '/tokens', { name => 'bad-cb', circuit_breaker => 5 })
   ->{status}, 400, 'circuit_breaker not an object: 400';
ok !(grep { $_->{name} eq 'bad-cb' } @{ admin('GET', '/tokens')->{json}{data} }),
   '... and nothing was created';

$r = admin('GET', '/config/export');
is $r->{status}, 200, 'GET /config/export';
like $r->{content}, qr/"circuit_breaker":\s*\n\s+"enabled": true\s*\n\s+"failure_threshold": 5\s*\n\s+"recovery_cooldown_secs": 60/,
     '... exports the token\'s circuit_breaker';

# an API token's circuit_breaker reaches its requests on the data plane
my $tok2 = admin('POST', '/tokens', { name => 'cb-live', project => 'test',
                                      credentials => { openai => 'openai' },
                                      circuit_breaker => {
                                          enabled => JSON::PP::true,
                                          failure_threshold => 1,
                                          recovery_cooldown_secs => 60 } })
           ->{json};
my $fail = $json->encode({ model => 'mock-x', messages => [
    { role => 'user', content => 'fail' } ] });
$r = $http->request('POST', "$gw->{url}/v1/chat/completions", {
    headers => { Authorization => "Bearer $tok2->{token}",
                 'Content-Type' => 'application/json',
                 'X-Mock-Status' => '503' },
    content => $fail });
isnt $r->{status}, 200, 'an API token\'s request fails upstream';
$r = admin('GET', "/tokens/$tok2->{id}/circuit-breaker");
is $r->{json}{state}, 'open', '... and its breaker (threshold 1) opened';

done_testing;
