# Buffered audit records survive "nginx -s reload" and a graceful stop:
# the old worker flushes its buffer as it exits.  Plain Test::More, since
# the test signals a master process it runs itself.

use strict;
use warnings;
use lib 't/lib';
use AILink::Test;
use Test::More;
use HTTP::Tiny;
use Time::HiRes qw(sleep);

my $root = $ENV{TEST_NGINX_AILINK_ROOT};
my $nginx = start_nginx(master => 1, server => <<"CONF");
        # a flush time far away: only the exit of a worker writes records
        ailink_audit_log logs/audit.jsonl buffer=64k flush=1h;
        location / {
            ailink_auth on;
            include $root/conf-examples/ailink-proxy.conf;
        }
CONF
my ($pid, $port) = ($nginx->{pid}, $nginx->{port});
my $audit = "$nginx->{dir}/logs/audit.jsonl";

my $http = HTTP::Tiny->new(timeout => 5);
my $headers = { Authorization =>
                'Bearer ailink_v1_proj_test_tok_action00000000000000000001' };

sub get {
    my $path = shift;
    return $http->get("http://127.0.0.1:$port$path", { headers => $headers });
}

sub lines {
    open my $f, '<', $audit or return ();
    return <$f>;
}

sub wait_lines {
    my $n = shift;
    for (1 .. 100) {
        my @l = lines();
        return @l if @l >= $n;
        sleep 0.05;
    }
    return lines();
}

is(get('/v1/first')->{status}, 200, 'first request served');
my @l = lines();
is(scalar(@l), 0, 'the record waits in the buffer');

kill 'HUP', $pid;
@l = wait_lines(1);
is(scalar(@l), 1, 'reload: the old worker flushed the record');
like($l[0] // '', qr/"path":"\/v1\/first"/, 'it is the first request');

is(get('/v1/second')->{status}, 200, 'served after the reload');

kill 'QUIT', $pid;
waitpid($pid, 0);
@l = lines();
is(scalar(@l), 2, 'graceful stop: the record was flushed');
like($l[1] // '', qr/"path":"\/v1\/second"/, 'it is the second request');

done_testing();
