// One ELF file, start to end: read, identify, find the page's uses, and for libraries the exported
// functions that reach them. Pure: bytes in, a plain report out; a malformed file gives a report
// with a coded error, never an exception.
import { isElf, readElf, type ElfFile } from '../elf/read-elf.js';
import { readSymbols, visitSymbolNames } from '../elf/symbols.js';
import type { ElfSymbol } from '../elf/types.js';
import { EM, PT, STB, STT } from '../elf/constants.js';
import { isVsysError } from '../errors.js';
import { findCodeSites } from '../x86/call-sites.js';
import { classOfKinds, type FileClass } from '../model/site-kinds.js';
import { entryNameOf } from '../model/vsyscall-page.js';
import { buildFunctionIndex, type FunctionIndex } from './functions.js';
import { findUses, regionsOf, type Finding, type Searched } from './find-uses.js';
import { identify, type Identity } from './identify.js';
import { affectedExports, branchesOf, reachingFunctions, type AffectedExport } from './reach.js';
import { markIndirectSites } from './indirect-sites.js';
import { HoleRead } from '../elf/bytes.js';
import { Imports, packImportBytes, type Symbolic } from './wire.js';
import type { FileReport } from './types.js';

export function classOf(findings: Finding[]): FileClass {
  return classOfKinds(findings.map((f) => f.kind));
}

/** An undefined function (or untyped) symbol: what a file imports. Decided from st_info and st_shndx alone. */
function isImport(info: number, shndx: number): boolean {
  const type = info & 0xf;
  return shndx === 0 && (type === STT.FUNC || type === STT.NOTYPE || type === STT.GNU_IFUNC);
}

function exportsByAddress(dynsym: ElfSymbol[]): Map<number, Symbolic[]> {
  const m = new Map<number, Symbolic[]>();
  for (const s of dynsym) {
    if (s.shndx === 0 || s.bind === STB.LOCAL || (s.type !== STT.FUNC && s.type !== STT.GNU_IFUNC)) continue;
    if (s.value > BigInt(Number.MAX_SAFE_INTEGER)) continue;
    const a = Number(s.value);
    const list = m.get(a) ?? [];
    const e: Symbolic = { name: s.name };
    if (s.version !== undefined) e.version = s.version.name;
    list.push(e);
    m.set(a, list);
  }
  return m;
}

/** A sparse read (sparse-read.ts): the ranges never read, and the regions searched while streaming. */
export interface SparseInput {
  holes: readonly (readonly [number, number])[];
  searched: Searched;
  /**
   * Why the file was not read whole (too large): its findings stand without a whole read, and what
   * needs all of its code (the indirect-site check, the exports reaching a use) is skipped with a warning.
   */
  bounded?: string;
}

/**
 * Analyses one file's bytes. Returns undefined when the bytes are not ELF at all. With `sparse`, a
 * read of a hole throws HoleRead (the caller then reads the file whole).
 */
export function analyseBytes(bytes: Uint8Array, path: string, sparse?: SparseInput): FileReport | undefined {
  if (!isElf(bytes)) return undefined;
  const report: FileReport = { path, size: bytes.length, class: 'clean', findings: [], affectedExports: [], imports: new Imports() };
  if (bigEndian(bytes)) return report; // judged: no x86-64 code (s390x, ppc64, mips, … binaries)
  try {
    const elf = readElf(bytes, path, sparse?.holes, { sectionsOptional: true });
    report.identity = identify(elf);
    const warnings = report.identity.warnings;
    if (elf.sectionError) warnings.push(`section headers not read (${elf.sectionError.code}: ${elf.sectionError.message.replace(`${path}: `, '')}): judged from the program headers, as the kernel loads it`);
    let broken = false;
    const table = <T>(name: '.dynsym' | '.symtab', read: () => T, none: T): T => {
      try {
        return name === '.dynsym' && broken ? none : read();
      } catch (e) {
        if (!isVsysError(e)) throw e;
        warnings.push(`${name}: ${e.code}`);
        if (name === '.dynsym') broken = true; // said once: the whole table is not read again
        return none;
      }
    };
    // The imports are read on their own, packed straight from the string table's bytes (wire.ts):
    // the rest of .dynsym is needed only when there are findings.
    report.imports = new Imports(table('.dynsym', () => packImportBytes(elf.bytes, (add) => visitSymbolNames(elf, '.dynsym', isImport, add)), ''));
    if (elf.header.class !== 64 || elf.header.machine !== EM.X86_64) return report; // the page exists only for x86-64 code
    let symtab: ElfSymbol[] | undefined;
    let dynsym: ElfSymbol[] | undefined;
    let fns: FunctionIndex | undefined;
    const symtabOnce = (): ElfSymbol[] => (symtab ??= table('.symtab', () => readSymbols(elf, '.symtab'), []));
    const dynsymOnce = (): ElfSymbol[] => (dynsym ??= table('.dynsym', () => readSymbols(elf, '.dynsym'), []));
    const functions = (): FunctionIndex => (fns ??= buildFunctionIndex(elf, { dynsym: dynsymOnce(), symtab: symtabOnce() }));
    const dataSymbols = () => (symtabOnce().length > 0 ? symtabOnce() : dynsymOnce());
    const regions = regionsOf(elf);
    warnings.push(...regions.warnings);
    report.findings = findUses(elf, functions, dataSymbols, sparse?.searched, regions, sparse?.bounded === undefined ? undefined : warnings);
    // A sparse read's report with findings is never kept (read-file.ts reads such a file whole):
    // decoding its code for the call graph here would be spent on stale bytes.
    if (sparse && sparse.bounded === undefined && report.findings.length > 0) throw new HoleRead(0);
    if (sparse?.bounded !== undefined) {
      report.class = classOf(report.findings);
      if (report.findings.some((f) => f.kind === 'direct-call')) warnings.push(`${sparse.bounded}: direct calls not checked for being reached only through a pointer (indirect-site check)`);
      if (report.class !== 'clean' && report.class !== 'data-ref' && dynsymOnce().some((s) => s.shndx !== 0 && s.bind !== STB.LOCAL)) warnings.push(`${sparse.bounded}: the exported functions reaching a use are not listed`);
      return report;
    }
    if (elf.sectionError && dynamicallyLinked(elf)) {
      // Its code is searched, but what it imports lives in .dynsym, found through sections: not judged.
      const e = elf.sectionError;
      report.error = { code: e.code, message: `${e.message}; the code its segments map was searched, but its dynamic symbols (what it imports and exports) could not be read` };
      report.class = classOf(report.findings);
      return report;
    }
    const branches = branchesOf(regions);
    if (report.findings.some((f) => f.kind === 'direct-call')) markIndirectSites(report.findings, elf, functions(), regions, branches, dataSymbols);
    report.class = classOf(report.findings);
    if (report.class !== 'clean' && report.class !== 'data-ref' && dynsymOnce().some((s) => s.shndx !== 0 && s.bind !== STB.LOCAL)) {
      const reach = reachingFunctions(report.findings, functions(), regions, branches);
      report.affectedExports = affectedExports(reach, functions(), exportsByAddress(dynsymOnce()));
    }
  } catch (e) {
    if (!isVsysError(e)) throw e;
    report.error = { code: e.code, message: e.message };
    // What the kernel could still map holds page addresses: say so, decoded where they sit (the
    // verdict stays `review`: the file could not be judged as a whole).
    if (report.findings.length === 0 && !sparse) report.findings = rawUses(bytes);
    report.class = classOf(report.findings);
  }
  return report;
}

/** Uses of the page in bytes no ELF reader could place: every candidate decoded as code at its file offset. */
function rawUses(bytes: Uint8Array): Finding[] {
  const region = { bytes, start: 0, end: bytes.length, ip: 0n };
  return findCodeSites(region).map((site) => {
    const f: Finding = { kind: site.kind, use: site.use, entry: entryNameOf(site.target), target: site.target, offset: site.offset, address: site.ip, instruction: site.instruction };
    if (site.useInstruction !== undefined) f.useInstruction = site.useInstruction;
    if (site.useIp !== undefined) f.useAddress = site.useIp;
    return f;
  });
}

/** A file the loader links (PT_INTERP or PT_DYNAMIC): what it imports decides its verdict. */
function dynamicallyLinked(elf: ElfFile): boolean {
  return elf.programHeaders.some((p) => p.type === PT.INTERP || p.type === PT.DYNAMIC);
}

/** EI_DATA: an ELF file in big-endian byte order cannot hold x86-64 code, so it cannot use the page. */
function bigEndian(bytes: Uint8Array): boolean {
  return bytes[5] === 2;
}
