# The audit sink to PostgreSQL (ailink_audit_pg) against a real
# PostgreSQL 15 (t/lib/AILink/Pg.pm: a throwaway cluster on port 3960; the
# suite fails when it cannot start).  The blocks: a record with its
# fields; a wrong password (logged, spooled, requests served); /readyz and
# /metrics.  Then plain Test::More: the records checked in the table;
# three workers under load with PostgreSQL stopped for 4 s (every record
# exactly once, each worker's in order); a reload and a restart with
# records in the spool; the spool of the wrong-password block replayed;
# a worker killed with a spool, replayed by the next; a queue of 5
# overflowing to the spool; PostgreSQL slow (a table lock past timeout=1s)
# with no record twice; a record PostgreSQL refuses kept aside; errors at
# nginx -t, the password never echoed.

use lib 't/lib';
use AILink::Test;
use AILink::Pg;
use Test::Nginx::Socket 'no_plan';
use HTTP::Tiny;
use File::Temp qw(tempdir);
use POSIX ();
use Time::HiRes ();

our $pg = AILink::Pg->start(3960);

my $tmp = tempdir(CLEANUP => 1);
chmod 0755, $tmp;

sub write_file {
    my ($name, $text) = @_;
    open my $f, '>', $name or die "$name: $!";
    print $f $text;
    close $f;
}

write_file("$tmp/pw", "$AILink::Pg::PASSWORD\n");
write_file("$tmp/badpw", "wrong-pw-0xdeadbeef\n");

$ENV{TEST_NGINX_PG_CONNINFO} = $pg->conninfo;
$ENV{TEST_NGINX_PG_PWFILE} = "$tmp/pw";
$ENV{TEST_NGINX_PG_BADPW} = "$tmp/badpw";
$ENV{TEST_NGINX_PG_SPOOL} = "$tmp/spool1";
$ENV{TEST_NGINX_PG_SPOOL2} = "$tmp/spool2";

add_block_preprocessor(\&ailink_defaults);
no_shuffle();
no_root_location();
run_tests();

{
use Test::More;

my $root = $ENV{TEST_NGINX_AILINK_ROOT};
our $http = HTTP::Tiny->new(timeout => 10);

sub q1 { return $pg->psql(@_) }

# polls a query until it answers what is expected (or 15 s pass)
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

sub wait_http {
    my ($url, $re) = @_;
    my $res;
    for (1 .. 100) {
        $res = $http->get($url);
        return 1 if $res->{content} =~ $re;
        Time::HiRes::sleep(0.1);
    }
    diag("$url: $res->{status} $res->{content}");
    return 0;
}

# 1. TEST 1's record, its fields
is(wait_for("SELECT count(*) FROM ailink_audit"
            . " WHERE record->>'session_id' = 'pg-session-1'", '1'),
   '1', "TEST 1's record is in the table once");
is(q1("SELECT token_id, project, method, path, provider, model, status,"
      . " total_tokens, cost_usd::float8, record->>'agent_name',"
      . " record->'properties'->>'env', length(request_id),"
      . " ts > now() - interval '10 minutes', seq >= 1"
      . " FROM ailink_audit WHERE record->>'session_id' = 'pg-session-1'"),
   'tok_llm|test|POST|/v1/chat/completions|openai|mock-priced|200|8|14'
   . '|pg-agent|prod|32|t|t', 'columns and record as the file sink writes');
is(q1("SELECT max(version) FROM ailink_audit_schema"), '1',
   'schema version 1 recorded');

my $server = <<"CONF";
        location = /readyz { ailink_ready; ailink_audit_log off; }
        location = /metrics { ailink_metrics; ailink_audit_log off; }
        location / {
            ailink_auth on;
            include $root/conf-examples/ailink-proxy.conf;
        }
CONF

sub http_conf {
    my ($spool, $extra) = @_;
    return "ailink_config $root/t/conf/ailink.yaml;\n"
         . "    ailink_metrics_zone metrics;\n"
         . "    ailink_audit_pg \"" . $pg->conninfo . "\""
         . " password_file=$tmp/pw spool=$spool " . ($extra // '') . ";";
}

sub call {
    my ($url, $session, $n) = @_;
    return $http->get("$url/v1/me", { headers => {
        Authorization => "Bearer $ACTION_TOKEN",
        'X-AILink-Session-Id' => $session,
        'X-AILink-Properties' => "{\"n\":$n}" } });
}

sub depth {
    my $url = shift;
    my $m = $http->get("$url/metrics")->{content};
    return $m =~ /^ailink_audit_spool_depth (\d+)$/m ? $1 : -1;
}

sub error_log {
    my $n = shift;
    open my $log, '<', "$n->{dir}/logs/error.log" or die $!;
    return <$log>;
}

# 2. three workers under load; PostgreSQL stopped for 4 s meanwhile
my $n = start_nginx(master => 1, workers => 3,
                    http => http_conf("$tmp/spoolB", "batch=20 flush=100ms"),
                    server => $server);
ok(wait_http("$n->{url}/readyz", qr/"postgresql":"ok"/),
   'readyz: postgresql ok');

my $clients = 4;
my $ctl = tempdir(CLEANUP => 1);
my @kids;
for my $k (1 .. $clients) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        my $h = HTTP::Tiny->new(timeout => 10, keep_alive => ($k % 2));
        local $http = $h;
        my ($sent, $ok) = (0, 0);
        while (!-e "$ctl/stop") {
            $sent++;
            my $r = call($n->{url}, "load-$k", $sent);
            $ok++ if $r->{status} == 200;
            Time::HiRes::sleep(0.005);
        }
        write_file("$ctl/$k", "$sent $ok");
        POSIX::_exit(0);
    }
    push @kids, $pid;
}

Time::HiRes::sleep(1.5);
$pg->stop('fast');
ok(wait_http("$n->{url}/readyz", qr/"postgresql":"down"/),
   'PostgreSQL stopped: readyz says postgresql down');
Time::HiRes::sleep(1);
my $during = depth($n->{url});
cmp_ok($during, '>', 0, "records waiting in the spool: $during");
like($http->get("$n->{url}/metrics")->{content},
     qr/^ailink_backend_up\{backend="postgresql"\} 0$/m, 'backend_up 0');
Time::HiRes::sleep(2.5);
$pg->start_again;
Time::HiRes::sleep(1.5);
write_file("$ctl/stop", '');
waitpid($_, 0) for @kids;

my ($sent, $ok) = (0, 0);
for my $k (1 .. $clients) {
    open my $f, '<', "$ctl/$k" or die "client $k: $!";
    my ($s, $o) = split ' ', scalar <$f>;
    $sent += $s;
    $ok += $o;
}
is($ok, $sent, "every request answered during the outage ($sent)");

is(wait_for("SELECT count(*) FROM ailink_audit"
            . " WHERE record->>'session_id' LIKE 'load-%'", $sent),
   $sent, "$sent records in PostgreSQL");
is(q1("SELECT count(*) FROM (SELECT DISTINCT record->>'session_id',"
      . " record->'properties'->>'n' FROM ailink_audit"
      . " WHERE record->>'session_id' LIKE 'load-%') d"), $sent,
   'each exactly once');
is(q1("SELECT count(*) FROM (SELECT record->>'session_id' s, max((record->"
      . "'properties'->>'n')::int) m, count(*) c FROM ailink_audit"
      . " WHERE record->>'session_id' LIKE 'load-%' GROUP BY 1) d"
      . " WHERE m <> c"), '0', "no client's request missing");

# each worker's records: seq 1..N, none missing, inserted in seq order
is(q1("SELECT count(*) FROM (SELECT stream, min(seq) mi, max(seq) ma,"
      . " count(*) c FROM ailink_audit GROUP BY stream) d"
      . " WHERE mi <> 1 OR ma <> c"), '0',
   'every stream holds seq 1..N');
is(q1("SELECT count(*) FROM (SELECT seq, lag(seq) OVER (PARTITION BY"
      . " stream ORDER BY id) p FROM ailink_audit) d WHERE p >= seq"), '0',
   "each worker's records inserted in order");
my $streams = q1("SELECT count(DISTINCT stream) FROM ailink_audit"
                 . " WHERE record->>'session_id' LIKE 'load-%'");
cmp_ok($streams, '>=', 2, "records from several workers ($streams)");

ok(wait_http("$n->{url}/readyz", qr/"postgresql":"ok"/),
   'PostgreSQL back: readyz ok');
my $after = -1;
for (1 .. 50) {
    $after = depth($n->{url});
    last if $after == 0;
    Time::HiRes::sleep(0.1);
}
is($after, 0, 'the spool drained: depth 0');

my @lines = error_log($n);
my @down = grep { /ailink audit pg 127\.0\.0\.1:3960\/ailink: unavailable/ }
           @lines;
ok(@down >= 3 && @down <= 6, 'the outage logged once per worker: '
   . scalar(@down));
is(scalar(grep { /\[alert\]|\[crit\]|AddressSanitizer|runtime error/ }
          @lines), 0, 'no alert') or diag(grep { /\[alert\]|\[crit\]/ } @lines);
is(scalar(grep { /ailink-secret/ } @lines), 0, 'no password in the log');

# 3. a reload with records in the spool, then a restart with some more
$pg->stop('fast');
ok(wait_http("$n->{url}/readyz", qr/"postgresql":"down"/), 'down again');
is(call($n->{url}, 'reload-a', $_)->{status}, 200, "request $_, spooled")
    for 1 .. 30;
my @spooled = grep { -s $_ } glob("$tmp/spoolB/*.spool");
ok(@spooled >= 1, 'records in spool files: ' . scalar(@spooled));

kill 'HUP', $n->{pid};
Time::HiRes::sleep(1.5);
is(call($n->{url}, 'reload-b', $_)->{status}, 200, "after the reload: $_")
    for 1 .. 10;

kill 'QUIT', $n->{pid};
waitpid($n->{pid}, 0);
@spooled = grep { -s $_ } glob("$tmp/spoolB/*.spool");
ok(@spooled >= 1, 'nginx stopped: records still in spool files');

$pg->start_again;
my $n2 = start_nginx(master => 1, workers => 2, dir => $n->{dir},
                     http => http_conf("$tmp/spoolB", "flush=100ms"),
                     server => $server);
is(wait_for("SELECT count(*) FROM ailink_audit"
            . " WHERE record->>'session_id' IN ('reload-a', 'reload-b')",
            40), '40', 'the 40 spooled records arrive after the restart');
is(q1("SELECT count(DISTINCT (record->>'session_id',"
      . " record->'properties'->>'n')) FROM ailink_audit"
      . " WHERE record->>'session_id' IN ('reload-a', 'reload-b')"), '40',
   'each once');
is(q1("SELECT count(*) FROM (SELECT seq, lag(seq) OVER (PARTITION BY"
      . " stream ORDER BY id) p FROM ailink_audit) d WHERE p >= seq"), '0',
   'still in order per worker');
for (1 .. 50) {
    last unless grep { -s $_ } glob("$tmp/spoolB/*.spool");
    Time::HiRes::sleep(0.1);
}
is(scalar(grep { -s $_ } glob("$tmp/spoolB/*.spool")), 0,
   'the spool files replayed are gone');
like(join('', error_log($n2)), qr/replaying spool file/,
     'the replay logged');

# 4. the wrong-password block's spool, replayed with the right password
my $n3 = start_nginx(master => 1, workers => 1,
                     http => http_conf("$tmp/spool2", "flush=100ms"),
                     server => $server);
is(wait_for("SELECT count(*) FROM ailink_audit"
            . " WHERE path = '/readyz' AND status = 503", 1), '1',
   "TEST 2's records, spooled while the password was wrong, arrive");

kill 'QUIT', $_->{pid} for $n2, $n3;
waitpid($_->{pid}, 0) for $n2, $n3;

# 5. a worker killed (SIGKILL) with records in its spool: the worker
# started in its place replays the dead one's file
$pg->stop('fast');
my $n8 = start_nginx(master => 1, workers => 1,
                     http => http_conf("$tmp/spoolF", "flush=100ms"),
                     server => $server);
ok(wait_http("$n8->{url}/readyz", qr/"postgresql":"down"/), 'kill: down');
is(call($n8->{url}, 'killed', $_)->{status}, 200, "spooled: $_") for 1 .. 15;
sub workers_of {
    my $master = shift;
    open my $f, '<', "/proc/$master/task/$master/children" or return ();
    return split ' ', scalar(<$f>) // '';
}
my ($victim) = workers_of($n8->{pid});
# the records reach the spool at the next flush (100ms here); a record
# still in the worker's queue dies with it (the sink's documented loss),
# so the kill waits until all 15 are in the file
sub spooled_of {
    my $pid = shift;
    my $n = 0;
    for my $file (glob "$tmp/spoolF/*-$pid-*.spool") {
        open my $f, '<', $file or next;
        $n += () = <$f>;
    }
    return $n;
}
for (1 .. 100) {
    last if spooled_of($victim) >= 15;
    Time::HiRes::sleep(0.05);
}
is(spooled_of($victim), 15, "the worker's 15 records in its spool");
ok($victim && kill('KILL', $victim), "worker $victim killed");
my $new;
for (1 .. 100) {
    ($new) = grep { $_ != $victim } workers_of($n8->{pid});
    last if $new;
    Time::HiRes::sleep(0.05);
}
ok($new, "another worker started: $new");
$pg->start_again;
is(wait_for("SELECT count(*) FROM ailink_audit"
            . " WHERE record->>'session_id' = 'killed'", 15), '15',
   "the killed worker's 15 spooled records arrive");
is(q1("SELECT count(DISTINCT record->'properties'->>'n') FROM ailink_audit"
      . " WHERE record->>'session_id' = 'killed'"), '15', 'each once');
like(join('', error_log($n8)), qr/replaying spool file "[^"]*-$victim-\d+\.spool" \(15 records\)/,
     "the dead worker's file claimed");
my $d8 = -1;
for (1 .. 30) {
    $d8 = depth($n8->{url});
    last if $d8 == 0;
    Time::HiRes::sleep(0.1);
}
is($d8, 0, "depth 0: the dead worker's count not left behind");
kill 'QUIT', $n8->{pid};
waitpid($n8->{pid}, 0);

# 6. a small queue: past 5 records in memory they go by the spool, in order
my $n4 = start_nginx(master => 1, workers => 1,
                     http => http_conf("$tmp/spoolC",
                                       "queue=5 batch=1000 flush=60s"),
                     server => $server);
ok(wait_http("$n4->{url}/readyz", qr/"postgresql":"ok"/), 'queue=5: up');
is(call($n4->{url}, 'small-q', $_)->{status}, 200, "small queue: $_")
    for 1 .. 23;
# all but the last few (at most 5 wait in the queue for a flush of 60 s)
Time::HiRes::sleep(1);
my $small = q1("SELECT count(*) FROM ailink_audit"
               . " WHERE record->>'session_id' = 'small-q'");
ok($small >= 18, "the records past the queue's 5 sent at once ($small)");

# 7. PostgreSQL slow: the table locked for 3 s, batches time out (1 s) and
# go to the spool; the statements that waited commit all the same when
# the lock goes, and the batches sent again add nothing twice
my $n5 = start_nginx(master => 1, workers => 2,
                     http => http_conf("$tmp/spoolD",
                                       "batch=5 flush=50ms timeout=1s"),
                     server => $server);
ok(wait_http("$n5->{url}/readyz", qr/"postgresql":"ok"/), 'timeout=1s: up');
my $locker = fork // die "fork: $!";
if ($locker == 0) {
    $pg->psql("BEGIN; LOCK TABLE ailink_audit IN ACCESS EXCLUSIVE MODE;"
              . " SELECT pg_sleep(3); COMMIT;");
    POSIX::_exit(0);
}
Time::HiRes::sleep(0.3);
for my $i (1 .. 60) {
    is(call($n5->{url}, 'slow-pg', $i)->{status}, 200, "PostgreSQL slow: $i")
        if $i % 20 == 0;
    call($n5->{url}, 'slow-pg', $i) if $i % 20;
    Time::HiRes::sleep(0.05);
}
waitpid($locker, 0);
is(wait_for("SELECT count(*) FROM ailink_audit"
            . " WHERE record->>'session_id' = 'slow-pg'", 60), '60',
   'the 60 records of the slow period arrive');
is(q1("SELECT count(DISTINCT record->'properties'->>'n') FROM ailink_audit"
      . " WHERE record->>'session_id' = 'slow-pg'"), '60', 'each once');
like(join('', error_log($n5)), qr/unavailable \(query: timed out\)/,
     'the timeout logged');
is(scalar(grep { /\[alert\]|\[crit\]/ } error_log($n5), error_log($n4)), 0,
   'no alert');

kill 'QUIT', $_->{pid} for $n4, $n5;
waitpid($_->{pid}, 0) for $n4, $n5;
is(q1("SELECT count(*) FROM (SELECT stream, min(seq) mi, max(seq) ma,"
      . " count(*) c FROM ailink_audit GROUP BY stream) d"
      . " WHERE mi <> 1 OR ma <> c"), '0', 'in the end, every stream whole');
my @left = map { open my $f, '<', $_ or die $!; <$f> }
            glob("$tmp/spoolC/*.spool");
is(scalar(@left), 23 - $small, 'the queued rest spooled when nginx stopped');
my $n6 = start_nginx(master => 1, workers => 1,
                     http => http_conf("$tmp/spoolC"), server => $server);
is(wait_for("SELECT count(*) FROM ailink_audit WHERE record->>'session_id'"
            . " = 'small-q'", 23), '23',
   'and sent by the next nginx: the small queue\'s 23 records');
kill 'QUIT', $n6->{pid};
waitpid($n6->{pid}, 0);

# 8. a record PostgreSQL refuses (here a CHECK constraint; in life a value
# jsonb would not take) is kept in "<stream>.rejected", the others of its
# batch go one by one, and what follows goes on
q1("ALTER TABLE ailink_audit ADD CONSTRAINT ailink_test_poison CHECK"
   . " (record->>'session_id' IS DISTINCT FROM 'poison')");
my $n7 = start_nginx(master => 1, workers => 1,
                     http => http_conf("$tmp/spoolE",
                                       "batch=10 flush=2s"),
                     server => $server);
ok(wait_http("$n7->{url}/readyz", qr/"postgresql":"ok"/), 'poison: up');
is(call($n7->{url}, 'poison-ok', 1)->{status}, 200, 'a record');
is(call($n7->{url}, 'poison', 2)->{status}, 200, 'one PostgreSQL refuses');
is(call($n7->{url}, 'poison-ok', 3)->{status}, 200, 'another');
is(wait_for("SELECT string_agg(record->'properties'->>'n', ',' ORDER BY id)"
            . " FROM ailink_audit WHERE record->>'session_id' = 'poison-ok'",
            '1,3'), '1,3', 'the records around it arrive, in order');
Time::HiRes::sleep(0.3);
is(call($n7->{url}, 'poison-ok', 4)->{status}, 200, 'and after it');
is(wait_for("SELECT count(*) FROM ailink_audit"
            . " WHERE record->>'session_id' = 'poison-ok'", 3), '3',
   'the next batch goes as usual');
my @rejected = map { open my $f, '<', $_ or die $!; <$f> }
               glob("$tmp/spoolE/*.rejected");
is(scalar(@rejected), 1, 'one record kept aside');
like($rejected[0] // '', qr/^2\t\{"time":"[^\n]*"session_id":"poison"[^\n]*\}\n\z/,
     'the refused record, whole, with its seq');
my $log7 = join '', error_log($n7);
like($log7, qr/a batch of 3 records refused \(ERROR:  new row for relation "ailink_audit" violates check constraint "ailink_test_poison"\), sending them one by one/,
     'the refused batch logged');
like($log7, qr/record 2 of stream "[^"]+" refused \(ERROR: [^)]*\), kept in "[^"]+\.rejected"/,
     'the refused record logged, and where it is');
unlike($log7, qr/unavailable/, 'PostgreSQL not taken for down');
kill 'QUIT', $n7->{pid};
waitpid($n7->{pid}, 0);
q1("ALTER TABLE ailink_audit DROP CONSTRAINT ailink_test_poison");

# 9. configuration errors at nginx -t, naming the bad token
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

my $out = nginx_t('ailink_audit_pg "host=127.0.0.1 password=s3cr3t-x'
                  . ' bogus=1";');
like($out, qr/ailink_audit_pg: invalid connection string \(invalid connection option "bogus"\)/,
     'a bad connection string fails nginx -t');
unlike($out, qr/s3cr3t-x/, 'its password not echoed');
# a string libpq cannot split quotes a piece of it in its message
$out = nginx_t('ailink_audit_pg "host=127.0.0.1 s3cr3t-y";');
like($out, qr/invalid connection string \(the string is not shown/,
     'a malformed string fails nginx -t');
unlike($out, qr/s3cr3t-y/, 'and libpq\'s quote of it is not shown');
like(nginx_t('ailink_audit_pg "host=127.0.0.1" batch=0;'),
     qr/invalid "batch=0"/, 'batch=0 refused');
like(nginx_t('ailink_audit_pg "host=127.0.0.1" flush=never;'),
     qr/invalid parameter "flush=never"/, 'a bad flush time refused');
like(nginx_t("ailink_audit_pg \"host=127.0.0.1\" password_file=$tmp/nope;"),
     qr/cannot open password_file/, 'a missing password_file refused');
like(nginx_t('ailink_audit_pg "host=127.0.0.1"; ailink_audit_pg "host=x";'),
     qr/"ailink_audit_pg" directive is duplicate/, 'one sink per http{}');
like(nginx_t('ailink_audit_pg "host=127.0.0.1" spool=/tmp/x;'),
     qr/test is successful/, 'a valid one passes');
}

$pg->stop;

__DATA__

=== TEST 1: a chat completion's record goes to PostgreSQL, and to the file
--- http_config
    ailink_config $TEST_NGINX_AILINK_ROOT/t/conf/ailink.yaml;
    ailink_audit_pg "$TEST_NGINX_PG_CONNINFO" password_file=$TEST_NGINX_PG_PWFILE spool=$TEST_NGINX_PG_SPOOL flush=100ms;
--- request eval
["POST /v1/chat/completions
{\"model\":\"mock-priced\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}",
"GET /audit"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
X-AILink-Agent-Name: pg-agent
X-AILink-Session-Id: pg-session-1
X-AILink-Properties: {"env":"prod"}
--- wait: 0.5
--- response_body_like eval
[qr/Mock reply/, qr/"session_id":"pg-session-1"/]
--- no_error_log
[error]
[alert]
[crit]



=== TEST 2: a wrong password: logged once, requests served, records spooled
--- http_config
    ailink_config $TEST_NGINX_AILINK_ROOT/t/conf/ailink.yaml;
    ailink_audit_pg "$TEST_NGINX_PG_CONNINFO" password_file=$TEST_NGINX_PG_BADPW spool=$TEST_NGINX_PG_SPOOL2;
--- config
    location = /readyz { ailink_ready; }
--- request
GET /readyz
--- error_code: 503
--- response_body_like: "postgresql":"down"
--- error_log
password authentication failed for user "ailink"
ailink audit pg 127.0.0.1:3960/ailink: unavailable (connect:
--- no_error_log
wrong-pw-0xdeadbeef
[alert]



=== TEST 3: /readyz and /metrics with the sink up
--- http_config
    ailink_config $TEST_NGINX_AILINK_ROOT/t/conf/ailink.yaml;
    ailink_metrics_zone metrics;
    ailink_audit_pg "$TEST_NGINX_PG_CONNINFO" password_file=$TEST_NGINX_PG_PWFILE spool=$TEST_NGINX_PG_SPOOL;
--- config
    location = /readyz { ailink_ready; ailink_audit_log off; }
    location = /metrics { ailink_metrics; ailink_audit_log off; }
--- request eval
["GET /readyz", "GET /readyz", "GET /metrics"]
--- wait: 1
--- response_body_like eval
[qr/"status"/, qr/^\{"status":"ready","checks":\{"config":"ok","postgresql":"ok"\}\}/,
 qr/# TYPE ailink_backend_up gauge\nailink_backend_up\{backend="postgresql"\} 1\n(?s:.*)# TYPE ailink_audit_spool_depth gauge\nailink_audit_spool_depth 0\n/]
--- no_error_log
[error]
[alert]
