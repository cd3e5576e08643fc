# Circuit breakers and the cache across processes: half-open probes under
# concurrency (two workers, exactly half_open_max_requests probes reach the
# upstream), state and run-time settings kept across "nginx -s reload",
# cache entries too.  Plain Test::More, since the test runs and signals
# its own master process.

use strict;
use warnings;
use lib 't/lib';
use AILink::Test;
use AILink::Policy;
use Test::More;
use HTTP::Tiny;
use File::Temp qw(tempdir);
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep);

my $root = $ENV{TEST_NGINX_AILINK_ROOT};
my $conf_dir = tempdir(CLEANUP => 1);
my $http = HTTP::Tiny->new(timeout => 10);
my $admin = 'ailink_admin_test0000000000000000000000001';

open my $y, '>', "$conf_dir/policy.yaml" or die $!;
print $y policy_yaml(<<'YAML');
admin_keys:
  - 01752923a82f2b42fac78da7725c9fccc1ab7c3c32e0d1219410e402054b4a67
YAML
close $y;

my $server = <<"CONF";
        location ~ ^/api/v1/(health/upstreams|tokens/[^/]+/circuit-breaker)\$ {
            ailink_breaker_api;
        }
        location /probe/ {
            rewrite ^/probe(/.*)\$ \$1 break;
            ailink_auth on;
            ailink_breaker on;
            ailink_breaker_threshold 1;
            ailink_breaker_cooldown 2s;
            ailink_breaker_half_open 2;
            include $root/conf-examples/ailink-proxy.conf;
        }
        location /long/ {
            rewrite ^/long(/.*)\$ \$1 break;
            ailink_auth on;
            ailink_breaker on;
            ailink_breaker_threshold 1;
            ailink_breaker_cooldown 60s;
            include $root/conf-examples/ailink-proxy.conf;
        }
        location / {
            ailink_auth on;
            ailink_cache on;
            include $root/conf-examples/ailink-proxy.conf;
        }
CONF
my $http_conf = <<"CONF";
    ailink_config $conf_dir/policy.yaml;
    ailink_cache_zone ailink_cache 1m;
    ailink_breaker_zone ailink_breaker 1m;
CONF

my $nginx = start_nginx(master => 1, workers => 2, http => $http_conf,
                        server => $server);
my $url = $nginx->{url};

sub call {
    my ($path, %h) = @_;
    my $body = delete $h{body}
        // '{"model":"mock-1","messages":[{"role":"user","content":"probe"}]}';
    return $http->request('POST', "$url$path", {
        headers => { Authorization => "Bearer $LLM_TOKEN",
                     'Content-Type' => 'application/json', %h },
        content => $body });
}

sub parallel {
    my ($n, $path, %h) = @_;
    my (@pids, @status);
    my $dir = tempdir(CLEANUP => 1);
    for my $i (1 .. $n) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            my $res = call($path, %h);
            open my $f, '>', "$dir/$i" or POSIX::_exit(1);
            print $f $res->{status};
            close $f;
            POSIX::_exit(0);
        }
        push @pids, $pid;
    }
    waitpid($_, 0) for @pids;
    for my $i (1 .. $n) {
        open my $f, '<', "$dir/$i" or next;
        push @status, scalar <$f>;
    }
    return @status;
}

# 1. one failure opens it; after the cooldown, 12 requests at once from
# two workers: exactly 2 probes reach the upstream, the others get 503
is(call('/probe/v1/chat/completions', 'X-Mock-Status' => 500)->{status}, 500,
   'a failure');
is(call('/probe/v1/chat/completions')->{status}, 503, 'the breaker is open');
sleep 2.3;
my @st = parallel(12, '/probe/v1/chat/completions', 'X-Mock-Delay-Ms' => 600);
is(scalar(grep { $_ == 200 } @st), 2, 'half-open: exactly 2 probes of 12 pass')
    or diag("@st");
is(scalar(grep { $_ == 503 } @st), 10, 'the other 10 get 503 circuit_open');
is(call('/probe/v1/chat/completions')->{status}, 200,
   'the probes succeeded: closed again');

# 2. open it for long, change a token's settings, fill the cache; reload
is(call('/long/v1/chat/completions', 'X-Mock-Status' => 500)->{status}, 500,
   'a failure again');
my $res = call('/long/v1/chat/completions');
is($res->{status}, 503, 'open');

$res = $http->request('PATCH', "$url/api/v1/tokens/tok_other/circuit-breaker", {
    headers => { Authorization => "Bearer $admin" },
    content => '{"enabled":true,"failure_threshold":7}' });
is($res->{status}, 200, 'PATCH a token');

is(call('/v1/chat/completions')->{headers}{'x-ailink-cache'}, 'MISS',
   'a cache miss stores');

kill 'HUP', $nginx->{pid};
sleep 1.5;

# the old workers may still answer for a moment: ask a few times
$res = call('/long/v1/chat/completions') for 1 .. 3;
is($res->{status}, 503, 'after a reload the breaker is still open');
like($res->{content}, qr/"code":"circuit_open"/, 'circuit_open');

$res = $http->request('GET', "$url/api/v1/tokens/tok_other/circuit-breaker", {
    headers => { Authorization => "Bearer $admin" } });
like($res->{content}, qr/"enabled":true,"failure_threshold":7,/,
     'after a reload the PATCHed settings stand');

$res = $http->request('GET', "$url/api/v1/health/upstreams", {
    headers => { Authorization => "Bearer $admin" } });
like($res->{content}, qr/"name":"openai","state":"open","failures":1,"cooldown_remaining_secs":5\d,/,
     'the health API sees it');

is(call('/v1/chat/completions')->{headers}{'x-ailink-cache'}, 'HIT',
   'after a reload the cache entry is still there');

open my $log, '<', "$nginx->{dir}/logs/error.log" or die $!;
my @bad = grep { /\[(alert|crit|emerg)\]/ } <$log>;
is(scalar(@bad), 0, 'no alert, crit or emerg in the error log') or diag(@bad);

done_testing();
