# Idempotency keys (ARCHITECTURE.md 4.3): the first completed response for
# a key and token is stored and replayed (X-AILink-Idempotent-Replay:
# true) without calling the upstream; a repeat while the first is in
# flight gets 409 idempotency_conflict; a repeat with another body 422
# idempotency_key_reused; gateway errors, upstream 5xx, oversized
# responses and streams are not stored; with approvals, a claim that
# carries a key is replayed.  Plain Test::More.

use strict;
use warnings;
use lib 't/lib';
use AILink::Test;
use AILink::Policy;
use Test::More;
use HTTP::Tiny;
use JSON::PP;
use File::Temp qw(tempdir);
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);

my $root = $ENV{TEST_NGINX_AILINK_ROOT};
my $conf_dir = tempdir(CLEANUP => 1);
my $http = HTTP::Tiny->new(timeout => 10);

my $ADMIN = 'ailink_admin_test0000000000000000000001';
my $ADMIN_HASH =
    '47268db3c8274b78d1f5c083cc730c89d297262265cf0fa675585dc465e7efdf';

open my $y, '>', "$conf_dir/policy.yaml" or die $!;
print $y policy_yaml(<<"YAML");
admin_keys: [$ADMIN_HASH]
policies:
  - name: hold
    apply_to: {tokens: [tok_action]}
    rules:
      - when: {field: request.path, op: starts_with, value: /v1/held}
        then: require_approval
      - when: {field: request.path, op: starts_with, value: /v1/denied}
        then: {deny: no}
YAML
close $y;

my $server = <<"CONF";
        location /api/v1/approvals {
            ailink_approvals_api;
        }
        location / {
            ailink_auth on;
            include $root/conf-examples/ailink-proxy.conf;
        }
CONF
my $http_conf = <<"CONF";
    ailink_config $conf_dir/policy.yaml;
    ailink_state_zone ailink_state 4m;
    ailink_idempotency_ttl 2s;
    ailink_idempotency_max_size 64k;
CONF

my $nginx = start_nginx(master => 1, workers => 2, http => $http_conf,
                        server => $server);
my $url = $nginx->{url};

sub call {
    my ($token, $method, $path, $body, %h) = @_;
    return $http->request($method, "$url$path", {
        headers => { Authorization => "Bearer $token",
                     'Content-Type' => 'application/json', %h },
        defined $body ? (content => $body) : () });
}

sub body { return eval { decode_json($_[0]->{content}) } // {} }

sub mock_seq {
    my $last = decode_json(mock_get('/_mock/requests') || '[]');
    return @$last ? $last->[-1]{seq} : 0;
}

sub upstream {
    my ($since, $path) = @_;
    my $recs = decode_json(mock_get("/_mock/requests?since=$since"));
    return grep { $_->{path} eq "/api$path" } @$recs;
}

my $key = 'order-' . time;

# 1. stored, then replayed without the upstream
my $seq = mock_seq();
my $first = call($ACTION_TOKEN, 'POST', '/v1/charges', '{"amount":5000}',
                 'Idempotency-Key' => $key);
is($first->{status}, 200, 'the first request runs');
ok(!$first->{headers}{'x-ailink-idempotent-replay'}, 'not a replay');
my $again = call($ACTION_TOKEN, 'POST', '/v1/charges', '{"amount":5000}',
                 'Idempotency-Key' => $key);
is($again->{status}, 200, 'the repeat: 200');
is($again->{headers}{'x-ailink-idempotent-replay'}, 'true',
   'X-AILink-Idempotent-Replay: true');
is($again->{content}, $first->{content}, 'the same body');
is($again->{headers}{'content-type'}, $first->{headers}{'content-type'},
   'the same content type');
is($again->{headers}{'x-mock-seq'}, $first->{headers}{'x-mock-seq'},
   'the upstream\'s own headers are replayed');
isnt($again->{headers}{'x-ailink-request-id'},
     $first->{headers}{'x-ailink-request-id'}, 'with a request id of its own');
is(scalar(upstream($seq, '/v1/charges')), 1, 'the upstream saw one request');

# 2. another body with the same key: 422, never the other response
my $res = call($ACTION_TOKEN, 'POST', '/v1/charges', '{"amount":9}',
               'Idempotency-Key' => $key);
is($res->{status}, 422, 'another body: 422');
like($res->{content}, qr/"code":"idempotency_key_reused"/,
     'idempotency_key_reused');
unlike($res->{content}, qr/echo/, 'not the stored response');
is(call($ACTION_TOKEN, 'PUT', '/v1/charges', '{"amount":5000}',
        'Idempotency-Key' => $key)->{status}, 422, 'another method: 422');
is(call($ACTION_TOKEN, 'POST', '/v1/charges/x', '{"amount":5000}',
        'Idempotency-Key' => $key)->{status}, 422, 'another path: 422');

# 3. keys are per token
$seq = mock_seq();
$res = call($OTHER_TOKEN, 'POST', '/v1/chat/completions',
            '{"model":"mock-1","messages":[{"role":"user","content":"x"}]}',
            'Idempotency-Key' => $key);
is($res->{status}, 200, 'the same key for another token runs');
ok(!$res->{headers}{'x-ailink-idempotent-replay'}, 'and is no replay');

# 4. X-AILink-Idempotency-Key works the same and is not forwarded
my $k2 = "$key-x";
$seq = mock_seq();
call($ACTION_TOKEN, 'POST', '/v1/charges', '{"a":1}',
     'X-AILink-Idempotency-Key' => $k2);
$res = call($ACTION_TOKEN, 'POST', '/v1/charges', '{"a":1}',
            'X-AILink-Idempotency-Key' => $k2);
is($res->{headers}{'x-ailink-idempotent-replay'}, 'true',
   'X-AILink-Idempotency-Key replays');
my ($rec) = upstream($seq, '/v1/charges');
ok(!exists $rec->{headers}{'x-ailink-idempotency-key'},
   'and is not forwarded upstream');

# 5. in flight: 409, then the replay once done
my $k3 = "$key-slow";
$seq = mock_seq();
my $pid = fork // die;
if ($pid == 0) {
    call($ACTION_TOKEN, 'POST', '/v1/charges', '{"slow":1}',
         'Idempotency-Key' => $k3, 'X-Mock-Delay-Ms' => 1000);
    POSIX::_exit(0);
}
sleep 0.3;
$res = call($ACTION_TOKEN, 'POST', '/v1/charges', '{"slow":1}',
            'Idempotency-Key' => $k3, 'X-Mock-Delay-Ms' => 1000);
is($res->{status}, 409, 'a repeat while the first is in flight: 409');
like($res->{content}, qr/"code":"idempotency_conflict"/,
     'idempotency_conflict');
$res = call($ACTION_TOKEN, 'POST', '/v1/charges', '{"slow":2}',
            'Idempotency-Key' => $k3);
is($res->{status}, 422, 'another body while in flight: 422');
waitpid($pid, 0);
$res = call($ACTION_TOKEN, 'POST', '/v1/charges', '{"slow":1}',
            'Idempotency-Key' => $k3, 'X-Mock-Delay-Ms' => 1000);
is($res->{headers}{'x-ailink-idempotent-replay'}, 'true',
   'after it completed: the replay');
is(scalar(upstream($seq, '/v1/charges')), 1, 'one upstream call in all');

# 6. not stored: upstream 5xx, the gateway's own errors
my $k4 = "$key-5xx";
$seq = mock_seq();
is(call($ACTION_TOKEN, 'POST', '/v1/charges', '{"f":1}',
        'Idempotency-Key' => $k4, 'X-Mock-Status' => 503)->{status}, 503,
   'an upstream 503');
$res = call($ACTION_TOKEN, 'POST', '/v1/charges', '{"f":1}',
            'Idempotency-Key' => $k4);
is($res->{status}, 200, 'the retry runs again');
ok(!$res->{headers}{'x-ailink-idempotent-replay'}, 'not a replay of a 5xx');
is(scalar(upstream($seq, '/v1/charges')), 2, 'two upstream calls');
is(call($ACTION_TOKEN, 'POST', '/v1/charges', '{"f":1}',
        'Idempotency-Key' => $k4)->{headers}{'x-ailink-idempotent-replay'},
   'true', 'then the 200 is replayed');

my $k5 = "$key-deny";
is(call($ACTION_TOKEN, 'POST', '/v1/denied', '{}',
        'Idempotency-Key' => $k5)->{status}, 403, 'a policy denial');
$res = call($ACTION_TOKEN, 'POST', '/v1/denied', '{}',
            'Idempotency-Key' => $k5);
is($res->{status}, 403, 'denied again, by the policy');
ok(!$res->{headers}{'x-ailink-idempotent-replay'},
   'the gateway\'s own errors are not stored');

# 7. too large to store: runs each time
my $k6 = "$key-large";
$seq = mock_seq();
call($ACTION_TOKEN, 'GET', '/v1/big', undef, 'Idempotency-Key' => $k6,
     'X-Mock-Scenario' => 'large', 'X-Mock-Size' => 100000);
$res = call($ACTION_TOKEN, 'GET', '/v1/big', undef, 'Idempotency-Key' => $k6,
            'X-Mock-Scenario' => 'large', 'X-Mock-Size' => 100000);
is(length $res->{content}, 100000, 'a response over the max size is sent');
ok(!$res->{headers}{'x-ailink-idempotent-replay'}, 'but not stored');
is(scalar(upstream($seq, '/v1/big')), 2, 'both ran');

# 8. streams are not stored: each runs
my $k7 = "$key-sse";
$seq = mock_seq();
for (1 .. 2) {
    $res = call($ACTION_TOKEN, 'GET', '/v1/events', undef,
                'Idempotency-Key' => $k7, 'X-Mock-Scenario' => 'sse');
}
like($res->{content}, qr/data: /, 'a stream passes');
ok(!$res->{headers}{'x-ailink-idempotent-replay'}, 'streams are not replayed');
is(scalar(upstream($seq, '/v1/events')), 2, 'both streams ran');

# 9. the TTL: after it, the key is free again
sleep 2.2;
$seq = mock_seq();
$res = call($ACTION_TOKEN, 'POST', '/v1/charges', '{"amount":5000}',
            'Idempotency-Key' => $key);
ok(!$res->{headers}{'x-ailink-idempotent-replay'},
   'after ailink_idempotency_ttl the key runs again');
is(scalar(upstream($seq, '/v1/charges')), 1, 'upstream called');

# 10. with approvals: 202 is not stored; the claim with the key is replayed
my $k8 = "$key-apr";
$res = call($ACTION_TOKEN, 'POST', '/v1/held', '{"x":1}',
            'Idempotency-Key' => $k8);
is($res->{status}, 202, 'held');
my $id = body($res)->{request_id};
$res = call($ACTION_TOKEN, 'POST', '/v1/held', '{"x":1}',
            'Idempotency-Key' => $k8);
is($res->{status}, 202, 'a repeat is held again, not a replay of the 202');
call($ADMIN, 'POST', "/api/v1/approvals/$id/decision",
     '{"decision":"approve","reason":"ok"}');
$seq = mock_seq();
$res = call($ACTION_TOKEN, 'POST', '/v1/held', '{"x":1}',
            'Idempotency-Key' => $k8, 'X-AILink-Approval-Id' => $id);
is($res->{status}, 200, 'the claim runs');
$res = call($ACTION_TOKEN, 'POST', '/v1/held', '{"x":1}',
            'Idempotency-Key' => $k8, 'X-AILink-Approval-Id' => $id);
is($res->{status}, 200, 'the claim repeated with its key');
is($res->{headers}{'x-ailink-idempotent-replay'}, 'true', 'is a replay');
is(scalar(upstream($seq, '/v1/held')), 1, 'the upstream ran it once');

open my $log, '<', "$nginx->{dir}/logs/error.log" or die $!;
my $text = do { local $/; <$log> };
unlike($text, qr/\[(alert|crit|emerg)\]/, 'no alert in the log');

done_testing();
