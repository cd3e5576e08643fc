# The policy memo: a token's pre-phase rule matches are remembered per
# worker for the exact values of the fields its conditions read.  A
# combination seen before must decide exactly as a fresh evaluation would,
# a new value of any field read must be evaluated anew, and rules that
# read spend are evaluated on every request.

use lib 't/lib';
use AILink::Test;
use AILink::Policy;
use Test::Nginx::Socket 'no_plan';

add_block_preprocessor(\&policy_defaults);
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: each header value decides as it would on its own, seen before or not
--- user_files eval
AILink::Policy::policy_files(<<'YAML')
policies:
  - name: teams
    apply_to: all
    rules:
      - when: {field: request.headers.x-team, op: eq, value: red}
        then: {deny: {reason: "not for red"}}
      - when: {field: model, op: eq, value: never-this}
        then: deny
  - name: agents
    apply_to: all
    rules:
      - when: {field: agent.name, op: starts_with, value: evil}
        then: {deny: {reason: "no evil agents"}}
YAML
--- request eval
my $r = "POST /v1/chat/completions\n"
        . '{"model":"mock-1","messages":[{"role":"user","content":"Hi"}]}';
[($r) x 8]
--- more_headers eval
my $a = "Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001\n";
[$a . "X-Team: blue\n", $a . "X-Team: red\n", $a . "X-Team: blue\n",
 $a . "X-Team: red\n", $a, $a . "X-Team: red\nX-AILink-Agent-Name: evil-1\n",
 $a . "X-Team: blue\nX-AILink-Agent-Name: evil-1\n",
 $a . "X-Team: blue\nX-AILink-Agent-Name: good\n"]
--- error_code eval
[200, 403, 200, 403, 200, 403, 403, 200]
--- response_body_like eval
[qr/Mock reply/, qr/"reason":"not for red"/, qr/Mock reply/,
 qr/"reason":"not for red"/, qr/Mock reply/, qr/"reason":"not for red"/,
 qr/"reason":"no evil agents"/, qr/Mock reply/]
--- no_error_log
[error]



=== TEST 2: a rule that reads spend is evaluated on every request, same key or not
--- user_files eval
AILink::Policy::policy_files(<<'YAML')
policies:
  - name: budget
    apply_to: all
    rules:
      - when: {field: spend.token.day, op: gt, value: 0}
        then: {deny: {reason: "spent today"}}
      - when: {field: model, op: eq, value: never-this}
        then: deny
      - when: {field: agent.name, op: eq, value: never-this}
        then: deny
YAML
--- request eval
my $r = "POST /v1/chat/completions\n"
        . '{"model":"mock-priced","messages":[{"role":"user","content":"Hi"}]}';
[($r) x 3]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code eval
[200, 403, 403]
--- response_body_like eval
[qr/Mock reply/, qr/"reason":"spent today"/, qr/"reason":"spent today"/]
--- no_error_log
[error]

