# The Redis backend of the state zone: rate limits and spend caps counted
# in a real redis-server (started here, port 3950), so that every gateway
# on that Redis shares them.  Faults: t/161-redis-faults.t.  At the end,
# plain Test::More: two gateways (two workers each) on one Redis (port
# 3954) share a rate limit and a spend cap exactly under concurrency;
# Redis stopped and started again: 503 limits_unavailable, then counting
# again without a reload.

use lib 't/lib';
use AILink::Test;
use AILink::Policy;
use AILink::Redis;
use Test::Nginx::Socket 'no_plan';
use HTTP::Tiny;
use File::Temp qw(tempdir);
use POSIX ();
use Time::HiRes ();

our $redis = AILink::Redis->start(3950);

$ENV{TEST_NGINX_REDIS_PORT} = 3950;

add_block_preprocessor(\&policy_defaults);
no_shuffle();
no_root_location();
run_tests();

# TEST 2 left its hour window in Redis: "ailink:<key>2@<start>", a TTL
my @keys;

# TEST 3's spend: 2 calls of 14 USD in nano-dollars, in a "sp|t|..." key
@keys = grep { /^ailink:sp\|t\|/ } split /\n/, $redis->cli('KEYS', "'ailink:sp*'");
Test::More::is(scalar(@keys), 1, "one spend key in Redis: @keys");
Test::More::is($redis->cli('GET', "'$keys[0]'"), '28000000000', "28 USD");

@keys = grep { /^ailink:.*2\@/ } split /\n/, $redis->cli('KEYS', "'ailink:*'");
Test::More::is(scalar(@keys), 1, "one hour window key in Redis: @keys");
Test::More::is($redis->cli('GET', "'$keys[0]'"), '2', "two requests counted");
my $ttl = $redis->cli('TTL', "'$keys[0]'");
Test::More::ok($ttl > 0 && $ttl <= 3601, "a TTL on creation: $ttl");

{
use Test::More;

my $root = $ENV{TEST_NGINX_AILINK_ROOT};
my $conf_dir = tempdir(CLEANUP => 1);
my $http = HTTP::Tiny->new(timeout => 10);
my $redis2 = AILink::Redis->start(3954);

open my $y, '>', "$conf_dir/policy.yaml" or die $!;
print $y policy_yaml(<<'YAML');
policies:
  - name: rph
    apply_to: {tokens: [tok_action]}
    rules:
      - when: {field: request.path, op: starts_with, value: /v1/limited}
        then: {rate_limit: {requests_per_hour: 15}}
      - when: {field: request.path, op: starts_with, value: /v1/other}
        then: {rate_limit: {requests_per_hour: 1000}}
  - name: cap
    apply_to: {projects: [other]}
    rules:
      - then: {spend_cap: {limit_usd: 20, scope: project}}
YAML
close $y;

my $server = <<"CONF";
        location / {
            ailink_auth on;
            include $root/conf-examples/ailink-proxy.conf;
        }
CONF
my $http_conf = <<"CONF";
    ailink_config $conf_dir/policy.yaml;
    ailink_redis 127.0.0.1:3954 timeout=1s;
    ailink_state_zone ailink_state 1m backend=redis;
CONF

my @nodes = map { start_nginx(master => 1, workers => 2, http => $http_conf,
                              server => $server) } 1 .. 2;

sub call {
    my ($url, $token, $method, $path, $body) = @_;
    return $http->request($method, "$url$path", {
        headers => { Authorization => "Bearer $token",
                     'Content-Type' => 'application/json' },
        defined $body ? (content => $body) : () });
}

# n requests at once, alternating between the nodes; their statuses
sub parallel {
    my ($n, $token, $method, $path, $body) = @_;
    my (@pids, @status);
    my $dir = tempdir(CLEANUP => 1);
    for my $i (1 .. $n) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            my $res = call($nodes[$i % 2]{url}, $token, $method, $path, $body);
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

# wait for the workers' connections (logged "connected")
Time::HiRes::sleep(0.3);

# 1. 40 requests at once on two nodes against one limit of 15
my @st = parallel(40, $ACTION_TOKEN, 'GET', '/v1/limited');
is(scalar(grep { $_ == 200 } @st), 15, 'exactly 15 of 40 pass across two nodes');
is(scalar(grep { $_ == 429 } @st), 25, 'the other 25 get 429');
my ($key) = grep { /limited/ || /\|/ } split /\n/, $redis2->cli('KEYS', "'ailink:rl*2@*'");
is($redis2->cli('GET', "'$key'"), '15', 'Redis holds 15, no more') if $key;

# 2. spend across both: 14 USD a call, cap 20: two calls pass, one per node
my $chat = '{"model":"mock-priced","messages":[{"role":"user","content":"Hello"}]}';
is(call($nodes[0]{url}, $OTHER_TOKEN, 'POST', '/v1/chat/completions', $chat)
   ->{status}, 200, 'node A: first priced call');
is(call($nodes[1]{url}, $OTHER_TOKEN, 'POST', '/v1/chat/completions', $chat)
   ->{status}, 200, 'node B: 14 USD spent, under 20');
Time::HiRes::sleep(0.2);
my $res = call($nodes[0]{url}, $OTHER2_TOKEN, 'POST', '/v1/chat/completions',
               $chat);
is($res->{status}, 402, 'node A: the project spent 28 USD on both nodes');
like($res->{content}, qr/"spent_usd":28\.000000/, 'spent counted on both');

# 3. Redis goes away: fail closed; comes back: counting again, no reload
$redis2->stop;
Time::HiRes::sleep(0.2);
$res = call($nodes[1]{url}, $ACTION_TOKEN, 'GET', '/v1/other');
is($res->{status}, 503, 'Redis down: 503');
like($res->{content}, qr/"code":"limits_unavailable"/, 'limits_unavailable');
$redis2->restart;

my $ok = 0;
for (1 .. 50) {
    $res = call($nodes[1]{url}, $ACTION_TOKEN, 'GET', '/v1/other');
    if ($res->{status} == 200) { $ok = 1; last; }
    Time::HiRes::sleep(0.1);
}
ok($ok, 'Redis back: requests pass again without a reload');

for my $n (@nodes) {
    kill 'QUIT', $n->{pid};
    waitpid($n->{pid}, 0);
}

for my $n (@nodes) {
    open my $log, '<', "$n->{dir}/logs/error.log" or die $!;
    my @lines = <$log>;
    my @down = grep { /ailink redis 127.0.0.1:3954: unavailable/ } @lines;
    ok(@down >= 1 && @down <= 2, 'the outage logged once per worker: '
       . scalar(@down));
    is(scalar(grep { /AddressSanitizer|runtime error/ } @lines), 0,
       'no sanitizer report');
}

$redis2->stop;
}

$redis->stop;

__DATA__

=== TEST 1: requests per minute counted in Redis: the fourth gets 429
--- http_config
    ailink_config $TEST_NGINX_HTML_DIR/policy.yaml;
    ailink_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    ailink_state_zone ailink_state 1m backend=redis;
--- user_files eval
AILink::Policy::policy_files(<<'YAML')
policies:
  - name: rpm
    apply_to: all
    rules:
      - then: {rate_limit: {requests_per_minute: 3}}
YAML
--- request eval
["GET /v1/me?1", "GET /v1/me?2", "GET /v1/me?3", "GET /v1/me?4"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001
--- error_code eval
[200, 200, 200, 429]
--- response_headers_like eval
["x-ratelimit-remaining-requests: 2",
 "x-ratelimit-remaining-requests: 1",
 "x-ratelimit-remaining-requests: 0",
 "Retry-After: \\d+"]
--- response_body_like eval
[qr/"echo"/, qr/"echo"/, qr/"echo"/, qr/"code":"rate_limited"/]
--- no_error_log
[error]



=== TEST 2: the counter is in Redis, with a TTL (redis-cli)
--- http_config
    ailink_config $TEST_NGINX_HTML_DIR/policy.yaml;
    ailink_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    ailink_state_zone ailink_state 1m backend=redis;
--- user_files eval
AILink::Policy::policy_files(<<'YAML')
policies:
  - name: rph
    apply_to: all
    rules:
      - then: {rate_limit: {requests_per_hour: 50}}
YAML
--- request eval
["GET /v1/me?1", "GET /v1/me?2"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001
--- error_code eval
[200, 200]
--- response_body_like eval
[qr/"echo"/, qr/"echo"/]
--- no_error_log
[error]



=== TEST 3: a spend cap counted in Redis: the call after it is spent, 402
--- http_config
    ailink_config $TEST_NGINX_HTML_DIR/policy.yaml;
    ailink_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    ailink_state_zone ailink_state 1m backend=redis;
--- user_files eval
AILink::Policy::policy_files(<<'YAML')
policies:
  - name: budget
    apply_to: all
    rules:
      - then: {spend_cap: {limit_usd: 20, period: day}}
YAML
--- request eval
["POST /v1/chat/completions
{\"model\":\"mock-priced\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}",
"POST /v1/chat/completions
{\"model\":\"mock-priced\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}",
"POST /v1/chat/completions
{\"model\":\"mock-priced\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code eval
[200, 200, 402]
--- response_body_like eval
[qr/Mock reply/, qr/\[DONE\]/,
 qr/"code":"budget_exceeded".*"spent_usd":28\.000000,"limit_usd":20\.000000/]
--- no_error_log
[error]

