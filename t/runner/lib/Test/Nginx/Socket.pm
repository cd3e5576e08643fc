package Test::Nginx::Socket;

# A small, self-contained re-implementation of the subset of OpenResty's
# Test::Nginx::Socket that the AILink test suites use.  It is only put on
# @INC (by t/run) when the real module is not installed, so every .t file
# must keep working unchanged under both implementations.  Semantics, test
# names, defaults and test counts follow the real module; see
# t/runner/README for the (few, deliberate) differences.
#
# Block parsing, section filters (eval, chomp, ...), ONLY/SKIP/LAST and
# blocks() come from Test::Base, exactly as with the real module.

use strict;
use warnings;

use Test::Base ();          # loaded without import: see import() below
use Test::More ();
use Test::LongString ();
use HTTP::Response ();
use IO::Socket::INET ();
use IO::Select ();
use File::Spec ();
use File::Find ();
use File::Path qw(make_path remove_tree);
use List::Util qw(shuffle);
use POSIX qw(:sys_wait_h SIGQUIT SIGTERM SIGKILL SIGHUP SIGUSR1);
use Time::HiRes qw(sleep time);

our $VERSION = '0.29_ailink';

# We are a Test::Base subclass, so that Test::Base's default object (the one
# behind blocks(), plan(), ...) is an instance of this class and its import
# logic (plan arguments such as 'no_plan', strict/warnings source filter on
# the .t file, export of the Test::More functions) applies unchanged.
our @ISA = ('Test::Base');

our @EXPORT = qw(
    env_to_nginx is_str run_tests repeat_each config_preamble
    worker_connections master_process_enabled no_long_string workers
    master_on master_off log_level no_shuffle no_root_location use_hup
    server_name server_addr server_root html_dir server_port
    server_port_for_client timeout no_nginx_manager check_accum_error_log
    add_block_preprocessor bail_out add_cleanup_handler
    add_response_body_check
);

# Test::Base::import has a () prototype and relies on caller(); goto keeps
# the .t file as the caller.
sub import {
    goto &Test::Base::import;
}

#---------------------------------------------------------------------------
# Settings (environment first, then the exported setter functions)
#---------------------------------------------------------------------------

our $NginxBinary          = $ENV{TEST_NGINX_BINARY} || 'nginx';
our $ServerAddr           = '127.0.0.1';
our $ServerName           = 'localhost';
our $ServerPort           = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;
our $ServerPortForClient  = $ENV{TEST_NGINX_CLIENT_PORT} || $ServerPort;
our $RepeatEach           = 1;
our $Workers              = 1;
our $WorkerConnections    = 64;
our $LogLevel             = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $MasterProcessEnabled = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $NoRootLocation       = 0;
our $NoShuffle            = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $NoLongString;
our $UseHup               = $ENV{TEST_NGINX_USE_HUP};
our $UseValgrind          = $ENV{TEST_NGINX_USE_VALGRIND};
our $Timeout              = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $TestNginxSleep       = $ENV{TEST_NGINX_SLEEP} || 0.015;
our $LoadModules          = $ENV{TEST_NGINX_LOAD_MODULES};
our $Verbose              = $ENV{TEST_NGINX_VERBOSE};
our $NoNginxManager       = $ENV{TEST_NGINX_NO_NGINX_MANAGER} || 0;
our $CheckAccumErrLog     = $ENV{TEST_NGINX_CHECK_ACCUM_ERR_LOG};
our $WorkerUser           = $ENV{TEST_NGINX_WORKER_USER};
our $ForceRestartOnTest   = defined $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST}
                            ? $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} : 1;
our $ConfigPreamble       = '';

our (@EnvToNginx, @BlockPreprocessors, @CleanupHandlers, @ResponseBodyChecks);

our $ServRoot   = $ENV{TEST_NGINX_SERVROOT} || File::Spec->rel2abs('t/servroot');
our $ServerRoot;
*ServerRoot = \$ServRoot;       # alias, some people spell it this way
our $LogDir     = "$ServRoot/logs";
our $ErrLogFile = "$LogDir/error.log";
our $AccLogFile = "$LogDir/access.log";
our $HtmlDir    = "$ServRoot/html";
our $ConfDir    = "$ServRoot/conf";
our $ConfFile   = "$ConfDir/nginx.conf";
our $PidFile    = "$LogDir/nginx.pid";

our ($NginxVersion, $NginxRawVersion, $NginxConfigureArgs);

$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;
$ENV{TEST_NGINX_HTML_DIR}  ||= $HtmlDir;
my $WeSetServerPortEnv = !defined $ENV{TEST_NGINX_SERVER_PORT};
$ENV{TEST_NGINX_SERVER_PORT} = $ServerPort if $WeSetServerPortEnv;

srand($$ ^ time);

# state of the nginx instance we manage
my $NginxPid;           # our direct child: nginx master (or single process)
my $RunningConf;        # text of the nginx.conf it was started/reloaded with
my $RunningFiles;       # serialized user_files it was started with
my $PrevConfig;         # raw --- config of the previous block
my $ErrLogPos = 0;      # error.log offset of the current block
my $ConfigVersion = ''; # for TEST_NGINX_USE_HUP reload detection
my $FirstStart = 1;
my $InChild;

#---------------------------------------------------------------------------
# Exported setters/getters
#---------------------------------------------------------------------------

sub repeat_each (@)          { $RepeatEach = shift if @_; $RepeatEach }
sub workers (@)              { @_ ? ($Workers = shift) : $Workers }
sub worker_connections (@)   { @_ ? ($WorkerConnections = shift) : $WorkerConnections }
sub log_level (@)            { @_ ? ($LogLevel = shift) : $LogLevel }
sub master_on ()             { $MasterProcessEnabled = 'on' }
sub master_off ()            { $MasterProcessEnabled = 'off' }
sub master_process_enabled (@) {
    return $MasterProcessEnabled unless @_;
    $MasterProcessEnabled = shift() ? 'on' : 'off';
}
sub no_root_location ()      { $NoRootLocation = 1 }
sub no_shuffle ()            { $NoShuffle = 1 }
sub no_long_string ()        { $NoLongString = 1 }
sub no_nginx_manager ()      { $NoNginxManager = 1 }
sub use_hup ()               { $UseHup = 1 }
sub check_accum_error_log () { $CheckAccumErrLog = 1 }
sub config_preamble ($)      { $ConfigPreamble = shift }
sub timeout (@)              { @_ ? ($Timeout = shift) : $Timeout }
sub server_addr (@)          { @_ ? ($ServerAddr = shift) : $ServerAddr }
sub server_name (@)          { @_ ? ($ServerName = shift) : $ServerName }
sub server_port (@)          { @_ ? ($ServerPort = shift) : $ServerPort }
sub server_port_for_client (@) { @_ ? ($ServerPortForClient = shift) : $ServerPortForClient }
sub html_dir ()              { $HtmlDir }
sub server_root ()           { $ServRoot }
sub add_block_preprocessor (&) { unshift @BlockPreprocessors, shift }
sub add_cleanup_handler ($)  { unshift @CleanupHandlers, shift }
sub add_response_body_check ($) { push @ResponseBodyChecks, shift }

sub env_to_nginx (@) {
    Carp::croak("env_to_nginx: no arguments specified") unless @_;
    for my $v (@_) {
        Carp::croak("env_to_nginx: bad argument value: $v")
            if $v !~ /^[A-Za-z_]/ || $v =~ /\n/;
        push @EnvToNginx, $v;
    }
}

sub is_str (@) {
    my ($got, $expected, $desc) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    return Test::More::like($got, $expected, $desc)
        if ref $expected && ref $expected eq 'Regexp';
    return Test::More::is($got, $expected, $desc) if $NoLongString;
    return Test::LongString::is_string($got, $expected, $desc);
}

sub bail_out (@) {
    cleanup();
    Test::More::BAIL_OUT(join '', @_);
}

#---------------------------------------------------------------------------
# Small helpers
#---------------------------------------------------------------------------

sub vwarn { warn @_ if $Verbose }

# "500ms" -> 0.5, "2s" -> 2, "3" -> 3
sub parse_time {
    my $t = shift;
    return undef unless defined $t;
    $t =~ s/^\s+|\s+$//g;
    return $1 / 1000 if $t =~ /^([\d.]+)ms$/;
    return $1        if $t =~ /^([\d.]+)s$/;
    return $t;
}

# whitespace-squashed one-line summary (used in response_body_like names)
sub trim {
    my $s = shift;
    return undef unless defined $s;
    $s =~ s/^\s+|\s+$//g;
    $s =~ s/\n/ /g;
    $s =~ s/\s{2,}/ /g;
    return $s;
}

# escape a string for use inside a test name
sub fmt_str {
    my $s = shift;
    chomp $s;
    $s =~ s/"/\\"/g;
    $s =~ s/\r/\\r/g;
    $s =~ s/\n/\\n/g;
    return $s;
}

sub canon_version { sprintf "%d.%03d%03d", @_[0 .. 2] }

sub get_nginx_version {
    my $out = `$NginxBinary -V 2>&1`;
    if (!defined $out || $? != 0) {
        bail_out("Failed to get the version of the nginx binary "
                 . "\"$NginxBinary\": " . ($out // ''));
    }
    ($NginxConfigureArgs) = $out =~ /^configure arguments:(.*)$/m;
    $NginxConfigureArgs //= '';
    if ($out =~ m{(?:nginx|openresty)[^/]*/(\d+)\.(\d+)\.(\d+)}) {
        $NginxRawVersion = "$1.$2.$3";
        return canon_version($1, $2, $3);
    }
    bail_out("Failed to parse the output of \"nginx -V\": $out");
}

# Replace $TEST_NGINX_XXX in config-like sections.  $TEST_NGINX_RAND_PORT_N
# gets a free random port, stable within one block (like the real module).
sub expand_env {
    my ($text, $name, $rand_ports) = @_;
    return undef unless defined $text;
    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        my $var = $1;
        my $val;
        if ($var =~ /^TEST_NGINX_RAND_PORT_\d+$/) {
            $rand_ports->{$var} //= gen_rand_port($name, $rand_ports);
            $val = $ENV{$var} = $rand_ports->{$var};
        } else {
            bail_out("$name - No environment $var defined.\n")
                unless defined $ENV{$var};
            $val = $ENV{$var};
        }
        $val;
    }ge;
    return $text;
}

sub gen_rand_port {
    my ($name, $used) = @_;
    my %taken = ($ServerPort => 1, map { $_ => 1 } grep { defined } values %$used);
    for (1 .. 1000) {
        my $port = 1985 + int rand(63550);
        next if $taken{$port};
        my $s = IO::Socket::INET->new(LocalAddr => $ServerAddr,
                                      LocalPort => $port, Proto => 'tcp',
                                      Listen => 1);
        next unless $s;
        close $s;
        return $port;
    }
    bail_out("$name - Cannot find an available listening port number.\n");
}

# Is something listening on TCP $port?  Uses /proc so that probing does not
# create connections (which would show up in the block's error.log).
sub port_listening {
    my $port = shift;
    my $found_proc;
    for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $in, '<', $f or next;
        $found_proc = 1;
        while (<$in>) {
            # sl local_address rem_address st ...
            my (undef, $local, undef, $st) = split ' ', $_;
            next unless defined $st && $local =~ /:([0-9A-F]{4})$/;
            return 1 if hex($1) == $port && $st eq '0A';   # 0A = LISTEN
        }
    }
    return 0 if $found_proc;
    my $s = IO::Socket::INET->new(PeerAddr => $ServerAddr, PeerPort => $port,
                                  Proto => 'tcp', Timeout => 0.2);
    return $s ? 1 : 0;
}

# alive and not a zombie (kill 0 also succeeds on zombies)
sub pid_alive {
    my $pid = shift;
    return 0 unless $pid && kill 0, $pid;
    if (open my $in, '<', "/proc/$pid/stat") {
        my $stat = <$in> // '';
        return 0 if $stat =~ /^\d+ \(.*\) Z /s;
    }
    return 1;
}

sub log_tail {
    my ($file, $n) = @_;
    open my $in, '<', $file or return "(cannot open $file: $!)\n";
    my @lines = <$in>;
    splice @lines, 0, @lines - $n if @lines > $n;
    return join '', @lines;
}

#---------------------------------------------------------------------------
# Server root, config file, user files
#---------------------------------------------------------------------------

# Like the real module: the configuration, caches and temp directories go
# every time.  When nginx is started afresh the whole server root goes; in
# TEST_NGINX_USE_HUP mode (nginx keeps running) every file below it goes,
# the logs included, but the directories, nginx.pid and any *.sock, *.crt
# and *.key stay.  reload_nginx() then has nginx reopen its logs (USR1)
# before the HUP, so each block starts with empty logs in both modes.
sub setup_server_root {
    my $hup = shift;
    if (-d $ServRoot) {
        remove_tree($ConfDir, glob("$ServRoot/*_cache"), glob("$ServRoot/*_temp"));
        if ($hup) {
            File::Find::find({ bydepth => 1, no_chdir => 1, wanted => sub {
                return if -d $_ || /(?:\bnginx\.pid|\.sock|\.crt|\.key)$/;
                unlink $_ or warn "Failed to remove $_: $!\n";
            } }, $ServRoot);
        } else {
            remove_tree($HtmlDir, $LogDir);
        }
    }
    for my $d ($ServRoot, $LogDir, $HtmlDir, $ConfDir) {
        next if -d $d;
        mkdir $d or bail_out("Failed to do mkdir $d: $!\n");
    }
    open my $out, '>', "$HtmlDir/index.html"
        or bail_out("Can't open $HtmlDir/index.html for writing: $!\n");
    print $out '<html><head><title>It works!</title></head>'
             . '<body>It works!</body></html>';
    close $out;
}

# --- user_files: ">>> name [touch-date]" lines followed by the content;
# relative names go below html/.  An eval'd arrayref of [name, body, date]
# is accepted too.
sub parse_user_files {
    my ($block) = @_;
    my $files = $block->user_files;
    return [] unless $files;
    return $files if ref $files eq 'ARRAY';
    bail_out($block->name . " - wrong value type for --- user_files: "
             . ref $files) if ref $files;
    my (@list, $cur);
    for my $line (split /^/, $files) {
        if ($line =~ /^>>> (\S+)(?:\s+(.+))?/) {
            $cur = [$1, undef, $2];
            push @list, $cur;
        } elsif ($cur) {
            $cur->[1] .= $line;
        }
    }
    return \@list;
}

sub write_user_files {
    my ($block, $files) = @_;
    my $name = $block->name;
    for my $f (@$files) {
        my ($fname, $body, $date) = @$f;
        my $path = $fname =~ m{^/} ? $fname : "$HtmlDir/$fname";
        if ($path =~ m{(.*)/} && !-d $1) {
            make_path($1) or bail_out("$name - Cannot create directory $1");
        }
        open my $out, '>', $path
            or bail_out("$name - Cannot open $path for writing: $!\n");
        binmode $out;
        print $out $body // '';
        close $out;
        if ($date) {
            system("TZ=GMT touch -t '$date' '$path'") == 0
                or bail_out("$name - Failed to touch $path\n");
        }
    }
}

sub gen_config {
    my ($block, $config, $rand_ports) = @_;
    my $name = $block->name;

    my $main_config = expand_env(scalar($block->main_config), $name, $rand_ports) // '';
    my $http_config = expand_env(scalar($block->http_config), $name, $rand_ports) // '';
    my $post_main   = expand_env(scalar($block->post_main_config), $name, $rand_ports) // '';
    my $server_name = $block->server_name // $ServerName;
    $server_name =~ s/(['\\])/\\$1/g;
    my $master = $UseHup ? 'on' : $MasterProcessEnabled;   # HUP needs a master

    my $c = "# generated by t/runner/lib/Test/Nginx/Socket.pm for $name\n";
    for my $m (grep { length } split /\s+/, $LoadModules // '') {
        $c .= "load_module $m;\n";
    }
    $c .= "worker_processes  $Workers;\n"
        . "daemon off;\n"
        . "master_process $master;\n"
        . "error_log $ErrLogFile $LogLevel;\n"
        . "pid       $PidFile;\n";
    $c .= "env $_;\n" for qw(LD_PRELOAD LD_LIBRARY_PATH ASAN_OPTIONS);
    for my $v (@EnvToNginx) {
        $c .= $v =~ /\s/ ? "env '$v';\n" : "env $v;\n";
    }
    if (defined $WorkerUser) {
        $c .= "user $WorkerUser;\n";
    } elsif ($> == 0) {
        # otherwise workers would run as nobody/www-data and could not use
        # the server root
        $c .= "user root;\n";
    }

    $c .= "\n$main_config\n\n"
        . "events {\n    accept_mutex off;\n"
        . "    worker_connections  $WorkerConnections;\n}\n\n";

    $c .= "http {\n"
        . "    access_log $AccLogFile;\n"
        . "    default_type text/plain;\n"
        . "    keepalive_timeout  68;\n";

    # temp paths inside the server root, unless the module is compiled out
    # or the test sets the directive itself
    my $all = "$http_config\n" . ($config // '');
    for my $t (qw(client_body proxy fastcgi uwsgi scgi)) {
        next if $t ne 'client_body'
                && $NginxConfigureArgs =~ /--without-http_${t}_module/;
        next if $all =~ /\b${t}_temp_path\b/;
        $c .= "    ${t}_temp_path $ServRoot/${t}_temp;\n";
    }

    $c .= "\n$http_config\n\n"
        . "    server {\n"
        . "        listen          $ServerPort;\n"
        . "        server_name     '$server_name';\n\n"
        . "        client_max_body_size 30M;\n\n"
        . "        # Begin preamble config...\n$ConfigPreamble\n"
        . "        # End preamble config...\n\n"
        . "        # Begin test case config...\n" . ($config // '') . "\n"
        . "        # End test case config.\n\n";
    unless ($NoRootLocation) {
        $c .= "        location / {\n"
            . "            root $HtmlDir;\n"
            . "            index index.html index.htm;\n"
            . "        }\n";
    }
    $c .= "    }\n";
    if ($UseHup) {
        # lets us detect when a reloaded configuration is in effect
        $c .= "\n    server {\n"
            . "        listen          $ServerPort;\n"
            . "        server_name     'Test-Nginx';\n"
            . "        location = /ver {\n"
            . "            return 200 '$ConfigVersion';\n"
            . "        }\n"
            . "    }\n";
    }
    $c .= "}\n\n$post_main\n";
    return $c;
}

sub write_file {
    my ($path, $text) = @_;
    open my $out, '>', $path or bail_out("Can't open $path for writing: $!\n");
    print $out $text;
    close $out;
}

#---------------------------------------------------------------------------
# nginx process management.  nginx always runs with "daemon off" as our
# direct child (in its own process group), so we can reap it with waitpid
# and never depend on pid files or on init reaping orphans.
#---------------------------------------------------------------------------

sub nginx_command {
    my @cmd = ($NginxBinary, '-p', "$ServRoot/", '-c', $ConfFile);
    # -e (1.19.5+) keeps even the early startup errors in our error.log
    push @cmd, '-e', $ErrLogFile
        if defined $NginxVersion && $NginxVersion ge canon_version(1, 19, 5);
    if ($UseValgrind) {
        my @opts = $UseValgrind =~ /^\d+$/
            ? ('--tool=memcheck', '--leak-check=full',
               '--show-possibly-lost=no', '--gen-suppressions=all',
               (-f 'valgrind.suppress' ? '--suppressions=valgrind.suppress' : ()))
            : split ' ', $UseValgrind;
        unshift @cmd, 'valgrind', '--num-callers=100', '-q', @opts;
    }
    return @cmd;
}

sub start_nginx {
    my ($name) = @_;
    my @cmd = nginx_command();
    vwarn("starting: @cmd\n");
    warn "$name\n" if $UseValgrind;

    my $pid = fork();
    bail_out("$name - fork() failed: $!") unless defined $pid;
    if ($pid == 0) {
        $InChild = 1;
        setpgrp(0, 0);
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', '/dev/null';
        open STDERR, '>>', "$LogDir/stderr.log" unless $UseValgrind;
        { exec { $cmd[0] } @cmd }
        print STDERR "exec $cmd[0] failed: $!\n";
        POSIX::_exit(127);
    }
    $NginxPid = $pid;

    # wait until it listens on the server port (or dies)
    my $deadline = time + ($UseValgrind ? 60 : 10);
    while (1) {
        my $r = waitpid($pid, WNOHANG);
        if ($r == $pid) {
            my $status = $?;
            undef $NginxPid;
            return "nginx exited during startup (wait status $status)";
        }
        last if port_listening($ServerPort);
        return "nginx did not listen on port $ServerPort within the timeout"
            if time > $deadline;
        sleep 0.01;
    }
    sleep $TestNginxSleep;
    if (waitpid($pid, WNOHANG) == $pid) {
        undef $NginxPid;
        return "nginx exited right after startup (wait status $?); "
               . "is port $ServerPort used by another process?";
    }
    return undef;
}

sub stop_nginx {
    my ($name) = @_;
    return unless $NginxPid;
    my $pid = $NginxPid;
    undef $NginxPid;
    undef $RunningConf;
    local $?;

    kill SIGQUIT, $pid;     # graceful shutdown
    my $deadline = time + $Timeout;
    while (time < $deadline) {
        return if waitpid($pid, WNOHANG) == $pid;
        sleep 0.01;
    }
    warn "$name - timeout when waiting for the nginx process $pid to exit\n";
    kill SIGTERM, -$pid;
    $deadline = time + 1;
    while (time < $deadline) {
        if (waitpid($pid, WNOHANG) == $pid) {
            kill SIGKILL, -$pid;    # leftover workers, if any
            return;
        }
        sleep 0.02;
    }
    warn "$name - WARNING: killing the nginx process group $pid with force\n";
    kill SIGKILL, -$pid;
    waitpid($pid, 0);
}

# An nginx left over by an earlier (crashed or TEST_NGINX_NO_CLEAN) run.
sub kill_stale_nginx {
    return unless -f $PidFile;
    open my $in, '<', $PidFile or return;
    my $pid = <$in> // '';
    close $in;
    ($pid) = $pid =~ /(\d+)/ or return;
    return if $NginxPid && $pid == $NginxPid;
    return unless pid_alive($pid);
    my $cmdline = '';
    if (open my $c, '<', "/proc/$pid/cmdline") { local $/; $cmdline = <$c> // '' }
    return unless $cmdline =~ /nginx/;
    warn "WARNING: stopping stale nginx process $pid\n" if $Verbose;
    kill SIGQUIT, $pid;
    my $deadline = time + $Timeout;
    sleep 0.02 while time < $deadline && pid_alive($pid);
    kill SIGKILL, $pid if pid_alive($pid);
    unlink $PidFile;
}

# GET /ver on the Test-Nginx server (TEST_NGINX_USE_HUP mode)
sub fetch_config_version {
    my $s = IO::Socket::INET->new(PeerAddr => $ServerAddr,
                                  PeerPort => $ServerPort,
                                  Proto => 'tcp', Timeout => 1) or return '';
    print $s "GET /ver HTTP/1.0\r\nHost: Test-Nginx\r\n\r\n";
    my $resp = '';
    my $sel = IO::Select->new($s);
    while ($sel->can_read(1)) {
        my $n = sysread($s, my $buf, 4096);
        last unless $n;
        $resp .= $buf;
    }
    close $s;
    return $resp =~ /\r\n\r\n(.*)\z/s ? $1 : '';
}

sub reload_nginx {
    my ($name) = @_;
    # setup_server_root(1) removed the log files: reopen them first, as the
    # real module does
    vwarn("sending USR1 to $NginxPid\n");
    kill SIGUSR1, $NginxPid or return "failed to send USR1 to $NginxPid: $!";
    sleep $TestNginxSleep;
    vwarn("sending HUP to $NginxPid\n");
    kill SIGHUP, $NginxPid or return "failed to send HUP to $NginxPid: $!";
    # wait until the new config answers consistently (old workers gone)
    my ($ok, $deadline) = (0, time + ($UseValgrind ? 30 : 10));
    while (time < $deadline) {
        if (waitpid($NginxPid, WNOHANG) == $NginxPid) {
            undef $NginxPid;
            return "nginx exited during reload";
        }
        if (fetch_config_version() eq $ConfigVersion) {
            return undef if ++$ok >= 5;
        } else {
            $ok = 0;
        }
        sleep 0.02;
    }
    return "failed to reload configuration";
}

sub cleanup {
    $_->() for @CleanupHandlers;
    stop_nginx('cleanup') unless $ENV{TEST_NGINX_NO_CLEAN};
}

END {
    return if $InChild;
    local $?;               # keep the test script's exit status
    cleanup();
}

for my $sig (qw(INT TERM)) {
    $SIG{$sig} = sub {
        local $?;
        stop_nginx("signal $sig") unless $InChild;
        $SIG{$sig} = 'DEFAULT';
        kill $sig, $$;
    };
}

#---------------------------------------------------------------------------
# Test driver
#---------------------------------------------------------------------------

sub run_tests () {
    Test::More::plan('no_plan') unless Test::More->builder->has_plan;
    $NginxVersion = get_nginx_version();
    $ENV{TEST_NGINX_SERVER_PORT} = $ServerPort if $WeSetServerPortEnv;

    my @blocks = Test::Base::blocks();
    @blocks = shuffle(@blocks) unless $NoShuffle;
    for my $block (@blocks) {
        $_->($block) for @BlockPreprocessors;
        $block->set_value(name => "$0 " . $block->name);
        run_block($block);
    }
    cleanup();
}

# Evaluate the --- skip_nginx / skip_eval / todo meta sections.
sub skip_or_todo {
    my ($block) = @_;
    my $name = $block->name;
    my (%r);
    if (defined(my $spec = $block->skip_eval)) {
        $spec =~ /^\s*(\d+)\s*:\s*(.*)/s
            or bail_out("$name - Invalid --- skip_eval spec: $spec");
        my ($n, $code) = ($1, $2);
        my $res = eval $code;
        bail_out("$name - skip_eval - failed to eval \"$code\": $@") if $@;
        @r{qw(skip n reason)} = ($res, $n, 'skip_eval') if $res;
    }
    if (defined(my $spec = $block->skip_nginx)) {
        $spec =~ /^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)(?:\s*:\s*(.*?))?\s*$/
            or bail_out("$name - Invalid --- skip_nginx spec: $spec");
        my ($n, $op, $reason) = ($1, $2, $6);
        my $v = canon_version($3, $4, $5);
        my $hit = $op eq '<'  ? $NginxVersion lt $v
                : $op eq '<=' ? $NginxVersion le $v
                : $op eq '>'  ? $NginxVersion gt $v
                :               $NginxVersion ge $v;
        @r{qw(skip n reason)} = (1, $n, $reason || "nginx version $op $3.$4.$5")
            if $hit;
    }
    if (defined(my $spec = $block->todo)) {
        $spec =~ /^\s*(\d+)\s*:\s*(.*)/s
            or bail_out("$name - Invalid --- todo spec: $spec");
        @r{qw(todo n reason)} = (1, $1, $2);
    }
    return \%r;
}

sub run_block {
    my ($block) = @_;
    return if defined $block->SKIP;
    my $name = $block->name;

    local $LogLevel = $block->log_level || $LogLevel;
    my $st = skip_or_todo($block);

    my %rand_ports;
    my $config = expand_env(scalar($block->config), $name, \%rand_ports);

    if (!$NoNginxManager && !$st->{skip}) {
        if (defined $config) {
            prepare_nginx($block, $config, \%rand_ports);
        } elsif (!defined $PrevConfig) {
            bail_out("$name - No '--- config' section specified and could "
                     . "not get previous one. Use TEST_NGINX_NO_NGINX_MANAGER ?");
        } else {
            # no --- config: keep using the running nginx (as the real one)
            $ErrLogPos = -s $ErrLogFile // 0;
        }
    }

    if (defined(my $init = $block->init)) {
        eval "package main; no strict; $init; 1"
            or bail_out("$name - init failed: $@");
    }

    # The real module checks only the first of these sections that a block
    # has and silently ignores the others; such a block looks tested and is
    # not, so we fail it (deliberate difference, see t/runner/README).
    my @body_checks = grep { defined $block->$_ }
                      qw(response_body response_body_like response_body_unlike);
    if (@body_checks > 1 && !$st->{skip}) {
        Test::More::fail("$name - --- " . join(' and --- ', @body_checks)
            . " in one block: Test::Nginx checks only --- $body_checks[0]; "
            . "split the block or fold the checks into one pattern");
    }

    for my $rep (0 .. $RepeatEach - 1) {
        if ($rep > 0 && !$st->{skip}) {
            write_user_files($block, expand_user_files($block, \%rand_ports));
        }
        if ($st->{skip}) {
            SKIP: { Test::More::skip("$name - $st->{reason}", $st->{n}); }
        } elsif ($st->{todo}) {
            TODO: { Test::More::todo_skip("$name - $st->{reason}", $st->{n}); }
        } else {
            run_requests($block, $rep);
        }
    }

    if (my $total = $ENV{TEST_NGINX_ERROR_LOG}) {
        if (-s $ErrLogFile && open my $out, '>>', $total) {
            print $out "\n=== $name\n", log_tail($ErrLogFile, 1e9);
            close $out;
        }
    }
}

sub expand_user_files {
    my ($block, $rand_ports) = @_;
    return [ map { [ $_->[0], expand_env($_->[1], $block->name, $rand_ports),
                     $_->[2] ] } @{ parse_user_files($block) } ];
}

# Start, restart or HUP-reload nginx for this block.
sub prepare_nginx {
    my ($block, $config, $rand_ports) = @_;
    my $name = $block->name;
    $PrevConfig = $config;

    my $files = expand_user_files($block, $rand_ports);
    my $files_sig = join "\0", map { @$_[0, 1], $_->[2] // '' } @$files;
    $ConfigVersion = join '', map { ('a' .. 'z', 0 .. 9)[rand 36] } 1 .. 10
        if $UseHup;
    my $conf = gen_config($block, $config, $rand_ports);
    my $alive = $NginxPid && waitpid($NginxPid, WNOHANG) == 0;
    undef $NginxPid if $NginxPid && !$alive;

    if ($alive && !$ForceRestartOnTest && !$UseHup
        && defined $RunningConf && $conf eq $RunningConf
        && $files_sig eq $RunningFiles)
    {
        # identical configuration: keep the running instance
        $ErrLogPos = -s $ErrLogFile // 0;
        return;
    }

    if ($alive && $UseHup) {
        setup_server_root(1);
        write_user_files($block, $files);
        write_file($ConfFile, $conf);
        $ErrLogPos = 0;             # error.log was removed
        my $err = reload_nginx($name);
        if (!$err) {
            # Unlike the real module we start the block's error.log window
            # after the /ver polling requests, so that they do not show up
            # in the block's log checks; reload problems are still reported.
            my $reload_log = error_log_lines();
            warn "WARNING: $name - " . fmt_str($_) . "\n"
                for grep { /\[(?:alert|crit|emerg)\]/ } @$reload_log;
            ($RunningConf, $RunningFiles) = ($conf, $files_sig);
            return;
        }
        my $tb = Test::More->builder;
        $tb->no_ending(1);
        Test::More::fail("$name - $err\n" . log_tail($ErrLogFile, 20));
        stop_nginx($name);
    }

    stop_nginx($name);
    kill_stale_nginx() if $FirstStart;
    undef $FirstStart;
    setup_server_root(0);
    write_user_files($block, $files);
    write_file($ConfFile, $conf);
    $ErrLogPos = 0;
    if (my $err = start_nginx($name)) {
        my $tb = Test::More->builder;
        $tb->no_ending(1);
        Test::More::fail("$name - $err\n--- tail of $ErrLogFile:\n"
                         . log_tail($ErrLogFile, 20)
                         . (-s "$LogDir/stderr.log"
                            ? "--- nginx stderr:\n" . log_tail("$LogDir/stderr.log", 20)
                            : ''));
        return;
    }
    ($RunningConf, $RunningFiles) = ($conf, $files_sig);
}

#---------------------------------------------------------------------------
# Requests
#---------------------------------------------------------------------------

# Parse --- more_headers text into CRLF header lines; returns
# (header text, request-is-chunked flag).
sub parse_more_headers {
    my $in = shift // '';
    my ($out, $chunked) = ('', 0);
    for my $line (split /\n+/, $in) {
        next if $line =~ /^\s*#/;
        my ($k, $v) = split /:\s*/, $line, 2;
        $v //= '';
        $chunked = 1 if lc $k eq 'transfer-encoding' && $v eq 'chunked';
        $out .= "$k: $v\r\n";
    }
    return ($out, $chunked);
}

# Build one HTTP request from "METH [URI [VERSION]]\n[body]".
sub build_request {
    my ($name, $text, $more_headers, $conn) = @_;
    my ($first, $body) = split /\n/, $text, 2;
    $first //= '';
    my ($meth, $uri, $ver) =
        $first =~ /^\s*(\S+)(?:[ \t]+(\S+))?(?:[ \t]+(\S+))?\s*$/
        or bail_out("$name - Request line is not valid. Should be "
                    . "'meth [url [version]]' but got \"$first\".");
    $uri //= '/';
    $ver //= 'HTTP/1.1';
    $body //= '';

    my ($hdrs, $chunked) = parse_more_headers($more_headers);
    my $len = '';
    if (!$chunked && $body ne ''
        && ($more_headers // '') !~ /(?:^|\n)Content-Length:/)
    {
        $body =~ s/^\s+|\s+$//g;        # the real module trims the body too
        $len = "Content-Length: " . length($body) . "\r\n";
    }
    my $std = '';
    $std .= "Host: $ServerName\r\n"  unless $hdrs =~ /(?:^|\n)Host:/i;
    $std .= "Connection: $conn\r\n" unless $hdrs =~ /(?:^|\n)Connection/i;
    return "$meth $uri $ver\r\n$std$hdrs$len\r\n$body";
}

sub more_headers_for {
    my ($block, $idx, $what) = @_;
    my $mh = $block->more_headers;
    return $mh // '' unless ref $mh eq 'ARRAY';
    my $h = $mh->[$idx];
    bail_out("--- more_headers lacks data for the $what") unless defined $h;
    return $h;
}

sub packet_value { ref $_[0] eq 'HASH' ? $_[0]{value} : $_[0] }

# Returns a list of requests; each request is an arrayref of packets
# ({value => bytes, delay_before => secs}) sent over one connection.
sub requests_from_block {
    my ($block) = @_;
    my $name = $block->name;

    if (defined(my $raw = $block->raw_request)) {
        return [ map { ref $_ eq 'HASH' ? $_ : { value => $_ } }
                 ref $raw eq 'ARRAY' ? @$raw : ($raw) ];
    }

    if (my $reqs = $block->pipelined_requests) {
        bail_out("$name - invalid entries in --- pipelined_requests")
            unless ref $reqs eq 'ARRAY';
        my $all = '';
        for my $i (0 .. $#$reqs) {
            $all .= build_request($name, $reqs->[$i],
                                  more_headers_for($block, $i, "${i}th pipelined request"),
                                  $i == $#$reqs ? 'close' : 'keep-alive');
        }
        return [ { value => $all } ];
    }

    my $request = $block->request;
    return () unless defined $request;
    if (!ref $request) {
        1 while $request =~ s/^\s*\#[^\n]+\s+|^\s+//gs;   # comments, blanks
        return [ { value => build_request($name, $request,
                                          more_headers_for($block, 0, 'request'),
                                          'close') } ];
    }
    bail_out("$name - invalid ---request : MUST be string or array of requests")
        unless ref $request eq 'ARRAY';

    my @list;
    for my $i (0 .. $#$request) {
        my $one = $request->[$i];
        my $mh = more_headers_for($block, $i, "${i}th request");
        if (!ref $one) {
            push @list, [ { value => build_request($name, $one, $mh, 'close') } ];
        } elsif (ref $one eq 'ARRAY') {
            # request given as packets: headers are added to the joined
            # request, which is then sent in one go (delays are ignored)
            my $joined = join '', map { packet_value($_) } @$one;
            push @list, [ { value => build_request($name, $joined, $mh, 'close') } ];
        } else {
            bail_out("$name - Invalid syntax. $one should be a string or an array of packets.");
        }
    }
    return @list;
}

# Send one request (list of packets) on a new connection and return the
# raw response bytes (undef if we could not connect).
sub send_request {
    my ($block, $packets, $timeout) = @_;
    my $name = $block->name;
    my $addr = $block->server_addr_for_client // $ServerAddr;
    local $SIG{PIPE} = 'IGNORE';

    my $sock;
    for my $try (1 .. 50) {
        $sock = IO::Socket::INET->new(PeerAddr => $addr,
                                      PeerPort => $ServerPortForClient,
                                      Proto => 'tcp', Timeout => $timeout);
        last if $sock;
        my $err = $!;
        if ($NginxPid && waitpid($NginxPid, WNOHANG) == $NginxPid) {
            undef $NginxPid;
            warn "WARNING: nginx is already gone.\n" . log_tail($ErrLogFile, 20);
        }
        if ($try == 50 || !$NginxPid && !$NoNginxManager) {
            my $tb = Test::More->builder;
            $tb->no_ending(1);
            Test::More::fail("$name - Can't connect to $addr:$ServerPortForClient: $err (aborted)\n");
            return undef;
        }
        sleep 0.02 * $try > 0.5 ? 0.5 : 0.02 * $try;
    }
    $sock->blocking(0);
    my $sel = IO::Select->new($sock);
    my $resp = '';
    my $timed_out;

    my $first = 1;
  WRITE:
    for my $p (@$packets) {
        my $delay = $p->{delay_before} // ($first ? undef : $block->raw_request_middle_delay);
        sleep $delay if $delay;
        $first = 0;
        my ($buf, $off) = ($p->{value} // '', 0);
        while ($off < length $buf) {
            if (!$sel->can_write($timeout)) { $timed_out = 1; last WRITE }
            my $n = syswrite($sock, $buf, length($buf) - $off, $off);
            if (!defined $n) {
                next if $!{EAGAIN} || $!{EINTR};
                warn "WARNING: $name - write failed: $!\n";
                last WRITE;             # still read whatever came back
            }
            $off += $n;
        }
    }

    if (!$timed_out && defined(my $how = $block->shutdown)) {
        shutdown($sock, $how =~ /^\s*$/ ? 1 : $how);
    }

    while (!$timed_out) {
        if (!$sel->can_read($timeout)) { $timed_out = 1; last }
        my $n = sysread($sock, my $buf, 65536);
        if (!defined $n) {
            next if $!{EAGAIN} || $!{EINTR};
            warn "WARNING: $name - HTTP response read failure: $!\n";
            last;
        }
        last if $n == 0;
        $resp .= $buf;
    }
    close $sock;

    if ($timed_out && !defined $block->abort) {
        my $tb = Test::More->builder;
        $tb->no_ending(1);
        Test::More::fail("ERROR: client socket timed out - $name\n");
    }
    return $resp;
}

# Parse a raw response: returns (HTTP::Response, raw header text, leftover
# bytes after this response).  Chunked bodies are de-chunked.
sub parse_response {
    my ($name, $raw, $head_req) = @_;
    my $raw_headers = $raw =~ /^(.*?\r\n)\r\n/s ? $1 : '';
    my $res = HTTP::Response->parse($raw);
    my $code = $res->code;
    if (defined $code && $code !~ /^\d+$/) {
        $res->code(undef);
        $code = undef;
    }
    return ($res, $raw_headers, undef)
        if $code && ($code == 304 || $code == 101 || $head_req);

    my $left;
    my $te  = $res->header('Transfer-Encoding');
    my $len = $res->header('Content-Length');
    if (defined $te && $te eq 'chunked') {
        my $body = $res->content // '';
        my ($decoded, $pos) = ('', 0);
        while (1) {
            if ($body =~ /\G0[ \t]*\r\n\r\n/gc) {     # last chunk
                $left = substr($body, pos $body) if pos($body) < length $body;
                last;
            }
            if ($body =~ /\G[ \t]*([0-9A-Fa-f]+)[ \t]*\r\n/gc) {
                my $size = hex $1;
                my $at = pos $body;
                if (length($body) - $at < $size) {
                    chunk_error($name, "invalid chunked data received "
                                . "(not enought octets for the data section)");
                    return;
                }
                $decoded .= substr($body, $at, $size);
                pos($body) = $at + $size;
                if ($body !~ /\G\r\n/gc) {
                    chunk_error($name, "invalid chunked data received (expected CRLF).");
                    return;
                }
            } elsif ($body =~ /\G(.+)/gcs) {
                chunk_error($name, "invalid chunked body received: $1");
                return;
            } else {
                chunk_error($name, "no last chunk found - $body");
                return;
            }
        }
        $res->content($decoded);
    } elsif (defined $len && $len =~ /^\d+$/) {
        my $body = $res->content // '';
        if (length $body < $len) {
            warn "WARNING: $name - response body truncated: $len expected, "
                 . "but got " . length($body) . "\n";
        } elsif (length $body > $len) {
            $left = substr($body, $len);
            $res->content(substr($body, 0, $len));
        }
    }
    return ($res, $raw_headers, $left);
}

sub chunk_error {
    my ($name, $msg) = @_;
    my $tb = Test::More->builder;
    $tb->no_ending(1);
    Test::More::fail("$name - $msg");
}

# Pick the expectation for request $idx: with several requests the
# section must be an arrayref (like the real module).
sub indexed_value {
    my ($name, $value, $idx, $need_array) = @_;
    if (ref $value eq 'ARRAY') {
        return $value->[$idx] if $need_array || $idx == 0;
        bail_out("$name - SHOULD NOT HAPPEN: idx != 0 and don't need array.");
    }
    bail_out("$name - You asked for many requests, the expected results "
             . "should be arrays as well.") if $need_array;
    return $value;
}

sub run_requests {
    my ($block, $rep) = @_;
    my $name = $block->name;
    my @reqs = requests_from_block($block);
    bail_out("$name - request empty") unless @reqs;
    my $timeout = parse_time(scalar($block->timeout)) // $Timeout;

    my $pipelined = $block->pipelined_requests;
    my $need_array = $pipelined ? 1 : @reqs > 1;
    my $idx = 0;
    my $res;

    for my $r (0 .. $#reqs) {
        my $packets = $reqs[$r];
        my $bytes = join '', map { $_->{value} // '' } @$packets;
        my $head_req = $bytes =~ /^\s*HEAD\s+/ ? 1 : 0;
        my $raw = send_request($block, $packets, $timeout) // '';

        # pipelined: one connection, several responses back to back
        my $n = $pipelined ? scalar @$pipelined : 1;
        for my $k (1 .. $n) {
            my ($raw_headers, $left) = ('', undef);
            unless (defined $block->ignore_response) {
                ($res, $raw_headers, $left) = parse_response($name, $raw, $head_req);
                if (!$pipelined && defined $left && length $left) {
                    (my $l = $left) =~ s/([\0-\037\200-\377])/sprintf('\x{%02x}', ord $1)/ge;
                    warn "WARNING: $name - unexpected extra bytes after last "
                         . "chunk in response: \"$l\"\n";
                }
                check_error_code($block, $res, $idx, $need_array);
                check_raw_response_headers($block, $raw_headers, $idx, $need_array);
                check_response_headers($block, $res, $raw_headers, $idx, $need_array);
                transform_response_body($block, $res, $idx);
                check_response_body($block, $res, $idx, $rep, $need_array);
            }
            $raw = $left // '';
            my $last = $r == $#reqs && $k == $n;
            unless ($last) {
                # intermediate requests get their own log checks too
                sleep $block->wait if $block->wait;
                check_error_log($block, $rep);
                check_access_log($block, $rep) unless defined $block->ignore_response;
            }
            $idx++;
        }
    }

    sleep $block->wait if $block->wait;
    check_error_log($block, $rep);
    check_access_log($block, $rep) unless defined $block->ignore_response;
}

#---------------------------------------------------------------------------
# Checks (one Test::More assertion per compared item, names as the real one)
#---------------------------------------------------------------------------

sub check_error_code {
    my ($block, $res, $idx, $need_array) = @_;
    my $name = $block->name;
    my $code = ($res && $res->code) || '';
    if (defined $block->error_code_like) {
        my $pat = indexed_value($name, scalar($block->error_code_like), $idx, $need_array);
        Test::More::like($code, qr/$pat/sm, "$name - status code ok");
    } elsif (defined $block->error_code) {
        Test::More::is($code, indexed_value($name, scalar($block->error_code), $idx, $need_array),
                       "$name - status code ok");
    } else {
        Test::More::is($code, 200, "$name - status code ok");
    }
}

sub check_raw_response_headers {
    my ($block, $raw_headers, $idx, $need_array) = @_;
    my $name = $block->name;
    if (defined $block->raw_response_headers_like) {
        my $pat = indexed_value($name, scalar($block->raw_response_headers_like), $idx, $need_array);
        Test::More::like($raw_headers, qr/$pat/s, "$name - raw resp headers like");
    }
    if (defined $block->raw_response_headers_unlike) {
        my $pat = indexed_value($name, scalar($block->raw_response_headers_unlike), $idx, $need_array);
        Test::More::unlike($raw_headers, qr/$pat/s, "$name - raw resp headers unlike");
    }
}

# "Name: value" -> exact, "Name:" -> empty, "!Name" -> must be absent
sub parse_headers {
    my $s = shift // '';
    my @list;
    for my $line (split /\n/, $s) {
        $line =~ s/^\s+|\s+$//g;
        next if $line eq '';
        if ($line =~ s/^!\s*//) {
            push @list, [$line, undef];
        } else {
            my ($k, $v) = split /\s*:\s*/, $line, 2;
            push @list, [$k, $v // ''];
        }
    }
    return @list;
}

sub check_response_headers {
    my ($block, $res, $raw_headers, $idx, $need_array) = @_;
    my $name = $block->name;
    if (defined $block->response_headers) {
        for my $h (parse_headers(indexed_value($name, scalar($block->response_headers),
                                               $idx, $need_array))) {
            my ($key, $val) = @$h;
            if (!defined $val) {
                Test::More::unlike($raw_headers, qr/^\s*\Q$key\E\s*:/ms,
                                   "$name - header $key not present in the raw headers");
                next;
            }
            $val =~ s/\$ServerPort\b/$ServerPort/g;
            $val =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
            my $got = $res ? $res->header($key) : undef;
            Test::More::is($got // '', $val, "$name - header $key ok");
        }
    } elsif (defined $block->response_headers_like) {
        for my $h (parse_headers(indexed_value($name, scalar($block->response_headers_like),
                                               $idx, $need_array))) {
            my ($key, $val) = @$h;
            $val //= '';
            my $got = $res ? $res->header($key) : undef;
            Test::More::like($got // '', qr/^$val$/, "$name - header $key like ok");
        }
    }
}

# --- response_body_filters: uc lc md5_hex length ... or code refs
sub transform_response_body {
    my ($block, $res, $idx) = @_;
    my $filters = $block->response_body_filters;
    return unless defined $filters && $res && defined $res->content;
    my $name = $block->name;
    if (!ref $filters) {
        $filters =~ s/^\s+|\s+$//g;
        $filters = [ split /\s+/, $filters ];
    } elsif (ref $filters ne 'ARRAY') {
        $filters = [$filters];
    }
    if (@$filters && ref $filters->[0] eq 'ARRAY') {     # one list per request
        $filters = $filters->[$idx];
        bail_out("$name - the --- response_body_filters two-dimensional array "
                 . "unmatch the specified request($idx)") unless $filters;
    }
    my %builtin = (
        uc => sub { uc $_[0] }, lc => sub { lc $_[0] },
        ucfirst => sub { ucfirst $_[0] }, lcfirst => sub { lcfirst $_[0] },
        length => sub { length $_[0] },
        md5_hex => sub { require Digest::MD5; Digest::MD5::md5_hex($_[0]) },
        sha1_hex => sub { require Digest::SHA; Digest::SHA::sha1_hex($_[0]) },
    );
    my $body = $res->content;
    for my $f (ref $filters eq 'ARRAY' ? @$filters : ($filters)) {
        my $code = ref $f eq 'CODE' ? $f : $builtin{$f}
            or bail_out("$name - unknown filter, \"$f\", specified in the "
                        . "--- response_body_filters section");
        $body = $code->($body);
    }
    $res->content($body);
}

sub check_response_body {
    my ($block, $res, $idx, $rep, $need_array) = @_;
    my $name = $block->name;
    my $content = $res ? $res->content : undef;

    if (defined $block->response_body) {
        my $expected = indexed_value($name, scalar($block->response_body), $idx, $need_array);
        if (defined $expected && !ref $expected) {
            $expected =~ s/\$ServerPort\b/$ServerPort/g;
            $expected =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
        }
        if (ref $expected) {
            Test::More::like($content, $expected,
                "$name - response_body - like (repeated req $rep, req $idx)");
        } elsif ($NoLongString) {
            Test::More::is($content, $expected,
                "$name - response_body - response is expected (repeated req $rep, req $idx)");
        } else {
            Test::LongString::is_string($content, $expected,
                "$name - response_body - response is expected (repeated req $rep, req $idx)");
        }
    } elsif (defined $block->response_body_like || defined $block->response_body_unlike) {
        my $like = defined $block->response_body_like;
        my $type = $like ? 'like' : 'unlike';
        my $pat = indexed_value($name, $like ? scalar($block->response_body_like)
                                             : scalar($block->response_body_unlike),
                                $idx, $need_array);
        $pat =~ s/\$ServerPort\b/$ServerPort/g;
        $pat =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
        my $summary = trim($content) // '';
        my $desc = "$name - response_body_$type - response is expected ($summary)";
        # unanchored, with /s -- as the real module
        $like ? Test::More::like($content, qr/$pat/s, $desc)
              : Test::More::unlike($content, qr/$pat/s, $desc);
    }

    $_->($block, $content, $idx, $rep, 0) for @ResponseBodyChecks;
}

# New error.log lines since the previous read (the real module reads from a
# per-block offset that advances with every check).
sub error_log_lines {
    sleep $TestNginxSleep * 3;      # let log-phase output reach the file
    open my $in, '<', $ErrLogFile or return [];
    my $size = -s $in // 0;
    $ErrLogPos = 0 if $ErrLogPos > $size;       # file was recreated
    seek $in, $ErrLogPos, 0 if !$CheckAccumErrLog && $ErrLogPos > 0;
    my @lines = <$in>;
    $ErrLogPos = tell $in unless $CheckAccumErrLog;
    close $in;
    return \@lines;
}

sub access_log_lines {
    sleep $TestNginxSleep * 3;
    open my $in, '<', $AccLogFile or return [];
    my @lines = <$in>;
    return \@lines;
}

# section value -> list of patterns (strings are substrings, qr// regexes)
sub pattern_list {
    my $pats = shift;
    return [$pats] if ref $pats eq 'Regexp';
    return [@$pats] if ref $pats eq 'ARRAY';
    chomp $pats;
    return [ split /\n+/, $pats ];
}

sub line_matches {
    my ($line, $pat) = @_;
    return ref $pat ? $line =~ $pat : index($line, $pat) >= 0;
}

# --- error_log / --- no_error_log / --- access_log / --- no_access_log
sub check_log_patterns {
    my ($name, $which, $file, $want, $unwanted, $lines, $rep) = @_;
    if (defined $want) {
        my @pats = @{ pattern_list($want) };
        my @found;
        for my $line (@$lines) {
            for my $i (0 .. $#pats) {
                next if $found[$i] || !defined $pats[$i];
                next unless line_matches($line, $pats[$i]);
                $found[$i] = 1;
                Test::More::pass("$name - pattern \"$pats[$i]\" matches a line in $file (req $rep)");
            }
        }
        for my $i (0 .. $#pats) {
            next if $found[$i] || !defined $pats[$i];
            Test::More::fail("$name - pattern \"$pats[$i]\" should match a line in $file (req $rep)");
        }
    }
    if (defined $unwanted) {
        my @pats = @{ pattern_list($unwanted) };
        my @found;
        for my $li (0 .. $#$lines) {
            for my $i (0 .. $#pats) {
                next unless defined $pats[$i] && line_matches($lines->[$li], $pats[$i]);
                if ($found[$i]++) {
                    # more failures than planned tests
                    Test::More->builder->no_ending(1);
                }
                my $ctx = join '', grep { defined } @$lines[$li + 1 .. $li + 9];
                Test::More::fail("$name - pattern \"" . fmt_str($pats[$i])
                    . "\" should not match any line in $file but matches line \""
                    . fmt_str($lines->[$li]) . "\" (req $rep)\n$ctx");
            }
        }
        for my $i (0 .. $#pats) {
            next if $found[$i] || !defined $pats[$i];
            Test::More::pass("$name - pattern \"" . fmt_str($pats[$i])
                             . "\" does not match a line in $file (req $rep)");
        }
    }
}

sub check_error_log {
    my ($block, $rep) = @_;
    my $name = $block->name;
    my $lines;

    my $grep = $block->grep_error_log;
    if (defined $grep) {
        $grep = $grep->[$rep] if ref $grep eq 'ARRAY';
        my $expected = $block->grep_error_log_out;
        bail_out("$name - No --- grep_error_log_out defined but --- grep_error_log is defined")
            unless defined $expected;
        $expected = $expected->[$rep] if ref $expected eq 'ARRAY';
        $lines ||= error_log_lines();
        my $out = '';
        for my $line (@$lines) {
            my $m;
            if (ref $grep) { $m = $& if $line =~ $grep }
            elsif (index($line, $grep) >= 0) { $m = $grep }
            $out .= "$m\n" if defined $m && $m !~ /\n/;
        }
        if (ref $expected eq 'Regexp') {
            Test::More::like($out, $expected, "$name - grep_error_log_out (req $rep)");
        } else {
            is_str($out, $expected, "$name - grep_error_log_out (req $rep)");
        }
    } elsif (defined $block->grep_error_log_out) {
        bail_out("$name - No --- grep_error_log defined but --- grep_error_log_out is defined");
    }

    my ($want, $unwanted) = (scalar($block->error_log), scalar($block->no_error_log));
    if (defined $want || defined $unwanted) {
        $lines ||= error_log_lines();
        check_log_patterns($name, 'error_log', 'error.log', $want, $unwanted,
                           $lines, $rep);
    }

    # like the real one: surface serious nginx complaints as warnings
    $lines ||= error_log_lines();
    my $all = join "\n", map { ref $_ eq 'ARRAY' ? @$_ : $_ } grep { defined }
              ($want, $unwanted);
    for my $level (qw(alert crit emerg)) {
        next if index($all, "[$level") >= 0;
        for my $line (grep { /\[$level\]/ } @$lines) {
            warn "WARNING: $name - " . fmt_str($line) . "\n";
        }
    }
    for my $line (grep { /\bAssertion .*?failed\b/ } @$lines) {
        Test::More->builder->no_ending(1);
        chomp(my $l = $line);
        Test::More::fail("$name - $l\n");
    }
}

sub check_access_log {
    my ($block, $rep) = @_;
    my ($want, $unwanted) = (scalar($block->access_log), scalar($block->no_access_log));
    return unless defined $want || defined $unwanted;
    check_log_patterns($block->name, 'access_log', 'access.log', $want,
                       $unwanted, access_log_lines(), $rep);
}

1;
