#include "jobs/scheduler.h"
#include "core/clock.h"
#include "core/log.h"

#include <errno.h>
#include <time.h>

int scheduler_run(struct sched_task *tasks, int ntasks, const sigset_t *stop)
{
    for (;;) {
        int64_t now = clock_mono_ms();
        for (int i = 0; i < ntasks; i++) {
            struct sched_task *t = &tasks[i];
            if (t->next_due > now) continue;
            int64_t started = clock_mono_ms();
            int rc = t->run(t->ud);
            LOG(rc ? LOG_WARN : LOG_DEBUG, "job_run", "job=%s rc=%d duration_ms=%lld", t->name, rc,
                (long long)(clock_mono_ms() - started));
            /* Fixed rate from the planned start; a run longer than the interval skips ahead. */
            t->next_due = (t->next_due ? t->next_due : started) + t->interval_ms;
            if (t->next_due <= clock_mono_ms()) t->next_due = clock_mono_ms() + t->interval_ms;
            /* A stop request during a run ends the loop before the next one. */
            struct timespec zero = {0, 0};
            int sig = sigtimedwait(stop, NULL, &zero);
            if (sig > 0) return sig;
            now = clock_mono_ms();
        }
        int64_t wait = INT64_MAX;
        for (int i = 0; i < ntasks; i++)
            if (tasks[i].next_due - now < wait) wait = tasks[i].next_due - now;
        if (wait < 0) wait = 0;
        struct timespec ts = {(time_t)(wait / 1000), (long)(wait % 1000) * 1000000};
        int sig = sigtimedwait(stop, NULL, &ts);
        if (sig > 0) return sig;
        if (sig < 0 && errno != EAGAIN && errno != EINTR) return 0;
    }
}
