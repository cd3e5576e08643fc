
/*
 * Copyright (C) AILink
 *
 * Time zones of policies: context.time.* and the days and months of
 * spend caps.  A zone is UTC, a fixed offset ("+02:00") or an IANA name
 * ("Europe/Paris") from the system's time zone database (tzdata).
 *
 * An IANA zone's offsets change with daylight saving time, by rules that
 * glibc already knows (the transitions of the zone's file and the POSIX
 * rule at its end).  So, when the configuration is read, the zone's
 * transitions from a year ago to ten years ahead are found with
 * localtime_r() under that zone, and a request looks its offset up in
 * that table: no file and no libc time zone state on the request path.
 * A reload reads the table anew.
 */


#include "ngx_ailink_policy.h"


#define NGX_AILINK_TZ_PAST      (366 * 86400)
#define NGX_AILINK_TZ_AHEAD     (10 * 366 * 86400)
#define NGX_AILINK_TZ_MAX       64          /* transitions kept */


static ngx_int_t ngx_ailink_policy_tz_fixed(ngx_str_t *name, time_t *offset);
static char *ngx_ailink_policy_tz_check(ngx_str_t *name);
static ngx_int_t ngx_ailink_policy_tz_table(ngx_pool_t *pool,
    ngx_ailink_policy_tz_t *tz);
static time_t ngx_ailink_policy_tz_gmtoff(time_t t);


/*
 * The zone of a name, one object per distinct zone of the configuration
 * (zones holds them), so that two spend caps in one zone share counters;
 * NULL in *tz for UTC.  NGX_ERROR with *err set for a name that is none.
 */

ngx_int_t
ngx_ailink_policy_tz_get(ngx_conf_t *cf, ngx_array_t *zones, ngx_str_t *name,
    ngx_ailink_policy_tz_t **tz, char **err)
{
    u_char                   *p;
    time_t                    offset;
    ngx_uint_t                i;
    ngx_ailink_policy_tz_t   *z, **zp;

    *tz = NULL;
    *err = NULL;

    if ((name->len == 3 && ngx_strncmp(name->data, "UTC", 3) == 0)
        || (name->len == 1 && name->data[0] == 'Z'))
    {
        return NGX_OK;
    }

    offset = 0;

    if (name->len && (name->data[0] == '+' || name->data[0] == '-')) {
        if (ngx_ailink_policy_tz_fixed(name, &offset) != NGX_OK) {
            *err = "an offset must be \"+HH:MM\" or \"-HH:MM\", "
                   "at most 14 hours";
            return NGX_ERROR;
        }

        if (offset == 0) {
            return NGX_OK;
        }

    } else {
        *err = ngx_ailink_policy_tz_check(name);
        if (*err) {
            return NGX_ERROR;
        }
    }

    zp = zones->elts;

    for (i = 0; i < zones->nelts; i++) {
        z = zp[i];

        if (name->data[0] == '+' || name->data[0] == '-'
            ? (z->ntransitions == 0 && z->fixed == offset)
            : (z->name.len == name->len
               && ngx_strncmp(z->name.data, name->data, name->len) == 0))
        {
            *tz = z;
            return NGX_OK;
        }
    }

    z = ngx_pcalloc(cf->pool, sizeof(ngx_ailink_policy_tz_t));
    zp = ngx_array_push(zones);
    if (z == NULL || zp == NULL) {
        return NGX_ERROR;
    }

    *zp = z;

    z->name.data = ngx_pstrdup(cf->pool, name);
    if (z->name.data == NULL) {
        return NGX_ERROR;
    }

    z->name.len = name->len;

    if (name->data[0] == '+' || name->data[0] == '-') {
        /* the counters' key names a fixed zone by its seconds, as before */
        z->fixed = offset;

        p = ngx_pnalloc(cf->pool, NGX_INT64_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        z->key.data = p;
        z->key.len = ngx_ailink_write_int(p, offset) - p;

        *tz = z;
        return NGX_OK;
    }

    z->key = z->name;

    if (ngx_ailink_policy_tz_table(cf->pool, z) != NGX_OK) {
        return NGX_ERROR;
    }

    *tz = z;

    return NGX_OK;
}


/* the offset of a zone at a time: a binary search of its transitions */

time_t
ngx_ailink_policy_tz_offset(ngx_ailink_policy_tz_t *tz, time_t now)
{
    ngx_uint_t  lo, hi, mid;

    if (tz == NULL) {
        return 0;
    }

    if (tz->ntransitions == 0) {
        return tz->fixed;
    }

    /* the last transition at or before now; the first covers the past */
    lo = 0;
    hi = tz->ntransitions;

    while (hi - lo > 1) {
        mid = (lo + hi) / 2;

        if (tz->at[mid] <= now) {
            lo = mid;

        } else {
            hi = mid;
        }
    }

    return tz->offset[lo];
}


static ngx_int_t
ngx_ailink_policy_tz_fixed(ngx_str_t *name, time_t *offset)
{
    u_char  *s;

    s = name->data;

    if (name->len != 6 || s[3] != ':'
        || !isdigit(s[1]) || !isdigit(s[2])
        || !isdigit(s[4]) || !isdigit(s[5]))
    {
        return NGX_ERROR;
    }

    *offset = ((s[1] - '0') * 10 + (s[2] - '0')) * 3600
              + ((s[4] - '0') * 10 + (s[5] - '0')) * 60;

    if (*offset > 14 * 3600 || (s[4] - '0') > 5) {
        return NGX_ERROR;
    }

    if (s[0] == '-') {
        *offset = -*offset;
    }

    return NGX_OK;
}


/*
 * An IANA name must be a file of the time zone database: glibc takes an
 * unknown name for UTC without a word, which would be a silent error
 */

static char *
ngx_ailink_policy_tz_check(ngx_str_t *name)
{
    u_char        c, *p, *last, buf[4];
    char         *dir;
    ssize_t       n;
    ngx_fd_t      fd;
    ngx_str_t     path;
    ngx_uint_t    i;

    if (name->len == 0 || name->len > 64 || name->data[0] == '/') {
        return "unknown time zone";
    }

    /* letters, digits, "/", "_", "+", "-": no "..", no NUL */
    for (i = 0; i < name->len; i++) {
        c = name->data[i];

        if (!(isalnum(c) || c == '/' || c == '_' || c == '+' || c == '-')) {
            return "unknown time zone";
        }
    }

    dir = getenv("TZDIR");
    if (dir == NULL || dir[0] == '\0') {
        dir = "/usr/share/zoneinfo";
    }

    path.len = ngx_strlen(dir) + 1 + name->len;
    path.data = ngx_alloc(path.len + 1, ngx_cycle->log);
    if (path.data == NULL) {
        return "no memory";
    }

    p = ngx_cpymem(path.data, dir, ngx_strlen(dir));
    *p++ = '/';
    last = ngx_cpymem(p, name->data, name->len);
    *last = '\0';

    /* the configuration is being read: a blocking read is fine here */
    fd = ngx_open_file(path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    ngx_free(path.data);

    if (fd == NGX_INVALID_FILE) {
        return "unknown time zone (no such file in the time zone database: "
               "is the tzdata package installed?)";
    }

    n = read(fd, buf, 4);
    ngx_close_file(fd);

    if (n != 4 || ngx_strncmp(buf, "TZif", 4) != 0) {
        return "unknown time zone (not a time zone file)";
    }

    return NULL;
}


static ngx_int_t
ngx_ailink_policy_tz_table(ngx_pool_t *pool, ngx_ailink_policy_tz_t *tz)
{
    char        *old, *saved;
    time_t       now, t, lo, hi, mid, prev, off;
    time_t       at[NGX_AILINK_TZ_MAX], offset[NGX_AILINK_TZ_MAX];
    ngx_uint_t   n;

    old = getenv("TZ");
    saved = NULL;

    if (old) {
        saved = strdup(old);
        if (saved == NULL) {
            return NGX_ERROR;
        }
    }

    if (setenv("TZ", (char *) tz->name.data, 1) != 0) {
        free(saved);
        return NGX_ERROR;
    }

    tzset();

    now = ngx_time();
    t = now - NGX_AILINK_TZ_PAST;
    prev = ngx_ailink_policy_tz_gmtoff(t);

    at[0] = t;
    offset[0] = prev;
    n = 1;

    /* offsets change at most a few times a year, never twice a day */
    for (t += 86400; t <= now + NGX_AILINK_TZ_AHEAD && n < NGX_AILINK_TZ_MAX;
         t += 86400)
    {
        off = ngx_ailink_policy_tz_gmtoff(t);

        if (off == prev) {
            continue;
        }

        /* the first second of the new offset */
        lo = t - 86400;
        hi = t;

        while (hi - lo > 1) {
            mid = lo + (hi - lo) / 2;

            if (ngx_ailink_policy_tz_gmtoff(mid) == prev) {
                lo = mid;

            } else {
                hi = mid;
            }
        }

        at[n] = hi;
        offset[n] = off;
        n++;
        prev = off;
    }

    if (saved) {
        (void) setenv("TZ", saved, 1);
        free(saved);

    } else {
        (void) unsetenv("TZ");
    }

    tzset();

    tz->at = ngx_palloc(pool, n * sizeof(time_t));
    tz->offset = ngx_palloc(pool, n * sizeof(time_t));
    if (tz->at == NULL || tz->offset == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(tz->at, at, n * sizeof(time_t));
    ngx_memcpy(tz->offset, offset, n * sizeof(time_t));
    tz->ntransitions = n;

    return NGX_OK;
}


static time_t
ngx_ailink_policy_tz_gmtoff(time_t t)
{
    struct tm  tm;

    if (localtime_r(&t, &tm) == NULL) {
        return 0;
    }

    return tm.tm_gmtoff;
}
