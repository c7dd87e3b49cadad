/*
 * Progress and summary lines shared by the batch jobs. Progress goes to
 * stderr at most once a second (a single redrawn line when stderr is a
 * terminal); the one-line summary goes to stdout at the end.
 */
#ifndef IOT_JOB_PROGRESS_H
#define IOT_JOB_PROGRESS_H

#include <stdint.h>

struct job_progress {
    const char *job;
    const char *unit;
    int64_t started, last_print; /* monotonic ms */
    int tty, printed;
};

void job_progress_start(struct job_progress *p, const char *job, const char *unit);
/* Prints a progress line if a second has passed since the last one. */
void job_progress_tick(struct job_progress *p, uint64_t done);
/* Ends a terminal progress line; returns the run's duration in ms. */
int64_t job_progress_end(struct job_progress *p);

#endif
