// What an ELF file is: class and machine, program or library, static or dynamic, interpreter,
// DT_NEEDED, the C library and its version (glibc's banner string, the release its libraries are
// named after, or version definitions; musl's loader), the Go toolchain version (build info), build-id.
import type { ElfFile } from '../elf/read-elf.js';
import { readInterp } from '../elf/read-elf.js';
import { readDynamic } from '../elf/dynamic.js';
import { readBuildId } from '../elf/notes.js';
import { readDebugLink } from '../elf/debuglink.js';
import { isGoBinary, readGoBuildInfo } from '../elf/go-buildinfo.js';
import { readVersionDefinitions, readVersionNeeds } from '../elf/symbols.js';
import { ET, SHT } from '../elf/constants.js';
import { isVsysError } from '../errors.js';

export type FileType = 'executable' | 'pie' | 'shared-library' | 'relocatable' | 'core' | 'other';

export interface LibcInfo {
  name: 'glibc' | 'eglibc' | 'musl' | 'uclibc';
  version?: string;
  /**
   * Where the version was read from: glibc's banner (libc itself, static programs); the release in
   * the name of its debug file (`.gnu_debuglink` "libpthread-2.13.so.debug") or of the file itself
   * ("libpthread-2.13.so"); the newest symbol version it defines (a lower bound: libpthread 2.13
   * defines nothing newer than GLIBC_2.12) or needs; musl's loader.
   */
  source: 'banner' | 'debuglink' | 'file-name' | 'version-definitions' | 'version-needs' | 'interpreter';
}

export interface Identity {
  class: 32 | 64;
  machine: string;
  type: FileType;
  linkage: 'static' | 'dynamic';
  interpreter?: string;
  needed: string[];
  soname?: string;
  runpath?: string;
  rpath?: string;
  /** The C library this file is, or the one it was built against. */
  libc?: LibcInfo;
  go?: { version: string; source: string };
  buildId?: string;
  stripped: boolean;
  /** Parts of the file that could not be read (a broken .dynamic, notes…), as codes. */
  warnings: string[];
}

/** The highest e_machine binutils knows (EM_AIECTRLCODE 269, 2024); a few numbers past it are tolerated. */
const MAX_EM = 300;
/** Numbers used before an official one was assigned (alpha, s390, …), still met in old files. */
const LEGACY_EM = new Set([0x1057, 0x1059, 0x2530, 0x3330, 0x4157, 0x4688, 0x4def, 0x5441, 0x8217, 0x9025, 0x9026, 0x9041, 0x9080, 0xa390, 0xabc7, 0xad45, 0xbaab, 0xbeef, 0xdead, 0xf00d, 0xfeb0, 0xfeba, 0xfebb]);

const MACHINES: Record<number, string> = { 3: 'i386', 62: 'x86-64', 40: 'arm', 183: 'aarch64', 243: 'riscv', 8: 'mips', 21: 'ppc64', 22: 's390' };

/** Version names seen, with their keys: a few dozen distinct names recur in every file. */
const GLIBC_KEYS = new Map<string, number>();

/** A GLIBC_x.y[.z] name's order key (numeric: 2.17 > 2.3), or -1 for any other name. */
function glibcKey(name: string): number {
  let key = GLIBC_KEYS.get(name);
  if (key === undefined) {
    const m = /^GLIBC_(\d{1,4})\.(\d{1,4})(?:\.(\d{1,4}))?$/.exec(name);
    key = m ? (Number(m[1]) * 10000 + Number(m[2])) * 10000 + Number(m[3] ?? 0) : -1;
    if (GLIBC_KEYS.size >= 4096) GLIBC_KEYS.clear();
    GLIBC_KEYS.set(name, key);
  }
  return key;
}

/** The highest GLIBC_x.y[.z] among version names, compared numerically (2.17 > 2.3). */
function maxGlibc(names: string[]): string | undefined {
  let best: string | undefined;
  let bestKey = -1;
  for (const n of names) {
    if (!n.startsWith('GLIBC_')) continue;
    const key = glibcKey(n);
    if (key > bestKey) {
      bestKey = key;
      best = n.slice(6);
    }
  }
  return best;
}

const BANNER = Buffer.from('GNU C Library');

/**
 * Where glibc's banner can be: its read-only data sections (it is a `static const char[]`), or the
 * whole file when it has no section headers or no such section.
 */
function bannerRanges(elf: ElfFile): [number, number][] {
  const ro = elf.sections.filter((s) => s.type === SHT.PROGBITS && s.name.startsWith('.rodata') && s.size > 0 && elf.reader.has(s.offset, s.size));
  return ro.length > 0 ? ro.map((s) => [s.offset, s.offset + s.size]) : [[0, elf.bytes.byteLength]];
}

/**
 * The parts of `ranges` that hold file bytes. A sparse read (scan/sparse-read.ts) of a file too
 * large to read whole keeps the banner where its search found it; any other sparse read of a file
 * that has a banner (libc, static) is read whole before its identity is kept (read-file.ts).
 */
function readRanges(elf: ElfFile, ranges: [number, number][]): [number, number][] {
  const holes = elf.reader.holes;
  if (holes.length === 0) return ranges;
  const out: [number, number][] = [];
  for (const [start, end] of ranges) {
    let at = start;
    for (const [s, e] of holes) {
      if (e <= at || s >= end) continue;
      if (s > at) out.push([at, s]);
      at = Math.max(at, e);
    }
    if (at < end) out.push([at, end]);
  }
  return out;
}

/** glibc's banner: "GNU C Library (Debian EGLIBC 2.13-38) stable release version 2.13, by …". */
function readBanner(elf: ElfFile): LibcInfo | undefined {
  const bytes = elf.bytes;
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = -1;
  for (const [start, end] of readRanges(elf, bannerRanges(elf))) {
    const i = buf.subarray(0, end).indexOf(BANNER, start);
    if (i >= 0) {
      at = i;
      break;
    }
  }
  if (at < 0) return undefined;
  const text = buf.subarray(at, Math.min(buf.length, at + 200)).toString('latin1').split('\0')[0] ?? '';
  const m = /version (\d+\.\d+(?:\.\d+)?)/.exec(text);
  const info: LibcInfo = { name: /EGLIBC/.test(text) ? 'eglibc' : 'glibc', source: 'banner' };
  if (m?.[1]) info.version = m[1];
  return info;
}

/** glibc's libraries by soname: libc itself, its loader and the libraries built with it. */
const GLIBC_PART = /^(libc|libpthread|librt|libm|libdl|libutil|libnsl|libresolv|libcrypt|libanl|libthread_db|libBrokenLocale|libcidn|libmvec|libnss_\w+|ld-linux[\w-]*)\.so/;

/** The names glibc (before 2.34) installs its libraries and their debug files under: libpthread-2.13.so(.debug), ld-2.13.so. */
const RELEASE_NAME = /^(ld|lib\w+)-(\d{1,4}\.\d{1,4}(?:\.\d{1,4})?)\.so(?:\.debug)?$/;

/**
 * The glibc release in `name` when it is the release name of the library `soname` is the soname of
 * (libpthread-2.13.so for libpthread.so.0, ld-2.13.so for ld-linux-x86-64.so.2), and no older than
 * the symbol versions the file defines (`defined`): a renamed or unrelated file gives nothing.
 */
function releaseIn(name: string | undefined, soname: string, defined: string | undefined): string | undefined {
  const m = name === undefined ? null : RELEASE_NAME.exec(name.slice(name.lastIndexOf('/') + 1));
  if (!m?.[1] || !m[2]) return undefined;
  const lib = soname.slice(0, soname.indexOf('.so'));
  if (m[1] !== lib && !(m[1] === 'ld' && lib.startsWith('ld-linux'))) return undefined;
  if (defined !== undefined && glibcKey(`GLIBC_${m[2]}`) < glibcKey(`GLIBC_${defined}`)) return undefined;
  return m[2];
}

function safe<T>(warnings: string[], what: string, fn: () => T): T | undefined {
  try {
    return fn();
  } catch (e) {
    if (!isVsysError(e)) throw e;
    warnings.push(`${what}: ${e.code}`);
    return undefined;
  }
}

export function identify(elf: ElfFile): Identity {
  const h = elf.header;
  const warnings: string[] = [];
  // EM_NONE, or a number past the highest the ELF registry assigns (a corrupt header): said, not trusted.
  if (h.machine === 0 || (h.machine > MAX_EM && !LEGACY_EM.has(h.machine))) warnings.push(`e_machine ${h.machine} is not a valid machine (corrupt header?)`);
  const interpreter = safe(warnings, 'PT_INTERP', () => readInterp(elf));
  const dyn = safe(warnings, 'dynamic section', () => readDynamic(elf));
  const type: FileType =
    h.type === ET.EXEC ? 'executable'
    : h.type === ET.DYN ? (dyn?.soname !== undefined || interpreter === undefined ? 'shared-library' : 'pie')
    : h.type === ET.REL ? 'relocatable'
    : h.type === ET.CORE ? 'core'
    : 'other';
  const id: Identity = {
    class: h.class,
    machine: MACHINES[h.machine] ?? `machine ${h.machine}`,
    type,
    linkage: interpreter !== undefined || (dyn?.needed.length ?? 0) > 0 ? 'dynamic' : 'static',
    needed: dyn?.needed ?? [],
    stripped: !elf.sections.some((s) => s.name === '.symtab'),
    warnings,
  };
  if (interpreter !== undefined) id.interpreter = interpreter;
  if (dyn?.soname !== undefined) id.soname = dyn.soname;
  if (dyn?.runpath !== undefined) id.runpath = dyn.runpath;
  if (dyn?.rpath !== undefined) id.rpath = dyn.rpath;
  const buildId = safe(warnings, 'build-id note', () => readBuildId(elf));
  if (buildId !== undefined) id.buildId = buildId;

  // glibc's banner is in libc itself and in static programs (a static PIE has no soname); a search
  // of every other file, a data-only library such as libicudata (31 MB) among them, is wasted.
  const banner = (id.linkage === 'static' && id.soname === undefined) || /^libc[.-]/.test(id.soname ?? '') ? readBanner(elf) : undefined;
  const defs = safe(warnings, 'version definitions', () => readVersionDefinitions(elf)) ?? [];
  const defined = maxGlibc(defs.map((d) => d.name));
  const part = id.soname !== undefined && GLIBC_PART.test(id.soname) ? id.soname : undefined;
  const link = part === undefined || banner?.version !== undefined ? undefined : safe(warnings, '.gnu_debuglink', () => readDebugLink(elf));
  const named = part === undefined ? undefined : releaseIn(link, part, defined) ?? releaseIn(elf.path, part, defined);
  if (banner?.version !== undefined && /^libc[.-]/.test(id.soname ?? 'libc.')) id.libc = banner;
  else if (named !== undefined) {
    // The banner is libc's alone; its other libraries carry their release in their names.
    id.libc = { name: banner?.name ?? 'glibc', version: named, source: releaseIn(link, part as string, defined) !== undefined ? 'debuglink' : 'file-name' };
  } else if (banner && /^libc[.-]/.test(id.soname ?? 'libc.')) id.libc = defined ? { ...banner, version: defined, source: 'version-definitions' } : banner;
  else if (defined && part !== undefined) id.libc = { name: 'glibc', version: defined, source: 'version-definitions' };
  else if (interpreter?.includes('ld-musl') || id.soname?.startsWith('libc.musl')) id.libc = { name: 'musl', source: 'interpreter' };
  else {
    const needs = safe(warnings, 'version needs', () => readVersionNeeds(elf)) ?? [];
    const glibcNeeds = needs.filter((n) => /^libc\.so|^ld-linux/.test(n.file)).flatMap((n) => n.versions.map((v) => v.name));
    const min = maxGlibc(glibcNeeds);
    if (min) id.libc = { name: 'glibc', version: min, source: 'version-needs' };
    else if (banner) id.libc = banner;
  }
  if (safe(warnings, 'Go detection', () => isGoBinary(elf))) {
    const go = safe(warnings, 'Go build info', () => readGoBuildInfo(elf));
    if (go) id.go = { version: go.version, source: (go as { source?: string }).source ?? 'buildinfo' };
  }
  return id;
}

/** A program one can run (an executable or a PIE), as opposed to a library or an object file. */
export function isProgram(id: Identity | undefined): boolean {
  return id?.type === 'executable' || id?.type === 'pie';
}

/** "glibc 2.13 (banner)", "built against glibc ≥ 2.14", "Go go1.12.9", … for text output. */
export function describeIdentity(id: Identity): string {
  const parts: string[] = [];
  parts.push(id.type === 'shared-library' ? 'shared library' : `${id.linkage} ${id.type === 'pie' ? 'PIE executable' : id.type}`);
  if (id.class === 32 || id.machine !== 'x86-64') parts.push(`${id.machine}, ${id.class}-bit`);
  if (id.libc) {
    const v = id.libc.version ? ` ${id.libc.version}` : '';
    // Versions needed or defined are lower bounds: the release can be newer.
    parts.push(id.libc.source === 'version-needs' ? `needs glibc ≥${v}` : id.libc.source === 'version-definitions' ? `${id.libc.name} ≥${v}` : `${id.libc.name}${v}`);
  }
  if (id.go) parts.push(`Go ${id.go.version.replace(/^go/, '')}`);
  if (id.stripped) parts.push('stripped');
  return parts.join(', ');
}
