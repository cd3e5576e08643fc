package AILink::Cache;

# Shared by the cache and breaker suites (t/120-122): the policy suites'
# config file (tokens of two projects, "mock-" models on the mock), with
# an admin key, and nginx lines with a cache zone, a breaker zone and
# their small APIs.  Extra location lines go through cache_config().

use strict;
use warnings;

use AILink::Policy;

use Exporter 'import';
our @EXPORT = qw(cache_defaults cache_config cache_files $ADMIN_KEY
                 $LLM $OTHER $OTHER2);

our $ADMIN_KEY = 'ailink_admin_test0000000000000000000000001';
our $LLM    = 'Authorization: Bearer '
              . 'ailink_v1_proj_test_tok_llm0000000000000000000001';
our $OTHER  = "Authorization: Bearer $AILink::Policy::OTHER_TOKEN";
our $OTHER2 = "Authorization: Bearer $AILink::Policy::OTHER2_TOKEN";

my $ADMIN_YAML = <<'YAML';
admin_keys:
  - 01752923a82f2b42fac78da7725c9fccc1ab7c3c32e0d1219410e402054b4a67
YAML

sub cache_files {
    my ($more, $token_extra) = @_;
    return AILink::Policy::policy_files($ADMIN_YAML . ($more // ''),
                                        $token_extra);
}

our $HTTP = <<'CONF';
    ailink_config $TEST_NGINX_HTML_DIR/policy.yaml;
    ailink_state_zone ailink_state 1m;
    ailink_cache_zone ailink_cache 1m;
    ailink_breaker_zone ailink_breaker 1m;
CONF

sub cache_config {
    my ($extra, $cache) = @_;
    $extra //= '';
    $cache //= 'on';
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

    # waits, for expiry tests: the mock answers after the delay
    location = /sleep {
        ailink_audit_log off;
        proxy_pass http://127.0.0.1:\$TEST_NGINX_MOCK_PORT/sleep;
        proxy_set_header X-Mock-Delay-Ms 2200;
    }

    location /api/v1/cache/ {
        ailink_audit_log off;
        ailink_cache_api;
    }

    location ~ ^/api/v1/(health/upstreams|tokens/[^/]+/circuit-breaker)\$ {
        ailink_audit_log off;
        ailink_breaker_api;
    }

    location / {
        ailink_auth on;
        ailink_cache $cache;
        $extra
        include \$TEST_NGINX_AILINK_ROOT/conf-examples/ailink-proxy.conf;
    }
CONF
}

sub cache_defaults {
    my $block = shift;
    $block->set_value('http_config', $HTTP)
        unless defined $block->http_config;
    $block->set_value('config', cache_config())
        unless defined $block->config;
    $block->set_value('user_files', cache_files())
        unless defined $block->user_files;
}

1;
