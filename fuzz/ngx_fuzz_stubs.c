
/*
 * Copyright (C) AILink
 *
 * Process-level plumbing the fuzz targets link against instead of a whole
 * nginx binary: the globals ngx_alloc.c, ngx_palloc.c and ngx_string.c
 * expect, and ngx_log_error_core.  The real nginx pool and string code
 * (src/core/ngx_palloc.c, src/core/ngx_string.c, src/os/unix/ngx_alloc.c)
 * is linked as is; nothing here stands in for AILink code.
 *
 * ngx_log_error_core formats every message with the real ngx_vslprintf
 * into a stack buffer and throws it away, so that a log call whose
 * arguments do not match its format ("%V" given a char *, say) is still
 * caught by the sanitizers.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_fuzz.h"


static ngx_time_t   ngx_fuzz_time = { 1700000000, 0, 0 };

volatile ngx_time_t  *ngx_cached_time = &ngx_fuzz_time;
volatile ngx_msec_t   ngx_current_msec;
volatile ngx_cycle_t *ngx_cycle;

ngx_uint_t            ngx_fuzz_log_lines;


#if (NGX_HAVE_VARIADIC_MACROS)

void
ngx_log_error_core(ngx_uint_t level, ngx_log_t *log, ngx_err_t err,
    const char *fmt, ...)

#else

void
ngx_log_error_core(ngx_uint_t level, ngx_log_t *log, ngx_err_t err,
    const char *fmt, va_list args)

#endif
{
#if (NGX_HAVE_VARIADIC_MACROS)
    va_list  args;
#endif
    u_char   errstr[NGX_MAX_ERROR_STR];

#if (NGX_HAVE_VARIADIC_MACROS)
    va_start(args, fmt);
    (void) ngx_vslprintf(errstr, errstr + NGX_MAX_ERROR_STR, fmt, args);
    va_end(args);
#else
    (void) ngx_vslprintf(errstr, errstr + NGX_MAX_ERROR_STR, fmt, args);
#endif

    ngx_fuzz_log_lines++;
}


#if !(NGX_HAVE_VARIADIC_MACROS)

void ngx_cdecl
ngx_log_error(ngx_uint_t level, ngx_log_t *log, ngx_err_t err,
    const char *fmt, ...)
{
    va_list  args;

    if (log->log_level >= level) {
        va_start(args, fmt);
        ngx_log_error_core(level, log, err, fmt, args);
        va_end(args);
    }
}


void ngx_cdecl
ngx_log_debug_core(ngx_log_t *log, ngx_err_t err, const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    ngx_log_error_core(NGX_LOG_DEBUG, log, err, fmt, args);
    va_end(args);
}

#endif


/* ngx_string.c's ngx_strerror() use in "%E"; unused by AILink code */

u_char *
ngx_strerror(ngx_err_t err, u_char *errstr, size_t size)
{
    return ngx_cpystrn(errstr, (u_char *) "error", size);
}


/*
 * every level and every debug category but the allocator's (one line per
 * malloc only slows the fuzzer down)
 */

ngx_log_t  ngx_fuzz_log = {
    NGX_LOG_DEBUG | (NGX_LOG_DEBUG_ALL & ~NGX_LOG_DEBUG_ALLOC),
};


/*
 * A pool whose "max" is 0: every allocation but the pool's own large-block
 * links goes through ngx_palloc_large() and so gets its own malloc() of
 * exactly the size asked, which lets AddressSanitizer see an overflow of
 * any pool allocation; a normal 16k pool would hide it inside its block.
 */

ngx_pool_t *
ngx_fuzz_pool(void)
{
    ngx_pool_t  *pool;

    if (ngx_pagesize == 0) {
        ngx_pagesize = getpagesize();
        ngx_cacheline_size = NGX_CPU_CACHE_LINE;
    }

    pool = ngx_create_pool(sizeof(ngx_pool_t), &ngx_fuzz_log);
    if (pool == NULL) {
        abort();
    }

    return pool;
}
