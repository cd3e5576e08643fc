# Policies of the admin API across workers: a policy created, changed or
# removed is in force in every worker on its next request (each request
# on a new connection, spread over four workers), and a rate limit of an
# API policy counts once across the workers, exactly like the file's.

use strict;
use warnings;
use lib 't/lib';
use AILink::Test;
use AILink::Admin;
use Test::More;

my $mock = $ENV{TEST_NGINX_MOCK_PORT};
my $gw = admin_gateway(workers => 4,
                       http_extra => "    ailink_state_zone ailink_state 1m;\n");

my $r = admin($gw, 'POST', '/policies', { name => 'w-deny',
    rules => [{ when => { field => 'request.path', op => 'eq', value => '/v1/w' },
                then => { deny => { reason => 'no' } } }] });
is $r->{status}, 201, 'a policy';
$r = admin($gw, 'POST', '/tokens', { name => 'w', upstream_url => "http://127.0.0.1:$mock/api",
                                     credential_id => 'action', policies => ['w-deny'] });
is $r->{status}, 201, 'a token naming it';
my ($tok, $id) = ($r->{json}{token}, $r->{json}{id});

my @st = map { call($gw, $tok, 'GET', '/v1/w')->{status} } 1 .. 20;
is scalar(grep { $_ == 403 } @st), 20, 'denied by every worker, at once';

is admin($gw, 'PATCH', '/policies/w-deny', { mode => 'shadow' })->{status}, 200, 'shadow';
@st = map { call($gw, $tok, 'GET', '/v1/w')->{status} } 1 .. 20;
is scalar(grep { $_ == 200 } @st), 20, '... no worker refuses any more';

is admin($gw, 'PATCH', '/policies/w-deny', { mode => 'enforce' })->{status}, 200, 'enforce';
@st = map { call($gw, $tok, 'GET', '/v1/w')->{status} } 1 .. 20;
is scalar(grep { $_ == 403 } @st), 20, '... every worker refuses again';

# a limit across the workers: exactly the limit passes
$r = admin($gw, 'POST', '/policies', { name => 'w-rl', apply_to => { tokens => [$id] },
    rules => [{ when => { field => 'request.path', op => 'eq', value => '/v1/rl' },
                then => { rate_limit => { requests_per_hour => 7 } } }] });
is $r->{status}, 201, 'a rate limit of 7 an hour';
@st = map { call($gw, $tok, 'GET', '/v1/rl')->{status} } 1 .. 12;
my $ok = grep { $_ == 200 } @st;
# an hour may turn between two requests: then at most 14 pass
ok $ok == 7 || (sleep(0), $ok > 7 && $ok <= 12 && (gmtime)[1] == 0),
   "7 of 12 pass over four workers (@st)";
is scalar(grep { $_ == 429 } @st), 12 - $ok, '... the rest are 429';

# deleted: no worker keeps the old overlay's limit
is admin($gw, 'DELETE', '/policies/w-rl')->{status}, 200, 'the limit deleted';
@st = map { call($gw, $tok, 'GET', '/v1/rl')->{status} } 1 .. 12;
is scalar(grep { $_ == 200 } @st), 12, '... every worker lets all through';

my $log = do { local $/; open my $f, '<', "$gw->{dir}/logs/error.log" or die $!; <$f> };
unlike $log, qr/\[(alert|crit|emerg)\]/, 'no alert in the error log';

stop_gateway($gw);
done_testing;
