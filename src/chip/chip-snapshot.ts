/**
 * The byte format of a whole-chip snapshot (`UserspaceIrqChip.snapshot()`), and the helpers its
 * restore validates with.
 *
 * A chip snapshot is a container of sections, each a complete controller-style snapshot
 * (shared-state.ts: 'IRQS', a four-letter kind, a layout version, words, a CRC-32), so every
 * section is checked by the same codec the controllers use. Layout (little-endian):
 *
 *   0    u32 magic 'IRQS'
 *   4    u32 kind 'CHIP' (the container; its first section has kind 'LINE')
 *   8    u32 container layout version
 *   12   u32 section count
 *   16   per section: u32 byte length, then the section's bytes (a multiple of 4)
 *   end  u32 CRC-32 of every byte before it
 *
 * Section order: 'LINE' (the chip's line sources and counters), 'PIC2', 'IOAP', 'ABUS', one 'LAPC'
 * per vCPU in vCPU order, 'ROUT' (the routes), 'EVNT' (the registered events' pending counts and
 * the deferred assertions).
 */

import { ErrorCode, IrqChipError } from '../base/errors.ts';
import { highHalf, lowHalf } from '../base/integers.ts';
import { LOCK_WORDS, SNAPSHOT_MAGIC, crc32, declaredSnapshotWords, decodeSnapshot, encodeSnapshot, snapshotKindCode } from '../base/shared-state.ts';

const CONTAINER_KIND = snapshotKindCode('CHIP') >>> 0;
const CONTAINER_VERSION = 1;
const HEADER_BYTES = 16;
const LENGTH_BYTES = 4;
const CHECKSUM_BYTES = 4;

function reject(why: string): never {
  throw new IrqChipError(ErrorCode.EINVAL, `chip snapshot rejected: ${why}`);
}

/** Packs sections (each a shared-state snapshot) into one container with its own checksum. */
export function encodeChipSnapshot(sections: readonly Uint8Array[]): Uint8Array {
  const bodyBytes = sections.reduce((total, section) => total + LENGTH_BYTES + section.length, 0);
  const bytes = new Uint8Array(HEADER_BYTES + bodyBytes + CHECKSUM_BYTES);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, SNAPSHOT_MAGIC, true);
  view.setUint32(4, CONTAINER_KIND, true);
  view.setUint32(8, CONTAINER_VERSION, true);
  view.setUint32(12, sections.length, true);
  let at = HEADER_BYTES;
  for (const section of sections) {
    view.setUint32(at, section.length, true);
    bytes.set(section, at + LENGTH_BYTES);
    at += LENGTH_BYTES + section.length;
  }
  view.setUint32(at, crc32(bytes.subarray(0, at)), true);
  return bytes;
}

/**
 * Unpacks a container made by `encodeChipSnapshot` holding exactly `sectionCount` sections.
 * Truncated, foreign or corrupted bytes throw EINVAL. The sections are not checked here.
 */
export function decodeChipSnapshot(bytes: Uint8Array, sectionCount: number): Uint8Array[] {
  if (!(bytes instanceof Uint8Array)) reject('not a Uint8Array');
  if (bytes.length < HEADER_BYTES + CHECKSUM_BYTES) reject(`truncated: ${bytes.length} bytes`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const checksumAt = bytes.length - CHECKSUM_BYTES;
  if (view.getUint32(checksumAt, true) !== crc32(bytes.subarray(0, checksumAt))) reject('checksum mismatch');
  if (view.getUint32(0, true) !== SNAPSHOT_MAGIC) reject('bad magic');
  if (view.getUint32(4, true) !== CONTAINER_KIND) reject('not a chip snapshot');
  if (view.getUint32(8, true) !== CONTAINER_VERSION) reject(`layout version ${view.getUint32(8, true)} is not ${CONTAINER_VERSION}`);
  const count = view.getUint32(12, true);
  if (count !== sectionCount) reject(`${count} sections, expected ${sectionCount} (another vCPU count?)`);
  const sections: Uint8Array[] = [];
  let at = HEADER_BYTES;
  for (let index = 0; index < count; index++) {
    if (at + LENGTH_BYTES > checksumAt) reject(`section ${index} starts past the end`);
    const length = view.getUint32(at, true);
    if (length > checksumAt - at - LENGTH_BYTES) reject(`section ${index} runs past the end`);
    sections.push(bytes.subarray(at + LENGTH_BYTES, at + LENGTH_BYTES + length));
    at += LENGTH_BYTES + length;
  }
  if (at !== checksumAt) reject(`${checksumAt - at} bytes after the last section`);
  return sections;
}

/** A chip-owned section: `words` (no lock words) as a shared-state snapshot of `kind`. */
export function encodeWordSection(kind: string, version: number, words: Int32Array): Uint8Array {
  const withLock = new Int32Array(LOCK_WORDS + words.length);
  withLock.set(words, LOCK_WORDS);
  return encodeSnapshot(kind, version, withLock);
}

/**
 * The words of a section made by `encodeWordSection` (its length is read from its header and
 * checked against its size). Truncated, foreign or corrupted bytes throw EINVAL.
 */
export function decodeWordSection(bytes: Uint8Array, kind: string, version: number): Int32Array {
  const wordCount = declaredSnapshotWords(bytes) ?? reject(`section ${kind} truncated`);
  return decodeSnapshot(bytes, kind, version, wordCount);
}

/**
 * A descriptor of a private copy of a controller's state with its lock free: a scratch controller
 * built from it has the live one's configuration, so restoring a section into it runs the
 * controller's own validation without touching the live state.
 */
export function scratchDescriptor<Descriptor extends { readonly buffer: SharedArrayBuffer }>(descriptor: Descriptor): Descriptor {
  const copy = new SharedArrayBuffer(descriptor.buffer.byteLength);
  new Uint8Array(copy).set(new Uint8Array(descriptor.buffer));
  new Int32Array(copy).fill(0, 0, LOCK_WORDS);
  return { ...descriptor, buffer: copy };
}

/** A u64 event count as two words (low, high); `joinHalves` reads it back. */
export function countWords(count: bigint): [number, number] {
  return [lowHalf(count), highHalf(count)];
}
