# The service registry: create, list, get, delete through the admin API,
# and /v1/proxy/services/<name>/<rest> forwarded below the service's base
# URL with its credential, confined like the action gateway.

use strict;
use warnings;
use lib 't/lib';
use AILink::Test;
use AILink::Admin;
use Test::More;

my $mock = $ENV{TEST_NGINX_MOCK_PORT};
my $gw = admin_gateway();

my $r = admin($gw, 'POST', '/services', { name => 'stripe',
    base_url => "http://127.0.0.1:$mock/api", service_type => 'generic',
    credential_id => 'action' });
is $r->{status}, 201, 'create a service';
is $r->{json}{name}, 'stripe', '... named';

$r = admin($gw, 'POST', '/services', { name => 'stripe', base_url => "http://127.0.0.1:$mock/x" });
is $r->{status}, 409, 'a duplicate name: 409';
$r = admin($gw, 'POST', '/services', { name => 'nobase' });
is $r->{status}, 400, 'no base_url: 400';
$r = admin($gw, 'POST', '/services', { name => 'badurl', base_url => 'gopher://x' });
is $r->{status}, 400, 'a bad base_url: 400';
$r = admin($gw, 'POST', '/services', { name => 'badcred', base_url => "http://127.0.0.1:$mock/x",
                                       credential_id => 'nope' });
is $r->{status}, 400, 'an unknown credential: 400';
like $r->{json}{error}{message}, qr/unknown credential "nope"/, '... named';
$r = admin($gw, 'POST', '/services', { name => 'x', base_url => "http://127.0.0.1:$mock/x", port => 1 });
is $r->{status}, 400, 'an unknown field: 400';
$r = admin($gw, 'POST', '/services', { name => '../x', base_url => "http://127.0.0.1:$mock/x" });
is $r->{status}, 400, 'a name with a slash: 400';

$r = admin($gw, 'GET', '/services');
is scalar(@{ $r->{json}{data} }), 1, 'list: one service';
$r = admin($gw, 'GET', '/services/stripe');
is $r->{json}{base_url}, "http://127.0.0.1:$mock/api", 'get it';
$r = admin($gw, 'GET', '/services/none');
is $r->{status}, 404, 'a missing service: 404';

my $c = call($gw, $ACTION_TOKEN, 'POST', '/v1/proxy/services/stripe/v1/charges?a=1', '{"amount":5000}');
is $c->{status}, 200, 'proxied';
is $c->{json}{echo}{path}, '/api/v1/charges', '... below the base URL';
is $c->{json}{echo}{query}, 'a=1', '... with the query';
is $c->{json}{echo}{headers}{'x-api-key'}, $ENV{AILINK_TEST_ACTION_KEY},
   '... with the service\'s credential';

$c = call($gw, $LLM_TOKEN, 'GET', '/v1/proxy/services/stripe/v1/balance');
is $c->{status}, 200, 'an LLM token may call a service too';
is $c->{json}{echo}{path}, '/api/v1/balance', '... same path';

$c = call($gw, 'ailink_v1_proj_x_tok_nothing', 'GET', '/v1/proxy/services/stripe/v1/x');
is $c->{status}, 401, 'a bad token: 401';

for my $p ('/v1/proxy/services/stripe/../../secret', '/v1/proxy/services/stripe/%2e%2e/x',
           '/v1/proxy/services/stripe/a%2f..%2f..%2fx', '/v1/proxy/services/stripe/%252e%252e/x',
           '/v1/proxy/services/stripe/a\\b') {
    $c = call($gw, $ACTION_TOKEN, 'GET', $p);
    is $c->{status}, 400, "confined: $p refused";
}

for my $p ('/v1/proxy/services/str%69pe/v1/x', '/v1/proxy/services/./v1/x',
           '/v1/proxy/%73ervices/stripe/v1/x') {
    $c = call($gw, $ACTION_TOKEN, 'GET', $p);
    ok(($c->{status} == 400 || $c->{status} == 404 || $c->{json}{echo}{path} !~ m{^/api}),
       "an encoded service path is not a service: $p ($c->{status})");
}

$c = call($gw, $ACTION_TOKEN, 'GET', '/v1/proxy/services/nothing/x');
is $c->{status}, 404, 'an unknown service: 404';
is $c->{json}{error}{code}, 'not_found', '... not_found';

$r = admin($gw, 'DELETE', '/credentials/action');
is $r->{status}, 409, 'a credential of the file cannot be deleted';

$r = admin($gw, 'POST', '/credentials', { name => 'svc', secret => 'svc-secret-1',
                                          scheme => 'bearer' });
is $r->{status}, 201, 'a vault credential';
$r = admin($gw, 'POST', '/services', { name => 'vaulted',
    base_url => "http://127.0.0.1:$mock/v2", credential_id => 'svc' });
is $r->{status}, 201, 'a service using it';
$c = call($gw, $ACTION_TOKEN, 'GET', '/v1/proxy/services/vaulted/items');
is $c->{json}{echo}{headers}{authorization}, 'Bearer svc-secret-1', 'the vault secret is injected';
is $c->{json}{echo}{path}, '/v2/items', '... below its base URL';
$r = admin($gw, 'DELETE', '/credentials/svc');
is $r->{status}, 409, 'a credential used by a service cannot be deleted';

$r = admin($gw, 'DELETE', '/services/vaulted');
is $r->{status}, 200, 'delete a service';
$c = call($gw, $ACTION_TOKEN, 'GET', '/v1/proxy/services/vaulted/items');
is $c->{status}, 404, '... gone at once';
$r = admin($gw, 'DELETE', '/credentials/svc');
is $r->{status}, 200, '... and its credential can go now';
$r = admin($gw, 'DELETE', '/services/vaulted');
is $r->{status}, 404, 'delete a missing service: 404';

my $audit = `cat $gw->{dir}/logs/audit.jsonl`;
like $audit, qr{"path":"/v1/proxy/services/stripe/v1/charges","upstream":"http://127.0.0.1:$mock/api"}, 'audited with the client path and the service URL';
unlike $audit, qr/svc-secret-1/, 'no secret in the audit';

# --- GET /audit: the audit file, newest first, filtered and paged

call($gw, $ACTION_TOKEN, 'GET', '/v1/proxy/services/stripe/v1/audit-a')
    for 1 .. 3;
$r = admin($gw, 'GET', '/audit?token_id=tok_action&limit=2');
is $r->{status}, 200, 'query the audit';
is scalar(@{ $r->{json}{data} }), 2, '... limit';
is $r->{json}{data}[0]{path}, '/v1/proxy/services/stripe/v1/audit-a', '... newest first';
ok !(grep { $_->{token_id} ne 'tok_action' } @{ $r->{json}{data} }), '... by token';
my $all = admin($gw, 'GET', '/audit?token_id=tok_action&limit=1000')->{json}{data};
my $page = admin($gw, 'GET', '/audit?token_id=tok_action&limit=2&offset=2')->{json}{data};
is_deeply [map { $_->{request_id} } @$page], [map { $_->{request_id} } @$all[2, 3]],
          '... offset pages through';
$r = admin($gw, 'GET', '/audit?status=401');
ok @{ $r->{json}{data} } && !(grep { $_->{status} != 401 } @{ $r->{json}{data} }), '... by status';
$r = admin($gw, 'GET', '/audit?agent_name=default-agent');
ok @{ $r->{json}{data} } && !(grep { $_->{token_id} ne 'tok_llm' } @{ $r->{json}{data} }),
   '... by agent name';
$r = admin($gw, 'GET', '/audit?since=2999-01-01');
is scalar(@{ $r->{json}{data} }), 0, '... since';
$r = admin($gw, 'GET', '/audit?limit=0');
is $r->{status}, 400, 'a bad limit: 400';
$r = admin($gw, 'GET', '/audit', undef, key => $ACTION_TOKEN);
is $r->{status}, 403, 'the audit needs an admin key';

stop_gateway($gw);
done_testing();
