/**
 * Short-lived buffers of a few KiB cut from shared slabs. Node's own pool serves only
 * allocations up to 4 KiB; a message of a few KiB copied in one piece would otherwise cost an
 * ArrayBuffer of its own, which is most of the allocation time of a small delivery. A slab stays
 * in memory until its last piece is dropped, so pieces are for data on its way through (a
 * message being checked or written), never for what is kept.
 */
const SLAB_SIZE = 256 * 1024;
const LARGEST_PIECE = 32 * 1024;
let slab = Buffer.alloc(0);
let used = 0;

/** An uninitialized buffer of `size` bytes: the caller fills all of it before reading any. */
export function scratchBuffer(size: number): Buffer {
  if (size > LARGEST_PIECE) return Buffer.allocUnsafe(size);
  if (used + size > slab.length) {
    slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
    used = 0;
  }
  const piece = slab.subarray(used, used + size);
  used += (size + 7) & ~7;
  return piece;
}

/** The chunks in one buffer (the chunk itself when there is one). */
export function joinChunks(chunks: Buffer[], size: number): Buffer {
  if (chunks.length === 1 && chunks[0]!.length === size) return chunks[0]!;
  const out = scratchBuffer(size);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}
