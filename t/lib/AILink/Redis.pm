package AILink::Redis;

# A real redis-server for the Redis backend's suites (t/160, t/161):
# started as a child in a temporary directory, no persistence, stopped at
# the end (or by hand, to test an outage).
#
#   my $redis = AILink::Redis->start(3950);
#   $redis->cli('GET', 'key');   # redis-cli's answer
#   $redis->stop;

use strict;
use warnings;

use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(sleep);

sub start {
    my ($class, $port, @args) = @_;
    my $dir = tempdir(CLEANUP => 1);
    my $self = bless { port => $port, dir => $dir, args => [@args] }, $class;
    $self->_spawn;
    return $self;
}

sub _spawn {
    my $self = shift;
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        open STDOUT, '>', "$self->{dir}/redis.log";
        open STDERR, '>&', \*STDOUT;
        { no warnings 'exec'; exec 'redis-server', '--port', $self->{port}, '--bind', '127.0.0.1',
             '--save', '', '--appendonly', 'no', '--daemonize', 'no',
             '--dir', $self->{dir}, @{$self->{args}}; }
        POSIX::_exit(127);
    }
    $self->{pid} = $pid;
    for (1 .. 100) {
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$self->{port}");
        if ($s) { close $s; return; }
        sleep 0.05;
    }
    die "redis-server on $self->{port} did not start";
}

sub restart { my $self = shift; $self->stop; $self->_spawn; }

sub stop {
    my $self = shift;
    return unless $self->{pid};
    kill 'TERM', $self->{pid};
    waitpid $self->{pid}, 0;
    delete $self->{pid};
}

sub cli {
    my ($self, @cmd) = @_;
    my @auth = $self->{password} ? ('-a', $self->{password},
                                    '--no-auth-warning') : ();
    my $out = qx{redis-cli -p $self->{port} @auth @cmd 2>&1};
    chomp $out;
    return $out;
}

sub DESTROY { $_[0]->stop }

1;
