package AILink::Policy;

# Shared by the policy suites (t/080-083): a config-as-code file with the
# test tokens and the given policies, for "--- user_files", and the nginx
# lines every policy block uses.
#
#   --- user_files eval
#   AILink::Policy::policy_files(<<'YAML')
#   policies:
#     - name: ...
#   YAML

use strict;
use warnings;

use Exporter 'import';
our @EXPORT = qw(policy_yaml policy_files policy_defaults $OTHER_TOKEN
                 $OTHER2_TOKEN $POLICY_HTTP $POLICY_CONFIG);

our $OTHER_TOKEN  = 'ailink_v1_proj_other_tok_other00000000000000000001';
our $OTHER2_TOKEN = 'ailink_v1_proj_other_tok_other00000000000000000002';

my $BASE = <<'YAML';
providers:
  openai:
    base_url: http://127.0.0.1:${TEST_NGINX_MOCK_PORT}/v1
routes:
  - prefix: mock-
    provider: openai
credentials:
  openai: { env: AILINK_TEST_OPENAI_KEY }
  action: { env: AILINK_TEST_ACTION_KEY, scheme: header, name: X-Api-Key }
prices:
  gpt-4o-mini: { input: 0.15, output: 0.60 }
  mock-priced: { input: 1000000, output: 2000000 }
tokens:
  - id: tok_llm
    project: test
    hash: 3db0ccb2481b4bf8de27af48aa74736c884db6030c77fc055ee12db3b46cc89f
    agent_name: default-agent
    credentials: { openai: openai }
  - id: tok_action
    project: test
    hash: 860d4db8f91eef05a37663c5902c6716238c78dbcd7eb463abaad99a55d1c58a
    upstream: http://127.0.0.1:${TEST_NGINX_MOCK_PORT}/api/
    credential: action
  - id: tok_other
    project: other
    hash: ee683b32afc971c71cc26a03045b264884c1f6040f95f5a3d63aa12cbb98b2cf
    credentials: { openai: openai }
  - id: tok_other2
    project: other
    hash: eebd475c5cbc107b091ff0654e697e27779de74a76d9e9068791840903a4e0b6
    credentials: { openai: openai }
YAML

# the whole file: the base, then the policies (and token lines, if any)
sub policy_yaml {
    my ($policies, $token_extra) = @_;
    my $yaml = $BASE;
    if ($token_extra) {
        # extra keys for tok_llm, e.g. "    policies: [a, b]\n"
        $yaml =~ s/(    agent_name: default-agent\n)/$1$token_extra/;
    }
    return $yaml . ($policies // '');
}

sub policy_files {
    my ($policies, $token_extra) = @_;
    return [['policy.yaml', policy_yaml($policies, $token_extra)]];
}

our $POLICY_HTTP = <<'CONF';
    ailink_config $TEST_NGINX_HTML_DIR/policy.yaml;
    ailink_state_zone ailink_state 1m;
CONF

our $POLICY_CONFIG = <<'CONF';
    ailink_audit_log logs/audit.jsonl;

    location = /audit {
        ailink_audit_log off;
        default_type text/plain;
        alias logs/audit.jsonl;
    }

    location / {
        ailink_auth on;
        include $TEST_NGINX_AILINK_ROOT/conf-examples/ailink-proxy.conf;
    }
CONF

# add_block_preprocessor(\&policy_defaults): blocks without their own
# http_config/config get the lines above
sub policy_defaults {
    my $block = shift;
    $block->set_value('http_config', $POLICY_HTTP)
        unless defined $block->http_config;
    $block->set_value('config', $POLICY_CONFIG)
        unless defined $block->config;
}

1;
