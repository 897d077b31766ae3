// The published measurements vsys reproduces, each with its source (../shared/seeds/).
// These are reference data for comparison only; vsys never reports them as this host's figures.
// Users see a source by its `cite` (article and year), never by its seed number.

export interface SeedSource {
  readonly seed: string;
  /** How a user-facing text names the source: the article and year. */
  readonly cite: string;
  readonly title: string;
  readonly setup: string;
}

export const SEEDS = {
  s000: {
    seed: '000',
    cite: 'AppNexus engineering blog, 2014',
    title: 'AppNexus complex event processor: time() page faults',
    setup: 'CentOS 5 glibc 2.5 on Linux 3.8, x86-64',
  },
  s001: {
    seed: '001',
    cite: '"Linux syscall, vsyscall, and vDSO… Oh My!" (blog, 2011)',
    title: 'gettimeofday from vsyscall to vDSO',
    setup: 'Linux 2.6.18 (vsyscall) vs 2.6.33 (vDSO)',
  },
  s002: {
    seed: '002',
    cite: 'blog post "Linux\'s vsyscall"',
    title: "glibc's time() and the vsyscall page",
    setup: 'glibc source reading',
  },
  s003: {
    seed: '003',
    cite: 'Sysdig blog, 2018',
    title: 'sysdig: vsyscall emulation and old containers (redis:2.8.22)',
    setup: 'Ubuntu 17.04 on AWS, a time() loop',
  },
  s004: {
    seed: '004',
    cite: 'Habr, 2018',
    title: 'System call paths on x86 compared (gettimeofday)',
    setup: '2015 laptop, Intel, gettimeofday per path, min of runs',
  },
} as const satisfies Record<string, SeedSource>;

/** Path identifiers shared by the bench, the seeds' table and the reports. */
export type PathFamily =
  | 'int80'
  | 'sysenter'
  | 'syscall'
  | 'vsyscall-emulated'
  | 'vsyscall-native'
  | 'vdso'
  | 'vdso32';

export interface Seed004Row {
  readonly path: PathFamily;
  readonly label: string;
  readonly nsKptiOn: number;
  readonly nsKptiOff: number;
}

/** Seed 004: gettimeofday through each path, ns per call, with KPTI on and off (pti=off). */
export const SEED004_TABLE: readonly Seed004Row[] = [
  { path: 'int80', label: 'int 0x80', nsKptiOn: 498, nsKptiOff: 317 },
  { path: 'sysenter', label: 'sysenter', nsKptiOn: 338, nsKptiOff: 150 },
  { path: 'syscall', label: 'syscall', nsKptiOn: 278, nsKptiOff: 103 },
  { path: 'vsyscall-emulated', label: 'vsyscall, emulated', nsKptiOn: 692, nsKptiOff: 496 },
  { path: 'vsyscall-native', label: 'vsyscall, native', nsKptiOn: 278, nsKptiOff: 103 },
  { path: 'vdso', label: 'vDSO', nsKptiOn: 37, nsKptiOff: 37 },
  { path: 'vdso32', label: 'vDSO-32', nsKptiOn: 51, nsKptiOff: 51 },
];

/** Seed 003: throughput of a time() loop, calls per second. */
export const SEED003_RATES = {
  vdso: 266.77e6,
  'vsyscall-native': 8.4e6,
  'vsyscall-emulated': 1.4e6,
} as const satisfies Partial<Record<PathFamily, number>>;

/** Seed 000: 10,000,000 time(NULL) calls, wall seconds. */
export const SEED000_CEP = {
  calls: 10_000_000,
  seconds: { 'vsyscall-emulated': 6.415, vdso: 0.041 },
} as const;

/** Seed 001: gettimeofday cost, ns, before and after the vDSO. */
export const SEED001_GETTIMEOFDAY = { 'vsyscall-native': 500, vdso: 20 } as const;

/**
 * The published like-for-like ratio vsys uses for "N× slower than the vDSO" when this host has not
 * been measured, with its source as users see it: for time() seed 003's emulated vsyscall time()
 * loop over its vDSO one (~190×; seed 000 gives ~156×); for gettimeofday seed 004's emulated
 * vsyscall over its vDSO gettimeofday, KPTI on (692 / 37 ≈ 19×). No source measured getcpu: its
 * figure is gettimeofday's, and says so.
 */
export function seedSlowdown(entry: 'time' | 'gettimeofday' | 'getcpu'): { ratio: number; source: string } {
  if (entry === 'time') {
    return { ratio: SEED003_RATES.vdso / SEED003_RATES['vsyscall-emulated'], source: `published: ${SEEDS.s003.cite}, a time() loop on Ubuntu 17.04` };
  }
  const row = SEED004_TABLE.find((r) => r.path === 'vsyscall-emulated');
  const vdso = SEED004_TABLE.find((r) => r.path === 'vdso');
  const what = entry === 'gettimeofday' ? 'gettimeofday' : 'gettimeofday (no published getcpu figure)';
  return { ratio: (row?.nsKptiOn ?? 692) / (vdso?.nsKptiOn ?? 37), source: `published: ${SEEDS.s004.cite}, ${what}, KPTI on` };
}
