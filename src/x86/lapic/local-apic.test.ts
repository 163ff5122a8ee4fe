/**
 * Local APIC: register page, priorities, EOI, x2APIC, INIT/SIPI, LINT/ExtINT
 * (x86-controllers.md §3, scenarios L1–L10, L16–L25, L33, P30, and the §6 LAPIC cases).
 * Timer scenarios are in apic-timer.test.ts; properties and snapshots in local-apic.property.test.ts.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { startTypeScriptWorker } from '../../node/worker.ts';
import { test } from 'node:test';
import { VirtualClock } from '../../base/clock.ts';
import { rejectsWith } from '../../testing/irq-chip-error.ts';
import { DeliveryMode, DestinationMode, DestinationShorthand, TriggerMode } from '../interrupt-message.ts';
import { LocalApic, MpState, NO_INTERRUPT } from './local-apic.ts';
import {
  APIC_BASE_DISABLED,
  APIC_BASE_X2APIC,
  APIC_BASE_XAPIC,
  LVT_OFFSETS,
  MSR_APIC_BASE,
  Mmio,
  RecordingBus,
  SVR_ENABLED,
  enterX2apic,
  fixed,
  levelFixed,
  makeApic,
  makeEnabledApic,
  message,
  msrOf,
  rdmsr,
  vectorsOf,
} from './local-apic-test-support.ts';
import type { DoorbellWorkerData } from './local-apic-worker-fixture.ts';

const isEinval = rejectsWith('EINVAL');

// ---------------------------------------------------------------------------------------------
// RESET and software enable (L1–L3)
// ---------------------------------------------------------------------------------------------

test('L1 RESET of the BSP: APIC base 0xFEE00900, ID 0, Version 0x00050014, DFR all-ones, SVR 0xFF, LINT0 0x700', () => {
  const { apic } = makeApic({ busIndex: 0, bsp: true });
  assert.equal(rdmsr(apic, MSR_APIC_BASE), 0xfee00900n);
  assert.equal(apic.mmioRead(Mmio.Id, 4), 0);
  assert.equal(apic.mmioRead(Mmio.Version, 4), 0x00050014);
  assert.equal(apic.mmioRead(Mmio.DestinationFormat, 4), 0xffffffff);
  assert.equal(apic.mmioRead(Mmio.SpuriousVector, 4), 0xff);
  for (const offset of LVT_OFFSETS) {
    assert.equal(apic.mmioRead(offset, 4), offset === Mmio.LvtLint0 ? 0x700 : 0x00010000, `LVT 0x${offset.toString(16)}`);
  }
  for (const offset of [Mmio.TaskPriority, Mmio.ProcessorPriority, Mmio.LogicalDestination, Mmio.ErrorStatus, Mmio.IcrLow, Mmio.IcrHigh]) {
    assert.equal(apic.mmioRead(offset, 4), 0, `offset 0x${offset.toString(16)}`);
  }
  for (let bank = 0; bank < 8; bank++) {
    for (const base of [Mmio.InService, Mmio.TriggerMode, Mmio.InterruptRequest]) assert.equal(apic.mmioRead(base + bank * 16, 4), 0);
  }
  assert.equal(apic.mpState(), MpState.Runnable);
});

test('L1 RESET of AP 3: APIC base 0xFEE00800, ID 0x03000000, every LVT masked, MP state uninitialized', () => {
  const { apic } = makeApic({ busIndex: 3, bsp: false });
  assert.equal(rdmsr(apic, MSR_APIC_BASE), 0xfee00800n);
  assert.equal(apic.mmioRead(Mmio.Id, 4), 0x03000000);
  assert.equal(apic.apicId(), 3);
  for (const offset of LVT_OFFSETS) assert.equal(apic.mmioRead(offset, 4), 0x00010000);
  assert.equal(apic.mpState(), MpState.Uninitialized);
});

test('L1 reset() after guest changes restores the RESET values, including ID and APIC base', () => {
  const { apic } = makeEnabledApic({ busIndex: 2, bsp: false });
  apic.mmioWrite(Mmio.Id, 4, 0x07000000);
  apic.mmioWrite(Mmio.TaskPriority, 4, 0x20);
  apic.accept(fixed(0x40));
  apic.writeMsr(MSR_APIC_BASE, APIC_BASE_DISABLED);
  apic.reset();
  assert.equal(rdmsr(apic, MSR_APIC_BASE), 0xfee00800n);
  assert.equal(apic.mmioRead(Mmio.Id, 4), 0x02000000);
  assert.equal(apic.mmioRead(Mmio.TaskPriority, 4), 0);
  assert.equal(apic.mmioRead(Mmio.SpuriousVector, 4), 0xff);
  assert.equal(apic.irr(0x40), false);
});

test('L2 software-disabled (SVR 0xFF): writing LVT LINT1 0x400 reads back 0x00010400', () => {
  const { apic } = makeApic();
  apic.mmioWrite(Mmio.LvtLint1, 4, 0x400);
  assert.equal(apic.mmioRead(Mmio.LvtLint1, 4), 0x00010400);
});

test('L3 software-disabled: a fixed IPI is dropped (IRR 0), an NMI IPI is pending', () => {
  const { apic } = makeApic();
  assert.equal(apic.accept(fixed(0x40)), -1);
  assert.equal(apic.irr(0x40), false);
  assert.equal(apic.counters().droppedWhileDisabled, 1);
  assert.equal(apic.accept(message(DeliveryMode.Nmi)), 1);
  assert.equal(apic.takeNmi(), true);
  assert.equal(apic.takeNmi(), false);
});

test('§6.24 software disable masks every LVT, and LVT writes keep the mask until re-enabled', () => {
  const { apic } = makeEnabledApic();
  apic.mmioWrite(Mmio.LvtLint1, 4, 0x400);
  apic.mmioWrite(Mmio.LvtError, 4, 0x3e);
  apic.mmioWrite(Mmio.SpuriousVector, 4, 0xff);
  for (const offset of LVT_OFFSETS) assert.ok((apic.mmioRead(offset, 4) & 0x10000) !== 0, `LVT 0x${offset.toString(16)} masked`);
  apic.mmioWrite(Mmio.LvtError, 4, 0x3e);
  assert.equal(apic.mmioRead(Mmio.LvtError, 4), 0x1003e);
  apic.mmioWrite(Mmio.SpuriousVector, 4, SVR_ENABLED);
  assert.equal(apic.mmioRead(Mmio.LvtError, 4), 0x1003e, 're-enabling does not unmask');
  apic.mmioWrite(Mmio.LvtError, 4, 0x3e);
  assert.equal(apic.mmioRead(Mmio.LvtError, 4), 0x3e);
});

// ---------------------------------------------------------------------------------------------
// Priority, acknowledge, EOI (L4–L10)
// ---------------------------------------------------------------------------------------------

test('L4 accept fixed 0x31: IRR set; take → 0x31; ISR 0x31; PPR 0x30', () => {
  const { apic } = makeEnabledApic();
  assert.equal(apic.accept(fixed(0x31)), 1);
  assert.equal(apic.irr(0x31), true);
  assert.equal(apic.hasInterrupt(), true);
  assert.equal(apic.acknowledgeInterrupt(), 0x31);
  assert.equal(apic.irr(0x31), false);
  assert.equal(apic.isr(0x31), true);
  assert.equal(apic.mmioRead(Mmio.ProcessorPriority, 4), 0x30);
  assert.equal(apic.mmioRead(Mmio.InService + 0x10, 4), 1 << 0x11, 'ISR register 1 holds vector 0x31');
});

test('L5 same class waits, a higher class nests, EOIs retire highest first', () => {
  const { apic } = makeEnabledApic();
  apic.accept(fixed(0x31));
  apic.acknowledgeInterrupt();
  apic.accept(fixed(0x32));
  assert.equal(apic.hasInterrupt(), false);
  assert.equal(apic.acknowledgeInterrupt(), NO_INTERRUPT);
  assert.equal(apic.isr(0x32), false);
  apic.accept(fixed(0x41));
  assert.equal(apic.acknowledgeInterrupt(), 0x41);
  assert.deepEqual(vectorsOf((v) => apic.isr(v)), [0x31, 0x41]);
  apic.mmioWrite(Mmio.Eoi, 4, 0);
  assert.deepEqual(vectorsOf((v) => apic.isr(v)), [0x31]);
  assert.equal(apic.hasInterrupt(), false, '0x32 still waits behind 0x31');
  apic.mmioWrite(Mmio.Eoi, 4, 0);
  assert.deepEqual(vectorsOf((v) => apic.isr(v)), []);
  assert.equal(apic.acknowledgeInterrupt(), 0x32);
});

test('L6 PPR table: TPR 0x10 → 0x10; ISR {0x11} → 0x10; ISR {0x25,0x11} TPR 0x31 → 0x31; TPR 0x19 → 0x20', () => {
  const { apic } = makeEnabledApic();
  apic.mmioWrite(Mmio.TaskPriority, 4, 0x10);
  assert.equal(apic.mmioRead(Mmio.ProcessorPriority, 4), 0x10);
  apic.mmioWrite(Mmio.TaskPriority, 4, 0);
  apic.accept(fixed(0x11));
  apic.acknowledgeInterrupt();
  assert.equal(apic.mmioRead(Mmio.ProcessorPriority, 4), 0x10);
  apic.accept(fixed(0x25));
  assert.equal(apic.acknowledgeInterrupt(), 0x25);
  apic.mmioWrite(Mmio.TaskPriority, 4, 0x31);
  assert.equal(apic.mmioRead(Mmio.ProcessorPriority, 4), 0x31);
  apic.mmioWrite(Mmio.TaskPriority, 4, 0x19);
  assert.equal(apic.mmioRead(Mmio.ProcessorPriority, 4), 0x20);
  assert.equal(apic.processorPriority(), 0x20);
});

test('L7 TPR 0x40 blocks IRR 0x45; IRR 0x51 is deliverable', () => {
  const { apic } = makeEnabledApic();
  apic.mmioWrite(Mmio.TaskPriority, 4, 0x40);
  apic.accept(fixed(0x45));
  assert.equal(apic.hasInterrupt(), false);
  apic.accept(fixed(0x51));
  assert.equal(apic.hasInterrupt(), true);
  assert.equal(apic.acknowledgeInterrupt(), 0x51);
});

test('§3.6 TPR raised between INTR and INTA: acknowledge returns the spurious vector, ISR and IRR untouched', () => {
  const { apic } = makeEnabledApic();
  apic.mmioWrite(Mmio.SpuriousVector, 4, 0x1ef);
  apic.accept(fixed(0x45));
  assert.equal(apic.hasInterrupt(), true);
  apic.mmioWrite(Mmio.TaskPriority, 4, 0x40);
  assert.equal(apic.acknowledgeInterrupt(), 0xef);
  assert.equal(apic.irr(0x45), true);
  assert.deepEqual(vectorsOf((v) => apic.isr(v)), []);
  assert.equal(apic.counters().spuriousInterrupts, 1);
  apic.mmioWrite(Mmio.TaskPriority, 4, 0);
  assert.equal(apic.acknowledgeInterrupt(), 0x45);
});

test('L8 §6.23 EOI with ISR empty: nothing changes, no EOI broadcast', () => {
  const { apic, eoi } = makeEnabledApic();
  apic.accept(levelFixed(0x50));
  const before = apic.snapshot();
  apic.mmioWrite(Mmio.Eoi, 4, 0);
  assert.deepEqual(eoi.vectors, []);
  assert.equal(apic.counters().ignoredEois, 1);
  assert.equal(apic.irr(0x50), true);
  assert.equal(apic.tmr(0x50), true);
  // Only the counter word moved.
  assert.equal(before.length, apic.snapshot().length);
});

test('L9 §6.32 level 0x50: EOI broadcasts 0x50; a later edge accept of 0x50 clears its TMR bit', () => {
  const { apic, eoi } = makeEnabledApic();
  apic.accept(levelFixed(0x50));
  assert.equal(apic.tmr(0x50), true);
  assert.equal(apic.acknowledgeInterrupt(), 0x50);
  apic.mmioWrite(Mmio.Eoi, 4, 0);
  assert.deepEqual(eoi.vectors, [0x50]);
  apic.accept(fixed(0x50));
  assert.equal(apic.tmr(0x50), false);
  apic.acknowledgeInterrupt();
  apic.mmioWrite(Mmio.Eoi, 4, 0);
  assert.deepEqual(eoi.vectors, [0x50], 'edge EOI is not broadcast');
});

test('§6.11 the EOI broadcast reaches the listener before the EOI write returns', () => {
  const { apic, eoi } = makeEnabledApic();
  apic.accept(levelFixed(0x61));
  apic.acknowledgeInterrupt();
  const seenDuringWrite: number[] = [];
  apic.setEoiListener({ endOfInterrupt: (vector) => seenDuringWrite.push(vector) });
  apic.mmioWrite(Mmio.Eoi, 4, 0);
  assert.deepEqual(seenDuringWrite, [0x61]);
  assert.deepEqual(eoi.vectors, []);
});

test('L10 §6.9 SVR 0x11FF: bit 12 reads 0 without directed EOI (Version bit 24 clear)', () => {
  const { apic } = makeApic();
  apic.mmioWrite(Mmio.SpuriousVector, 4, 0x11ff);
  assert.equal(apic.mmioRead(Mmio.SpuriousVector, 4), 0x1ff);
  assert.equal(apic.mmioRead(Mmio.Version, 4) & (1 << 24), 0);
  assert.equal(apic.counters().reservedBitWrites, 1);
});

test('L10 §6.10 with directed EOI: Version bit 24, SVR bit 12 sticks, and a level EOI is not broadcast', () => {
  const { apic, eoi } = makeApic({ directedEoi: true });
  assert.equal(apic.mmioRead(Mmio.Version, 4), 0x01050014);
  apic.mmioWrite(Mmio.SpuriousVector, 4, 0x11ff);
  assert.equal(apic.mmioRead(Mmio.SpuriousVector, 4), 0x11ff);
  apic.accept(levelFixed(0x52));
  apic.acknowledgeInterrupt();
  apic.mmioWrite(Mmio.Eoi, 4, 0);
  assert.deepEqual(eoi.vectors, []);
  assert.equal(apic.isr(0x52), false);
  apic.mmioWrite(Mmio.SpuriousVector, 4, 0x1ff);
  apic.accept(levelFixed(0x52));
  apic.acknowledgeInterrupt();
  apic.mmioWrite(Mmio.Eoi, 4, 0);
  assert.deepEqual(eoi.vectors, [0x52]);
});

test('a fixed vector already in IRR coalesces (result 0, counted)', () => {
  const { apic } = makeEnabledApic();
  assert.equal(apic.accept(fixed(0x70)), 1);
  assert.equal(apic.accept(fixed(0x70)), 0);
  assert.equal(apic.counters().coalescedInterrupts, 1);
  assert.equal(apic.acknowledgeInterrupt(), 0x70);
  assert.equal(apic.acknowledgeInterrupt(), NO_INTERRUPT);
});

test('a level-triggered de-assert fixed message is dropped', () => {
  const { apic } = makeEnabledApic();
  assert.equal(apic.accept(fixed(0x70, { triggerMode: TriggerMode.Level, level: false })), -1);
  assert.equal(apic.irr(0x70), false);
  assert.equal(apic.counters().droppedDeasserts, 1);
});

test('vectors 0–15 are not received (SDM §11.5.3): ESR bit 6 after the ESR write, LVT Error delivered', () => {
  const { apic } = makeEnabledApic();
  apic.mmioWrite(Mmio.LvtError, 4, 0xfe);
  assert.equal(apic.accept(fixed(0x05)), -1);
  assert.equal(apic.irr(0x05), false);
  assert.equal(apic.irr(0xfe), true, 'LVT Error interrupt');
  assert.equal(apic.mmioRead(Mmio.ErrorStatus, 4), 0, 'errors become readable only after an ESR write');
  apic.mmioWrite(Mmio.ErrorStatus, 4, 0);
  assert.equal(apic.mmioRead(Mmio.ErrorStatus, 4), 0x40);
  apic.mmioWrite(Mmio.ErrorStatus, 4, 0);
  assert.equal(apic.mmioRead(Mmio.ErrorStatus, 4), 0, 'the next write latches the (empty) new log');
  assert.equal(apic.counters().illegalVectors, 1);
});

test('NMI, SMI, INIT and SIPI are accepted while software-disabled; a second NMI before it is taken coalesces', () => {
  const { apic } = makeApic({ busIndex: 1, bsp: false });
  assert.equal(apic.accept(message(DeliveryMode.Nmi)), 1);
  assert.equal(apic.accept(message(DeliveryMode.Nmi)), 0);
  assert.equal(apic.accept(message(DeliveryMode.Smi)), 1);
  assert.equal(apic.counters().coalescedNmis, 1);
  assert.equal(apic.hasPendingEvents(false), true);
  assert.equal(apic.takeSmi(), true);
  assert.equal(apic.takeNmi(), true);
  assert.equal(apic.hasPendingEvents(false), false);
});

test('a remote-read message is not acted on', () => {
  const { apic } = makeEnabledApic();
  assert.equal(apic.accept(message(DeliveryMode.RemoteRead, 0x40)), -1);
  assert.equal(apic.counters().unsupportedMessages, 1);
});

// ---------------------------------------------------------------------------------------------
// ICR and IPIs
// ---------------------------------------------------------------------------------------------

test('ICR write sends the message with the stored ICR high destination; ICR low reads back with delivery status 0', () => {
  const { apic, sink } = makeEnabledApic();
  apic.mmioWrite(Mmio.IcrHigh, 4, 0x01000000);
  assert.deepEqual(sink.messages, [], 'ICR high alone sends nothing');
  apic.mmioWrite(Mmio.IcrLow, 4, 0x00005041);
  assert.equal(apic.mmioRead(Mmio.IcrLow, 4), 0x00004041);
  assert.equal(apic.mmioRead(Mmio.IcrHigh, 4), 0x01000000);
  assert.deepEqual(sink.messages, [
    {
      destination: 1,
      destinationMode: DestinationMode.Physical,
      deliveryMode: DeliveryMode.Fixed,
      vector: 0x41,
      triggerMode: TriggerMode.Edge,
      level: true,
      shorthand: DestinationShorthand.None,
      redirectionHint: false,
      sourceApic: 0,
    },
  ]);
});

test('ICR decodes every delivery mode, logical mode, level/trigger and each shorthand', () => {
  const { apic, sink } = makeEnabledApic();
  const modes = [DeliveryMode.Fixed, DeliveryMode.LowestPriority, DeliveryMode.Smi, DeliveryMode.Nmi, DeliveryMode.Init, DeliveryMode.StartUp, DeliveryMode.ExtInt];
  for (const mode of modes) apic.mmioWrite(Mmio.IcrLow, 4, 0x00004840 | (mode << 8));
  assert.deepEqual(
    sink.messages.map((sent) => sent.deliveryMode),
    modes,
  );
  assert.ok(sink.messages.every((sent) => sent.destinationMode === DestinationMode.Logical && sent.vector === 0x40));
  sink.messages.length = 0;
  for (const shorthand of [0, 1, 2, 3]) apic.mmioWrite(Mmio.IcrLow, 4, 0x00008000 | (shorthand << 18) | 0x42);
  assert.deepEqual(
    sink.messages.map((sent) => [sent.shorthand, sent.triggerMode, sent.level]),
    [0, 1, 2, 3].map((shorthand) => [shorthand, TriggerMode.Level, false]),
  );
});

test('ICR with a fixed vector below 16 is not sent and logs "send illegal vector" (ESR bit 5)', () => {
  const { apic, sink } = makeEnabledApic();
  apic.mmioWrite(Mmio.IcrLow, 4, 0x0000400f);
  assert.deepEqual(sink.messages, []);
  apic.mmioWrite(Mmio.ErrorStatus, 4, 0);
  assert.equal(apic.mmioRead(Mmio.ErrorStatus, 4), 0x20);
  apic.mmioWrite(Mmio.IcrLow, 4, 0x0000460f);
  assert.equal(sink.messages.length, 1, 'a SIPI vector is a page number, any value is legal');
});

test('ICR reserved bits are dropped and counted in xAPIC mode', () => {
  const { apic, sink } = makeEnabledApic();
  // Reserved 31:20, 17:16 and 13 set; shorthand 11 (all excluding self).
  apic.mmioWrite(Mmio.IcrLow, 4, 0xffff2041);
  assert.equal(apic.mmioRead(Mmio.IcrLow, 4), 0x000c0041);
  assert.equal(sink.messages[0]?.shorthand, DestinationShorthand.AllExcludingSelf);
  assert.equal(apic.counters().reservedBitWrites, 1);
});

test('an IPI with no sink wired is counted as undeliverable, not thrown', () => {
  const apic = LocalApic.create({ busIndex: 0, bsp: true, clock: new VirtualClock() });
  apic.mmioWrite(Mmio.IcrLow, 4, 0x00004041);
  assert.equal(apic.counters().undeliverableIpis, 1);
});

test('an IPI to self through the bus: the APIC does not hold its lock while the bus calls accept', () => {
  const bus = new RecordingBus();
  const { apic } = makeEnabledApic({ ipiSink: bus });
  bus.addMembers(apic);
  apic.mmioWrite(Mmio.IcrLow, 4, 0x00044042);
  assert.equal(apic.irr(0x42), true);
});

// ---------------------------------------------------------------------------------------------
// xAPIC register page decoding (L33)
// ---------------------------------------------------------------------------------------------

test('L33 1-byte and 2-byte writes and unaligned 4-byte accesses are ignored and counted', () => {
  const { apic } = makeEnabledApic();
  apic.mmioWrite(Mmio.TaskPriority, 1, 0x20);
  apic.mmioWrite(Mmio.TaskPriority, 2, 0x20);
  apic.mmioWrite(Mmio.TaskPriority + 4, 4, 0x20);
  apic.mmioWrite(Mmio.TaskPriority, 8, 0x20);
  assert.equal(apic.mmioRead(Mmio.TaskPriority, 4), 0);
  assert.equal(apic.mmioRead(Mmio.Version, 1), 0);
  assert.equal(apic.mmioRead(Mmio.Version + 4, 4), 0);
  assert.equal(apic.counters().ignoredAccesses, 6);
});

test('reserved offsets set ESR bit 7; read-only registers ignore writes; EOI reads 0', () => {
  const { apic } = makeEnabledApic();
  assert.equal(apic.mmioRead(0x010, 4), 0);
  apic.mmioWrite(Mmio.LvtCmci, 4, 0x40);
  apic.mmioWrite(Mmio.SelfIpi, 4, 0x40);
  assert.equal(apic.irr(0x40), false, 'SELF IPI does not exist in xAPIC mode');
  apic.mmioWrite(Mmio.Version, 4, 0);
  apic.mmioWrite(Mmio.ProcessorPriority, 4, 0xf0);
  apic.mmioWrite(Mmio.InterruptRequest + 0x20, 4, 0xffffffff);
  assert.equal(apic.mmioRead(Mmio.Version, 4), 0x00050014);
  assert.equal(apic.irr(0x50), false);
  assert.equal(apic.mmioRead(Mmio.Eoi, 4), 0);
  apic.mmioWrite(Mmio.ErrorStatus, 4, 0);
  assert.equal(apic.mmioRead(Mmio.ErrorStatus, 4), 0x80);
  assert.deepEqual(
    [apic.counters().reservedRegisterAccesses, apic.counters().ignoredWrites, apic.counters().writeOnlyReads],
    [3, 3, 1],
  );
});

test('register write masks: ID bits 31:24, TPR 7:0, LDR 31:24, DFR model only, TDCR bits 0,1,3, LVT fields per entry', () => {
  const { apic } = makeEnabledApic();
  apic.mmioWrite(Mmio.Id, 4, 0x05ffffff);
  apic.mmioWrite(Mmio.TaskPriority, 4, 0x1ff);
  apic.mmioWrite(Mmio.LogicalDestination, 4, 0x12345678);
  apic.mmioWrite(Mmio.DestinationFormat, 4, 0x00000000);
  apic.mmioWrite(Mmio.TimerDivide, 4, 0xf);
  apic.mmioWrite(Mmio.LvtLint0, 4, 0xffffffff);
  apic.mmioWrite(Mmio.LvtThermal, 4, 0xffffffff);
  apic.mmioWrite(Mmio.LvtError, 4, 0xffffffff);
  assert.equal(apic.mmioRead(Mmio.Id, 4), 0x05000000);
  assert.equal(apic.apicId(), 5);
  assert.equal(apic.mmioRead(Mmio.TaskPriority, 4), 0xff);
  assert.equal(apic.mmioRead(Mmio.LogicalDestination, 4), 0x12000000);
  assert.equal(apic.logicalDestination(), 0x12000000);
  assert.equal(apic.mmioRead(Mmio.DestinationFormat, 4), 0x0fffffff);
  assert.equal(apic.destinationFormat(), 0x0fffffff);
  assert.equal(apic.mmioRead(Mmio.TimerDivide, 4), 0xb);
  assert.equal(apic.mmioRead(Mmio.LvtLint0, 4), 0x0001a7ff, 'delivery status and remote IRR stay read-only');
  assert.equal(apic.mmioRead(Mmio.LvtThermal, 4), 0x000107ff);
  assert.equal(apic.mmioRead(Mmio.LvtError, 4), 0x000100ff);
  // All but the DFR write: its bits 27:0 are read-as-one, not reserved.
  assert.equal(apic.counters().reservedBitWrites, 7);
});

test('writing back the read-only LVT bits (delivery status, remote IRR) is not a reserved-bit write', () => {
  const { apic } = makeEnabledApic();
  apic.mmioWrite(Mmio.LvtLint1, 4, 0x00005400);
  assert.equal(apic.mmioRead(Mmio.LvtLint1, 4), 0x400);
  assert.equal(apic.counters().reservedBitWrites, 0);
});

// ---------------------------------------------------------------------------------------------
// x2APIC (L21–L25)
// ---------------------------------------------------------------------------------------------

test('L21 x2APIC enable: msr 0x802 = x2APIC ID, msr 0x80D = derived LDR 0x00020008, the MMIO page reads all-ones', () => {
  const { apic } = makeEnabledApic({ busIndex: 0x23, bsp: false });
  assert.equal(apic.writeMsr(MSR_APIC_BASE, 0xfee00c00n), true);
  assert.equal(rdmsr(apic, MSR_APIC_BASE), 0xfee00c00n);
  assert.equal(apic.isX2apicMode(), true);
  assert.equal(rdmsr(apic, msrOf(Mmio.Id)), 0x23n);
  assert.equal(rdmsr(apic, msrOf(Mmio.LogicalDestination)), 0x00020008n);
  assert.equal(apic.apicId(), 0x23);
  assert.equal(apic.logicalDestination(), 0x00020008);
  assert.equal(apic.destinationFormat(), 0x0fffffff, 'x2APIC implies the cluster model');
  assert.equal(apic.mmioRead(Mmio.Version, 4), 0xffffffff);
  assert.equal(apic.mmioRead(Mmio.Version, 2), 0xffff);
  apic.mmioWrite(Mmio.TaskPriority, 4, 0x20);
  assert.equal(rdmsr(apic, msrOf(Mmio.TaskPriority)), 0n, 'MMIO writes are dropped');
  assert.equal(rdmsr(apic, msrOf(Mmio.SpuriousVector)), 0x1ffn, 'registers survive xAPIC → x2APIC');
});

test('L21 an x2APIC ID above 255 keeps its low byte as the xAPIC ID at RESET', () => {
  const { apic } = makeApic({ busIndex: 1, bsp: false, x2apicId: 0x1234 });
  assert.equal(apic.mmioRead(Mmio.Id, 4), 0x34000000);
  assert.equal(apic.x2apicId(), 0x1234);
  enterX2apic(apic);
  assert.equal(rdmsr(apic, msrOf(Mmio.Id)), 0x1234n);
  assert.equal(rdmsr(apic, msrOf(Mmio.LogicalDestination)), 0x01230010n);
});

test('L22 x2APIC #GP: rdmsr EOI; wrmsr ID, DFR, ICR-high, APR; ESR ← 1; ICR with bit 13', () => {
  const { apic } = makeEnabledApic();
  enterX2apic(apic);
  assert.equal(apic.readMsr(0x80b).ok, false);
  assert.equal(apic.writeMsr(0x802, 0n), false);
  assert.equal(apic.writeMsr(0x80e, 0n), false);
  assert.equal(apic.writeMsr(0x831, 0n), false);
  assert.equal(apic.writeMsr(0x809, 0n), false);
  assert.equal(apic.writeMsr(0x828, 1n), false);
  assert.equal(apic.writeMsr(0x830, 0x2000n | 0x4041n), false);
  assert.equal(apic.counters().generalProtectionFaults, 7);
});

test('L22 more x2APIC #GPs: absent registers, read-only registers, bits 63:32, non-zero EOI, reading SELF IPI; xAPIC mode has no x2APIC MSRs', () => {
  const { apic } = makeEnabledApic();
  assert.equal(apic.readMsr(msrOf(Mmio.TaskPriority)).ok, false, 'x2APIC MSRs #GP in xAPIC mode');
  enterX2apic(apic);
  for (const absent of [0x800, 0x801, 0x804, 0x809, 0x80c, 0x80e, 0x82f, 0x831, 0x83a, 0x8ff]) assert.equal(apic.readMsr(absent).ok, false, `0x${absent.toString(16)}`);
  for (const readOnly of [0x803, 0x80a, 0x80d, 0x810, 0x818, 0x820, 0x839]) assert.equal(apic.writeMsr(readOnly, 0n), false, `0x${readOnly.toString(16)}`);
  assert.equal(apic.writeMsr(msrOf(Mmio.TaskPriority), 1n << 32n), false);
  assert.equal(apic.writeMsr(msrOf(Mmio.Eoi), 1n), false);
  assert.equal(apic.readMsr(msrOf(Mmio.SelfIpi)).ok, false);
  assert.equal(apic.writeMsr(msrOf(Mmio.TaskPriority), 0x20n), true);
  assert.equal(rdmsr(apic, msrOf(Mmio.TaskPriority)), 0x20n);
});

test('L23 x2APIC ICR 0x830 = (1 << 32) | 0x4051 sends a fixed IPI to x2APIC ID 1', () => {
  const bus = new RecordingBus();
  const sender = makeEnabledApic({ busIndex: 0, ipiSink: bus }).apic;
  const receiver = makeEnabledApic({ busIndex: 1, bsp: false, ipiSink: bus }).apic;
  bus.addMembers(sender, receiver);
  enterX2apic(sender);
  enterX2apic(receiver);
  assert.equal(sender.writeMsr(0x830, (1n << 32n) | 0x4051n), true);
  assert.equal(receiver.irr(0x51), true);
  assert.equal(sender.irr(0x51), false);
  assert.equal(rdmsr(sender, 0x830), (1n << 32n) | 0x4051n, 'the 64-bit ICR reads back');
});

test('L23 an x2APIC ICR destination is the full 32 bits', () => {
  const { apic, sink } = makeEnabledApic();
  enterX2apic(apic);
  apic.writeMsr(0x830, (0x12345678n << 32n) | 0x4051n);
  assert.equal(sink.messages[0]?.destination, 0x12345678);
});

test('L24 SELF IPI 0x60: own IRR 0x60 with TMR clear; 0x160 → #GP', () => {
  const { apic } = makeEnabledApic();
  apic.accept(levelFixed(0x60));
  apic.acknowledgeInterrupt();
  apic.writeMsr(MSR_APIC_BASE, APIC_BASE_X2APIC | 0x100n);
  assert.equal(apic.tmr(0x60), true);
  assert.equal(apic.writeMsr(0x83f, 0x60n), true);
  assert.equal(apic.irr(0x60), true);
  assert.equal(apic.tmr(0x60), false);
  assert.equal(apic.writeMsr(0x83f, 0x160n), false);
});

test('L25 APIC base transitions: x2APIC → xAPIC #GP; x2APIC → disabled OK; disabled → x2APIC #GP; EN=0,EXTD=1 #GP; bit 9 #GP', () => {
  const { apic } = makeEnabledApic();
  enterX2apic(apic);
  assert.equal(apic.writeMsr(MSR_APIC_BASE, APIC_BASE_XAPIC | 0x100n), false);
  assert.equal(apic.isX2apicMode(), true);
  assert.equal(apic.writeMsr(MSR_APIC_BASE, APIC_BASE_DISABLED | 0x100n), true);
  assert.equal(apic.isHardwareEnabled(), false);
  assert.equal(apic.writeMsr(MSR_APIC_BASE, APIC_BASE_X2APIC | 0x100n), false);
  assert.equal(apic.writeMsr(MSR_APIC_BASE, 0xfee00400n), false);
  assert.equal(apic.writeMsr(MSR_APIC_BASE, APIC_BASE_XAPIC | 0x200n), false);
  assert.equal(apic.writeMsr(MSR_APIC_BASE, APIC_BASE_XAPIC | (1n << 52n)), false, 'above MAXPHYADDR');
  assert.equal(rdmsr(apic, MSR_APIC_BASE), 0xfee00100n);
  assert.equal(apic.writeMsr(MSR_APIC_BASE, APIC_BASE_XAPIC | 0x100n), true);
  assert.equal(apic.counters().generalProtectionFaults, 5);
});

test('L25 x2APIC → disabled → xAPIC: register state is reset, the legacy 8-bit ID comes back (SDM §11.12.5)', () => {
  const { apic } = makeEnabledApic({ busIndex: 0x23, bsp: false });
  enterX2apic(apic);
  apic.writeMsr(msrOf(Mmio.TaskPriority), 0x30n);
  apic.accept(fixed(0x80));
  apic.writeMsr(MSR_APIC_BASE, APIC_BASE_DISABLED);
  assert.equal(apic.accept(fixed(0x81)), -1, 'a disabled APIC is off the bus');
  apic.writeMsr(MSR_APIC_BASE, APIC_BASE_XAPIC);
  assert.equal(apic.mmioRead(Mmio.Id, 4), 0x23000000);
  assert.equal(apic.mmioRead(Mmio.LogicalDestination, 4), 0);
  assert.equal(apic.mmioRead(Mmio.TaskPriority, 4), 0);
  assert.equal(apic.mmioRead(Mmio.SpuriousVector, 4), 0xff);
  assert.equal(apic.irr(0x80), false);
});

test('setApicBase (host-initiated) skips the transition rules but rejects reserved bits with EINVAL', () => {
  const { apic } = makeApic();
  apic.setApicBase(APIC_BASE_DISABLED | 0x100n);
  apic.setApicBase(APIC_BASE_X2APIC | 0x100n);
  assert.equal(apic.isX2apicMode(), true);
  apic.setApicBase(APIC_BASE_XAPIC | 0x100n);
  assert.equal(apic.mmioRead(Mmio.Id, 4), 0);
  assert.throws(() => {
    apic.setApicBase(0xfee00400n);
  }, isEinval);
  assert.throws(() => {
    apic.setApicBase(APIC_BASE_XAPIC | 1n);
  }, isEinval);
  assert.equal(apic.apicBase(), APIC_BASE_XAPIC | 0x100n);
});

test('the APIC base address is relocatable and reads back', () => {
  const { apic } = makeApic();
  assert.equal(apic.writeMsr(MSR_APIC_BASE, 0xfed00900n), true);
  assert.equal(rdmsr(apic, MSR_APIC_BASE), 0xfed00900n);
});

// ---------------------------------------------------------------------------------------------
// INIT / SIPI and MP states (L16–L20, §6.28, §6.29)
// ---------------------------------------------------------------------------------------------

/** An IPI as the BSP's ICR produces it, for an AP to accept. */
function ipiFromIcr(icrLow: number): ReturnType<typeof fixed> {
  const { apic, sink } = makeEnabledApic();
  apic.mmioWrite(Mmio.IcrHigh, 4, 0x01000000);
  apic.mmioWrite(Mmio.IcrLow, 4, icrLow);
  const sent = sink.messages[0];
  assert.ok(sent !== undefined);
  return sent;
}

test('L16 INIT IPI 0x4500 to an uninitialized AP: INIT reset, INIT_RECEIVED; SIPI 0x469A starts at 9A00:0000; a second SIPI is ignored', () => {
  const { apic } = makeEnabledApic({ busIndex: 1, bsp: false });
  apic.mmioWrite(Mmio.Id, 4, 0x07000000);
  apic.mmioWrite(Mmio.TaskPriority, 4, 0x20);
  apic.accept(fixed(0x40));
  assert.equal(apic.mpState(), MpState.Uninitialized);
  assert.equal(apic.accept(ipiFromIcr(0x00004500)), 1);
  assert.deepEqual(apic.processInitSipi(), { initReset: true, startup: undefined });
  assert.equal(apic.mpState(), MpState.InitReceived);
  assert.equal(apic.mmioRead(Mmio.TaskPriority, 4), 0);
  assert.equal(apic.mmioRead(Mmio.SpuriousVector, 4), 0xff);
  assert.equal(apic.irr(0x40), false);
  assert.equal(apic.mmioRead(Mmio.Id, 4), 0x07000000, '§6.29 INIT keeps the APIC ID');
  assert.equal(apic.accept(ipiFromIcr(0x0000469a)), 1);
  assert.deepEqual(apic.processInitSipi(), {
    initReset: false,
    startup: { vector: 0x9a, csSelector: 0x9a00, csBase: 0x9a000, ip: 0 },
  });
  assert.equal(apic.mpState(), MpState.Runnable);
  apic.accept(ipiFromIcr(0x0000469a));
  assert.deepEqual(apic.processInitSipi(), { initReset: false, startup: undefined });
  assert.equal(apic.mpState(), MpState.Runnable);
  assert.equal(apic.counters().discardedSipis, 1);
});

test('L17 a SIPI to an uninitialized AP is ignored', () => {
  const { apic } = makeApic({ busIndex: 1, bsp: false });
  assert.equal(apic.accept(message(DeliveryMode.StartUp, 0x9a)), 1);
  assert.deepEqual(apic.processInitSipi(), { initReset: false, startup: undefined });
  assert.equal(apic.mpState(), MpState.Uninitialized);
  assert.equal(apic.counters().discardedSipis, 1);
});

test('L18 INIT level de-assert (0x8500) has no effect', () => {
  const { apic } = makeApic({ busIndex: 1, bsp: false });
  const deassert = ipiFromIcr(0x00008500);
  assert.deepEqual([deassert.deliveryMode, deassert.triggerMode, deassert.level], [DeliveryMode.Init, TriggerMode.Level, false]);
  assert.equal(apic.accept(deassert), -1);
  assert.equal(apic.hasPendingEvents(false), false);
  assert.deepEqual(apic.processInitSipi(), { initReset: false, startup: undefined });
  assert.equal(apic.mpState(), MpState.Uninitialized);
});

test('L19 INIT to the BSP: INIT reset, then RUNNABLE (no wait for SIPI); §6.29 the APIC base and ID are kept', () => {
  const { apic } = makeEnabledApic({ busIndex: 0, bsp: true });
  apic.writeMsr(MSR_APIC_BASE, 0xfed00900n);
  apic.mmioWrite(Mmio.TaskPriority, 4, 0x20);
  apic.mmioWrite(Mmio.LvtLint0, 4, 0x10000);
  apic.accept(message(DeliveryMode.Init));
  assert.deepEqual(apic.processInitSipi(), { initReset: true, startup: undefined });
  assert.equal(apic.mpState(), MpState.Runnable);
  assert.equal(rdmsr(apic, MSR_APIC_BASE), 0xfed00900n);
  assert.equal(apic.mmioRead(Mmio.TaskPriority, 4), 0);
  assert.equal(apic.mmioRead(Mmio.LvtLint0, 4), 0x700, 'BSP LINT0 back to ExtINT (KVM quirk, §3.16)');
});

test('L20 INIT, SIPI, INIT before processing: the SIPI is discarded', () => {
  const { apic } = makeApic({ busIndex: 1, bsp: false });
  apic.accept(message(DeliveryMode.Init));
  apic.accept(message(DeliveryMode.StartUp, 0x10));
  assert.equal(apic.accept(message(DeliveryMode.Init)), 0, 'a second INIT coalesces with the pending one');
  assert.deepEqual(apic.processInitSipi(), { initReset: true, startup: undefined });
  assert.equal(apic.mpState(), MpState.InitReceived);
  assert.equal(apic.counters().discardedSipis, 1);
});

test('INIT then SIPI both pending: one processInitSipi resets and starts', () => {
  const { apic } = makeApic({ busIndex: 1, bsp: false });
  apic.accept(message(DeliveryMode.Init));
  apic.accept(message(DeliveryMode.StartUp, 0x08));
  assert.deepEqual(apic.processInitSipi(), { initReset: true, startup: { vector: 8, csSelector: 0x800, csBase: 0x8000, ip: 0 } });
  assert.equal(apic.mpState(), MpState.Runnable);
});

test('INIT blocked (SMM, VMX root): INIT stays pending and a pending SIPI is dropped', () => {
  const { apic } = makeApic({ busIndex: 1, bsp: false });
  apic.accept(message(DeliveryMode.Init));
  apic.accept(message(DeliveryMode.StartUp, 0x08));
  assert.deepEqual(apic.processInitSipi(true), { initReset: false, startup: undefined });
  assert.equal(apic.counters().discardedSipis, 1);
  assert.deepEqual(apic.processInitSipi(), { initReset: true, startup: undefined });
});

test('INIT clears a pending NMI and SMI with the processor reset', () => {
  const { apic } = makeApic({ busIndex: 1, bsp: false });
  apic.accept(message(DeliveryMode.Nmi));
  apic.accept(message(DeliveryMode.Smi));
  apic.accept(message(DeliveryMode.Init));
  apic.processInitSipi();
  assert.equal(apic.takeNmi(), false);
  assert.equal(apic.takeSmi(), false);
});

test('INIT in x2APIC mode keeps the x2APIC ID and the derived LDR', () => {
  const { apic } = makeEnabledApic({ busIndex: 0x23, bsp: false });
  enterX2apic(apic);
  apic.accept(message(DeliveryMode.Init));
  apic.processInitSipi();
  assert.equal(apic.isX2apicMode(), true);
  assert.equal(rdmsr(apic, msrOf(Mmio.Id)), 0x23n);
  assert.equal(rdmsr(apic, msrOf(Mmio.LogicalDestination)), 0x00020008n);
  assert.equal(rdmsr(apic, msrOf(Mmio.SpuriousVector)), 0xffn);
});

test('setMpState(SipiReceived) becomes INIT_RECEIVED with the latched SIPI pending, as KVM', () => {
  const { apic } = makeApic({ busIndex: 1, bsp: false });
  apic.accept(message(DeliveryMode.StartUp, 0x12));
  apic.processInitSipi();
  apic.setMpState(MpState.SipiReceived);
  assert.equal(apic.mpState(), MpState.InitReceived);
  assert.deepEqual(apic.processInitSipi().startup, { vector: 0x12, csSelector: 0x1200, csBase: 0x12000, ip: 0 });
});

test('a halted vCPU becomes runnable when it takes an interrupt or an NMI', () => {
  const { apic } = makeEnabledApic();
  apic.setMpState(MpState.Halted);
  assert.equal(apic.hasPendingEvents(true), false);
  apic.accept(fixed(0x40));
  assert.equal(apic.hasPendingEvents(false), false, 'IF = 0 does not wake for a maskable interrupt');
  assert.equal(apic.hasPendingEvents(true), true);
  apic.acknowledgeInterrupt();
  assert.equal(apic.mpState(), MpState.Runnable);
  apic.setMpState(MpState.Halted);
  apic.accept(message(DeliveryMode.Nmi));
  assert.equal(apic.hasPendingEvents(false), true);
  apic.takeNmi();
  assert.equal(apic.mpState(), MpState.Runnable);
});

// ---------------------------------------------------------------------------------------------
// LINT0 virtual wire, ExtINT, LINT1, local sources (P30, §6.30, §6.31)
// ---------------------------------------------------------------------------------------------

test('P30 LVT0 masked: no ExtINT; LVT0 = 0x700: the PIC vector via INTA; EN = 0: the PIC goes straight through', () => {
  const { apic, pic } = makeEnabledApic();
  pic.level = true;
  apic.mmioWrite(Mmio.LvtLint0, 4, 0x10700);
  assert.equal(apic.hasInterrupt(), false);
  assert.equal(apic.acknowledgeInterrupt(), NO_INTERRUPT);
  apic.mmioWrite(Mmio.LvtLint0, 4, 0x700);
  assert.equal(apic.hasInterrupt(), true);
  assert.equal(apic.acknowledgeInterrupt(), 0x0c);
  assert.equal(pic.acknowledges, 1);
  apic.mmioWrite(Mmio.LvtLint0, 4, 0x10700);
  apic.writeMsr(MSR_APIC_BASE, APIC_BASE_DISABLED | 0x100n);
  pic.level = true;
  pic.vector = 0x0d;
  assert.equal(apic.hasInterrupt(), true);
  assert.equal(apic.acknowledgeInterrupt(), 0x0d);
});

test('§6.30 the BSP takes PIC interrupts from RESET, while still software-disabled; an AP does not', () => {
  const bsp = makeApic({ busIndex: 0, bsp: true });
  bsp.pic.level = true;
  assert.equal(bsp.apic.hasInterrupt(), true);
  const ap = makeApic({ busIndex: 1, bsp: false });
  ap.pic.level = true;
  assert.equal(ap.apic.hasInterrupt(), false);
});

test('§6.31 ExtINT precedence: a PIC request is taken before a higher fixed vector and bypasses TPR, IRR and ISR', () => {
  const { apic, pic } = makeEnabledApic();
  apic.accept(fixed(0xf0));
  apic.mmioWrite(Mmio.TaskPriority, 4, 0xff);
  pic.level = true;
  assert.equal(apic.acknowledgeInterrupt(), 0x0c);
  assert.equal(apic.irr(0xf0), true);
  assert.deepEqual(vectorsOf((v) => apic.isr(v)), []);
  apic.mmioWrite(Mmio.TaskPriority, 4, 0);
  assert.equal(apic.acknowledgeInterrupt(), 0xf0);
});

test('I25 an ExtINT message takes its vector from the PIC INTA', () => {
  const { apic, pic } = makeEnabledApic();
  apic.mmioWrite(Mmio.LvtLint0, 4, 0x10700);
  pic.level = true;
  assert.equal(apic.hasInterrupt(), false);
  assert.equal(apic.accept(message(DeliveryMode.ExtInt)), 1);
  assert.equal(apic.hasInterrupt(), true);
  assert.equal(apic.acknowledgeInterrupt(), 0x0c);
  assert.equal(apic.hasInterrupt(), false);
});

test('an ExtINT message without a PIC wired, or to a software-disabled APIC, is dropped', () => {
  const bare = LocalApic.create({ busIndex: 0, bsp: true, clock: new VirtualClock() });
  bare.mmioWrite(Mmio.SpuriousVector, 4, SVR_ENABLED);
  assert.equal(bare.accept(message(DeliveryMode.ExtInt)), -1);
  assert.equal(bare.counters().unsupportedMessages, 1);
  const { apic } = makeApic();
  assert.equal(apic.accept(message(DeliveryMode.ExtInt)), -1);
  assert.equal(apic.counters().droppedWhileDisabled, 1);
});

test('LINT1 programmed NMI: a rising edge pends an NMI, a held level does not repeat; with EN = 0 LINT1 is the NMI pin', () => {
  const { apic } = makeEnabledApic();
  apic.mmioWrite(Mmio.LvtLint1, 4, 0x400);
  apic.setLintLevel(1, true);
  apic.setLintLevel(1, true);
  assert.equal(apic.takeNmi(), true);
  assert.equal(apic.takeNmi(), false);
  apic.setLintLevel(1, false);
  apic.writeMsr(MSR_APIC_BASE, APIC_BASE_DISABLED | 0x100n);
  apic.setLintLevel(1, true);
  assert.equal(apic.takeNmi(), true);
});

test('LINT0 fixed level-triggered: delivered while asserted, remote IRR until EOI, re-delivered after EOI while still high', () => {
  const { apic, eoi } = makeEnabledApic();
  apic.mmioWrite(Mmio.LvtLint0, 4, 0x8035);
  apic.setLintLevel(0, true);
  assert.equal(apic.irr(0x35), true);
  assert.equal(apic.tmr(0x35), true);
  assert.equal(apic.mmioRead(Mmio.LvtLint0, 4), 0xc035, 'remote IRR set');
  assert.equal(apic.acknowledgeInterrupt(), 0x35);
  apic.setLintLevel(0, true);
  assert.equal(apic.irr(0x35), false, 'no repeat while remote IRR is set');
  apic.mmioWrite(Mmio.Eoi, 4, 0);
  assert.equal(apic.irr(0x35), true, 'still asserted: delivered again');
  assert.deepEqual(eoi.vectors, [0x35]);
  apic.setLintLevel(0, false);
  apic.acknowledgeInterrupt();
  apic.mmioWrite(Mmio.Eoi, 4, 0);
  assert.equal(apic.irr(0x35), false);
  assert.equal(apic.mmioRead(Mmio.LvtLint0, 4), 0x8035, 'remote IRR clear');
});

test('LINT0 fixed level asserted while masked is delivered when unmasked (held, not lost)', () => {
  const { apic } = makeEnabledApic();
  apic.mmioWrite(Mmio.LvtLint0, 4, 0x18035);
  apic.setLintLevel(0, true);
  assert.equal(apic.irr(0x35), false);
  apic.mmioWrite(Mmio.LvtLint0, 4, 0x8035);
  assert.equal(apic.irr(0x35), true);
});

test('LINT1 is edge-only even with the trigger bit set (SDM §11.5.1)', () => {
  const { apic } = makeEnabledApic();
  apic.mmioWrite(Mmio.LvtLint1, 4, 0x8036);
  apic.setLintLevel(1, true);
  apic.acknowledgeInterrupt();
  apic.mmioWrite(Mmio.Eoi, 4, 0);
  apic.setLintLevel(1, true);
  assert.equal(apic.irr(0x36), false);
  assert.equal(apic.tmr(0x36), false);
});

test('an edge on a masked LINT is dropped and counted', () => {
  const { apic } = makeEnabledApic();
  apic.mmioWrite(Mmio.LvtLint1, 4, 0x10036);
  apic.setLintLevel(1, true);
  assert.equal(apic.irr(0x36), false);
  assert.equal(apic.counters().maskedLocalInterrupts, 1);
});

test('LINT delivery modes SMI and INIT, and a reserved mode, per the LVT entry', () => {
  const { apic } = makeEnabledApic({ busIndex: 1, bsp: false });
  apic.mmioWrite(Mmio.LvtLint1, 4, 0x200);
  apic.setLintLevel(1, true);
  assert.equal(apic.takeSmi(), true);
  apic.mmioWrite(Mmio.LvtLint1, 4, 0x500);
  apic.setLintLevel(1, false);
  apic.setLintLevel(1, true);
  assert.equal(apic.processInitSipi().initReset, true);
  apic.mmioWrite(Mmio.SpuriousVector, 4, SVR_ENABLED);
  apic.mmioWrite(Mmio.LvtLint1, 4, 0x136);
  apic.setLintLevel(1, false);
  apic.setLintLevel(1, true);
  assert.equal(apic.irr(0x36), false);
  assert.equal(apic.counters().unsupportedMessages, 1);
});

test('a performance-counter interrupt is delivered per LVTPC and leaves LVTPC masked; thermal per its LVT', () => {
  const { apic } = makeEnabledApic();
  apic.mmioWrite(Mmio.LvtPerformanceCounter, 4, 0x3a);
  apic.signalLocalInterrupt('performance-counter');
  assert.equal(apic.irr(0x3a), true);
  assert.equal(apic.mmioRead(Mmio.LvtPerformanceCounter, 4), 0x1003a);
  apic.mmioWrite(Mmio.LvtThermal, 4, 0x400);
  apic.signalLocalInterrupt('thermal');
  assert.equal(apic.takeNmi(), true);
  apic.mmioWrite(Mmio.LvtThermal, 4, 0x700);
  apic.signalLocalInterrupt('thermal');
  assert.equal(apic.counters().unsupportedMessages, 1, 'ExtINT is not valid on the thermal LVT');
});

// ---------------------------------------------------------------------------------------------
// Doorbell, views, threads
// ---------------------------------------------------------------------------------------------

test('the doorbell generation moves when something becomes deliverable, not on a dropped message', () => {
  const { apic } = makeApic();
  const start = apic.doorbellGeneration();
  apic.accept(fixed(0x40));
  assert.equal(apic.doorbellGeneration(), start, 'dropped while software-disabled');
  apic.accept(message(DeliveryMode.Nmi));
  const afterNmi = apic.doorbellGeneration();
  assert.notEqual(afterNmi, start);
  assert.equal(apic.waitForDoorbell(start, 0), 'not-equal');
  assert.equal(apic.waitForDoorbell(afterNmi, 0), 'timed-out');
});

test('two views over one state see the same APIC', () => {
  const { apic, clock } = makeEnabledApic();
  const view = LocalApic.fromState(apic.descriptor(), { clock });
  view.accept(fixed(0x44));
  assert.equal(apic.irr(0x44), true);
  assert.equal(apic.acknowledgeInterrupt(), 0x44);
  assert.equal(view.isr(0x44), true);
  assert.equal(view.busIndex, apic.busIndex);
});

test('a worker thread accepting into the IRR wakes the vCPU thread sleeping on the doorbell', async () => {
  const { apic, clock } = makeEnabledApic();
  const generation = apic.doorbellGeneration();
  const workerData: DoorbellWorkerData = { apic: apic.descriptor(), clock: clock.descriptor(), vector: 0x66 };
  const worker = startTypeScriptWorker(new URL('./local-apic-worker-fixture.ts', import.meta.url), { workerData });
  const exited = once(worker, 'exit');
  let result = apic.waitForDoorbell(generation, 10_000);
  while (result === 'ok' && !apic.irr(0x66)) result = apic.waitForDoorbell(apic.doorbellGeneration(), 10_000);
  assert.notEqual(result, 'timed-out');
  assert.equal(apic.acknowledgeInterrupt(), 0x66);
  assert.deepEqual(await exited, [0]);
});

test('wake() moves the doorbell generation and changes no state, MP state included', () => {
  const { apic } = makeEnabledApic();
  apic.setMpState(MpState.Halted);
  const before = apic.snapshot();
  const generation = apic.doorbellGeneration();
  apic.wake();
  assert.notEqual(apic.doorbellGeneration(), generation);
  assert.equal(apic.waitForDoorbell(generation, 0), 'not-equal');
  assert.equal(apic.mpState(), MpState.Halted);
  assert.equal(apic.hasPendingEvents(true), false);
  assert.deepEqual(apic.snapshot(), before);
});

test('a worker thread calling wake() on its view wakes the vCPU thread sleeping on the doorbell', async () => {
  const { apic, clock } = makeEnabledApic();
  const generation = apic.doorbellGeneration();
  const workerData: DoorbellWorkerData = { apic: apic.descriptor(), clock: clock.descriptor() };
  const worker = startTypeScriptWorker(new URL('./local-apic-worker-fixture.ts', import.meta.url), { workerData });
  const exited = once(worker, 'exit');
  const result = apic.waitForDoorbell(generation, 10_000);
  assert.notEqual(result, 'timed-out');
  assert.notEqual(apic.doorbellGeneration(), generation);
  assert.equal(apic.hasInterrupt(), false, 'a wake delivers nothing');
  assert.deepEqual(await exited, [0]);
});

// ---------------------------------------------------------------------------------------------
// Caller misuse: EINVAL, nothing changes
// ---------------------------------------------------------------------------------------------

test('create rejects bad options with EINVAL', () => {
  const clock = new VirtualClock();
  const bad: Record<string, unknown>[] = [
    { busIndex: -1, bsp: true },
    { busIndex: 1.5, bsp: true },
    { busIndex: 0, bsp: 'yes' },
    { busIndex: 0, bsp: true, x2apicId: 0xffffffff },
    { busIndex: 0, bsp: true, tscHz: 0 },
    { busIndex: 0, bsp: true, directedEoi: 1 },
    { busIndex: 0, bsp: true, apicBusCycleNs: 0 },
    { busIndex: 0, bsp: true, minPeriodicTimerNs: -1 },
    { busIndex: 0, bsp: true, ipiSink: {} },
  ];
  for (const options of bad) {
    assert.throws(() => LocalApic.create({ clock, ...options } as never), isEinval, JSON.stringify(options));
  }
  assert.throws(() => LocalApic.create({ busIndex: 0, bsp: true, clock: {} as never }), isEinval);
});

test('guest-interface calls with impossible arguments throw EINVAL and change nothing', () => {
  const { apic } = makeEnabledApic();
  apic.accept(fixed(0x40));
  const before = apic.snapshot();
  const counters = apic.counters();
  const misuses: (() => unknown)[] = [
    () => apic.mmioRead(0x1000, 4),
    () => apic.mmioRead(0xffe, 4),
    () => apic.mmioRead(0x80, 3),
    () => { apic.mmioWrite(0x80, 4, 0x1_0000_0000); },
    () => { apic.mmioWrite(0x80, 1, 0x100); },
    () => { apic.mmioWrite(0x80, 4, -1); },
    () => apic.readMsr(0x10),
    () => apic.writeMsr(0x1b, -1n),
    () => apic.writeMsr(0x808, 1n << 64n),
    () => apic.writeMsr(0x808, 1 as never),
    () => apic.accept(fixed(256)),
    () => apic.accept(fixed(0x41, { deliveryMode: 8 as never })),
    () => apic.irr(-1),
    () => apic.isr(1.5),
    () => { apic.setLintLevel(2, true); },
    () => { apic.setLintLevel(0, 1 as never); },
    () => { apic.signalLocalInterrupt('error' as never); },
    () => { apic.setMpState(7 as never); },
    () => apic.processInitSipi('yes' as never),
    () => apic.waitForDoorbell(0.5, 0),
    () => LocalApic.fromState({ kind: 'local-apic', buffer: new SharedArrayBuffer(8) }, { clock: new VirtualClock() }),
    () => LocalApic.fromState({ kind: 'pic', buffer: apic.descriptor().buffer } as never, { clock: new VirtualClock() }),
  ];
  for (const misuse of misuses) assert.throws(misuse, isEinval, misuse.toString());
  assert.deepEqual(apic.snapshot(), before);
  assert.deepEqual(apic.counters(), counters);
});
