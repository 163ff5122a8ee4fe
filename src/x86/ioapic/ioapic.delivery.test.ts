/**
 * IOAPIC pin input and delivery: scenarios I7–I17 and I21 of x86-controllers.md §7.2, the IOAPIC
 * half of I24/I25, the §6 tricky cases about masking and reconfiguration, and the RTC rule.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DeliveryMode, DestinationMode, interruptMessage, TriggerMode } from '../interrupt-message.ts';
import { IOAPIC_RTC_PIN } from './ioapic.ts';
import {
  entryHigh,
  entryLow,
  entryLowIndex,
  makeIoapic,
  readEntryLow,
  writeEntry,
  writeEntryLow,
  writeRegister,
} from './test-support.ts';

const REMOTE_IRR = 1 << 14;

/** A level entry for `vector` on `pin`, unmasked, line asserted once and accepted. */
function levelDelivered(pin: number, vector: number) {
  const rig = makeIoapic();
  writeEntry(rig.ioapic, pin, entryLow({ vector, level: true }));
  assert.equal(rig.ioapic.setIrq(pin, true), 1);
  return rig;
}

test('I7 edge vector 0x30: one delivery per 0→1 transition; a repeated assert coalesces (0)', () => {
  const { ioapic, sink } = makeIoapic();
  writeEntry(ioapic, 4, entryLow({ vector: 0x30 }), entryHigh(0));
  assert.equal(ioapic.setIrq(4, true), 1);
  assert.deepEqual(sink.messages, [interruptMessage({ vector: 0x30 })]);
  assert.equal(ioapic.setIrq(4, true), 0);
  assert.equal(sink.messages.length, 1);
  assert.equal(ioapic.counters().coalescedAsserts, 1);
  assert.equal(ioapic.setIrq(4, false), 1);
  assert.equal(ioapic.setIrq(4, true), 1);
  assert.deepEqual(sink.vectors(), [0x30, 0x30]);
});

test('I8 edge on a masked pin is dropped, not replayed at unmask; a new edge is delivered', () => {
  const { ioapic, sink } = makeIoapic();
  writeEntry(ioapic, 6, entryLow({ vector: 0x32, masked: true }));
  assert.equal(ioapic.setIrq(6, true), -1);
  writeEntryLow(ioapic, 6, entryLow({ vector: 0x32 }));
  assert.equal(sink.messages.length, 0);
  assert.equal(ioapic.counters().droppedMaskedEdges, 1);
  ioapic.setIrq(6, false);
  assert.equal(ioapic.setIrq(6, true), 1);
  assert.deepEqual(sink.vectors(), [0x32]);
});

test('I9 level vector 0x31: delivered as a level message and remote IRR set', () => {
  const { ioapic, sink } = levelDelivered(9, 0x31);
  assert.deepEqual(sink.messages, [interruptMessage({ vector: 0x31, triggerMode: TriggerMode.Level })]);
  assert.equal(ioapic.remoteIrr(9), true);
  assert.equal(readEntryLow(ioapic, 9), entryLow({ vector: 0x31, level: true }) | REMOTE_IRR);
});

test('I10 level line re-asserted before EOI is not delivered again (coalesced, 0)', () => {
  const { ioapic, sink } = levelDelivered(9, 0x31);
  ioapic.setIrq(9, false);
  assert.equal(ioapic.setIrq(9, true), 0);
  assert.equal(sink.messages.length, 1);
  assert.equal(ioapic.counters().coalescedAsserts, 1);
});

test('I11 EOI with the line still high clears remote IRR and delivers again, setting it again', () => {
  const { ioapic, sink } = levelDelivered(9, 0x31);
  ioapic.setIrq(9, false);
  ioapic.setIrq(9, true);
  ioapic.endOfInterrupt(0x31);
  assert.deepEqual(sink.vectors(), [0x31, 0x31]);
  assert.equal(ioapic.remoteIrr(9), true);
});

test('I12 EOI after the line dropped clears remote IRR without a new delivery', () => {
  const { ioapic, sink } = levelDelivered(9, 0x31);
  ioapic.setIrq(9, false);
  ioapic.endOfInterrupt(0x31);
  assert.equal(ioapic.remoteIrr(9), false);
  assert.equal(sink.messages.length, 1);
});

test('I13 level asserted while masked is delivered at unmask when the pin has no resampler', () => {
  const { ioapic, sink } = makeIoapic();
  writeEntry(ioapic, 10, entryLow({ vector: 0x33, level: true, masked: true }));
  assert.equal(ioapic.setIrq(10, true), -1);
  assert.equal(sink.messages.length, 0);
  assert.equal(ioapic.counters().heldMaskedLevels, 1);
  writeEntryLow(ioapic, 10, entryLow({ vector: 0x33, level: true }));
  assert.deepEqual(sink.vectors(), [0x33]);
  assert.equal(ioapic.remoteIrr(10), true);
});

test('I13 with a resampler: unmask does not deliver, lowers the line and signals the resampler', () => {
  const { ioapic, sink } = makeIoapic();
  const signalled: number[] = [];
  ioapic.setPinResampled(10, true);
  ioapic.setResampleListener((pin) => signalled.push(pin));
  writeEntry(ioapic, 10, entryLow({ vector: 0x33, level: true, masked: true }));
  ioapic.setIrq(10, true);
  writeEntryLow(ioapic, 10, entryLow({ vector: 0x33, level: true }));
  assert.equal(sink.messages.length, 0);
  assert.equal(ioapic.lineLevel(10), false);
  assert.equal(ioapic.remoteIrr(10), false);
  assert.deepEqual(signalled, [10]);
  assert.equal(ioapic.counters().resampleSignals, 1);
});

test('I13 a device that re-asserts from its resample listener is delivered (listener runs unlocked)', () => {
  const { ioapic, sink } = makeIoapic();
  ioapic.setPinResampled(10, true);
  ioapic.setResampleListener((pin) => ioapic.setIrq(pin, true));
  writeEntry(ioapic, 10, entryLow({ vector: 0x33, level: true, masked: true }));
  ioapic.setIrq(10, true);
  writeEntryLow(ioapic, 10, entryLow({ vector: 0x33, level: true }));
  assert.deepEqual(sink.vectors(), [0x33]);
  assert.equal(ioapic.remoteIrr(10), true);
});

test('I14 masking and unmasking keep remote IRR and deliver nothing new', () => {
  const { ioapic, sink } = levelDelivered(11, 0x34);
  writeEntryLow(ioapic, 11, entryLow({ vector: 0x34, level: true, masked: true }));
  assert.equal(ioapic.remoteIrr(11), true);
  writeEntryLow(ioapic, 11, entryLow({ vector: 0x34, level: true }));
  assert.equal(ioapic.remoteIrr(11), true);
  assert.equal(sink.messages.length, 1);
});

test('I15 switching to edge clears remote IRR; switching back to level leaves it clear', () => {
  const { ioapic, sink } = levelDelivered(12, 0x35);
  ioapic.setIrq(12, false);
  writeEntryLow(ioapic, 12, entryLow({ vector: 0x35 }));
  assert.equal(ioapic.remoteIrr(12), false);
  writeEntryLow(ioapic, 12, entryLow({ vector: 0x35, level: true }));
  assert.equal(ioapic.remoteIrr(12), false);
  assert.equal(sink.messages.length, 1);
});

test('I15 Linux implicit EOI (mask, edge, level, unmask) re-delivers a line still asserted', () => {
  const { ioapic, sink } = levelDelivered(12, 0x35);
  writeEntryLow(ioapic, 12, entryLow({ vector: 0x35, level: true, masked: true }));
  writeEntryLow(ioapic, 12, entryLow({ vector: 0x35, masked: true }));
  writeEntryLow(ioapic, 12, entryLow({ vector: 0x35, level: true, masked: true }));
  assert.equal(sink.messages.length, 1);
  writeEntryLow(ioapic, 12, entryLow({ vector: 0x35, level: true }));
  assert.deepEqual(sink.vectors(), [0x35, 0x35]);
  assert.equal(ioapic.remoteIrr(12), true);
});

test('I16 reconfiguration race: a stale pre-EOI copy written back as edge gives one edge, no stuck remote IRR', () => {
  const { ioapic, sink } = levelDelivered(13, 0x36);
  const staleCopy = readEntryLow(ioapic, 13);
  assert.equal(staleCopy & REMOTE_IRR, REMOTE_IRR);
  ioapic.setIrq(13, false);
  ioapic.endOfInterrupt(0x36);
  writeEntryLow(ioapic, 13, staleCopy & ~(1 << 15));
  assert.equal(ioapic.remoteIrr(13), false);
  sink.clear();
  ioapic.setIrq(13, true);
  ioapic.setIrq(13, false);
  assert.deepEqual(sink.messages, [interruptMessage({ vector: 0x36 })]);
  assert.equal(ioapic.remoteIrr(13), false);
});

test('§6.4 retargeting the destination while in service: the EOI still clears remote IRR', () => {
  const { ioapic, sink } = levelDelivered(14, 0x37);
  writeRegister(ioapic, entryLowIndex(14) + 1, entryHigh(3));
  assert.equal(ioapic.remoteIrr(14), true);
  ioapic.endOfInterrupt(0x37);
  assert.equal(ioapic.remoteIrr(14), true, 'line still high: re-delivered to the new destination');
  assert.deepEqual(
    sink.messages.map((sent) => sent.destination),
    [0, 3],
  );
});

test('I17 one EOI clears remote IRR of every level entry with the vector', () => {
  const { ioapic, sink } = makeIoapic();
  writeEntry(ioapic, 1, entryLow({ vector: 0x38, level: true }));
  writeEntry(ioapic, 2, entryLow({ vector: 0x38, level: true }));
  ioapic.setIrq(1, true);
  ioapic.setIrq(2, true);
  ioapic.setIrq(1, false);
  ioapic.setIrq(2, false);
  ioapic.endOfInterrupt(0x38);
  assert.deepEqual([ioapic.remoteIrr(1), ioapic.remoteIrr(2)], [false, false]);
  assert.equal(sink.messages.length, 2);
});

test('§6.5 EOI reaches a masked old entry with the same vector (device moved to another pin)', () => {
  const { ioapic } = levelDelivered(3, 0x39);
  writeEntryLow(ioapic, 3, entryLow({ vector: 0x39, level: true, masked: true }));
  writeEntry(ioapic, 7, entryLow({ vector: 0x39, level: true }));
  ioapic.setIrq(3, false);
  ioapic.setIrq(7, true);
  ioapic.setIrq(7, false);
  ioapic.endOfInterrupt(0x39);
  assert.deepEqual([ioapic.remoteIrr(3), ioapic.remoteIrr(7)], [false, false]);
});

test('I21 active-low polarity is stored but ignored: level 1 still delivers', () => {
  const { ioapic, sink } = makeIoapic();
  writeEntry(ioapic, 15, entryLow({ vector: 0x3a, level: true, activeLow: true }));
  assert.equal(readEntryLow(ioapic, 15) & (1 << 13), 1 << 13);
  assert.equal(ioapic.setIrq(15, true), 1);
  assert.deepEqual(sink.vectors(), [0x3a]);
});

test('message carries destination, logical mode and lowest-priority delivery from the entry', () => {
  const { ioapic, sink } = makeIoapic();
  writeEntry(ioapic, 16, entryLow({ vector: 0x41, logical: true, deliveryMode: DeliveryMode.LowestPriority }), entryHigh(0x03));
  ioapic.setIrq(16, true);
  assert.deepEqual(sink.messages, [
    interruptMessage({
      vector: 0x41,
      destination: 0x03,
      destinationMode: DestinationMode.Logical,
      deliveryMode: DeliveryMode.LowestPriority,
    }),
  ]);
});

test('I24/I25 NMI, INIT, SMI and ExtINT entries send edge messages and never set remote IRR, even if programmed level', () => {
  for (const deliveryMode of [DeliveryMode.Nmi, DeliveryMode.Init, DeliveryMode.Smi, DeliveryMode.ExtInt]) {
    const { ioapic, sink } = makeIoapic();
    writeEntry(ioapic, 0, entryLow({ vector: 0, level: true, deliveryMode }));
    assert.equal(ioapic.setIrq(0, true), 1);
    assert.deepEqual(sink.messages, [interruptMessage({ deliveryMode })], `mode ${deliveryMode}`);
    assert.equal(ioapic.remoteIrr(0), false, `mode ${deliveryMode}`);
    assert.equal(ioapic.setIrq(0, true), 0, `mode ${deliveryMode}: still high, no new edge`);
  }
});

test('reserved delivery modes 011 and 110 send nothing and report -1', () => {
  for (const deliveryMode of [DeliveryMode.RemoteRead, DeliveryMode.StartUp]) {
    const { ioapic, sink } = makeIoapic();
    writeEntry(ioapic, 0, entryLow({ vector: 0x20, deliveryMode }));
    assert.equal(ioapic.setIrq(0, true), -1);
    assert.equal(sink.messages.length, 0);
    assert.equal(ioapic.counters().messagesUndelivered, 1);
  }
});

test('sink result 0 or -1 on a level entry leaves remote IRR clear; the result is returned', () => {
  for (const result of [0, -1]) {
    const { ioapic, sink } = makeIoapic();
    sink.result = result;
    writeEntry(ioapic, 5, entryLow({ vector: 0x42, level: true }));
    assert.equal(ioapic.setIrq(5, true), result);
    assert.equal(ioapic.remoteIrr(5), false);
    const counters = ioapic.counters();
    assert.deepEqual([counters.messagesCoalesced, counters.messagesUndelivered], result === 0 ? [1, 0] : [0, 1]);
  }
});

test('a level line nobody took is delivered when the guest retargets the entry (no interrupt lost)', () => {
  const { ioapic, sink } = makeIoapic();
  sink.result = (sent) => (sent.destination === 2 ? 1 : -1);
  writeEntry(ioapic, 5, entryLow({ vector: 0x43, level: true }), entryHigh(7));
  ioapic.setIrq(5, true);
  assert.equal(ioapic.remoteIrr(5), false);
  writeRegister(ioapic, entryLowIndex(5) + 1, entryHigh(2));
  assert.deepEqual(
    sink.messages.map((sent) => sent.destination),
    [7, 2],
  );
  assert.equal(ioapic.remoteIrr(5), true);
});

test('changing the vector changes the next message (per-pin message reuse follows the entry)', () => {
  const { ioapic, sink } = makeIoapic();
  writeEntry(ioapic, 4, entryLow({ vector: 0x50 }));
  ioapic.setIrq(4, true);
  ioapic.setIrq(4, false);
  ioapic.setIrq(4, true);
  ioapic.setIrq(4, false);
  writeEntryLow(ioapic, 4, entryLow({ vector: 0x51 }));
  ioapic.setIrq(4, true);
  assert.deepEqual(sink.vectors(), [0x50, 0x50, 0x51]);
});

test('extended destination ID: RTE bits 55:49 become destination bits 14:8 only when enabled', () => {
  const high = entryHigh(0x12) | (0x05 << 17);
  const enabled = makeIoapic({ extendedDestinationId: true });
  writeEntry(enabled.ioapic, 0, entryLow({ vector: 0x44 }), high);
  enabled.ioapic.setIrq(0, true);
  assert.equal(enabled.sink.messages[0]?.destination, 0x0512);
  assert.equal(enabled.ioapic.counters().reservedBitWrites, 0);

  const disabled = makeIoapic();
  writeEntry(disabled.ioapic, 0, entryLow({ vector: 0x44 }), high);
  disabled.ioapic.setIrq(0, true);
  assert.equal(disabled.sink.messages[0]?.destination, 0x12);
  assert.equal(disabled.ioapic.counters().reservedBitWrites, 1);
});

test('reset keeps an asserted level line: unmasking after reset delivers it', () => {
  const { ioapic, sink } = makeIoapic();
  ioapic.setIrq(20, true);
  ioapic.reset();
  assert.equal(ioapic.lineLevel(20), true);
  writeEntry(ioapic, 20, entryLow({ vector: 0x45, level: true }));
  assert.deepEqual(sink.vectors(), [0x45]);
});

test('reset clears remote IRR', () => {
  const { ioapic } = levelDelivered(9, 0x31);
  ioapic.reset();
  assert.equal(ioapic.remoteIrr(9), false);
});

// ---------------------------------------------------------------------------------------------
// RTC rule (§2.10, §6.33)
// ---------------------------------------------------------------------------------------------

function rtcRig() {
  const rig = makeIoapic({ rtcEoiTracking: true });
  writeEntry(rig.ioapic, IOAPIC_RTC_PIN, entryLow({ vector: 0x28 }));
  return rig;
}

function pulse(ioapic: { setIrq(pin: number, level: boolean): number }, pin: number): number {
  const result = ioapic.setIrq(pin, true);
  ioapic.setIrq(pin, false);
  return result;
}

test('RTC tracking: a second RTC edge before the EOI returns 0 and is not sent; after the EOI it is', () => {
  const { ioapic, sink } = rtcRig();
  assert.equal(pulse(ioapic, IOAPIC_RTC_PIN), 1);
  assert.equal(pulse(ioapic, IOAPIC_RTC_PIN), 0);
  assert.equal(ioapic.counters().rtcCoalesced, 1);
  ioapic.endOfInterrupt(0x28, TriggerMode.Edge);
  assert.equal(pulse(ioapic, IOAPIC_RTC_PIN), 1);
  assert.deepEqual(sink.vectors(), [0x28, 0x28]);
});

test('RTC tracking off (default): every RTC edge is sent', () => {
  const { ioapic, sink } = makeIoapic();
  writeEntry(ioapic, IOAPIC_RTC_PIN, entryLow({ vector: 0x28 }));
  assert.equal(pulse(ioapic, IOAPIC_RTC_PIN), 1);
  assert.equal(pulse(ioapic, IOAPIC_RTC_PIN), 1);
  assert.equal(sink.messages.length, 2);
});

test('RTC tracking: an edge nobody accepted opens no coalescing window', () => {
  const { ioapic, sink } = rtcRig();
  sink.result = -1;
  pulse(ioapic, IOAPIC_RTC_PIN);
  sink.result = 1;
  assert.equal(pulse(ioapic, IOAPIC_RTC_PIN), 1);
});

test('RTC tracking: reprogramming the RTC vector ends the window (its EOI could never match)', () => {
  const { ioapic, sink } = rtcRig();
  pulse(ioapic, IOAPIC_RTC_PIN);
  writeEntryLow(ioapic, IOAPIC_RTC_PIN, entryLow({ vector: 0x29 }));
  assert.equal(pulse(ioapic, IOAPIC_RTC_PIN), 1);
  assert.deepEqual(sink.vectors(), [0x28, 0x29]);
});

test('RTC tracking applies to pin 8 only', () => {
  const { ioapic, sink } = rtcRig();
  writeEntry(ioapic, 7, entryLow({ vector: 0x27 }));
  pulse(ioapic, 7);
  assert.equal(pulse(ioapic, 7), 1);
  assert.equal(sink.messages.length, 2);
});
