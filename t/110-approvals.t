# Human approvals (ARCHITECTURE.md 4.6): require_approval holds a request
# (202 pending_approval, nothing forwarded), the token reads its approval,
# an approver decides through the approvals API with an admin key, and the
# claim (X-AILink-Approval-Id) runs the request exactly once, bound to the
# token and to the method, path and body; rejection, expiry, racing
# claims, and approvals surviving a reload and a restart.  Plain
# Test::More: the flow needs the ids the gateway hands out.

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
my $data_dir = tempdir(CLEANUP => 1);
my $http = HTTP::Tiny->new(timeout => 10);
my $json = JSON::PP->new->canonical;

our $ADMIN = 'ailink_admin_test0000000000000000000001';
my $ADMIN_HASH =
    '47268db3c8274b78d1f5c083cc730c89d297262265cf0fa675585dc465e7efdf';

open my $y, '>', "$conf_dir/policy.yaml" or die $!;
print $y policy_yaml(<<"YAML");
admin_keys:
  - {name: alice, hash: $ADMIN_HASH}
policies:
  - name: charges-need-approval
    apply_to: {tokens: [tok_action, tok_llm]}
    rules:
      - name: big
        when: {field: request.path, op: starts_with, value: /v1/charges}
        then:
          require_approval:
            reason: "charges need a human"
            notes: "check the amount"
      - name: short
        when: {field: request.path, op: starts_with, value: /v1/quick}
        then: {require_approval: {expires_in: 1}}
  - name: held-model
    apply_to: {tokens: [tok_llm, tok_other]}
    rules:
      - when: {field: model, op: eq, value: mock-held}
        then: require_approval
YAML
close $y;

my $server = <<"CONF";
        ailink_audit_log logs/audit.jsonl;
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
    ailink_state_zone ailink_state 1m;
    ailink_data_dir $data_dir;
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

sub decide {
    my ($id, $decision, $reason, $key) = @_;
    return call($key // $ADMIN, 'POST', "/api/v1/approvals/$id/decision",
                $json->encode({ decision => $decision, reason => $reason }));
}

sub body { return eval { decode_json($_[0]->{content}) } // {} }

sub upstream_count {
    my ($since, $prefix) = @_;
    my $recs = decode_json(mock_get("/_mock/requests?since=$since"));
    return scalar grep { $_->{path} =~ m{^/api$prefix} } @$recs;
}

sub mock_seq {
    my $last = decode_json(mock_get('/_mock/requests') || '[]');
    return @$last ? $last->[-1]{seq} : 0;
}

my $charge = '{"amount":5000000,"currency":"usd"}';

# 1. held: 202 pending_approval, nothing forwarded
my $seq = mock_seq();
my $res = call($ACTION_TOKEN, 'POST', '/v1/charges', $charge);
is($res->{status}, 202, 'a held request gets 202');
my $held = body($res);
is($held->{status}, 'pending_approval', 'status pending_approval');
like($held->{request_id}, qr/^apr_[0-9a-f]{24}$/, 'an apr_ id');
is($held->{policy_name}, 'charges-need-approval', 'the policy is named');
like($held->{expires_at}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/,
     'expires_at in RFC 3339');
is(upstream_count($seq, '/v1/charges'), 0, 'nothing reached the upstream');
my $id = $held->{request_id};

# 2. the token's view; another token sees nothing
$res = call($ACTION_TOKEN, 'GET', "/v1/approvals/$id");
is($res->{status}, 200, 'the token reads its approval');
is(body($res)->{status}, 'pending', 'pending');
is(body($res)->{reason}, 'charges need a human', 'with the policy reason');
is(call($LLM_TOKEN, 'GET', "/v1/approvals/$id")->{status}, 404,
   'another token gets 404');
is(call($ACTION_TOKEN, 'GET', '/v1/approvals/apr_000000000000000000000000')
   ->{status}, 404, 'an unknown id gets 404');

# 3. the approvals API wants an admin key
is(call($ACTION_TOKEN, 'GET', '/api/v1/approvals')->{status}, 401,
   'a virtual token is not an admin key');
is(call('ailink_admin_wrong0000000000000000000001', 'GET',
        '/api/v1/approvals')->{status}, 401, 'an unknown admin key: 401');
like(call($ADMIN, 'GET', '/api/v1/approvals')->{content},
     qr/"code":"invalid_token"|"object":"list"/, 'the right key lists');
$res = call($ADMIN, 'GET', '/api/v1/approvals?status=pending');
is($res->{status}, 200, 'the pending list');
my ($mine) = grep { $_->{id} eq $id } @{ body($res)->{data} };
ok($mine, 'the held request is in the pending list');
is($mine->{token_id}, 'tok_action', 'with its token');
is($mine->{method}, 'POST', 'method');
is($mine->{path}, '/v1/charges', 'path');
is($mine->{notes}, 'check the amount', 'the approver notes');
like($mine->{body_preview}, qr/"amount":\*+,/,
     'the body preview masks long numbers');

# 4. a claim before the decision is refused
$res = call($ACTION_TOKEN, 'POST', '/v1/charges', $charge,
            'X-AILink-Approval-Id' => $id);
is($res->{status}, 403, 'claiming a pending approval: 403');
like($res->{content}, qr/"code":"approval_invalid".*still pending/,
     'still pending');

# 5. approve; the token sees how to claim
$res = decide($id, 'approve', 'ok by alice');
is($res->{status}, 200, 'the decision is taken');
is(body($res)->{status}, 'approved', 'approved');
is(body($res)->{decided_by}, 'alice', 'decided by the admin key\'s name');
is(decide($id, 'reject', 'too late')->{status}, 409,
   'a second decision: 409');
$res = call($ACTION_TOKEN, 'GET', "/v1/approvals/$id");
is(body($res)->{status}, 'approved', 'the token sees approved');
is(body($res)->{reason}, 'ok by alice', 'with the decision reason');
is(body($res)->{claim}{header}, 'X-AILink-Approval-Id', 'and how to claim');

# 6. claims: other body, other token, then the one, then a second
$seq = mock_seq();
$res = call($ACTION_TOKEN, 'POST', '/v1/charges',
            '{"amount":9999999,"currency":"usd"}',
            'X-AILink-Approval-Id' => $id);
is($res->{status}, 403, 'another body: 403');
like($res->{content}, qr/"code":"approval_invalid"/, 'approval_invalid');
is(call($ACTION_TOKEN, 'PUT', '/v1/charges', $charge,
        'X-AILink-Approval-Id' => $id)->{status}, 403, 'another method: 403');
is(call($ACTION_TOKEN, 'POST', '/v1/charges?x=1', $charge,
        'X-AILink-Approval-Id' => $id)->{status}, 403, 'another path: 403');
is(upstream_count($seq, '/v1/charges'), 0, 'none of them ran');
$res = call($ACTION_TOKEN, 'POST', '/v1/charges', $charge,
            'X-AILink-Approval-Id' => $id);
is($res->{status}, 200, 'the claim runs the request');
is(upstream_count($seq, '/v1/charges'), 1, 'once, upstream');
my $first = $res->{content};
$res = call($ACTION_TOKEN, 'POST', '/v1/charges', $charge,
            'X-AILink-Approval-Id' => $id);
is($res->{status}, 200, 'the same claim again (a retry) is replayed');
is($res->{headers}{'x-ailink-idempotent-replay'}, 'true',
   'marked as a replay');
is($res->{content}, $first, 'with the first response');
is(upstream_count($seq, '/v1/charges'), 1, 'still once upstream');
$res = call($ACTION_TOKEN, 'POST', '/v1/charges', '{"amount":1}',
            'X-AILink-Approval-Id' => $id);
is($res->{status}, 403, 'another claim on a used approval: 403');
like($res->{content}, qr/"code":"approval_invalid"/, 'approval_invalid');
$res = call($ACTION_TOKEN, 'GET', "/v1/approvals/$id");
is(body($res)->{claimed}, JSON::PP::true, 'the approval shows claimed');
is(body($res)->{status}, 'approved', 'and still approved');
$res = call($ADMIN, 'GET', "/api/v1/approvals/$id");
is(body($res)->{status}, 'claimed', 'the approver sees it claimed');

# 7. an LLM request (the body read by routing) is held the same way, and
# another token cannot claim it with the same body
my $chat = '{"model":"mock-held","messages":[{"role":"user","content":"Hi"}]}';
$res = call($LLM_TOKEN, 'POST', '/v1/chat/completions', $chat);
is($res->{status}, 202, 'an LLM request is held');
my $id2 = body($res)->{request_id};
decide($id2, 'approve', 'fine');
is(call($OTHER_TOKEN, 'POST', '/v1/chat/completions', $chat,
        'X-AILink-Approval-Id' => $id2)->{status}, 403,
   'another token cannot claim');
$res = call($LLM_TOKEN, 'POST', '/v1/chat/completions', $chat,
            'X-AILink-Approval-Id' => $id2);
is($res->{status}, 200, 'the LLM request runs on its claim');
like($res->{content}, qr/Mock reply/, 'with the provider\'s answer');

# 8. rejected: the claim says why
$res = call($ACTION_TOKEN, 'POST', '/v1/charges', '{"amount":1}');
my $id3 = body($res)->{request_id};
$res = decide($id3, 'reject', 'too large');
is(body($res)->{status}, 'rejected', 'rejected');
$res = call($ACTION_TOKEN, 'GET', "/v1/approvals/$id3");
is(body($res)->{status}, 'rejected', 'the token sees rejected');
is(body($res)->{reason}, 'too large', 'and why');
$res = call($ACTION_TOKEN, 'POST', '/v1/charges', '{"amount":1}',
            'X-AILink-Approval-Id' => $id3);
is($res->{status}, 403, 'claiming a rejected approval: 403');
like($res->{content},
     qr/"code":"approval_rejected".*"approval_id":"$id3","reason":"too large"/,
     'approval_rejected with the approval id and the reason');

# 9. expiry
$res = call($ACTION_TOKEN, 'POST', '/v1/quick', '{}');
my $id4 = body($res)->{request_id};
is($res->{status}, 202, 'a short-lived approval');
sleep 2.1;
is(body(call($ACTION_TOKEN, 'GET', "/v1/approvals/$id4"))->{status},
   'expired', 'expired after its expires_in');
is(decide($id4, 'approve', 'late')->{status}, 409,
   'an expired approval cannot be decided');
$res = call($ADMIN, 'GET', '/api/v1/approvals?status=expired');
ok((grep { $_->{id} eq $id4 } @{ body($res)->{data} }),
   'listed as expired');

# 10. racing claims from two workers: exactly one runs
$res = call($ACTION_TOKEN, 'POST', '/v1/charges', '{"amount":42}');
my $id5 = body($res)->{request_id};
decide($id5, 'approve', 'race');
$seq = mock_seq();
my $dir = tempdir(CLEANUP => 1);
my @pids;
for my $i (1 .. 12) {
    my $pid = fork // die;
    if ($pid == 0) {
        my $r = call($ACTION_TOKEN, 'POST', '/v1/charges', '{"amount":42}',
                     'X-AILink-Approval-Id' => $id5);
        open my $f, '>', "$dir/$i";
        print $f $r->{status},
                 $r->{headers}{'x-ailink-idempotent-replay'} ? 'r' : '';
        close $f;
        POSIX::_exit(0);
    }
    push @pids, $pid;
}
waitpid($_, 0) for @pids;
my @st = map { open my $f, '<', "$dir/$_"; scalar <$f> } 1 .. 12;
is(scalar(grep { $_ eq '200' } @st), 1, 'one of 12 racing claims runs');
is(scalar(grep { $_ eq '403' || $_ eq '200r' } @st), 11,
   'the other 11 get 403, or the replay once it is done');
is(upstream_count($seq, '/v1/charges'), 1, 'the upstream saw one');

# 11. bad decisions
is(call($ADMIN, 'POST', "/api/v1/approvals/$id5/decision", '{"x":1}')
   ->{status}, 400, 'a decision without "decision": 400');
is(decide('apr_000000000000000000000000', 'approve', 'x')->{status}, 404,
   'deciding an unknown approval: 404');

# 12. the audit records: held, decided (who and why), claimed, replayed
sub audit {
    open my $f, '<', "$nginx->{dir}/logs/audit.jsonl" or return ();
    return map { decode_json($_) } <$f>;
}
my @recs = audit();
my @mine = grep { $_->{approval} && $_->{approval}{id} eq $id } @recs;
is_deeply([map { $_->{approval}{decision} } @mine],
          [qw(pending claim_refused approved claim_refused claim_refused
              claim_refused claimed replayed claim_refused)],
          'every step of the approval is in the audit')
    or diag(explain([map { [$_->{path}, $_->{status}, $_->{approval}] } @mine]));
my ($dec) = grep { $_->{approval}{decision} eq 'approved' } @mine;
is($dec->{approval}{decided_by}, 'alice', 'the decision: who');
is($dec->{approval}{reason}, 'ok by alice', 'and why');
my ($held_rec) = @mine;
is($held_rec->{status}, 202, 'the held request: 202');
ok((grep { $_->{idempotent_replay} } @mine),
   'the replayed claim is marked idempotent_replay');

# 13. reload: the pending approval is still there and can be decided
$res = call($ACTION_TOKEN, 'POST', '/v1/charges', '{"amount":7}');
my $id6 = body($res)->{request_id};
kill 'HUP', $nginx->{pid};
sleep 0.5;
$res = call($ACTION_TOKEN, 'GET', "/v1/approvals/$id6");
is(body($res)->{status}, 'pending', 'after a reload the approval is pending');

# 14. restart: pending and decided approvals come back from the data dir
$res = call($ACTION_TOKEN, 'POST', '/v1/charges', '{"amount":8}');
my $id7 = body($res)->{request_id};
decide($id7, 'approve', 'before the restart');
sleep 1.2;    # the data directory is written every second
kill 'QUIT', $nginx->{pid};
waitpid($nginx->{pid}, 0);
ok(-s "$data_dir/spend.state", 'the state file was written');

$nginx = start_nginx(master => 1, workers => 2, http => $http_conf,
                     server => $server);
$url = $nginx->{url};
is(body(call($ACTION_TOKEN, 'GET', "/v1/approvals/$id6"))->{status},
   'pending', 'after a restart the pending approval is there');
is(decide($id6, 'approve', 'after restart')->{status}, 200,
   'and can be approved');
is(call($ACTION_TOKEN, 'POST', '/v1/charges', '{"amount":7}',
        'X-AILink-Approval-Id' => $id6)->{status}, 200, 'and claimed');
is(call($ACTION_TOKEN, 'POST', '/v1/charges', '{"amount":8}',
        'X-AILink-Approval-Id' => $id7)->{status}, 200,
   'an approval decided before the restart is claimed after it');
is(call($ACTION_TOKEN, 'POST', '/v1/charges', '{"amount":1}',
        'X-AILink-Approval-Id' => $id)->{status}, 403,
   'a claimed one stays claimed across the restart');
is(body(call($ACTION_TOKEN, 'GET', "/v1/approvals/$id3"))->{status},
   'rejected', 'and a rejected one rejected');

open my $log, '<', "$nginx->{dir}/logs/error.log" or die $!;
my $text = do { local $/; <$log> };
unlike($text, qr/\[(alert|crit|emerg)\]/, 'no alert in the log');

open $log, '<', "$nginx->{dir}/logs/error.log" or die $!;
done_testing();
