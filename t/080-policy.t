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
