/* TEST-ONLY fault injection for the disk store.
 *
 * The reliability tests need full disks, read-only and permission-denied directories, failed
 * fsyncs and renames, unavailable locks and processes killed in the middle of a publish — on a
 * CI machine where they run as root (chmod cannot stop root) and may not mount a tmpfs. The
 * store's system calls go through MJ_FAULT(point) first; a test arms a point with
 * mj_fault_fail() or mj_fault_crash() (internal functions: nothing in the public API, no
 * environment variable, the shared library does not export them).
 *
 * Cost when nothing is armed — always, outside the tests: one predictable branch on a
 * process-wide flag, and only on the disk paths (publish, lock, load), never on a launch.
 * Arming is not thread-safe against concurrent store calls: arm before starting the threads or
 * processes under test (forked children inherit the armed state). */
#ifndef MOEJIT_CACHE_FAULT_H
#define MOEJIT_CACHE_FAULT_H

typedef enum mj_fault_point {
    MJ_FAULT_MKDIR,    /* creating <root>, <root>/tmp, <root>/v1/xx, <root>/locks/xx */
    MJ_FAULT_OPEN_TMP, /* creating the temp file of a publish */
    MJ_FAULT_WRITE,    /* writing it (the first half is written, then the error: a short write) */
    MJ_FAULT_FSYNC,
    MJ_FAULT_RENAME,   /* temp file → entry */
    MJ_FAULT_LOCK,     /* opening or taking the per-key lock */
    MJ_FAULT_READ,     /* opening an entry for reading */
    MJ_FAULT_POINTS
} mj_fault_point;

typedef enum mj_fault_crash_at {
    MJ_CRASH_NONE,
    MJ_CRASH_MID_WRITE,     /* SIGKILL after writing half of the temp file */
    MJ_CRASH_BEFORE_RENAME  /* SIGKILL after the temp file is complete and synced, before rename() */
} mj_fault_crash_at;

/* Nonzero while anything is armed. Read through MJ_FAULT only. */
extern int mj_fault_armed;

/* Fail `point` with errno `err` from its `from_call`-th call on (1 = every call). */
void mj_fault_fail(mj_fault_point point, int err, unsigned from_call);
/* Kill the process (SIGKILL, no cleanup) at a point of the next publish. */
void mj_fault_crash(mj_fault_crash_at at);
/* Disarm everything and reset the counters. */
void mj_fault_clear(void);
/* Faults injected since the last clear (crashes excluded: they end the process). */
unsigned long mj_fault_injected(void);

/* Called by MJ_FAULT: 0 to go ahead, or -1 with errno set when the point is armed and due. */
int mj_fault_hit(mj_fault_point point);
/* Called at the crash sites of a publish. */
void mj_fault_crash_point(mj_fault_crash_at at);
int mj_fault_crash_armed(mj_fault_crash_at at);

#define MJ_FAULT(point) (__builtin_expect(mj_fault_armed, 0) ? mj_fault_hit(point) : 0)
#define MJ_FAULT_CRASH_ARMED(at) (__builtin_expect(mj_fault_armed, 0) && mj_fault_crash_armed(at))
#define MJ_FAULT_CRASH(at)                                                                                 \
    do {                                                                                                   \
        if (__builtin_expect(mj_fault_armed, 0)) mj_fault_crash_point(at);                                 \
    } while (0)

#endif
