# Policies from the config-as-code file: deny and allow rules, every
# operator, conditions on the request body, precedence, shadow mode,
# set_header, tags and the audit record's decisions.

use lib 't/lib';
use AILink::Test;
use AILink::Policy;
use Test::Nginx::Socket 'no_plan';

add_block_preprocessor(\&policy_defaults);
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: a deny rule refuses with 403 policy_denied, policy_name and reason
--- user_files eval
AILink::Policy::policy_files(<<'YAML')
policies:
  - name: no-gpt4
    apply_to: all
    rules:
      - name: block-gpt4
        when: {field: model, op: starts_with, value: gpt-4}
        then: {deny: {reason: "GPT-4 is not for this agent"}}
YAML
--- request
POST /v1/chat/completions
{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code: 403
--- response_body_like: ^\{"error":\{"type":"permission_error","code":"policy_denied","message":"denied by policy \\"no-gpt4\\": GPT-4 is not for this agent","param":null,"policy_name":"no-gpt4","reason":"GPT-4 is not for this agent","request_id":"[0-9a-f]{32}"\}\}$
--- no_error_log
[error]



=== TEST 2: a request the rule does not match goes through
--- user_files eval
AILink::Policy::policy_files(<<'YAML')
policies:
  - name: no-gpt4
    apply_to: all
    rules:
      - when: {field: model, op: starts_with, value: gpt-4}
        then: deny
YAML
--- request
POST /v1/chat/completions
{"model":"mock-1","messages":[{"role":"user","content":"Hi"}]}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code: 200
--- response_body_like: Mock reply
--- no_error_log
[error]



=== TEST 3: every operator, each on its own header
--- user_files eval
AILink::Policy::policy_files(<<'YAML')
policies:
  - name: ops
    apply_to: all
    rules:
      - name: eq
        when: {field: request.headers.x-eq, op: eq, value: abc}
        then: {deny: eq}
      - name: neq
        when: {all: [{field: request.headers.x-neq, op: exists},
                     {field: request.headers.x-neq, op: neq, value: abc}]}
        then: {deny: neq}
      - name: gt
        when: {field: request.headers.x-gt, op: gt, value: 10}
        then: {deny: gt}
      - name: gte
        when: {field: request.headers.x-gte, op: gte, value: 10}
        then: {deny: gte}
      - name: lt
        when: {field: request.headers.x-lt, op: lt, value: 10}
        then: {deny: lt}
      - name: lte
        when: {field: request.headers.x-lte, op: lte, value: 10.5}
        then: {deny: lte}
      - name: in
        when: {field: request.headers.x-in, op: in, value: [a, b, 7]}
        then: {deny: in}
      - name: glob
        when: {field: request.headers.x-glob, op: glob, value: "ab*c?"}
        then: {deny: glob}
      - name: regex
        when: {field: request.headers.x-regex, op: regex, value: "^v[0-9]+\\.(x|y)$"}
        then: {deny: regex}
      - name: contains
        when: {field: request.headers.x-contains, op: contains, value: needle}
        then: {deny: contains}
      - name: exists
        when: {field: request.headers.x-exists, op: exists}
        then: {deny: exists}
      - name: starts_with
        when: {field: request.headers.x-sw, op: starts_with, value: pre}
        then: {deny: starts_with}
YAML
--- request eval
[map { "GET /v1/me?$_" } 1 .. 25]
--- more_headers eval
[map { "Authorization: Bearer $AILink::Test::ACTION_TOKEN\n$_" }
 "X-Eq: abc", "X-Eq: abcd",
 "X-Neq: abd", "X-Neq: abc",
 "X-Gt: 11", "X-Gt: 10",
 "X-Gte: 10", "X-Gte: 9.99",
 "X-Lt: -3", "X-Lt: 10",
 "X-Lte: 10.5", "X-Lte: 11",
 "X-In: b", "X-In: 7.0", "X-In: c",
 "X-Glob: abxyzcd", "X-Glob: abxyzc",
 "X-Regex: v12.y", "X-Regex: v12.z",
 "X-Contains: haystack-needle-hay", "X-Contains: needl",
 "X-Exists: ", "X-Other: 1",
 "X-Sw: prefix", "X-Sw: xpre"]
--- error_code eval
[403, 200, 403, 200, 403, 200, 403, 200, 403, 200, 403, 200,
 403, 403, 200, 403, 200, 403, 200, 403, 200, 403, 200, 403, 200]
--- no_error_log
[error]



=== TEST 4: an allow ends its own policy; the first enforced deny wins across policies
--- user_files eval
AILink::Policy::policy_files(<<'YAML')
policies:
  - name: admins-first
    apply_to: all
    rules:
      - when: {field: agent.name, op: eq, value: admin}
        then: allow
      - then: {deny: {reason: "only admins"}}
  - name: second
    apply_to: all
    rules:
      - when: {field: request.path, op: eq, value: /v1/secret}
        then: {deny: {reason: "never"}}
YAML
--- request eval
["GET /v1/me", "GET /v1/me", "GET /v1/secret"]
--- more_headers eval
["Authorization: Bearer $AILink::Test::ACTION_TOKEN\nX-AILink-Agent-Name: admin",
 "Authorization: Bearer $AILink::Test::ACTION_TOKEN\nX-AILink-Agent-Name: intern",
 "Authorization: Bearer $AILink::Test::ACTION_TOKEN\nX-AILink-Agent-Name: admin"]
--- error_code eval
[200, 403, 403]
--- response_body_like eval
[qr/"echo"/, qr/"policy_name":"admins-first","reason":"only admins"/,
 qr/"policy_name":"second","reason":"never"/]
--- no_error_log
[error]



=== TEST 5: shadow changes nothing and audits what would have happened
--- user_files eval
AILink::Policy::policy_files(<<'YAML')
policies:
  - name: trial
    mode: shadow
    apply_to: all
    rules:
      - name: no-deletes
        when: {field: request.method, op: eq, value: DELETE}
        then: [{deny: {reason: "no deletes"}}, {tag: would-block}, {set_header: {name: X-Shadow, value: "1"}}]
YAML
--- request eval
["DELETE /v1/thing", "GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001
--- error_code eval
[200, 200]
--- response_body_like eval
[qr/"method":\s*"DELETE"(?!.*x-shadow)/s,
 qr/"policies":\[\{"policy":"trial","rule":"no-deletes","action":"deny","mode":"shadow","result":"would_deny","reason":"no deletes"\},\{"policy":"trial","rule":"no-deletes","action":"tag","mode":"shadow","result":"tagged"\},\{"policy":"trial","rule":"no-deletes","action":"set_header","mode":"shadow","result":"would_apply"\}\],"tags":\[\]\}\n\z/]
--- no_error_log
[error]



=== TEST 6: set_header reaches the upstream; tags and decisions reach the audit and the variables
--- http_config
    ailink_config $TEST_NGINX_HTML_DIR/policy.yaml;
    log_format pol '$ailink_policy_decision|$ailink_policy_name|$ailink_policy_tags|$ailink_policy_decisions';
--- config
    ailink_audit_log logs/audit.jsonl;
    location = /audit {
        ailink_audit_log off;
        default_type text/plain;
        alias logs/audit.jsonl;
    }
    location = /vars {
        ailink_audit_log off;
        default_type text/plain;
        alias logs/vars.log;
    }
    location / {
        ailink_auth on;
        access_log logs/vars.log pol;
        include $TEST_NGINX_AILINK_ROOT/conf-examples/ailink-proxy.conf;
    }
--- user_files eval
AILink::Policy::policy_files(<<'YAML')
policies:
  - name: route
    apply_to: {projects: [test]}
    rules:
      - name: mark
        when: {field: request.path, op: starts_with, value: /v1/}
        then: [{set_header: {name: X-Tenant, value: acme}}, {tag: [billing, "q\"1"]}, {log: "seen"}]
YAML
--- request eval
["GET /v1/me", "GET /vars", "GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001
--- response_body_like eval
[qr/"x-tenant":\s*"acme"/,
 qr/^allowed\|-\|\[\\x22billing\\x22,\\x22q\\x5C\\x221\\x22\]\|\[\{\\x22policy\\x22:\\x22route\\x22/,
 qr/"policies":\[\{"policy":"route","rule":"mark","action":"set_header","mode":"enforce","result":"applied"\},\{"policy":"route","rule":"mark","action":"tag","mode":"enforce","result":"tagged"\},\{"policy":"route","rule":"mark","action":"log","mode":"enforce","result":"logged"\}\],"tags":\["billing","q\\"1"\]\}\n\z/]
--- no_error_log
[error]



=== TEST 7: conditions on the request body, on the LLM route and on the action route
--- user_files eval
AILink::Policy::policy_files(<<'YAML')
policies:
  - name: body
    apply_to: all
    rules:
      - when: {field: request.body.metadata.user, op: eq, value: "mallory \"m\""}
        then: {deny: {reason: "blocked user"}}
      - when: {field: request.body.amount, op: gt, value: 1000}
        then: {deny: {reason: "too much"}}
YAML
--- request eval
["POST /v1/chat/completions
{\"model\":\"mock-1\",\"metadata\":{\"user\":\"mallory \\\"m\\\"\"},\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}",
"POST /v1/chat/completions
{\"model\":\"mock-1\",\"metadata\":{\"user\":\"alice\"},\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}",
"POST /v1/charges
{\"amount\": 5000, \"currency\": \"usd\"}",
"POST /v1/charges
{\"amount\": 50, \"currency\": \"usd\"}"]
--- more_headers eval
["Authorization: Bearer $AILink::Test::LLM_TOKEN",
 "Authorization: Bearer $AILink::Test::LLM_TOKEN",
 "Authorization: Bearer $AILink::Test::ACTION_TOKEN",
 "Authorization: Bearer $AILink::Test::ACTION_TOKEN"]
--- error_code eval
[403, 200, 403, 200]
--- response_body_like eval
[qr/"reason":"blocked user"/, qr/Mock reply/, qr/"reason":"too much"/,
 qr/"body":\s*"\{\\"amount\\": 50, \\"currency\\": \\"usd\\"\}"/]
--- no_error_log
[error]



=== TEST 8: post-phase policies see the status and the usage; a token names its own policies
--- user_files eval
AILink::Policy::policy_files(<<'YAML', "    policies: [own]\n")
policies:
  - name: own
    rules:
      - when: {field: model, op: eq, value: mock-x}
        then: {tag: mine}
  - name: after
    phase: post
    apply_to: all
    rules:
      - when: {all: [{field: response.status, op: eq, value: 200},
                     {field: usage.total_tokens, op: gte, value: 8}]}
        then: [{tag: big}, {log: "big answer"}]
YAML
--- request eval
["POST /v1/chat/completions
{\"model\":\"mock-x\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}",
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- response_body_like eval
[qr/Mock reply/,
 qr/"total_tokens":8,.*"policies":\[\{"policy":"own","rule":"rules\[0\]","action":"tag","mode":"enforce","result":"tagged"\},\{"policy":"after","rule":"rules\[0\]","action":"tag","mode":"enforce","result":"tagged"\},\{"policy":"after","rule":"rules\[0\]","action":"log","mode":"enforce","result":"logged"\}\],"tags":\["mine","big"\]\}\n\z/]
--- no_error_log
[error]



=== TEST 9: context.time in a configured time zone; other tokens are not touched
--- user_files eval
my $h = (gmtime(time + 5 * 3600 + 1800))[2];
AILink::Policy::policy_files(<<"YAML")
policies:
  - name: clock
    timezone: "+05:30"
    apply_to: {tokens: [tok_action]}
    rules:
      - when: {all: [{field: context.time.hour, op: eq, value: $h},
                     {field: context.time.weekday, op: in, value: [sun, mon, tue, wed, thu, fri, sat]}]}
        then: {deny: {reason: "hour $h"}}
YAML
--- request eval
["GET /v1/me", "GET /v1/models"]
--- more_headers eval
["Authorization: Bearer $AILink::Test::ACTION_TOKEN",
 "Authorization: Bearer $AILink::Test::LLM_TOKEN"]
--- error_code eval
[403, 200]
--- response_body_like eval
[qr/"reason":"hour \d+"/, qr/"object"/]
--- no_error_log
[error]



=== TEST 10: an action hook that no module provides fails closed (redact)
--- user_files eval
AILink::Policy::policy_files(<<'YAML')
policies:
  - name: approvals
    apply_to: all
    rules:
      - when: {field: request.method, op: eq, value: POST}
        then: {redact: {}}
YAML
--- request eval
["POST /v1/charges\n{}", "GET /v1/me"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001
--- error_code eval
[403, 200]
--- response_body_like eval
[qr/"policy_name":"approvals","reason":"this action is not available on the gateway"/, qr/"echo"/]
--- no_error_log
[error]



=== TEST 11: require_approval without a state zone to keep approvals fails closed
--- http_config
    ailink_config $TEST_NGINX_HTML_DIR/policy.yaml;
--- user_files eval
AILink::Policy::policy_files(<<'YAML')
policies:
  - name: approvals
    apply_to: all
    rules:
      - when: {field: request.method, op: eq, value: POST}
        then: {require_approval: {}}
YAML
--- request
POST /v1/charges
{}
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_action00000000000000000001
--- error_code: 403
--- response_body_like: "policy_name":"approvals","reason":"this action is not available on the gateway"
--- error_log
no "ailink_state_zone" to keep approvals in
