# The admin API: admin keys (401/403), tokens created, listed, patched and
# revoked through it and used on the data plane by every worker, errors
# (bad JSON, unknown fields, duplicates, missing objects, objects of the
# config file), the credentials vault (AES-256-GCM at rest, write-only,
# in use -> delete refused, wrong master key) and the store surviving
# restart and kill -9 during writes.  Plain Test::More: the test starts,
# kills and restarts its own gateways.

use strict;
use warnings;
use lib 't/lib';
use AILink::Test;
use Test::More;
use HTTP::Tiny;
use JSON::PP;
use File::Temp qw(tempdir);
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep);

my $root = $ENV{TEST_NGINX_AILINK_ROOT};
my $mock = $ENV{TEST_NGINX_MOCK_PORT};
my $http = HTTP::Tiny->new(timeout => 10);
my $json = JSON::PP->new->canonical;

my $ADMIN_KEY = 'ailink_admin_test0000000000000000000000001';
my $ADMIN_HASH = `printf %s $ADMIN_KEY | sha256sum | cut -d' ' -f1`;
chomp $ADMIN_HASH;

my $keydir = tempdir(CLEANUP => 1);
my $MASTER = 'a' x 64;
my $MASTER2 = 'b' x 64;
open my $k, '>', "$keydir/master.key" or die $!;
print $k "$MASTER\n";
close $k;
open $k, '>', "$keydir/wrong.key" or die $!;
print $k "$MASTER2\n";
close $k;

my $data = tempdir(CLEANUP => 1);

sub http_conf {
    my ($keyfile) = @_;
    $keyfile //= "$keydir/master.key";
    return <<"CONF";
    ailink_config $root/t/conf/ailink.yaml;
    ailink_store_dir $data;
    ailink_admin_key $ADMIN_HASH;
    ailink_vault_master_key file:$keyfile;
CONF
}

my $server = <<"CONF";
        location /api/v1/ {
            ailink_admin_api;
        }
        location / {
            ailink_auth on;
            include $root/conf-examples/ailink-proxy.conf;
        }
CONF

my $gw = start_nginx(master => 1, workers => 2, http => http_conf(), dir => ($ENV{ADMIN_TEST_DIR} // tempdir(CLEANUP => 1)),
                     server => $server);

sub admin {
    my ($method, $path, $body, $key) = @_;
    my $res = $http->request($method, "$gw->{url}/api/v1$path", {
        headers => { Authorization => 'Bearer ' . ($key // $ADMIN_KEY),
                     'Content-Type' => 'application/json' },
        defined $body ? (content => ref $body ? $json->encode($body) : $body)
                      : () });
    $res->{json} = eval { decode_json($res->{content}) };
    return $res;
}

sub call {
    my ($token, $method, $path, $body) = @_;
    my $res = $http->request($method, "$gw->{url}$path", {
        headers => { Authorization => "Bearer $token",
                     'Content-Type' => 'application/json' },
        defined $body ? (content => $body) : () });
    $res->{json} = eval { decode_json($res->{content}) };
    return $res;
}

sub stop {
    my ($g, $sig) = @_;
    # the workers of a killed master go too (kill -9 of the whole gateway)
    my @workers = split ' ', `pgrep -P $g->{pid}`;
    kill $sig // 'TERM', $g->{pid};
    kill 'KILL', @workers if ($sig // '') eq 'KILL' && @workers;
    waitpid $g->{pid}, 0;
}

# --- admin keys

my $r = $http->get("$gw->{url}/api/v1/tokens");
is $r->{status}, 401, 'no key: 401';
is decode_json($r->{content})->{error}{code}, 'invalid_token', '... invalid_token';

$r = admin('GET', '/tokens', undef, 'ailink_admin_wrong');
is $r->{status}, 401, 'a wrong admin key: 401';

$r = admin('GET', '/tokens', undef, $ACTION_TOKEN);
is $r->{status}, 403, 'a data-plane token: 403';
like $r->{json}{error}{message}, qr/admin key/, '... saying an admin key is needed';

$r = admin('GET', '/nothing');
is $r->{status}, 404, 'an unknown resource: 404';

# refused requests change nothing (fail closed)
for my $key ($ACTION_TOKEN, 'ailink_admin_wrong', '') {
    $r = admin('POST', '/tokens', { name => "sneaky" }, length $key ? $key : 'x');
    ok $r->{status} == 401 || $r->{status} == 403, "a create with key '$key' is refused";
}
$r = admin('GET', '/tokens');
ok !(grep { $_->{name} eq 'sneaky' } @{ $r->{json}{data} }), '... and nothing was created';
my $victim = admin('POST', '/tokens', { name => 'victim' })->{json}{id};
for my $key ($ACTION_TOKEN, 'ailink_admin_wrong') {
    $r = admin('DELETE', "/tokens/$victim", undef, $key);
    ok $r->{status} == 401 || $r->{status} == 403, "a revoke with key '$key' is refused";
}
ok !admin('GET', "/tokens/$victim")->{json}{revoked}, '... and the token is not revoked';

# --- tokens

$r = admin('GET', '/tokens');
is $r->{status}, 200, 'list tokens';
my ($yaml) = grep { $_->{id} eq 'tok_action' } @{ $r->{json}{data} };
is $yaml->{source}, 'yaml', 'the file\'s tokens are listed, source yaml';

$r = admin('POST', '/tokens', { name => 'billing', project => 'acme',
                                upstream_url => "http://127.0.0.1:$mock/api",
                                credential_id => 'action' });
is $r->{status}, 201, 'create a token: 201';
my $tok = $r->{json}{token};
my $id = $r->{json}{id};
like $tok, qr/^ailink_v1_proj_acme_tok_[0-9a-f]{32}$/, '... the token, once';
like $id, qr/^tok_[0-9a-f]{16}$/, '... an id';
ok !exists $r->{json}{hash}, '... no hash in the answer';

# every worker sees it at once: several requests, new connections
my $ok = 0;
for (1 .. 8) {
    my $c = call($tok, 'POST', '/v1/charges', '{"amount":5}');
    $ok++ if $c->{status} == 200 && $c->{json}{echo}{path} eq '/api/v1/charges'
             && $c->{json}{echo}{headers}{'x-api-key'} eq $ENV{AILINK_TEST_ACTION_KEY};
}
is $ok, 8, 'the new token works on the data plane, with its credential';

$r = admin('GET', "/tokens/$id");
is $r->{status}, 200, 'get a token';
is $r->{json}{name}, 'billing', '... its name';
is $r->{json}{upstream_url}, "http://127.0.0.1:$mock/api", '... its upstream';
ok !exists $r->{json}{token} && !exists $r->{json}{hash}, '... never the token';

$r = admin('GET', '/tokens');
ok((grep { $_->{id} eq $id && $_->{source} eq 'api' } @{ $r->{json}{data} }),
   'listed with source api');

$r = admin('PATCH', "/tokens/$id", { name => 'billing-2' });
is $r->{status}, 200, 'patch a token';
is $r->{json}{name}, 'billing-2', '... renamed';

$r = admin('PATCH', "/tokens/$id", { hash => 'x' });
is $r->{status}, 400, 'patch with an unknown field: 400';

$r = admin('POST', '/tokens', '{"name": ');
is $r->{status}, 400, 'bad JSON: 400';
is $r->{json}{error}{code}, 'invalid_request', '... invalid_request';

$r = admin('POST', '/tokens', { name => 'x', colour => 'red' });
is $r->{status}, 400, 'unknown field: 400';
like $r->{json}{error}{message}, qr/colour/, '... naming it';

$r = admin('POST', '/tokens', { name => 'billing-2' });
is $r->{status}, 409, 'duplicate name: 409';

$r = admin('POST', '/tokens', { name => 'bad-cred', credential_id => 'nope' });
is $r->{status}, 400, 'unknown credential: 400';
like $r->{json}{error}{message}, qr/unknown credential "nope"/,
     '... with the loader\'s message';

$r = admin('POST', '/tokens', { name => 'bad-url', upstream_url => 'ftp://x' });
is $r->{status}, 400, 'a bad upstream URL: 400';

$r = admin('GET', '/tokens/tok_nothing');
is $r->{status}, 404, 'a missing token: 404';
$r = admin('DELETE', '/tokens/tok_nothing');
is $r->{status}, 404, 'revoking a missing token: 404';

$r = admin('PATCH', '/tokens/tok_action', { name => 'x' });
is $r->{status}, 409, 'a token of the config file is read-only: 409';
$r = admin('DELETE', '/tokens/tok_action');
is $r->{status}, 409, '... and cannot be revoked through the API';

# an LLM token (no upstream) routed by model, with a per-provider credential
$r = admin('POST', '/tokens', { name => 'llm', credentials => { openai => 'openai' } });
is $r->{status}, 201, 'create an LLM token';
my $llm = $r->{json}{token};
my $c = call($llm, 'POST', '/v1/chat/completions',
             '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}');
is $c->{status}, 200, '... it reaches the provider';

# revoke: takes effect on the next request, in every worker
$r = admin('DELETE', "/tokens/$id");
is $r->{status}, 200, 'revoke';
ok $r->{json}{revoked}, '... revoked';
my $refused = 0;
for (1 .. 8) {
    $c = call($tok, 'POST', '/v1/charges', '{}');
    $refused++ if $c->{status} == 401;
}
is $refused, 8, 'a revoked token is refused by every worker at once';

$r = admin('PATCH', "/tokens/$id", { enabled => JSON::PP::true });
is $r->{status}, 409, 'a revoked token cannot be enabled again';

# --- credentials vault

$r = admin('POST', '/credentials', { name => 'stripe', secret => 'sk-vault-secret-XYZZY',
                                     scheme => 'header', header => 'X-Api-Key' });
is $r->{status}, 201, 'create a credential';
ok !exists $r->{json}{secret} && !exists $r->{json}{sealed}, '... secret not returned';

$r = admin('GET', '/credentials');
my ($cr) = grep { $_->{id} eq 'stripe' } @{ $r->{json}{data} };
ok $cr && !exists $cr->{secret} && !exists $cr->{sealed}, 'listed: metadata only';

$r = admin('POST', '/tokens', { name => 'vaulted', upstream_url => "http://127.0.0.1:$mock/api",
                                credential_id => 'stripe' });
is $r->{status}, 201, 'a token using the vault credential';
my $vt = $r->{json}{token};
my $vid = $r->{json}{id};
$c = call($vt, 'GET', '/v1/x');
is $c->{json}{echo}{headers}{'x-api-key'}, 'sk-vault-secret-XYZZY',
   '... the decrypted secret is injected upstream';

$r = admin('DELETE', '/credentials/stripe');
is $r->{status}, 409, 'delete while in use: 409';
is $r->{json}{error}{code}, 'in_use', '... in_use';

$r = admin('POST', '/credentials/stripe/rotate', { secret => 'sk-vault-rotated-PLUGH' });
is $r->{status}, 200, 'rotate the secret';
$c = call($vt, 'GET', '/v1/x');
is $c->{json}{echo}{headers}{'x-api-key'}, 'sk-vault-rotated-PLUGH',
   '... the new secret is used at once';

$r = admin('POST', '/credentials', { name => 'openai', secret => 'x' });
is $r->{status}, 409, 'a credential of the config file is read-only: 409';

$r = admin('POST', '/credentials', { name => 'nosecret' });
is $r->{status}, 400, 'a credential without a secret: 400';

my $plain = `grep -rl -e XYZZY -e PLUGH $data`;
is $plain, '', 'no plaintext secret in the data directory';
ok((glob "$data/store-*.json"), 'the store is in the data directory');

# --- restart: everything acknowledged is there

stop($gw);
$gw = start_nginx(master => 1, workers => 2, http => http_conf(), server => $server,
                  dir => $gw->{dir});
$c = call($vt, 'GET', '/v1/x');
is $c->{status}, 200, 'after a restart the API token works';
is $c->{json}{echo}{headers}{'x-api-key'}, 'sk-vault-rotated-PLUGH', '... with its vault secret';
$c = call($tok, 'GET', '/v1/x');
is $c->{status}, 401, '... and the revoked one stays revoked';

# --- kill -9 during writes: nothing acknowledged is lost

my $pid = fork // die;
if ($pid == 0) {
    my @acked;
    for my $i (1 .. 400) {
        my $res = admin('POST', '/tokens', { name => "crash-$i",
                                             upstream_url => "http://127.0.0.1:$mock/api" });
        last unless $res->{status};
        if ($res->{status} == 201) {
            open my $f, '>>', "$keydir/acked" or die;
            print $f "$res->{json}{token}\n";
            close $f;
        }
        last if $res->{status} >= 500 && $res->{status} != 503;
    }
    POSIX::_exit(0);     # not exit: END would stop the mock
}
sleep 0.6;
stop($gw, 'KILL');
waitpid $pid, 0;
open my $af, '<', "$keydir/acked" or die "no token was acknowledged\n";
my @acked = map { chomp; $_ } <$af>;
close $af;
ok @acked > 0, scalar(@acked) . ' tokens acknowledged before kill -9';

$gw = start_nginx(master => 1, workers => 2, http => http_conf(), server => $server,
                  dir => $gw->{dir});
my $lost = 0;
for my $t (@acked) {
    $c = call($t, 'GET', '/v1/x');
    $lost++ unless $c->{status} == 200;
}
is $lost, 0, 'every acknowledged token works after kill -9 and restart';
my @tmp = glob "$data/store-*.json";
cmp_ok scalar(@tmp), '<=', 2, 'compaction: at most two snapshots on disk';

# --- a wrong or missing master key is a startup error

stop($gw);
# whether nginx refused to start (exited), whatever start_nginx saw
sub refused {
    my $g = eval { start_nginx(@_) } or return 1;
    sleep 0.3;
    return 1 if waitpid($g->{pid}, WNOHANG) == $g->{pid};
    stop($g);
    return 0;
}

ok refused(master => 1, http => http_conf("$keydir/wrong.key"),
           server => $server, dir => $gw->{dir}),
   'a wrong master key: nginx does not start';
like `cat $gw->{dir}/logs/error.log`, qr/wrong master key/, '... saying so';

my $nokey = http_conf();
$nokey =~ s/\s*ailink_vault_master_key[^\n]*//;
ok refused(master => 1, http => $nokey, server => $server, dir => $gw->{dir}),
   'no master key while the store holds secrets: nginx does not start';

$gw = start_nginx(master => 1, workers => 2, http => http_conf(), server => $server,
                  dir => $gw->{dir});
is call($vt, 'GET', '/v1/x')->{status}, 200, 'the right key starts it again';
stop($gw);

# --- master key rotation: the new key, the old one as previous

my $rotate = http_conf("$keydir/wrong.key")
             . "    ailink_vault_previous_master_key file:$keydir/master.key;\n";
$gw = start_nginx(master => 1, workers => 2, http => $rotate, server => $server,
                  dir => $gw->{dir});
$c = call($vt, 'GET', '/v1/x');
is $c->{json}{echo}{headers}{'x-api-key'}, 'sk-vault-rotated-PLUGH',
   'rotation: started with the new key and the previous one';
like `cat $gw->{dir}/logs/error.log`, qr/re-sealed under the new master key/, '... re-sealed';
stop($gw);

$gw = start_nginx(master => 1, workers => 2, http => http_conf("$keydir/wrong.key"),
                  server => $server, dir => $gw->{dir});
$c = call($vt, 'GET', '/v1/x');
is $c->{json}{echo}{headers}{'x-api-key'}, 'sk-vault-rotated-PLUGH',
   '... then the new key alone opens the vault';
stop($gw);
ok refused(master => 1, http => http_conf(), server => $server, dir => $gw->{dir}),
   '... and the old key no longer does';
is `grep -rl PLUGH $data`, '', '... still no plaintext on disk';

done_testing();
