
/*
 * Copyright (C) AILink
 *
 * What the fuzz targets share: a sanitizer-friendly pool, a log that
 * formats every message, and small checks.
 */


#ifndef _NGX_FUZZ_H_INCLUDED_
#define _NGX_FUZZ_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <stdio.h>
#include <stdlib.h>


extern ngx_log_t   ngx_fuzz_log;
extern ngx_uint_t  ngx_fuzz_log_lines;

ngx_pool_t *ngx_fuzz_pool(void);


/* an invariant the code under test broke: report it and crash */
#define ngx_fuzz_assert(cond)                                                 \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: invariant failed: %s\n",                  \
                    __FILE__, __LINE__, #cond);                               \
            abort();                                                          \
        }                                                                     \
    } while (0)


#endif /* _NGX_FUZZ_H_INCLUDED_ */
