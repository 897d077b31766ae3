// The one error type of vsys: a stable `code` for programs, a message for people.
// OS failures also carry the syscall, errno and path they concern (as Node's own errors do).

export type ErrorCode =
  | 'USAGE'
  | 'UNSUPPORTED_HOST'
  | 'NATIVE_UNAVAILABLE'
  | 'NATIVE_CALL_FAILED'
  | 'VDSO_NOT_FOUND'
  | 'VDSO_MALFORMED'
  | 'PROC_READ_FAILED'
  | 'CHILD_FAILED'
  | 'PERF_NO_PERMISSION'
  | 'PERF_UNAVAILABLE'
  | 'BPF_UNAVAILABLE'
  | 'ELF_BAD_MAGIC'
  | 'ELF_UNSUPPORTED'
  | 'ELF_TRUNCATED'
  | 'ELF_BAD_OFFSET'
  | 'ELF_BAD_COUNT'
  | 'ELF_MALFORMED'
  | 'ELF_BAD_VERSIONS'
  | 'ELF_PATCH_REFUSED'
  | 'FIX_VERIFY_FAILED'
  | 'NUMBER_UNSAFE'
  | 'IO_FAILED'
  | 'X86_ENCODE_FAILED'
  | 'BENCH_FAILED'
  | 'FILE_TOO_LARGE'
  | 'FILE_NOT_FOUND'
  | 'INTERNAL_ERROR'
  | 'IMAGE_TOO_LARGE'
  | 'IMAGE_BAD_LAYER'
  | 'IMAGE_BAD_PATH'
  | 'IMAGE_BAD_MANIFEST'
  | 'IMAGE_COMPRESSED_ARCHIVE'
  | 'FILE_SYMLINK_LOOP'
  | 'LIBRARY_NOT_FOUND'
  | 'IMAGE_MISSING_BLOB'
  | 'IMAGE_DIGEST_MISMATCH'
  | 'RUN_FAILED'
  | 'IMAGE_SIZE_MISMATCH'
  | 'IMAGE_DUPLICATE_MEMBER'
  | 'IMAGE_NO_PLATFORM'
  | 'IMAGE_BAD_DIGEST'
  | 'IMAGE_UNSUPPORTED_DIGEST'
  | 'IMAGE_BLOB_OUTSIDE'
  | 'IMAGE_BLOB_NOT_FILE'
  | 'HASH_CANCELLED'
  | 'REGISTRY_AUTH'
  | 'REGISTRY_FAILED'
  | 'REGISTRY_INSECURE'
  | 'REGISTRY_NO_CATALOG'
  | 'SCAN_STATE_BAD'
  | 'SCAN_STATE_LOCKED';

export interface VsysErrorDetails {
  syscall?: string;
  errno?: number;
  path?: string;
  cause?: unknown;
}

export class VsysError extends Error {
  readonly code: ErrorCode;
  readonly syscall?: string;
  readonly errno?: number;
  readonly path?: string;

  constructor(code: ErrorCode, message: string, details: VsysErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'VsysError';
    this.code = code;
    if (details.syscall !== undefined) this.syscall = details.syscall;
    if (details.errno !== undefined) this.errno = details.errno;
    if (details.path !== undefined) this.path = details.path;
  }

  toJSON(): Record<string, unknown> {
    const out: Record<string, unknown> = { code: this.code, message: this.message };
    if (this.syscall !== undefined) out.syscall = this.syscall;
    if (this.errno !== undefined) out.errno = this.errno;
    if (this.path !== undefined) out.path = this.path;
    return out;
  }
}

export function isVsysError(e: unknown): e is VsysError {
  return e instanceof VsysError;
}

/** A one-line description of any thrown value, for "unavailable: reason" lines. */
export function describeError(e: unknown): string {
  if (e instanceof VsysError) return `${e.code}: ${e.message}`;
  if (e instanceof Error) return e.message;
  return String(e);
}
