// The only module that loads koffi. Loaded lazily so that commands which need no native code
// (scan, the parsers) work on any host, and a missing or broken koffi becomes a coded error.
import { createRequire } from 'node:module';
import { VsysError } from '../errors.js';

export type Koffi = typeof import('koffi');
export type KoffiLib = ReturnType<Koffi['load']>;

let koffi: Koffi | undefined;
let libc: KoffiLib | undefined;

export function loadKoffi(): Koffi {
  if (koffi) return koffi;
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new VsysError('UNSUPPORTED_HOST', `native code needs Linux on x86-64; this is ${process.platform}/${process.arch}`);
  }
  try {
    koffi = createRequire(import.meta.url)('koffi') as Koffi;
  } catch (e) {
    throw new VsysError('NATIVE_UNAVAILABLE', `cannot load koffi (the FFI module): ${(e as Error).message}; reinstall with npm ci`, { cause: e });
  }
  // koffi sets up its call machinery on the first load(); koffi.call() of a raw pointer before any
  // load() crashes the process. Loading libc here makes every entry point safe.
  loadLibc();
  return koffi;
}

export function loadLibc(): KoffiLib {
  if (libc) return libc;
  if (!koffi) loadKoffi();
  try {
    libc = koffi!.load('libc.so.6');
  } catch (e) {
    throw new VsysError('NATIVE_UNAVAILABLE', `cannot load libc.so.6: ${(e as Error).message} (vsys needs a glibc host for native work)`, { cause: e });
  }
  return libc;
}
