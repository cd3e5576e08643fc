# Policies in IANA time zones: context.time.* and spend caps follow the
# zone's offset of the moment (daylight saving time included), from the
# system's time zone database.  The expected hours come from Perl's own
# localtime under the same zone.

use lib 't/lib';
use AILink::Test;
use AILink::Policy;
use POSIX qw(strftime tzset);
use Test::Nginx::Socket 'no_plan';

# the hour and weekday now in a zone, as the C library sees it
sub local_hour {
    my ($zone) = @_;
    local $ENV{TZ} = $zone;
    tzset();
    my @t = localtime(time);
    my $h = $t[2];
    delete $ENV{TZ};
    tzset();
    return $h;
}

our $NY = local_hour('America/New_York');
our $SYD = local_hour('Australia/Sydney');       # in daylight time in December
our $KOL = local_hour('Asia/Kolkata');            # a half-hour offset

add_block_preprocessor(\&policy_defaults);
no_shuffle();
no_root_location();
run_tests();

__DATA__

=== TEST 1: context.time.hour in three IANA zones (one in daylight saving time)
--- user_files eval
AILink::Policy::policy_files(<<"YAML")
policies:
  - name: new-york
    timezone: America/New_York
    apply_to: {tokens: [tok_action]}
    rules:
      - when: {not: {field: context.time.hour, op: eq, value: $main::NY}}
        then: {deny: {reason: "not $main::NY in New York"}}
  - name: sydney
    timezone: Australia/Sydney
    apply_to: {tokens: [tok_action]}
    rules:
      - when: {not: {field: context.time.hour, op: eq, value: $main::SYD}}
        then: {deny: {reason: "not $main::SYD in Sydney"}}
  - name: kolkata
    timezone: Asia/Kolkata
    apply_to: {tokens: [tok_action]}
    rules:
      - when: {field: context.time.hour, op: eq, value: $main::KOL}
        then: {deny: {reason: "$main::KOL in Kolkata"}}
YAML
--- request
GET /v1/me
--- more_headers eval
"Authorization: Bearer $AILink::Test::ACTION_TOKEN"
--- error_code: 403
--- response_body_like eval
qr/"policy_name":"kolkata","reason":"\d+ in Kolkata"/
--- no_error_log
[error]



=== TEST 2: a zone's hour differs from UTC's: a rule for the UTC hour does not match
--- user_files eval
my $utc = (gmtime(time))[2];
AILink::Policy::policy_files(<<"YAML")
policies:
  - name: sydney-is-not-utc
    timezone: Australia/Sydney
    apply_to: {tokens: [tok_action]}
    rules:
      - when: {field: context.time.hour, op: eq, value: $utc}
        then: {deny: {reason: "UTC hour"}}
YAML
--- request
GET /v1/me
--- more_headers eval
"Authorization: Bearer $AILink::Test::ACTION_TOKEN"
--- error_code: 200
--- no_error_log
[error]



=== TEST 3: a spend cap per day in an IANA zone counts and refuses
--- user_files eval
AILink::Policy::policy_files(<<"YAML")
policies:
  - name: budget
    apply_to: {tokens: [tok_llm]}
    rules:
      - then: {spend_cap: {limit_usd: 20, period: day, timezone: Australia/Sydney}}
YAML
--- request eval
["POST /v1/chat/completions
{\"model\":\"mock-priced\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}",
"POST /v1/chat/completions
{\"model\":\"mock-priced\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}",
"POST /v1/chat/completions
{\"model\":\"mock-priced\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}"]
--- more_headers
Authorization: Bearer ailink_v1_proj_test_tok_llm0000000000000000000001
--- error_code eval
[200, 200, 402]
--- response_body_like eval
[qr/Mock reply/, qr/Mock reply/, qr/"code":"budget_exceeded".*"spent_usd":28\.000000,"limit_usd":20\.000000/]
--- no_error_log
[error]
