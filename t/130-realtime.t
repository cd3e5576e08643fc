# GET /v1/realtime: the Realtime API's WebSocket through the gateway.  The
# upgrade is authenticated (Authorization, or a browser's
# Sec-WebSocket-Protocol entry), routed by model, given the real credential
# and proxied; policies apply to it; the session is audited as one record
# with its duration, bytes each way and the usage of the provider's
# response.done events, read from frames split, fragmented, compressed or
# too large.  Plain Test::More with a small WebSocket client of its own:
# the blocks hold a connection open across several exchanges.

use strict;
use warnings;
use lib 't/lib';
use AILink::Test;
use AILink::Policy;
use Test::More;
use IO::Socket::INET;
use IO::Select;
use MIME::Base64 qw(encode_base64);
use JSON::PP;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);

my $root = $ENV{TEST_NGINX_AILINK_ROOT};
my $json = JSON::PP->new->canonical;
my $MODEL = 'gpt-4o-realtime-preview';
my $REAL_KEY = $ENV{AILINK_TEST_OPENAI_KEY};

my $server = <<"CONF";
        ailink_audit_log logs/audit.jsonl;

        location /small/ {
            rewrite ^/small(/.*)\$ \$1 break;
            ailink_auth on;
            ailink_stream_event_max_size 4k;
            include $root/conf-examples/ailink-proxy.conf;
        }

        location / {
            ailink_auth on;
            include $root/conf-examples/ailink-proxy.conf;
        }
CONF

my $nginx = start_nginx(server => $server);
my $dir = $nginx->{dir};

# ------------------------------------------------------------ the client

sub ws_open {
    my (%o) = @_;
    my $port = $o{port} // $nginx->{port};
    my $path = $o{path} // "/v1/realtime?model=$MODEL";
    my $sock = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                     Timeout => 5) or die "connect: $!";
    binmode $sock;
    my $key = encode_base64(join('', map { chr int rand 256 } 1 .. 16), '');
    my @h = ("GET $path HTTP/1.1", "Host: localhost");
    push @h, "Upgrade: websocket", "Connection: Upgrade"
        unless $o{no_upgrade};
    push @h, "Sec-WebSocket-Key: $key", "Sec-WebSocket-Version: 13";
    push @h, "Authorization: Bearer $o{token}" if defined $o{token};
    push @h, @{ $o{headers} || [] };
    my $req = join("\r\n", @h) . "\r\n\r\n" . ($o{early} // '');
    syswrite $sock, $req;

    my $ws = { sock => $sock, in => '', sent => length($o{early} // ''),
               received => 0 };
    while ($ws->{in} !~ /\r\n\r\n/) {
        last unless ws_fill($ws);
    }
    my $end = index($ws->{in}, "\r\n\r\n");
    die "no response head" if $end < 0;
    $ws->{head} = substr($ws->{in}, 0, $end + 4, '');
    ($ws->{status}) = $ws->{head} =~ m{^HTTP/1\.1 (\d+)};
    $ws->{received} = length $ws->{in};

    if ($ws->{status} != 101) {
        my ($len) = $ws->{head} =~ /\r\nContent-Length: (\d+)/i;
        while (defined $len && length $ws->{in} < $len) {
            last unless ws_fill($ws);
        }
        $ws->{body} = $ws->{in};
        close $sock;
    }
    return $ws;
}

sub ws_fill {
    my ($ws) = @_;
    my $sel = IO::Select->new($ws->{sock});
    return 0 unless $sel->can_read(5);
    my $n = sysread $ws->{sock}, my $buf, 65536;
    return 0 unless $n;
    $ws->{in} .= $buf;
    $ws->{received} += $n if $ws->{head};
    return 1;
}

# a client frame: masked, as RFC 6455 requires
sub ws_frame {
    my ($payload, $op, $fin) = @_;
    $op //= 1;
    $fin //= 1;
    my $len = length $payload;
    my $h = chr(($fin ? 0x80 : 0) | $op);
    if ($len < 126) {
        $h .= chr(0x80 | $len);
    } elsif ($len < 65536) {
        $h .= chr(0x80 | 126) . pack('n', $len);
    } else {
        $h .= chr(0x80 | 127) . pack('Q>', $len);
    }
    my $mask = join '', map { chr int rand 256 } 1 .. 4;
    my $m = substr($mask x (int($len / 4) + 1), 0, $len);
    return $h . $mask . ($payload ^ $m);
}

sub ws_write {
    my ($ws, $bytes, $piece) = @_;
    $ws->{sent} += length $bytes;
    if (!$piece) {
        syswrite $ws->{sock}, $bytes;
        return;
    }
    for (my $i = 0; $i < length $bytes; $i += $piece) {
        syswrite $ws->{sock}, substr($bytes, $i, $piece);
        sleep 0.002;
    }
}

sub ws_send {
    my ($ws, $event, $piece) = @_;
    ws_write($ws, ws_frame($json->encode($event)), $piece);
}

# the next frame: (fin, opcode, payload), or () at the end
sub ws_frame_in {
    my ($ws) = @_;
    for (;;) {
        my $in = $ws->{in};
        if (length $in >= 2) {
            my ($b0, $b1) = unpack 'CC', $in;
            my $len = $b1 & 0x7f;
            my $off = 2;
            if ($len == 126) {
                goto MORE if length $in < 4;
                $len = unpack 'n', substr($in, 2, 2);
                $off = 4;
            } elsif ($len == 127) {
                goto MORE if length $in < 10;
                $len = unpack 'Q>', substr($in, 2, 8);
                $off = 10;
            }
            if (length $in >= $off + $len) {
                my $payload = substr($in, $off, $len);
                substr($ws->{in}, 0, $off + $len, '');
                return ($b0 & 0x80, $b0 & 0x0f, $payload, $b0 & 0x70);
            }
        }
      MORE:
        return () unless ws_fill($ws);
    }
}

# the next message: (opcode, text); pings are noted and answered
sub ws_recv {
    my ($ws) = @_;
    my ($msg, $mop) = ('', undef);
    for (;;) {
        my ($fin, $op, $payload, $rsv) = ws_frame_in($ws);
        return () unless defined $op;
        if ($op == 9) {
            $ws->{pings}++;
            next;
        }
        next if $op == 10;
        $ws->{rsv}++ if $rsv;
        return (8, $payload) if $op == 8;
        $mop = $op if $op;
        $msg .= $payload;
        return ($mop, $msg) if $fin;
    }
}

sub ws_event {
    my ($ws) = @_;
    my ($op, $text) = ws_recv($ws);
    return undef unless defined $op && $op == 1;
    return $ws->{rsv} ? { type => 'compressed' } : decode_json($text);
}

# events up to and including the next response.done
sub ws_until_done {
    my ($ws) = @_;
    my @ev;
    while (my $ev = ws_event($ws)) {
        push @ev, $ev;
        last if ($ev->{type} // '') eq 'response.done'
                || $ev->{type} eq 'compressed' && @ev >= 6;
    }
    return @ev;
}

# a close from the client; reads to the end, so the counts are complete
sub ws_close {
    my ($ws) = @_;
    ws_write($ws, ws_frame(pack('n', 1000), 8));
    1 while ws_fill($ws);
    close $ws->{sock};
    return $ws->{received};
}

sub audit {
    my ($n, $file) = @_;
    $file //= "$dir/logs/audit.jsonl";
    my @lines;
    for (1 .. 100) {
        if (open my $f, '<', $file) {
            @lines = <$f>;
        }
        last if @lines >= $n;
        sleep 0.05;
    }
    return map { decode_json($_) } @lines;
}

sub last_audit {
    my ($n, $file) = @_;
    my @a = audit($n, $file);
    return $a[-1];
}

sub mock_last { decode_json(mock_get('/_mock/requests/last')) }

sub mock_seq {
    my $recs = decode_json(mock_get('/_mock/requests'));
    return @$recs ? $recs->[-1]{seq} : 0;
}

sub envelope {
    my ($ws) = @_;
    my $e = eval { decode_json($ws->{body}) } || {};
    return $e->{error} || {};
}

my $records = 0;

# ------------------------------------------------------------ sessions

{
    my $ws = ws_open(token => $LLM_TOKEN,
                     headers => ['Sec-WebSocket-Extensions: permessage-deflate',
                                 'X-AILink-Agent-Name: voice-bot',
                                 'X-AILink-Session-Id: sess-42',
                                 'OpenAI-Beta: realtime=v1']);
    is($ws->{status}, 101, 'bearer token: 101 Switching Protocols');
    like($ws->{head}, qr/\r\nX-AILink-Request-Id: [0-9a-f]{32}\r\n/,
         'the 101 carries the request id');
    unlike($ws->{head}, qr/Sec-WebSocket-Extensions/i,
           'no extension negotiated');
    is(ws_event($ws)->{type}, 'session.created', 'session.created first');
    ws_send($ws, { type => 'session.update',
                   session => { modalities => ['text'] } });
    my $ev = ws_event($ws);
    is($ev->{type}, 'session.updated', 'session.update answered');
    is_deeply($ev->{session}{modalities}, ['text'], '... with the session');

    ws_send($ws, { type => 'conversation.item.create',
                   item => { type => 'message', role => 'user',
                             content => [{ type => 'input_text',
                                           text => 'Say hello to the '
                                                   . 'gateway' }] } });
    is(ws_event($ws)->{type}, 'conversation.item.created', 'item created');

    my (@usage);
    for (1 .. 2) {
        ws_send($ws, { type => 'response.create' });
        my @ev = ws_until_done($ws);
        is($ev[-1]{type}, 'response.done', "response $_ done");
        push @usage, $ev[-1]{response}{usage};
    }

    my $rec = mock_last();
    is($rec->{path}, '/v1/realtime', 'the provider got the upgrade');
    is($rec->{args}{model}, $MODEL, '... with the model');
    is($rec->{headers}{authorization}, "Bearer $REAL_KEY",
       '... and the real credential');
    is($rec->{headers}{upgrade}, 'websocket', '... Upgrade: websocket');
    like($rec->{headers}{connection}, qr/upgrade/i, '... Connection: upgrade');
    ok(!exists $rec->{headers}{'sec-websocket-extensions'},
       '... no Sec-WebSocket-Extensions (frames stay readable)');
    ok(!grep({ /^x-ailink-/ } keys %{ $rec->{headers} }),
       '... no X-AILink-* header');
    is($rec->{headers}{'openai-beta'}, 'realtime=v1', '... OpenAI-Beta kept');
    unlike($json->encode($rec), qr/\Q$LLM_TOKEN\E/,
           'the virtual token never reached the provider');

    my $got = ws_close($ws);
    $records++;
    my $a = last_audit($records);
    is($a->{status}, 101, 'audit: one record, status 101');
    is($a->{path}, '/v1/realtime', 'audit: path');
    is($a->{model}, $MODEL, 'audit: model');
    is($a->{provider}, 'openai', 'audit: provider');
    is($a->{agent_name}, 'voice-bot', 'audit: agent name');
    is($a->{session_id}, 'sess-42', 'audit: session id');
    my $in = $usage[0]{input_tokens} + $usage[1]{input_tokens};
    my $out = $usage[0]{output_tokens} + $usage[1]{output_tokens};
    is($a->{prompt_tokens}, $in, 'audit: input tokens of both responses');
    is($a->{completion_tokens}, $out, 'audit: output tokens of both');
    is($a->{total_tokens}, $in + $out, 'audit: total tokens');
    ok(abs($a->{cost_usd} - ($in * 5 + $out * 20) / 1e6) < 1e-9,
       'audit: the cost at gpt-4o-realtime text rates');
    my $rt = $a->{realtime};
    is($rt->{responses}, 2, 'audit: two response.done events');
    is($rt->{usage_events}, 2, 'audit: both with usage');
    is($rt->{bytes_upstream_to_client}, $got,
       'audit: bytes to the client, exactly what it received');
    is($rt->{bytes_client_to_upstream}, $ws->{sent},
       'audit: bytes from the client, exactly what it sent');
    is($rt->{unread_messages}, 0, 'audit: every message readable');
    is($rt->{stream_error}, undef, 'audit: no stream error');
    ok(defined $rt->{duration_ms} && $rt->{duration_ms} >= 0,
       'audit: a duration');
    is(mock_last()->{ws}{closed_by}, 'client',
       'the close reached the provider');
}

# a browser: the token as a subprotocol, never forwarded
{
    my $ws = ws_open(headers => ['Sec-WebSocket-Protocol: realtime, '
                                 . "openai-insecure-api-key.$LLM_TOKEN, "
                                 . 'openai-beta.realtime-v1']);
    is($ws->{status}, 101, 'subprotocol token: 101');
    like($ws->{head}, qr/\r\nSec-WebSocket-Protocol: realtime\r\n/,
         '... the provider chose "realtime"');
    is(ws_event($ws)->{type}, 'session.created', '... session.created');
    my $rec = mock_last();
    is($rec->{headers}{'sec-websocket-protocol'},
       'realtime, openai-beta.realtime-v1',
       '... the token entry removed from the forwarded protocols');
    is($rec->{headers}{authorization}, "Bearer $REAL_KEY",
       '... the real credential injected');
    unlike($json->encode($rec), qr/\Q$LLM_TOKEN\E|insecure/,
           '... the token nowhere in what the provider got');
    ws_close($ws);
    $records++;
    is(last_audit($records)->{token_id}, 'tok_llm', '... audited as tok_llm');
}

{
    my $ws = ws_open(headers => ["Sec-WebSocket-Protocol: "
                                 . "openai-insecure-api-key.$LLM_TOKEN"]);
    is($ws->{status}, 101, 'the token as the only subprotocol: 101');
    ok(!exists mock_last()->{headers}{'sec-websocket-protocol'},
       '... and no Sec-WebSocket-Protocol forwarded');
    ws_close($ws);
    $records++;
}

# ------------------------------------------------------------ refusals

sub refused {
    my ($name, $status, $code, %o) = @_;
    my $seq = mock_seq();
    my $ws = ws_open(%o);
    is($ws->{status}, $status, "$name: $status");
    my $e = envelope($ws);
    is($e->{code}, $code, "$name: $code in the envelope");
    like($e->{request_id} // '', qr/^[0-9a-f]{32}$/,
         "$name: with the request id");
    is(mock_seq(), $seq, "$name: the provider was not called")
        unless $o{reaches};
    $records++;
    return $e;
}

refused('no token', 401, 'invalid_token');
refused('unknown token', 401, 'invalid_token',
        token => 'ailink_v1_proj_test_tok_nope00000000000000000000001');
refused('unknown subprotocol token', 401, 'invalid_token',
        headers => ['Sec-WebSocket-Protocol: realtime, '
                    . 'openai-insecure-api-key.ailink_v1_proj_test_tok_x']);
refused('disabled token', 401, 'invalid_token', token => $DISABLED_TOKEN);

my $e = refused('a Claude model', 400, 'invalid_request', token => $LLM_TOKEN,
                path => '/v1/realtime?model=claude-3-5-sonnet-20241022');
is($e->{param}, 'model', 'a Claude model: param model');
like($e->{message}, qr/served by anthropic, which has no Realtime API/,
     'a Claude model: the message says why');

$e = refused('a Gemini model', 400, 'invalid_request', token => $LLM_TOKEN,
             path => '/v1/realtime?model=gemini-2.0-flash');
like($e->{message}, qr/served by gemini/, 'a Gemini model: named');

$e = refused('no model', 400, 'invalid_request', token => $LLM_TOKEN,
             path => '/v1/realtime');
is($e->{param}, 'model', 'no model: param model');

refused('two models', 400, 'invalid_request', token => $LLM_TOKEN,
        path => "/v1/realtime?model=$MODEL&model=claude-3-5-sonnet");
refused('an unrouted model', 400, 'invalid_request', token => $LLM_TOKEN,
        path => '/v1/realtime?model=whisper-1');
$e = refused('no Upgrade header', 400, 'invalid_request', token => $LLM_TOKEN,
             no_upgrade => 1);
like($e->{message}, qr/WebSocket/, 'no Upgrade header: the message says so');

$e = refused('guardrails asked for', 400, 'invalid_request',
             token => $LLM_TOKEN, headers => ['X-AILink-Guardrails: pii_redaction']);

{
    my $seq = mock_seq();
    my $ws = ws_open(token => $LLM_TOKEN, headers => ['X-Mock-Status: 401']);
    is($ws->{status}, 401, 'the provider refuses: its status passes');
    like($ws->{body}, qr/mock error 401/, '... with its body');
    $records++;
    my $a = last_audit($records);
    is($a->{status}, 401, '... audited');
    ok(!exists $a->{realtime}, '... with no session');
}

# ------------------------------------------------------------ frames

sub session {
    my (%o) = @_;
    my $ws = ws_open(token => $LLM_TOKEN, path => $o{path},
                     headers => $o{headers}, early => $o{early});
    is($ws->{status}, 101, "$o{name}: 101");
    ws_event($ws) unless $o{early};        # session.created
    ws_send($ws, { type => 'response.create' }, $o{piece});
    my @ev = ws_until_done($ws);
    my $got = ws_close($ws);
    $records++;
    return ($ws, \@ev, last_audit($records), $got);
}

{
    my ($ws, $ev, $a, $got) = session(name => 'fragmented',
        headers => ['X-Mock-Scenario: ws_fragmented']);
    is($ev->[-1]{type}, 'response.done', 'fragmented: the client got it whole');
    ok($ws->{pings}, 'fragmented: the ping between fragments passed');
    is($a->{completion_tokens}, $ev->[-1]{response}{usage}{output_tokens},
       'fragmented: usage read across fragments and a ping');
    is($a->{realtime}{bytes_upstream_to_client}, $got,
       'fragmented: bytes counted');
}

{
    my ($ws, $ev, $a) = session(name => 'split',
        headers => ['X-Mock-Scenario: ws_split'], piece => 3);
    is($ev->[-1]{type}, 'response.done', 'split: the client got it');
    is($a->{completion_tokens}, $ev->[-1]{response}{usage}{output_tokens},
       'split: frames 7 bytes at a time are read');
    is(mock_last()->{ws}{received}[0], 'response.create',
       'split: the client frame sent 3 bytes at a time arrived');
}

{
    my ($ws, $ev, $a) = session(name => 'large audio delta',
        headers => ['X-Mock-Scenario: ws_large_delta', 'X-Mock-Size: 300000']);
    my ($delta) = grep { $_->{type} eq 'response.audio.delta' } @$ev;
    is(length $delta->{delta}, 300000, 'large delta: passed whole');
    is($a->{completion_tokens}, $ev->[-1]{response}{usage}{output_tokens},
       'large delta: the usage after it is read');
    is($a->{realtime}{unread_messages}, 0,
       'large delta: not kept, so not unread');
}

{
    my ($ws, $ev, $a) = session(name => 'oversized response.done',
        path => "/small/v1/realtime?model=$MODEL",
        headers => ['X-Mock-Scenario: ws_large_done', 'X-Mock-Size: 8000']);
    is($ev->[-1]{type}, 'response.done',
       'oversized response.done: the client got it');
    ok(length $ev->[-1]{response}{metadata}{pad} == 8000,
       'oversized response.done: whole');
    is($a->{realtime}{unread_messages}, 1,
       'oversized response.done: counted unread');
    is($a->{prompt_tokens}, undef, 'oversized response.done: no usage');
}

{
    my ($ws, $ev, $a) = session(name => 'compressed',
        headers => ['X-Mock-Scenario: ws_compressed']);
    ok($ws->{rsv}, 'compressed: frames passed with RSV1');
    ok($a->{realtime}{unread_messages} >= 1, 'compressed: counted unread');
    is($a->{prompt_tokens}, undef, 'compressed: no usage invented');
}

{
    # the client's first event sent with the upgrade request itself
    my $first = ws_frame($json->encode({ type => 'response.create' }));
    my ($ws, $ev, $a) = session(name => 'pipelined', early => $first);
    is(mock_last()->{ws}{received}[0], 'response.create',
       'pipelined: the early frame reached the provider');
    is($a->{realtime}{bytes_client_to_upstream}, $ws->{sent},
       'pipelined: and was counted');
}

{
    my $ws = ws_open(token => $LLM_TOKEN,
                     headers => ['X-Mock-Scenario: ws_close_after_done']);
    ws_event($ws);
    ws_send($ws, { type => 'response.create' });
    my @ev = ws_until_done($ws);
    my ($op, $payload) = ws_recv($ws);
    is($op, 8, 'the provider closes: its close frame reaches the client');
    1 while ws_fill($ws);
    $records++;
    my $a = last_audit($records);
    is($a->{realtime}{responses}, 1, '... and the session is audited');
    close $ws->{sock};
}

# ------------------------------------------------------------ policies

my $conf_dir = tempdir(CLEANUP => 1);
open my $y, '>', "$conf_dir/policy.yaml" or die $!;
print $y policy_yaml(<<'YAML');
policies:
  - name: realtime
    apply_to: {tokens: [tok_llm]}
    rules:
      - when: {field: model, op: eq, value: gpt-4o-realtime-denied}
        then: {deny: {reason: "no voice for this agent"}}
      - when: {field: model, op: eq, value: gpt-4o-realtime-limited}
        then: {rate_limit: {requests_per_minute: 1}}
YAML
close $y;

my $pol = start_nginx(server => $server, http => <<"CONF");
    ailink_config $conf_dir/policy.yaml;
    ailink_state_zone ailink_rt 1m;
CONF
my $pol_audit = "$pol->{dir}/logs/audit.jsonl";

$e = refused('a denying policy', 403, 'policy_denied', token => $LLM_TOKEN,
             port => $pol->{port},
             path => '/v1/realtime?model=gpt-4o-realtime-denied');
is($e->{policy_name}, 'realtime', 'a denying policy: named');
is($e->{reason}, 'no voice for this agent', 'a denying policy: its reason');

{
    my $ws = ws_open(token => $LLM_TOKEN, port => $pol->{port},
                     path => '/v1/realtime?model=gpt-4o-realtime-limited');
    is($ws->{status}, 101, 'rate limit: the first session opens');
    ws_close($ws);
    refused('rate limit: the second', 429, 'rate_limited', token => $LLM_TOKEN,
            port => $pol->{port},
            path => '/v1/realtime?model=gpt-4o-realtime-limited');
    my @a = audit(3, $pol_audit);
    is($a[-1]{status}, 429, 'rate limit: audited');
}

done_testing();
