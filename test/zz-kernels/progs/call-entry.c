/* Calls one vsyscall entry directly, as glibc <= 2.13 does: argv[1] = gettimeofday | time | getcpu | misaligned.
 * Built with -DONLY=0..3 it holds the code of that one entry only, so vsys scan's per-file verdict
 * speaks for exactly what the program does. */
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

int main(int argc, char **argv) {
    const char *which = argc > 1 ? argv[1] : "time";
    if (0) {
#if !defined(ONLY) || ONLY == 0
    } else if (!strcmp(which, "gettimeofday")) {
        struct timeval tv;
        long (*f)(struct timeval *, void *) = (void *)0xffffffffff600000UL;
        long r = f(&tv, 0);
        printf("gettimeofday %ld %ld\n", r, (long)tv.tv_sec);
#endif
#if !defined(ONLY) || ONLY == 1
    } else if (!strcmp(which, "time")) {
        long (*f)(long *) = (void *)0xffffffffff600400UL;
        printf("time %ld\n", f(0));
#endif
#if !defined(ONLY) || ONLY == 2
    } else if (!strcmp(which, "getcpu")) {
        unsigned cpu = 99, node = 99;
        long (*f)(unsigned *, unsigned *, void *) = (void *)0xffffffffff600800UL;
        long r = f(&cpu, &node, 0);
        printf("getcpu %ld %u %u\n", r, cpu, node);
#endif
#if !defined(ONLY) || ONLY == 3
    } else if (!strcmp(which, "misaligned")) {
        long (*f)(long *) = (void *)0xffffffffff600410UL;
        printf("misaligned %ld\n", f(0));
#endif
    } else {
        return 2;
    }
    return 0;
}
