/*
 * The classifier of SPEC §4, as pure functions: no I/O, no state. The order
 * of the tests is the contract: alert (critical range), spike (delta to the
 * previous reading), warning (warning range), normal.
 */
#ifndef IOT_CLASSIFIER_H
#define IOT_CLASSIFIER_H

#include "store/store.h"

/* 1 if value lies outside [min, max] of an active threshold (NULL bound = open). */
int classifier_violates_range(const struct store_threshold *t, double value);

/*
 * 1 if |value - prev| > delta_max of any active threshold. Sets *thr_id to
 * the threshold exceeded (critical preferred) when thr_id is not NULL.
 */
int classifier_is_spike(const struct store_threshold thr[2], double prev, double value,
                        int64_t *thr_id);

/* Class by range only: CLASS_ALERT, CLASS_WARNING or CLASS_NORMAL (used for late readings). */
enum reading_class classifier_range_class(const struct store_threshold thr[2], double value);

/*
 * Full class of a non-late reading. has_prev = 0 for the sensor's first
 * reading (no spike possible).
 */
enum reading_class classifier_classify(const struct store_threshold thr[2], int has_prev,
                                       double prev, double value);

#endif
