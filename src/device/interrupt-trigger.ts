/**
 * The state of an interrupt source group, and the path a trigger takes.
 *
 * A group's per-source state lives in 32-bit words over a SharedArrayBuffer, so a device running
 * on another thread can raise interrupts through an `InterruptTrigger` view while the group itself
 * (which registers events with the chip, an owner-only act) stays on the chip owner's thread.
 *
 * Layout (Int32Array; words 0–1 are the lock, `shared-state.ts`):
 *   2                 group flags: bit 0 enabled, bit 1 destroyed
 *   3                 number of sources
 *   4                 delivery: 0 message (assert an MSI route), 1 pulse (assert then deassert a line)
 *   5 + 8s + 0        source s flags: bit 0 masked, bit 1 live, bit 2 pending, bit 3 routed
 *   5 + 8s + 1        source s GSI, or -1 while it has none (MSI GSIs are allocated lazily)
 *   5 + 8s + 2 .. 4   source s config: MSI address low, address high, data
 *   5 + 8s + 5 .. 7   source s route in force (valid when routed): address low, address high, data
 *
 * "Live" means a trigger is delivered at once: the group is enabled, the source unmasked, its route
 * in force and its notifier (if any) armed. A trigger on a source that is not live sets "pending";
 * the source delivers it once when it next goes live.
 *
 * Lock order: a group's lock is outermost. It is held while delivering, so that a mask on one
 * thread and a trigger on another cannot interleave (no delivery after the mask returns); delivery
 * takes the chip's locks inside it (chip line lock → PIC → IOAPIC → LAPIC).
 */

import { ErrorCode, IrqChipError, check } from '../base/errors.ts';
import { LOCK_WORDS, acquireLock, allocateStateWords, releaseLock } from '../base/shared-state.ts';
import type { IrqChip } from '../chip/irq-chip.ts';

export const GROUP_FLAGS = LOCK_WORDS;
export const GROUP_ENABLED = 1 << 0;
export const GROUP_DESTROYED = 1 << 1;
const SOURCE_COUNT = LOCK_WORDS + 1;
const DELIVERY = LOCK_WORDS + 2;
const FIRST_SOURCE = LOCK_WORDS + 3;
const WORDS_PER_SOURCE = 8;

export const SOURCE_MASKED = 1 << 0;
export const SOURCE_LIVE = 1 << 1;
export const SOURCE_PENDING = 1 << 2;
export const SOURCE_ROUTED = 1 << 3;

/** Offsets within a source's words. */
export const SourceWord = {
  Flags: 0,
  Gsi: 1,
  ConfigAddressLow: 2,
  ConfigAddressHigh: 3,
  ConfigData: 4,
  RouteAddressLow: 5,
  RouteAddressHigh: 6,
  RouteData: 7,
} as const;

export const NO_GSI = -1;

/** How a live source delivers: an MSI is one assert; a legacy edge line is an assert and a deassert. */
export const Delivery = { Message: 0, Pulse: 1 } as const;
export type Delivery = (typeof Delivery)[keyof typeof Delivery];

/** Allocates the words of a group of `count` sources, all unmasked, without GSIs. */
export function allocateGroupWords(count: number, delivery: Delivery): Int32Array {
  const words = allocateStateWords(FIRST_SOURCE - LOCK_WORDS + count * WORDS_PER_SOURCE);
  words[SOURCE_COUNT] = count;
  words[DELIVERY] = delivery;
  for (let index = 0; index < count; index++) words[sourceWord(index, SourceWord.Gsi)] = NO_GSI;
  return words;
}

/** Index of one of a source's words. */
export function sourceWord(index: number, offset: number): number {
  return FIRST_SOURCE + index * WORDS_PER_SOURCE + offset;
}

/** Throws EINVAL unless `index` is a source of a group of `count`. */
export function checkSourceIndex(index: number, count: number): void {
  if (Number.isInteger(index) && index >= 0 && index < count) return;
  throw new IrqChipError(ErrorCode.EINVAL, `interrupt index must be an integer in [0, ${count - 1}], got ${String(index)}`);
}

/** What another thread needs to raise a group's interrupts; `postMessage` carries it. */
export interface InterruptTriggerDescriptor {
  readonly kind: 'interrupt-trigger';
  readonly state: SharedArrayBuffer;
}

/** The chip call a trigger makes: a view of the chip on the trigger's thread will do. */
export type TriggerChip = Pick<IrqChip, 'serviceIrq'>;

/**
 * Raises a group's interrupts: `trigger(index)` delivers at once through the source's GSI when
 * the source is live, and otherwise holds it pending. The group uses one itself; a device on
 * another thread builds its own from the group's `triggerDescriptor()` and a view of the chip.
 */
export class InterruptTrigger {
  readonly length: number;
  private readonly pulse: boolean;

  constructor(
    private readonly words: Int32Array,
    private readonly chip: TriggerChip,
  ) {
    this.length = words[SOURCE_COUNT] ?? 0;
    this.pulse = words[DELIVERY] === Delivery.Pulse;
  }

  static fromDescriptor(descriptor: InterruptTriggerDescriptor, chip: TriggerChip): InterruptTrigger {
    const kind: unknown = descriptor.kind;
    check(kind === 'interrupt-trigger' && descriptor.state instanceof SharedArrayBuffer, ErrorCode.EINVAL, 'not an interrupt trigger descriptor');
    return new InterruptTrigger(new Int32Array(descriptor.state), chip);
  }

  descriptor(): InterruptTriggerDescriptor {
    return { kind: 'interrupt-trigger', state: this.words.buffer as SharedArrayBuffer };
  }

  /** EINVAL for an index out of range; EBADF once the group is destroyed. */
  trigger(index: number): void {
    checkSourceIndex(index, this.length);
    const { words } = this;
    acquireLock(words);
    try {
      check(((words[GROUP_FLAGS] ?? 0) & GROUP_DESTROYED) === 0, ErrorCode.EBADF, 'the interrupt source group was destroyed');
      const at = sourceWord(index, SourceWord.Flags);
      const flags = words[at] ?? 0;
      if ((flags & SOURCE_LIVE) !== 0) this.deliverLocked(words[at + SourceWord.Gsi] ?? NO_GSI);
      else words[at] = flags | SOURCE_PENDING;
    } finally {
      releaseLock(words);
    }
  }

  /** Sends one interrupt through `gsi`. Call with the group's lock held. */
  deliverLocked(gsi: number): void {
    this.chip.serviceIrq(gsi, true);
    if (this.pulse) this.chip.serviceIrq(gsi, false);
  }
}
