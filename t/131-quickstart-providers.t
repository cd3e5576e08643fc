# The quickstart with no provider keys: conf-examples/quickstart.conf and
# quickstart.yaml as ./quickstart.sh runs them (only the ports, the module
# path and the prefix changed), with the environment its
# scripts/quickstart-providers.sh gives, so that gpt-*, claude-* and
# gemini-* all answer through the mock provider, the last two translated.
# Plain Test::More: it runs the quickstart's own nginx.conf.

use strict;
use warnings;
use lib 't/lib';
use AILink::Test;
use Test::More;
use HTTP::Tiny;
use JSON::PP;
use File::Temp qw(tempdir);
use File::Copy qw(copy);
use Digest::SHA qw(sha256_hex);
use IO::Socket::INET;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep);

my $root = $ENV{TEST_NGINX_AILINK_ROOT};
my $prefix = tempdir(CLEANUP => 1);
my $token = 'ailink_v1_proj_demo_tok_quickstart0000000000000001';

sub port {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => 0) or die $!;
    my $p = $s->sockport;
    close $s;
    return $p;
}

my ($port, $admin_port) = (port(), port());

# the quickstart's files, as they are
mkdir "$prefix/conf-examples";
mkdir "$prefix/.run";
for my $f (glob "$root/conf-examples/*") {
    copy($f, "$prefix/conf-examples/") or die "copy $f: $!";
}

my $module = (split ' ', ($ENV{TEST_NGINX_LOAD_MODULES}
                          || "$root/build/release/ngx_ailink_module.so"))[0];
my $conf_file = "$prefix/conf-examples/quickstart.conf";
open my $in, '<', $conf_file or die $!;
my $conf = do { local $/; <$in> };
close $in;

ok($conf =~ s{^load_module build/release/ngx_ailink_module\.so;}
                {load_module $module;}m, 'quickstart.conf: its load_module');
ok($conf =~ s{listen 8080;}{listen 127.0.0.1:$port;},
   'quickstart.conf: its gateway port');
ok($conf =~ s{listen 127\.0\.0\.1:8081;}{listen 127.0.0.1:$admin_port;},
   'quickstart.conf: its admin port');
$conf =~ s{error_log stderr notice;}{error_log .run/error.log info;};
$conf = "user root;\n$conf" if $> == 0;

open my $out, '>', $conf_file or die $!;
print $out $conf;
close $out;

# the environment ./quickstart.sh gives nginx when no key is set
my $mock = $ENV{TEST_NGINX_MOCK_PORT};
my $env = `env -u OPENAI_API_KEY -u ANTHROPIC_API_KEY -u GEMINI_API_KEY bash -c '. "$root/scripts/quickstart-providers.sh" $mock && echo "mocked:\$quickstart_mocked" && env'`;
my %env = map { /^([A-Z_]+)=(.*)$/ ? ($1, $2) : () } split /\n/, $env;
like($env, qr/^mocked: OpenAI Anthropic Gemini$/m,
     'no keys: the three providers are mocked');
is($env{ANTHROPIC_BASE_URL}, "http://127.0.0.1:$mock/v1",
   'Anthropic: the mock');
is($env{GEMINI_BASE_URL}, "http://127.0.0.1:$mock/v1beta", 'Gemini: the mock');

my $one = `env -u ANTHROPIC_API_KEY -u GEMINI_API_KEY OPENAI_API_KEY=sk-real bash -c '. "$root/scripts/quickstart-providers.sh" $mock && echo "mocked:\$quickstart_mocked served:\$quickstart_served base:\${OPENAI_BASE_URL:-none}"'`;
like($one, qr/^mocked: Anthropic Gemini served: OpenAI base:none$/m,
     'with OPENAI_API_KEY: OpenAI is the real API, the others mocked');

local @ENV{keys %env} = values %env;
$ENV{AILINK_DEMO_TOKEN_HASH} = sha256_hex($token);

my $pid = fork // die;
if ($pid == 0) {
    exec $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx', '-p', "$prefix/", '-c', $conf_file;
    die;
}

my $up;
for (1 .. 200) {
    last if $up = IO::Socket::INET->new("127.0.0.1:$port");
    die "nginx exited: " . `cat $prefix/.run/error.log`
        if waitpid($pid, WNOHANG) == $pid;
    sleep 0.05;
}
ok($up, 'the quickstart nginx listens');
close $up if $up;

my $http = HTTP::Tiny->new(timeout => 10);

sub chat {
    my ($model, %o) = @_;
    return $http->post("http://127.0.0.1:$port/v1/chat/completions", {
        headers => { Authorization => "Bearer $token",
                     'Content-Type' => 'application/json' },
        content => encode_json({ model => $model, stream => $o{stream}
                                     ? JSON::PP::true : JSON::PP::false,
                                 messages => [{ role => 'user',
                                                content => 'Hello' }] }) });
}

for my $case (['gpt-4o-mini', 'openai'],
              ['claude-sonnet-4-5', 'anthropic'],
              ['gemini-2.5-flash', 'gemini'])
{
    my ($model, $provider) = @$case;
    my $r = chat($model);
    is($r->{status}, 200, "$model: 200");
    is($r->{headers}{'x-ailink-provider'}, $provider, "$model: $provider");
    my $body = eval { decode_json($r->{content}) } || {};
    is($body->{object}, 'chat.completion', "$model: a chat.completion");
    is($body->{choices}[0]{message}{content},
       "Mock reply from $provider to: Hello", "$model: the mock's answer");
    ok($body->{usage}{total_tokens} > 0, "$model: usage");

    my $s = chat($model, stream => 1);
    like($s->{content}, qr/"chat\.completion\.chunk".*data: \[DONE\]/s,
         "$model: streams as OpenAI chunks");
}

my $last = decode_json(mock_get('/_mock/requests/last'));
is($last->{headers}{'x-goog-api-key'}, 'mock-key-not-a-secret',
   'Gemini got the placeholder key, in its own scheme');

kill 'QUIT', $pid;
waitpid($pid, 0);

done_testing();
