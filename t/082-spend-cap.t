# Spend caps: USD per token or project per day or month, from the cost the
# audit computes (streams included); 402 budget_exceeded with budget,
# spent_usd and limit_usd.  Reload, restart and several workers:
# t/084-limits-workers.t.  mock-priced costs 14 USD a call (t/lib).

use lib 't/lib';
use AILink::Test;
use AILink::Policy;
use Test::Nginx::Socket 'no_plan';

add_block_preprocessor(\&policy_defaults);
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: a token's daily cap: the call after it is spent gets 402
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
 qr/^\{"error":\{"type":"invalid_request_error","code":"budget_exceeded","message":"budget \\"token_daily\\" of policy \\"budget\\" is spent: 28\.000000 USD of 20\.000000 USD","param":null,"policy_name":"budget","budget":"token_daily","spent_usd":28\.000000,"limit_usd":20\.000000,"request_id":"[0-9a-f]{32}"\}\}$/]
--- no_error_log
[error]



=== TEST 2: a project's monthly cap is shared by its tokens
--- user_files eval
AILink::Policy::policy_files(<<'YAML')
policies:
  - name: project-budget
    apply_to: {projects: [other]}
    rules:
      - then: {spend_cap: {limit_usd: 20, period: month, scope: project, name: other-monthly}}
YAML
--- request eval
["POST /v1/chat/completions
{\"model\":\"mock-priced\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}",
"POST /v1/chat/completions
{\"model\":\"mock-priced\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}",
"POST /v1/chat/completions
{\"model\":\"mock-priced\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}",
"POST /v1/chat/completions
{\"model\":\"mock-priced\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}"]
--- more_headers eval
["Authorization: Bearer $AILink::Policy::OTHER_TOKEN",
 "Authorization: Bearer $AILink::Policy::OTHER2_TOKEN",
 "Authorization: Bearer $AILink::Policy::OTHER_TOKEN",
 "Authorization: Bearer $AILink::Test::LLM_TOKEN"]
--- error_code eval
[200, 200, 402, 200]
--- response_body_like eval
[qr/Mock reply/, qr/Mock reply/, qr/"budget":"other-monthly","spent_usd":28\.000000,"limit_usd":20\.000000/, qr/Mock reply/]
--- no_error_log
[error]



=== TEST 3: spend read by a condition, and a shadow cap that only audits
--- user_files eval
AILink::Policy::policy_files(<<'YAML')
policies:
  - name: soft-budget
    mode: shadow
    apply_to: all
    rules:
      - then: {spend_cap: {limit_usd: 10}}
  - name: hard-stop
    apply_to: all
    rules:
      - when: {field: spend.token.day, op: gte, value: 28}
        then: {deny: {reason: "daily spend reached"}}
YAML
--- request eval
["POST /v1/chat/completions
{\"model\":\"mock-priced\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}",
"POST /v1/chat/completions
{\"model\":\"mock-priced\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}",
"POST /v1/chat/completions
{\"model\":\"mock-priced\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}",
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code eval
[200, 200, 403, 200]
--- response_body_like eval
[qr/Mock reply/, qr/Mock reply/, qr/"reason":"daily spend reached"/,
 qr/"result":"within".*\n.*"result":"would_exceed".*\n.*"policy":"hard-stop","rule":"rules\[0\]","action":"deny","mode":"enforce","result":"denied","reason":"daily spend reached"\}\],"tags":\[\]\}\n\z/]
--- no_error_log
[error]
