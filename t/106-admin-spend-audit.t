# GET /spend (issue 13): totals {requests, prompt_tokens,
# completion_tokens, cost_usd} by token, project, model or day, filtered
# by since, until, token_id, project and model, summed from the audit
# file in nginx's thread pool; and every admin mutation in the audit log
# (the JSON lines): who (the admin key's SHA-256 prefix and name), what
# (method, resource, object), the outcome (status), never a secret.
# Plain Test::More: the sums are checked against the audit file itself.

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
use Time::HiRes qw(sleep);

my $root = $ENV{TEST_NGINX_AILINK_ROOT};
my $http = HTTP::Tiny->new(timeout => 10);
my $json = JSON::PP->new->canonical;

my $KEY = 'ailink_admin_spend0000000000000000000000001';
my $KEY_Y = 'ailink_admin_spend0000000000000000000000002';
my $HASH = sha256_hex($KEY);
my $HASH_Y = sha256_hex($KEY_Y);
my $SECRET = 'sk-live-NEVER-IN-THE-AUDIT-31415926';

my $conf_dir = tempdir(CLEANUP => 1);
my $keydir = tempdir(CLEANUP => 1);
my $data = tempdir(CLEANUP => 1);

open my $k, '>', "$keydir/master.key" or die $!;
print $k ('e' x 64) . "\n";
close $k;

open my $y, '>', "$conf_dir/policy.yaml" or die $!;
print $y policy_yaml(<<"YAML");
admin_keys:
  - {name: dave, hash: $HASH_Y}
policies:
  - name: charges-need-approval
    apply_to: {tokens: [tok_action]}
    rules:
      - when: {field: request.path, op: starts_with, value: /v1/charges}
        then: require_approval
YAML
close $y;

my $http_conf = <<"CONF";
    ailink_config $conf_dir/policy.yaml;
    ailink_state_zone ailink_state 1m;
    ailink_cache_zone ailink_cache 1m;
    ailink_breaker_zone ailink_breaker 1m;
    ailink_store_dir $data;
    ailink_admin_key $HASH;
    ailink_vault_master_key file:$keydir/master.key;
    ailink_audit_log logs/audit.jsonl;
    ailink_admin_audit_source logs/audit.jsonl;
CONF

my $server = <<"CONF";
        location /api/v1/ {
            ailink_admin_api;
        }
        location /legacy/api/v1/cache/ {
            ailink_cache_api;
        }
        location / {
            ailink_auth on;
            include $root/conf-examples/ailink-proxy.conf;
        }
CONF

my $gw = start_nginx(master => 1, workers => 2, http => $http_conf,
                     server => $server);
my $audit_file = "$gw->{dir}/logs/audit.jsonl";

sub req {
    my ($key, $method, $path, $body, %h) = @_;
    my $res = $http->request($method, "$gw->{url}$path", {
        headers => { Authorization => "Bearer $key",
                     'Content-Type' => 'application/json', %h },
        defined $body ? (content => ref $body ? $json->encode($body) : $body)
                      : () });
    $res->{json} = eval { decode_json($res->{content}) };
    return $res;
}

sub admin { my ($m, $p, $b, $key) = @_; req($key // $KEY, $m, "/api/v1$p", $b) }

sub records {
    open my $f, '<', $audit_file or return ();
    my @r = map { decode_json($_) } grep { /^\{/ } <$f>;
    return @r;
}

sub chat {
    my ($token, $model, $text) = @_;
    return req($token, 'POST', '/v1/chat/completions',
               { model => $model, messages => [
                   { role => 'user', content => $text } ] });
}

# --- spend

is admin('GET', '/spend')->{status}, 200, 'GET /spend on an empty audit';
is_deeply admin('GET', '/spend')->{json}{data}, [], '... no groups';

is chat($LLM_TOKEN, 'mock-priced', 'one')->{status}, 200, 'tok_llm, mock-priced';
is chat($LLM_TOKEN, 'mock-a', 'two words')->{status}, 200, 'tok_llm, mock-a';
is chat($AILink::Policy::OTHER_TOKEN, 'mock-priced', 'three four five')
   ->{status}, 200, 'tok_other, mock-priced';
is chat('ailink_v1_proj_test_tok_unknown0000000000000001', 'mock-a', 'x')
   ->{status}, 401, 'an unknown token: not spend';

sleep 0.2;
my @data = grep { defined $_->{token_id} } records();
is scalar @data, 3, 'three data-plane records';

sub expect {
    my ($keyf, @recs) = @_;
    my %g;
    for my $r (@recs) {
        my $key = $keyf->($r) // 'null';
        $g{$key}{requests}++;
        $g{$key}{prompt_tokens} += $r->{prompt_tokens} // 0;
        $g{$key}{completion_tokens} += $r->{completion_tokens} // 0;
        $g{$key}{cost_usd} += $r->{cost_usd} // 0;
    }
    return \%g;
}

sub check {
    my ($query, $field, $expect, $what) = @_;
    my $r = admin('GET', "/spend$query");
    is $r->{status}, 200, "GET /spend$query";
    my %got = map { ($_->{$field} // 'null') => $_ } @{ $r->{json}{data} };
    is_deeply [sort keys %got], [sort keys %$expect], "... $what: the groups";
    for my $g (keys %$expect) {
        for my $f (qw(requests prompt_tokens completion_tokens)) {
            is $got{$g}{$f}, $expect->{$g}{$f}, "... $what $g: $f";
        }
        ok abs(($got{$g}{cost_usd} // -1) - $expect->{$g}{cost_usd}) < 1e-6,
           "... $what $g: cost_usd ($got{$g}{cost_usd})";
    }
    return $r;
}

my $r = check('?group_by=token', 'token_id',
              expect(sub { $_[0]{token_id} }, @data), 'by token');
is $r->{json}{group_by}, 'token_id', '... group_by named';
is $r->{json}{total}{requests}, 3, '... total requests';
ok $r->{json}{total}{cost_usd} > 0, '... a total cost';
is $r->{json}{window_bytes}, 4194304, '... the window';
is $r->{json}{truncated}, JSON::PP::false, '... not truncated';

check('', 'token_id', expect(sub { $_[0]{token_id} }, @data),
      'by token (the default)');
check('?group_by=project', 'project',
      expect(sub { $_[0]{project} }, @data), 'by project');
check('?group_by=model', 'model',
      expect(sub { $_[0]{model} }, @data), 'by model');
check('?group_by=day', 'day',
      expect(sub { substr $_[0]{time}, 0, 10 }, @data), 'by day');
check('?group_by=model&token_id=tok_llm', 'model',
      expect(sub { $_[0]{model} }, grep { $_->{token_id} eq 'tok_llm' } @data),
      'tok_llm by model');
check('?group_by=token&project=other', 'token_id',
      expect(sub { $_[0]{token_id} }, grep { $_->{project} eq 'other' } @data),
      'project other by token');
check('?group_by=token&model=mock-priced', 'token_id',
      expect(sub { $_[0]{token_id} },
             grep { ($_->{model} // '') eq 'mock-priced' } @data),
      'mock-priced by token');

my $today = substr $data[0]{time}, 0, 10;
check("?group_by=day&since=$today&until=$today", 'day',
      expect(sub { substr $_[0]{time}, 0, 10 }, @data), 'today');
check('?since=2999-01-01', 'token_id', {}, 'since the future');
check('?until=2000-01-01', 'token_id', {}, 'until the past');
is admin('GET', '/spend?since=2999-01-01')->{json}{total}{requests}, 0,
   '... a total of nothing';

is admin('GET', '/spend?group_by=colour')->{status}, 400,
   'group_by=colour: 400';
is admin('POST', '/spend')->{status}, 405, 'POST /spend: 405';
is admin('GET', '/spend', undef, $ACTION_TOKEN)->{status}, 403,
   'a data-plane token: 403';

# --- every mutation audited

sub admin_records { grep { $_->{admin} } records() }

ok !(grep { $_->{admin}{action} eq 'GET' } admin_records()),
   'no admin record for reads';
ok((grep { $_->{admin}{resource} eq 'spend' && $_->{status} == 405 }
    admin_records()), '... but one for a refused POST /spend');

$r = admin('POST', '/credentials', { name => 'leaky', secret => $SECRET,
                                     scheme => 'bearer' });
is $r->{status}, 201, 'a credential created';
$r = admin('POST', '/credentials/leaky/rotate', { secret => "$SECRET-2" });
$r = admin('POST', '/tokens', { name => 'audited', credential_id => 'leaky',
                                upstream_url => "http://127.0.0.1:$ENV{TEST_NGINX_MOCK_PORT}/api" });
is $r->{status}, 201, 'a token created';
my $tid = $r->{json}{id};
admin('PATCH', "/tokens/$tid", { agent_name => 'x' }, $KEY_Y);
admin('DELETE', "/tokens/$tid");
admin('DELETE', '/tokens/tok_nope');
admin('POST', '/services', { name => 'svc-a', base_url => 'http://127.0.0.1:1/x' });
admin('POST', '/cache/flush');
admin('PATCH', '/tokens/tok_llm/circuit-breaker', { failure_threshold => 4 });
my $apr = req($ACTION_TOKEN, 'POST', '/v1/charges', '{"a":1}')->{json}{request_id};
admin('POST', "/approvals/$apr/decision", { decision => 'approve' });
req($KEY_Y, 'POST', '/legacy/api/v1/cache/flush');
admin('POST', '/tokens', { name => 'refused' }, 'ailink_admin_spend0000000000000000000000009');

sleep 0.2;
open my $f, '<', $audit_file or die $!;
my $text = do { local $/; <$f> };
close $f;
unlike $text, qr/\Q$SECRET\E/, 'the secret is nowhere in the audit file';
unlike $text, qr/NEVER-IN-THE-AUDIT/, '... nor any part of it';

my @adm = admin_records();
my $who = 'sha256:' . substr($HASH, 0, 8);

sub find_rec {
    my (%want) = @_;
    for my $r (@adm) {
        my $a = $r->{admin};
        next if grep { ($want{$_} // '') ne ($_ eq 'status' ? $r->{status}
                                           : $a->{$_} // '') } keys %want;
        return $r;
    }
    return undef;
}

sub audited {
    my ($what, %want) = @_;
    ok find_rec(%want), "audited: $what" or diag explain [map { [$_->{status}, $_->{admin}] } @adm];
}

audited('credential create', action => 'POST', resource => 'credentials',
        object => 'leaky', status => 201, key => $who,
        name => 'admin:' . substr($HASH, 0, 8));
audited('credential rotate', action => 'POST',
        resource => 'credentials/rotate',
        object => 'leaky', key => $who);
audited('token create, by its new id', action => 'POST', resource => 'tokens',
        object => $tid, status => 201);
audited('token patch, by the file\'s key', action => 'PATCH',
        resource => 'tokens', object => $tid, status => 200,
        key => 'sha256:' . substr($HASH_Y, 0, 8), name => 'dave');
audited('token revoke', action => 'DELETE', resource => 'tokens',
        object => $tid, status => 200);
audited('a failed revoke, with its status', action => 'DELETE',
        resource => 'tokens', object => 'tok_nope', status => 404);
audited('service create', action => 'POST', resource => 'services',
        object => 'svc-a', status => 201);
audited('cache flush', action => 'POST', resource => 'cache',
        object => 'flush', status => 200);
audited('breaker patch', action => 'PATCH',
        resource => 'tokens/circuit-breaker', object => 'tok_llm',
        status => 200);
audited('approval decision', action => 'POST',
        resource => 'approvals/decision',
        object => $apr, status => 200);
audited('the standalone cache API\'s flush', action => 'POST',
        resource => 'cache', object => 'flush', name => 'dave',
        status => 200);

my ($imp) = admin('POST', '/config/import', "tokens: []\n");
sleep 0.3;    # the record is written in the log phase, after the answer
@adm = admin_records();
audited('config import', action => 'POST', resource => 'config',
        object => 'import');

ok !(grep { ($_->{admin}{object} // '') eq 'refused' } @adm),
   'a refused key is not an admin';
ok((grep { $_->{status} == 401 && $_->{path} eq '/api/v1/tokens' } records()),
   '... its request is still in the audit (401)');

# GET /audit reads the file's last 4 MB: a tail that starts inside a
# record is read from its first whole line (a nested object that happens
# to start the tail was returned as a record)
{
    my $TAIL = 4 * 1024 * 1024;
    my $ghost_head = '{"token_id":"ghost","status":200,"pad":"';
    my $ghost = $ghost_head . ('y' x ($TAIL - length($ghost_head) - 4)) . '"}';
    open my $f, '>>', $audit_file or die $!;
    print $f '{"filler":"x","inner":' . $ghost . "}\n";
    close $f;
    my $r = admin('GET', '/audit?token_id=ghost');
    is $r->{status}, 200, 'GET /audit over a tail cut inside a record';
    is scalar @{ $r->{json}{data} }, 0, '... no half record taken for one';
}

done_testing;
