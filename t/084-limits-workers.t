# Limits across processes and time: exact counts from two workers under
# concurrency, a window rolling over, spend surviving "nginx -s reload"
# (the zone is kept) and a restart (ailink_data_dir).  Plain Test::More,
# since the test runs and signals its own master processes.

use strict;
use warnings;
use lib 't/lib';
use AILink::Test;
use AILink::Policy;
use Test::More;
use HTTP::Tiny;
use File::Temp qw(tempdir);
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);

my $root = $ENV{TEST_NGINX_AILINK_ROOT};
my $conf_dir = tempdir(CLEANUP => 1);
my $data_dir = tempdir(CLEANUP => 1);
my $http = HTTP::Tiny->new(timeout => 10);

open my $y, '>', "$conf_dir/policy.yaml" or die $!;
print $y policy_yaml(<<'YAML');
policies:
  - name: rpm
    apply_to: {tokens: [tok_action]}
    rules:
      - when: {field: request.path, op: starts_with, value: /v1/limited}
        then: {rate_limit: {requests_per_minute: 15}}
      - when: {field: request.path, op: starts_with, value: /v1/second}
        then: {rate_limit: {requests_per_second: 2}}
  - name: spend
    apply_to: {tokens: [tok_llm]}
    rules:
      - when: {field: spend.token.day, op: gte, value: 280}
        then: {deny: {reason: "spent"}}
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
    ailink_state_zone ailink_state 1m;
    ailink_data_dir $data_dir;
CONF

my $nginx = start_nginx(master => 1, workers => 2, http => $http_conf,
                        server => $server);
my $url = $nginx->{url};

sub call {
    my ($token, $method, $path, $body) = @_;
    my $res = $http->request($method, "$url$path", {
        headers => { Authorization => "Bearer $token",
                     'Content-Type' => 'application/json' },
        defined $body ? (content => $body) : () });
    return $res;
}

my $chat = '{"model":"mock-priced","messages":[{"role":"user","content":"Hello"}]}';

# n requests at once from n processes; returns their statuses
sub parallel {
    my ($n, $token, $method, $path, $body) = @_;
    my (@pids, @files);
    my $dir = tempdir(CLEANUP => 1);
    for my $i (1 .. $n) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            my $res = call($token, $method, $path, $body);
            open my $f, '>', "$dir/$i" or exit 1;
            print $f $res->{status};
            close $f;
            POSIX::_exit(0);
        }
        push @pids, $pid;
    }
    waitpid($_, 0) for @pids;
    my @status;
    for my $i (1 .. $n) {
        open my $f, '<', "$dir/$i" or next;
        push @status, scalar <$f>;
    }
    return @status;
}

# 1. 40 requests at once against a limit of 15, two workers
my @st = parallel(40, $ACTION_TOKEN, 'GET', '/v1/limited');
is(scalar(grep { $_ == 200 } @st), 15, 'exactly 15 of 40 concurrent requests pass');
is(scalar(grep { $_ == 429 } @st), 25, 'the other 25 get 429');

# 2. a window rolls over: two a second, the third waits for the next second
sleep(1 - (time - int(time)) + 0.05);
my @s = map { call($ACTION_TOKEN, 'GET', '/v1/second')->{status} } 1 .. 3;
is("@s", "200 200 429", 'a third request in the same second is refused');
sleep(1 - (time - int(time)) + 0.05);
is(call($ACTION_TOKEN, 'GET', '/v1/second')->{status}, 200,
   'the next second has a fresh window');

# 3. spend from two workers at once: 19 calls of 14 USD, none lost
@st = parallel(19, $LLM_TOKEN, 'POST', '/v1/chat/completions', $chat);
is(scalar(grep { $_ == 200 } @st), 19, '19 concurrent priced calls pass');
is(call($LLM_TOKEN, 'POST', '/v1/chat/completions', $chat)->{status}, 200,
   '266 USD spent: still under 280');
is(call($LLM_TOKEN, 'POST', '/v1/chat/completions', $chat)->{status}, 403,
   '280 USD spent, exactly: denied (no increment lost or counted twice)');

# 4. a project cap, then a reload: the zone keeps the spend
is(call($OTHER_TOKEN, 'POST', '/v1/chat/completions', $chat)->{status}, 200, 'project call 1');
is(call($OTHER2_TOKEN, 'POST', '/v1/chat/completions', $chat)->{status}, 200, 'project call 2');
is(call($OTHER_TOKEN, 'POST', '/v1/chat/completions', $chat)->{status}, 402, 'project cap spent');

kill 'HUP', $nginx->{pid};
my $after;
for (1 .. 50) {
    sleep 0.1;
    $after = call($OTHER_TOKEN, 'POST', '/v1/chat/completions', $chat);
    last if $after->{status};
}
is($after->{status}, 402, 'after a reload the spend is still there');

# 5. a restart: the spend comes back from the data directory
kill 'QUIT', $nginx->{pid};
waitpid($nginx->{pid}, 0);
ok(-s "$data_dir/spend.state", 'the spend was written to the data directory');

$nginx = start_nginx(master => 1, workers => 2, http => $http_conf,
                     server => $server);
$url = $nginx->{url};
is(call($OTHER_TOKEN, 'POST', '/v1/chat/completions', $chat)->{status}, 402,
   'after a restart the project cap is still spent');
is(call($LLM_TOKEN, 'POST', '/v1/chat/completions', $chat)->{status}, 403,
   'and so is the token spend its condition reads');

open my $log, '<', "$nginx->{dir}/logs/error.log" or die $!;
my $text = do { local $/; <$log> };
like($text, qr/ailink state zone "ailink_state": \d+ counters read from/,
     'the start logs what it read');
unlike($text, qr/\[(alert|crit|emerg)\]/, 'no alert in the log');

done_testing();
