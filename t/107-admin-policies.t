# Policies through the admin API: create, list, get, patch, delete;
# compiled by the config file's loader (a bad regex or an unknown field is
# a 400 naming the policy and the rule); the file's policies listed and
# read-only (409); tokens created through the API naming them; deny,
# require_approval and rate limits of an API policy acting like the
# file's; delete refused while a token names the policy; the store
# surviving restart; config export and import with policies (all or
# nothing, and the export -> import -> export identity).  Plain
# Test::More: the test starts and restarts its own gateways.

use strict;
use warnings;
use lib 't/lib';
use AILink::Test;
use AILink::Admin;
use Test::More;
use File::Temp qw(tempdir);

my $root = $ENV{TEST_NGINX_AILINK_ROOT};
my $mock = $ENV{TEST_NGINX_MOCK_PORT};

# the test configuration plus a policy of the file
my $confdir = tempdir(CLEANUP => 1);
open my $in, '<', "$root/t/conf/ailink.yaml" or die $!;
my $yaml = do { local $/; <$in> };
close $in;
$yaml .= <<'YAML';

policies:
  - name: file-deny
    apply_to: {tokens: [tok_query]}
    rules:
      - name: no-file
        when: {field: request.path, op: eq, value: /v1/file-denied}
        then: {deny: {reason: "the file says no"}}
YAML
open my $out, '>', "$confdir/ailink.yaml" or die $!;
print $out $yaml;
close $out;

my $data = tempdir(CLEANUP => 1);
my %opts = (config => "$confdir/ailink.yaml", data => $data,
            http_extra => "    ailink_state_zone ailink_state 1m;\n");
my $gw = admin_gateway(%opts);

# --- the file's policies: listed, read-only

my $r = admin($gw, 'GET', '/policies');
is $r->{status}, 200, 'GET /policies';
my ($fp) = grep { $_->{name} eq 'file-deny' } @{ $r->{json}{data} };
ok $fp, '... lists the file\'s policy';
is $fp->{source}, 'yaml', '... as source yaml';
is $fp->{rules}[0]{then}{deny}{reason}, 'the file says no', '... as written';

$r = admin($gw, 'GET', '/policies/file-deny');
is $r->{status}, 200, 'GET /policies/file-deny';
is $r->{json}{source}, 'yaml', '... source yaml';

for my $m (['PATCH', '/policies/file-deny', { mode => 'shadow' }],
           ['DELETE', '/policies/file-deny', undef],
           ['POST', '/policies', { name => 'file-deny', rules => [{ then => 'log' }] }])
{
    $r = admin($gw, @$m);
    is $r->{status}, 409, "$m->[0] of the file's policy: 409";
    like $r->{json}{error}{message}, qr/config file/, '... managed by the config file';
}

# --- create, validated by the file's loader

my $deny = { name => 'api-deny', mode => 'enforce', phase => 'pre',
             rules => [{ name => 'charges',
                         when => { field => 'request.path', op => 'eq', value => '/v1/charges' },
                         then => { deny => { reason => 'charges are disabled' } } }] };
$r = admin($gw, 'POST', '/policies', $deny);
is $r->{status}, 201, 'POST /policies: 201';
is $r->{json}{name}, 'api-deny', '... the policy';
is $r->{json}{source}, 'api', '... source api';
like $r->{json}{created_at}, qr/^\d{4}-\d\d-\d\dT/, '... created_at';

$r = admin($gw, 'POST', '/policies', $deny);
is $r->{status}, 409, 'the same name again: 409';
is $r->{json}{error}{code}, 'conflict', '... conflict';

$r = admin($gw, 'POST', '/policies', {
    name => 'bad-re', rules => [{ name => 'r1',
        when => { field => 'request.path', op => 'regex', value => '(unclosed' },
        then => 'deny' }] });
is $r->{status}, 400, 'a bad regex: 400';
is $r->{json}{error}{code}, 'invalid_request', '... invalid_request';
like $r->{json}{error}{message}, qr/"bad-re".*rules\[0\] \("r1"\).*regex/,
     '... naming the policy and the rule';
is admin($gw, 'GET', '/policies/bad-re')->{status}, 404, '... and nothing stored';

$r = admin($gw, 'POST', '/policies', { name => 'odd', colour => 'red',
                                       rules => [{ then => 'log' }] });
is $r->{status}, 400, 'an unknown field: 400';
like $r->{json}{error}{message}, qr/colour/, '... naming it';

$r = admin($gw, 'POST', '/policies', { name => 'odd2',
    rules => [{ name => 'x', when => { field => 'request.nope', op => 'eq', value => 1 },
                then => 'deny' }] });
is $r->{status}, 400, 'an unknown condition field: 400';
like $r->{json}{error}{message}, qr/"odd2".*"x"/, '... naming the policy and the rule';

$r = admin($gw, 'POST', '/policies', { rules => [{ then => 'log' }] });
is $r->{status}, 400, 'no name: 400';
$r = admin($gw, 'POST', '/policies', { name => 'x y', rules => [{ then => 'log' }] });
is $r->{status}, 400, 'a name with a space: 400';

$r = admin($gw, 'POST', '/policies', { name => 'post-deny', phase => 'post',
                                       rules => [{ then => 'deny' }] });
is $r->{status}, 400, 'a deny in a post policy: 400';

# --- a token of the API naming it

$r = admin($gw, 'POST', '/tokens', { name => 'denied', upstream_url => "http://127.0.0.1:$mock/api",
                                     credential_id => 'action', policies => ['api-deny'] });
is $r->{status}, 201, 'a token naming the API policy';
my $tok = $r->{json}{token};
my $tok_id = $r->{json}{id};

$r = call($gw, $tok, 'POST', '/v1/charges', '{"amount":1}');
is $r->{status}, 403, 'the policy denies';
is $r->{json}{error}{code}, 'policy_denied', '... policy_denied';
is $r->{json}{error}{policy_name}, 'api-deny', '... naming the policy';
is $r->{json}{error}{reason}, 'charges are disabled', '... with its reason';
$r = call($gw, $tok, 'GET', '/v1/customers');
is $r->{status}, 200, 'another path passes';

$r = admin($gw, 'POST', '/tokens', { name => 'ghost', upstream_url => "http://127.0.0.1:$mock/api",
                                     credential_id => 'action', policies => ['no-such'] });
is $r->{status}, 400, 'a token naming an unknown policy: 400';
like $r->{json}{error}{message}, qr/no-such/, '... naming it';

# --- patch: the fields given replace the record's

$r = admin($gw, 'PATCH', '/policies/api-deny', {
    rules => [{ name => 'refunds',
                when => { field => 'request.path', op => 'eq', value => '/v1/refunds' },
                then => { deny => { reason => 'refunds are disabled' } } }] });
is $r->{status}, 200, 'PATCH /policies/api-deny';
is $r->{json}{mode}, 'enforce', '... keeps the fields not given';
like $r->{json}{updated_at}, qr/^\d{4}-/, '... updated_at';
is call($gw, $tok, 'POST', '/v1/charges', '{"amount":1}')->{status}, 200,
   '... the old rule is gone (every worker, next request)';
for (1 .. 4) {
    # several connections: both workers
    $r = call($gw, $tok, 'POST', '/v1/refunds', '{"amount":1}');
    last if $r->{status} != 403;
}
is $r->{status}, 403, '... the new one applies';
is $r->{json}{error}{reason}, 'refunds are disabled', '... with its reason';

$r = admin($gw, 'PATCH', '/policies/api-deny', { mode => 'shadow' });
is $r->{status}, 200, 'PATCH to shadow';
is call($gw, $tok, 'POST', '/v1/refunds', '{}')->{status}, 200, '... nothing refused';
$r = admin($gw, 'PATCH', '/policies/api-deny', { mode => undef });
is $r->{status}, 200, 'PATCH mode: null (back to the default)';
ok !exists $r->{json}{mode}, '... removed';
is call($gw, $tok, 'POST', '/v1/refunds', '{}')->{status}, 403, '... enforced again';

$r = admin($gw, 'PATCH', '/policies/api-deny', { rules => [{ then => { nope => 1 } }] });
is $r->{status}, 400, 'PATCH with an unknown action: 400';
like $r->{json}{error}{message}, qr/"api-deny".*nope/, '... naming it';
is call($gw, $tok, 'POST', '/v1/refunds', '{}')->{status}, 403, '... the policy unchanged';

# what GET answers can be sent back as it is
my $got = admin($gw, 'GET', '/policies/api-deny')->{json};
$r = admin($gw, 'PATCH', '/policies/api-deny', $got);
is $r->{status}, 200, 'PATCH with what GET answered (source, created_at)';
is $r->{json}{source}, 'api', '... still an API policy';

$r = admin($gw, 'PATCH', '/policies/api-deny', { name => 'renamed' });
is $r->{status}, 400, 'a rename: 400';
is admin($gw, 'PATCH', '/policies/none', { mode => 'shadow' })->{status}, 404,
   'PATCH an unknown policy: 404';

# --- delete: refused while a token names it

$r = admin($gw, 'DELETE', '/policies/api-deny');
is $r->{status}, 409, 'DELETE while a token names it: 409';
is $r->{json}{error}{code}, 'in_use', '... in_use';
like $r->{json}{error}{message}, qr/\Q$tok_id\E/, '... naming the token';

# --- apply_to of an API policy; require_approval

$r = admin($gw, 'POST', '/policies', { name => 'hold', apply_to => { tokens => [$tok_id] },
    rules => [{ when => { field => 'request.path', op => 'eq', value => '/v1/transfers' },
                then => 'require_approval' }] });
is $r->{status}, 201, 'a require_approval policy applied to the token by id';
$r = call($gw, $tok, 'POST', '/v1/transfers', '{"amount":7}');
is $r->{status}, 202, '... holds the request';
is $r->{json}{status}, 'pending_approval', '... pending_approval';
is $r->{json}{policy_name}, 'hold', '... naming the policy';
like $r->{json}{request_id}, qr/^apr_/, '... an approval id';

$r = admin($gw, 'POST', '/policies', { name => 'ghost-apply', apply_to => { tokens => ['tok_nobody'] },
                                       rules => [{ then => 'log' }] });
is $r->{status}, 400, 'apply_to an unknown token: 400';
$r = admin($gw, 'POST', '/policies', { name => 'file-apply', apply_to => { tokens => ['tok_action'] },
                                       rules => [{ then => 'log' }] });
is $r->{status}, 400, 'apply_to a token of the file: 400';
like $r->{json}{error}{message}, qr/"tok_action" is a token of the config file/, '... saying so';

# apply_to: all reaches the API's tokens, not the file's
$r = admin($gw, 'POST', '/policies', { name => 'everyone', apply_to => 'all',
    rules => [{ when => { field => 'request.path', op => 'eq', value => '/v1/everyone' },
                then => { deny => { reason => 'nobody' } } }] });
is $r->{status}, 201, 'an API policy for all';
is call($gw, $tok, 'GET', '/v1/everyone')->{status}, 403, '... denies an API token';
is call($gw, $ACTION_TOKEN, 'GET', '/v1/everyone')->{status}, 200,
   '... not a token of the file (documented)';
is admin($gw, 'DELETE', '/policies/everyone')->{status}, 200, '... deleted';

# --- rate limits: counted by policy name like the file's

$r = admin($gw, 'POST', '/policies', { name => 'rl', apply_to => { tokens => [$tok_id] },
    rules => [{ name => 'two', when => { field => 'request.path', op => 'eq', value => '/v1/limited' },
                then => { rate_limit => { requests_per_minute => 2 } } }] });
is $r->{status}, 201, 'a rate-limit policy';
my @st = map { call($gw, $tok, 'GET', '/v1/limited')->{status} } 1 .. 3;
# a minute may turn between the requests: then the last two pass
my $turned = $st[2] == 200;
ok $turned || "@st" eq '200 200 429', "two a minute: @st";
$r = call($gw, $tok, 'GET', '/v1/limited');
is $r->{status}, 429, '... refused' unless $turned;
is $r->{json}{error}{code}, 'rate_limited', '... rate_limited' unless $turned;

$r = admin($gw, 'PATCH', '/policies/rl', { description => 'two a minute' });
is $r->{status}, 200, 'PATCH the limited policy';
is call($gw, $tok, 'GET', '/v1/limited')->{status}, 429,
   '... the counters of the window are kept' unless $turned;

$r = admin($gw, 'DELETE', '/policies/rl');
is $r->{status}, 200, 'DELETE the limited policy (apply_to does not pin it)';
ok $r->{json}{deleted}, '... deleted';
is call($gw, $tok, 'GET', '/v1/limited')->{status}, 200, '... no limit any more';
is admin($gw, 'GET', '/policies/rl')->{status}, 404, '... gone';

# --- the store survives a restart

stop_gateway($gw);
$gw = admin_gateway(%opts);
$r = call($gw, $tok, 'POST', '/v1/refunds', '{}');
is $r->{status}, 403, 'after a restart the policy still denies';
is $r->{json}{error}{policy_name}, 'api-deny', '... the API policy';
is admin($gw, 'GET', '/policies/hold')->{json}{source}, 'api', '... and is listed';

# --- export and import

$r = admin($gw, 'GET', '/config/export');
is $r->{status}, 200, 'export';
my $export = $r->{content};
like $export, qr/"policies":/, '... with policies';
like $export, qr/"name": "file-deny"/, '... the file\'s';
like $export, qr/"name": "api-deny"/, '... and the API\'s';
like $export, qr/"policies":\s*\n\s*- "api-deny"/, '... and the token\'s policies';
unlike $export, qr/created_at|updated_at/, '... no store metadata';

$r = admin($gw, 'POST', '/config/import', $export, type => 'application/yaml');
is $r->{status}, 200, 'import the export';
diag $r->{content} if $r->{status} != 200;
is $r->{json}{policies}{created}, 0, '... no policy created';
is $r->{json}{policies}{updated}, 0, '... none updated';
is $r->{json}{policies}{unchanged}, 3, '... three unchanged (the file\'s too)';
is admin($gw, 'GET', '/config/export')->{content}, $export,
   'export -> import -> export is the identity';

# a changed and a new policy, imported
(my $changed = $export) =~ s/"refunds are disabled"/"refunds are off"/;
$changed =~ s/^"services":/"services": []\n"unused":/m if 0;
$r = admin($gw, 'POST', '/config/import', $changed, type => 'application/yaml');
is $r->{status}, 200, 'import a changed policy';
is $r->{json}{policies}{updated}, 1, '... one updated';
is call($gw, $tok, 'POST', '/v1/refunds', '{}')->{json}{error}{reason}, 'refunds are off',
   '... in effect';

# all or nothing: a new token and a bad policy
my $bad = <<"YAML";
tokens:
  - id: tok_newbie
    name: newbie
    project: test
    hash: "@{[ 'e' x 64 ]}"
    upstream: "http://127.0.0.1:$mock/api"
    credential: action
    policies: ["imported-bad"]
policies:
  - name: imported-bad
    rules:
      - name: broken
        when: {field: request.path, op: regex, value: "(("}
        then: deny
YAML
$r = admin($gw, 'POST', '/config/import', $bad, type => 'application/yaml');
is $r->{status}, 400, 'import with a bad policy: 400';
like $r->{json}{error}{message}, qr/"imported-bad".*"broken"/, '... naming the policy and rule';
ok !(grep { $_->{name} eq 'newbie' } @{ admin($gw, 'GET', '/tokens')->{json}{data} }),
   '... and nothing applied (not the token either)';

# a file policy changed by an import: 409
(my $filechange = $export) =~ s/"the file says no"/"changed"/;
$r = admin($gw, 'POST', '/config/import', $filechange, type => 'application/yaml');
is $r->{status}, 409, 'import changing a policy of the file: 409';

# a new policy and a token naming it, in one import
(my $good = $bad) =~ s/value: "\(\("/value: "^\/v1\/imported"/;
$r = admin($gw, 'POST', '/config/import', $good, type => 'application/yaml');
is $r->{status}, 200, 'import a new policy and a token naming it';
is $r->{json}{policies}{created}, 1, '... one policy created';

# --- delete once no token names it

$r = admin($gw, 'PATCH', "/tokens/$tok_id", { policies => [] });
is $r->{status}, 200, 'the token names no policy';
$r = admin($gw, 'DELETE', '/policies/api-deny');
is $r->{status}, 200, 'DELETE: 200';
is call($gw, $tok, 'POST', '/v1/refunds', '{}')->{status}, 200, '... no longer applies';

my $log = do { local $/; open my $f, '<', "$gw->{dir}/logs/error.log" or die $!; <$f> };
like $log, qr/ailink admin: key sha256:\w+\.\.\. DELETE \S+policies\/api-deny: policy "api-deny" deleted/,
     'changes are logged with the admin key';
unlike $log, qr/\[(alert|crit|emerg)\]/, 'no alert in the error log';

stop_gateway($gw);
done_testing;
