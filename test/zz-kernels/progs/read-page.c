/* Reads one byte of the vsyscall page as data (works only in emulate/native mode). */
#include <stdio.h>

int main(void) {
    volatile unsigned char *p = (volatile unsigned char *)0xffffffffff600000UL;
    printf("read 0x%02x\n", p[0]);
    return 0;
}
