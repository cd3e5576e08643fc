# Human approvals and idempotency keys shared by two gateways through one
# Redis (ailink_state_zone ... backend=redis): an approval created on node A is
# listed, read, decided and claimed on node B; a request held on node A
# (X-AILink-Approval-Wait) is released by a decision taken on node B;
# two claims racing on the two nodes: exactly one runs; the records are
# Redis keys with a TTL; Redis away: a new approval is refused (503, fail
# closed) and a held request is not let through; Redis back: approvals
# work again without a reload, and after a reload too.  An idempotency key
# used on A is replayed on B, in flight on A it is a 409 on B, with
# another body a 422, and a 5xx on A releases it for a retry on B.  The
# response cache (ailink_cache_zone ... backend=redis): a miss on A is a
# hit on B, streams too; a flush on B empties it for A; Redis away: BYPASS,
# answered by the upstream.  Circuit breakers (ailink_breaker_zone ...
# backend=redis): opened by failures on A, open on B within half a
# second without B calling the upstream; closed by a probe on B, closed
# on A.  Plain Test::More; redis-server on 3956.

use strict;
use warnings;
use lib 't/lib';
use AILink::Test;
use AILink::Policy;
use AILink::Redis;
use Test::More;
use HTTP::Tiny;
use JSON::PP;
use File::Temp qw(tempdir);
use POSIX ();
use Time::HiRes qw(time sleep);

my $root = $ENV{TEST_NGINX_AILINK_ROOT};
my $conf_dir = tempdir(CLEANUP => 1);
my $http = HTTP::Tiny->new(timeout => 30);
my $json = JSON::PP->new->canonical;
my $redis = AILink::Redis->start(3956);

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
      - when: {field: request.path, op: starts_with, value: /v1/charges}
        then: {require_approval: {reason: "a human looks first"}}
YAML
close $y;

my $server = <<"CONF";
        location /api/v1/approvals {
            ailink_approvals_api;
        }
        location /api/v1/cache/ {
            ailink_cache_api;
        }
        location = /api/v1/health/upstreams {
            ailink_breaker_api;
        }
        location /probe/ {
            rewrite ^/probe(/.*)\$ \$1 break;
            ailink_auth on;
            ailink_breaker on;
            ailink_breaker_threshold 2;
            ailink_breaker_cooldown 2s;
            include $root/conf-examples/ailink-proxy.conf;
        }
        location / {
            ailink_auth on;
            ailink_cache on;
            include $root/conf-examples/ailink-proxy.conf;
        }
CONF
my $http_conf = <<"CONF";
    ailink_config $conf_dir/policy.yaml;
    ailink_redis 127.0.0.1:3956 timeout=500ms;
    ailink_state_zone ailink_state 1m backend=redis;
    ailink_approval_max_wait 60s;
    ailink_idempotency_ttl 60s;
    ailink_cache_zone ailink_cache 1m backend=redis;
    ailink_breaker_zone ailink_breaker 1m backend=redis;
CONF

my ($A, $B) = map { start_nginx(master => 1, workers => 2, http => $http_conf,
                                server => $server) } 1 .. 2;

sub call {
    my ($node, $token, $method, $path, $body, %h) = @_;
    return $http->request($method, "$node->{url}$path", {
        headers => { Authorization => "Bearer $token",
                     'Content-Type' => 'application/json', %h },
        defined $body ? (content => $body) : () });
}

sub body { return eval { decode_json($_[0]->{content}) } // {} }

sub decide {
    my ($node, $id, $decision, $reason) = @_;
    return call($node, $ADMIN, 'POST', "/api/v1/approvals/$id/decision",
                $json->encode({ decision => $decision, reason => $reason }));
}

sub pending {
    my ($node) = @_;
    my $res = call($node, $ADMIN, 'GET', '/api/v1/approvals?status=pending');
    return @{ body($res)->{data} // [] };
}

sub pending_with {
    my ($node, $preview) = @_;
    for (1 .. 200) {
        my ($a) = grep { $_->{body_preview} eq $preview } pending($node);
        return $a->{id} if $a;
        sleep 0.01;
    }
    return undef;
}

sub mock_seq {
    my $last = decode_json(mock_get('/_mock/requests') || '[]');
    return @$last ? $last->[-1]{seq} : 0;
}

sub upstream_count {
    my ($since) = @_;
    my $recs = decode_json(mock_get("/_mock/requests?since=$since"));
    return scalar grep { $_->{path} eq '/api/v1/charges' } @$recs;
}

# the workers' connections to Redis
sleep 0.3;

# 1. created on A (async mode: 202), seen, decided and claimed on B
my $seq = mock_seq();
my $r = call($A, $ACTION_TOKEN, 'POST', '/v1/charges', '{"n":1}');
is($r->{status}, 202, 'A: the request waits for an approval (202)');
my $id = body($r)->{error}{approval_id} // body($r)->{request_id}
         // (($r->{content} =~ /"(apr_[0-9a-f]{24})"/)[0]);
like($id, qr/^apr_[0-9a-f]{24}$/, "the approval's id: $id");

my ($listed) = grep { $_->{id} eq $id } pending($B);
ok($listed, 'B lists the approval A created');
is($listed->{body_preview}, '{"n":1}', 'with its body preview');
is(body(call($B, $ADMIN, 'GET', "/api/v1/approvals/$id"))->{status},
   'pending', 'B reads it: pending');
is(body(call($B, $ACTION_TOKEN, 'GET', "/v1/approvals/$id"))->{status},
   'pending', "B shows the token its approval");

my $ttl = $redis->cli('TTL', "ailink:apr:$id");
ok($ttl > 0, "a Redis key with a TTL ($ttl s)");

$r = decide($B, $id, 'approve', 'ok from B');
is($r->{status}, 200, 'B decides it');
is(body($r)->{status}, 'approved', 'approved');
is(decide($A, $id, 'reject', 'too late')->{status}, 409,
   'A cannot decide it again: 409');
is(body(call($A, $ACTION_TOKEN, 'GET', "/v1/approvals/$id"))->{status},
   'approved', 'A sees the decision B took');

$r = call($B, $ACTION_TOKEN, 'POST', '/v1/charges', '{"n":1}',
          'X-AILink-Approval-Id' => $id);
is($r->{status}, 200, 'B runs the approved request');
is(upstream_count($seq), 1, 'forwarded once');
$r = call($A, $ACTION_TOKEN, 'POST', '/v1/charges', '{"n":1}',
          'X-AILink-Approval-Id' => $id);
is($r->{status}, 403, 'A refuses a second claim');
like($r->{content}, qr/"code":"approval_invalid"/, 'approval_invalid');
is(upstream_count($seq), 1, 'still forwarded once');
is(body(call($A, $ADMIN, 'GET', "/api/v1/approvals/$id"))->{status},
   'claimed', 'A lists it claimed');

# 2. held on A, released by a decision on B
my $dir = tempdir(CLEANUP => 1);
for my $case (['approve', 200], ['reject', 403]) {
    my ($decision, $want) = @$case;
    $seq = mock_seq();
    my $body = qq({"n":"held-$decision"});
    my $pid = fork // die;
    if ($pid == 0) {
        my $res = call($A, $ACTION_TOKEN, 'POST', '/v1/charges', $body,
                       'X-AILink-Approval-Wait' => 20);
        open my $f, '>', "$dir/$decision";
        print $f "$res->{status}\n" . time . "\n$res->{content}";
        close $f;
        POSIX::_exit(0);
    }
    my $hid = pending_with($B, $body);
    ok($hid, "the request held on A is pending on B ($decision)");
    sleep 0.2;
    ok(!-e "$dir/$decision", 'not answered before a decision');
    my $t0 = time;
    is(decide($B, $hid, $decision, "$decision from B")->{status}, 200,
       "B: $decision");
    waitpid($pid, 0);
    open my $f, '<', "$dir/$decision" or die;
    my ($status, $t, @rest) = <$f>;
    chomp($status, $t);
    is($status, $want, "the held request on A: $want after $decision on B");
    cmp_ok($t - $t0, '<', 1, sprintf('released within a second (%.0f ms)',
                                     1000 * ($t - $t0)));
    is(upstream_count($seq), $decision eq 'approve' ? 1 : 0,
       $decision eq 'approve' ? 'forwarded once' : 'never forwarded');
    like(join('', @rest), qr/"code":"approval_rejected".*"not today|reject from B/,
         'approval_rejected with the reason') if $decision eq 'reject';
}

# 3. claims at once, on both nodes: the approved request runs exactly
# once; every other claim gets that one's answer replayed (a repeated
# claim is idempotent) or 403 approval_invalid
$r = call($A, $ACTION_TOKEN, 'POST', '/v1/charges', '{"n":"race"}');
($id) = $r->{content} =~ /"(apr_[0-9a-f]{24})"/;
decide($A, $id, 'approve', 'race');
$seq = mock_seq();
my @pids;
for my $i (1 .. 8) {
    my $pid = fork // die;
    if ($pid == 0) {
        my $res = call($i % 2 ? $A : $B, $ACTION_TOKEN, 'POST', '/v1/charges',
                       '{"n":"race"}', 'X-AILink-Approval-Id' => $id);
        open my $f, '>', "$dir/race$i";
        print $f "$res->{status} $res->{content}";
        close $f;
        POSIX::_exit(0);
    }
    push @pids, $pid;
}
waitpid($_, 0) for @pids;
my @answers = map { open my $f, '<', "$dir/race$_"; scalar <$f> } 1 .. 8;
my @ran = grep { /^200 .*"echo"/ } @answers;
my @refused = grep { /^403 .*"code":"approval_invalid"/ } @answers;
is(@ran + @refused, 8, 'every claim ran or was refused') or diag(@answers);
is(upstream_count($seq), 1, 'forwarded exactly once, for 8 claims on two nodes');
ok(@ran >= 1, scalar(@ran) . ' got the one answer, '
              . scalar(@refused) . ' were refused');

# 4. idempotency keys: taken once for both nodes
my $key = 'order-' . time;
$seq = mock_seq();
my $first = call($A, $ACTION_TOKEN, 'POST', '/v1/refunds', '{"amount":5}',
                 'Idempotency-Key' => $key);
is($first->{status}, 200, 'A runs the first request with a key');
my $again = call($B, $ACTION_TOKEN, 'POST', '/v1/refunds', '{"amount":5}',
                 'Idempotency-Key' => $key);
is($again->{headers}{'x-ailink-idempotent-replay'}, 'true',
   'B replays it (X-AILink-Idempotent-Replay: true)');
is($again->{content}, $first->{content}, 'with the same body');
is(scalar(grep { $_->{path} eq '/api/v1/refunds' }
          @{ decode_json(mock_get("/_mock/requests?since=$seq")) }), 1,
   'the upstream saw one request');
is(call($B, $ACTION_TOKEN, 'POST', '/v1/refunds', '{"amount":6}',
        'Idempotency-Key' => $key)->{status}, 422,
   'another body on B: 422 idempotency_key_reused');
my @idem = grep { length } split /\n/, $redis->cli('KEYS', "'ailink:idem:*'");
is(scalar @idem, 1, "one idempotency key in Redis: @idem");
my $ittl = $redis->cli('TTL', "'$idem[0]'");
ok($ittl > 0 && $ittl <= 60, "kept for ailink_idempotency_ttl ($ittl s)");

my $slow = "$key-slow";
my $spid = fork // die;
if ($spid == 0) {
    call($A, $ACTION_TOKEN, 'POST', '/v1/refunds', '{"slow":1}',
         'Idempotency-Key' => $slow, 'X-Mock-Delay-Ms' => 1000);
    POSIX::_exit(0);
}
sleep 0.3;
$r = call($B, $ACTION_TOKEN, 'POST', '/v1/refunds', '{"slow":1}',
          'Idempotency-Key' => $slow);
is($r->{status}, 409, 'in flight on A: 409 on B');
like($r->{content}, qr/"code":"idempotency_conflict"/, 'idempotency_conflict');
waitpid($spid, 0);
is(call($B, $ACTION_TOKEN, 'POST', '/v1/refunds', '{"slow":1}',
        'Idempotency-Key' => $slow)->{headers}{'x-ailink-idempotent-replay'},
   'true', 'done on A: replayed on B');

my $failed = "$key-5xx";
is(call($A, $ACTION_TOKEN, 'POST', '/v1/refunds', '{"f":1}',
        'Idempotency-Key' => $failed, 'X-Mock-Status' => 503)->{status}, 503,
   'an upstream 503 on A');
# the key is released as A's request ends: a retry right after may meet
# it still there for a moment (409)
for (1 .. 20) {
    $r = call($B, $ACTION_TOKEN, 'POST', '/v1/refunds', '{"f":1}',
              'Idempotency-Key' => $failed);
    last if $r->{status} != 409;
    sleep 0.02;
}
is($r->{status}, 200, 'a 5xx is not kept: the retry on B runs');
ok(!$r->{headers}{'x-ailink-idempotent-replay'}, 'and is no replay');

# 5. the response cache, shared
sub chat {
    my ($node, $text, $stream) = @_;
    return call($node, $LLM_TOKEN, 'POST', '/v1/chat/completions',
                $json->encode({ model => 'mock-1', max_tokens => 5,
                                messages => [{ role => 'user',
                                               content => $text }],
                                $stream ? (stream => JSON::PP::true) : () }));
}
sub chats { scalar grep { $_->{path} =~ m{/chat/completions$} }
                   @{ decode_json(mock_get("/_mock/requests?since=$_[0]")) } }

$seq = mock_seq();
my $miss = chat($A, 'shared cache');
is($miss->{headers}{'x-ailink-cache'}, 'MISS', 'A: MISS');
# A stores it without waiting for Redis, but before its client has the
# answer: B's lookup right after finds it
my $hit = chat($B, 'shared cache');
is($hit->{headers}{'x-ailink-cache'}, 'HIT', 'B: HIT on what A stored');
is($hit->{content}, $miss->{content}, 'the same body');
my @ckeys = grep { length } split /\n/, $redis->cli('KEYS', "'ailink:c:*'");
ok(scalar @ckeys >= 1, "the entry is in Redis: @ckeys");
my $cttl = @ckeys ? $redis->cli('TTL', "'$ckeys[0]'") : -2;
ok($cttl > 0 && $cttl <= 300, "with the cache's TTL ($cttl s)");

my $smiss = chat($A, 'shared stream', 1);
is($smiss->{headers}{'x-ailink-cache'}, 'MISS', 'a stream on A: MISS');
my $shit = chat($B, 'shared stream', 1);
is($shit->{headers}{'x-ailink-cache'}, 'HIT', 'B replays the stream');
like($shit->{content}, qr/data: \[DONE\]\s*$/, 'to its [DONE]');
is(chats($seq), 2, 'the upstream saw one request of each');

is(call($B, $ADMIN, 'POST', '/api/v1/cache/flush')->{status}, 200,
   'B flushes the cache');
$r = chat($A, 'shared cache');
is($r->{headers}{'x-ailink-cache'}, 'MISS', 'A: MISS after the flush on B');
is(chats($seq), 3, 'and asks the upstream');

# 6. circuit breakers, shared
sub probe {
    my ($node, %h) = @_;
    return call($node, $LLM_TOKEN, 'POST', '/probe/v1/chat/completions',
                '{"model":"mock-1","messages":[{"role":"user","content":"b"}]}',
                %h);
}
sub openai_state {
    my ($node) = @_;
    my $h = body(call($node, $ADMIN, 'GET', '/api/v1/health/upstreams'));
    my ($u) = grep { $_->{name} eq 'openai' } @{ $h->{upstreams} // [] };
    return $u // {};
}

is(probe($A, 'X-Mock-Status' => 500)->{status}, 500, 'A: a failure');
is(openai_state($B)->{state}, 'closed', 'one failure: closed everywhere');
is(probe($A, 'X-Mock-Status' => 500)->{status}, 500, 'A: a second failure');
is(probe($A)->{status}, 503, 'A: open');
sleep 0.6;
$seq = mock_seq();
$r = probe($B);
is($r->{status}, 503, 'B: open too, within half a second');
like($r->{content}, qr/"code":"circuit_open"/, 'circuit_open');
ok($r->{headers}{'retry-after'}, 'with Retry-After');
is(chats($seq), 0, 'B did not call the upstream');
is(openai_state($B)->{state}, 'open', "B's health API: open");

sleep 2.2;
is(openai_state($B)->{state}, 'half_open', 'after the cooldown: half-open');
is(probe($B)->{status}, 200, "B: a probe's success");
is(openai_state($B)->{state}, 'closed', 'B: closed');
sleep 0.6;
is(openai_state($A)->{state}, 'closed', 'A: closed by the probe on B');

# 7. Redis away: no new approval (fail closed), a held request is not let
# through; Redis back: approvals work again without a reload
my $pid = fork // die;
if ($pid == 0) {
    my $res = call($A, $ACTION_TOKEN, 'POST', '/v1/charges', '{"n":"outage"}',
                   'X-AILink-Approval-Wait' => 2);
    open my $f, '>', "$dir/outage";
    print $f $res->{status};
    close $f;
    POSIX::_exit(0);
}
ok(pending_with($B, '{"n":"outage"}'), 'held before the outage');
$seq = mock_seq();
$redis->stop;
$r = call($A, $ACTION_TOKEN, 'POST', '/v1/charges', '{"n":"down"}');
is($r->{status}, 503, 'Redis away: a new approval is refused (503)');
$r = chat($A, 'shared cache');
is($r->{status}, 200, 'a chat is answered');
is($r->{headers}{'x-ailink-cache'}, 'BYPASS', 'by the upstream: BYPASS');
is(call($B, $ADMIN, 'GET', '/api/v1/approvals')->{status}, 503,
   'listing: 503');
waitpid($pid, 0);
open my $f, '<', "$dir/outage" or die;
is(scalar <$f>, 408, 'the held request times out (408), not let through');
close $f;
is(upstream_count($seq), 0, 'no charge forwarded during the outage');

$redis->restart;
my $ok = 0;
for (1 .. 50) {
    sleep 0.1;
    $r = call($A, $ACTION_TOKEN, 'POST', '/v1/charges', '{"n":"back"}');
    if ($r->{status} == 202) { $ok = 1; last }
}
ok($ok, 'Redis back: approvals are created again');
ok(pending_with($B, '{"n":"back"}'), 'and seen on the other node');

# 8. a reload, then Redis restarted (its script cache empty): the new
# workers load the scripts on their connections too
kill 'HUP', $A->{pid};
sleep 1;
$redis->restart;
$ok = 0;
for (1 .. 50) {
    sleep 0.1;
    $r = call($A, $ACTION_TOKEN, 'POST', '/v1/charges', '{"n":"reloaded"}');
    if ($r->{status} == 202) { $ok = 1; last }
}
ok($ok, 'after a reload and a Redis restart: approvals are created')
    or diag($r->{content});

for my $node ($A, $B) {
    my $log = $node->{dir} . '/logs/error.log';
    open my $l, '<', $log or next;
    my @crit = grep { /\[(alert|emerg|crit)\]/ } <$l>;
    is(scalar @crit, 0, 'no alert in the error log') or diag(@crit);
}

done_testing();
