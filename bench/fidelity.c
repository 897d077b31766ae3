/* The reference for bench/fidelity.mjs: the same paths vsys measures, as a C programmer would
 * write them, built with gcc -O2. Prints "id min_ns" per path: min over R repeats of N calls. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/time.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <dlfcn.h>

static double now(void) {
  struct timespec ts;
  syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static long raw_syscall2(long nr, long a, long b) {
  long ret;
  __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b) : "rcx", "r11", "memory");
  return ret;
}

static long raw_syscall3(long nr, long a, long b, long c) {
  long ret;
  __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
  return ret;
}

static long int80_getpid(void) {
  long ret;
  __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory");
  return ret;
}

typedef long (*vtime_fn)(long *);
typedef long (*vgtod_fn)(struct timeval *, void *);

#define BENCH(id, call)                                                   \
  do {                                                                    \
    double best = 1e18;                                                   \
    for (int r = 0; r < R + 1; r++) {                                     \
      double t0 = now();                                                  \
      for (long i = 0; i < N; i++) { call; __asm__ volatile("" ::: "memory"); } \
      double dt = (now() - t0) / N;                                       \
      if (r > 0 && dt < best) best = dt; /* r = 0 is the warm-up */      \
    }                                                                     \
    printf("%s %.3f\n", id, best);                                        \
    fflush(stdout);                                                       \
  } while (0)

int main(int argc, char **argv) {
  const char *which = argc > 1 ? argv[1] : "all";
  long scale = argc > 2 ? atol(argv[2]) : 1;
  int R = argc > 3 ? atoi(argv[3]) : 7;
  struct timespec ts;
  struct timeval tv;
  unsigned cpu, node;
  int all = strcmp(which, "all") == 0;
  long N;
  N = 2000000 * scale;
  if (all || !strcmp(which, "libc")) {
    /* Through pointers from dlsym, as vsys calls them (a direct `call *reg`, no PLT stub). */
    long (*volatile tfn)(long *) = (long (*)(long *))dlsym(RTLD_DEFAULT, "time");
    int (*volatile gfn)(struct timeval *, void *) = (int (*)(struct timeval *, void *))dlsym(RTLD_DEFAULT, "gettimeofday");
    int (*volatile cfn)(int, struct timespec *) = (int (*)(int, struct timespec *))dlsym(RTLD_DEFAULT, "clock_gettime");
    int (*volatile sfn)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "sched_getcpu");
    long (*t)(long *) = tfn;
    int (*g)(struct timeval *, void *) = gfn;
    int (*c)(int, struct timespec *) = cfn;
    int (*s)(void) = sfn;
    BENCH("libc-time", t(NULL));
    BENCH("libc-gettimeofday", g(&tv, NULL));
    BENCH("libc-clock_gettime", c(CLOCK_REALTIME, &ts));
    BENCH("libc-clock_gettime-monotonic", c(CLOCK_MONOTONIC, &ts));
    BENCH("libc-sched_getcpu", s());
  }
  N = 100000 * scale;
  if (all || !strcmp(which, "syscall")) {
    BENCH("syscall-getpid", raw_syscall2(SYS_getpid, 0, 0));
    BENCH("syscall-gettimeofday", raw_syscall2(SYS_gettimeofday, (long)&tv, 0));
    BENCH("syscall-clock_gettime", raw_syscall2(SYS_clock_gettime, CLOCK_REALTIME, (long)&ts));
    BENCH("syscall-clock_gettime-monotonic", raw_syscall2(SYS_clock_gettime, CLOCK_MONOTONIC, (long)&ts));
    BENCH("syscall-getcpu", raw_syscall3(SYS_getcpu, (long)&cpu, (long)&node, 0));
  }
  N = 40000 * scale;
  if (!strcmp(which, "vsyscall")) {
    vtime_fn vt = (vtime_fn)0xffffffffff600400UL;
    vgtod_fn vg = (vgtod_fn)0xffffffffff600000UL;
    BENCH("vsyscall-time", vt(NULL));
    BENCH("vsyscall-gettimeofday", vg(&tv, NULL));
  }
  N = 10000 * scale;
  if (!strcmp(which, "int80")) BENCH("int80-64-getpid", int80_getpid());
  return 0;
}
