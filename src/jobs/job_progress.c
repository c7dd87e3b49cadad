#include "jobs/job_progress.h"
#include "core/clock.h"

#include <stdio.h>
#include <unistd.h>

void job_progress_start(struct job_progress *p, const char *job, const char *unit)
{
    p->job = job;
    p->unit = unit;
    p->started = p->last_print = clock_mono_ms();
    p->tty = isatty(STDERR_FILENO);
    p->printed = 0;
}

void job_progress_tick(struct job_progress *p, uint64_t done)
{
    int64_t now = clock_mono_ms();
    if (now - p->last_print < 1000) return;
    p->last_print = now;
    double secs = (double)(now - p->started) / 1000.0;
    double rate = secs > 0 ? (double)done / secs : 0;
    if (p->tty) {
        /* An activity bar: the marker sweeps once every 20 seconds. */
        char bar[21];
        int pos = (int)(secs) % 20;
        for (int i = 0; i < 20; i++)
            bar[i] = i < pos ? '=' : i == pos ? '>' : ' ';
        bar[20] = 0;
        fprintf(stderr, "\r%s [%s] %llu %s, %.0f/s, %.0fs", p->job, bar, (unsigned long long)done,
                p->unit, rate, secs);
    } else {
        fprintf(stderr, "%s progress: %llu %s, %.0f/s, %.0fs elapsed\n", p->job,
                (unsigned long long)done, p->unit, rate, secs);
    }
    fflush(stderr);
    p->printed = 1;
}

int64_t job_progress_end(struct job_progress *p)
{
    if (p->tty && p->printed) fputc('\n', stderr);
    return clock_mono_ms() - p->started;
}
