
/*
 * Copyright (C) AILink
 *
 * Prompt injection: rules with ids and weights.  Most are patterns
 * (caseless, byte mode); three look at bytes in C: Unicode tag
 * characters (U+E0000-E007F, invisible text a model still reads), bidi
 * controls (U+202A-202E, U+2066-2069) and runs of zero-width characters;
 * and one decodes base64 runs and scores what they hide.  A text's score
 * is 1 - prod(1 - weight) over the distinct rules it matched: one strong
 * signal or several weak ones reach the threshold.
 */


#define NGX_AILINK_GUARD_ENGINE_ONLY
#include "ngx_ailink_guard.h"


typedef struct {
    const char                 *id;
    ngx_uint_t                  weight;     /* percent */
    const char                 *pattern;    /* NULL: found in C */
} ngx_ailink_guard_rule_t;


#define NGX_AILINK_GUARD_RULE_TAGS       0
#define NGX_AILINK_GUARD_RULE_BIDI       1
#define NGX_AILINK_GUARD_RULE_ZW         2
#define NGX_AILINK_GUARD_RULE_ENCODED    3


static ngx_ailink_guard_rule_t  ngx_ailink_guard_rules[] = {

    { "unicode_tags", 90, NULL },
    { "bidi_control", 50, NULL },
    { "zero_width", 30, NULL },
    { "encoded_payload", 70, NULL },

    /* "ignore all previous instructions"; "ignore my previous ..." is a
     * user correcting themselves */
    { "instruction_override", 70,
      "\\b(?:ignore|disregard|forget|skip|bypass|override|abandon|drop)\\b"
      "(?![^.\\n]{0,20}\\bmy\\b)[^.\\n]{0,40}?"
      "\\b(?:previous|prior|above|earlier|preceding|all|any|your|the|"
      "system|initial|original|every|these|those)\\b[^.\\n]{0,30}?"
      "\\b(?:instructions?|prompts?|rules|directions|guidelines|directives|"
      "constraints|guardrails|programming|system message|commands)\\b" },

    { "new_instructions", 45,
      "\\b(?:new|updated|real|actual|true|revised|secret)\\s+"
      "(?:system\\s+)?(?:instructions?|directives?|orders)\\s*[:\\-]"
      "|\\bfrom now on,? you (?:will|must|are|shall|should)\\b"
      "|\\byour (?:new|real|true) (?:task|goal|role|purpose|instructions?)"
      " (?:is|are)\\b" },

    { "role_play_escape", 60,
      "\\b(?:you are now|you're now|act as|acting as|pretend (?:to be|"
      "you are|you're)|role-?play as|simulate|behave like|become)\\b"
      "[^.\\n]{0,60}?\\b(?:(?-i:DAN)|jailbr(?:oken|eak)|unrestricted|"
      "unfiltered|uncensored|unaligned|no (?:rules|restrictions|limits|filters|"
      "guidelines|boundaries)|without (?:any )?(?:rules|restrictions|limits|"
      "filters|guidelines|ethics|morals|censorship)|evil|developer mode)"
      "|\\b(?:stop being|you are no longer) (?:an? )?(?:ai )?assistant\\b" },

    { "jailbreak_persona", 60,
      "\\byou are (?:now )?(?-i:DAN)\\b"
      "|\\b(?:DAN mode|developer mode (?:is )?(?:enabled|activated)|"
      "do anything now|jailbreak(?:ed)? mode|god mode (?:enabled|activated)|"
      "AIM mode|STAN mode|anti-?DAN)\\b" },

    { "system_prompt_leak", 60,
      "\\b(?:reveal|show|print|display|output|repeat|tell me|give me|leak|"
      "dump|share|expose|disclose|recite|spell out|what (?:is|are|was|"
      "were))\\b[^.\\n]{0,30}?\\byour\\s+(?:(?:full|entire|original|"
      "initial|hidden|secret|exact|internal|system|real)\\s+){0,3}"
      "(?:system prompt|prompt|instructions|system message|directives|"
      "rules you were given|configuration)\\b"
      "|\\b(?:reveal|print|output|repeat|dump|leak|disclose|recite)\\b"
      "[^.\\n]{0,20}?\\bthe\\s+(?:(?:full|entire|hidden|secret|original|"
      "initial|exact)\\s+)+(?:system prompt|prompt|instructions)\\b"
      "|\\brepeat (?:everything|all|the (?:text|words|content|lines))"
      " (?:above|before this|preceding)\\b" },

    { "exfiltration", 60,
      "\\b(?:send|post|upload|forward|transmit|exfiltrate|email|e-mail|"
      "leak|copy|submit)\\b[^.\\n]{0,50}?\\b(?:conversation|chat history|"
      "history|data|credentials|api keys?|secrets?|passwords?|tokens?|"
      "system prompt|contents?|files?|messages|memory)\\b[^.\\n]{0,40}?"
      "\\b(?:to|at|into|via)\\s+(?:https?://|www\\.|[\\w.+-]+@[\\w-]+\\.|"
      "[a-z0-9-]+\\.(?:com|net|org|io|xyz|ru|cn|site|top)\\b|my server|"
      "this (?:url|endpoint|webhook|address))" },

    { "markdown_exfiltration", 50,
      "!\\[[^\\]\\n]{0,80}\\]\\(https?://[^)\\s]+\\?[^)\\s]*="
      "(?:\\{|\\$|%7B|<|\\[)" },

    { "chat_template", 50,
      "<\\|im_start\\|>|<\\|im_end\\|>|<\\|system\\|>|<\\|endoftext\\|>|"
      "\\[/?INST\\]|<</?SYS>>|<\\|start_header_id\\|>"
      "|#{2,}\\s*(?:system|new instructions?)\\b\\s*(?::|#|\\n)"
      "|\\]\\s*\\n+\\s*system\\s*:" },

    { "disable_safety", 50,
      "\\b(?:disable|turn off|deactivate|remove|bypass|ignore|switch off|"
      "circumvent|get around)\\b[^.\\n]{0,20}?\\b(?:your |all |the )?"
      "(?:safety|content|ethical|moral)\\s+(?:filters?|guardrails|"
      "safeguards|restrictions|guidelines|policies|protocols|settings)\\b"
      "|\\b(?:bypass|disable|remove|ignore|circumvent)\\b[^.\\n]{0,20}?"
      "\\b(?:your |all |the )?(?:guardrails|censorship|alignment|"
      "content polic(?:y|ies))\\b" },

    { "compliance_demand", 30,
      "\\b(?:no refusals?|never refuse|without refusing|you cannot refuse|"
      "do not refuse|don't refuse|you (?:must|will|shall) (?:comply|obey|"
      "answer (?:every|all|any)))" },

    { "credential_request", 30,
      "\\b(?:output|print|reveal|give me|show|list|dump|tell me|send)\\b"
      "[^.\\n]{0,30}?\\b(?:admin |root |system |all )?(?:credentials|"
      "passwords|api keys|secret keys|access tokens)\\b" },

    { "decode_and_follow", 45,
      "\\b(?:decode|decrypt|deobfuscate|translate|convert)\\b[^.\\n]{0,60}?"
      "\\b(?:base64|rot13|rot-13|hex|binary|morse|cipher|encoded)\\b"
      "[^.\\n]{0,60}?\\b(?:and|then)\\s+(?:follow|execute|run|obey|do|"
      "perform|carry out|act on|comply)" },
};


#define NGX_AILINK_GUARD_NRULE_DEFS                                           \
    (sizeof(ngx_ailink_guard_rules) / sizeof(ngx_ailink_guard_rule_t))


ngx_uint_t
ngx_ailink_guard_inject_nrules(void)
{
    return NGX_AILINK_GUARD_NRULE_DEFS;
}


const char *
ngx_ailink_guard_inject_rule(ngx_uint_t rule, ngx_uint_t *weight)
{
    if (rule >= NGX_AILINK_GUARD_NRULE_DEFS) {
        *weight = 0;
        return "unknown";
    }

    *weight = ngx_ailink_guard_rules[rule].weight;

    return ngx_ailink_guard_rules[rule].id;
}


ngx_int_t
ngx_ailink_guard_inject_init(ngx_pool_t *pool, ngx_log_t *log,
    ngx_ailink_guard_pattern_t **patterns, ngx_uint_t *n)
{
    ngx_uint_t                   i, k;
    ngx_ailink_guard_pattern_t  *pat;

    pat = ngx_pcalloc(pool, NGX_AILINK_GUARD_NRULE_DEFS
                            * sizeof(ngx_ailink_guard_pattern_t));
    if (pat == NULL) {
        return NGX_ERROR;
    }

    k = 0;

    for (i = 0; i < NGX_AILINK_GUARD_NRULE_DEFS; i++) {
        if (ngx_ailink_guard_rules[i].pattern == NULL) {
            continue;
        }

        if (ngx_ailink_guard_compile(pool, log,
                                     ngx_ailink_guard_rules[i].pattern,
                                     PCRE2_CASELESS, &pat[k].code)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        pat[k].type = i;
        pat[k].weight = ngx_ailink_guard_rules[i].weight;
        k++;
    }

    *patterns = pat;
    *n = k;

    return NGX_OK;
}


/* invisible and direction-changing characters, in UTF-8 */

void
ngx_ailink_guard_inject_unicode(ngx_ailink_guard_session_t *s, u_char *p,
    size_t len)
{
    u_char      *last;
    ngx_uint_t   zw;

    last = p + len;
    zw = 0;

    for ( /* void */ ; p + 2 < last; p++) {

        if (*p == 0xf3 && p + 3 < last && p[1] == 0xa0
            && (p[2] == 0x80 || p[2] == 0x81))
        {
            /* U+E0000-U+E007F: F3 A0 80 80 - F3 A0 81 BF */
            ngx_ailink_guard_inject_hit(s, NGX_AILINK_GUARD_RULE_TAGS);
            continue;
        }

        if (*p != 0xe2) {
            if (*p == 0xef && p[1] == 0xbb && p[2] == 0xbf && p != last - len)
            {
                zw++;                                   /* U+FEFF inside */
            }

            continue;
        }

        if (p[1] == 0x80 && p[2] >= 0xaa && p[2] <= 0xae) {
            /* U+202A-U+202E */
            ngx_ailink_guard_inject_hit(s, NGX_AILINK_GUARD_RULE_BIDI);

        } else if (p[1] == 0x81 && p[2] >= 0xa6 && p[2] <= 0xa9) {
            /* U+2066-U+2069 */
            ngx_ailink_guard_inject_hit(s, NGX_AILINK_GUARD_RULE_BIDI);

        } else if ((p[1] == 0x80 && p[2] >= 0x8b && p[2] <= 0x8d)
                   || (p[1] == 0x81 && p[2] == 0xa0))
        {
            /* U+200B-U+200D, U+2060 */
            zw++;
        }
    }

    if (zw >= 3) {
        ngx_ailink_guard_inject_hit(s, NGX_AILINK_GUARD_RULE_ZW);
    }
}


/*
 * Runs of base64 long enough to hide a sentence are decoded; when what
 * they hide is text and matches a rule, the payload counts too.  One
 * level deep: a decoded text is not decoded again.
 */

#define NGX_AILINK_GUARD_B64_MIN     24
#define NGX_AILINK_GUARD_B64_MAX     4096

static ngx_uint_t  ngx_ailink_guard_decoding;


static ngx_uint_t
ngx_ailink_guard_b64(u_char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
           || (c >= '0' && c <= '9') || c == '+' || c == '/' || c == '-'
           || c == '_';
}


void
ngx_ailink_guard_inject_encoded(ngx_ailink_guard_session_t *s, u_char *p,
    size_t len)
{
    u_char      *last, *start, *dst;
    size_t       n, i, printable;
    uint32_t     before;
    ngx_str_t    src, text;
    ngx_uint_t   letters;
    u_char       buf[NGX_AILINK_GUARD_B64_MAX];

    if (ngx_ailink_guard_decoding) {
        return;
    }

    last = p + len;

    while (p < last) {
        while (p < last && !ngx_ailink_guard_b64(*p)) {
            p++;
        }

        start = p;
        letters = 0;

        while (p < last && ngx_ailink_guard_b64(*p)) {
            letters += ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z');
            p++;
        }

        n = p - start;

        while (p < last && *p == '=') {
            p++;
        }

        if (n < NGX_AILINK_GUARD_B64_MIN || letters == n) {
            /* short, or a plain long word */
            continue;
        }

        n = ngx_min(n, NGX_AILINK_GUARD_B64_MAX / 4 * 4);
        n -= n % 4;

        src.data = start;
        src.len = n;
        text.data = buf;

        if (ngx_decode_base64(&text, &src) != NGX_OK
            && ngx_decode_base64url(&text, &src) != NGX_OK)
        {
            continue;
        }

        printable = 0;

        for (i = 0, dst = buf; i < text.len; i++, dst++) {
            printable += (*dst >= 0x20 && *dst < 0x7f) || *dst == '\n'
                         || *dst == '\t' || *dst >= 0x80;
        }

        if (text.len == 0 || printable * 10 < text.len * 9) {
            continue;
        }

        before = s->rules;

        ngx_ailink_guard_decoding = 1;
        (void) ngx_ailink_guard_inject_scan(s, &text);
        ngx_ailink_guard_decoding = 0;

        if (s->rules != before) {
            ngx_ailink_guard_inject_hit(s, NGX_AILINK_GUARD_RULE_ENCODED);
        }
    }
}
