
/*
 * Copyright (C) AILink
 *
 * The shared-memory backend of the state interface: one slab zone shared
 * by the workers, entries in a red-black tree keyed by a CRC32 of their
 * key, and an LRU queue for expiry and eviction, as ngx_http_limit_req
 * does.  The zone is reused across reloads.  Counters marked persistent
 * (spend) are written to a file by ngx_ailink_state_shm_save(), atomically
 * through a rename, and read back when the zone is created afresh, so
 * that they survive a restart.
 *
 * When the zone is full, expired entries go first, then the least
 * recently used entries that are not persistent; if that frees no room the
 * operation fails (NGX_ERROR) and the zone logs, once a minute, that it
 * is full.  Persistent entries are never evicted before they expire.
 */


#include "ngx_ailink_common.h"
#include "ngx_ailink_state.h"


#define NGX_AILINK_STATE_EVICT      4

/* a node's flag: it holds a record, not a counter */
#define NGX_AILINK_STATE_RECORD     0x80


typedef struct {
    ngx_rbtree_node_t           node;       /* key: CRC32 of the key */
    ngx_queue_t                 queue;
    time_t                      expires;    /* 0: never */
    int64_t                     value;
    uint32_t                    rec_len;
    u_short                     key_len;
    u_char                      flags;
    u_char                      data[1];    /* key, then the record */
} ngx_ailink_state_node_t;


typedef struct {
    ngx_rbtree_t                rbtree;
    ngx_rbtree_node_t           sentinel;
    ngx_queue_t                 queue;      /* most recently used first */
    uint64_t                    gen;        /* persistent changes */
    uint64_t                    saved_gen;
    time_t                      full_logged;
    uint64_t                    freed;      /* nodes freed, ever */
} ngx_ailink_state_sh_t;


typedef struct {
    ngx_ailink_state_sh_t      *sh;
    ngx_slab_pool_t            *shpool;
    ngx_shm_zone_t             *zone;
    ngx_str_t                   path;       /* persistence file */
    ngx_ailink_state_t          state;
} ngx_ailink_state_shm_t;


static ngx_int_t ngx_ailink_state_shm_add_op(ngx_ailink_state_t *st,
    ngx_str_t *key, int64_t delta, int64_t limit, time_t ttl,
    ngx_uint_t flags, int64_t *value);
static ngx_int_t ngx_ailink_state_shm_get(ngx_ailink_state_t *st,
    ngx_str_t *key, int64_t *value);
static ngx_int_t ngx_ailink_state_shm_set_record(ngx_ailink_state_t *st,
    ngx_str_t *key, ngx_str_t *value, time_t ttl);
static ngx_int_t ngx_ailink_state_shm_get_record(ngx_ailink_state_t *st,
    ngx_str_t *key, ngx_pool_t *pool, ngx_str_t *value);
static ngx_int_t ngx_ailink_state_shm_cas_record(ngx_ailink_state_t *st,
    ngx_str_t *key, ngx_str_t *expect, ngx_str_t *value, time_t ttl,
    ngx_uint_t flags);
static ngx_int_t ngx_ailink_state_shm_list_records(ngx_ailink_state_t *st,
    ngx_str_t *prefix, ngx_pool_t *pool, ngx_array_t *out);
static ngx_int_t ngx_ailink_state_shm_delete_record(ngx_ailink_state_t *st,
    ngx_str_t *key);
static ngx_int_t ngx_ailink_state_shm_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_ailink_state_shm_load(ngx_ailink_state_shm_t *shm,
    ngx_log_t *log);


static ngx_ailink_state_ops_t  ngx_ailink_state_shm_ops = {
    ngx_ailink_state_shm_add_op,
    ngx_ailink_state_shm_get,
    ngx_ailink_state_shm_set_record,
    ngx_ailink_state_shm_get_record,
    ngx_ailink_state_shm_cas_record,
    ngx_ailink_state_shm_list_records,
    ngx_ailink_state_shm_delete_record,
    NULL,                                  /* synchronous only */
    NULL,
    NULL,
    NULL,
    NULL
};


/*
 * The hashes of the counters' latest keys, per worker: a rate limit's
 * window or a spend counter is the same key for every request of a
 * minute or a day, and its hash costs several times a comparison.  Sets
 * of two entries chosen by the key's last bytes (where windows and
 * periods differ); an entry is used only when the whole key is the same.
 * An entry also keeps the key's node, good while the zone has freed no
 * node since (a node is freed only through ngx_ailink_state_shm_free(),
 * which counts it): no walk of the tree for it then.
 */

#define NGX_AILINK_STATE_HASH_SETS  32
#define NGX_AILINK_STATE_HASH_KEY   64

typedef struct {
    size_t                      len;
    uint32_t                    hash;
    ngx_cycle_t                *cycle;
    ngx_ailink_state_shm_t     *shm;        /* the node's zone */
    ngx_ailink_state_node_t    *node;       /* NULL: none known */
    uint64_t                    freed;      /* the zone's count then */
    u_char                      key[NGX_AILINK_STATE_HASH_KEY];
} ngx_ailink_state_hash_t;

static ngx_ailink_state_hash_t
    ngx_ailink_state_hashes[NGX_AILINK_STATE_HASH_SETS][2];


static uint32_t
ngx_ailink_state_shm_hash(ngx_str_t *key, ngx_ailink_state_hash_t **entry)
{
    uint64_t                  a, b;
    uint32_t                  hash;
    ngx_ailink_state_hash_t  *e;

    *entry = NULL;

    if (key->len < 16 || key->len > NGX_AILINK_STATE_HASH_KEY) {
        return ngx_murmur_hash2(key->data, key->len);
    }

    ngx_memcpy(&a, key->data + key->len - 8, 8);
    ngx_memcpy(&b, key->data + key->len - 16, 8);

    e = ngx_ailink_state_hashes[((a ^ (b * 0x9e3779b97f4a7c15ULL) ^ key->len)
                                 * 0x9e3779b97f4a7c15ULL) >> 59];

    if (e[0].len == key->len
        && ngx_memcmp(e[0].key, key->data, key->len) == 0)
    {
        *entry = &e[0];
        return e[0].hash;
    }

    if (e[1].len == key->len
        && ngx_memcmp(e[1].key, key->data, key->len) == 0)
    {
        *entry = &e[1];
        return e[1].hash;
    }

    hash = ngx_murmur_hash2(key->data, key->len);

    /* the newest first, the one before second */
    e[1] = e[0];
    e[0].len = key->len;
    e[0].hash = hash;
    e[0].node = NULL;
    ngx_memcpy(e[0].key, key->data, key->len);

    *entry = &e[0];

    return hash;
}


/* under the zone's mutex: the key's node, from the entry if still good */

static ngx_inline ngx_ailink_state_node_t *
ngx_ailink_state_shm_cached(ngx_ailink_state_shm_t *shm,
    ngx_ailink_state_hash_t *e)
{
    if (e && e->node && e->shm == shm && e->freed == shm->sh->freed
        && e->cycle == (ngx_cycle_t *) ngx_cycle)
    {
        return e->node;
    }

    return NULL;
}


static ngx_inline void
ngx_ailink_state_shm_remember(ngx_ailink_state_shm_t *shm,
    ngx_ailink_state_hash_t *e, ngx_ailink_state_node_t *n)
{
    if (e) {
        e->cycle = (ngx_cycle_t *) ngx_cycle;
        e->shm = shm;
        e->node = n;
        e->freed = shm->sh->freed;
    }
}


static void
ngx_ailink_state_shm_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t         **p;
    ngx_ailink_state_node_t    *n, *t;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            n = (ngx_ailink_state_node_t *) node;
            t = (ngx_ailink_state_node_t *) temp;

            p = (ngx_memn2cmp(n->data, t->data, n->key_len, t->key_len) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


static ngx_ailink_state_node_t *
ngx_ailink_state_shm_lookup(ngx_ailink_state_shm_t *shm, ngx_str_t *key,
    uint32_t hash)
{
    ngx_int_t                 rc;
    ngx_rbtree_node_t        *node, *sentinel;
    ngx_ailink_state_node_t  *n;

    node = shm->sh->rbtree.root;
    sentinel = shm->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        n = (ngx_ailink_state_node_t *) node;

        /* equal hashes are most often the same key */
        if (key->len == n->key_len
            && ngx_memcmp(key->data, n->data, key->len) == 0)
        {
            return n;
        }

        rc = ngx_memn2cmp(key->data, n->data, key->len, n->key_len);

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


static void
ngx_ailink_state_shm_free(ngx_ailink_state_shm_t *shm,
    ngx_ailink_state_node_t *n)
{
    ngx_queue_remove(&n->queue);
    ngx_rbtree_delete(&shm->sh->rbtree, &n->node);
    ngx_slab_free_locked(shm->shpool, n);

    /* nodes the workers remember are good no longer */
    shm->sh->freed++;
}


/*
 * Frees expired entries from the LRU end; with force, also up to a few
 * entries that are not persistent.  Returns how many it freed.
 */

static ngx_uint_t
ngx_ailink_state_shm_expire(ngx_ailink_state_shm_t *shm, time_t now,
    ngx_uint_t force)
{
    ngx_uint_t                freed, seen;
    ngx_queue_t              *q, *prev;
    ngx_ailink_state_node_t  *n;

    freed = 0;
    seen = 0;

    for (q = ngx_queue_last(&shm->sh->queue);
         q != ngx_queue_sentinel(&shm->sh->queue) && seen < 64;
         q = prev)
    {
        prev = ngx_queue_prev(q);
        seen++;

        n = ngx_queue_data(q, ngx_ailink_state_node_t, queue);

        if (n->expires && n->expires <= now) {
            ngx_ailink_state_shm_free(shm, n);
            freed++;
            continue;
        }

        if (force && !(n->flags & NGX_AILINK_STATE_PERSIST)) {
            ngx_ailink_state_shm_free(shm, n);

            if (++freed >= NGX_AILINK_STATE_EVICT) {
                break;
            }

            continue;
        }

        if (!force && seen >= 2) {
            /* on the request path, a little expiry at a time */
            break;
        }
    }

    return freed;
}


static ngx_ailink_state_node_t *
ngx_ailink_state_shm_alloc(ngx_ailink_state_shm_t *shm, ngx_str_t *key,
    uint32_t hash, size_t rec_len, time_t now)
{
    size_t                    size;
    ngx_ailink_state_node_t  *n;

    size = offsetof(ngx_ailink_state_node_t, data) + key->len + rec_len;

    n = ngx_slab_alloc_locked(shm->shpool, size);

    if (n == NULL) {
        ngx_ailink_state_shm_expire(shm, now, 0);
        ngx_ailink_state_shm_expire(shm, now, 1);

        n = ngx_slab_alloc_locked(shm->shpool, size);

        if (n == NULL) {
            if (now - shm->sh->full_logged >= 60) {
                shm->sh->full_logged = now;
                ngx_log_error(NGX_LOG_CRIT, ngx_cycle->log, 0,
                              "ailink state zone \"%V\" is full: counters "
                              "it cannot hold fail closed (increase its "
                              "size in \"ailink_state_zone\")",
                              &shm->zone->shm.name);
            }

            return NULL;
        }
    }

    n->node.key = hash;
    n->key_len = (u_short) key->len;
    n->rec_len = (uint32_t) rec_len;
    n->flags = 0;
    n->value = 0;
    n->expires = 0;
    ngx_memcpy(n->data, key->data, key->len);

    ngx_rbtree_insert(&shm->sh->rbtree, &n->node);
    ngx_queue_insert_head(&shm->sh->queue, &n->queue);

    return n;
}


static ngx_int_t
ngx_ailink_state_shm_add_op(ngx_ailink_state_t *st, ngx_str_t *key,
    int64_t delta, int64_t limit, time_t ttl, ngx_uint_t flags,
    int64_t *value)
{
    time_t                    now;
    uint32_t                  hash;
    ngx_int_t                 rc;
    ngx_ailink_state_shm_t   *shm;
    ngx_ailink_state_node_t  *n;
    ngx_ailink_state_hash_t  *e;

    shm = st->data;

    if (key->len > NGX_AILINK_STATE_KEY_MAX) {
        return NGX_ERROR;
    }

    now = ngx_time();
    hash = ngx_ailink_state_shm_hash(key, &e);

    ngx_shmtx_lock(&shm->shpool->mutex);

    n = ngx_ailink_state_shm_cached(shm, e);

    if (n == NULL) {
        n = ngx_ailink_state_shm_lookup(shm, key, hash);
    }

    if (n && n->expires && n->expires <= now) {
        /* an expired counter starts again */
        n->value = 0;
        n->expires = ttl ? now + ttl : 0;
    }

    if (n == NULL) {
        /* a little expiry for every new key: the zone grows no faster */
        ngx_ailink_state_shm_expire(shm, now, 0);

        n = ngx_ailink_state_shm_alloc(shm, key, hash, 0, now);

        if (n == NULL) {
            ngx_shmtx_unlock(&shm->shpool->mutex);
            return NGX_ERROR;
        }

        n->expires = ttl ? now + ttl : 0;

    } else {
        ngx_queue_remove(&n->queue);
        ngx_queue_insert_head(&shm->sh->queue, &n->queue);
    }

    ngx_ailink_state_shm_remember(shm, e, n);

    n->flags |= (u_char) flags;

    if (limit >= 0 && n->value + delta > limit) {
        rc = NGX_BUSY;

    } else {
        n->value += delta;
        rc = NGX_OK;

        if ((n->flags & NGX_AILINK_STATE_PERSIST) && delta) {
            shm->sh->gen++;
        }
    }

    *value = n->value;

    ngx_shmtx_unlock(&shm->shpool->mutex);

    return rc;
}


static ngx_int_t
ngx_ailink_state_shm_get(ngx_ailink_state_t *st, ngx_str_t *key,
    int64_t *value)
{
    time_t                    now;
    uint32_t                  hash;
    ngx_int_t                 rc;
    ngx_ailink_state_shm_t   *shm;
    ngx_ailink_state_node_t  *n;
    ngx_ailink_state_hash_t  *e;

    shm = st->data;
    now = ngx_time();
    hash = ngx_ailink_state_shm_hash(key, &e);

    ngx_shmtx_lock(&shm->shpool->mutex);

    n = ngx_ailink_state_shm_cached(shm, e);

    if (n == NULL) {
        n = ngx_ailink_state_shm_lookup(shm, key, hash);
        ngx_ailink_state_shm_remember(shm, e, n);
    }

    if (n == NULL || (n->expires && n->expires <= now)) {
        *value = 0;
        rc = NGX_DECLINED;

    } else {
        *value = n->value;
        rc = NGX_OK;
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);

    return rc;
}


static ngx_int_t
ngx_ailink_state_shm_set_record(ngx_ailink_state_t *st, ngx_str_t *key,
    ngx_str_t *value, time_t ttl)
{
    time_t                    now;
    uint32_t                  hash;
    ngx_ailink_state_shm_t   *shm;
    ngx_ailink_state_node_t  *n;

    shm = st->data;

    if (key->len > NGX_AILINK_STATE_KEY_MAX) {
        return NGX_ERROR;
    }

    now = ngx_time();
    hash = ngx_murmur_hash2(key->data, key->len);

    ngx_shmtx_lock(&shm->shpool->mutex);

    n = ngx_ailink_state_shm_lookup(shm, key, hash);

    if (n) {
        if (n->flags & NGX_AILINK_STATE_PERSIST) {
            shm->sh->gen++;
        }

        ngx_ailink_state_shm_free(shm, n);
    }

    n = ngx_ailink_state_shm_alloc(shm, key, hash, value->len, now);

    if (n == NULL) {
        ngx_shmtx_unlock(&shm->shpool->mutex);
        return NGX_ERROR;
    }

    n->flags = NGX_AILINK_STATE_RECORD;
    n->expires = ttl ? now + ttl : 0;
    ngx_memcpy(n->data + n->key_len, value->data, value->len);

    ngx_shmtx_unlock(&shm->shpool->mutex);

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_state_shm_get_record(ngx_ailink_state_t *st, ngx_str_t *key,
    ngx_pool_t *pool, ngx_str_t *value)
{
    time_t                    now;
    uint32_t                  hash;
    ngx_int_t                 rc;
    ngx_ailink_state_shm_t   *shm;
    ngx_ailink_state_node_t  *n;

    shm = st->data;
    now = ngx_time();
    hash = ngx_murmur_hash2(key->data, key->len);

    rc = NGX_DECLINED;

    ngx_shmtx_lock(&shm->shpool->mutex);

    n = ngx_ailink_state_shm_lookup(shm, key, hash);

    if (n && !(n->expires && n->expires <= now)) {
        value->len = n->rec_len;
        value->data = ngx_pnalloc(pool, n->rec_len + 1);

        if (value->data == NULL) {
            rc = NGX_ERROR;

        } else {
            ngx_memcpy(value->data, n->data + n->key_len, n->rec_len);
            rc = NGX_OK;
        }
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);

    return rc;
}


static ngx_int_t
ngx_ailink_state_shm_cas_record(ngx_ailink_state_t *st, ngx_str_t *key,
    ngx_str_t *expect, ngx_str_t *value, time_t ttl, ngx_uint_t flags)
{
    time_t                    now;
    uint32_t                  hash;
    ngx_ailink_state_shm_t   *shm;
    ngx_ailink_state_node_t  *n;

    shm = st->data;

    if (key->len > NGX_AILINK_STATE_KEY_MAX) {
        return NGX_ERROR;
    }

    now = ngx_time();
    hash = ngx_murmur_hash2(key->data, key->len);

    ngx_shmtx_lock(&shm->shpool->mutex);

    ngx_ailink_state_shm_expire(shm, now, 0);

    n = ngx_ailink_state_shm_lookup(shm, key, hash);

    if (n && n->expires && n->expires <= now) {
        if (n->flags & NGX_AILINK_STATE_PERSIST) {
            shm->sh->gen++;
        }

        ngx_ailink_state_shm_free(shm, n);
        n = NULL;
    }

    if (expect == NULL) {
        if (n) {
            ngx_shmtx_unlock(&shm->shpool->mutex);
            return NGX_BUSY;
        }

    } else {
        if (n == NULL) {
            ngx_shmtx_unlock(&shm->shpool->mutex);
            return NGX_DECLINED;
        }

        if (!(n->flags & NGX_AILINK_STATE_RECORD)
            || ngx_memn2cmp(n->data + n->key_len, expect->data, n->rec_len,
                            expect->len)
               != 0)
        {
            ngx_shmtx_unlock(&shm->shpool->mutex);
            return NGX_BUSY;
        }

        ngx_ailink_state_shm_free(shm, n);
    }

    n = ngx_ailink_state_shm_alloc(shm, key, hash, value->len, now);

    if (n == NULL) {
        /* the old record is gone with the new one not written: the
           caller fails closed */
        ngx_shmtx_unlock(&shm->shpool->mutex);
        return NGX_ERROR;
    }

    n->flags = (u_char) (NGX_AILINK_STATE_RECORD
                         | (flags & NGX_AILINK_STATE_PERSIST));
    n->expires = ttl ? now + ttl : 0;
    ngx_memcpy(n->data + n->key_len, value->data, value->len);

    if (n->flags & NGX_AILINK_STATE_PERSIST) {
        shm->sh->gen++;
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);

    return NGX_OK;
}


static ngx_int_t
ngx_ailink_state_shm_list_records(ngx_ailink_state_t *st, ngx_str_t *prefix,
    ngx_pool_t *pool, ngx_array_t *out)
{
    time_t                    now;
    ngx_int_t                 rc;
    ngx_queue_t              *q;
    ngx_keyval_t             *kv;
    ngx_ailink_state_shm_t   *shm;
    ngx_ailink_state_node_t  *n;

    shm = st->data;
    now = ngx_time();
    rc = NGX_OK;

    ngx_shmtx_lock(&shm->shpool->mutex);

    for (q = ngx_queue_head(&shm->sh->queue);
         q != ngx_queue_sentinel(&shm->sh->queue);
         q = ngx_queue_next(q))
    {
        n = ngx_queue_data(q, ngx_ailink_state_node_t, queue);

        if (!(n->flags & NGX_AILINK_STATE_RECORD)
            || (n->expires && n->expires <= now)
            || n->key_len < prefix->len
            || ngx_memcmp(n->data, prefix->data, prefix->len) != 0)
        {
            continue;
        }

        kv = ngx_array_push(out);
        if (kv == NULL) {
            rc = NGX_ERROR;
            break;
        }

        kv->key.len = n->key_len;
        kv->key.data = ngx_pnalloc(pool, n->key_len + n->rec_len + 1);
        if (kv->key.data == NULL) {
            rc = NGX_ERROR;
            break;
        }

        ngx_memcpy(kv->key.data, n->data, n->key_len + n->rec_len);
        kv->value.len = n->rec_len;
        kv->value.data = kv->key.data + n->key_len;
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);

    return rc;
}


static ngx_int_t
ngx_ailink_state_shm_delete_record(ngx_ailink_state_t *st, ngx_str_t *key)
{
    uint32_t                  hash;
    ngx_int_t                 rc;
    ngx_ailink_state_shm_t   *shm;
    ngx_ailink_state_node_t  *n;

    shm = st->data;
    hash = ngx_murmur_hash2(key->data, key->len);
    rc = NGX_DECLINED;

    ngx_shmtx_lock(&shm->shpool->mutex);

    n = ngx_ailink_state_shm_lookup(shm, key, hash);

    if (n) {
        if (n->flags & NGX_AILINK_STATE_PERSIST) {
            shm->sh->gen++;
        }

        ngx_ailink_state_shm_free(shm, n);
        rc = NGX_OK;
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);

    return rc;
}


ngx_ailink_state_t *
ngx_ailink_state_shm_add(ngx_conf_t *cf, ngx_str_t *name, size_t size,
    void *tag)
{
    ngx_shm_zone_t          *zone;
    ngx_ailink_state_shm_t  *shm;

    zone = ngx_shared_memory_add(cf, name, size, tag);
    if (zone == NULL) {
        return NULL;
    }

    if (zone->data) {
        shm = zone->data;
        return &shm->state;
    }

    shm = ngx_pcalloc(cf->pool, sizeof(ngx_ailink_state_shm_t));
    if (shm == NULL) {
        return NULL;
    }

    shm->zone = zone;
    shm->state.ops = &ngx_ailink_state_shm_ops;
    shm->state.data = shm;
    shm->state.name = *name;

    zone->init = ngx_ailink_state_shm_init_zone;
    zone->data = shm;

    return &shm->state;
}


void
ngx_ailink_state_shm_persist(ngx_ailink_state_t *st, ngx_str_t *path)
{
    ngx_ailink_state_shm_t  *shm;

    shm = st->data;
    shm->path = *path;
}


static ngx_int_t
ngx_ailink_state_shm_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_ailink_state_shm_t  *oshm = data;

    size_t                   len;
    ngx_ailink_state_shm_t  *shm;

    shm = shm_zone->data;

    if (oshm) {
        /* a reload: the counters carry on */
        shm->sh = oshm->sh;
        shm->shpool = oshm->shpool;
        return NGX_OK;
    }

    shm->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        shm->sh = shm->shpool->data;
        return NGX_OK;
    }

    shm->sh = ngx_slab_alloc(shm->shpool, sizeof(ngx_ailink_state_sh_t));
    if (shm->sh == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(shm->sh, sizeof(ngx_ailink_state_sh_t));
    shm->shpool->data = shm->sh;

    ngx_rbtree_init(&shm->sh->rbtree, &shm->sh->sentinel,
                    ngx_ailink_state_shm_rbtree_insert);
    ngx_queue_init(&shm->sh->queue);

    len = sizeof(" in ailink state zone \"\"") + shm_zone->shm.name.len;

    shm->shpool->log_ctx = ngx_slab_alloc(shm->shpool, len);
    if (shm->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(shm->shpool->log_ctx, " in ailink state zone \"%V\"%Z",
                &shm_zone->shm.name);

    shm->shpool->log_nomem = 0;

    if (shm->path.len) {
        ngx_ailink_state_shm_load(shm, shm_zone->shm.log);
    }

    return NGX_OK;
}


/*
 * The file: a first line "ailink-state 1", then one line per persistent
 * counter, "<expires> <value> <key length> <key>\n" (the length makes
 * any byte in a key safe), or per persistent record,
 * "<expires> r<record length> <key length> <key><record>\n".
 */

static void
ngx_ailink_state_shm_load(ngx_ailink_state_shm_t *shm, ngx_log_t *log)
{
    u_char                   *buf, *p, *last, *e;
    time_t                    now, expires;
    ssize_t                   n;
    int64_t                   value;
    ngx_fd_t                  fd;
    uint32_t                  hash;
    ngx_str_t                 key;
    size_t                    rec_len;
    ngx_uint_t                count, neg, record;
    ngx_file_info_t           fi;
    ngx_ailink_state_node_t  *node;

    fd = ngx_open_file(shm->path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        if (ngx_errno != NGX_ENOENT) {
            ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                          "ailink state: cannot open \"%V\"", &shm->path);
        }

        return;
    }

    buf = NULL;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > 64 * 1024 * 1024)
    {
        goto failed;
    }

    buf = ngx_alloc(ngx_file_size(&fi) + 1, log);
    if (buf == NULL) {
        goto failed;
    }

    n = ngx_read_fd(fd, buf, ngx_file_size(&fi));
    if (n < 0) {
        goto failed;
    }

    last = buf + n;
    *last = '\0';

    if ((size_t) n < sizeof("ailink-state 1\n") - 1
        || ngx_strncmp(buf, "ailink-state 1\n", sizeof("ailink-state 1\n") - 1)
           != 0)
    {
        goto failed;
    }

    now = ngx_time();
    count = 0;
    p = buf + sizeof("ailink-state 1\n") - 1;

    while (p < last) {
        e = ngx_strlchr(p, last, ' ');
        if (e == NULL) {
            goto failed;
        }

        expires = ngx_atotm(p, e - p);
        p = e + 1;

        e = ngx_strlchr(p, last, ' ');
        if (e == NULL || expires == NGX_ERROR) {
            goto failed;
        }

        rec_len = 0;
        record = (*p == 'r');

        if (record) {
            rec_len = ngx_atosz(p + 1, e - p - 1);
            value = 0;

            if (rec_len == (size_t) NGX_ERROR) {
                goto failed;
            }

        } else {
            neg = (*p == '-');
            value = ngx_atoof(p + neg, e - p - neg);
            if (value == NGX_ERROR) {
                goto failed;
            }

            value = neg ? -value : value;
        }

        p = e + 1;

        e = ngx_strlchr(p, last, ' ');
        if (e == NULL) {
            goto failed;
        }

        key.len = ngx_atosz(p, e - p);
        key.data = e + 1;

        if (key.len == (size_t) NGX_ERROR || key.len > NGX_AILINK_STATE_KEY_MAX
            || (size_t) (last - key.data) < key.len + rec_len + 1
            || key.data[key.len + rec_len] != '\n')
        {
            goto failed;
        }

        p = key.data + key.len + rec_len + 1;

        if (expires && expires <= now) {
            continue;
        }

        hash = ngx_murmur_hash2(key.data, key.len);

        if (ngx_ailink_state_shm_lookup(shm, &key, hash)) {
            continue;
        }

        node = ngx_ailink_state_shm_alloc(shm, &key, hash, rec_len, now);
        if (node == NULL) {
            break;
        }

        node->expires = expires;
        node->value = value;
        node->flags = NGX_AILINK_STATE_PERSIST;

        if (record) {
            node->flags |= NGX_AILINK_STATE_RECORD;
            ngx_memcpy(node->data + key.len, key.data + key.len, rec_len);
        }

        count++;
    }

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "ailink state zone \"%V\": %ui counters read from \"%V\"",
                  &shm->zone->shm.name, count, &shm->path);

    ngx_free(buf);
    ngx_close_file(fd);
    return;

failed:

    ngx_log_error(NGX_LOG_ALERT, log, 0,
                  "ailink state: \"%V\" is not a state file the gateway "
                  "wrote; ignored", &shm->path);

    if (buf) {
        ngx_free(buf);
    }

    ngx_close_file(fd);
}


/*
 * Writes the persistent counters when they changed since the last write:
 * a copy is made under the lock, written to a temporary file outside it,
 * and renamed over the file only if nothing newer was renamed meanwhile
 * (old and new workers both save around a reload).
 */

ngx_int_t
ngx_ailink_state_shm_save(ngx_ailink_state_t *st, ngx_log_t *log)
{
    u_char                   *buf, *p, tmp[NGX_MAX_PATH];
    size_t                    size;
    time_t                    now;
    ssize_t                   n;
    uint64_t                  gen;
    ngx_fd_t                  fd;
    ngx_int_t                 rc;
    ngx_queue_t              *q;
    ngx_ailink_state_shm_t   *shm;
    ngx_ailink_state_node_t  *node;

    shm = st->data;

    if (shm->path.len == 0 || shm->sh == NULL
        || shm->sh->gen == shm->sh->saved_gen)
    {
        return NGX_OK;
    }

    if (shm->path.len + sizeof(".tmp.") + NGX_INT64_LEN > NGX_MAX_PATH) {
        return NGX_ERROR;
    }

    now = ngx_time();

    ngx_shmtx_lock(&shm->shpool->mutex);

    gen = shm->sh->gen;
    size = sizeof("ailink-state 1\n");

    for (q = ngx_queue_head(&shm->sh->queue);
         q != ngx_queue_sentinel(&shm->sh->queue);
         q = ngx_queue_next(q))
    {
        node = ngx_queue_data(q, ngx_ailink_state_node_t, queue);

        if (node->flags & NGX_AILINK_STATE_PERSIST) {
            size += 3 * NGX_INT64_LEN + 5 + node->key_len + node->rec_len;
        }
    }

    buf = ngx_alloc(size, log);

    if (buf == NULL) {
        ngx_shmtx_unlock(&shm->shpool->mutex);
        return NGX_ERROR;
    }

    p = ngx_cpymem(buf, "ailink-state 1\n", sizeof("ailink-state 1\n") - 1);

    for (q = ngx_queue_head(&shm->sh->queue);
         q != ngx_queue_sentinel(&shm->sh->queue);
         q = ngx_queue_next(q))
    {
        node = ngx_queue_data(q, ngx_ailink_state_node_t, queue);

        if (!(node->flags & NGX_AILINK_STATE_PERSIST)
            || (node->expires && node->expires <= now))
        {
            continue;
        }

        if (node->flags & NGX_AILINK_STATE_RECORD) {
            /* a record: "r<length>" in place of the value, its bytes
               right after the key */
            p = ngx_sprintf(p, "%T r%uz %uz ", node->expires,
                            (size_t) node->rec_len, (size_t) node->key_len);
            p = ngx_cpymem(p, node->data, node->key_len + node->rec_len);

        } else {
            p = ngx_sprintf(p, "%T %L %uz ", node->expires, node->value,
                            (size_t) node->key_len);
            p = ngx_cpymem(p, node->data, node->key_len);
        }

        *p++ = '\n';
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);

    ngx_sprintf(tmp, "%V.tmp.%P%Z", &shm->path, ngx_pid);

    fd = ngx_open_file(tmp, NGX_FILE_WRONLY, NGX_FILE_TRUNCATE,
                       NGX_FILE_DEFAULT_ACCESS);

    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "ailink state: cannot create \"%s\"", tmp);
        ngx_free(buf);
        return NGX_ERROR;
    }

    n = ngx_write_fd(fd, buf, p - buf);
    rc = (n == p - buf) ? NGX_OK : NGX_ERROR;

    ngx_free(buf);

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        rc = NGX_ERROR;
    }

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "ailink state: cannot write \"%s\"", tmp);
        (void) ngx_delete_file(tmp);
        return NGX_ERROR;
    }

    ngx_shmtx_lock(&shm->shpool->mutex);

    if (gen > shm->sh->saved_gen) {
        if (ngx_rename_file(tmp, shm->path.data) == NGX_FILE_ERROR) {
            rc = NGX_ERROR;

        } else {
            shm->sh->saved_gen = gen;
        }

    } else {
        (void) ngx_delete_file(tmp);
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "ailink state: cannot rename \"%s\" to \"%V\"",
                      tmp, &shm->path);
        (void) ngx_delete_file(tmp);
    }

    return rc;
}
