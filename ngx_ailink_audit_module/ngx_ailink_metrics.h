
/*
 * Copyright (C) AILink
 *
 * Prometheus metrics: counters in a shared-memory zone, updated with
 * atomics from the log phase (ngx_ailink_metrics_module.c), and the text
 * exposition a content handler serves (ngx_ailink_metrics_expo.c).
 *
 * Labelled counters live in one open-addressed table of series, keyed by
 * their kind, a status code and up to three label values.  Lookups take
 * no lock; only the first request of a new series takes the zone's mutex
 * to add it.  Past max_series, new label sets are counted in a series
 * whose string labels are "other".
 */


#ifndef _NGX_AILINK_METRICS_H_INCLUDED_
#define _NGX_AILINK_METRICS_H_INCLUDED_


#include "ngx_ailink_common.h"


/* a label value longer than this is counted as "other" */
#define NGX_AILINK_METRICS_LABEL_MAX   128
#define NGX_AILINK_METRICS_LABELS      3
#define NGX_AILINK_METRICS_KEY_MAX                                            \
    (NGX_AILINK_METRICS_LABELS * (1 + NGX_AILINK_METRICS_LABEL_MAX))

/* series kinds */
#define NGX_AILINK_MK_REQUESTS         1   /* provider, model, project; code */
#define NGX_AILINK_MK_USAGE            2   /* provider, model, project */
#define NGX_AILINK_MK_ERRORS           3   /* error code; status */
#define NGX_AILINK_MK_POLICY           4   /* policy, action, result */

/* histogram buckets, in milliseconds, +Inf after them */
#define NGX_AILINK_METRICS_BUCKETS     13

/* the values of a usage series */
#define NGX_AILINK_MV_PROMPT           0
#define NGX_AILINK_MV_COMPLETION       1
#define NGX_AILINK_MV_CACHED           2
#define NGX_AILINK_MV_COST             3   /* nano-USD */
#define NGX_AILINK_MV_LATENCY_SUM      4   /* ms */
#define NGX_AILINK_MV_LATENCY          5   /* buckets, +Inf last */
#define NGX_AILINK_MV_TTFT_SUM                                                \
    (NGX_AILINK_MV_LATENCY + NGX_AILINK_METRICS_BUCKETS + 1)
#define NGX_AILINK_MV_TTFT             (NGX_AILINK_MV_TTFT_SUM + 1)
#define NGX_AILINK_MV_N                                                       \
    (NGX_AILINK_MV_TTFT + NGX_AILINK_METRICS_BUCKETS + 1)

/* cache outcomes */
#define NGX_AILINK_METRICS_CACHE_HIT     0
#define NGX_AILINK_METRICS_CACHE_MISS    1
#define NGX_AILINK_METRICS_CACHE_BYPASS  2


typedef struct {
    ngx_atomic_t                ready;      /* the key below is written */
    uint32_t                    hash;
    uint16_t                    kind;
    uint16_t                    code;
    uint16_t                    key_len;
    u_char                      key[NGX_AILINK_METRICS_KEY_MAX];
    ngx_atomic_t                v[NGX_AILINK_MV_N];
} ngx_ailink_metrics_series_t;


typedef struct {
    ngx_atomic_t                nseries;
    ngx_atomic_t                overflow;   /* requests put in "other" */
    ngx_atomic_t                dropped;    /* the table was full */
    ngx_atomic_t                cache[3];
    ngx_uint_t                  max;        /* max_series */
    ngx_uint_t                  nslots;     /* a power of two */
    ngx_ailink_metrics_series_t slots[1];
} ngx_ailink_metrics_sh_t;


/*
 * Gauges other modules add to the output (the multi-node work: the audit
 * spool's depth, Redis and PostgreSQL connection states).  A collector
 * appends complete families (HELP, TYPE, samples) to out, allocated from
 * r->pool; see ngx_ailink_metrics_add_collector().
 */
typedef ngx_int_t (*ngx_ailink_metrics_collect_pt)(ngx_http_request_t *r,
    void *data, ngx_str_t *out);

typedef struct {
    ngx_ailink_metrics_collect_pt  handler;
    void                          *data;
} ngx_ailink_metrics_collector_t;


typedef struct {
    ngx_shm_zone_t             *zone;
    ngx_ailink_metrics_sh_t    *sh;
    ngx_slab_pool_t            *shpool;     /* its mutex adds series */
    ngx_uint_t                  max;
    ngx_array_t                 collectors;
} ngx_ailink_metrics_main_conf_t;


extern ngx_module_t  ngx_ailink_metrics_module;


/* ngx_ailink_metrics_module.c */
ngx_int_t ngx_ailink_metrics_add_collector(ngx_conf_t *cf,
    ngx_ailink_metrics_collect_pt handler, void *data);
extern const ngx_msec_t  ngx_ailink_metrics_bounds[];

/* ngx_ailink_metrics_expo.c */
ngx_int_t ngx_ailink_metrics_handler(ngx_http_request_t *r);


#endif /* _NGX_AILINK_METRICS_H_INCLUDED_ */
