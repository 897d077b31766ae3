// What an image claims about its blobs, checked against their bytes: a descriptor's size and
// sha256 digest (OCI image-spec descriptor.md) and a layer's diff_id, the sha256 of its
// uncompressed tar (config.md, rootfs.diff_ids). A blob that differs is not the image its manifest
// names: IMAGE_SIZE_MISMATCH or IMAGE_DIGEST_MISMATCH, for that image.
import crypto from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { VsysError } from '../errors.js';

/** What the bytes of a blob turned out to be. */
export interface BlobDigest {
  digest: string;
  bytes: number;
}

/** What a manifest, config or archive says a blob is. */
export interface BlobClaim {
  digest?: string;
  size?: number;
}

export function sha256Of(bytes: Uint8Array): string {
  return `sha256:${crypto.createHash('sha256').update(bytes).digest('hex')}`;
}

const HINT = 'the image is not what its manifest says (corrupted or altered after it was written); --no-verify skips this check';

/** Throws when the bytes are not what was claimed: the size first (it is known before the hash). */
export function checkBlob(what: string, claim: BlobClaim, got: BlobDigest): void {
  if (claim.size !== undefined && claim.size !== got.bytes) {
    throw new VsysError('IMAGE_SIZE_MISMATCH', `${what}: ${got.bytes} bytes where its descriptor says ${claim.size}; ${HINT}`);
  }
  if (claim.digest !== undefined && claim.digest !== got.digest) {
    throw new VsysError('IMAGE_DIGEST_MISMATCH', `${what}: its bytes hash to ${got.digest} where ${claim.digest} is claimed; ${HINT}`);
  }
}

/** A blob still arriving past its declared size: stopped there (a source may send without end). */
export function pastSize(what: string, size: number): VsysError {
  return new VsysError('IMAGE_SIZE_MISMATCH', `${what}: more than the ${size} bytes its descriptor says; stopped there; ${HINT}`);
}

/** A layer's uncompressed bytes against the diff_id its image's config lists for it. */
export function checkDiffId(what: string, diffId: string, got: string): void {
  if (diffId !== got) throw new VsysError('IMAGE_DIGEST_MISMATCH', `${what}: its uncompressed tar hashes to ${got} where the config's diff_id is ${diffId}; ${HINT}`);
}

/**
 * Passes a stream through while hashing and counting it. With a declared size, fails as soon as
 * more bytes arrive (a blob bigger than declared is not read on).
 */
export class DigestStream extends Transform {
  private readonly h = crypto.createHash('sha256');
  bytes = 0;
  private hex: string | undefined;
  constructor(private readonly what: string, private readonly size?: number) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.size !== undefined && this.bytes > this.size) {
      cb(pastSize(this.what, this.size));
      return;
    }
    this.h.update(chunk);
    cb(null, chunk);
  }
  /** The sha256 of everything passed (once the stream has ended). */
  result(): BlobDigest {
    this.hex ??= this.h.digest('hex');
    return { digest: `sha256:${this.hex}`, bytes: this.bytes };
  }
}
