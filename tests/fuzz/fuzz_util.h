/*
 * Shared by the libFuzzer harnesses of tests/fuzz/: the check macro that
 * turns a broken invariant into a crash libFuzzer records (with the input
 * that caused it), and a NUL-terminated copy of the input for the APIs that
 * take C strings.
 */
#ifndef IOT_FUZZ_UTIL_H
#define IOT_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * An invariant that must hold for every input; abort() makes libFuzzer keep
 * the input. Written to fd 2 directly: a harness may point the stderr FILE
 * (the gateway's log) at /dev/null.
 */
#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            dprintf(2, "\nFUZZ_CHECK failed at %s:%d: %s\n  ", __FILE__, __LINE__, #cond);         \
            dprintf(2, __VA_ARGS__);                                                               \
            dprintf(2, "\n");                                                                      \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A malloc'ed, NUL-terminated copy of data[0..n) (caller frees); NULL on OOM. */
static inline char *fuzz_cstr(const uint8_t *data, size_t n)
{
    char *s = malloc(n + 1);
    if (!s) return NULL;
    if (n) memcpy(s, data, n);
    s[n] = '\0';
    return s;
}

#endif
