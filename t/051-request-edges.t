# The edges a client or an upstream can reach before or around the
# gateway's own handlers: requests nginx refuses while reading them,
# bodies it refuses, paths that could leave a token's upstream, and
# upstream responses that try to steer nginx.  Every answer is the
# contract's JSON envelope with a request id, and every request leaves one
# audit record with that id.  Plain Test::More: the requests are raw
# bytes, and each check reads the audit file and the mock's records.

use strict;
use warnings;
use lib 't/lib';
use AILink::Test;
use Test::More;
use IO::Socket::INET;
use JSON::PP;
use Time::HiRes qw(sleep time);

my $root = $ENV{TEST_NGINX_AILINK_ROOT};
my $nginx = start_nginx(server => <<"CONF");
        ailink_audit_log logs/audit.jsonl;
        include $root/conf-examples/ailink-errors.conf;

        location / {
            ailink_auth on;
            include $root/conf-examples/ailink-proxy.conf;
            client_max_body_size 1k;
        }
CONF
my $port = $nginx->{port};
my $audit = "$nginx->{dir}/logs/audit.jsonl";
my $json = JSON::PP->new->utf8;

# nginx may answer and close before a large request is sent whole
$SIG{PIPE} = 'IGNORE';

# sends raw bytes, returns (status, headers hash, body, seconds taken,
# the header block as it came)
sub raw {
    my $bytes = shift;
    my $t0 = time;
    my $s = IO::Socket::INET->new("127.0.0.1:$port") or die "connect: $!";
    print $s $bytes;
    local $/;
    my $res = <$s> // '';
    my $took = time - $t0;
    my ($head, $body) = split /\r\n\r\n/, $res, 2;
    my ($status) = ($head // '') =~ m{^HTTP/1\.\d (\d+)};
    my %h;
    for (split /\r\n/, $head // '') {
        $h{lc $1} = $2 if /^([^:]+):\s*(.*)$/;
    }
    return ($status // 0, \%h, $body // '', $took, $head // '');
}

sub request {
    my ($method, $path, $headers, $body) = @_;
    my $req = "$method $path HTTP/1.1\r\nHost: localhost\r\n"
              . ($headers // '') . "Connection: close\r\n";
    $req .= "Content-Length: " . length($body) . "\r\n" if defined $body;
    return raw($req . "\r\n" . ($body // ''));
}

my $action = "Authorization: Bearer $ACTION_TOKEN\r\n";
my $llm = "Authorization: Bearer $LLM_TOKEN\r\n";

sub audit_records {
    open my $f, '<', $audit or return ();
    # a line still being written is read on the next try
    return map { $json->decode($_) } grep { /\n\z/ } <$f>;
}

sub audit_of {
    my $id = shift;
    for (1 .. 40) {
        my @r = grep { ($_->{request_id} // '') eq $id } audit_records();
        return $r[0] if @r;
        sleep 0.05;
    }
    return undef;
}

sub mock_records { @{ $json->decode(mock_get('/_mock/requests')) } }

# a refusal in the envelope, the same request id in header, body and audit
sub refused {
    my ($name, $want_status, $want_code, $status, $h, $body) = @_;

    is($status, $want_status, "$name: status $want_status");
    like($h->{'content-type'} // '', qr{^application/json}, "$name: JSON");

    my $err = eval { $json->decode($body)->{error} } // {};
    is($err->{code}, $want_code, "$name: code $want_code");

    my $id = $h->{'x-ailink-request-id'} // '';
    like($id, qr/^[0-9a-f]{32}$/, "$name: a request id");
    is($err->{request_id}, $id, "$name: the same id in the body");

    my $rec = audit_of($id);
    ok($rec, "$name: an audit record with that id");
    is($rec && $rec->{status}, $want_status, "$name: audited as $want_status");
    return $rec;
}

# requests nginx refuses while reading them

my @early = (
    [ 'a dot segment above the root', "GET /../x HTTP/1.1\r\n", 400,
      'invalid_request', '/../x' ],
    [ 'a NUL in the path', "GET /a%00b HTTP/1.1\r\n", 400,
      'invalid_request', '/a%00b' ],
    [ 'an asterisk', "GET * HTTP/1.1\r\n", 400, 'invalid_request', undef ],
    [ 'CONNECT', "CONNECT example.com:443 HTTP/1.1\r\n", 400,
      'invalid_request', undef ],
    [ 'a space in the URI', "GET /a b HTTP/1.1\r\n", 400,
      'invalid_request', undef ],
    [ 'a URI over the buffers', "GET /" . ('a' x 9000) . " HTTP/1.1\r\n",
      414, 'invalid_request', undef ],
    [ 'a header over the buffers', "GET / HTTP/1.1\r\nX-Big: "
      . ('b' x 9000) . "\r\n", 431, 'invalid_request', '/' ],
    [ 'an unknown Transfer-Encoding',
      "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n", 501,
      'invalid_request', '/' ],
);

for my $case (@early) {
    my ($name, $head, $st, $code, $path) = @$case;
    my $rec = refused($name, $st, $code,
                      raw("${head}Host: localhost\r\nConnection: close\r\n\r\n"));
    is($rec && $rec->{path}, $path, "$name: the path as sent, if read")
        if defined $path;
}

my ($st, $h) = raw("CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n");
my $connect = audit_of($h->{'x-ailink-request-id'} // '-');
is($connect && $connect->{method}, 'CONNECT',
   'the audit keeps the method the client sent, not the error page\'s');

# bodies

my $big = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"'
          . ('a' x 3000) . '"}]}';
sub chunked {
    my ($body, $size) = @_;
    return join('', map { sprintf("%x\r\n%s\r\n", length, $_) }
                    unpack("(a$size)*", $body)) . "0\r\n\r\n";
}

refused('a chunked body over client_max_body_size on an LLM route', 413,
        'payload_too_large',
        raw("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n$llm"
            . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            . chunked($big, 500)));

my $small = '{"model":"gpt-4o-mini","messages":[{"role":"user",'
            . '"content":"chunked hello"}]}';
my ($cst, undef, $cbody) = raw(
    "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n$llm"
    . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    . chunked($small, 30));
is($cst, 200, 'a chunked body in several chunks is read on an LLM route');
like($cbody, qr/Mock reply from openai to: chunked hello/,
     'and reaches the provider whole');

# paths

mock_reset();

for my $path ('/v1/a\\b', '/v1/a%2fb', '/v1/a%2Fb', '/v1/a%5cb', '/v1/a#b',
              '/v1/%2e%2e/x', '/v1/%2E./x', '/v1/.%2e/x', '/v1/%252e%252e/x',
              '/v1/%25252e%25252e/x', '/v1/a/../b', '/v1/./b', '/v1/..;/x',
              '/v1/%2e%2e;a=b/x', '/v1/a%255cb', '/v1/a%252fb')
{
    my $rec = refused("action path $path", 400, 'invalid_request',
                      request('GET', $path, $action));
    is($rec && $rec->{path}, $path, "action path $path: audited as sent");
}

is(scalar(mock_records()), 0, 'no refused path reached the upstream');

($st) = request('GET', '/v1/ok%20x;v=1/100%25?q=%2e%2e', $action);
is($st, 200, 'escapes that stay inside a segment pass');
my $last = $json->decode(mock_get('/_mock/requests/last'));
is($last->{path}, '/api/v1/ok%20x;v=1/100%25', 'forwarded as sent');
my ($rec) = reverse audit_records();
is($rec->{path}, '/v1/ok%20x;v=1/100%25', 'and audited as forwarded');

($st) = request('GET', '//v1/models', $llm);
is($st, 200, 'an OpenAI passthrough path with a doubled slash');
$last = $json->decode(mock_get('/_mock/requests/last'));
is($last->{path}, '/v1/models',
   'goes upstream as the path that was routed and audited');

($st) = request('GET', '/v1/files/../models?limit=2', $llm);
$last = $json->decode(mock_get('/_mock/requests/last'));
is("$last->{path}?$last->{query}", '/v1/models?limit=2',
   'dot segments are resolved before a passthrough path is forwarded');

# request headers

request('GET', '/v1/echo', $action
        . "Proxy-Authorization: Bearer $ACTION_TOKEN\r\n");
$last = $json->decode(mock_get('/_mock/requests/last'));
ok(!exists $last->{headers}{'proxy-authorization'},
   'Proxy-Authorization is not forwarded');
unlike(join(' ', values %{ $last->{headers} }), qr/\Q$ACTION_TOKEN\E/,
       'the virtual token is in no forwarded header');

# upstream responses

for my $case ([ 'action', '/v1/garbage', $action ],
              [ 'OpenAI passthrough', '/v1/models', $llm ])
{
    my ($name, $path, $auth) = @$case;
    my ($st, $h, $body, $took) =
        request('GET', $path, $auth . "X-Mock-Scenario: no_status_line\r\n");
    refused("$name: no status line from the upstream", 502,
            'upstream_error', $st, $h, $body);
    cmp_ok($took, '<', 2, "$name: answered at once, not at a read timeout");
}

sub arm_fail {
    my $spec = $json->encode(shift);
    require HTTP::Tiny;
    HTTP::Tiny->new->post("http://127.0.0.1:$ENV{TEST_NGINX_MOCK_PORT}"
                          . '/_mock/fail',
                          { content => $spec,
                            headers => { 'Content-Type' =>
                                         'application/json' } });
}

mock_reset();
arm_fail({ status => 200, body => 'the upstream body', count => 1,
           headers => { 'X-Accel-Redirect' => '/v1/internal',
                        'X-Accel-Limit-Rate' => '1',
                        'X-Accel-Buffering' => 'yes',
                        'X-AILink-Request-Id' => 'forged',
                        'X-AILink-Cache' => 'HIT' } });

my ($ast, $ah, $abody, $atook, $ahead) = request('GET', '/v1/steer', $action);
is($ast, 200, 'X-Accel-Redirect from an upstream is not obeyed');
is($abody, 'the upstream body', 'the upstream\'s own body is answered');
cmp_ok($atook, '<', 2, 'X-Accel-Limit-Rate is not obeyed either');
is(scalar(mock_records()), 1, 'the upstream was called once');
ok(!grep({ /^x-accel-/ } keys %$ah), 'no X-Accel-* header reaches the client');
unlike($ahead, qr/forged/, 'the request id is the gateway\'s alone');
ok(!exists $ah->{'x-ailink-cache'},
   'an upstream\'s own X-AILink-* headers do not reach the client');
ok(audit_of($ah->{'x-ailink-request-id'} // ''),
   'the request id is the one audited');

done_testing();
