# Streams are translated as they arrive, never buffered whole: with a long
# stream whose events the upstream spaces out, the first translated event
# must reach the client long before the upstream has finished, and the
# events keep arriving spread over time.  Plain Test::More with HTTP::Tiny,
# whose data_callback sees each piece as it arrives.

use strict;
use warnings;
use lib 't/lib';
use AILink::Test;
use Test::More;
use HTTP::Tiny;
use Time::HiRes qw(time sleep);

my $root = $ENV{TEST_NGINX_AILINK_ROOT};
my $nginx = start_nginx(server => <<"CONF");
        location / {
            ailink_auth on;
            include $root/conf-examples/ailink-proxy.conf;
        }
CONF
my $port = $nginx->{port};

my $http = HTTP::Tiny->new(timeout => 30);

# streams 2000 events 1 ms apart (at least two seconds in all) and records
# when each piece arrived
sub stream {
    my ($model) = @_;
    my (@pieces, $start);
    my $body = qq({"model":"$model","stream":true,"messages":)
               . qq([{"role":"user","content":"Tell a long story"}]});

    $start = time;
    my $res = $http->request('POST', "http://127.0.0.1:$port/v1/chat/completions", {
        headers => {
            'Authorization' =>
                'Bearer ailink_v1_proj_test_tok_llm0000000000000000000001',
            'Content-Type' => 'application/json',
            'X-Mock-Events' => 2000,
            'X-Mock-Chunk-Delay-Ms' => 1,
        },
        content => $body,
        data_callback => sub { push @pieces, [time - $start, $_[0]] },
    });

    return ($res, \@pieces, time - $start);
}

for my $model (qw(gpt-4o claude-3-5-haiku-20241022 gemini-2.0-flash)) {
    my ($res, $pieces, $total) = stream($model);
    my $text = join '', map { $_->[1] } @$pieces;
    my @events = $text =~ /^data: /mg;

    is($res->{status}, 200, "$model: streamed");
    like($text, qr/data: \[DONE\]\n\n\z/, "$model: ends with [DONE]");
    cmp_ok(scalar(@events), '>=', 2000, "$model: every event arrived");
    cmp_ok($total, '>=', 1.5, "$model: the upstream took its time")
        or diag("total $total s");
    cmp_ok($pieces->[0][0], '<', $total / 4,
           "$model: the first event came before the upstream finished")
        or diag("first piece at $pieces->[0][0] s of $total s");
    cmp_ok(scalar(@$pieces), '>=', 20,
           "$model: the stream came in many pieces, not one");
}

done_testing();
