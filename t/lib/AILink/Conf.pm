package AILink::Conf;

# "nginx -t" on a generated configuration, for the suites that check what
# the configuration loader accepts and refuses (plain Test::More cases):
#
#   use lib 't/lib';
#   use AILink::Conf;
#
#   my ($ok, $out) = nginx_t($http, $yaml);
#   rejects($name, $http, $yaml, qr/message/);
#
# Each call gets its own prefix folder; nginx.conf loads the modules of
# TEST_NGINX_LOAD_MODULES, and $yaml is written to ailink.yaml in that
# folder.  nginx -t runs under a time limit so that a configuration that
# blocks it (a FIFO) fails instead of hanging the suite.

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Temp qw(tempdir);
use Test::More ();

use Exporter 'import';
our @EXPORT = qw(nginx_t rejects);

my $root = abs_path(dirname(__FILE__) . '/../../..');

# runs nginx -t with the given http{} body and YAML; returns (ok, output)
sub nginx_t {
    my ($http, $yaml, $dir) = @_;
    my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
    my @modules = split ' ', ($ENV{TEST_NGINX_LOAD_MODULES}
                              || "$root/build/release/ngx_ailink_module.so");

    $dir //= tempdir(CLEANUP => 1);
    mkdir "$dir/logs";

    if (defined $yaml) {
        open my $y, '>', "$dir/ailink.yaml" or die $!;
        print $y $yaml;
        close $y;
    }

    open my $c, '>', "$dir/nginx.conf" or die $!;
    print $c "load_module $_;\n" for @modules;
    print $c "error_log logs/error.log;\npid logs/nginx.pid;\n"
           . "events {}\nhttp {\n$http\n}\n";
    close $c;

    my $out = `timeout 10 $nginx -t -p $dir/ -c $dir/nginx.conf 2>&1`;
    my $rc = $? >> 8;
    $out .= "(nginx -t timed out)\n" if $rc == 124;

    return ($? == 0, $out);
}

sub rejects {
    my ($name, $http, $yaml, $message) = @_;
    my ($ok, $out) = nginx_t($http, $yaml);
    Test::More::ok(!$ok, "$name: nginx -t fails");
    Test::More::like($out, $message, "$name: the message names it")
        or Test::More::diag($out);
    return $out;
}

1;
