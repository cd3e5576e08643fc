package AILink::Pg;

# A real PostgreSQL 15 for the audit sink's suite (t/162): a throwaway
# cluster made with initdb in a temporary directory, listening on
# 127.0.0.1 at the given port (and a unix socket in its directory), with
# a database and a user "ailink" (password "ailink-secret").  Run as the
# "postgres" user when the tests run as root (initdb refuses root).  It
# dies when PostgreSQL cannot be started: the suite fails, never skips.
#
#   my $pg = AILink::Pg->start(3960);
#   $pg->psql('SELECT count(*) FROM ailink_audit');   # psql's answer
#   $pg->stop;  $pg->start_again;                      # an outage

use strict;
use warnings;

use File::Temp qw(tempdir);
use IO::Socket::INET;
use Time::HiRes qw(sleep);

our $BIN = $ENV{AILINK_PG_BIN} || '/usr/lib/postgresql/15/bin';
our $USER = 'ailink';
our $PASSWORD = 'ailink-secret';

sub _as_owner {
    my @cmd = @_;
    return $> == 0 ? ('runuser', '-u', 'postgres', '--', @cmd) : @cmd;
}

sub _run {
    my ($self, @cmd) = @_;
    my $log = "$self->{dir}/cmd.log";
    my $rc = system(join(' ', map { "'$_'" } _as_owner(@cmd))
                    . " >>$log 2>&1");
    return $rc == 0;
}

sub start {
    my ($class, $port) = @_;

    die "no PostgreSQL 15 binaries in $BIN (apt-get install postgresql)\n"
        unless -x "$BIN/initdb" && -x "$BIN/pg_ctl";

    my $dir = tempdir('ailink-pg-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    chmod 0755, $dir;
    if ($> == 0) {
        my ($uid, $gid) = (getpwnam('postgres'))[2, 3];
        die "no postgres user\n" unless defined $uid;
        chown $uid, $gid, $dir;
    }

    my $self = bless { port => $port, dir => $dir,
                       data => "$dir/data" }, $class;

    open my $pw, '>', "$dir/pw" or die $!;
    print $pw "postgres\n";
    close $pw;
    chmod 0644, "$dir/pw";

    $self->_run("$BIN/initdb", '-D', $self->{data}, '-U', 'postgres',
                '--pwfile', "$dir/pw", '-A', 'scram-sha-256',
                '--auth-local', 'trust', '-E', 'UTF8', '--no-sync')
        or die "initdb failed: " . $self->log . "\n";

    $self->start_again;

    $self->psql("CREATE USER $USER PASSWORD '$PASSWORD'", 'postgres');
    $self->psql("CREATE DATABASE ailink OWNER $USER", 'postgres');
    die "cannot create the ailink database: " . $self->log . "\n"
        unless $self->psql("SELECT 1", 'ailink') eq '1';

    return $self;
}

sub start_again {
    my $self = shift;
    $self->_run("$BIN/pg_ctl", '-D', $self->{data}, '-l',
                "$self->{dir}/postgres.log", '-w', '-t', '20', '-o',
                "-p $self->{port} -k $self->{dir} "
                . "-c listen_addresses=127.0.0.1 -c fsync=off", 'start')
        or die "pg_ctl start failed: " . $self->log . "\n";
    $self->{running} = 1;
    for (1 .. 100) {
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$self->{port}");
        if ($s) { close $s; return; }
        sleep 0.05;
    }
    die "PostgreSQL on $self->{port} did not start\n";
}

sub stop {
    my ($self, $mode) = @_;
    return unless $self->{running};
    $self->_run("$BIN/pg_ctl", '-D', $self->{data}, '-m', $mode || 'fast',
                '-w', 'stop');
    delete $self->{running};
}

# psql's answer to one statement: unaligned, tuples only, "|" between
# fields, over the unix socket as the superuser
sub psql {
    my ($self, $sql, $db) = @_;
    $db ||= 'ailink';
    open my $f, '>', "$self->{dir}/q.sql" or die $!;
    print $f "$sql\n";
    close $f;
    chmod 0644, "$self->{dir}/q.sql";
    my $cmd = join ' ', map { "'$_'" } _as_owner("$BIN/psql", '-X', '-q',
        '-A', '-t', '-h', $self->{dir}, '-p', $self->{port}, '-U',
        'postgres', '-d', $db, '-v', 'ON_ERROR_STOP=1', '-f',
        "$self->{dir}/q.sql");
    my $out = qx{$cmd 2>&1};
    chomp $out;
    return $out;
}

sub log {
    my $self = shift;
    my $text = '';
    for my $f ("$self->{dir}/cmd.log", "$self->{dir}/postgres.log") {
        open my $l, '<', $f or next;
        local $/;
        $text .= <$l>;
    }
    return $text;
}

sub conninfo {
    my $self = shift;
    return "host=127.0.0.1 port=$self->{port} dbname=ailink user=$USER";
}

sub DESTROY { $_[0]->stop('immediate') }

1;
