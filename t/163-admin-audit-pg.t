# GET /audit and GET /spend from PostgreSQL ("ailink_admin_audit_source
# postgresql": the table of ailink_audit_pg) against a real PostgreSQL 15
# (t/lib/AILink/Pg.pm: a throwaway cluster on port 3970; the suite fails
# when it cannot start).  The blocks: an empty table answers an empty
# page; PostgreSQL unreachable is a 503 audit_store_unavailable, logged.
# Then plain Test::More: two gateways send records to one table, and one
# gateway's admin API answers for both: /audit's filters, paging and
# order, /spend's groups and sums (checked against both gateways' audit
# files), the 400s and 405s of the file's API; PostgreSQL stopped: 503,
# logged without the password; started again: answers again; nginx -t
# refuses "postgresql" without ailink_audit_pg.

use lib 't/lib';
use AILink::Test;
use AILink::Pg;
use AILink::Policy ();
use Test::Nginx::Socket 'no_plan';
use HTTP::Tiny;
use JSON::PP;
use Digest::SHA qw(sha256_hex);
use File::Temp qw(tempdir);
use Time::HiRes ();
use POSIX ();

our $pg = AILink::Pg->start(3970);

our $KEY = 'ailink_admin_pgaudit00000000000000000000001';

my $tmp = tempdir(CLEANUP => 1);
chmod 0755, $tmp;

sub write_file {
    my ($name, $text) = @_;
    open my $f, '>', $name or die "$name: $!";
    print $f $text;
    close $f;
}

write_file("$tmp/pw", "$AILink::Pg::PASSWORD\n");
write_file("$tmp/policy.yaml", AILink::Policy::policy_yaml());

$ENV{TEST_NGINX_PG_CONNINFO} = $pg->conninfo;
$ENV{TEST_NGINX_PG_PWFILE} = "$tmp/pw";
$ENV{TEST_NGINX_PG_SPOOL} = "$tmp/spool0";
$ENV{TEST_NGINX_ADMIN_HASH} = sha256_hex($KEY);
mkdir "$tmp/$_" for qw(store0 store1 store2);
$ENV{TEST_NGINX_STORE} = "$tmp/store0";

add_block_preprocessor(\&ailink_defaults);
no_shuffle();
no_root_location();
run_tests();

{
use Test::More;

my $root = $ENV{TEST_NGINX_AILINK_ROOT};
my $http = HTTP::Tiny->new(timeout => 15);
my $json = JSON::PP->new->canonical;

sub q1 { return $pg->psql(@_) }

sub wait_for {
    my ($sql, $want) = @_;
    my $got;
    for (1 .. 150) {
        $got = q1($sql);
        return $got if $got eq $want;
        Time::HiRes::sleep(0.1);
    }
    return $got;
}

sub http_conf {
    my ($spool, $store) = @_;
    return "ailink_config $tmp/policy.yaml;\n"
         . "    ailink_admin_key " . sha256_hex($KEY) . ";\n"
         . "    ailink_store_dir $store;\n"
         . "    ailink_audit_log logs/audit.jsonl;\n"
         . "    ailink_audit_pg \"" . $pg->conninfo . "\""
         . " password_file=$tmp/pw spool=$spool flush=100ms timeout=2s;\n"
         . "    ailink_admin_audit_source postgresql;";
}

my $server = <<"CONF";
        location /api/v1/ { ailink_admin_api; ailink_audit_log off; }
        location / {
            ailink_auth on;
            include $root/conf-examples/ailink-proxy.conf;
        }
CONF

my $n1 = start_nginx(master => 1, workers => 2, http => http_conf("$tmp/sa", "$tmp/store1"),
                    server => $server);
my $n2 = start_nginx(master => 1, workers => 1, http => http_conf("$tmp/sb", "$tmp/store2"),
                    server => $server);

sub req {
    my ($n, $key, $method, $path, $body, %h) = @_;
    my $res = $http->request($method, "$n->{url}$path", {
        headers => { Authorization => "Bearer $key",
                     'Content-Type' => 'application/json', %h },
        defined $body ? (content => $json->encode($body)) : () });
    $res->{json} = eval { decode_json($res->{content}) };
    return $res;
}

sub admin { my ($m, $p, $n) = @_; req($n // $n1, $KEY, $m, "/api/v1$p") }

sub chat {
    my ($n, $token, $model, $session) = @_;
    return req($n, $token, 'POST', '/v1/chat/completions',
               { model => $model,
                 messages => [ { role => 'user', content => 'hi' } ] },
               'X-AILink-Session-Id' => $session,
               'X-AILink-Agent-Name' => "agent-$session");
}

my $before = q1("SELECT count(*) FROM ailink_audit");

# node a: tok_llm twice, an unknown token; node b: tok_other, tok_llm.
# Records a few milliseconds apart: two in the same millisecond (the
# records' time) would make "newest first" and "until an instant" say
# nothing about their order, and the checks below would guess it.
is chat($n1, $LLM_TOKEN, 'mock-priced', 'node-a')->{status}, 200, 'a: tok_llm';
Time::HiRes::sleep(0.01);
is chat($n1, $LLM_TOKEN, 'mock-a', 'node-a')->{status}, 200, 'a: tok_llm again';
Time::HiRes::sleep(0.01);
is chat($n1, 'ailink_v1_proj_test_tok_unknown0000000000000001', 'mock-a',
        'node-a')->{status}, 401, 'a: an unknown token';
Time::HiRes::sleep(0.05);
is chat($n2, $AILink::Policy::OTHER_TOKEN, 'mock-priced', 'node-b')->{status},
   200, 'b: tok_other';
Time::HiRes::sleep(0.01);
is chat($n2, $LLM_TOKEN, 'mock-a', 'node-b')->{status}, 200, 'b: tok_llm';

is wait_for("SELECT count(*) FROM ailink_audit", $before + 5), $before + 5,
   'both gateways flushed their records to PostgreSQL';

sub records {
    my @r;
    for my $n ($n1, $n2) {
        open my $f, '<', "$n->{dir}/logs/audit.jsonl" or die $!;
        push @r, map { decode_json($_) } grep { /^\{/ } <$f>;
    }
    return @r;
}

my @all = records();
is scalar @all, 5, 'five records in the two audit files';
my @newest = sort { $b->{time} cmp $a->{time} } @all;

# --- /audit, through node a, across both nodes

my $r = admin('GET', '/audit');
is $r->{status}, 200, 'GET /audit';
is scalar @{ $r->{json}{data} }, 5, '... every record of both nodes';
is $r->{json}{limit}, 100, '... limit 100 by default';
is $r->{json}{offset}, 0, '... offset 0';
is_deeply [sort map { $_->{request_id} } @{ $r->{json}{data} }],
          [sort map { $_->{request_id} } @all], '... the files\' records';
my @times = map { $_->{time} } @{ $r->{json}{data} };
is_deeply \@times, [sort { $b cmp $a } @times], '... newest first';
is $r->{json}{data}[0]{session_id}, 'node-b',
   '... the newest is node b\'s';
ok((grep { $_->{session_id} eq 'node-a' } @{ $r->{json}{data} }),
   '... node a\'s are there too');
my ($full) = grep { $_->{token_id} && $_->{token_id} eq 'tok_other' }
             @{ $r->{json}{data} };
my ($file) = grep { $_->{token_id} && $_->{token_id} eq 'tok_other' } @all;
is_deeply $full, $file, '... a record whole, as the file has it';

sub ids {
    my $q = shift;
    my $res = admin('GET', "/audit$q");
    return "status $res->{status}" unless $res->{status} == 200;
    return join ',', map { $_->{request_id} } @{ $res->{json}{data} };
}

sub want { join ',', map { $_->{request_id} } @_ }

is ids('?session_id=node-b'), want(grep { $_->{session_id} eq 'node-b' }
                                   @newest), 'session_id=node-b';
is ids('?token_id=tok_llm'),
   want(grep { ($_->{token_id} // '') eq 'tok_llm' } @newest),
   'token_id=tok_llm: three, from both nodes';
is scalar(split /,/, ids('?token_id=tok_llm')), 3, '... three';
is ids('?agent_name=agent-node-a'),
   want(grep { $_->{session_id} eq 'node-a' } @newest), 'agent_name';
is ids('?status=401'), want(grep { $_->{status} == 401 } @newest),
   'status=401: the unknown token';
is ids('?status=200&session_id=node-a'),
   want(grep { $_->{status} == 200 && $_->{session_id} eq 'node-a' }
        @newest), 'two filters together';
is ids('?token_id=tok_nobody'), '', 'an unknown token_id: none';
is ids('?limit=2'), want(@newest[0, 1]), 'limit=2';
is ids('?limit=2&offset=1'), want(@newest[1, 2]), 'limit=2&offset=1';
is ids('?offset=4'), want($newest[4]), 'offset=4: the oldest';
is ids('?offset=5'), '', 'offset=5: none';
my $today = substr $newest[0]{time}, 0, 10;
is ids("?since=$today&until=$today"), want(@newest), 'since=until=today';
is ids("?since=$newest[1]{time}"), want(@newest[0, 1]),
   'since an instant: from it on';
is ids("?until=$newest[3]{time}"), want(@newest[3, 4]),
   'until an instant: up to it';
is ids('?since=2999-01-01'), '', 'since the future: none';
is ids('?until=2000-01-01'), '', 'until the past: none';
is ids("?token_id=x'%20OR%20'1'='1"), '', 'a quote in a filter: a value';

is admin('GET', '/audit?limit=0')->{status}, 400, 'limit=0: 400';
is admin('GET', '/audit?limit=1001')->{json}{error}{code}, 'invalid_request',
   'limit=1001: invalid_request';
is admin('GET', '/audit?offset=-1')->{status}, 400, 'offset=-1: 400';
is admin('POST', '/audit')->{status}, 405, 'POST /audit: 405';
is req($n1, $LLM_TOKEN, 'GET', '/api/v1/audit')->{status}, 403,
   'a data-plane token: 403';
is admin('GET', '/audit?session_id=node-a', $n2)->{json}{data}[0]{session_id},
   'node-a', 'node b\'s admin API sees node a\'s records';

# --- /spend, checked against the files

my @data = grep { defined $_->{token_id} } @all;
is scalar @data, 4, 'four data-plane records';

sub expect {
    my ($keyf, @recs) = @_;
    my %g;
    for my $x (@recs) {
        my $key = $keyf->($x) // 'null';
        $g{$key}{requests}++;
        $g{$key}{prompt_tokens} += $x->{prompt_tokens} // 0;
        $g{$key}{completion_tokens} += $x->{completion_tokens} // 0;
        $g{$key}{cost_usd} += $x->{cost_usd} // 0;
    }
    return \%g;
}

sub check {
    my ($query, $field, $expect, $what) = @_;
    my $res = admin('GET', "/spend$query");
    is $res->{status}, 200, "GET /spend$query";
    my @keys = map { $_->{$field} // 'null' } @{ $res->{json}{data} };
    is_deeply \@keys, [sort keys %$expect], "... $what: the groups, in order";
    my %got = map { ($_->{$field} // 'null') => $_ } @{ $res->{json}{data} };
    my %total;
    for my $g (keys %$expect) {
        for my $f (qw(requests prompt_tokens completion_tokens)) {
            is $got{$g}{$f}, $expect->{$g}{$f}, "... $what $g: $f";
            $total{$f} += $expect->{$g}{$f};
        }
        ok abs(($got{$g}{cost_usd} // -1) - $expect->{$g}{cost_usd}) < 1e-6,
           "... $what $g: cost_usd ($got{$g}{cost_usd})";
    }
    for my $f (qw(requests prompt_tokens completion_tokens)) {
        is $res->{json}{total}{$f}, $total{$f} // 0, "... $what: total $f";
    }
    return $res;
}

$r = check('?group_by=token', 'token_id',
           expect(sub { $_[0]{token_id} }, @data), 'by token');
is $r->{json}{object}, 'spend', '... object spend';
is $r->{json}{group_by}, 'token_id', '... group_by named';
ok $r->{json}{total}{cost_usd} > 0, '... a total cost';
like $r->{content}, qr/"cost_usd":\d+\.\d{8}\}/, '... cost_usd as %.8f';
ok exists $r->{json}{window_bytes} && !defined $r->{json}{window_bytes},
   '... no window: window_bytes null';
is $r->{json}{truncated}, JSON::PP::false, '... not truncated';

check('', 'token_id', expect(sub { $_[0]{token_id} }, @data),
      'by token (the default)');
check('?group_by=project', 'project',
      expect(sub { $_[0]{project} }, @data), 'by project');
check('?group_by=model', 'model',
      expect(sub { $_[0]{model} }, @data), 'by model');
check('?group_by=day', 'day',
      expect(sub { substr $_[0]{time}, 0, 10 }, @data), 'by day');
check('?group_by=model&token_id=tok_llm', 'model',
      expect(sub { $_[0]{model} }, grep { $_->{token_id} eq 'tok_llm' } @data),
      'tok_llm by model');
check('?group_by=token&project=other', 'token_id',
      expect(sub { $_[0]{token_id} }, grep { $_->{project} eq 'other' } @data),
      'project other by token');
check('?group_by=token&model=mock-priced', 'token_id',
      expect(sub { $_[0]{token_id} },
             grep { ($_->{model} // '') eq 'mock-priced' } @data),
      'mock-priced by token');
check("?group_by=day&since=$today&until=$today", 'day',
      expect(sub { substr $_[0]{time}, 0, 10 }, @data), 'today');
my @sorted = sort { $a->{time} cmp $b->{time} } @data;
check("?since=$sorted[2]{time}", 'token_id',
      expect(sub { $_[0]{token_id} }, @sorted[2, 3]), 'since an instant');
check('?since=2999-01-01', 'token_id', {}, 'since the future');
check('?until=2000-01-01', 'token_id', {}, 'until the past');
like admin('GET', '/spend?since=2999-01-01')->{content},
     qr/"total":\{"requests":0,"prompt_tokens":0,"completion_tokens":0,"cost_usd":0\.00000000\}/,
     '... a total of nothing';

is admin('GET', '/spend?group_by=colour')->{status}, 400,
   'group_by=colour: 400';
is admin('GET', '/spend?token_id=' . ('x' x 300))->{status}, 400,
   'a filter too long: 400';
is admin('POST', '/spend')->{status}, 405, 'POST /spend: 405';
is admin('HEAD', '/spend')->{status}, 200, 'HEAD /spend: 200';

# --- PostgreSQL stopped: 503, logged, nothing crashes; then back

$pg->stop('fast');

$r = admin('GET', '/audit');
is $r->{status}, 503, 'PostgreSQL stopped: GET /audit 503';
is $r->{json}{error}{code}, 'audit_store_unavailable',
   '... audit_store_unavailable';
like $r->{json}{error}{message}, qr/cannot be read/, '... a message';
$r = admin('GET', '/spend?group_by=day');
is $r->{status}, 503, '... GET /spend 503';
is $r->{json}{error}{code}, 'audit_store_unavailable', '... in the envelope';
is chat($n1, $LLM_TOKEN, 'mock-a', 'outage')->{status}, 200,
   '... the gateway still serves';

sub error_log {
    my $n = shift;
    open my $log, '<', "$n->{dir}/logs/error.log" or die $!;
    local $/;
    return scalar <$log>;
}

my $log = error_log($n1);
like $log, qr/ailink admin: audit store 127\.0\.0\.1:3970\/ailink unavailable \(connect: [^)]+\)/,
     '... logged, naming the store';
unlike $log, qr/\Q$AILink::Pg::PASSWORD\E/, '... never the password';
unlike $log, qr/\[alert\]|\[crit\]|signal \d+/, '... no alert, no crash';

$pg->start_again;

is wait_for("SELECT count(*) FROM ailink_audit", $before + 6), $before + 6,
   'PostgreSQL back: the outage\'s record arrives';
$r = admin('GET', '/audit');
is $r->{status}, 200, '... GET /audit answers again';
is scalar @{ $r->{json}{data} }, 6, '... with every record';
is $r->{json}{data}[0]{session_id}, 'outage', '... the newest first';
is admin('GET', '/spend')->{json}{total}{requests}, 5,
   '... GET /spend answers again';

# a slow query is bounded: statement_timeout (the sink's timeout=2s)
my $pid = fork // die;
if ($pid == 0) {
    q1("BEGIN; LOCK TABLE ailink_audit IN ACCESS EXCLUSIVE MODE;"
       . " SELECT pg_sleep(5); COMMIT;");
    POSIX::_exit(0);
}
Time::HiRes::sleep(0.5);
my $t0 = Time::HiRes::time();
$r = admin('GET', '/audit');
my $took = Time::HiRes::time() - $t0;
is $r->{status}, 503, 'a locked table: 503';
ok $took < 4.5, sprintf('... within statement_timeout (%.1f s)', $took);
like error_log($n1), qr/unavailable \(query: ERROR:  canceling statement due to statement timeout\)/,
     '... logged as a timeout';
waitpid($pid, 0);
$r = admin('GET', '/audit?limit=1');
is $r->{status}, 200, '... then answers again' or diag($r->{content});

kill 'QUIT', $_->{pid} for $n1, $n2;
waitpid($_->{pid}, 0) for $n1, $n2;

unlike error_log($n1) . error_log($n2), qr/\[alert\]|\[crit\]/,
       'no alert or crit in either gateway';

# --- nginx -t
sub nginx_t {
    my $directive = shift;
    my $dir = tempdir(CLEANUP => 1);
    mkdir "$dir/logs";
    my @modules = split ' ', ($ENV{TEST_NGINX_LOAD_MODULES}
                              || "$root/build/release/ngx_ailink_module.so");
    write_file("$dir/nginx.conf", join('', map { "load_module $_;\n" }
        @modules) . "error_log logs/error.log;\npid logs/nginx.pid;\n"
        . "events {}\nhttp {\n    $directive\n}\n");
    my $bin = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
    return scalar qx{$bin -t -p $dir/ -c $dir/nginx.conf 2>&1};
}

like nginx_t("ailink_admin_audit_source postgresql;"),
     qr/"ailink_admin_audit_source postgresql" in line \d+ reads the PostgreSQL of "ailink_audit_pg", which is not configured/,
     'postgresql without ailink_audit_pg fails nginx -t';
like nginx_t("ailink_admin_audit_source postgresql;\n"
             . "    ailink_audit_pg \"host=127.0.0.1\" spool=$tmp/t;"),
     qr/test is successful/, '... with it (after it) passes';
like nginx_t("ailink_admin_audit_source postgresql;\n"
             . "    ailink_admin_audit_source logs/a.jsonl;"),
     qr/"ailink_admin_audit_source" directive is duplicate/,
     'one source';
}

$pg->stop;

__DATA__

=== TEST 1: nothing flushed yet: an empty page from PostgreSQL
--- http_config
    ailink_config $TEST_NGINX_AILINK_ROOT/t/conf/ailink.yaml;
    ailink_admin_key $TEST_NGINX_ADMIN_HASH;
    ailink_store_dir $TEST_NGINX_STORE;
    ailink_audit_pg "$TEST_NGINX_PG_CONNINFO" password_file=$TEST_NGINX_PG_PWFILE spool=$TEST_NGINX_PG_SPOOL;
    ailink_admin_audit_source postgresql;
--- config
    location /api/v1/ { ailink_admin_api; ailink_audit_log off; }
--- request
GET /api/v1/audit?limit=5
--- more_headers
Authorization: Bearer ailink_admin_pgaudit00000000000000000000001
--- response_body_like eval
qr/^\{"data":\[\],"limit":5,"offset":0\}$/
--- no_error_log
[error]
[alert]



=== TEST 2: PostgreSQL unreachable: 503 audit_store_unavailable, logged
--- http_config
    ailink_config $TEST_NGINX_AILINK_ROOT/t/conf/ailink.yaml;
    ailink_admin_key $TEST_NGINX_ADMIN_HASH;
    ailink_store_dir $TEST_NGINX_STORE;
    ailink_audit_pg "host=127.0.0.1 port=1 dbname=ailink user=ailink" password_file=$TEST_NGINX_PG_PWFILE spool=$TEST_NGINX_PG_SPOOL;
    ailink_admin_audit_source postgresql;
--- config
    location /api/v1/ { ailink_admin_api; ailink_audit_log off; }
--- request
GET /api/v1/spend?group_by=model
--- more_headers
Authorization: Bearer ailink_admin_pgaudit00000000000000000000001
--- error_code: 503
--- response_body_like eval
qr/"code":"audit_store_unavailable"/
--- error_log
ailink admin: audit store 127.0.0.1:1/ailink unavailable (connect:
--- no_error_log
[alert]
ailink-secret
