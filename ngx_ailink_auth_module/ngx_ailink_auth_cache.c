
/*
 * Copyright (C) AILink
 *
 * A per-worker cache of recently verified tokens of the config file.
 *
 * A token is found by the SHA-256 of its text, which costs more than the
 * rest of authentication together.  Agents send the same token over and
 * over, so each worker remembers, for the tokens it has verified, a
 * 128-bit SipHash-2-4 of the token's text under a random key of its own,
 * and the token it names.  A request whose token's SipHash is in the
 * table skips SHA-256; the comparison is constant-time, and nothing of
 * the token's text is kept.  Without the key, a token that shares a
 * cached token's 128-bit SipHash cannot be made.
 *
 * Only the file's tokens are cached: they live as long as their
 * configuration, and the table is emptied for every new configuration
 * (ngx_ailink_auth_cache_flush(), from the module's init_module).  The
 * admin API's tokens, which can be revoked at any time, are found by
 * their SHA-256 on every request.  Refused tokens are never cached.
 */


#include "ngx_ailink_auth.h"
#include <openssl/rand.h>


#define NGX_AILINK_AUTH_CACHE_SLOTS  1024


typedef struct {
    uint64_t                    mac[2];
    ngx_ailink_conf_t          *conf;
    ngx_ailink_token_t         *token;
} ngx_ailink_auth_cache_entry_t;


static ngx_ailink_auth_cache_entry_t
    ngx_ailink_auth_cache[NGX_AILINK_AUTH_CACHE_SLOTS];
static uint64_t    ngx_ailink_auth_cache_key[2];
static ngx_uint_t  ngx_ailink_auth_cache_keyed;


#define ngx_ailink_rotl64(x, b)  (uint64_t) (((x) << (b)) | ((x) >> (64 - (b))))

#define ngx_ailink_sipround(v0, v1, v2, v3)                                   \
    v0 += v1; v1 = ngx_ailink_rotl64(v1, 13); v1 ^= v0;                       \
    v0 = ngx_ailink_rotl64(v0, 32);                                           \
    v2 += v3; v3 = ngx_ailink_rotl64(v3, 16); v3 ^= v2;                       \
    v0 += v3; v3 = ngx_ailink_rotl64(v3, 21); v3 ^= v0;                       \
    v2 += v1; v1 = ngx_ailink_rotl64(v1, 17); v1 ^= v2;                       \
    v2 = ngx_ailink_rotl64(v2, 32)


/* SipHash-2-4 with a 128-bit output, little-endian words */

static void
ngx_ailink_siphash128(uint64_t key[2], u_char *p, size_t len, uint64_t out[2])
{
    size_t      i, n;
    uint64_t    v0, v1, v2, v3, m;
    ngx_uint_t  r;

    v0 = 0x736f6d6570736575ULL ^ key[0];
    v1 = 0x646f72616e646f6dULL ^ key[1] ^ 0xee;
    v2 = 0x6c7967656e657261ULL ^ key[0];
    v3 = 0x7465646279746573ULL ^ key[1];

    n = len & ~(size_t) 7;

    for (i = 0; i < n; i += 8) {
        m = (uint64_t) p[i] | (uint64_t) p[i + 1] << 8
            | (uint64_t) p[i + 2] << 16 | (uint64_t) p[i + 3] << 24
            | (uint64_t) p[i + 4] << 32 | (uint64_t) p[i + 5] << 40
            | (uint64_t) p[i + 6] << 48 | (uint64_t) p[i + 7] << 56;

        v3 ^= m;
        ngx_ailink_sipround(v0, v1, v2, v3);
        ngx_ailink_sipround(v0, v1, v2, v3);
        v0 ^= m;
    }

    m = (uint64_t) len << 56;

    for (i = n; i < len; i++) {
        m |= (uint64_t) p[i] << (8 * (i - n));
    }

    v3 ^= m;
    ngx_ailink_sipround(v0, v1, v2, v3);
    ngx_ailink_sipround(v0, v1, v2, v3);
    v0 ^= m;

    v2 ^= 0xee;

    for (r = 0; r < 4; r++) {
        ngx_ailink_sipround(v0, v1, v2, v3);
    }

    out[0] = v0 ^ v1 ^ v2 ^ v3;

    v1 ^= 0xdd;

    for (r = 0; r < 4; r++) {
        ngx_ailink_sipround(v0, v1, v2, v3);
    }

    out[1] = v0 ^ v1 ^ v2 ^ v3;
}


/*
 * The file's token whose text this is, if this worker verified it
 * recently; mac is then what ngx_ailink_auth_cache_add() wants
 */

ngx_ailink_token_t *
ngx_ailink_auth_cache_find(ngx_ailink_conf_t *conf, ngx_str_t *token,
    uint64_t mac[2])
{
    ngx_ailink_auth_cache_entry_t  *e;

    if (!ngx_ailink_auth_cache_keyed) {
        if (RAND_bytes((u_char *) ngx_ailink_auth_cache_key,
                       sizeof(ngx_ailink_auth_cache_key))
            != 1)
        {
            /* no key, no cache: every token takes SHA-256 */
            mac[0] = 0;
            mac[1] = 0;
            return NULL;
        }

        ngx_ailink_auth_cache_keyed = 1;
    }

    ngx_ailink_siphash128(ngx_ailink_auth_cache_key, token->data, token->len,
                          mac);

    e = &ngx_ailink_auth_cache[mac[0] % NGX_AILINK_AUTH_CACHE_SLOTS];

    /* constant-time in the MAC; an empty slot has no conf */
    if (e->conf == conf
        && ((e->mac[0] ^ mac[0]) | (e->mac[1] ^ mac[1])) == 0)
    {
        return e->token;
    }

    return NULL;
}


void
ngx_ailink_auth_cache_add(ngx_ailink_conf_t *conf, uint64_t mac[2],
    ngx_ailink_token_t *token)
{
    ngx_ailink_auth_cache_entry_t  *e;

    if (!ngx_ailink_auth_cache_keyed) {
        return;
    }

    e = &ngx_ailink_auth_cache[mac[0] % NGX_AILINK_AUTH_CACHE_SLOTS];

    e->mac[0] = mac[0];
    e->mac[1] = mac[1];
    e->conf = conf;
    e->token = token;
}


ngx_int_t
ngx_ailink_auth_cache_flush(ngx_cycle_t *cycle)
{
    ngx_memzero(ngx_ailink_auth_cache, sizeof(ngx_ailink_auth_cache));
    ngx_explicit_memzero(ngx_ailink_auth_cache_key,
                         sizeof(ngx_ailink_auth_cache_key));
    ngx_ailink_auth_cache_keyed = 0;

    return NGX_OK;
}
