/* TEST-ONLY fault injection (see fault.h). */
#include "cache/fault.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

int mj_fault_armed;

static struct {
    int err;            /* 0: not armed */
    unsigned from_call;
    atomic_uint calls;
} g_points[MJ_FAULT_POINTS];
static mj_fault_crash_at g_crash;
static atomic_ulong g_injected;

static void rearm(void)
{
    int any = g_crash != MJ_CRASH_NONE;
    for (int i = 0; i < MJ_FAULT_POINTS; i++) any |= g_points[i].err != 0;
    mj_fault_armed = any;
}

void mj_fault_fail(mj_fault_point point, int err, unsigned from_call)
{
    if ((unsigned)point >= MJ_FAULT_POINTS) return;
    g_points[point].err = err;
    g_points[point].from_call = from_call ? from_call : 1;
    atomic_store(&g_points[point].calls, 0);
    rearm();
}

void mj_fault_crash(mj_fault_crash_at at)
{
    g_crash = at;
    rearm();
}

void mj_fault_clear(void)
{
    for (int i = 0; i < MJ_FAULT_POINTS; i++) {
        g_points[i].err = 0;
        atomic_store(&g_points[i].calls, 0);
    }
    g_crash = MJ_CRASH_NONE;
    atomic_store(&g_injected, 0);
    rearm();
}

unsigned long mj_fault_injected(void) { return atomic_load(&g_injected); }

int mj_fault_hit(mj_fault_point point)
{
    if ((unsigned)point >= MJ_FAULT_POINTS || !g_points[point].err) return 0;
    const unsigned n = atomic_fetch_add(&g_points[point].calls, 1) + 1;
    if (n < g_points[point].from_call) return 0;
    atomic_fetch_add(&g_injected, 1);
    errno = g_points[point].err;
    return -1;
}

int mj_fault_crash_armed(mj_fault_crash_at at) { return g_crash == at; }

void mj_fault_crash_point(mj_fault_crash_at at)
{
    if (g_crash != at) return;
    kill(getpid(), SIGKILL); /* like an OOM kill: no atexit, no unlink, no unlock */
    for (;;) pause();
}
