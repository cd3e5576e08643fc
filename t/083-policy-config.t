# "nginx -t" rejects bad policies in the config-as-code file, naming the
# policy and the rule.  Plain Test::More around "nginx -t", as t/001 does.

use strict;
use warnings;
use lib 't/lib';
use AILink::Policy;
use Test::More;
use File::Temp qw(tempdir);
use Cwd qw(abs_path);

my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
my $root = abs_path('.');
my @modules = split ' ', ($ENV{TEST_NGINX_LOAD_MODULES}
                          || "$root/build/release/ngx_ailink_module.so");

$ENV{TEST_NGINX_MOCK_PORT} ||= 1;
$ENV{AILINK_TEST_OPENAI_KEY} ||= 'sk-test';
$ENV{AILINK_TEST_ACTION_KEY} ||= 'sk-test';

sub nginx_t {
    my ($policies, $http, $token_extra) = @_;
    my $dir = tempdir(CLEANUP => 1);
    mkdir "$dir/logs";
    open my $y, '>', "$dir/ailink.yaml" or die $!;
    print $y policy_yaml($policies, $token_extra);
    close $y;
    open my $c, '>', "$dir/nginx.conf" or die $!;
    print $c "load_module $_;\n" for @modules;
    print $c "error_log logs/error.log;\npid logs/nginx.pid;\nevents {}\n"
           . "http {\n ailink_config ailink.yaml;\n" . ($http // '')
           . "\n server { listen 127.0.0.1:1; }\n}\n";
    close $c;
    my $out = `$nginx -t -p $dir/ -c $dir/nginx.conf 2>&1`;
    return ($? == 0, $out);
}

sub rejects {
    my ($name, $policies, $message, $http, $token_extra) = @_;
    my ($ok, $out) = nginx_t($policies, $http, $token_extra);
    ok(!$ok, "$name: nginx -t fails");
    like($out, $message, "$name: the message names it") or diag($out);
}

my $zone = "ailink_state_zone s 1m;";

my ($ok, $out) = nginx_t(<<'YAML', $zone, "    policies: [p2]\n");
policies:
  - name: p1
    mode: shadow
    phase: pre
    apply_to: {tokens: [tok_action], projects: [other]}
    timezone: "+05:30"
    rules:
      - name: r
        when: {all: [{field: request.body.metadata.user, op: regex, value: "^u[0-9]+$"},
                     {not: {field: context.time.weekday, op: in, value: [sat, sun]}},
                     {any: [{field: model, op: glob, value: "gpt-*"}, {field: session.id, op: exists}]}]}
        then: [deny, {tag: [a, b]}, {log: "hello"}, {set_header: {name: X-A, value: b}}]
  - name: p2
    rules:
      - then: {rate_limit: {requests_per_minute: 5, tokens_per_minute: 100, key: [token, model]}}
      - then: {spend_cap: {limit_usd: 5, period: month, scope: project, timezone: "-08:00"}}
  - name: p3
    phase: post
    apply_to: all
    rules:
      - when: {field: response.status, op: gte, value: 500}
        then: {tag: upstream-failure}
YAML
ok($ok, 'a good policy file passes') or diag($out);

my $where = qr/ailink_config "[^"]+": policies\[0\] \("p"\)\.rules\[0\] \("r"\)/;

rejects('bad regex', <<'YAML', qr/$where: regex "\(x": missing closing parenthesis at offset 2/);
policies:
  - name: p
    rules:
      - name: r
        when: {field: model, op: regex, value: "(x"}
        then: deny
YAML

rejects('unknown field', <<'YAML', qr/$where: unknown field "modle"/);
policies:
  - name: p
    rules:
      - name: r
        when: {field: modle, op: eq, value: x}
        then: deny
YAML

rejects('unknown op', <<'YAML', qr/$where: unknown op "equals"/);
policies:
  - name: p
    rules:
      - name: r
        when: {field: model, op: equals, value: x}
        then: deny
YAML

rejects('gt on text', <<'YAML', qr/$where: op "gt" compares numbers/);
policies:
  - name: p
    rules:
      - name: r
        when: {field: request.headers.x-n, op: gt, value: ten}
        then: deny
YAML

rejects('unknown action', <<'YAML', qr/$where: unknown action "block"/);
policies:
  - name: p
    rules:
      - name: r
        then: block
YAML

rejects('deny in a post policy', <<'YAML', qr/$where: "deny" cannot run in a "phase: post" policy/);
policies:
  - name: p
    phase: post
    rules:
      - name: r
        then: deny
YAML

rejects('usage in a pre policy', <<'YAML', qr/$where: field "usage.total_tokens" is known only after the response/);
policies:
  - name: p
    rules:
      - name: r
        when: {field: usage.total_tokens, op: gt, value: 5}
        then: deny
YAML

rejects('rate limit without a number', <<'YAML', qr/$where: rate_limit needs one of/);
policies:
  - name: p
    rules:
      - name: r
        then: {rate_limit: {key: token}}
YAML

rejects('spend cap without a limit', <<'YAML', qr/$where: spend_cap\.limit_usd must be a number/);
policies:
  - name: p
    rules:
      - name: r
        then: {spend_cap: {period: day}}
YAML

rejects('unknown time zone', <<'YAML', qr/policies\[0\] \("p"\): timezone "Mars\/Olympus": unknown time zone \(no such file/);
policies:
  - name: p
    timezone: Mars/Olympus
    rules:
      - then: deny
YAML

rejects('a time zone that leaves the database', <<'YAML', qr/policies\[0\] \("p"\): timezone "\.\.\/\.\.\/etc\/passwd": unknown time zone in /);
policies:
  - name: p
    timezone: ../../etc/passwd
    rules:
      - then: deny
YAML

rejects('a file of the database that is no zone', <<'YAML', qr/timezone "leapseconds": unknown time zone \(not a time zone file\)/);
policies:
  - name: p
    timezone: leapseconds
    rules:
      - then: deny
YAML

rejects('a folder of the database', <<'YAML', qr/timezone "America": unknown time zone \(not a time zone file\)/);
policies:
  - name: p
    timezone: America
    rules:
      - then: deny
YAML

rejects('an offset past 14 hours', <<'YAML', qr/policies\[0\] \("p"\): timezone "\+15:00": an offset must be/);
policies:
  - name: p
    timezone: "+15:00"
    rules:
      - then: deny
YAML

rejects('a spend cap in an unknown zone', <<'YAML', qr/timezone "Nowhere": unknown time zone/, $zone);
policies:
  - name: p
    rules:
      - then: {spend_cap: {limit_usd: 5, period: day, timezone: Nowhere}}
YAML

rejects('unknown token', <<'YAML', qr/policies\[0\] \("p"\): apply_to\.tokens: unknown token id "tok_nope"/);
policies:
  - name: p
    apply_to: {tokens: [tok_nope]}
    rules:
      - then: deny
YAML

rejects('unknown policy on a token', <<'YAML', qr/tokens\[0\]\.policies: unknown policy "nope"/, '', "    policies: [nope]\n");
policies:
  - name: p
    rules:
      - then: deny
YAML

rejects('duplicate name', <<'YAML', qr/policies\[1\] \("p"\): the name "p" is used twice/);
policies:
  - name: p
    rules:
      - then: deny
  - name: p
    rules:
      - then: deny
YAML

rejects('limits without a state zone', <<'YAML', qr/rate limits and spend caps need "ailink_state_zone"/, '');
policies:
  - name: p
    rules:
      - then: {rate_limit: {requests_per_second: 1}}
YAML

rejects('a data dir that is not there', <<'YAML', qr/ailink_data_dir "\/nonexistent\/x" is not a directory/, "$zone ailink_data_dir /nonexistent/x;");
policies: []
YAML

done_testing();
