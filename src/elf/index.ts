// The ELF reader's public surface: bounds-checked ELF32/ELF64 little-endian parsing (gABI, LSB 5.0).
export { isElf, readElf, findSection, findSectionByType, vaddrToOffset, offsetToVaddr, readInterp, type ElfFile } from './read-elf.js';
export { readSymbols, readVersionDefinitions, readVersionNeeds, formatVersionedName, type SymbolTableName, type VersionDefinition, type VersionNeed } from './symbols.js';
export { readDynamic } from './dynamic.js';
export { readNotes, readBuildId, readAbiTag } from './notes.js';
export { readGoBuildInfo, isGoBinary } from './go-buildinfo.js';
export { readFunctionRanges } from './eh-frame.js';
export { readDebugLink } from './debuglink.js';
export { ByteReader, toSafeNumber } from './bytes.js';
export type * from './types.js';
