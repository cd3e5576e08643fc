# The approvals page (ailink_approvals_page) as served, and "nginx -t" on
# the approval directives and the config file's admin_keys and
# require_approval options.  The page in a real browser is
# t/e2e/test_approvals_page_browser.py.  Plain Test::More.

use strict;
use warnings;
use lib 't/lib';
use AILink::Test;
use AILink::Policy;
use Test::More;
use HTTP::Tiny;
use File::Temp qw(tempdir);
use Cwd qw(abs_path);

my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
my $root = abs_path('.');
my @modules = split ' ', ($ENV{TEST_NGINX_LOAD_MODULES}
                          || "$root/build/release/ngx_ailink_module.so");
my $http = HTTP::Tiny->new(timeout => 10);

# nginx -t with these http{} and location lines and this YAML
sub nginx_t {
    my ($http_lines, $loc, $yaml) = @_;
    my $dir = tempdir(CLEANUP => 1);
    mkdir "$dir/logs";
    open my $y, '>', "$dir/policy.yaml" or die $!;
    print $y policy_yaml($yaml // '');
    close $y;
    open my $c, '>', "$dir/nginx.conf" or die $!;
    print $c "load_module $_;\n" for @modules;
    print $c "error_log logs/error.log;\npid logs/nginx.pid;\n"
           . "events {}\nhttp {\n ailink_config $dir/policy.yaml;\n"
           . " ailink_state_zone z 1m;\n $http_lines\n"
           . " server {\n  listen 127.0.0.1:1;\n"
           . "  location / {\n   $loc\n  }\n }\n}\n";
    close $c;
    my $out = `$nginx -t -p $dir/ -c $dir/nginx.conf 2>&1`;
    return ($? == 0, $out);
}

my $hash = '47268db3c8274b78d1f5c083cc730c89d297262265cf0fa675585dc465e7efdf';

my ($ok, $out) = nginx_t("ailink_approval_max_wait 10m;\n"
                         . " ailink_idempotency_ttl 1h;\n"
                         . " ailink_idempotency_max_size 256k;",
                         'ailink_approvals_page /admin/api/v1/approvals/;',
                         <<"YAML");
admin_keys:
  - $hash
  - {name: bob, hash: $hash}
policies:
  - name: p
    apply_to: all
    rules:
      - then: {require_approval: {reason: r, expires_in: 60, notes: n}}
      - then: {require_approval: "a reason"}
      - then: require_approval
YAML
ok($ok, 'every approval directive and option with a good value')
    or diag($out);

for my $case (
    ['', 'ailink_approvals_page "/x\'y";', undef,
     qr/ailink_approvals_page: "\/x'y" is not a plain URL/],
    ['', "ailink_approvals_page;\n   ailink_approvals_page;", undef,
     qr/"ailink_approvals_page" directive is duplicate/],
    ['ailink_approval_max_wait soon;', '', undef,
     qr/"ailink_approval_max_wait" directive invalid value/],
    ['', '', "admin_keys: nope\n", qr/admin_keys: must be a list/],
    ['', '', "admin_keys: [abc]\n",
     qr/admin_keys: each is the SHA-256 of a key in hex/],
    ['', '', "admin_keys: [" . ('z' x 64) . "]\n",
     qr/admin_keys: each is the SHA-256 of a key in hex/],
    ['', '', <<'YAML', qr/require_approval\.expires_in must be a number/],
policies:
  - name: p
    apply_to: all
    rules:
      - then: {require_approval: {expires_in: 0}}
YAML
    ['', '', <<'YAML', qr/unknown key "timeout"/])
policies:
  - name: p
    apply_to: all
    rules:
      - then: {require_approval: {timeout: 5}}
YAML
{
    my ($h, $l, $y, $message) = @$case;
    ($ok, $out) = nginx_t($h, $l, $y);
    ok(!$ok, "nginx -t fails: " . ($h || $l || $y));
    like($out, $message, 'naming the mistake');
}

# the page as served
my $server = <<'CONF';
        location = /approvals { ailink_approvals_page; }
        location = /other { ailink_approvals_page /gw/api/v1/approvals; }
CONF
my $gw = start_nginx(server => $server);

my $res = $http->get("$gw->{url}/approvals");
is($res->{status}, 200, 'the page');
like($res->{headers}{'content-type'}, qr{^text/html; charset=utf-8$},
     'HTML');
like($res->{headers}{'content-security-policy'},
     qr/default-src 'none'.*connect-src 'self'.*frame-ancestors 'none'/,
     'a strict Content-Security-Policy');
is($res->{headers}{'cache-control'}, 'no-store', 'not cached');
like($res->{content}, qr{const API = "/api/v1/approvals";},
     'the default API URL');
like($res->{content}, qr/textContent/, 'agent text is put as text');
unlike($res->{content}, qr/innerHTML/, 'never as markup');
is(length $res->{content}, $res->{headers}{'content-length'},
   'Content-Length is the body');
like($http->get("$gw->{url}/other")->{content},
     qr{const API = "/gw/api/v1/approvals";}, 'a configured API URL');
is($http->request('HEAD', "$gw->{url}/approvals")->{status}, 200, 'HEAD');
is($http->post_form("$gw->{url}/approvals", {})->{status}, 405,
   'POST is not allowed');

done_testing();
