/**
 * Helpers for the IOAPIC tests: a sink that records messages, and guest-style register access
 * (IOREGSEL then IOWIN, as a driver does it).
 */
import assert from 'node:assert/strict';
import { VirtualClock } from '../../base/clock.ts';
import { DeliveryMode, type InterruptMessage, type InterruptMessageSink } from '../interrupt-message.ts';
import { Ioapic, IoapicMmioOffset, IoapicRegisterIndex, type IoapicOptions } from './ioapic.ts';
import {
  RTE_DELIVERY_MODE_SHIFT,
  RTE_DESTINATION_MODE_LOGICAL,
  RTE_DESTINATION_SHIFT,
  RTE_MASKED,
  RTE_POLARITY_ACTIVE_LOW,
  RTE_TRIGGER_LEVEL,
} from './redirection-entry.ts';

/** Records every message; answers with `result` (KVM convention: < 0 none, 0 coalesced, > 0 accepted). */
export class RecordingSink implements InterruptMessageSink {
  readonly messages: InterruptMessage[] = [];
  result: number | ((message: InterruptMessage) => number) = 1;

  deliver(message: InterruptMessage): number {
    this.messages.push(message);
    return typeof this.result === 'number' ? this.result : this.result(message);
  }

  vectors(): number[] {
    return this.messages.map((message) => message.vector);
  }

  clear(): void {
    this.messages.length = 0;
  }
}

export interface IoapicRig {
  readonly ioapic: Ioapic;
  readonly sink: RecordingSink;
  readonly clock: VirtualClock;
}

export function makeIoapic(options: Partial<Omit<IoapicOptions, 'sink' | 'clock'>> = {}): IoapicRig {
  const sink = new RecordingSink();
  const clock = new VirtualClock();
  return { ioapic: Ioapic.create({ ...options, sink, clock }), sink, clock };
}

export function readRegister(ioapic: Ioapic, index: number): number {
  ioapic.mmioWrite(IoapicMmioOffset.RegisterSelect, 4, index);
  return ioapic.mmioRead(IoapicMmioOffset.Window, 4);
}

export function writeRegister(ioapic: Ioapic, index: number, value: number): void {
  ioapic.mmioWrite(IoapicMmioOffset.RegisterSelect, 4, index);
  ioapic.mmioWrite(IoapicMmioOffset.Window, 4, value >>> 0);
}

export function entryLowIndex(pin: number): number {
  return IoapicRegisterIndex.RedirectionTable + 2 * pin;
}

/** Programs an RTE the way Linux does: high half (destination) first, then the low half. */
export function writeEntry(ioapic: Ioapic, pin: number, low: number, high = 0): void {
  writeRegister(ioapic, entryLowIndex(pin) + 1, high);
  writeRegister(ioapic, entryLowIndex(pin), low);
}

export function writeEntryLow(ioapic: Ioapic, pin: number, low: number): void {
  writeRegister(ioapic, entryLowIndex(pin), low);
}

export function readEntryLow(ioapic: Ioapic, pin: number): number {
  return readRegister(ioapic, entryLowIndex(pin));
}

export interface EntryFields {
  readonly vector: number;
  readonly level?: boolean;
  readonly masked?: boolean;
  readonly deliveryMode?: DeliveryMode;
  readonly logical?: boolean;
  readonly activeLow?: boolean;
}

/** The low half of an RTE with the given fields. */
export function entryLow(fields: EntryFields): number {
  return (
    fields.vector |
    ((fields.deliveryMode ?? DeliveryMode.Fixed) << RTE_DELIVERY_MODE_SHIFT) |
    (fields.logical === true ? RTE_DESTINATION_MODE_LOGICAL : 0) |
    (fields.activeLow === true ? RTE_POLARITY_ACTIVE_LOW : 0) |
    (fields.level === true ? RTE_TRIGGER_LEVEL : 0) |
    (fields.masked === true ? RTE_MASKED : 0)
  );
}

/** The high half of an RTE addressed to `destination` (8 bits). */
export function entryHigh(destination: number): number {
  return (destination << RTE_DESTINATION_SHIFT) >>> 0;
}

/** Runs `misuse`, expects `IrqChipError(EINVAL)`, and checks that no state word changed. */
export function assertRejectedUnchanged(ioapic: Ioapic, misuse: () => unknown, what?: string): void {
  const before = ioapic.snapshot();
  assert.throws(misuse, { name: 'IrqChipError', code: 'EINVAL' }, what);
  assert.deepEqual(ioapic.snapshot(), before, what);
}
