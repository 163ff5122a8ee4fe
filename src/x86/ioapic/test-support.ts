/**
 * Helpers for the IOAPIC tests: an IOAPIC wired to a recording sink, and guest-style register
 * access (IOREGSEL then IOWIN, as a driver does it).
 */
import { VirtualClock } from '../../base/clock.ts';
import { RecordingSink } from '../controller-test-support.ts';
import { DeliveryMode } from '../interrupt-message.ts';
import { Ioapic, IoapicMmioOffset, IoapicRegisterIndex, type IoapicOptions } from './ioapic.ts';
import {
  RTE_DELIVERY_MODE_SHIFT,
  RTE_DESTINATION_MODE_LOGICAL,
  RTE_DESTINATION_SHIFT,
  RTE_MASKED,
  RTE_POLARITY_ACTIVE_LOW,
  RTE_TRIGGER_LEVEL,
} from './redirection-entry.ts';

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
