/**
 * IOAPIC end of interrupt: the EOI broadcast and register (I18, I19), the level-interrupt storm
 * limiter (I20, §6.1) and resampling at EOI (§2.8 step 1, §5.8).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TriggerMode } from '../interrupt-message.ts';
import { IOAPIC_STORM_DELAY_NS, IOAPIC_STORM_EOI_THRESHOLD, IoapicMmioOffset, type IoapicOptions } from './ioapic.ts';
import { entryLow, makeIoapic, writeEntry, writeEntryLow } from './test-support.ts';

const PIN = 9;
const VECTOR = 0x31;

/** A level entry on PIN with VECTOR, its line asserted and delivered once. */
function levelAsserted(options: Partial<Omit<IoapicOptions, 'sink' | 'clock'>> = {}) {
  const rig = makeIoapic(options);
  writeEntry(rig.ioapic, PIN, entryLow({ vector: VECTOR, level: true }));
  rig.ioapic.setIrq(PIN, true);
  assert.equal(rig.sink.messages.length, 1);
  return rig;
}

test('I18 v0x20: writing the vector to the EOI register acts as an EOI broadcast', () => {
  const { ioapic, sink } = levelAsserted();
  ioapic.mmioWrite(IoapicMmioOffset.EndOfInterrupt, 4, VECTOR);
  assert.equal(sink.messages.length, 2, 'line still high: re-delivered');
  ioapic.setIrq(PIN, false);
  ioapic.mmioWrite(IoapicMmioOffset.EndOfInterrupt, 4, VECTOR);
  assert.equal(ioapic.remoteIrr(PIN), false);
});

test('I18 the EOI register uses bits 7:0 and counts reserved bits 31:8', () => {
  const { ioapic } = levelAsserted();
  ioapic.setIrq(PIN, false);
  ioapic.mmioWrite(IoapicMmioOffset.EndOfInterrupt, 4, 0x1200 | VECTOR);
  assert.equal(ioapic.remoteIrr(PIN), false);
  assert.equal(ioapic.counters().reservedBitWrites, 1);
});

test('I18 v0x11: a write to offset 0x40 is ignored and remote IRR stays set', () => {
  const { ioapic, sink } = levelAsserted({ version: 0x11 });
  ioapic.setIrq(PIN, false);
  ioapic.mmioWrite(IoapicMmioOffset.EndOfInterrupt, 4, VECTOR);
  assert.equal(ioapic.remoteIrr(PIN), true);
  assert.equal(sink.messages.length, 1);
  assert.equal(ioapic.counters().ignoredAccesses, 1);
});

test('I19 directed EOI: with no broadcast remote IRR stays set until the EOI register is written', () => {
  // With SVR bit 12 set the local APIC sends no broadcast (§3.7), so the IOAPIC sees only the
  // guest's write to its EOI register.
  const { ioapic } = levelAsserted();
  ioapic.setIrq(PIN, false);
  assert.equal(ioapic.remoteIrr(PIN), true);
  ioapic.mmioWrite(IoapicMmioOffset.EndOfInterrupt, 4, VECTOR);
  assert.equal(ioapic.remoteIrr(PIN), false);
});

test('an EOI of another vector leaves remote IRR set', () => {
  const { ioapic } = levelAsserted();
  ioapic.endOfInterrupt(VECTOR + 1);
  assert.equal(ioapic.remoteIrr(PIN), true);
});

test('an edge EOI (TMR clear) does not clear remote IRR of a level entry', () => {
  const { ioapic, sink } = levelAsserted();
  ioapic.endOfInterrupt(VECTOR, TriggerMode.Edge);
  assert.equal(ioapic.remoteIrr(PIN), true);
  assert.equal(sink.messages.length, 1);
});

test('a level EOI does not re-deliver an edge entry with the same vector whose line is high', () => {
  const { ioapic, sink } = makeIoapic();
  writeEntry(ioapic, 2, entryLow({ vector: VECTOR }));
  ioapic.setIrq(2, true);
  ioapic.endOfInterrupt(VECTOR);
  assert.equal(sink.messages.length, 1);
});

test('a level EOI while the entry is masked re-delivers nothing; unmask then does', () => {
  const { ioapic, sink } = levelAsserted();
  writeEntryLow(ioapic, PIN, entryLow({ vector: VECTOR, level: true, masked: true }));
  ioapic.endOfInterrupt(VECTOR);
  assert.equal(sink.messages.length, 1);
  assert.equal(ioapic.remoteIrr(PIN), false);
  writeEntryLow(ioapic, PIN, entryLow({ vector: VECTOR, level: true }));
  assert.equal(sink.messages.length, 2);
});

// ---------------------------------------------------------------------------------------------
// Storm limiter
// ---------------------------------------------------------------------------------------------

function eoiTimes(ioapic: { endOfInterrupt(vector: number): void }, count: number): void {
  for (let i = 0; i < count; i++) ioapic.endOfInterrupt(VECTOR);
}

test('I20 storm: 9 999 EOIs re-deliver at once, the 10 000th defers the re-delivery by 10 ms', () => {
  const { ioapic, sink, clock } = levelAsserted();
  clock.advance(5_000);
  eoiTimes(ioapic, IOAPIC_STORM_EOI_THRESHOLD - 1);
  assert.equal(sink.messages.length, IOAPIC_STORM_EOI_THRESHOLD);
  assert.equal(ioapic.nextDeadlineNs(), undefined);

  ioapic.endOfInterrupt(VECTOR);
  assert.equal(sink.messages.length, IOAPIC_STORM_EOI_THRESHOLD, 'the 10 000th EOI is not re-delivered at once');
  assert.equal(ioapic.remoteIrr(PIN), false);
  assert.equal(ioapic.counters().stormDeferrals, 1);
  assert.equal(ioapic.nextDeadlineNs(), 5_000 + IOAPIC_STORM_DELAY_NS);

  clock.advance(IOAPIC_STORM_DELAY_NS - 1);
  ioapic.runDelayedWork();
  assert.equal(sink.messages.length, IOAPIC_STORM_EOI_THRESHOLD);
  clock.advance(1);
  ioapic.runDelayedWork();
  assert.equal(sink.messages.length, IOAPIC_STORM_EOI_THRESHOLD + 1);
  assert.equal(ioapic.remoteIrr(PIN), true);
  assert.equal(ioapic.nextDeadlineNs(), undefined);
});

test('I20 storm counter resets at the deferral: the next 9 999 EOIs re-deliver at once again', () => {
  const { ioapic, sink, clock } = levelAsserted();
  eoiTimes(ioapic, IOAPIC_STORM_EOI_THRESHOLD);
  clock.advance(IOAPIC_STORM_DELAY_NS);
  ioapic.runDelayedWork();
  sink.clear();
  eoiTimes(ioapic, IOAPIC_STORM_EOI_THRESHOLD - 1);
  assert.equal(sink.messages.length, IOAPIC_STORM_EOI_THRESHOLD - 1);
  ioapic.endOfInterrupt(VECTOR);
  assert.equal(ioapic.counters().stormDeferrals, 2);
});

test('storm counter resets when an EOI finds the line low', () => {
  const { ioapic } = levelAsserted();
  eoiTimes(ioapic, IOAPIC_STORM_EOI_THRESHOLD - 1);
  ioapic.setIrq(PIN, false);
  ioapic.endOfInterrupt(VECTOR);
  ioapic.setIrq(PIN, true);
  eoiTimes(ioapic, IOAPIC_STORM_EOI_THRESHOLD - 1);
  assert.equal(ioapic.counters().stormDeferrals, 0);
  assert.equal(ioapic.remoteIrr(PIN), true);
});

test('while deferred, a repeated assert coalesces and EOIs do not bypass the delay', () => {
  const { ioapic, sink } = levelAsserted();
  eoiTimes(ioapic, IOAPIC_STORM_EOI_THRESHOLD);
  const sent = sink.messages.length;
  assert.equal(ioapic.setIrq(PIN, true), 0);
  ioapic.endOfInterrupt(VECTOR);
  writeEntryLow(ioapic, PIN, entryLow({ vector: VECTOR, level: true }));
  assert.equal(sink.messages.length, sent);
});

test('a deassert ends the deferral; a fresh assertion is delivered at once', () => {
  const { ioapic, sink } = levelAsserted();
  eoiTimes(ioapic, IOAPIC_STORM_EOI_THRESHOLD);
  const sent = sink.messages.length;
  ioapic.setIrq(PIN, false);
  assert.equal(ioapic.nextDeadlineNs(), undefined);
  assert.equal(ioapic.setIrq(PIN, true), 1);
  assert.equal(sink.messages.length, sent + 1);
});

test('a deferred pin masked at its deadline is not delivered then, but is at unmask', () => {
  const { ioapic, sink, clock } = levelAsserted();
  eoiTimes(ioapic, IOAPIC_STORM_EOI_THRESHOLD);
  const sent = sink.messages.length;
  writeEntryLow(ioapic, PIN, entryLow({ vector: VECTOR, level: true, masked: true }));
  clock.advance(IOAPIC_STORM_DELAY_NS);
  ioapic.runDelayedWork();
  assert.equal(sink.messages.length, sent);
  assert.equal(ioapic.nextDeadlineNs(), undefined);
  writeEntryLow(ioapic, PIN, entryLow({ vector: VECTOR, level: true }));
  assert.equal(sink.messages.length, sent + 1);
});

test('nextDeadlineNs reports the earliest of several deferred pins', () => {
  const { ioapic, sink, clock } = makeIoapic();
  for (const [pin, vector] of [
    [1, 0x61],
    [2, 0x62],
  ] as const) {
    writeEntry(ioapic, pin, entryLow({ vector, level: true }));
    ioapic.setIrq(pin, true);
  }
  for (let i = 0; i < IOAPIC_STORM_EOI_THRESHOLD; i++) ioapic.endOfInterrupt(0x62);
  clock.advance(3_000_000);
  for (let i = 0; i < IOAPIC_STORM_EOI_THRESHOLD; i++) ioapic.endOfInterrupt(0x61);
  assert.equal(ioapic.nextDeadlineNs(), IOAPIC_STORM_DELAY_NS);
  clock.advance(IOAPIC_STORM_DELAY_NS - 3_000_000);
  sink.clear();
  ioapic.runDelayedWork();
  assert.deepEqual(sink.vectors(), [0x62]);
  assert.equal(ioapic.nextDeadlineNs(), 3_000_000 + IOAPIC_STORM_DELAY_NS);
});

// ---------------------------------------------------------------------------------------------
// Resampling at EOI
// ---------------------------------------------------------------------------------------------

test('EOI of a resampled pin lowers its line, clears remote IRR and signals it, without re-delivery', () => {
  const { ioapic, sink } = levelAsserted();
  const signalled: number[] = [];
  ioapic.setPinResampled(PIN, true);
  ioapic.setResampleListener((pin) => signalled.push(pin));
  ioapic.endOfInterrupt(VECTOR);
  assert.deepEqual(signalled, [PIN]);
  assert.equal(ioapic.lineLevel(PIN), false);
  assert.equal(ioapic.remoteIrr(PIN), false);
  assert.equal(sink.messages.length, 1);
});

test('a resample listener that re-asserts gets the interrupt delivered again', () => {
  const { ioapic, sink } = levelAsserted();
  ioapic.setPinResampled(PIN, true);
  ioapic.setResampleListener((pin) => ioapic.setIrq(pin, true));
  ioapic.endOfInterrupt(VECTOR);
  assert.equal(sink.messages.length, 2);
  assert.equal(ioapic.remoteIrr(PIN), true);
});

test('a resampled level pin never storms: 20 000 EOIs, 20 000 re-deliveries, no deferral', () => {
  const { ioapic, sink } = levelAsserted();
  ioapic.setPinResampled(PIN, true);
  ioapic.setResampleListener((pin) => ioapic.setIrq(pin, true));
  eoiTimes(ioapic, 2 * IOAPIC_STORM_EOI_THRESHOLD);
  assert.equal(sink.messages.length, 2 * IOAPIC_STORM_EOI_THRESHOLD + 1);
  assert.equal(ioapic.counters().stormDeferrals, 0);
});

test('setPinResampled(pin, false) restores plain re-delivery at EOI', () => {
  const { ioapic, sink } = levelAsserted();
  const signalled: number[] = [];
  ioapic.setPinResampled(PIN, true);
  ioapic.setResampleListener((pin) => signalled.push(pin));
  ioapic.setPinResampled(PIN, false);
  ioapic.endOfInterrupt(VECTOR);
  assert.deepEqual(signalled, []);
  assert.equal(sink.messages.length, 2);
});

test('EOI signals the resamplers of every level pin with the vector', () => {
  const { ioapic } = makeIoapic();
  const signalled: number[] = [];
  ioapic.setResampleListener((resampled) => signalled.push(resampled));
  for (const pin of [4, 5]) {
    writeEntry(ioapic, pin, entryLow({ vector: VECTOR, level: true }));
    ioapic.setPinResampled(pin, true);
    ioapic.setIrq(pin, true);
  }
  ioapic.endOfInterrupt(VECTOR);
  assert.deepEqual(signalled, [4, 5]);
});
