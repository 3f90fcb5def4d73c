/* SPDX-License-Identifier: MIT */
/*
 * utility/log.c: the process-wide log hook (wal/wal-log.h) and walu_log().
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#include <wal/wal-log.h>
#include "utility/walu.h"

static pthread_mutex_t hook_lock = PTHREAD_MUTEX_INITIALIZER;
static wal_log_fn *hook_fn;
static void *hook_arg;

void wal_set_log_hook(wal_log_fn *fn, void *arg)
{
        pthread_mutex_lock(&hook_lock);
        hook_fn = fn;
        hook_arg = arg;
        pthread_mutex_unlock(&hook_lock);
}

void walu_log(int level, const char *fmt, ...)
{
        pthread_mutex_lock(&hook_lock);
        wal_log_fn *fn = hook_fn;
        void *arg = hook_arg;
        pthread_mutex_unlock(&hook_lock);
        if (!fn)
                return;
        char buf[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        fn(arg, level, buf);
}
