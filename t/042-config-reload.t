# The config-as-code file is read again on "nginx -s reload": a token added
# to it works, a token disabled in it is refused, without a restart.

use strict;
use warnings;
use lib 't/lib';
use AILink::Test;
use Test::More;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use Digest::SHA qw(sha256_hex);
use Time::HiRes qw(sleep);

my $root = $ENV{TEST_NGINX_AILINK_ROOT};
my $dir = tempdir(CLEANUP => 1);
my $mock = $ENV{TEST_NGINX_MOCK_PORT};

my $first = 'ailink_v1_proj_reload_tok_first000000000000000001';
my $second = 'ailink_v1_proj_reload_tok_second00000000000000001';

sub write_yaml {
    my ($first_enabled, $with_second) = @_;
    open my $y, '>', "$dir/ailink.yaml" or die $!;
    print $y "tokens:\n";
    print $y "  - id: tok_first\n    project: reload\n"
           . "    hash: " . sha256_hex($first) . "\n"
           . "    enabled: $first_enabled\n"
           . "    upstream: http://127.0.0.1:$mock\n";
    print $y "  - id: tok_second\n    project: reload\n"
           . "    hash: " . sha256_hex($second) . "\n"
           . "    upstream: http://127.0.0.1:$mock\n" if $with_second;
    close $y;
}

write_yaml('true', 0);

my $nginx = start_nginx(master => 1,
                        http => "ailink_config $dir/ailink.yaml;",
                        server => <<"CONF");
        location / {
            ailink_auth on;
            include $root/conf-examples/ailink-proxy.conf;
        }
CONF
my ($pid, $port) = ($nginx->{pid}, $nginx->{port});

my $http = HTTP::Tiny->new(timeout => 5, keep_alive => 0);

sub status {
    my $token = shift;
    for (1 .. 100) {
        my $res = $http->get("http://127.0.0.1:$port/v1/ping",
                             { headers => { Authorization => "Bearer $token" } });
        return $res->{status} if $res->{status} != 599;
        sleep 0.05;
    }
    return 599;
}

is(status($first), 200, 'the first token works');
is(status($second), 401, 'the second is not configured yet');

write_yaml('false', 1);
kill 'HUP', $pid;

# the new workers answer once the old ones are gone
my ($a, $b);
for (1 .. 100) {
    ($a, $b) = (status($first), status($second));
    last if $a == 401 && $b == 200;
    sleep 0.05;
}

is($a, 401, 'after the reload the disabled token is refused');
is($b, 200, 'after the reload the added token works');

# a broken file is refused by the reload, and the running config stays
open my $y, '>', "$dir/ailink.yaml" or die $!;
print $y "tokens: [\n";
close $y;
kill 'HUP', $pid;
sleep 0.5;

is(status($second), 200, 'a reload with a broken file keeps the running config');

open my $log, '<', "$nginx->{dir}/logs/error.log" or die $!;
my $errors = join '', grep { /ailink_config/ } <$log>;
like($errors, qr/\[emerg\].*ailink_config ".*ailink.yaml"/,
     'the broken file is reported in the error log');

done_testing();
