/* 32-bit reference for bench/fidelity.mjs (gcc -m32 -O2): int 0x80, __kernel_vsyscall (found via
 * AT_SYSINFO) and the 32-bit vDSO's gettimeofday/clock_gettime through glibc. Prints "id min_ns". */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <sys/time.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <string.h>
#include <elf.h>

/* The 32-bit vDSO's own symbol (glibc's clock_gettime wraps the 64-bit-time variant and converts). */
static void *vdso_sym(const char *name) {
  unsigned long base = getauxval(AT_SYSINFO_EHDR);
  if (!base) return 0;
  Elf32_Ehdr *eh = (Elf32_Ehdr *)base;
  Elf32_Phdr *ph = (Elf32_Phdr *)(base + eh->e_phoff);
  long load = 0;
  Elf32_Dyn *dyn = 0;
  for (int i = 0; i < eh->e_phnum; i++) {
    if (ph[i].p_type == PT_LOAD && !load) load = (long)base + ph[i].p_offset - ph[i].p_vaddr;
    if (ph[i].p_type == PT_DYNAMIC) dyn = (Elf32_Dyn *)(base + ph[i].p_offset);
  }
  if (!dyn) return 0;
  Elf32_Sym *sym = 0; const char *str = 0; Elf32_Word *hash = 0;
  for (; dyn->d_tag != DT_NULL; dyn++) {
    if (dyn->d_tag == DT_SYMTAB) sym = (Elf32_Sym *)(load + dyn->d_un.d_ptr);
    if (dyn->d_tag == DT_STRTAB) str = (const char *)(load + dyn->d_un.d_ptr);
    if (dyn->d_tag == DT_HASH) hash = (Elf32_Word *)(load + dyn->d_un.d_ptr);
  }
  if (!sym || !str || !hash) return 0;
  for (Elf32_Word i = 0; i < hash[1]; i++)
    if (sym[i].st_shndx != SHN_UNDEF && !strcmp(str + sym[i].st_name, name)) return (void *)(load + sym[i].st_value);
  return 0;
}

struct ts32 { long sec, nsec; };

static double now(void) {
  struct timespec ts;
  syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

#define BENCH(id, n, call)                                                 \
  do {                                                                     \
    double best = 1e18;                                                    \
    for (int r = 0; r < 6; r++) {                                          \
      double t0 = now();                                                   \
      for (long i = 0; i < (n); i++) { call; __asm__ volatile("" ::: "memory"); } \
      double dt = (now() - t0) / (n);                                      \
      if (r > 0 && dt < best) best = dt;                                   \
    }                                                                      \
    printf("%s %.3f\n", id, best);                                         \
  } while (0)

int main(void) {
  unsigned long kv = getauxval(AT_SYSINFO);
  struct timeval tv;
  struct timespec ts;
  long ret;
  BENCH("i386-int80", 10000, __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20) : "memory"));
  if (kv) BENCH("i386-kernel-vsyscall", 50000, __asm__ volatile("call *%1" : "=a"(ret) : "r"(kv), "a"(20) : "memory", "ecx", "edx"));
  int (*gtod)(struct timeval *, void *) = (int (*)(struct timeval *, void *))vdso_sym("__vdso_gettimeofday");
  int (*cgt)(int, struct ts32 *) = (int (*)(int, struct ts32 *))vdso_sym("__vdso_clock_gettime");
  struct ts32 t32;
  (void)ts;
  if (gtod) BENCH("i386-vdso32-gettimeofday", 1000000, gtod(&tv, NULL));
  if (cgt) BENCH("i386-vdso32-clock_gettime", 1000000, cgt(CLOCK_MONOTONIC, &t32));
  return 0;
}
