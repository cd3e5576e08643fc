# Self-test of the fallback runner (t/runner/lib/Test/Nginx/Socket.pm): runs
# prove on the fixtures in fixtures/ with that runner forced on @INC and
# checks what prove reports.  A runner that lets a wrong expectation pass,
# or keeps one block's logs for the next, makes every suite worthless, so
# this is checked on its own.  Plain nginx only: the AILink module is not
# loaded.
#
#   t/run t/runner/t/selftest.t       (./test.sh runs it too)

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use Test::More;

my $here = dirname(abs_path(__FILE__));
my $lib  = abs_path("$here/../lib");
my $fix  = "$here/fixtures";

my $port = $ENV{TEST_NGINX_SERVER_PORT} || do {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => 0, Proto => 'tcp')
        or die "no free port: $!";
    $s->sockport;
};

# Runs "prove -v" on a fixture in a server root of its own.  Returns the
# output, prove's exit status and the server root.
sub run_fixture {
    my ($name, %env) = @_;
    my $servroot = tempdir('ailink-runner-XXXXXX', TMPDIR => 1, CLEANUP => 1)
                   . '/servroot';

    local %ENV = %ENV;
    $ENV{TEST_NGINX_SERVROOT}     = $servroot;
    $ENV{TEST_NGINX_SERVER_PORT}  = $port;
    $ENV{TEST_NGINX_LOAD_MODULES} = '';
    $ENV{TEST_NGINX_BINARY}     ||= '/usr/sbin/nginx';
    delete $ENV{$_} for qw(TEST_NGINX_USE_HUP TEST_NGINX_NO_CLEAN);
    $ENV{TEST_NGINX_USE_HUP} = 1 if $env{hup};

    my $out = `prove -v -I '$lib' '$fix/$name' 2>&1`;
    return ($out, $? >> 8, $servroot);
}

# prove's summary lines of the child, with "subtests" renamed so that
# test.sh, which counts "Failed N/M subtests" in our output, does not count
# the child's
sub show {
    my $out = shift;
    $out =~ s/subtests/child-subtests/g;
    $out =~ s/^/    /mg;
    return $out;
}

sub slurp {
    my $file = shift;
    open my $in, '<', $file or return '';
    local $/;
    return <$in>;
}

# The child's output is only ever shown through show(): matched directly, a
# failing like() would print it whole, "Failed N/M subtests" included.
sub summary {
    my $out = shift;
    my %s;
    ($s{files}, $s{tests}) = $out =~ /^Files=(\d+), Tests=(\d+),/m;
    ($s{result}) = $out =~ /^Result: (\w+)$/m;
    ($s{failed}) = $out =~ /^Failed (\d+)\/\d+ subtests/m;
    $s{not_ok} = () = $out =~ /^not ok /mg;
    $s{$_} //= '' for qw(files tests result failed);
    return \%s;
}

# every expectation met: a pass, with all 12 checks run
{
    my ($out, $status) = run_fixture('pass.tn');
    my $s = summary($out);
    is($status, 0, 'pass.tn: prove exits with 0');
    is($s->{tests}, 12, 'pass.tn: all 12 checks ran');
    is($s->{result}, 'PASS', 'pass.tn: prove says PASS');
    is($s->{not_ok}, 0, 'pass.tn: no check failed')
        or diag show($out);
}

# one wrong expectation per block: each block fails, once
{
    my ($out, $status) = run_fixture('fail.tn');
    my $s = summary($out);
    isnt($status, 0, 'fail.tn: prove exits with non-zero');
    is($s->{result}, 'FAIL', 'fail.tn: prove says FAIL');
    is($s->{failed}, 8,
       'fail.tn: prove counts 8 failed checks (the line test.sh counts)');

    my %failed;
    $failed{$1}++ while $out =~ /^not ok \d+ - \S+ TEST (\d+):/mg;
    my $ok = 1;
    for my $n (1 .. 8) {
        my ($what) = slurp("$fix/fail.tn") =~ /^=== TEST $n: (.*)$/m;
        is($failed{$n} // 0, 1, "fail.tn TEST $n: $what") or $ok = 0;
    }
    diag show($out) unless $ok;
}

# each block starts with empty logs, restarted or reloaded (HUP)
for my $hup (0, 1) {
    my $mode = $hup ? 'TEST_NGINX_USE_HUP=1' : 'restart';
    my ($out, $status, $servroot) = run_fixture('hup.tn', hup => $hup);
    is($status, 0, "hup.tn ($mode): the second block saw only its own log line")
        or diag show($out);

    my $log = slurp("$servroot/logs/error.log");
    like($log, qr/selftest-marker-2/,
         "hup.tn ($mode): error.log has the second block's line");
    unlike($log, qr/selftest-marker-1/,
           "hup.tn ($mode): error.log has none of the first block's");
    if ($hup) {
        like($log, qr/signal 1 \(SIGHUP\) received.*reconfiguring/,
             "hup.tn ($mode): nginx was reloaded, not restarted");
    } else {
        unlike($log, qr/reconfiguring/,
               "hup.tn ($mode): nginx was restarted, not reloaded");
    }
}

done_testing();
