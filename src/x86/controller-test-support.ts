/**
 * Helpers shared by the tests of every x86 controller: a sink that records interrupt messages,
 * and the checks that a rejected call or a damaged snapshot changes nothing.
 */
import assert from 'node:assert/strict';
import type { InterruptMessage, InterruptMessageSink } from './interrupt-message.ts';

/**
 * Records a copy of every message (the `ApicBus` reuses one object for MSIs) and answers with
 * `result`: a number, or a function of the message (KVM convention: < 0 no destination,
 * 0 coalesced, > 0 how many APICs accepted it). By default one APIC accepted it.
 */
export class RecordingSink implements InterruptMessageSink {
  readonly messages: InterruptMessage[] = [];
  result: number | ((message: InterruptMessage) => number) = 1;

  deliver(message: InterruptMessage): number {
    this.messages.push({ ...message });
    return typeof this.result === 'number' ? this.result : this.result(message);
  }

  vectors(): number[] {
    return this.messages.map((message) => message.vector);
  }

  clear(): void {
    this.messages.length = 0;
  }
}

/** A controller model's snapshot interface. */
export interface Snapshotting {
  snapshot(): Uint8Array;
  restore(bytes: Uint8Array): void;
}

/** Runs `misuse`, expects `IrqChipError(EINVAL)`, and checks that no state word changed. */
export function assertRejectedUnchanged(subject: Pick<Snapshotting, 'snapshot'>, misuse: () => unknown, what?: string): void {
  const before = subject.snapshot();
  assert.throws(misuse, { name: 'IrqChipError', code: 'EINVAL' }, what);
  assert.deepEqual(subject.snapshot(), before, what);
}

/** Expects `target.restore(bytes)` to throw EINVAL and leave every state word as it was. */
export function assertRestoreRejected(target: Snapshotting, bytes: Uint8Array, what?: string): void {
  assertRejectedUnchanged(
    target,
    () => {
      target.restore(bytes);
    },
    what,
  );
}

/**
 * Two damaged copies of a snapshot, for property tests: cut to `cut % length` bytes, and with
 * bit `bit % (8 × length)` flipped (`cut` and `bit` are arbitrary naturals from fast-check).
 */
export function damagedSnapshots(bytes: Uint8Array, cut: number, bit: number): [truncated: Uint8Array, flipped: Uint8Array] {
  const flipped = bytes.slice();
  const bitIndex = bit % (flipped.length * 8);
  flipped[bitIndex >> 3] = (flipped[bitIndex >> 3] ?? 0) ^ (1 << (bitIndex & 7));
  return [bytes.subarray(0, cut % bytes.length), flipped];
}
