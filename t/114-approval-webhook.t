# The approval webhook (ailink_approval_webhook): a JSON notification is
# POSTed through an internal location when an approval is created, in the
# background (the agent's 202 does not wait for it), with none of the
# agent's headers (its token, the injected credential), retried and timed
# out by the location's proxy settings.  Plain Test::More.

use strict;
use warnings;
use lib 't/lib';
use AILink::Test;
use AILink::Policy;
use Test::More;
use HTTP::Tiny;
use JSON::PP;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);

my $root = $ENV{TEST_NGINX_AILINK_ROOT};
my $mock = $ENV{TEST_NGINX_MOCK_PORT};
my $conf_dir = tempdir(CLEANUP => 1);
my $http = HTTP::Tiny->new(timeout => 10);

open my $y, '>', "$conf_dir/policy.yaml" or die $!;
print $y policy_yaml(<<'YAML');
policies:
  - name: hold
    apply_to: {tokens: [tok_action]}
    rules:
      - when: {field: request.path, op: starts_with, value: /v1/charges}
        then: {require_approval: {reason: "a human looks first"}}
YAML
close $y;

my $server = <<"CONF";
        location = /_ailink/approval-webhook {
            internal;
            proxy_pass http://webhook/hooks/approvals;
            proxy_http_version 1.1;
            proxy_set_header Content-Type application/json;
            proxy_set_header Connection "";
            proxy_read_timeout 1s;
            proxy_next_upstream error timeout http_503 non_idempotent;
            proxy_next_upstream_tries 2;
        }
        location / {
            ailink_auth on;
            include $root/conf-examples/ailink-proxy.conf;
        }
CONF
my $http_conf = <<"CONF";
    ailink_config $conf_dir/policy.yaml;
    ailink_state_zone ailink_state 1m;
    ailink_approval_webhook /_ailink/approval-webhook;
    upstream webhook {
        server 127.0.0.1:$mock max_fails=0;
        server 127.0.0.1:$mock max_fails=0;
    }
CONF

my $nginx = start_nginx(http => $http_conf, server => $server);
my $url = $nginx->{url};

sub call {
    my ($body, %h) = @_;
    return $http->request('POST', "$url/v1/charges", {
        headers => { Authorization => "Bearer $ACTION_TOKEN",
                     'Content-Type' => 'application/json', %h },
        content => $body });
}

sub hooks {
    my $recs = decode_json(mock_get('/_mock/requests?path_prefix=/hooks'));
    return @$recs;
}

sub wait_hooks {
    my ($n) = @_;
    my @h;
    for (1 .. 100) {
        @h = hooks();
        last if @h >= $n;
        sleep 0.05;
    }
    return @h;
}

mock_reset();

# 1. a notification for a new approval, without the agent's headers
my $res = call('{"amount":1}', 'X-AILink-Agent-Name' => 'bot');
is($res->{status}, 202, 'held');
my $id = decode_json($res->{content})->{request_id};
my @h = wait_hooks(1);
is(scalar @h, 1, 'the webhook got one notification');
is($h[0]{method}, 'POST', 'a POST');
is($h[0]{path}, '/hooks/approvals', 'to the location\'s URL');
is($h[0]{json}{type}, 'approval.created', 'approval.created');
is($h[0]{json}{approval}{id}, $id, 'with the approval\'s id');
is($h[0]{json}{approval}{status}, 'pending', 'pending');
is($h[0]{json}{approval}{policy_name}, 'hold', 'its policy');
is($h[0]{json}{approval}{path}, '/v1/charges', 'path');
is($h[0]{json}{approval}{agent}, 'bot', 'agent');
is($h[0]{headers}{'content-type'}, 'application/json', 'JSON');
ok(!exists $h[0]{headers}{authorization}, 'no virtual token');
ok(!exists $h[0]{headers}{'x-api-key'}, 'no injected credential');
ok(!grep({ /^x-ailink/ } keys %{ $h[0]{headers} }), 'no X-AILink-* header');
unlike(join(' ', values %{ $h[0]{headers} }), qr/sk-test|ailink_v1_/,
       'no secret in any header');

# 2. retried: a 503 from the first try, the second succeeds
mock_reset();
$http->post("http://127.0.0.1:$mock/_mock/fail", {
    content => '{"path_prefix":"/hooks","status":503,"count":1}' });
is(call('{"amount":2}')->{status}, 202, 'held');
@h = wait_hooks(2);
is(scalar @h, 2, 'the webhook was tried twice');

# 3. a webhook that does not answer does not hold the agent
mock_reset();
$http->post("http://127.0.0.1:$mock/_mock/next", {
    content => '{"headers":{"x-mock-delay-ms":"3000"},"count":2,'
               . '"path_prefix":"/hooks"}' });
my $t0 = time;
$res = call('{"amount":3}');
my $took = time - $t0;
is($res->{status}, 202, 'held');
ok($took < 0.5, sprintf('the 202 does not wait for the webhook (%.3f s)',
                        $took));
sleep 2.5;
open my $log, '<', "$nginx->{dir}/logs/error.log" or die $!;
my $text = do { local $/; <$log> };
like($text, qr/ailink approval apr_\w+: the webhook answered 504/,
     'a webhook timing out is logged');
like($text, qr/ailink approval $id: the webhook was notified/,
     'a delivered one too');
unlike($text, qr/\[(alert|crit|emerg)\]/, 'no alert in the log');

mock_reset();
done_testing();
