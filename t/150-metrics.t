# GET /metrics (ailink_metrics, ailink_metrics_zone): exact counts after a
# known sequence of requests served by two workers, histograms cumulative
# and consistent with _count, tokens and cost equal to the audit's sums,
# label escaping, the max_series bound and its "other" series, counters
# kept across "nginx -s reload".  Plain Test::More: it runs and signals its
# own master process.

use strict;
use warnings;
use lib 't/lib';
use AILink::Test;
use AILink::Policy;
use Test::More;
use HTTP::Tiny;
use JSON::PP;
use File::Temp qw(tempdir);
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep);

my $root = $ENV{TEST_NGINX_AILINK_ROOT};
my $conf_dir = tempdir(CLEANUP => 1);
my $http = HTTP::Tiny->new(timeout => 10);

open my $y, '>', "$conf_dir/policy.yaml" or die $!;
print $y policy_yaml(<<'YAML');
policies:
  - name: rpm
    apply_to: {tokens: [tok_other]}
    rules:
      - then: {rate_limit: {requests_per_minute: 2}}
YAML
close $y;

my $server = <<"CONF";
        ailink_audit_log logs/audit.jsonl;
        include $root/conf-examples/ailink-errors.conf;
        location = /metrics {
            ailink_metrics;
            ailink_audit_log off;
        }
        location = /healthz {
            ailink_health;
        }
        location /cached/ {
            rewrite ^/cached(/.*)\$ \$1 break;
            ailink_auth on;
            ailink_cache on;
            include $root/conf-examples/ailink-proxy.conf;
        }
        location /breaker/ {
            rewrite ^/breaker(/.*)\$ \$1 break;
            ailink_auth on;
            ailink_breaker on;
            ailink_breaker_threshold 1;
            ailink_breaker_cooldown 60s;
            include $root/conf-examples/ailink-proxy.conf;
        }
        location /uncounted/ {
            rewrite ^/uncounted(/.*)\$ \$1 break;
            ailink_auth on;
            ailink_metrics_count off;
            include $root/conf-examples/ailink-proxy.conf;
        }
        location / {
            ailink_auth on;
            include $root/conf-examples/ailink-proxy.conf;
        }
CONF

sub http_conf {
    my ($extra) = @_;
    return <<"CONF";
    ailink_config $conf_dir/policy.yaml;
    ailink_state_zone ailink_state 1m;
    ailink_cache_zone ailink_cache 1m;
    ailink_breaker_zone ailink_breaker 1m;
    $extra
CONF
}

my $nginx = start_nginx(master => 1, workers => 2,
                        http => http_conf('ailink_metrics_zone metrics;'),
                        server => $server);
my $url = $nginx->{url};

sub chat {
    my (%o) = @_;
    my $token = delete $o{token} // $LLM_TOKEN;
    my $path = delete $o{path} // '/v1/chat/completions';
    my $model = delete $o{model} // 'mock-priced';
    my $stream = delete $o{stream} ? ',"stream":true' : '';
    my $body = '{"model":' . JSON::PP->new->ascii->allow_nonref->encode($model)
        . ',"messages":[{"role":"user","content":"hi"}]' . $stream . '}';
    return $http->request('POST', "$url$path", {
        headers => { Authorization => "Bearer $token",
                     'Content-Type' => 'application/json', %o },
        content => $body });
}

# n requests at once from forked clients: several connections, so both
# workers take some
sub parallel {
    my ($n, $sub) = @_;
    my @pids;
    for (1 .. $n) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            $sub->();
            POSIX::_exit(0);
        }
        push @pids, $pid;
    }
    waitpid($_, 0) for @pids;
}

# the exposition as { 'name{labels}' => value }, and the families' types;
# labels in the order written
sub scrape {
    my ($u) = @_;
    my $res = $http->get(($u // $url) . '/metrics');
    die "scrape: $res->{status}" unless $res->{status} == 200;
    my (%v, %type);
    for my $line (split /\n/, $res->{content}) {
        if ($line =~ /^# TYPE (\S+) (\S+)$/) {
            $type{$1} = $2;
            next;
        }
        next if $line =~ /^#/;
        $line =~ /^(\S+?(?:\{.*\})?) (\S+)$/ or die "bad line: $line";
        die "duplicate series: $1" if exists $v{$1};
        $v{$1} = $2;
    }
    return (\%v, \%type, $res);
}

sub audit_records {
    open my $f, '<', "$nginx->{dir}/logs/audit.jsonl" or return ();
    return map { decode_json($_) } <$f>;
}

my $L = 'provider="openai",model="mock-priced",project="test"';

# 1. the exposition of an empty zone: every family, content type
my ($m, $type, $res) = scrape();
like($res->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4},
     'text exposition format 0.0.4');
is($type->{ailink_requests_total}, 'counter', 'requests: a counter');
is($type->{ailink_request_duration_seconds}, 'histogram',
   'latency: a histogram');
is($type->{ailink_time_to_first_token_seconds}, 'histogram',
   'ttft: a histogram');
is($type->{ailink_breaker_state}, 'gauge', 'breakers: a gauge');
is($m->{'ailink_metrics_series'}, 0, 'no series yet');
is($m->{'ailink_breaker_state{upstream="openai",state="closed"}'}, 1,
   'the openai breaker is closed');
is($m->{'ailink_breaker_state{upstream="openai",state="open"}'}, 0,
   '... not open');

# 2. a known sequence, 40 of them at once over both workers
parallel(40, sub { chat() });
chat(stream => 1) for 1 .. 3;
chat(path => '/uncounted/v1/chat/completions', model => 'mock-uncounted')
    for 1 .. 2;
chat('X-Mock-Status' => 500) for 1 .. 2;
chat(token => 'ailink_v1_proj_nope_nope') for 1 .. 3;
$http->get("$url/healthz") for 1 .. 4;
$http->get("$url/v1/me", { headers => {
    Authorization => "Bearer $ACTION_TOKEN" } }) for 1 .. 2;
chat(token => $OTHER_TOKEN)
    for 1 .. 3;
chat(path => '/cached/v1/chat/completions', model => 'mock-cached')
    for 1 .. 2;
chat(path => '/cached/v1/chat/completions', model => 'mock-cached',
     'X-AILink-No-Cache' => 'true');

($m, $type) = scrape();
is($m->{"ailink_requests_total{$L,code=\"200\",class=\"2xx\"}"}, 43,
   '40 parallel requests and 3 streams: 200, counted exactly');
is($m->{"ailink_requests_total{$L,code=\"500\",class=\"5xx\"}"}, 2,
   'two upstream 500s');
is($m->{'ailink_requests_total{provider="",model="",project="",code="401",'
        . 'class="4xx"}'}, 3, 'three refused tokens: no provider or project');
is($m->{'ailink_errors_total{error="invalid_token",code="401"}'}, 3,
   'three invalid_token errors');
is($m->{'ailink_requests_total{provider="",model="",project="test",'
        . 'code="200",class="2xx"}'}, 2, 'two action-gateway requests');
ok(!grep({ /healthz/ } keys %$m), 'health probes are not counted');
ok(!grep({ /mock-uncounted/ } keys %$m),
   'nor requests of a location with ailink_metrics_count off');
is($m->{'ailink_requests_total{provider="openai",model="mock-priced",'
        . 'project="other",code="429",class="4xx"}'}, 1,
   'the third request of a limit of 2 per minute: 429');
is($m->{'ailink_errors_total{error="rate_limited",code="429"}'}, 1,
   'one rate_limited error');
my $P = 'ailink_policy_decisions_total{policy="rpm",action="rate_limit"';
is($m->{"$P,result=\"allowed\"}"}, 2, 'policy rpm: rate_limit allowed twice');
is($m->{"$P,result=\"limited\"}"}, 1, '... and limited once');
is($m->{'ailink_cache_requests_total{result="miss"}'}, 1, 'one cache miss');
is($m->{'ailink_cache_requests_total{result="hit"}'}, 1, 'one cache hit');
is($m->{'ailink_cache_requests_total{result="bypass"}'}, 1, 'one bypass');

# histograms: cumulative buckets, +Inf equals _count equals the requests
for my $h (['ailink_request_duration_seconds', $L, 45],
           ['ailink_time_to_first_token_seconds', $L, 3])
{
    my ($name, $labels, $n) = @$h;
    my @b = map { /^\Q$name\E_bucket\{\Q$labels\E,le="([^"]+)"\}$/
                  ? [$1, $m->{$_}] : () } keys %$m;
    @b = sort { ($a->[0] eq '+Inf' ? 1e99 : $a->[0])
                <=> ($b->[0] eq '+Inf' ? 1e99 : $b->[0]) } @b;
    is(scalar @b, 14, "$name: 13 buckets and +Inf");
    my $mono = 1;
    for my $i (1 .. $#b) {
        $mono = 0 if $b[$i][1] < $b[$i - 1][1];
    }
    ok($mono, "$name: cumulative buckets");
    is($b[-1][0], '+Inf', "$name: +Inf last");
    is($b[-1][1], $m->{"${name}_count{$labels}"}, "$name: +Inf is _count");
    is($m->{"${name}_count{$labels}"}, $n, "$name: _count is $n");
    ok(defined $m->{"${name}_sum{$labels}"}
       && $m->{"${name}_sum{$labels}"} >= 0, "$name: _sum");
}

# tokens and cost: what the audit records add up to
my @rec = grep { ($_->{model} // '') eq 'mock-priced'
                 && ($_->{project} // '') eq 'test' } audit_records();
my %sum = (prompt => 0, completion => 0, cost => 0);
for (@rec) {
    $sum{prompt} += $_->{prompt_tokens} // 0;
    $sum{completion} += $_->{completion_tokens} // 0;
    $sum{cost} += $_->{cost_usd} // 0;
}
ok($sum{prompt} > 0, 'the audit has prompt tokens');
is($m->{"ailink_tokens_total{$L,type=\"prompt\"}"}, $sum{prompt},
   'prompt tokens: the audit records\' sum');
is($m->{"ailink_tokens_total{$L,type=\"completion\"}"}, $sum{completion},
   'completion tokens: the audit records\' sum');
ok($sum{cost} > 0, 'the audit has a cost');
ok(abs($m->{"ailink_cost_usd_total{$L}"} - $sum{cost}) < 1e-6,
   'cost: the audit records\' sum')
    or diag($m->{"ailink_cost_usd_total{$L}"} . " vs $sum{cost}");
like($m->{"ailink_cost_usd_total{$L}"}, qr/^\d+\.\d{9}$/,
     'cost in USD with nine decimals');

# 3. label escaping: a model name with a quote, a backslash, a line feed
is(chat(model => "mock-q\"uo\\te\nnl")->{status}, 200, 'an odd model name');
($m) = scrape();
is($m->{'ailink_requests_total{provider="openai",model="mock-q\"uo\\\\te\nnl",'
        . 'project="test",code="200",class="2xx"}'}, 1,
   'its label escaped: \" \\\\ \n');

# a model name longer than 128 bytes is counted as "other"
is(chat(model => 'mock-' . ('x' x 200))->{status}, 200, 'a long model name');
($m) = scrape();
is($m->{'ailink_requests_total{provider="other",model="other",'
        . 'project="other",code="200",class="2xx"}'}, 1,
   'counted in the "other" series');
is($m->{ailink_metrics_overflow_total}, 2,
   'overflow counts both of its series');

# 4. a reload keeps the counters (same zone name and max_series)
my $before = $m->{"ailink_requests_total{$L,code=\"200\",class=\"2xx\"}"};
kill 'HUP', $nginx->{pid};
sleep 1.5;
chat();
($m) = scrape();
is($m->{"ailink_requests_total{$L,code=\"200\",class=\"2xx\"}"}, $before + 1,
   'reload: the counters go on');

# breakers: one failure opens the openai breaker (threshold 1)
chat(path => '/breaker/v1/chat/completions', 'X-Mock-Status' => 500);
($m) = scrape();
is($m->{'ailink_breaker_state{upstream="openai",state="open"}'}, 1,
   'breaker gauge: openai open');
is($m->{'ailink_breaker_state{upstream="openai",state="closed"}'}, 0,
   '... and not closed');
is($m->{'ailink_breaker_state{upstream="openai",state="half_open"}'}, 0,
   '... nor half-open');

# 5. max_series: a second gateway with room for 6 series
my $small = start_nginx(master => 1, workers => 2,
                        http => http_conf('ailink_metrics_zone small '
                                          . 'max_series=6;'),
                        server => $server);
$url = $small->{url};
chat(model => "mock-m$_") for 1 .. 8;
my ($sm) = scrape($small->{url});
is($sm->{ailink_metrics_series_max}, 6, 'max_series 6');
my @named = grep { /^ailink_requests_total\{provider="openai",model="mock-m/ }
            keys %$sm;
is(scalar @named, 3, 'three models have their series (two each)');
is($sm->{'ailink_requests_total{provider="other",model="other",'
         . 'project="other",code="200",class="2xx"}'}, 5,
   'the other five requests in "other"');
my $total = 0;
$total += $sm->{$_} for grep { /^ailink_requests_total\{/ } keys %$sm;
is($total, 8, 'no request is lost');
is($sm->{ailink_metrics_overflow_total}, 10, 'overflow: 5 x 2 series');
is($sm->{ailink_metrics_dropped_total}, 0, 'nothing dropped');

# 6. only GET and HEAD
$res = $http->request('POST', "$small->{url}/metrics");
is($res->{status}, 405, 'POST /metrics: 405');
like($res->{content}, qr/"code":"method_not_allowed"/, 'in the envelope');

done_testing();
