# The store across workers: changes sent at once from many clients to two
# workers are serialized (a change waits while another is written, none
# is lost or refused), and every token is usable at once on every worker.

use strict;
use warnings;
use lib 't/lib';
use AILink::Test;
use AILink::Admin;
use Test::More;
use File::Temp qw(tempdir);
use POSIX ();

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

stop_gateway($gw);
done_testing();
