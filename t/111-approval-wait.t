# Sync approvals (X-AILink-Approval-Wait): the connection is held with
# timers, never a blocked worker, and answered with the upstream response
# once approved, 403 approval_rejected, or 408 approval_timeout.  A
# decision taken in either of two workers releases the holder within
# 100 ms; 200 held connections cost the workers no CPU; a client that
# goes away ends its hold.  Plain Test::More.

use strict;
use warnings;
use lib 't/lib';
use AILink::Test;
use AILink::Policy;
use Test::More;
use HTTP::Tiny;
use JSON::PP;
use IO::Socket::INET;
use File::Temp qw(tempdir);
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);

my $root = $ENV{TEST_NGINX_AILINK_ROOT};
my $conf_dir = tempdir(CLEANUP => 1);
my $http = HTTP::Tiny->new(timeout => 30);
my $json = JSON::PP->new->canonical;

my $ADMIN = 'ailink_admin_test0000000000000000000001';
my $ADMIN_HASH =
    '47268db3c8274b78d1f5c083cc730c89d297262265cf0fa675585dc465e7efdf';

open my $y, '>', "$conf_dir/policy.yaml" or die $!;
print $y policy_yaml(<<"YAML");
admin_keys: [$ADMIN_HASH]
policies:
  - name: hold
    apply_to: {tokens: [tok_action]}
    rules:
      - when: {field: request.path, op: starts_with, value: /v1/charges}
        then: {require_approval: {reason: "a human looks first"}}
      - when: {field: request.path, op: starts_with, value: /v1/limited}
        then: [require_approval, {rate_limit: {requests_per_minute: 1}}]
YAML
close $y;

my $server = <<"CONF";
        location /api/v1/approvals {
            ailink_approvals_api;
        }
        location / {
            ailink_auth on;
            include $root/conf-examples/ailink-proxy.conf;
        }
CONF
my $http_conf = <<"CONF";
    ailink_config $conf_dir/policy.yaml;
    ailink_state_zone ailink_state 4m;
    ailink_approval_max_wait 60s;
CONF

my $nginx = start_nginx(master => 1, workers => 2, http => $http_conf,
                        server => $server);
my $url = $nginx->{url};

sub call {
    my ($token, $method, $path, $body, %h) = @_;
    return $http->request($method, "$url$path", {
        headers => { Authorization => "Bearer $token",
                     'Content-Type' => 'application/json', %h },
        defined $body ? (content => $body) : () });
}

sub body { return eval { decode_json($_[0]->{content}) } // {} }

sub decide {
    my ($id, $decision, $reason) = @_;
    return call($ADMIN, 'POST', "/api/v1/approvals/$id/decision",
                $json->encode({ decision => $decision, reason => $reason }));
}

# the decision in one write (no Nagle delay to blur the timing)
sub decide_raw {
    my ($id, $decision, $reason) = @_;
    my $b = $json->encode({ decision => $decision, reason => $reason });
    my $s = IO::Socket::INET->new("127.0.0.1:$nginx->{port}") or die;
    $s->setsockopt(6, 1, 1);    # TCP_NODELAY
    print $s "POST /api/v1/approvals/$id/decision HTTP/1.1\r\nHost: x\r\n"
             . "Authorization: Bearer $ADMIN\r\nConnection: close\r\n"
             . "Content-Length: " . length($b) . "\r\n\r\n$b";
    local $/;
    return scalar <$s>;
}

sub pending {
    my $res = call($ADMIN, 'GET', '/api/v1/approvals?status=pending');
    return @{ body($res)->{data} // [] };
}

# waits for a pending approval with this body; returns its id
sub pending_with {
    my ($preview) = @_;
    for (1 .. 200) {
        my ($a) = grep { $_->{body_preview} eq $preview } pending();
        return $a->{id} if $a;
        sleep 0.01;
    }
    return undef;
}

# a held request in a child; the child writes status, end time and body
sub held {
    my ($dir, $name, $body, $wait, $path) = @_;
    my $pid = fork // die;
    if ($pid == 0) {
        my $r = call($ACTION_TOKEN, 'POST', $path // '/v1/charges', $body,
                     'X-AILink-Approval-Wait' => $wait);
        my $t = time;
        open my $f, '>', "$dir/$name";
        print $f "$r->{status}\n$t\n$r->{content}";
        close $f;
        POSIX::_exit(0);
    }
    return $pid;
}

sub result {
    my ($dir, $name) = @_;
    open my $f, '<', "$dir/$name" or return {};
    my ($status, $t, @rest) = <$f>;
    chomp($status, $t);
    return { status => $status, time => $t, content => join('', @rest) };
}

sub mock_seq {
    my $last = decode_json(mock_get('/_mock/requests') || '[]');
    return @$last ? $last->[-1]{seq} : 0;
}

sub upstream_count {
    my ($since, $path) = @_;
    my $recs = decode_json(mock_get("/_mock/requests?since=$since"));
    return scalar grep { $_->{path} eq "/api$path" } @$recs;
}

my $dir = tempdir(CLEANUP => 1);

# 1. approved while held: the upstream's answer, within 100 ms of the
# decision, whichever worker took it
my @lat;
for my $i (1 .. 8) {
    my $seq = mock_seq();
    my $body = qq({"n":"a$i"});
    my $pid = held($dir, "a$i", $body, 10);
    my $id = pending_with($body);
    ok($id, "held request $i is pending");
    sleep 0.2;
    ok(!-e "$dir/a$i", "held request $i is not answered before a decision");
    my $t0 = time;
    like(decide_raw($id, 'approve', 'go'), qr{^HTTP/1.1 200}, "decision $i");
    waitpid($pid, 0);
    my $r = result($dir, "a$i");
    is($r->{status}, 200, "held request $i gets the upstream's answer");
    like($r->{content}, qr/"echo"/, 'the echo of the upstream');
    is(upstream_count($seq, '/v1/charges'), 1, 'forwarded once');
    push @lat, $r->{time} - $t0;
    is(body(call($ACTION_TOKEN, 'GET', "/v1/approvals/$id"))->{claimed},
       JSON::PP::true, 'the approval was used by the held request');
}
@lat = sort { $a <=> $b } @lat;
diag(sprintf "decision to answer: min %.1f ms, median %.1f ms, max %.1f ms",
     1000 * $lat[0], 1000 * $lat[@lat / 2], 1000 * $lat[-1]);
cmp_ok($lat[-1], '<', 0.1, 'every holder released within 100 ms');

# 2. rejected while held
my $pid = held($dir, 'r', '{"n":"r"}', 10);
my $id = pending_with('{"n":"r"}');
decide($id, 'reject', 'not today');
waitpid($pid, 0);
my $r = result($dir, 'r');
is($r->{status}, 403, 'a rejected held request: 403');
like($r->{content},
     qr/"code":"approval_rejected".*"approval_id":"$id","reason":"not today"/,
     'approval_rejected with the id and the reason');

# 3. no decision in time: 408 with the timeout; the approval stays pending
my $t0 = time;
$r = call($ACTION_TOKEN, 'POST', '/v1/charges', '{"n":"t"}',
          'X-AILink-Approval-Wait' => 1);
my $took = time - $t0;
is($r->{status}, 408, 'no decision within the wait: 408');
like($r->{content}, qr/"code":"approval_timeout".*"timeout":1,/,
     'approval_timeout with the timeout');
ok($took >= 0.9 && $took < 3, sprintf('after about a second (%.2f s)', $took));
like($r->{content}, qr/"approval_id":"(apr_[0-9a-f]{24})"/, 'and the id');
my ($tid) = $r->{content} =~ /"approval_id":"(apr_[0-9a-f]{24})"/;
is(body(call($ACTION_TOKEN, 'GET', "/v1/approvals/$tid"))->{status},
   'pending', 'the approval is still pending: the agent may poll it');

# 4. Wait: 0 is the async mode; a bad value is refused
is(call($ACTION_TOKEN, 'POST', '/v1/charges', '{"n":"z"}',
        'X-AILink-Approval-Wait' => 0)->{status}, 202, 'Wait: 0 gives 202');
$r = call($ACTION_TOKEN, 'POST', '/v1/charges', '{"n":"b"}',
          'X-AILink-Approval-Wait' => 'soon');
is($r->{status}, 400, 'a Wait that is not a number: 400');

# 5. limits after the approval count the released request once
$pid = held($dir, 'l', '{"n":"l"}', 10, '/v1/limited');
$id = pending_with('{"n":"l"}');
decide($id, 'approve', 'ok');
waitpid($pid, 0);
is(result($dir, 'l')->{status}, 200, 'a released request passes its limit');
$pid = held($dir, 'l2', '{"n":"l2"}', 10, '/v1/limited');
$id = pending_with('{"n":"l2"}');
decide($id, 'approve', 'ok');
waitpid($pid, 0);
is(result($dir, 'l2')->{status}, 429,
   'the limit counted it once: the next released one is limited');

# 6. 200 held connections cost no CPU; closing them ends their holds
my @workers = split ' ', `ps -o pid= --ppid $nginx->{pid}`;
is(scalar @workers, 2, 'two workers');

sub cpu_ticks {
    my $sum = 0;
    for my $w (@workers) {
        open my $f, '<', "/proc/$w/stat" or next;
        my @f = split ' ', scalar <$f>;
        $sum += $f[13] + $f[14];
    }
    return $sum;
}

my @socks;
for my $i (1 .. 200) {
    my $s = IO::Socket::INET->new("127.0.0.1:$nginx->{port}") or last;
    my $b = qq({"n":"c$i"});
    print $s "POST /v1/charges HTTP/1.1\r\nHost: x\r\n"
             . "Authorization: Bearer $ACTION_TOKEN\r\n"
             . "Content-Type: application/json\r\n"
             . "X-AILink-Approval-Wait: 50\r\n"
             . "Content-Length: " . length($b) . "\r\n\r\n$b";
    push @socks, $s;
}
is(scalar @socks, 200, '200 connections held');
my $n;
for (1 .. 100) {
    $n = () = grep { $_->{body_preview} =~ /^\{"n":"c\d+"\}$/ } pending();
    last if $n == 200;
    sleep 0.05;
}
is($n, 200, '200 approvals pending');
my $c0 = cpu_ticks();
sleep 3;
my $c1 = cpu_ticks();
diag("worker CPU while 200 requests were held for 3 s: "
     . ($c1 - $c0) . " ticks");
cmp_ok($c1 - $c0, '<=', 5, 'the held requests cost (almost) no CPU');

# one of them approved: only it is answered
my ($c7) = grep { $_->{body_preview} eq '{"n":"c7"}' } pending();
decide($c7->{id}, 'approve', 'just this one');
my $s7 = $socks[6];
my $line = '';
my $rin = '';
vec($rin, fileno($s7), 1) = 1;
if (select(my $rout = $rin, undef, undef, 2)) {
    sysread($s7, $line, 4096);
}
like($line, qr{^HTTP/1.1 200}, 'the approved held request is answered');

close $_ for @socks;
sleep 0.5;
ok(IO::Socket::INET->new("127.0.0.1:$nginx->{port}"),
   'the gateway still serves after 199 clients went away while held');
is(call($ACTION_TOKEN, 'GET', "/v1/approvals/$tid")->{status}, 200,
   'and answers');

open my $log, '<', "$nginx->{dir}/logs/error.log" or die $!;
my $text = do { local $/; <$log> };
unlike($text, qr/\[(alert|crit|emerg)\]/, 'no alert in the log');
unlike($text, qr/worker process \d+ exited on signal/, 'no worker crashed');

done_testing();
