/* Calls the vsyscall page's time entry, then dies of a null pointer: where the call is emulated,
 * the crash that follows is not the page's (the exporter must not count it as one). */
#include <stdio.h>

int main(void) {
    long (*f)(long *) = (void *)0xffffffffff600400UL;
    printf("time %ld\n", f(0));
    fflush(stdout);
    volatile int *p = 0;
    return *p;
}
