/* A modern program: time() through this libc (the vDSO). Runs in every mode. */
#include <stdio.h>
#include <time.h>

int main(void) {
    printf("time %ld\n", (long)time(NULL));
    return 0;
}
