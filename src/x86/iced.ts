// The one place vsys loads iced-x86 (WebAssembly). Everything else in src/x86/ goes through here.
import { createRequire } from 'node:module';

type Iced = typeof import('iced-x86');
let iced: Iced | undefined;

export function loadIced(): Iced {
  if (!iced) iced = createRequire(import.meta.url)('iced-x86') as Iced;
  return iced;
}
