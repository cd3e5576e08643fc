
/*
 * Copyright (C) AILink
 *
 * PII and secrets: one pattern per type finds candidates, a validator in
 * C keeps the real ones (Luhn and issuer prefixes for cards, ISO 13616
 * lengths and mod-97 for IBANs, SSA area/group/serial rules for SSNs,
 * digit counts and trunk prefixes for phone numbers, inet_pton() for
 * IPv6).  Patterns run in byte mode: no UTF check, \b and \w are ASCII.
 */


#define NGX_AILINK_GUARD_ENGINE_ONLY
#include "ngx_ailink_guard.h"

#include <arpa/inet.h>


static ngx_uint_t ngx_ailink_guard_email_check(u_char *p, size_t *len);
static ngx_uint_t ngx_ailink_guard_phone_check(u_char *p, size_t *len);
static ngx_uint_t ngx_ailink_guard_card_check(u_char *p, size_t *len);
static ngx_uint_t ngx_ailink_guard_ssn_check(u_char *p, size_t *len);
static ngx_uint_t ngx_ailink_guard_iban_check(u_char *p, size_t *len);
static ngx_uint_t ngx_ailink_guard_ip6_check(u_char *p, size_t *len);
static ngx_uint_t ngx_ailink_guard_secret_check(u_char *p, size_t *len);


typedef struct {
    ngx_uint_t                  type;
    const char                 *pattern;
    ngx_ailink_guard_check_pt   check;
} ngx_ailink_guard_pii_def_t;


static ngx_ailink_guard_pii_def_t  ngx_ailink_guard_pii_defs[] = {

    { NGX_AILINK_GUARD_SECRET,
      "(?<![A-Za-z0-9_-])(?:"
          "sk-ant-[A-Za-z0-9_-]{20,}"
          "|sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"
          "|(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9])"
          "|gh[pousr]_[A-Za-z0-9]{36,255}"
          "|github_pat_[A-Za-z0-9_]{22,255}"
          "|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"
          "|whsec_[A-Za-z0-9+/=]{20,}"
          "|xox[abprse]-[A-Za-z0-9-]{10,}"
          "|AIza[0-9A-Za-z_-]{35}"
          "|eyJ[A-Za-z0-9_-]{8,}\\.eyJ[A-Za-z0-9_-]{8,}\\.[A-Za-z0-9_-]{16,}"
      ")"
      "|-----BEGIN[A-Z ]{0,30}PRIVATE KEY-----"
          "(?:[A-Za-z0-9+/=\\s\\\\:,.]|-(?!----))*+"
          "(?:-----END[A-Z ]{0,30}PRIVATE KEY-----)?"
      "|(?i:aws_?secret_?(?:access_?)?key)[\"']?\\s*[:=]\\s*[\"']?"
          "\\K[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])",
      ngx_ailink_guard_secret_check },

    { NGX_AILINK_GUARD_CARD,
      "(?<![\\w.,+-])(?<!\\d[ -])\\d(?:[ -]?\\d){12,18}"
      "(?![\\w]|[.,-]\\d)",
      ngx_ailink_guard_card_check },

    { NGX_AILINK_GUARD_IBAN,
      "(?<![A-Za-z0-9])[A-Z]{2}\\d{2}(?: ?[A-Z0-9]{4}){2,7}"
      "(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])",
      ngx_ailink_guard_iban_check },

    { NGX_AILINK_GUARD_EMAIL,
      "(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
      "(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+"
      "[A-Za-z]{2,24}(?![A-Za-z0-9-])",
      ngx_ailink_guard_email_check },

    { NGX_AILINK_GUARD_SSN,
      "(?<![\\w-])\\d{3}([- ])\\d{2}\\1\\d{4}(?![\\w]|-\\w)"
      "|(?i:\\bssn|social security (?:number|no\\.?|#))"
          "\\s*(?:is|:|#|=)?\\s*\\K\\d{9}(?!\\w)",
      ngx_ailink_guard_ssn_check },

    { NGX_AILINK_GUARD_PHONE,
      "(?<![\\w+.-])(?<!\\d[ .-])(?:"
          "\\+\\d{1,3}(?:[ .-]?\\(\\d{1,4}\\))?(?:[ .-]?\\d{1,5}){1,6}"
          "|(?:1[ .-]?)?(?:\\(\\d{3}\\) ?|\\d{3}[ .-])\\d{3}[ .-]\\d{4}"
          "|\\(0\\d{1,4}\\) ?\\d{2,8}(?:[ .-]\\d{2,8}){0,3}"
          "|0\\d{1,4}(?:[ .-]\\d{2,8}){1,4}"
      ")(?![\\w]|[.-]\\d)",
      ngx_ailink_guard_phone_check },

    { NGX_AILINK_GUARD_IP,
      "(?<![\\w.])(?:(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)\\.){3}"
      "(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)(?![\\w]|\\.\\d)",
      NULL },

    { NGX_AILINK_GUARD_IP,
      "(?<![\\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}"
      "(?![\\w:]|\\.\\w)",
      ngx_ailink_guard_ip6_check },
};


ngx_int_t
ngx_ailink_guard_pii_init(ngx_pool_t *pool, ngx_log_t *log,
    ngx_ailink_guard_pattern_t **patterns, ngx_uint_t *n)
{
    ngx_uint_t                   i, count;
    ngx_ailink_guard_pattern_t  *pat;

    count = sizeof(ngx_ailink_guard_pii_defs)
            / sizeof(ngx_ailink_guard_pii_def_t);

    pat = ngx_pcalloc(pool, count * sizeof(ngx_ailink_guard_pattern_t));
    if (pat == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < count; i++) {
        if (ngx_ailink_guard_compile(pool, log,
                                     ngx_ailink_guard_pii_defs[i].pattern, 0,
                                     &pat[i].code)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        pat[i].type = ngx_ailink_guard_pii_defs[i].type;
        pat[i].check = ngx_ailink_guard_pii_defs[i].check;
    }

    *patterns = pat;
    *n = count;

    return NGX_OK;
}


/* a file name such as "logo@2x.png" is not an address */

static ngx_uint_t
ngx_ailink_guard_email_check(u_char *p, size_t *len)
{
    u_char            *dot, *last;
    size_t             n;
    ngx_uint_t         i;
    static const char *ext[] = { "png", "jpg", "jpeg", "gif", "svg", "webp",
                                 "js", "css", "ts", "py", "md", "txt",
                                 "json", "html", NULL };

    last = p + *len;

    for (dot = last - 1; dot > p && *dot != '.'; dot--) { /* void */ }

    n = last - (dot + 1);

    for (i = 0; ext[i]; i++) {
        if (n == ngx_strlen(ext[i])
            && ngx_strncasecmp(dot + 1, (u_char *) ext[i], n) == 0)
        {
            return 0;
        }
    }

    return 1;
}


/*
 * International numbers (+CC, 8 to 15 digits: E.164), North American
 * ones (NPA and NXX begin with 2-9) and national numbers with a trunk 0
 * (10 or 11 digits).  Shorter local numbers, dates and order numbers are
 * none of these.
 */

static ngx_uint_t
ngx_ailink_guard_phone_check(u_char *p, size_t *len)
{
    u_char      *q, *last, d[16];
    ngx_uint_t   n, groups, dots;

    last = p + *len;
    n = 0;
    groups = 1;
    dots = 0;

    for (q = p; q < last; q++) {
        if (*q >= '0' && *q <= '9') {
            if (n == sizeof(d)) {
                return 0;
            }

            d[n++] = *q;

        } else if (*q == ' ' || *q == '-' || *q == '.') {
            groups++;
            dots += (*q == '.');
        }
    }

    if (n < 7) {
        return 0;
    }

    if (*p == '+') {
        /* "+3.14159265" is a number, not a phone */
        return n >= 8 && n <= 15 && (dots == 0 || groups >= 3);
    }

    if (d[0] == '0') {
        return n >= 10 && n <= 11;
    }

    if (n == 11 && d[0] == '1') {
        ngx_memmove(d, d + 1, 10);
        n = 10;
    }

    return n == 10 && d[0] >= '2' && d[3] >= '2';
}


ngx_uint_t
ngx_ailink_guard_luhn(u_char *p, size_t len)
{
    ngx_uint_t  sum, alt, v;

    sum = 0;
    alt = 0;

    while (len--) {
        v = p[len] - '0';

        if (alt) {
            v *= 2;
            if (v > 9) {
                v -= 9;
            }
        }

        sum += v;
        alt = !alt;
    }

    return sum % 10 == 0;
}


/* issuer prefixes of the networks that use 13 to 19 digit numbers */

static ngx_uint_t
ngx_ailink_guard_card_iin(u_char *d, ngx_uint_t n)
{
    ngx_uint_t  p2, p3, p4;

    p2 = (d[0] - '0') * 10 + (d[1] - '0');
    p3 = p2 * 10 + (d[2] - '0');
    p4 = p3 * 10 + (d[3] - '0');

    if (d[0] == '4') {
        return n == 13 || n == 16 || n == 19;           /* Visa */
    }

    if ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) {
        return n == 16;                                 /* Mastercard */
    }

    if (p2 == 34 || p2 == 37) {
        return n == 15;                                 /* Amex */
    }

    if (p4 == 6011 || p2 == 65 || (p3 >= 644 && p3 <= 649)
        || (p4 >= 3528 && p4 <= 3589) || p2 == 62)
    {
        return n >= 16;                                 /* Discover, JCB,
                                                           UnionPay */
    }

    if ((p3 >= 300 && p3 <= 305) || p2 == 36 || p2 == 38 || p2 == 39) {
        return n >= 14;                                 /* Diners */
    }

    if (p2 == 50 || (p2 >= 56 && p2 <= 58) || p2 == 63 || p2 == 67) {
        return n >= 13;                                 /* Maestro */
    }

    return 0;
}


/*
 * 13 to 19 digits passing Luhn, of a known issuer, written whole or in
 * the groups cards print (4-4-4-4..., Amex and Diners 4-6-5 and 4-6-4)
 * with one kind of separator.
 */

static ngx_uint_t
ngx_ailink_guard_card_check(u_char *p, size_t *len)
{
    u_char      *q, *last, d[19], sep;
    ngx_uint_t   n, g, ng, glen[19];

    last = p + *len;
    n = 0;
    ng = 0;
    g = 0;
    sep = 0;

    for (q = p; q < last; q++) {
        if (*q >= '0' && *q <= '9') {
            if (n == sizeof(d)) {
                return 0;
            }

            d[n++] = *q;
            g++;
            continue;
        }

        if (sep && *q != sep) {
            return 0;
        }

        sep = *q;
        glen[ng++] = g;
        g = 0;
    }

    glen[ng++] = g;

    if (n < 13 || !ngx_ailink_guard_luhn(d, n)
        || !ngx_ailink_guard_card_iin(d, n))
    {
        return 0;
    }

    if (ng == 1) {
        return 1;
    }

    if (ng == 3 && glen[0] == 4 && glen[1] == 6
        && (glen[2] == 5 || glen[2] == 4))
    {
        return 1;
    }

    for (g = 0; g < ng - 1; g++) {
        if (glen[g] != 4) {
            return 0;
        }
    }

    return glen[ng - 1] >= 1 && glen[ng - 1] <= 4;
}


/* SSA rules: no area 000, 666 or 9xx, no group 00, no serial 0000 */

static ngx_uint_t
ngx_ailink_guard_ssn_check(u_char *p, size_t *len)
{
    u_char      *q, *last, d[9];
    ngx_uint_t   n, area;

    last = p + *len;
    n = 0;

    for (q = p; q < last; q++) {
        if (*q >= '0' && *q <= '9') {
            if (n == sizeof(d)) {
                return 0;
            }

            d[n++] = *q;
        }
    }

    if (n != 9) {
        return 0;
    }

    area = (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');

    if (area == 0 || area == 666 || area >= 900) {
        return 0;
    }

    if (d[3] == '0' && d[4] == '0') {
        return 0;
    }

    return !(d[5] == '0' && d[6] == '0' && d[7] == '0' && d[8] == '0');
}


/* ISO 13616 lengths of the countries that issue IBANs */

static const char  *ngx_ailink_guard_iban_lengths =
    "AD24AE23AL28AT20AZ28BA20BE16BG22BH22BR29BY28CH21CR22CY28CZ24DE22"
    "DK18DO28EE20EG29ES24FI18FO18FR27GB22GE22GI23GL18GR27GT28HR21HU28"
    "IE22IL23IQ23IS26IT27JO30KW30KZ20LB28LC32LI21LT20LU20LV21MC27MD24"
    "ME22MK19MR27MT31MU30NL18NO15PK24PL28PS29PT25QA29RO24RS22SA24SC31"
    "SE24SI19SK24SM27TL23TN24TR26UA29VA22VG24XK20";


static ngx_uint_t
ngx_ailink_guard_iban_length(u_char *cc)
{
    const char  *t;

    for (t = ngx_ailink_guard_iban_lengths; *t; t += 4) {
        if (t[0] == cc[0] && t[1] == cc[1]) {
            return (t[2] - '0') * 10 + (t[3] - '0');
        }
    }

    return 0;
}


/* the mod-97 check of a compact IBAN (ISO 7064) */

ngx_uint_t
ngx_ailink_guard_iban_valid(u_char *p, size_t len)
{
    u_char      c;
    size_t      i;
    ngx_uint_t  rem, want;

    want = ngx_ailink_guard_iban_length(p);

    if (want == 0 || len != want) {
        return 0;
    }

    rem = 0;

    for (i = 0; i < len; i++) {
        c = p[(i + 4) % len];

        if (c >= '0' && c <= '9') {
            rem = (rem * 10 + (c - '0')) % 97;

        } else if (c >= 'A' && c <= 'Z') {
            rem = (rem * 100 + (c - 'A' + 10)) % 97;

        } else {
            return 0;
        }
    }

    return rem == 1;
}


/* a match that runs into the next word is shortened group by group */

static ngx_uint_t
ngx_ailink_guard_iban_check(u_char *p, size_t *len)
{
    u_char  *q, *last, d[40];
    size_t   n;

    last = p + *len;

    while (last - p >= 15) {
        n = 0;

        for (q = p; q < last; q++) {
            if (*q != ' ') {
                if (n == sizeof(d)) {
                    return 0;
                }

                d[n++] = *q;
            }
        }

        if (ngx_ailink_guard_iban_valid(d, n)) {
            *len = last - p;
            return 1;
        }

        q = last;

        while (q > p && q[-1] != ' ') {
            q--;
        }

        if (q == p) {
            return 0;
        }

        last = q - 1;
    }

    return 0;
}


static ngx_uint_t
ngx_ailink_guard_ip6_check(u_char *p, size_t *len)
{
    u_char           buf[48];
    struct in6_addr  addr;

    if (*len >= sizeof(buf) || *len < 3) {
        return 0;
    }

    ngx_memcpy(buf, p, *len);
    buf[*len] = '\0';

    if (inet_pton(AF_INET6, (char *) buf, &addr) != 1) {
        return 0;
    }

    /* "::" and "::1" are addresses of no one */
    return *len > 3;
}


/*
 * An OpenAI-style "sk-..." run is a key only when it mixes cases and
 * digits as generated keys do: "sk-this-is-a-slug-name" is not one.
 */

static ngx_uint_t
ngx_ailink_guard_secret_check(u_char *p, size_t *len)
{
    u_char      *q, *last;
    ngx_uint_t   digit, upper, lower;

    if (*len < 3 || p[0] != 's' || p[1] != 'k' || p[2] != '-'
        || (*len > 7 && ngx_strncmp(p, "sk-ant-", 7) == 0))
    {
        return 1;
    }

    digit = 0;
    upper = 0;
    lower = 0;

    for (q = p + 3, last = p + *len; q < last; q++) {
        digit += (*q >= '0' && *q <= '9');
        upper += (*q >= 'A' && *q <= 'Z');
        lower += (*q >= 'a' && *q <= 'z');
    }

    return digit >= 2 && upper >= 2 && lower >= 2;
}
