# "nginx -t" and the guardrails' directives: good values pass, every bad
# one fails naming it.  Plain Test::More, as t/001-config.t.

use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use Cwd qw(abs_path);

my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
my $root = abs_path('.');
my @modules = split ' ', ($ENV{TEST_NGINX_LOAD_MODULES}
                          || "$root/build/release/ngx_ailink_module.so");

# runs nginx -t with the given location lines; returns (ok, output)
sub nginx_t {
    my $lines = shift;
    my $dir = tempdir(CLEANUP => 1);
    mkdir "$dir/logs";

    open my $c, '>', "$dir/nginx.conf" or die $!;
    print $c "load_module $_;\n" for @modules;
    print $c "error_log logs/error.log;\npid logs/nginx.pid;\n"
           . "events {}\nhttp {\n server {\n  listen 127.0.0.1:1;\n"
           . "  location / {\n   $lines\n  }\n }\n}\n";
    close $c;

    my $out = `$nginx -t -p $dir/ -c $dir/nginx.conf 2>&1`;
    return ($? == 0, $out);
}

my ($ok, $out) = nginx_t(<<'LINES');
   ailink_guardrails pii_redaction prompt_injection;
   ailink_guardrails_injection_threshold 0.75;
   ailink_guardrails_response off;
   ailink_guardrails_restore on;
   ailink_guardrails_unchecked refuse;
LINES
ok($ok, 'every guardrails directive with a good value') or diag($out);

($ok, $out) = nginx_t('ailink_guardrails off;');
ok($ok, 'ailink_guardrails off') or diag($out);

for my $case (
    ['ailink_guardrails pii_redaction toxicity;',
     qr/unknown guardrail "toxicity" in .*nginx\.conf:\d+/],
    ['ailink_guardrails_injection_threshold 0;',
     qr/invalid injection threshold "0"/],
    ['ailink_guardrails_injection_threshold 1.5;',
     qr/invalid injection threshold "1\.5"/],
    ['ailink_guardrails_injection_threshold high;',
     qr/invalid injection threshold "high"/],
    ['ailink_guardrails_unchecked ignore;',
     qr/invalid value "ignore" in .*nginx\.conf:\d+/],
    ['ailink_guardrails_restore maybe;',
     qr/invalid value "maybe" in "ailink_guardrails_restore"/],
    ["ailink_guardrails pii_redaction;\n   ailink_guardrails off;",
     qr/"ailink_guardrails" directive is duplicate/])
{
    my ($lines, $message) = @$case;
    ($ok, $out) = nginx_t($lines);
    ok(!$ok, "$lines: nginx -t fails");
    like($out, $message, "$lines: the message names it") or diag($out);
}

done_testing();
