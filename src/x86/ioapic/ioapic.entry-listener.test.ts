/**
 * The redirection-entry listener: told of every guest write of a redirection entry, after the
 * IOAPIC lock is released (what a split irqchip mirrors into KVM's MSI routes).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertIrqChipError } from '../../testing/irq-chip-error.ts';
import { IoapicRegisterIndex, type RedirectionEntryListener } from './ioapic.ts';
import { entryHigh, entryLow, entryLowIndex, makeIoapic, writeEntry, writeRegister } from './test-support.ts';

test('each IOWIN write of a redirection entry half calls the listener with its pin, seeing the new value', () => {
  const { ioapic } = makeIoapic();
  const seen: { pin: number; low: number; high: number }[] = [];
  ioapic.setRedirectionEntryListener((pin) => {
    seen.push({ pin, ...ioapic.redirectionEntry(pin) });
  });
  writeEntry(ioapic, 7, entryLow({ vector: 0x47, level: true }), entryHigh(3));
  writeRegister(ioapic, entryLowIndex(23) + 1, entryHigh(1));
  assert.deepEqual(seen, [
    { pin: 7, low: 0x10000, high: entryHigh(3) },
    { pin: 7, low: entryLow({ vector: 0x47, level: true }), high: entryHigh(3) },
    { pin: 23, low: 0x10000, high: entryHigh(1) },
  ]);
});

test('writes that touch no redirection entry (ID, version, a reserved selector, the EOI register) call nothing', () => {
  const { ioapic } = makeIoapic();
  const pins: number[] = [];
  ioapic.setRedirectionEntryListener((pin) => pins.push(pin));
  writeRegister(ioapic, IoapicRegisterIndex.Id, 0x0f000000);
  writeRegister(ioapic, IoapicRegisterIndex.Version, 0);
  writeRegister(ioapic, 0x05, 1);
  writeRegister(ioapic, 0x40, 1);
  ioapic.mmioWrite(0x40, 4, 0x30);
  assert.deepEqual(pins, []);
});

test('the listener runs with the lock free: it may drive a line, and a write that delivers has delivered by then', () => {
  const { ioapic, sink } = makeIoapic();
  const results: (number | undefined)[] = [];
  ioapic.setIrq(2, true);
  ioapic.setRedirectionEntryListener((pin) => {
    results.push(ioapic.trySetIrq(pin, true));
  });
  // Unmasking a level entry whose line is high delivers inside the write; the listener comes after.
  writeRegister(ioapic, entryLowIndex(2), entryLow({ vector: 0x52, level: true }));
  assert.equal(sink.messages.length, 1, 'delivered by the unmask');
  assert.deepEqual(results, [0], 'trySetIrq took the lock (the assert coalesced with remote IRR set)');
});

test('a listener can be removed; anything but a function or undefined is EINVAL and keeps the old one', () => {
  const { ioapic } = makeIoapic();
  const pins: number[] = [];
  ioapic.setRedirectionEntryListener((pin) => pins.push(pin));
  assertIrqChipError(() => {
    ioapic.setRedirectionEntryListener(42 as unknown as RedirectionEntryListener);
  }, 'EINVAL');
  writeRegister(ioapic, entryLowIndex(1), entryLow({ vector: 0x41 }));
  ioapic.setRedirectionEntryListener(undefined);
  writeRegister(ioapic, entryLowIndex(1), entryLow({ vector: 0x42 }));
  assert.deepEqual(pins, [1]);
});
