/*
 * Timestamp text without libc time functions: no strptime, no timegm, no
 * locale, no TZ. Dates are proleptic Gregorian, converted with days-from-civil
 * arithmetic (era = 400-year cycle of 146097 days).
 *
 * Choices:
 * - Leap seconds: ":60" is rejected. Unix time has no leap seconds, and
 *   mapping 23:59:60 onto the next second would silently reorder readings.
 * - Every accepted instant lies in [0001-01-01T00:00:00.000Z,
 *   9999-12-31T23:59:59.999Z] after the offset and the rounding are applied,
 *   so a parsed value always formats back as a four-digit year and both input
 *   forms (RFC 3339 and epoch seconds) accept the same range.
 * - Rounding to the millisecond is half-up (toward +infinity) in both forms,
 *   so "1969-12-31T23:59:59.9995Z" and -0.0005 s name the same ms.
 */
#include "core/timefmt.h"

#include "core/err.h"

#include <math.h>

#define MS_PER_DAY 86400000LL

/* 0001-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z. */
#define TIMEFMT_MIN_MS (-62135596800000LL)
#define TIMEFMT_MAX_MS 253402300799999LL

static int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m)
{
    static const int len[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : len[m - 1];
}

/*
 * Days since 1970-01-01 of the proleptic Gregorian date y-m-d (m 1..12).
 * Counts from March so that the leap day is the last day of the year.
 */
static int64_t timefmt_days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Inverse of timefmt_days_from_civil; valid for any day count an int64 ms holds. */
static void timefmt_civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/*
 * Reads exactly n ASCII digits at s[*pos] (bounds already checked by the
 * caller) into *v. Returns 0, or IOT_EINVAL at the first non-digit.
 */
static int timefmt_digits(const char *s, size_t *pos, int n, int *v)
{
    *v = 0; /* set on every path: the callers read it only after success, but gcc -O3 cannot tell */
    for (int i = 0; i < n; i++) {
        char c = s[*pos + (size_t)i];
        if (c < '0' || c > '9') return IOT_EINVAL;
        *v = *v * 10 + (c - '0');
    }
    *pos += (size_t)n;
    return 0;
}

/*
 * Grammar (RFC 3339 section 5.6, date-time), with T/t/space and Z/z:
 *   YYYY-MM-DD ("T" | "t" | " ") hh:mm:ss ["." 1*DIGIT] ("Z" | "z" | ("+" | "-") hh:mm)
 * Fixed-width fields, so every position is checked against len before use;
 * nothing is read past s[len - 1].
 */
int timefmt_parse_rfc3339(const char *s, size_t len, int64_t *out_ms)
{
    int year, mon, day, hour, min, sec, frac_ms = 0, off_min = 0;
    size_t pos = 0;

    if (!s || !out_ms || len < 20) return IOT_EINVAL;
    if (timefmt_digits(s, &pos, 4, &year) || s[pos++] != '-' || timefmt_digits(s, &pos, 2, &mon) ||
        s[pos++] != '-' || timefmt_digits(s, &pos, 2, &day))
        return IOT_EINVAL;
    if (s[pos] != 'T' && s[pos] != 't' && s[pos] != ' ') return IOT_EINVAL;
    pos++;
    if (timefmt_digits(s, &pos, 2, &hour) || s[pos++] != ':' || timefmt_digits(s, &pos, 2, &min) ||
        s[pos++] != ':' || timefmt_digits(s, &pos, 2, &sec))
        return IOT_EINVAL;

    if (year < 1 || mon < 1 || mon > 12 || day < 1 || day > days_in_month(year, mon))
        return IOT_EINVAL;
    if (hour > 23 || min > 59 || sec > 59) return IOT_EINVAL;

    if (s[pos] == '.') {
        size_t start = ++pos;
        while (pos < len && s[pos] >= '0' && s[pos] <= '9') {
            size_t k = pos - start;
            if (k < 3)
                frac_ms = frac_ms * 10 + (s[pos] - '0');
            else if (k == 3 && s[pos] >= '5')
                frac_ms++; /* half-up; later digits cannot change it */
            pos++;
        }
        if (pos == start) return IOT_EINVAL;
        for (size_t k = pos - start; k < 3; k++)
            frac_ms *= 10;
    }

    if (pos >= len) return IOT_EINVAL;
    if (s[pos] == 'Z' || s[pos] == 'z') {
        pos++;
    } else if (s[pos] == '+' || s[pos] == '-') {
        int sign = s[pos++] == '-' ? -1 : 1;
        int oh, om;
        if (len - pos < 5 || timefmt_digits(s, &pos, 2, &oh) || s[pos++] != ':' ||
            timefmt_digits(s, &pos, 2, &om))
            return IOT_EINVAL;
        if (oh > 23 || om > 59) return IOT_EINVAL;
        off_min = sign * (oh * 60 + om);
    } else {
        return IOT_EINVAL;
    }
    if (pos != len) return IOT_EINVAL;

    int64_t ms = timefmt_days_from_civil(year, mon, day) * MS_PER_DAY +
                 ((int64_t)hour * 3600 + min * 60 + sec) * 1000 + frac_ms -
                 (int64_t)off_min * 60000;
    if (ms < TIMEFMT_MIN_MS || ms > TIMEFMT_MAX_MS) return IOT_EINVAL;
    *out_ms = ms;
    return 0;
}

/*
 * The range test runs on the double before any conversion to an integer (a
 * conversion out of range would be undefined); the comparison is false for
 * NaN. Rounding is floor(x) plus one when the remainder is >= 0.5: the
 * subtraction x - floor(x) is exact, unlike floor(x + 0.5), which misrounds
 * 0.49999999999999994. Decimal ties such as 1.0005 are not exact in binary, so
 * they round by the double's value.
 */
int timefmt_from_epoch_s(double secs, int64_t *out_ms)
{
    if (!out_ms) return IOT_EINVAL;
    double x = secs * 1000.0;
    if (!(x > (double)TIMEFMT_MIN_MS - 1.0 && x < (double)TIMEFMT_MAX_MS + 1.0)) return IOT_EINVAL;
    double f = floor(x);
    int64_t ms = (int64_t)f + (x - f >= 0.5);
    if (ms < TIMEFMT_MIN_MS || ms > TIMEFMT_MAX_MS) return IOT_EINVAL;
    *out_ms = ms;
    return 0;
}

static char *put_digits(char *p, int64_t v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + width;
}

/*
 * Any int64 is accepted. Years outside 0000..9999 (which the parsers never
 * produce) are written with as many digits as needed and a leading '-' when
 * negative; that is no longer RFC 3339 but stays within the buffer (the
 * longest, for INT64_MIN, is 30 characters plus the NUL).
 */
void timefmt_format_rfc3339(int64_t ms, char out[TIMEFMT_RFC3339_LEN])
{
    int64_t days = ms / MS_PER_DAY;
    int64_t rem = ms % MS_PER_DAY;
    if (rem < 0) {
        rem += MS_PER_DAY;
        days--;
    }
    int64_t year;
    int mon, day;
    timefmt_civil_from_days(days, &year, &mon, &day);

    char *p = out;
    int64_t ay = year;
    if (year < 0) {
        *p++ = '-';
        ay = -year;
    }
    int width = 4;
    for (int64_t t = ay / 10000; t > 0; t /= 10)
        width++;
    p = put_digits(p, ay, width);
    *p++ = '-';
    p = put_digits(p, mon, 2);
    *p++ = '-';
    p = put_digits(p, day, 2);
    *p++ = 'T';
    p = put_digits(p, rem / 3600000, 2);
    *p++ = ':';
    p = put_digits(p, rem / 60000 % 60, 2);
    *p++ = ':';
    p = put_digits(p, rem / 1000 % 60, 2);
    *p++ = '.';
    p = put_digits(p, rem % 1000, 3);
    *p++ = 'Z';
    *p = '\0';
}
