/*
 * Timestamp text: RFC 3339 and epoch-second parsing, RFC 3339 formatting.
 * Values are UTC milliseconds since the Unix epoch.
 */
#ifndef IOT_TIMEFMT_H
#define IOT_TIMEFMT_H

#include <stddef.h>
#include <stdint.h>

/*
 * Parses an RFC 3339 timestamp ("2026-11-27T17:00:00.123Z", "...+02:00",
 * lower-case t/z and a space instead of T accepted; fraction of any length,
 * rounded to the millisecond) into UTC ms. len is the string length (the
 * string need not be NUL-terminated). Returns 0 or IOT_EINVAL.
 */
int timefmt_parse_rfc3339(const char *s, size_t len, int64_t *out_ms);

/*
 * Converts epoch seconds (possibly fractional) into ms, rounded to the
 * nearest ms. Returns IOT_EINVAL for NaN, inf, or values outside years
 * 0001..9999.
 */
int timefmt_from_epoch_s(double secs, int64_t *out_ms);

/* Formats ms as "YYYY-MM-DDTHH:MM:SS.mmmZ"; out needs TIMEFMT_RFC3339_LEN bytes. */
#define TIMEFMT_RFC3339_LEN 32
void timefmt_format_rfc3339(int64_t ms, char out[TIMEFMT_RFC3339_LEN]);

#endif
