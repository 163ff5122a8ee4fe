/**
 * Controller state in SharedArrayBuffers (docs/architecture.md, decision 1).
 *
 * Every controller model keeps its state as 32-bit words in an `Int32Array` over a
 * SharedArrayBuffer, with a layout written down in the file that owns it. Words 0 and 1 are the
 * controller's lock (`LOCK_WORDS`); the rest is the model's. A class is a view over that memory,
 * so any thread that holds the buffer can build its own view.
 *
 * This file provides what every model shares: allocation, the lock, and the snapshot codec
 * (versioned bytes with a checksum, validated before anything is changed).
 */

import { ErrorCode, IrqChipError } from './errors.ts';
import { threadMayBlock } from './thread.ts';

/** Index of the lock word: 0 = free, 1 = held. */
const LOCK_STATE = 0;
/** Index of the count of threads sleeping on the lock, so unlock notifies only when someone waits. */
const LOCK_WAITERS = 1;
/** Words reserved for the lock at the start of every state buffer. */
export const LOCK_WORDS = 2;

/** Spins this many times before sleeping (a thread that may not block keeps spinning). */
const SPINS_BEFORE_SLEEP = 64;

/** Allocates the state words of a controller: `LOCK_WORDS` lock words followed by `modelWords`. */
export function allocateStateWords(modelWords: number): Int32Array {
  return new Int32Array(new SharedArrayBuffer((LOCK_WORDS + modelWords) * Int32Array.BYTES_PER_ELEMENT));
}

/**
 * Takes the controller lock if it is free, without waiting: one compare-exchange. Returns whether
 * it was taken; if so, release it with `releaseLock`. For paths that must not wait behind another
 * thread and defer their work instead.
 */
export function tryAcquireLock(words: Int32Array): boolean {
  return Atomics.compareExchange(words, LOCK_STATE, 0, 1) === 0;
}

/** Takes the controller lock. Hold it only for short, non-reentrant sections. */
export function acquireLock(words: Int32Array): void {
  for (let spin = 0; ; spin++) {
    if (tryAcquireLock(words)) return;
    if (spin >= SPINS_BEFORE_SLEEP && threadMayBlock) {
      Atomics.add(words, LOCK_WAITERS, 1);
      Atomics.wait(words, LOCK_STATE, 1, 1);
      Atomics.sub(words, LOCK_WAITERS, 1);
    }
  }
}

export function releaseLock(words: Int32Array): void {
  Atomics.store(words, LOCK_STATE, 0);
  if (Atomics.load(words, LOCK_WAITERS) !== 0) Atomics.notify(words, LOCK_STATE, 1);
}

/** Runs `body` with the lock held. */
export function withLock<T>(words: Int32Array, body: () => T): T {
  acquireLock(words);
  try {
    return body();
  } finally {
    releaseLock(words);
  }
}

// ---------------------------------------------------------------------------------------------
// Snapshots
//
// Layout (little-endian):
//   0  u32 magic 'IRQS'
//   4  u32 kind: four ASCII characters naming the controller ('PIC2', 'IOAP', 'LAPC', ...)
//   8  u32 layout version of that controller
//  12  u32 payload word count
//  16  payload: the model words (the lock words are not saved)
//  16+4n u32 CRC-32 of bytes [0, 16+4n)
// ---------------------------------------------------------------------------------------------

/** 'IRQS' read as a little-endian u32; also the magic of containers of snapshots (the chip's). */
export const SNAPSHOT_MAGIC = 0x53515249;
const SNAPSHOT_HEADER_BYTES = 16;
const SNAPSHOT_WORD_COUNT_OFFSET = 12;
const SNAPSHOT_CHECKSUM_BYTES = 4;

const CRC32_TABLE: Uint32Array = (() => {
  const table = new Uint32Array(256);
  for (let byte = 0; byte < 256; byte++) {
    let crc = byte;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? 0xedb88320 ^ (crc >>> 1) : crc >>> 1;
    table[byte] = crc >>> 0;
  }
  return table;
})();

/** CRC-32 (IEEE 802.3 polynomial, as zlib computes it). */
export function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) crc = (CRC32_TABLE[(crc ^ byte) & 0xff] ?? 0) ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** A snapshot kind's four ASCII characters as the u32 its header holds. EINVAL for another string. */
export function snapshotKindCode(kind: string): number {
  if (!/^[\x20-\x7e]{4}$/.test(kind)) throw new IrqChipError(ErrorCode.EINVAL, `snapshot kind must be 4 ASCII characters, got '${kind}'`);
  return kind.charCodeAt(0) | (kind.charCodeAt(1) << 8) | (kind.charCodeAt(2) << 16) | (kind.charCodeAt(3) << 24);
}

/** Encodes a controller's model words (everything after the lock) as versioned snapshot bytes. */
export function encodeSnapshot(kind: string, version: number, words: Int32Array): Uint8Array {
  const payloadWords = words.length - LOCK_WORDS;
  const bytes = new Uint8Array(SNAPSHOT_HEADER_BYTES + payloadWords * 4 + SNAPSHOT_CHECKSUM_BYTES);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, SNAPSHOT_MAGIC, true);
  view.setUint32(4, snapshotKindCode(kind) >>> 0, true);
  view.setUint32(8, version, true);
  view.setUint32(SNAPSHOT_WORD_COUNT_OFFSET, payloadWords, true);
  for (let i = 0; i < payloadWords; i++) {
    view.setInt32(SNAPSHOT_HEADER_BYTES + i * 4, Atomics.load(words, LOCK_WORDS + i), true);
  }
  const checksumAt = SNAPSHOT_HEADER_BYTES + payloadWords * 4;
  view.setUint32(checksumAt, crc32(bytes.subarray(0, checksumAt)), true);
  return bytes;
}

/**
 * The payload word count a snapshot's header declares, for a reader that learns the size from the
 * bytes (`decodeSnapshot` then checks it against the length); undefined when there is no whole header.
 */
export function declaredSnapshotWords(bytes: Uint8Array): number | undefined {
  if (bytes.length < SNAPSHOT_HEADER_BYTES) return undefined;
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(SNAPSHOT_WORD_COUNT_OFFSET, true);
}

/**
 * Validates snapshot bytes against what the caller expects and returns the payload words.
 * Throws `EINVAL` for a truncated, foreign (other kind or version) or corrupted snapshot.
 */
export function decodeSnapshot(bytes: Uint8Array, kind: string, version: number, modelWords: number): Int32Array {
  const fail = (why: string): never => {
    throw new IrqChipError(ErrorCode.EINVAL, `snapshot rejected (${kind} v${version}): ${why}`);
  };
  const expectedLength = SNAPSHOT_HEADER_BYTES + modelWords * 4 + SNAPSHOT_CHECKSUM_BYTES;
  if (!(bytes instanceof Uint8Array)) fail('not a Uint8Array');
  if (bytes.length < SNAPSHOT_HEADER_BYTES) fail(`truncated: ${bytes.length} bytes`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== SNAPSHOT_MAGIC) fail('bad magic');
  if (view.getUint32(4, true) !== snapshotKindCode(kind) >>> 0) fail('snapshot of another controller kind');
  if (view.getUint32(8, true) !== version) fail(`layout version ${view.getUint32(8, true)} is not ${version}`);
  if (view.getUint32(SNAPSHOT_WORD_COUNT_OFFSET, true) !== modelWords) fail(`payload of ${view.getUint32(SNAPSHOT_WORD_COUNT_OFFSET, true)} words, expected ${modelWords}`);
  if (bytes.length !== expectedLength) fail(`length ${bytes.length}, expected ${expectedLength}`);
  const checksumAt = expectedLength - SNAPSHOT_CHECKSUM_BYTES;
  if (view.getUint32(checksumAt, true) !== crc32(bytes.subarray(0, checksumAt))) fail('checksum mismatch');
  const payload = new Int32Array(modelWords);
  for (let i = 0; i < modelWords; i++) payload[i] = view.getInt32(SNAPSHOT_HEADER_BYTES + i * 4, true);
  return payload;
}

/**
 * Restores validated payload words into a controller's state under its lock. `validate` sees the
 * payload first and throws (EINVAL) on a semantically impossible state, so nothing changes then.
 */
export function restoreSnapshot(
  words: Int32Array,
  bytes: Uint8Array,
  kind: string,
  version: number,
  validate: (payload: Int32Array) => void,
): void {
  const payload = decodeSnapshot(bytes, kind, version, words.length - LOCK_WORDS);
  validate(payload);
  withLock(words, () => {
    for (let i = 0; i < payload.length; i++) Atomics.store(words, LOCK_WORDS + i, payload[i] ?? 0);
  });
}
