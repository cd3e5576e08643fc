# Precision and recall of the guardrails on the labelled corpus
# (t/guard/corpus.jsonl, made by t/guard/gen_corpus.py), measured through
# the gateway: PII samples go as user messages, fifty to a request, and
# what the mock provider received is compared with what was sent; each
# injection sample is a request of its own, blocked (403) or not.  The
# table is printed (prove -v) and each figure is held to a floor.
#
#   AILINK_GUARD_TABLE=1 prove -I t/lib t/092-guard-corpus.t   the table

use strict;
use warnings;
use lib 't/lib';
use AILink::Test;
use Test::More;
use HTTP::Tiny;
use JSON::PP ();

my $root = $ENV{TEST_NGINX_AILINK_ROOT};
my $json = JSON::PP->new->utf8->canonical;

# floors: every figure measured 1.000 when the corpus was written (the
# corpus and the detectors were written together: these guard against
# regressions, they do not estimate real-world accuracy)
my %floor = map { $_ => [0.97, 0.97] }
            qw(email phone card ssn iban ip secret injection);

my $nginx = start_nginx(
    http => "ailink_config $root/t/conf/ailink.yaml;",
    server => <<"CONF");
        client_max_body_size 4m;
        location / {
            ailink_auth on;
            include $root/conf-examples/ailink-proxy.conf;
        }
CONF

my $http = HTTP::Tiny->new(timeout => 30);
my %hdr = (Authorization => "Bearer $LLM_TOKEN",
           'Content-Type' => 'application/json');

open my $fh, '<:raw', "$root/t/guard/corpus.jsonl" or die "corpus: $!";
my @samples = map { $json->decode($_) } <$fh>;
close $fh;

my @pii = grep { $_->{set} eq 'pii' } @samples;
my @inj = grep { $_->{set} eq 'injection' } @samples;

ok(@pii >= 7 * 600 && @inj >= 400, 'the corpus is whole');

my (%tp, %fp, %fn, @misses);
my %label = (email => 'EMAIL', phone => 'PHONE', card => 'CARD',
             ssn => 'SSN', iban => 'IBAN', ip => 'IP', secret => 'SECRET');
my %type_of = reverse %label;

# PII, fifty samples a request
for (my $i = 0; $i < @pii; $i += 50) {
    my @batch = @pii[$i .. ($i + 49 < $#pii ? $i + 49 : $#pii)];
    my $body = $json->encode({
        model => 'gpt-4o-mini',
        messages => [map { { role => 'user', content => $_->{text} } }
                     @batch],
    });

    my $res = $http->post("$nginx->{url}/v1/chat/completions",
                          { headers => { %hdr,
                                         'X-AILink-Guardrails'
                                             => 'pii_redaction' },
                            content => $body });
    die "status $res->{status}: $res->{content}" unless $res->{success};

    my $rec = $json->decode(mock_get('/_mock/requests/last'));
    my @got = map { $_->{content} } @{ $rec->{json}{messages} };

    for my $k (0 .. $#batch) {
        my $s = $batch[$k];
        my $out = $got[$k] // '';
        my %n;
        $n{$type_of{$1}}++ while $out =~ /\[([A-Z]+)_\d+\]/g;

        if ($s->{label}) {
            my $t = $s->{type};
            my $hit = index($out, $s->{value}) < 0 && $n{$t};

            if ($hit) {
                $tp{$t}++;
                $n{$t}--;
            } else {
                $fn{$t}++;
                push @misses, "missed $t: $s->{text} => $out";
            }
        }

        for my $t (keys %n) {
            next unless $n{$t} > 0;
            $fp{$t} += $n{$t};
            push @misses, "false $t: $s->{text} => $out";
        }
    }
}

# injection, one request each
for my $s (@inj) {
    my $res = $http->post("$nginx->{url}/v1/chat/completions",
                          { headers => { %hdr,
                                         'X-AILink-Guardrails'
                                             => 'prompt_injection' },
                            content => $json->encode({
                                model => 'gpt-4o-mini',
                                messages => [{ role => 'user',
                                               content => $s->{text} }] }) });
    my $blocked = $res->{status} == 403;
    die "status $res->{status}: $res->{content}"
        unless $blocked || $res->{status} == 200;

    if ($s->{label} && $blocked) {
        $tp{injection}++;
    } elsif ($s->{label}) {
        $fn{injection}++;
        push @misses, "missed injection: $s->{text}";
    } elsif ($blocked) {
        $fp{injection}++;
        push @misses, "false injection: $s->{text}";
    }
}

my @table = ('| detector | samples (+/-) | TP | FP | FN | precision | recall |',
             '|---|---|---|---|---|---|---|');

for my $t (qw(email phone card ssn iban ip secret injection)) {
    my ($p, $r) = map { $_ // 0 } ($tp{$t}, $fp{$t});
    my $f = $fn{$t} // 0;
    my $prec = $p + $r ? $p / ($p + $r) : 1;
    my $rec = $p + $f ? $p / ($p + $f) : 0;
    my $n = $t eq 'injection' ? '200/200' : '300/300';

    push @table, sprintf('| %s | %s | %d | %d | %d | %.3f | %.3f |',
                         $t, $n, $p, $r, $f, $prec, $rec);

    cmp_ok($prec, '>=', $floor{$t}[0], "$t precision");
    cmp_ok($rec, '>=', $floor{$t}[1], "$t recall");
}

diag(join "\n", '', @table) if $ENV{AILINK_GUARD_TABLE};
note(join "\n", @table);
diag(join "\n", '', @misses) if $ENV{AILINK_GUARD_MISSES};

done_testing();
