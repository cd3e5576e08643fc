# The Redis backend when Redis is not there, needs a password, or is
# slow: limits fail closed (503 limits_unavailable) unless configured
# fail_open; the state change is logged once per worker.  Real
# redis-server on port 3951 (password), a silent one on 3953; nothing listens
# on 3952.

use lib 't/lib';
use AILink::Test;
use AILink::Policy;
use AILink::Redis;
use POSIX ();
use Test::Nginx::Socket 'no_plan';

our $redis = AILink::Redis->start(3951, '--requirepass', 's3cret');

# a Redis that never answers (accepts, reads, says nothing): port 3953
use IO::Socket::INET;
my $silent = IO::Socket::INET->new(LocalAddr => '127.0.0.1:3953',
                                   Listen => 16, ReuseAddr => 1)
    or die "listen 3953: $!";
my $silent_pid = fork // die "fork: $!";
if ($silent_pid == 0) {
    my @held;
    while (my $c = $silent->accept) { push @held, $c; }
    POSIX::_exit(0);
}
close $silent;
$redis->{password} = 's3cret';

add_block_preprocessor(\&policy_defaults);
no_shuffle();
check_accum_error_log();
no_root_location();
run_tests();

# configuration errors at nginx -t, naming the bad token
{
    require AILink::Conf;
    my $y = "tokens:\n  - id: t1\n    project: p\n    hash: ${\ ('a' x 64)}\n";
    my ($ok, $out) = AILink::Conf::nginx_t(<<'HTTP', $y);
    ailink_config ailink.yaml;
    ailink_redis 127.0.0.1:3951 password_file=/nonexistent/pass;
HTTP
    Test::More::ok(!$ok && $out =~ /cannot open password_file/,
                   'a missing password_file fails nginx -t') or diag($out);
    ($ok, $out) = AILink::Conf::nginx_t(<<'HTTP', $y);
    ailink_config ailink.yaml;
    ailink_redis 127.0.0.1:3951;
    ailink_state_zone ailink_state 1m backend=redis rate_limits=maybe;
HTTP
    Test::More::ok(!$ok && $out =~ /ailink_state_zone: invalid parameter "rate_limits=maybe"/,
                   'a bad fail mode names the token') or diag($out);
    ($ok, $out) = AILink::Conf::nginx_t(<<'HTTP', $y);
    ailink_config ailink.yaml;
    ailink_state_zone ailink_state 1m backend=redis;
HTTP
    Test::More::ok(!$ok && $out =~ /"backend=redis" needs "ailink_redis" before it/,
                   'backend=redis needs ailink_redis') or diag($out);
    ($ok, $out) = AILink::Conf::nginx_t(<<'HTTP', $y);
    ailink_config ailink.yaml;
    ailink_redis 127.0.0.1:3951 user=u db=3 timeout=1s;
HTTP
    Test::More::ok(!$ok && $out =~ /"user=" needs a password/,
                   'a user without a password') or diag($out);
    ($ok, $out) = AILink::Conf::nginx_t(<<'HTTP', $y);
    ailink_config ailink.yaml;
    ailink_redis localhost:3951 password=p user=u db=3 timeout=1s;
    ailink_state_zone ailink_state 1m backend=redis rate_limits=fail_open spend_caps=fail_closed;
HTTP
    Test::More::ok($ok, 'a full ailink_redis line passes') or diag($out);
}

$redis->stop;
kill 'TERM', $silent_pid;
waitpid $silent_pid, 0;

__DATA__

=== TEST 1: Redis unreachable: rate limits fail closed, 503, logged once
--- http_config
    ailink_config $TEST_NGINX_HTML_DIR/policy.yaml;
    ailink_redis 127.0.0.1:3952;
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
["GET /v1/me?1", "GET /v1/me?2"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001
--- error_code eval
[503, 503]
--- response_body_like eval
[qr/"code":"limits_unavailable"/, qr/"code":"limits_unavailable"/]
--- grep_error_log eval
qr/ailink redis 127.0.0.1:3952: unavailable \([^)]*\), retrying/
--- grep_error_log_out eval
qr/^ailink redis 127.0.0.1:3952: unavailable \([^)]*\), retrying\n$/



=== TEST 2: Redis unreachable, rate_limits=fail_open: requests go on
--- http_config
    ailink_config $TEST_NGINX_HTML_DIR/policy.yaml;
    ailink_redis 127.0.0.1:3952;
    ailink_state_zone ailink_state 1m backend=redis rate_limits=fail_open;
--- user_files eval
AILink::Policy::policy_files(<<'YAML')
policies:
  - name: rpm
    apply_to: all
    rules:
      - then: {rate_limit: {requests_per_minute: 1}}
YAML
--- request eval
["GET /v1/me?1", "GET /v1/me?2"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001
--- error_code eval
[200, 200]
--- response_body_like eval
[qr/"echo"/, qr/"echo"/]



=== TEST 3: AUTH with a password: limits counted
--- http_config
    ailink_config $TEST_NGINX_HTML_DIR/policy.yaml;
    ailink_redis 127.0.0.1:3951 password=s3cret db=2 timeout=500ms;
    ailink_state_zone ailink_state 1m backend=redis;
--- user_files eval
AILink::Policy::policy_files(<<'YAML')
policies:
  - name: rpm
    apply_to: all
    rules:
      - then: {rate_limit: {requests_per_minute: 2}}
YAML
--- request eval
["GET /v1/me?1", "GET /v1/me?2", "GET /v1/me?3"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001
--- error_code eval
[200, 200, 429]
--- response_body_like eval
[qr/"echo"/, qr/"echo"/, qr/"code":"rate_limited"/]
--- no_error_log
[error]



=== TEST 4: a wrong password: fail closed, logged
--- http_config
    ailink_config $TEST_NGINX_HTML_DIR/policy.yaml;
    ailink_redis 127.0.0.1:3951 password=wrong;
    ailink_state_zone ailink_state 1m backend=redis;
--- user_files eval
AILink::Policy::policy_files(<<'YAML')
policies:
  - name: rpm
    apply_to: all
    rules:
      - then: {rate_limit: {requests_per_minute: 2}}
YAML
--- request eval
["GET /v1/me?1", "GET /v1/me?2"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001
--- error_code eval
[503, 503]
--- response_body_like eval
[qr/"code":"limits_unavailable"/, qr/"code":"limits_unavailable"/]
--- error_log
AUTH failed



=== TEST 5: a Redis that does not answer: the command times out, 503
--- http_config
    ailink_config $TEST_NGINX_HTML_DIR/policy.yaml;
    ailink_redis 127.0.0.1:3953 timeout=150ms;
    ailink_state_zone ailink_state 1m backend=redis;
--- user_files eval
AILink::Policy::policy_files(<<'YAML')
policies:
  - name: rpm
    apply_to: all
    rules:
      - then: {rate_limit: {requests_per_minute: 2}}
YAML
--- request eval
["GET /v1/me?1", "GET /v1/me?2"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001
--- error_code eval
[503, 503]
--- response_body_like eval
[qr/"code":"limits_unavailable"/, qr/"code":"limits_unavailable"/]
--- grep_error_log eval
qr/ailink redis 127.0.0.1:3953: no reply within 150 ms/
--- grep_error_log_out eval
qr/^ailink redis 127.0.0.1:3953: no reply within 150 ms\n$/



=== TEST 6: a spend condition cannot read Redis synchronously: fails closed
--- http_config
    ailink_config $TEST_NGINX_HTML_DIR/policy.yaml;
    ailink_redis 127.0.0.1:3951 password=s3cret;
    ailink_state_zone ailink_state 1m backend=redis;
--- user_files eval
AILink::Policy::policy_files(<<'YAML')
policies:
  - name: spend
    apply_to: all
    rules:
      - when: {field: spend.token.day, op: gte, value: 280}
        then: {deny: {reason: "spent"}}
YAML
--- request
GET /v1/me
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001
--- error_code: 500
--- response_body_like eval
qr/"code":"internal_error","message":"a policy could not be decided"/




=== TEST 7: readiness and metrics: Redis unreachable is "down" and 0
--- http_config
    ailink_config $TEST_NGINX_HTML_DIR/policy.yaml;
    ailink_redis 127.0.0.1:3952;
    ailink_state_zone ailink_state 1m backend=redis;
    ailink_metrics_zone ailink_metrics;
--- config
    location = /readyz { ailink_ready; }
    location = /metrics { ailink_metrics; }
--- user_files eval
AILink::Policy::policy_files("policies: []\n")
--- request eval
["GET /readyz", "GET /metrics"]
--- error_code eval
[503, 200]
--- response_body_like eval
[qr/^\{"status":"not_ready","checks":\{"config":"ok","redis":"down"\}\}$/,
 qr/^# TYPE ailink_backend_up gauge\nailink_backend_up\{backend="redis"\} 0$/m]



=== TEST 8: readiness and metrics: Redis connected is "ok" and 1
--- http_config
    ailink_config $TEST_NGINX_HTML_DIR/policy.yaml;
    ailink_redis 127.0.0.1:3951 password=s3cret;
    ailink_state_zone ailink_state 1m backend=redis;
    ailink_metrics_zone ailink_metrics;
--- config
    location = /readyz { ailink_ready; }
    location = /metrics { ailink_metrics; }
--- user_files eval
AILink::Policy::policy_files("policies: []\n")
--- init
select undef, undef, undef, 0.3;  # the worker's connection comes up
--- request eval
["GET /readyz", "GET /metrics"]
--- error_code eval
[200, 200]
--- response_body_like eval
[qr/^\{"status":"ready","checks":\{"config":"ok","redis":"ok"\}\}$/,
 qr/^ailink_backend_up\{backend="redis"\} 1$/m]
