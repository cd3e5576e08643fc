package AILink::Fallback;

# Shared by the fallback suites (t/122, t/123): a config file whose
# providers are the mock (and one that refuses connections), tok_llm with
# a credential for each, and "fallbacks"; the nginx lines; request and
# mock-control helpers.  Blocks get the defaults through
# add_block_preprocessor(\&AILink::Fallback::defaults).

use strict;
use warnings;

use AILink::Test;

our $YAML = <<'YAML';
providers:
  openai:
    base_url: http://127.0.0.1:${TEST_NGINX_MOCK_PORT}/v1
  anthropic:
    base_url: http://127.0.0.1:${TEST_NGINX_MOCK_PORT}/v1
  gemini:
    base_url: http://127.0.0.1:${TEST_NGINX_MOCK_PORT}/v1beta
  openai-down:
    type: openai
    base_url: http://127.0.0.1:1/v1
  anthropic-keyed:
    type: anthropic
    base_url: https://127.0.0.1:1/v1
routes:
  - { prefix: gpt-down, provider: openai-down }
  - { prefix: claude-keyed, provider: anthropic-keyed }
credentials:
  openai: { env: AILINK_TEST_OPENAI_KEY }
  anthropic: { env: AILINK_TEST_ANTHROPIC_KEY }
  gemini: { env: AILINK_TEST_GEMINI_KEY }
tokens:
  - id: tok_llm
    project: test
    hash: 3db0ccb2481b4bf8de27af48aa74736c884db6030c77fc055ee12db3b46cc89f
    credentials: { openai: openai, anthropic: anthropic, gemini: gemini,
                   openai-down: openai }
fallbacks:
  gpt-4o: [claude-sonnet-4-5, gemini-2.5-pro]
  "gpt-down*": [claude-sonnet-4-5]
  "gpt-chain-*": [claude-keyed-1, { model: gpt-4o-mini, provider: openai }]
YAML

our $HTTP = <<'CONF';
    ailink_config $TEST_NGINX_HTML_DIR/fallback.yaml;
    ailink_breaker_zone ailink_breaker 1m;
CONF

sub config {
    my ($extra) = @_;
    $extra //= '';
    return <<"CONF";
    ailink_audit_log logs/audit.jsonl;

    include \$TEST_NGINX_AILINK_ROOT/conf-examples/ailink-errors.conf;

    location = /audit {
        ailink_audit_log off;
        default_type text/plain;
        alias logs/audit.jsonl;
    }

    location /_mock/ {
        ailink_audit_log off;
        proxy_pass http://127.0.0.1:\$TEST_NGINX_MOCK_PORT;
    }

    location ~ ^/api/v1/health/upstreams\$ {
        ailink_audit_log off;
        ailink_breaker_api;
    }

    location / {
        ailink_auth on;
        $extra
        include \$TEST_NGINX_AILINK_ROOT/conf-examples/ailink-proxy.conf;
    }
CONF
}

our $AUTH = "Authorization: Bearer $LLM_TOKEN";

sub chat {
    my ($model, $text, $extra) = @_;
    $extra //= '';
    return "POST /v1/chat/completions\n"
           . "{\"model\":\"$model\",\"messages\":[{\"role\":\"user\","
           . "\"content\":\"$text\"}]$extra}";
}

sub mock_fail {
    my ($prefix, $status, $count) = @_;
    $count //= 1;
    return "POST /_mock/fail\n{\"path_prefix\":\"$prefix\","
           . "\"status\":$status,\"count\":$count}";
}

sub defaults {
    my $block = shift;
    $block->set_value('http_config', $HTTP) unless defined $block->http_config;
    $block->set_value('config', config()) unless defined $block->config;
    $block->set_value('user_files', [['fallback.yaml', $YAML]])
        unless defined $block->user_files;
}


1;
