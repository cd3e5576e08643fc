# The admin API's store in PostgreSQL (ailink_store_pg) against a real
# PostgreSQL 15 (t/lib/AILink/Pg.pm: a throwaway cluster on port 3980; the
# suite fails when it cannot start).  The blocks: one gateway creates and
# lists a token through the store; a wrong password (an empty store,
# admin changes 503, the password never logged); /readyz and /metrics.  Then plain Test::More,
# two gateways of two workers on one database: a token created on A works
# on B, revoked on A it is refused on B within the poll interval; a
# credential and a service created on B used by A; a gateway that has not
# seen the other's commit gets 409 store_conflict, and concurrent commits
# on both lose nothing; PostgreSQL stopped: known tokens still served,
# admin changes 503 (logged once), then PostgreSQL back: changes work and
# the gateways converge; a restart loads the document from PostgreSQL; a
# start with PostgreSQL down serves no token of the store until it
# returns; old generations pruned; errors at nginx -t, the password never
# echoed.

use lib 't/lib';
use AILink::Test;
use AILink::Pg;
use Test::Nginx::Socket 'no_plan';
use HTTP::Tiny;
use File::Temp qw(tempdir);
use POSIX ();
use Time::HiRes ();

our $pg = AILink::Pg->start(3980);

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
write_file("$tmp/master.key", ('c' x 64) . "\n");

$ENV{TEST_NGINX_PG_CONNINFO} = $pg->conninfo;
$ENV{TEST_NGINX_PG_PWFILE} = "$tmp/pw";
$ENV{TEST_NGINX_PG_BADPW} = "$tmp/badpw";
$ENV{TEST_NGINX_MASTER_KEY} = "$tmp/master.key";

add_block_preprocessor(\&ailink_defaults);
no_shuffle();
no_root_location();
run_tests();

{
use Test::More;
use AILink::Admin;

my $root = $ENV{TEST_NGINX_AILINK_ROOT};
my $mock = $ENV{TEST_NGINX_MOCK_PORT};
my $http = HTTP::Tiny->new(timeout => 10);

sub q1 { return $pg->psql(@_) }

# every block above used the database: start the nodes from an empty one
q1("DROP TABLE IF EXISTS ailink_store");

sub store_pg {
    my ($extra) = @_;
    return "ailink_store_pg \"" . $pg->conninfo . "\""
         . " password_file=$tmp/pw poll=100ms timeout=2s keep=5 "
         . ($extra // '') . ";";
}

sub node {
    return admin_gateway(store => store_pg(@_), workers => 2,
                         server_extra => 'location = /readyz { ailink_ready; }');
}

sub ready { return $http->get("$_[0]->{url}/readyz") }

sub error_log {
    my $n = shift;
    open my $log, '<', "$n->{dir}/logs/error.log" or die $!;
    local $/;
    return scalar <$log>;
}

# the status of the first answer to satisfy $ok within $secs, polled
sub until_status {
    my ($secs, $ok, $do) = @_;
    my $r;
    my $end = Time::HiRes::time() + $secs;
    do {
        $r = $do->();
        return $r if $ok->($r->{status});
        Time::HiRes::sleep(0.02);
    } while (Time::HiRes::time() < $end);
    return $r;
}

my $A = node();
my $B = node();

is(q1("SELECT count(*) FROM ailink_store"), '0',
   'the table is made at start, empty');
my $rd = ready($A);
is($rd->{status}, 200, 'readyz: 200');
like($rd->{content}, qr/"store":"ok"/, '... "store":"ok"');

# 1. a token created on A works on B
my $r = admin($A, 'POST', '/tokens', { name => 'shared', project => 'acme',
                                       upstream_url => "http://127.0.0.1:$mock/api",
                                       credential_id => 'action' });
is($r->{status}, 201, 'A: token created');
my ($tok, $id) = ($r->{json}{token}, $r->{json}{id});
is(q1("SELECT max(generation) FROM ailink_store"), '1',
   '... committed as generation 1');
like(q1("SELECT doc FROM ailink_store WHERE generation = 1"), qr/"\Q$id\E"/,
     '... the document holds it');
unlike(q1("SELECT doc FROM ailink_store WHERE generation = 1"), qr/\Q$tok\E/,
       '... never the token itself');

my $t0 = Time::HiRes::time();
$r = until_status(3, sub { $_[0] == 200 },
                  sub { call($B, $tok, 'GET', '/v1/charges') });
my $seen = Time::HiRes::time() - $t0;
is($r->{status}, 200, 'B: the token of A works');
is($r->{json}{echo}{headers}{'x-api-key'}, $ENV{AILINK_TEST_ACTION_KEY},
   '... with its credential');
cmp_ok($seen, '<', 1, sprintf('... within %.3f s', $seen));
my $ok = 0;
$ok += call($B, $tok, 'GET', '/v1/charges')->{status} == 200 for 1 .. 10;
is($ok, 10, '... in every worker of B');
is(admin($B, 'GET', "/tokens/$id")->{json}{source}, 'api',
   "B's admin API lists it");

# 2. revoked on A: refused on B within the poll interval
$r = admin($A, 'DELETE', "/tokens/$id");
is($r->{status}, 200, 'A: token revoked');
$t0 = Time::HiRes::time();
$r = until_status(3, sub { $_[0] == 401 },
                  sub { call($B, $tok, 'GET', '/v1/charges') });
$seen = Time::HiRes::time() - $t0;
is($r->{status}, 401, 'B: the revoked token is refused');
is($r->{json}{error}{code}, 'invalid_token', '... invalid_token');
cmp_ok($seen, '<', 0.5, sprintf('... within %.3f s (poll=100ms)', $seen));
my $refused = 0;
$refused += call($B, $tok, 'GET', '/v1/charges')->{status} == 401 for 1 .. 10;
is($refused, 10, '... by every worker of B');
is(call($A, $tok, 'GET', '/v1/charges')->{status}, 401, '... and by A');

# 3. a credential and a service created on B, used by A
$r = admin($B, 'POST', '/credentials', { name => 'svc', secret => 'svc-secret-164',
                                         scheme => 'bearer' });
is($r->{status}, 201, 'B: a vault credential');
unlike(q1("SELECT doc FROM ailink_store ORDER BY generation DESC LIMIT 1"),
       qr/svc-secret-164/, '... sealed in the table');
$r = until_status(3, sub { $_[0] == 201 },
                  sub { admin($B, 'POST', '/services', {
                            name => 'pay', base_url => "http://127.0.0.1:$mock/v2",
                            credential_id => 'svc' }) });
is($r->{status}, 201, 'B: a service with it');
$r = until_status(3, sub { $_[0] == 200 },
                  sub { call($A, $ACTION_TOKEN, 'GET', '/v1/proxy/services/pay/x') });
is($r->{status}, 200, 'A: the service of B is proxied');
is($r->{json}{echo}{path}, '/v2/x', '... below its base URL');
is($r->{json}{echo}{headers}{authorization}, 'Bearer svc-secret-164',
   "... with B's credential, opened with the shared master key");

# 4. conflicts: a gateway that has not seen the other's commit
my $C = node('poll=60s');
$r = admin($A, 'POST', '/tokens', { name => 'from-a' });
is($r->{status}, 201, 'A: a token');
my $from_a = $r->{json}{id};
$r = admin($C, 'POST', '/tokens', { name => 'from-c' });
is($r->{status}, 409, 'C (poll=60s, behind): 409');
is($r->{json}{error}{code}, 'store_conflict', '... store_conflict');
like($r->{json}{error}{message}, qr/retry/, '... saying retry');
ok(length $r->{json}{error}{request_id}, "... in the contract's envelope");
$r = admin($C, 'POST', '/tokens', { name => 'from-c' });
is($r->{status}, 201, 'C: the retry at once succeeds (the conflict loaded the newer document)');
my $from_c = $r->{json}{id};
is(admin($C, 'GET', "/tokens/$from_a")->{status}, 200,
   "... and A's token is kept: nothing lost");
$r = until_status(3, sub { $_[0] == 200 },
                  sub { admin($A, 'GET', "/tokens/$from_c") });
is($r->{status}, 200, "... A follows C's commit");
like(error_log($C), qr/ailink store pg 127\.0\.0\.1:3980\/ailink: generation \d+ was committed by another gateway first/,
     'the conflict logged');
POSIX::kill($C->{pid}, POSIX::SIGQUIT());
waitpid($C->{pid}, 0);

# concurrent commits on A and B: each wins or gets a conflict and retries
my $rounds = 15;
my ($conflicts, $bad) = (0, 0);
my @names;
for my $i (1 .. $rounds) {
    my $go = Time::HiRes::time() + 0.05;
    my @kids;
    for my $n ([$A, "a$i"], [$B, "b$i"]) {
        push @names, $n->[1];
        pipe(my $rd, my $wr);
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            close $rd;
            Time::HiRes::sleep($go - Time::HiRes::time())
                if $go > Time::HiRes::time();
            my @st;
            for (1 .. 100) {
                my $x = admin($n->[0], 'POST', '/tokens', { name => $n->[1] });
                push @st, $x->{status} . ':' . ($x->{json}{error}{code} // '');
                last if $x->{status} == 201;
                Time::HiRes::sleep(0.05);
            }
            print $wr join(',', @st), "\n";
            close $wr;
            POSIX::_exit(0);
        }
        close $wr;
        push @kids, [$pid, $rd];
    }
    for my $k (@kids) {
        my $line = readline($k->[1]);
        waitpid($k->[0], 0);
        chomp $line;
        my @st = split /,/, $line;
        $conflicts += grep { $_ eq '409:store_conflict' } @st;
        $bad++ unless @st && $st[-1] =~ /^201:/
                      && !grep { !/^(201:|409:store_conflict)$/ } @st;
    }
}
is($bad, 0, "$rounds rounds of two concurrent creates: each one 201 in the "
            . "end, only 409 store_conflict before");
cmp_ok($conflicts, '>', 0, "... $conflicts conflict(s) seen on the way");

sub api_names {
    my $n = shift;
    my $l = admin($n, 'GET', '/tokens')->{json}{data} || [];
    return { map { $_->{name} => 1 } grep { $_->{source} eq 'api' } @$l };
}

my $missing;
for (1 .. 50) {
    my ($na, $nb) = (api_names($A), api_names($B));
    $missing = join ' ', grep { !$na->{$_} || !$nb->{$_} } @names;
    last if $missing eq '';
    Time::HiRes::sleep(0.05);
}
is($missing, '', 'every token of both gateways is on both: nothing lost');

# 5. pruned: keep=5
cmp_ok(q1("SELECT count(*) FROM ailink_store"), '<=', 5,
       'old generations pruned (keep=5)');
is(q1("SELECT count(*) = max(generation) - min(generation) + 1"
      . " FROM ailink_store"), 't', '... the newest kept, in sequence');

# 6. PostgreSQL stopped: known tokens served, changes 503, then back
$r = admin($A, 'POST', '/tokens', { name => 'before-outage',
                                    upstream_url => "http://127.0.0.1:$mock/api" });
is($r->{status}, 201, 'a token before the outage');
my $tok2 = $r->{json}{token};
$r = until_status(3, sub { $_[0] == 200 },
                  sub { call($B, $tok2, 'GET', '/v1/x') });
is($r->{status}, 200, '... known to B');

$pg->stop;
Time::HiRes::sleep(0.5);

$rd = ready($B);
is($rd->{status}, 503, 'PostgreSQL down: readyz 503 (the poller saw it)');
like($rd->{content}, qr/"store":"down"/, '... "store":"down"');

$ok = 0;
for my $n ($A, $B) {
    $ok += call($n, $tok2, 'GET', '/v1/x')->{status} == 200 for 1 .. 5;
}
is($ok, 10, 'PostgreSQL down: the tokens known are served by both');
is(call($B, $tok, 'GET', '/v1/x')->{status}, 401,
   '... the revoked one still refused');
$r = admin($A, 'POST', '/tokens', { name => 'during-outage' });
is($r->{status}, 503, 'an admin change: 503');
is($r->{json}{error}{code}, 'store_unavailable', '... store_unavailable');
is($r->{headers}{'retry-after'}, '1', '... Retry-After');
is(admin($B, 'DELETE', "/tokens/$from_a")->{status}, 503, '... on B too');
is(admin($A, 'GET', "/tokens/$from_a")->{status}, 200,
   '... reads are served');
admin($A, 'POST', '/tokens', { name => 'during-outage' }) for 1 .. 3;
Time::HiRes::sleep(0.5);
for my $n ([$A, 'A'], [$B, 'B']) {
    my @down = error_log($n->[0])
               =~ /ailink store pg 127\.0\.0\.1:3980\/ailink: unavailable \(/g;
    is(scalar @down, 1, "$n->[1]: the outage logged once");
}

$pg->start_again;
$r = until_status(10, sub { $_[0] == 201 },
                  sub { admin($B, 'POST', '/tokens', { name => 'after-outage',
                            upstream_url => "http://127.0.0.1:$mock/api" }) });
is($r->{status}, 201, 'PostgreSQL back: changes work again');
my $tok3 = $r->{json}{token};
$r = until_status(3, sub { $_[0] == 200 },
                  sub { call($A, $tok3, 'GET', '/v1/x') });
is($r->{status}, 200, '... and the gateways converge (A uses the token of B)');
like(error_log($A), qr/ailink store pg 127\.0\.0\.1:3980\/ailink: connected/,
     '... A logged PostgreSQL back');
ok(!api_names($A)->{'during-outage'}, '... what was refused is not there');
like(ready($A)->{content}, qr/"store":"ok"/, '... readyz "store":"ok" again');

# a reload keeps the document, and the new workers follow
kill 'HUP', $A->{pid};
Time::HiRes::sleep(1);
is(call($A, $tok3, 'GET', '/v1/x')->{status}, 200,
   'A reloaded: the document kept');
$r = admin($B, 'POST', '/tokens', { name => 'after-reload',
                                    upstream_url => "http://127.0.0.1:$mock/api" });
is($r->{status}, 201, 'B: a token after the reload of A');
my $tok4 = $r->{json}{token};
$r = until_status(3, sub { $_[0] == 200 },
                  sub { call($A, $tok4, 'GET', '/v1/x') });
is($r->{status}, 200, "... A's new workers follow B");
$r = until_status(3, sub { $_[0] == 201 || $_[0] >= 500 },
                  sub { admin($A, 'POST', '/tokens', { name => 'a-after-reload' }) });
is($r->{status}, 201, '... and A commits again');

# 7. a restart loads the document from PostgreSQL
POSIX::kill($B->{pid}, POSIX::SIGQUIT());
waitpid($B->{pid}, 0);
$B = node();
is(call($B, $tok3, 'GET', '/v1/x')->{status}, 200,
   'B restarted: the store is loaded at start');
is(call($B, $tok, 'GET', '/v1/x')->{status}, 401,
   '... the revoked token refused');
like(error_log($B), qr/ailink store pg 127\.0\.0\.1:3980\/ailink: generation \d+ loaded/,
     '... logged');

# 8. a start with PostgreSQL down: no token of the store until it returns
POSIX::kill($B->{pid}, POSIX::SIGQUIT());
waitpid($B->{pid}, 0);
$pg->stop;
$B = node();
is(call($B, $tok3, 'GET', '/v1/x')->{status}, 401,
   'B started with PostgreSQL down: the store\'s tokens refused (fail closed)');
is(call($B, $ACTION_TOKEN, 'GET', '/v1/x')->{status}, 200,
   '... the file\'s tokens served');
is(admin($B, 'POST', '/tokens', { name => 'x' })->{status}, 503,
   '... admin changes 503');
like(error_log($B), qr/unavailable at start \(connect: .*starting with an empty store/,
     '... logged');
$pg->start_again;
$r = until_status(10, sub { $_[0] == 200 },
                  sub { call($B, $tok3, 'GET', '/v1/x') });
is($r->{status}, 200, 'PostgreSQL back: the store is loaded');
is(call($B, $tok, 'GET', '/v1/x')->{status}, 401,
   '... the revoked token refused');

for my $n ($A, $B) {
    unlike(error_log($n), qr/\Q$AILink::Pg::PASSWORD\E|\[alert\]|\[crit\]/,
           'no password, alert or crit in the error log');
}

# 9. configuration errors at nginx -t, the password never echoed
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

my $ci = $pg->conninfo;
my $out = nginx_t("ailink_store_pg \"$ci password=s3cr3t-x bogus=1\";");
like($out, qr/ailink_store_pg: invalid connection string \(invalid connection option "bogus"\)/,
     'a bad connection string fails nginx -t');
unlike($out, qr/s3cr3t-x/, '... its password not echoed');
$out = nginx_t("ailink_store_pg \"$ci password='s3cr3t-y\";");
like($out, qr/invalid connection string \(the string is not shown/,
     'an unparsable one fails, not shown');
unlike($out, qr/s3cr3t-y/, '... its password not echoed');
$out = nginx_t("ailink_store_pg \"$ci password=s3cr3t-z\";");
like($out, qr/password authentication failed/,
     'a wrong password in the string: nginx -t says so');
like($out, qr/test is successful/, '... and passes (the store starts empty)');
unlike($out, qr/s3cr3t-z/, '... never echoing it');
$out = nginx_t("ailink_store_pg \"$ci\" password_file=$tmp/pw;"
              . " ailink_vault_master_key file:$tmp/master.key;");
like($out, qr/test is successful/, 'nginx -t loads the store and passes');
unlike($out, qr/unavailable/, '... PostgreSQL answered');
unlike($out, qr/\Q$AILink::Pg::PASSWORD\E/, '... never echoing the password');
like(nginx_t("ailink_store_pg \"$ci\" poll=1ms;"), qr/invalid "poll=1ms"/,
     'poll=1ms refused');
like(nginx_t("ailink_store_pg \"$ci\" retry=1;"),
     qr/invalid parameter "retry=1"/, 'an unknown parameter refused');
like(nginx_t("ailink_store_pg \"$ci\" password_file=$tmp/nope;"),
     qr/cannot open password_file/, 'a missing password_file refused');
like(nginx_t("ailink_store_dir $tmp/d; ailink_store_pg \"$ci\";"),
     qr/is duplicate \(or "ailink_store_dir" is set: one store\)/,
     'one store: a directory or PostgreSQL');
}

$pg->stop;

__DATA__

=== TEST 1: a token created through the store in PostgreSQL, then listed
--- http_config
    ailink_config $TEST_NGINX_AILINK_ROOT/t/conf/ailink.yaml;
    ailink_store_pg "$TEST_NGINX_PG_CONNINFO" password_file=$TEST_NGINX_PG_PWFILE poll=100ms;
    ailink_admin_key 01752923a82f2b42fac78da7725c9fccc1ab7c3c32e0d1219410e402054b4a67;
    ailink_vault_master_key file:$TEST_NGINX_MASTER_KEY;
--- config
    location /api/v1/ { ailink_admin_api; }
--- request eval
["POST /api/v1/tokens
{\"name\":\"block-1\"}",
"GET /api/v1/tokens"]
--- more_headers
Authorization: Bearer ailink_admin_test0000000000000000000000001
--- error_code eval
[201, 200]
--- response_body_like eval
[qr/"token":"ailink_v1_proj_/, qr/\{[^{}]*"name":"block-1"[^{}]*"source":"api"/]
--- no_error_log
[error]
[alert]
[crit]



=== TEST 2: a wrong password: an empty store, admin changes 503, never logged
--- http_config
    ailink_config $TEST_NGINX_AILINK_ROOT/t/conf/ailink.yaml;
    ailink_store_pg "$TEST_NGINX_PG_CONNINFO" password_file=$TEST_NGINX_PG_BADPW;
    ailink_admin_key 01752923a82f2b42fac78da7725c9fccc1ab7c3c32e0d1219410e402054b4a67;
    ailink_vault_master_key file:$TEST_NGINX_MASTER_KEY;
--- config
    location /api/v1/ { ailink_admin_api; }
--- request
POST /api/v1/tokens
{"name":"block-2"}
--- more_headers
Authorization: Bearer ailink_admin_test0000000000000000000000001
--- error_code: 503
--- response_headers
Retry-After: 1
--- response_body_like: "code":"store_unavailable"
--- error_log
password authentication failed for user "ailink"
ailink store pg 127.0.0.1:3980/ailink: unavailable
--- no_error_log
wrong-pw-0xdeadbeef
[alert]



=== TEST 3: /readyz and /metrics with the store's PostgreSQL up
--- http_config
    ailink_config $TEST_NGINX_AILINK_ROOT/t/conf/ailink.yaml;
    ailink_metrics_zone metrics;
    ailink_store_pg "$TEST_NGINX_PG_CONNINFO" password_file=$TEST_NGINX_PG_PWFILE;
--- config
    location = /readyz { ailink_ready; ailink_audit_log off; }
    location = /metrics { ailink_metrics; ailink_audit_log off; }
--- request eval
["GET /readyz", "GET /metrics"]
--- error_code eval
[200, 200]
--- response_body_like eval
[qr/^\{"status":"ready","checks":\{"config":"ok","store":"ok"\}\}/,
 qr/ailink_backend_up\{backend="store"\} 1\n/]
--- no_error_log
[error]
[alert]
[crit]
