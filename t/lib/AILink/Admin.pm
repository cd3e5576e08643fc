package AILink::Admin;

# Shared set-up of the admin API suites (t/10x-*.t): a gateway with the
# admin API on /api/v1/, a store directory, an admin key and a vault
# master key, and small clients for the admin API and the data plane.

use strict;
use warnings;
use AILink::Test;
use HTTP::Tiny;
use JSON::PP;
use File::Temp qw(tempdir);
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep);
use Exporter 'import';

our @EXPORT = qw($ADMIN_KEY $ADMIN_HASH admin_gateway admin call stop_gateway);

our $ADMIN_KEY = 'ailink_admin_test0000000000000000000000001';
our $ADMIN_HASH = '';
{
    require Digest::SHA;
    $ADMIN_HASH = Digest::SHA::sha256_hex($ADMIN_KEY);
}

my $http = HTTP::Tiny->new(timeout => 10);
my $json = JSON::PP->new->canonical;
my $root = $ENV{TEST_NGINX_AILINK_ROOT};

# admin_gateway(data => DIR, workers => N, http_extra => '...',
#               store => 'ailink_store_pg "..." ...;',   # not the dir
#               server_extra => 'location ... { ... }')
sub admin_gateway {
    my %o = @_;
    my $keydir = tempdir(CLEANUP => 1);
    open my $k, '>', "$keydir/master.key" or die $!;
    print $k ('c' x 64) . "\n";
    close $k;
    my $data = $o{data} // tempdir(CLEANUP => 1);
    my $store = $o{store} // "ailink_store_dir $data;";
    my $http_conf = <<"CONF";
    ailink_config @{[ $o{config} // "$root/t/conf/ailink.yaml" ]};
    $store
    ailink_admin_key $ADMIN_HASH;
    ailink_vault_master_key file:$keydir/master.key;
    ailink_audit_log logs/audit.jsonl;
    ailink_admin_audit_source logs/audit.jsonl;
CONF
    $http_conf .= $o{http_extra} // '';
    my $server = ($o{server_extra} // '') . <<"CONF";
        location /api/v1/ {
            ailink_audit_log off;
            ailink_admin_api;
        }
        location / {
            ailink_auth on;
            include $root/conf-examples/ailink-proxy.conf;
        }
CONF
    my $gw = start_nginx(master => 1, workers => $o{workers} // 2,
                         http => $http_conf, server => $server,
                         $o{dir} ? (dir => $o{dir})
                         : $ENV{ADMIN_TEST_DIR} ? (dir => $ENV{ADMIN_TEST_DIR})
                         : ());
    $gw->{data} = $data;
    return $gw;
}

sub admin {
    my ($gw, $method, $path, $body, %o) = @_;
    my $res = $http->request($method, "$gw->{url}/api/v1$path", {
        headers => { Authorization => 'Bearer ' . ($o{key} // $ADMIN_KEY),
                     'Content-Type' => $o{type} // 'application/json' },
        defined $body ? (content => ref $body ? $json->encode($body) : $body)
                      : () });
    $res->{json} = eval { decode_json($res->{content}) };
    return $res;
}

sub call {
    my ($gw, $token, $method, $path, $body) = @_;
    my $res = $http->request($method, "$gw->{url}$path", {
        headers => { Authorization => "Bearer $token",
                     'Content-Type' => 'application/json' },
        defined $body ? (content => $body) : () });
    $res->{json} = eval { decode_json($res->{content}) };
    return $res;
}

sub stop_gateway {
    my ($gw) = @_;
    kill 'TERM', $gw->{pid};
    waitpid $gw->{pid}, 0;
}

1;
