# "nginx -t" on the cache and breaker directives and their config file
# keys (admin_keys, a token's circuit_breaker): a good configuration
# passes, each mistake fails with a message naming it.

use strict;
use warnings;
use Test::More;
use lib 't/lib';
use AILink::Conf;

my $hash = 'a' x 64;
my $token = "tokens:\n  - id: t1\n    project: p\n    hash: $hash\n";
my $yaml = "admin_keys: [$hash]\n$token    cache_ttl_secs: 60\n"
           . "    circuit_breaker: {enabled: true, failure_threshold: 3,"
           . " recovery_cooldown_secs: 10, half_open_max_requests: 2}\n";

my $good = <<'HTTP';
    ailink_config ailink.yaml;
    ailink_cache_zone c 1m;
    ailink_breaker_zone b 1m;
    server {
        listen 127.0.0.1:1;
        location / {
            ailink_auth on;
            ailink_cache on;
            ailink_cache_ttl 10m;
            ailink_cache_max_entry 1m;
            ailink_cache_nondeterministic on;
            ailink_cache_shared off;
            ailink_breaker on;
            ailink_breaker_threshold 3;
            ailink_breaker_cooldown 1m;
            ailink_breaker_half_open 2;
            ailink_breaker_429 on;
            proxy_pass $ailink_upstream_url;
        }
        location /api/v1/cache/ { ailink_cache_api; }
        location /api/v1/ { ailink_breaker_api; }
    }
HTTP

my ($ok, $out) = nginx_t($good, $yaml);
ok($ok, 'a valid configuration passes nginx -t') or diag($out);

sub with {
    my ($from, $to) = @_;
    (my $h = $good) =~ s/\Q$from\E/$to/ or die "no '$from'";
    return $h;
}

rejects('cache without a zone', with('ailink_cache_zone c 1m;', ''), $yaml,
        qr/"ailink_cache on" needs "ailink_cache_zone"/);
rejects('breaker without a zone', with('ailink_breaker_zone b 1m;', ''),
        $yaml, qr/"ailink_breaker on" needs "ailink_breaker_zone"/);
rejects('small cache zone', with('ailink_cache_zone c 1m;',
                                 'ailink_cache_zone c 4k;'), $yaml,
        qr/invalid ailink_cache_zone size "4k"/);
rejects('entry limit', with('ailink_cache_max_entry 1m;',
                            'ailink_cache_max_entry 100;'), $yaml,
        qr/"ailink_cache_max_entry" must be between 1k and 64m/);
rejects('threshold 0', with('ailink_breaker_threshold 3;',
                            'ailink_breaker_threshold 0;'), $yaml,
        qr/"ailink_breaker_threshold" must be between 1 and 1000000/);
rejects('half-open 0', with('ailink_breaker_half_open 2;',
                            'ailink_breaker_half_open 0;'), $yaml,
        qr/"ailink_breaker_half_open" must be between 1 and 1000000/);
rejects('cache flag', with('ailink_cache on;', 'ailink_cache maybe;'), $yaml,
        qr/invalid value "maybe" in "ailink_cache" directive/);

rejects('admin key not a hash', $good, "admin_keys: [abc]\n$token",
        qr/admin_keys: each is the SHA-256 of a key in hex \(64 characters\)/);
rejects('admin keys not a list', $good, "admin_keys: abc\n$token",
        qr/admin_keys: must be a list/);
rejects('breaker unknown field', $good,
        "$token    circuit_breaker: {enabled: true, colour: red}\n",
        qr/token "t1": circuit_breaker: an object of enabled/);
rejects('breaker threshold 0', $good,
        "$token    circuit_breaker: {failure_threshold: 0}\n",
        qr/token "t1": circuit_breaker:/);
rejects('breaker not an object', $good, "$token    circuit_breaker: yes\n",
        qr/token "t1": circuit_breaker:/);

rejects('token cache TTL', $good, "$token    cache_ttl_secs: -1\n",
        qr/token "t1": cache_ttl_secs: seconds, 0 \(never cached\) to 31536000/);
rejects('token cache TTL text', $good, "$token    cache_ttl_secs: soon\n",
        qr/token "t1": cache_ttl_secs:/);

done_testing();
