# The store across workers: changes sent at once from many clients to two
# workers are serialized (a change waits while another is written, none
# is lost or refused), and every token is usable at once on every worker.
# The file's policies apply to tokens created through the API, by the
# same rules (apply_to all, projects, a token's own "policies").

use strict;
use warnings;
use lib 't/lib';
use AILink::Test;
use AILink::Admin;
use AILink::Policy;
use Test::More;
use File::Temp qw(tempdir);
use POSIX ();
use Time::HiRes qw(sleep);

my $mock = $ENV{TEST_NGINX_MOCK_PORT};
my $gw = admin_gateway(workers => 2);
my $dir = tempdir(CLEANUP => 1);
my $n = 12;

my @pids;
for my $i (1 .. $n) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        my $r = admin($gw, 'POST', '/tokens', { name => "par-$i",
                      upstream_url => "http://127.0.0.1:$mock/api" });
        open my $f, '>', "$dir/$i" or POSIX::_exit(1);
        print $f "$r->{status} " . ($r->{json}{token} // '') . "\n";
        close $f;
        POSIX::_exit(0);
    }
    push @pids, $pid;
}
waitpid $_, 0 for @pids;

my (@tokens, %status);
for my $i (1 .. $n) {
    open my $f, '<', "$dir/$i" or next;
    my ($st, $tok) = split ' ', scalar <$f>;
    $status{$st}++;
    push @tokens, $tok if $st == 201;
}
is $status{201} // 0, $n, "$n concurrent creates: all 201 (none refused as busy)"
    or diag explain \%status;

my $r = admin($gw, 'GET', '/tokens');
is scalar(grep { $_->{name} =~ /^par-/ } @{ $r->{json}{data} }), $n, 'all listed';

my $bad = 0;
for my $t (@tokens) {
    for (1 .. 3) {
        my $c = call($gw, $t, 'GET', '/v1/x');
        $bad++ unless $c->{status} == 200;
    }
}
is $bad, 0, 'every token works at once, whichever worker answers';

my @snap = glob "$gw->{data}/store-*.json";
is scalar(@snap), 1, 'one snapshot left after the writes (compaction)';

# a reload keeps the zone: the tokens, and writes go on from there
kill 'HUP', $gw->{pid};
sleep 1.5;
$bad = 0;
for my $t (@tokens) {
    $bad++ unless call($gw, $t, 'GET', '/v1/x')->{status} == 200;
}
is $bad, 0, 'after nginx -s reload every token still works';
$r = admin($gw, 'POST', '/tokens', { name => 'after-reload' });
is $r->{status}, 201, '... and a change after it is written';
is scalar(grep { $_->{name} =~ /^par-|^after-reload$/ } @{ admin($gw, 'GET', '/tokens')->{json}{data} }),
   $n + 1, '... on top of the others';

stop_gateway($gw);

# --- the file's policies and API tokens

my $cdir = tempdir(CLEANUP => 1);
open my $y, '>', "$cdir/policy.yaml" or die $!;
print $y AILink::Policy::policy_yaml(<<'YAML');
policies:
  - name: no-forbidden
    apply_to: all
    rules:
      - when: {field: request.path, op: starts_with, value: /v1/forbidden}
        then: {deny: {reason: "forbidden for everyone"}}
  - name: opt-in
    apply_to: {tokens: []}
    rules:
      - when: {field: request.path, op: starts_with, value: /v1/optin}
        then: {deny: {reason: "opted in"}}
  - name: acme-only
    apply_to: {projects: [acme]}
    rules:
      - when: {field: request.path, op: starts_with, value: /v1/acme}
        then: {deny: {reason: "not for acme"}}
YAML
close $y;

$gw = admin_gateway(config => "$cdir/policy.yaml");
my $up = "http://127.0.0.1:$mock/api";
my $plain = admin($gw, 'POST', '/tokens', { name => 'plain', upstream_url => $up })->{json}{token};
my $named = admin($gw, 'POST', '/tokens', { name => 'named', upstream_url => $up,
                                           policies => ['opt-in'] })->{json}{token};
my $acme = admin($gw, 'POST', '/tokens', { name => 'acme', project => 'acme',
                                          upstream_url => $up })->{json}{token};

my $c = call($gw, $plain, 'GET', '/v1/forbidden');
is $c->{status}, 403, 'apply_to: all covers a token created through the API';
is $c->{json}{error}{policy_name}, 'no-forbidden', '... by that policy';
is call($gw, $plain, 'GET', '/v1/optin')->{status}, 200, 'a policy it does not name does not apply';
is call($gw, $named, 'GET', '/v1/optin')->{status}, 403, 'a policy the token names applies';
is call($gw, $acme, 'GET', '/v1/acme')->{status}, 403, 'apply_to: projects covers it';
is call($gw, $plain, 'GET', '/v1/acme')->{status}, 200, '... not other projects';

$r = admin($gw, 'POST', '/tokens', { name => 'bad', policies => ['nope'] });
is $r->{status}, 400, 'an unknown policy: 400';
like $r->{json}{error}{message}, qr/unknown policy "nope"/, '... naming it';

stop_gateway($gw);
done_testing();
