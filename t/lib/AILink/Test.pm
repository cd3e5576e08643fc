package AILink::Test;

# Shared set-up for the AILink suites, used before Test::Nginx::Socket:
#
#   use lib 't/lib';
#   use AILink::Test;
#   use Test::Nginx::Socket 'no_plan';
#
# It starts the project's mock provider (t/mock/mock_provider.py) on a free
# port unless TEST_NGINX_MOCK_PORT names a running one, stops it when the
# file ends, and exports what the test configs use:
#
#   TEST_NGINX_MOCK_PORT     the mock provider's port
#   TEST_NGINX_MOCK_TLS_PORT the same over TLS, as "mock.test"
#   TEST_NGINX_MOCK_CERT     its self-signed certificate
#   TEST_NGINX_AILINK_ROOT   the repository root (for includes)
#   AILINK_TEST_*_KEY        the upstream keys t/conf/ailink.yaml reads
#
# The test tokens of t/conf/ailink.yaml are exported as package variables.

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use IO::Socket::INET;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep);

use Exporter 'import';
our @EXPORT = qw($LLM_TOKEN $LLM_BYOK_TOKEN $ACTION_TOKEN $BYOK_TOKEN
                 $QUERY_TOKEN $BASIC_TOKEN $DISABLED_TOKEN $EXPIRED_TOKEN
                 $KEYLESS_TOKEN ailink_defaults mock_get mock_reset
                 sent_body error_of start_nginx check_worker_memory);

our $LLM_TOKEN      = 'ailink_v1_proj_test_tok_llm0000000000000000000001';
our $LLM_BYOK_TOKEN = 'ailink_v1_proj_test_tok_llmbyok0000000000000000001';
our $BASIC_TOKEN    = 'ailink_v1_proj_test_tok_basic00000000000000000001';
our $ACTION_TOKEN   = 'ailink_v1_proj_test_tok_action00000000000000000001';
our $BYOK_TOKEN     = 'ailink_v1_proj_test_tok_byok000000000000000000001';
our $QUERY_TOKEN    = 'ailink_v1_proj_test_tok_query00000000000000000001';
our $DISABLED_TOKEN = 'ailink_v1_proj_test_tok_disabled000000000000000001';
our $EXPIRED_TOKEN  = 'ailink_v1_proj_test_tok_expired0000000000000000001';
our $KEYLESS_TOKEN  = 'ailink_v1_proj_test_tok_keyless0000000000000000001';

my $root = abs_path(dirname(__FILE__) . '/../../..');
my $mock_pid;

$ENV{TEST_NGINX_AILINK_ROOT} = $root;
$ENV{AILINK_TEST_OPENAI_KEY} ||= 'sk-test-openai-secret-0001';
$ENV{AILINK_TEST_ACTION_KEY} ||= 'sk-test-action-secret-0001';
$ENV{AILINK_TEST_ANTHROPIC_KEY} ||= 'sk-ant-test-0001';
$ENV{AILINK_TEST_GEMINI_KEY} ||= 'gm-test-0001';
$ENV{AILINK_TEST_BASIC_KEY}  ||= 'user:test-basic-secret-0001';

sub free_port {
    my $sock = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                     LocalPort => 0, Proto => 'tcp')
        or die "no free port: $!";
    my $port = $sock->sockport;
    close $sock;
    return $port;
}

# a self-signed certificate for mock.test, so TLS and SNI can be tested
sub make_cert {
    my $dir = "/tmp/ailink-test-cert.$$";
    mkdir $dir;
    system("openssl req -x509 -newkey rsa:2048 -nodes -days 2"
           . " -subj /CN=mock.test -addext subjectAltName=DNS:mock.test"
           . " -keyout $dir/key.pem -out $dir/cert.pem >/dev/null 2>&1") == 0
        or die "openssl req failed\n";
    return $dir;
}

sub start_mock {
    my $port = free_port();
    my $tls_port = free_port();
    my $cert = make_cert();
    my $ready = "/tmp/ailink-mock-ready.$$";
    unlink $ready;

    $mock_pid = fork;
    die "fork: $!" unless defined $mock_pid;

    if ($mock_pid == 0) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>>', "/tmp/ailink-mock.$$.log";
        exec 'python3', "$root/t/mock/mock_provider.py", '--port', $port,
             '--tls-port', $tls_port, '--cert', "$cert/cert.pem",
             '--key', "$cert/key.pem", '--ready-file', $ready,
             '--log-level', 'WARNING';
        die "exec python3: $!";
    }

    for (1 .. 200) {
        last if -s $ready;
        if (waitpid($mock_pid, WNOHANG) == $mock_pid) {
            die "mock provider exited: see /tmp/ailink-mock.$$.log\n";
        }
        sleep 0.05;
    }

    die "mock provider did not start\n" unless -s $ready;
    unlink $ready;

    $ENV{TEST_NGINX_MOCK_PORT} = $port;
    $ENV{TEST_NGINX_MOCK_TLS_PORT} = $tls_port;
    $ENV{TEST_NGINX_MOCK_CERT} = "$cert/cert.pem";
}

# GET a mock control path, e.g. mock_get('/_mock/requests/last')
sub mock_get {
    my ($path, $method) = @_;
    require HTTP::Tiny;
    my $res = HTTP::Tiny->new(timeout => 5)->request($method || 'GET',
        "http://127.0.0.1:$ENV{TEST_NGINX_MOCK_PORT}$path");
    return $res->{content};
}

# The gateway configuration most blocks share, given to blocks that do not
# set their own: install with add_block_preprocessor(\&ailink_defaults)
# and no_root_location().
# /audit serves the audit file and /_mock/ reaches the mock's records.
our $HTTP_CONFIG = <<'CONF';
    ailink_config $TEST_NGINX_AILINK_ROOT/t/conf/ailink.yaml;
CONF

our $CONFIG = <<'CONF';
    ailink_audit_log logs/audit.jsonl;

    include $TEST_NGINX_AILINK_ROOT/conf-examples/ailink-errors.conf;

    location = /healthz {
        ailink_health;
        ailink_audit_log off;
    }

    location = /readyz {
        ailink_ready;
        ailink_audit_log off;
    }

    location = /audit {
        ailink_audit_log off;
        default_type text/plain;
        alias logs/audit.jsonl;
    }

    location /_mock/ {
        ailink_audit_log off;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }

    location / {
        ailink_auth on;
        include $TEST_NGINX_AILINK_ROOT/conf-examples/ailink-proxy.conf;
        client_max_body_size 64k;
    }
CONF

sub ailink_defaults {
    my $block = shift;

    $block->set_value('http_config', $HTTP_CONFIG)
        unless defined $block->http_config;
    $block->set_value('config', $CONFIG) unless defined $block->config;
}

# Memory of a stream, measured in the worker that carried it.  A block
# uses "--- http_config eval: $AILink::Test::SLOW_CLIENT_HTTP_CONFIG" and
# "--- config eval: $AILink::Test::SLOW_CLIENT_CONFIG", calls
# check_worker_memory() once, and asks, in order:
#
#   GET /_worker                      the worker's pid: its peak RSS is
#                                     reset (clear_refs) and VmRSS noted
#   POST /slow/v1/chat/completions    the stream, through a front proxy in
#                                     the same nginx that holds 16k of it
#                                     and sends it on at 128 KB/s: a
#                                     client slower than the upstream.  The
#                                     gateway it asks has a 16k socket send
#                                     buffer, so what the client has not
#                                     read stays in the gateway, not in
#                                     the kernel
#   GET /_worker?max_kb=N             fails unless the worker's peak RSS
#                                     (VmHWM) grew by less than N KB
#
# Under a sanitizer (freed memory held in quarantine) nothing is measured.
our $SLOW_CLIENT_HTTP_CONFIG = $HTTP_CONFIG . <<'CONF';
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1 sndbuf=16k;
        ailink_audit_log logs/audit.jsonl;

        location / {
            ailink_auth on;
            include $TEST_NGINX_AILINK_ROOT/conf-examples/ailink-proxy.conf;
        }
    }
CONF

our $SLOW_CLIENT_CONFIG = $CONFIG . <<'CONF';
    location = /_worker {
        ailink_audit_log off;
        return 200 "worker $pid max_kb=$arg_max_kb\n";
    }

    location /slow/ {
        ailink_audit_log off;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/;
        proxy_http_version 1.1;
        proxy_buffer_size 4k;
        proxy_buffers 4 4k;
        proxy_busy_buffers_size 4k;
        proxy_max_temp_file_size 0;
        limit_rate 128k;
    }
CONF

my %rss_base;

sub proc_status_kb {
    my ($pid, $key) = @_;
    open my $f, '<', "/proc/$pid/status" or return undef;
    while (my $line = <$f>) {
        return $1 if $line =~ /^$key:\s+(\d+) kB/;
    }
    return undef;
}

sub check_worker_memory {
    Test::Nginx::Socket::add_response_body_check(sub {
        my ($block, $body, $idx, $rep, $dry_run) = @_;
        return unless defined $body && $body =~ /^worker (\d+) max_kb=(\d*)$/;
        my ($pid, $max) = ($1, $2);
        my $name = $block->name;

        if ($ENV{TEST_NGINX_BINARY} && $ENV{TEST_NGINX_BINARY} =~ /sanitiz/
            || $ENV{ASAN_OPTIONS})
        {
            Test::More::pass("$name - worker memory not measured under a "
                             . "sanitizer") if length $max;
            return;
        }

        if (!length $max) {
            if (open my $c, '>', "/proc/$pid/clear_refs") {
                print $c "5\n";
                close $c;
            }
            $rss_base{$name} = proc_status_kb($pid, 'VmRSS');
            return;
        }

        my $hwm = proc_status_kb($pid, 'VmHWM');
        my $grew = (defined $hwm && defined $rss_base{$name})
                   ? $hwm - $rss_base{$name} : 1e9;
        Test::More::cmp_ok($grew, '<', $max,
            "$name - the worker's peak memory grew by $grew KB "
            . "(under $max KB)");
    });
}

sub mock_reset {
    mock_get('/_mock/requests', 'DELETE');
}

# Response body filters.  The body the mock received, as the gateway wrote
# it, from a record of /_mock/requests/last: its text, for the parsed
# "json" may hold Python's Infinity, which is not JSON.
sub sent_body {
    require JSON::PP;
    my ($s) = shift =~ /"body":("(?:[^"\\]|\\.)*")/s
        or return "no body\n";
    my $b = JSON::PP->new->utf8->allow_nonref->decode($s);
    utf8::encode($b);
    return "$b\n";
}

# An error envelope's code and message; anything else as it is.
sub error_of {
    require JSON::PP;
    my $e = eval { JSON::PP->new->utf8->decode(shift) };
    return ($e && $e->{error}) ? "$e->{error}{code}: $e->{error}{message}\n"
                               : "not an error\n";
}

# For plain Test::More suites that signal nginx themselves: writes an
# nginx.conf around the given http{} server lines and starts nginx as a
# direct child, waiting until it listens.  Returns a hash with pid, port,
# dir (the prefix, logs in dir/logs) and url; stopped with SIGQUIT at exit.
#
#   my $nginx = start_nginx(server => "location / { ... }",
#                           http => "...", master => 1, workers => 2,
#                           dir => $prefix);   # reuse a prefix (restarts)
my @nginx_pids;

sub start_nginx {
    my %o = @_;
    require File::Temp;

    my $bin = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
    my @modules = split ' ', ($ENV{TEST_NGINX_LOAD_MODULES}
                              || "$root/build/release/ngx_ailink_module.so");
    my $dir = $o{dir} // File::Temp::tempdir(CLEANUP => 1);
    my $workers = $o{workers} // 1;
    my $port = free_port();
    my $master = $o{master} ? 'on' : 'off';
    my $user = $> == 0 ? 'user root;' : '';
    my $http = $o{http}
               // "ailink_config $root/t/conf/ailink.yaml;";

    mkdir "$dir/logs" unless -d "$dir/logs";
    open my $c, '>', "$dir/nginx.conf" or die $!;
    print $c "load_module $_;\n" for @modules;
    print $c <<"CONF";
$user
daemon off;
master_process $master;
worker_processes $workers;
error_log logs/error.log info;
pid logs/nginx.pid;
events {}
http {
    access_log off;
    client_body_temp_path $dir/tmp;
    proxy_temp_path $dir/tmp;
    $http
    server {
        listen 127.0.0.1:$port;
        $o{server}
    }
}
CONF
    close $c;

    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        exec $bin, '-p', "$dir/", '-c', "$dir/nginx.conf";
        die "exec $bin: $!";
    }

    push @nginx_pids, $pid;

    for (1 .. 200) {
        last if IO::Socket::INET->new("127.0.0.1:$port");
        die "nginx exited: see $dir/logs/error.log\n"
            if waitpid($pid, WNOHANG) == $pid;
        sleep 0.05;
    }

    return { pid => $pid, port => $port, dir => $dir,
             url => "http://127.0.0.1:$port" };
}

start_mock() unless $ENV{TEST_NGINX_MOCK_PORT};

END {
    for my $pid (@nginx_pids) {
        next unless kill 0, $pid;
        kill 'QUIT', $pid;
        waitpid($pid, 0);
    }

    if ($mock_pid) {
        kill 'TERM', $mock_pid;
        waitpid($mock_pid, 0);
    }
}

1;
