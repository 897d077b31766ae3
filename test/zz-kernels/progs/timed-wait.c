/* Linked against the Gentoo initramfs' own glibc 2.13 (no C runtime of ours: -nostdlib, this is
 * _start): a write lock asked for while this thread holds a read lock, and a semaphore nobody
 * posts, each with a one-second timeout. libpthread-2.13's timed waits hold direct calls of the
 * gettimeofday entry; exit 0 when both time out (ETIMEDOUT), 1 otherwise. */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

__attribute__((force_align_arg_pointer, noreturn)) void _start(void) {
  static pthread_rwlock_t l = PTHREAD_RWLOCK_INITIALIZER;
  sem_t s;
  struct timeval now;
  gettimeofday(&now, 0);
  struct timespec ts = { now.tv_sec + 1, 0 };
  pthread_rwlock_rdlock(&l);
  int a = pthread_rwlock_timedwrlock(&l, &ts);
  sem_init(&s, 0, 0);
  int b = sem_timedwait(&s, &ts);
  _exit(a == ETIMEDOUT && b == -1 && errno == ETIMEDOUT ? 0 : 1);
}
