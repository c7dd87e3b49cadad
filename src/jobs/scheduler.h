/*
 * The built-in scheduler (SPEC §6.4; the seed needed an external cron). Runs
 * tasks on fixed intervals in one thread, so a task never overlaps itself;
 * waits with sigtimedwait, so SIGTERM/SIGINT end the loop after the run in
 * progress has finished.
 */
#ifndef IOT_SCHEDULER_H
#define IOT_SCHEDULER_H

#include <signal.h>
#include <stdint.h>

struct sched_task {
    const char *name;
    int64_t interval_ms;
    int (*run)(void *ud); /* return value is logged only */
    void *ud;
    int64_t next_due; /* monotonic ms; 0 = run at start */
};

/*
 * Runs the tasks until one of the signals in stop (which the caller has
 * blocked in every thread) arrives. Returns the signal number.
 */
int scheduler_run(struct sched_task *tasks, int ntasks, const sigset_t *stop);

#endif
