// Names the caller of a call of the page that `vsys run` stopped: the file mapped at the return
// address, the address there, and the function and call site a scan of that file finds (the site
// whose call instruction ends at the return address).
import fs from 'node:fs';
import { readElf, offsetToVaddr } from '../elf/read-elf.js';
import { analyseFile } from '../scan/read-file.js';
import type { Finding } from '../scan/find-uses.js';
import { callerOf as describeCaller } from '../scan/find-uses.js';
import type { PageCall } from './supervise.js';

export interface NamedCaller {
  file: string;
  /** The return address as the file's own virtual address (undefined: outside its segments). */
  address?: bigint;
  /** The call site a scan of the file finds there, when one does. */
  site?: Finding;
  /** "time()", "the function at 0x4e1390"; undefined when nothing names it. */
  function?: string;
}

/** Longest call instruction the scanner classifies (call *disp32(%reg), with a prefix): 8 bytes. */
const MAX_CALL_LENGTH = 8;

export function nameCaller(call: PageCall): NamedCaller | undefined {
  if (call.file === undefined || call.fileOffset === undefined) return undefined;
  const out: NamedCaller = { file: call.file };
  let head: Buffer;
  try {
    head = fs.readFileSync(call.file);
  } catch {
    return out;
  }
  let address: bigint | undefined;
  try {
    address = offsetToVaddr(readElf(head, call.file, undefined, { sectionsOptional: true }), call.fileOffset);
  } catch {
    return out;
  }
  if (address === undefined) return out;
  out.address = address;
  const r = analyseFile(call.file);
  if (r.kind !== 'elf') return out;
  const site = r.report.findings.find((f) => {
    const at = f.useAddress ?? f.address;
    return at < address && address - at <= BigInt(MAX_CALL_LENGTH);
  });
  if (site) {
    out.site = site;
    out.function = describeCaller(site);
  }
  return out;
}
