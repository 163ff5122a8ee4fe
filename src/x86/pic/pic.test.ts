/**
 * The PIC pair against the spec's scenarios P1–P29 (x86-controllers.md §7.1), the §6 tricky
 * cases that concern it, and its listeners.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import { InitState } from './pic-chip.ts';
import { PicPair, PicPort } from './pic.ts';
import { type PulseWorkerData, WORKER_FLAG_WORDS, WorkerFlag } from './pic-worker-fixture.ts';
import { startTypeScriptWorker } from '../../node/worker.ts';
import {
  ICW4_8086_AEOI,
  ICW4_8086_SFNM,
  NON_SPECIFIC_EOI,
  inb,
  master,
  out,
  pulse,
  serve,
  slave,
  standardInit,
} from './pic-test-support.ts';

const { MasterCommand, MasterData, SlaveCommand, SlaveData, MasterElcr, SlaveElcr } = PicPort;

function initialisedPic(masterIcw4?: number, slaveIcw4?: number): PicPair {
  const pic = PicPair.create();
  standardInit(pic, masterIcw4, slaveIcw4);
  return pic;
}

// ---------------------------------------------------------------------------------------------
// Initialisation and ELCR (P1–P5)
// ---------------------------------------------------------------------------------------------

test('P1 reset state: IMR of both chips and ELCR read 0x00', () => {
  const pic = PicPair.create();
  assert.equal(inb(pic, MasterData), 0x00);
  assert.equal(inb(pic, SlaveData), 0x00);
  assert.equal(inb(pic, MasterElcr), 0x00);
  assert.equal(inb(pic, SlaveElcr), 0x00);
});

test('P2 standard init then OCW1 0xFB: IMR reads 0xFB and the data port is back to OCW1', () => {
  const pic = initialisedPic();
  assert.equal(master(pic).initState, InitState.Ready);
  assert.equal(master(pic).irqBase, 0x08);
  assert.equal(slave(pic).irqBase, 0x70);
  out(pic, MasterData, 0xfb);
  assert.equal(inb(pic, MasterData), 0xfb);
  out(pic, MasterData, 0x12);
  assert.equal(master(pic).imr, 0x12);
  assert.equal(master(pic).irqBase, 0x08);
});

test('P3 ICW1 without IC4: initialisation ends after ICW3, the next data byte is IMR', () => {
  const pic = PicPair.create();
  out(pic, MasterCommand, 0x10);
  out(pic, MasterData, 0x08);
  assert.equal(master(pic).initState, InitState.ExpectIcw3);
  out(pic, MasterData, 0xff);
  assert.equal(master(pic).initState, InitState.Ready);
  assert.equal(master(pic).irqBase, 0x08);
  out(pic, MasterData, 0x5a);
  assert.equal(master(pic).imr, 0x5a);
});

test('P4 ICW1 0x13 (single + IC4): the byte after ICW2 is ICW4, then IMR', () => {
  const pic = PicPair.create();
  out(pic, MasterCommand, 0x13);
  out(pic, MasterData, 0x08);
  assert.equal(master(pic).initState, InitState.ExpectIcw4);
  out(pic, MasterData, ICW4_8086_AEOI);
  assert.equal(master(pic).autoEoi, true);
  assert.equal(master(pic).initState, InitState.Ready);
  out(pic, MasterData, 0x5a);
  assert.equal(master(pic).imr, 0x5a);
});

test('P5 ELCR writes of 0xFF read back 0xF8 and 0xDE (forced-edge bits), counted as reserved writes', () => {
  const pic = PicPair.create();
  out(pic, MasterElcr, 0xff);
  out(pic, SlaveElcr, 0xff);
  assert.equal(inb(pic, MasterElcr), 0xf8);
  assert.equal(inb(pic, SlaveElcr), 0xde);
  assert.equal(pic.counters().reservedBitWrites, 2);
});

test('§6.16 ELCR write is value & mask, not crosvm\'s value & ~elcr', () => {
  const pic = PicPair.create();
  out(pic, MasterElcr, 0x10);
  out(pic, MasterElcr, 0x30);
  assert.equal(inb(pic, MasterElcr), 0x30);
  out(pic, SlaveElcr, 0x0c);
  assert.equal(inb(pic, SlaveElcr), 0x0c);
  assert.equal(pic.counters().reservedBitWrites, 0);
});

// ---------------------------------------------------------------------------------------------
// Requests, INTA and EOI (P6–P13)
// ---------------------------------------------------------------------------------------------

test('P6 edge IRQ4: output high; INTA returns 0x0C, ISR=0x10, IRR=0', () => {
  const pic = initialisedPic();
  assert.equal(pic.setIrq(4, true), 1);
  assert.equal(pic.outputLevel(), true);
  assert.equal(pic.acknowledge(), 0x0c);
  assert.equal(master(pic).isr, 0x10);
  assert.equal(master(pic).irr, 0x00);
  assert.equal(pic.outputLevel(), false);
});

test('P7 edge IRQ4 asserted again without lowering: no new request, output stays low, coalesced', () => {
  const pic = initialisedPic();
  pic.setIrq(4, true);
  pic.acknowledge();
  assert.equal(pic.setIrq(4, true), 0);
  assert.equal(master(pic).irr, 0x00);
  assert.equal(pic.outputLevel(), false);
  assert.equal(pic.counters().coalescedRequests, 1);
});

test('P8 new IRQ4 edge while IRQ4 in service is blocked until EOI, then delivered', () => {
  const pic = initialisedPic();
  pic.setIrq(4, true);
  pic.acknowledge();
  pic.setIrq(4, false);
  assert.equal(pic.setIrq(4, true), 1);
  assert.equal(master(pic).irr, 0x10);
  assert.equal(pic.outputLevel(), false);
  out(pic, MasterCommand, NON_SPECIFIC_EOI);
  assert.equal(pic.outputLevel(), true);
  assert.equal(pic.acknowledge(), 0x0c);
});

test('P9 level IRQ4 stays in IRR after INTA and is requested again after EOI', () => {
  const pic = initialisedPic();
  out(pic, MasterElcr, 0x10);
  pic.setIrq(4, true);
  assert.equal(pic.acknowledge(), 0x0c);
  assert.equal(master(pic).irr, 0x10);
  assert.equal(pic.outputLevel(), false);
  out(pic, MasterCommand, NON_SPECIFIC_EOI);
  assert.equal(pic.outputLevel(), true);
  assert.equal(pic.acknowledge(), 0x0c);
});

test('P10 level IRQ4 dropped before INTA: INTA returns spurious 0x0F and ISR is unchanged', () => {
  const pic = initialisedPic();
  out(pic, MasterElcr, 0x10);
  pic.setIrq(4, true);
  pic.setIrq(4, false);
  assert.equal(pic.outputLevel(), false);
  assert.equal(pic.acknowledge(), 0x0f);
  assert.equal(master(pic).isr, 0x00);
  assert.equal(pic.counters().spuriousAcknowledges, 1);
});

test('§6.14 request masked between the output rising and INTA: spurious IRQ7, no ISR bit', () => {
  const pic = initialisedPic();
  pic.setIrq(4, true);
  assert.equal(pic.outputLevel(), true);
  out(pic, MasterData, 0x10);
  assert.equal(pic.acknowledge(), 0x0f);
  assert.equal(master(pic).isr, 0x00);
  assert.equal(master(pic).irr, 0x10);
});

test('P11 IRQ3 outranks IRQ5; IRQ5 waits behind IRQ3 in service until its EOI', () => {
  const pic = initialisedPic();
  pic.setIrq(5, true);
  pic.setIrq(3, true);
  assert.equal(pic.acknowledge(), 0x0b);
  assert.equal(pic.acknowledge(), 0x0f);
  out(pic, MasterCommand, NON_SPECIFIC_EOI);
  assert.equal(pic.acknowledge(), 0x0d);
});

test('P12 nesting: IRQ1 interrupts IRQ5 in service; ISR=0x22; non-specific EOI clears IRQ1 first', () => {
  const pic = initialisedPic();
  serve(pic, 5);
  pic.setIrq(1, true);
  assert.equal(pic.acknowledge(), 0x09);
  assert.equal(master(pic).isr, 0x22);
  out(pic, MasterCommand, NON_SPECIFIC_EOI);
  assert.equal(master(pic).isr, 0x20);
});

test('P13 specific EOI clears only the named level', () => {
  const pic = initialisedPic();
  serve(pic, 4);
  out(pic, MasterCommand, 0x63);
  assert.equal(master(pic).isr, 0x10);
  out(pic, MasterCommand, 0x64);
  assert.equal(master(pic).isr, 0x00);
});

// ---------------------------------------------------------------------------------------------
// Rotation and AEOI (P14–P17)
// ---------------------------------------------------------------------------------------------

test('P14 rotate on non-specific EOI makes IRQ5 lowest: IRQ6 then wins over IRQ5', () => {
  const pic = initialisedPic();
  serve(pic, 5);
  out(pic, MasterCommand, 0xa0);
  assert.equal(master(pic).isr, 0x00);
  assert.equal(master(pic).priorityAdd, 6);
  pic.setIrq(5, true);
  pic.setIrq(6, true);
  assert.equal(pic.acknowledge(), 0x0e);
});

test('P15 set priority 0xC3 makes IRQ3 lowest, so IRQ4 wins over IRQ3', () => {
  const pic = initialisedPic();
  out(pic, MasterCommand, 0xc3);
  assert.equal(master(pic).priorityAdd, 4);
  pic.setIrq(3, true);
  pic.setIrq(4, true);
  assert.equal(pic.acknowledge(), 0x0c);
});

test('P16 rotate on specific EOI 0xE5 clears ISR5 and rotates; 0xE4 with only IRQ5 in service leaves ISR', () => {
  const pic = initialisedPic();
  serve(pic, 5);
  out(pic, MasterCommand, 0xe5);
  assert.equal(master(pic).isr, 0x00);
  assert.equal(master(pic).priorityAdd, 6);
  assert.equal(serve(pic, 5), 0x0d);
  out(pic, MasterCommand, 0xe4);
  assert.equal(master(pic).isr, 0x20);
  assert.equal(master(pic).priorityAdd, 5);
});

test('P17 AEOI: INTA leaves ISR clear; rotate-in-AEOI set rotates, OCW2 0x00 clears the mode', () => {
  const pic = initialisedPic(ICW4_8086_AEOI);
  assert.equal(serve(pic, 5), 0x0d);
  assert.equal(master(pic).isr, 0x00);
  assert.equal(master(pic).priorityAdd, 0);
  out(pic, MasterCommand, 0x80);
  assert.equal(master(pic).rotateOnAutoEoi, true);
  assert.equal(serve(pic, 5), 0x0d);
  assert.equal(master(pic).priorityAdd, 6);
  out(pic, MasterCommand, 0x00);
  assert.equal(master(pic).rotateOnAutoEoi, false);
  assert.equal(serve(pic, 3), 0x0b);
  assert.equal(master(pic).priorityAdd, 6);
});

// ---------------------------------------------------------------------------------------------
// Cascade, SFNM, masks (P18–P24)
// ---------------------------------------------------------------------------------------------

test('P18 cascade: IRQ12 latches master IRR2; INTA returns 0x74 with both ISRs set; EOIs clear both', () => {
  const pic = initialisedPic();
  pic.setIrq(12, true);
  assert.equal(master(pic).irr, 0x04);
  assert.equal(slave(pic).irr, 0x10);
  assert.equal(pic.acknowledge(), 0x74);
  assert.equal(master(pic).isr, 0x04);
  assert.equal(slave(pic).isr, 0x10);
  out(pic, SlaveCommand, NON_SPECIFIC_EOI);
  out(pic, MasterCommand, NON_SPECIFIC_EOI);
  assert.equal(master(pic).isr, 0x00);
  assert.equal(slave(pic).isr, 0x00);
});

test('P19 slave spurious: IRQ2 raised directly with the slave idle returns 0x77; master ISR2 set, slave ISR clear', () => {
  const pic = initialisedPic();
  pic.setIrq(2, true);
  assert.equal(pic.acknowledge(), 0x77);
  assert.equal(master(pic).isr, 0x04);
  assert.equal(slave(pic).isr, 0x00);
  assert.equal(pic.counters().spuriousAcknowledges, 1);
});

test('P20 INTA with no request returns 0x0F and changes no ISR', () => {
  const pic = initialisedPic();
  assert.equal(pic.acknowledge(), 0x0f);
  assert.equal(master(pic).isr, 0x00);
  assert.equal(slave(pic).isr, 0x00);
});

test('P21 SFNM: a higher slave request (IRQ8) is delivered while IRQ12 is in service', () => {
  const pic = initialisedPic(ICW4_8086_SFNM, ICW4_8086_SFNM);
  pic.setIrq(12, true);
  assert.equal(pic.acknowledge(), 0x74);
  pic.setIrq(8, true);
  assert.equal(pic.acknowledge(), 0x70);
  assert.equal(slave(pic).isr, 0x11);
  assert.equal(master(pic).isr, 0x04);
});

test('P22 without SFNM the master blocks IRQ8 behind ISR2 until slave and master EOI', () => {
  const pic = initialisedPic();
  pic.setIrq(12, true);
  assert.equal(pic.acknowledge(), 0x74);
  pic.setIrq(8, true);
  assert.equal(pic.acknowledge(), 0x0f);
  out(pic, SlaveCommand, NON_SPECIFIC_EOI);
  out(pic, MasterCommand, NON_SPECIFIC_EOI);
  assert.equal(pic.acknowledge(), 0x70);
});

test('P23 masked slave IRQ14 is held in IRR and delivered as 0x76 once unmasked', () => {
  const pic = initialisedPic();
  out(pic, SlaveData, 0x40);
  assert.equal(pic.setIrq(14, true), -1);
  assert.equal(pic.outputLevel(), false);
  assert.equal(slave(pic).irr, 0x40);
  assert.equal(pic.counters().maskedRequests, 1);
  out(pic, SlaveData, 0x00);
  assert.equal(pic.outputLevel(), true);
  assert.equal(pic.acknowledge(), 0x76);
});

test('P24 AEOI with both masked: unmasking the slave alone is not enough; then 0x74, 0x76, 0x0C', () => {
  const pic = initialisedPic(ICW4_8086_AEOI, ICW4_8086_AEOI);
  out(pic, MasterData, 0xff);
  out(pic, SlaveData, 0xff);
  pic.setIrq(14, true);
  pic.setIrq(4, true);
  pic.setIrq(12, true);
  out(pic, SlaveData, 0x00);
  assert.equal(pic.outputLevel(), false);
  out(pic, MasterData, 0xfb);
  assert.equal(pic.acknowledge(), 0x74);
  assert.equal(pic.acknowledge(), 0x76);
  out(pic, MasterData, 0x00);
  assert.equal(pic.acknowledge(), 0x0c);
  assert.equal(pic.outputLevel(), false);
});

// ---------------------------------------------------------------------------------------------
// OCW3: status reads, poll, special mask (P25–P27)
// ---------------------------------------------------------------------------------------------

test('P25 OCW3 selects IRR or ISR for command-port reads, and the selection is sticky', () => {
  const pic = initialisedPic();
  serve(pic, 4);
  pic.setIrq(5, true);
  out(pic, MasterCommand, 0x0a);
  assert.equal(inb(pic, MasterCommand), 0x20);
  out(pic, MasterCommand, 0x0b);
  assert.equal(inb(pic, MasterCommand), 0x10);
  assert.equal(inb(pic, MasterCommand), 0x10);
  out(pic, MasterCommand, 0x08);
  assert.equal(inb(pic, MasterCommand), 0x10, 'OCW3 without RR keeps the selection');
});

test('P26 poll returns 0x80|level and sets ISR (data-sheet form); with nothing pending it returns 0x00', () => {
  const pic = initialisedPic();
  pic.setIrq(5, true);
  out(pic, MasterCommand, 0x0c);
  assert.equal(inb(pic, MasterCommand), 0x85);
  assert.equal(master(pic).isr, 0x20);
  assert.equal(master(pic).irr, 0x00);
  assert.equal(master(pic).pollArmed, false);
  out(pic, MasterCommand, 0x0c);
  assert.equal(inb(pic, MasterData), 0x00);
  assert.equal(inb(pic, MasterData), 0x00, 'the poll is disarmed: the data port reads IMR again');
});

test('§6.17 poll on the slave acknowledges on the slave only', () => {
  const pic = initialisedPic();
  pic.setIrq(13, true);
  out(pic, SlaveCommand, 0x0c);
  assert.equal(inb(pic, SlaveData), 0x85);
  assert.equal(slave(pic).isr, 0x20);
  assert.equal(master(pic).isr, 0x00);
});

test('P27 special mask mode: a masked in-service IRQ3 no longer blocks IRQ5; ESMM with SMM=0 restores blocking', () => {
  const inServiceIrq3 = (): PicPair => {
    const pic = initialisedPic();
    serve(pic, 3);
    out(pic, MasterData, 0x08);
    return pic;
  };
  const special = inServiceIrq3();
  out(special, MasterCommand, 0x68);
  assert.equal(master(special).specialMask, true);
  special.setIrq(5, true);
  assert.equal(special.outputLevel(), true);
  assert.equal(special.acknowledge(), 0x0d);

  const normal = inServiceIrq3();
  out(normal, MasterCommand, 0x48);
  assert.equal(master(normal).specialMask, false);
  normal.setIrq(5, true);
  assert.equal(normal.outputLevel(), false);
});

// ---------------------------------------------------------------------------------------------
// Re-initialisation and acknowledge notifications (P28–P29, §6.15)
// ---------------------------------------------------------------------------------------------

test('P28 ICW1 keeps the pending level request, drops the edge one, and clears IMR, ISR, rotation and read select', () => {
  const pic = initialisedPic();
  out(pic, MasterElcr, 0x10);
  serve(pic, 5);
  out(pic, MasterCommand, 0x0b);
  out(pic, MasterCommand, 0xc3);
  pic.setIrq(4, true);
  pic.setIrq(3, true);
  out(pic, MasterData, 0xff);
  out(pic, MasterCommand, 0x11);
  const registers = master(pic);
  assert.equal(registers.irr, 0x10);
  assert.equal(registers.imr, 0x00);
  assert.equal(registers.isr, 0x00);
  assert.equal(registers.priorityAdd, 0);
  assert.equal(registers.readsIsr, false);
  assert.equal(registers.initState, InitState.ExpectIcw2);
});

test('§6.15 ICW1 acknowledges the in-service IRQ and the dropped edge request, not the kept level one', () => {
  const pic = initialisedPic();
  out(pic, MasterElcr, 0x10);
  serve(pic, 5);
  pic.setIrq(4, true);
  pic.setIrq(3, true);
  const acknowledged: number[] = [];
  for (const irq of [3, 4, 5]) pic.setAckListener(irq, (acked) => acknowledged.push(acked));
  out(pic, MasterCommand, 0x11);
  assert.deepEqual(acknowledged, [3, 5]);
});

test('P29 ack listener on level IRQ4 fires once, at the EOI', () => {
  const pic = initialisedPic();
  out(pic, MasterElcr, 0x10);
  const acknowledged: number[] = [];
  pic.setAckListener(4, (irq) => acknowledged.push(irq));
  pic.setIrq(4, true);
  pic.acknowledge();
  assert.deepEqual(acknowledged, []);
  out(pic, MasterCommand, NON_SPECIFIC_EOI);
  assert.deepEqual(acknowledged, [4]);
  out(pic, MasterCommand, 0x64);
  assert.deepEqual(acknowledged, [4], 'a specific EOI of a level not in service acknowledges nothing');
});

test('P29 with AEOI the ack listener fires at INTA', () => {
  const pic = initialisedPic(ICW4_8086_AEOI);
  out(pic, MasterElcr, 0x10);
  const acknowledged: number[] = [];
  pic.setAckListener(4, (irq) => acknowledged.push(irq));
  pic.setIrq(4, true);
  assert.equal(pic.acknowledge(), 0x0c);
  assert.deepEqual(acknowledged, [4]);
});

test('ack listener of a slave IRQ hears its ISA number (8 + pin); the cascade EOI acknowledges IRQ2', () => {
  const pic = initialisedPic();
  const acknowledged: number[] = [];
  for (const irq of [2, 12]) pic.setAckListener(irq, (acked) => acknowledged.push(acked));
  pic.setIrq(12, true);
  pic.acknowledge();
  out(pic, SlaveCommand, NON_SPECIFIC_EOI);
  out(pic, MasterCommand, NON_SPECIFIC_EOI);
  assert.deepEqual(acknowledged, [12, 2]);
});

test('a resample listener may re-enter the PIC: de-asserting the level line inside it leaves the output low', () => {
  const pic = initialisedPic();
  out(pic, MasterElcr, 0x10);
  const levels: boolean[] = [];
  pic.setOutputListener((level) => levels.push(level));
  pic.setAckListener(4, (irq) => pic.setIrq(irq, false));
  pic.setIrq(4, true);
  pic.acknowledge();
  out(pic, MasterCommand, NON_SPECIFIC_EOI);
  assert.equal(pic.outputLevel(), false);
  assert.equal(master(pic).irr, 0x00);
  assert.deepEqual(levels, [true, false]);
});

// ---------------------------------------------------------------------------------------------
// Inputs: result convention, LTIM, ELCR changes, cascade wiring
// ---------------------------------------------------------------------------------------------

test('setIrq result: 1 raised, 0 coalesced on a latched level request, -1 masked, 1 for a de-assert', () => {
  const pic = initialisedPic();
  out(pic, MasterElcr, 0x20);
  assert.equal(pic.setIrq(5, true), 1);
  assert.equal(pic.setIrq(5, true), 0);
  assert.equal(pic.setIrq(5, false), 1);
  out(pic, MasterData, 0x08);
  assert.equal(pic.setIrq(3, true), -1);
  assert.equal(pic.setIrq(3, false), -1);
  assert.deepEqual(
    { coalesced: pic.counters().coalescedRequests, masked: pic.counters().maskedRequests },
    { coalesced: 1, masked: 1 },
  );
});

test('an edge request stays latched after its line falls (no interrupt lost)', () => {
  const pic = initialisedPic();
  pulse(pic, 6);
  assert.equal(master(pic).irr, 0x40);
  assert.equal(pic.acknowledge(), 0x0e);
});

test('LTIM (ICW1 0x19): every input is level-sensitive, so a request stays in IRR after INTA', () => {
  const pic = PicPair.create();
  out(pic, MasterCommand, 0x19);
  out(pic, MasterData, 0x08);
  out(pic, MasterData, 0x04);
  out(pic, MasterData, 0x01);
  assert.equal(master(pic).levelTriggeredMode, true);
  pic.setIrq(3, true);
  assert.equal(pic.acknowledge(), 0x0b);
  assert.equal(master(pic).irr, 0x08);
  pic.setIrq(3, false);
  assert.equal(master(pic).irr, 0x00);
});

test('cascade under master LTIM: IR2 follows the slave request, so a request masked away is not delivered', () => {
  const pic = PicPair.create();
  standardInit(pic);
  out(pic, MasterCommand, 0x19);
  out(pic, MasterData, 0x08);
  out(pic, MasterData, 0x04);
  out(pic, MasterData, 0x01);
  pic.setIrq(12, true);
  assert.equal(master(pic).irr, 0x04);
  out(pic, SlaveData, 0x10);
  assert.equal(master(pic).irr, 0x00);
  assert.equal(pic.outputLevel(), false);
});

test('cascade with an edge IR2: a latched IRR2 survives the slave request being masked (spurious IRQ15 at INTA)', () => {
  const pic = initialisedPic();
  pic.setIrq(12, true);
  out(pic, SlaveData, 0x10);
  assert.equal(master(pic).irr, 0x04);
  assert.equal(pic.acknowledge(), 0x77);
});

test('the slave re-requests after INTA: the next slave IRQ is delivered after the master EOI of IR2', () => {
  const pic = initialisedPic();
  pic.setIrq(9, true);
  pic.setIrq(10, true);
  assert.equal(pic.acknowledge(), 0x71);
  out(pic, SlaveCommand, NON_SPECIFIC_EOI);
  assert.equal(pic.outputLevel(), false, 'master ISR2 still blocks IR2');
  out(pic, MasterCommand, NON_SPECIFIC_EOI);
  assert.equal(pic.acknowledge(), 0x72);
});

test('a pin switched to level while its line is high requests at once', () => {
  const pic = initialisedPic();
  pic.setIrq(10, true);
  pic.acknowledge();
  out(pic, SlaveCommand, NON_SPECIFIC_EOI);
  out(pic, MasterCommand, NON_SPECIFIC_EOI);
  assert.equal(slave(pic).irr, 0x00);
  out(pic, SlaveElcr, 0x04);
  assert.equal(slave(pic).irr, 0x04);
  assert.equal(pic.acknowledge(), 0x72);
});

// ---------------------------------------------------------------------------------------------
// Output and mask listeners
// ---------------------------------------------------------------------------------------------

test('output listener hears each change of the INT line once, and nothing while it stays put', () => {
  const pic = initialisedPic();
  const levels: boolean[] = [];
  pic.setOutputListener((level) => levels.push(level));
  pic.setIrq(4, true);
  pic.setIrq(3, true);
  assert.deepEqual(levels, [true]);
  assert.equal(pic.acknowledge(), 0x0b);
  assert.deepEqual(levels, [true, false], 'IRQ4 waits behind IRQ3 in service');
  out(pic, MasterCommand, NON_SPECIFIC_EOI);
  assert.deepEqual(levels, [true, false, true]);
});

test('acknowledge listeners run before the cascade is re-evaluated: a slave level line lowered by the listener latches no IR2', () => {
  const pic = initialisedPic();
  out(pic, SlaveElcr, 0x08);
  pic.setAckListener(11, (irq) => pic.setIrq(irq, false));
  pic.setIrq(11, true);
  assert.equal(pic.acknowledge(), 0x73);
  out(pic, SlaveCommand, NON_SPECIFIC_EOI);
  out(pic, MasterCommand, NON_SPECIFIC_EOI);
  assert.equal(master(pic).irr, 0x00, 'KVM order: pic_clear_isr notifies before pic_update_irq');
  assert.equal(pic.outputLevel(), false);
});

test('an operation that acknowledges several IRQs updates the cascade once all their listeners ran, not inside the first one', () => {
  const pic = initialisedPic(ICW4_8086_SFNM);
  out(pic, SlaveElcr, 0x0a);
  for (const irq of [9, 11]) pic.setAckListener(irq, (acked) => pic.setIrq(acked, false));
  pic.setIrq(11, true);
  assert.equal(pic.acknowledge(), 0x73);
  pic.setIrq(9, true);
  assert.equal(pic.acknowledge(), 0x71, 'IRQ 9 nests in IRQ 11 (special fully nested master)');
  for (const [port, value] of [
    [SlaveCommand, 0x11],
    [SlaveData, 0x70],
    [SlaveData, 0x02],
    [SlaveData, 0x01],
  ] as const) {
    out(pic, port, value);
  }
  assert.equal(master(pic).irr & 0x04, 0, 'the slave request IRQ 11 held was gone when IR2 was sampled');
});

test('two views (two threads): each view reports the output changes its own operations make, so a rise after another view lowered the line is heard', () => {
  const device = initialisedPic();
  const vcpu = PicPair.fromState(device.descriptor());
  const deviceHeard: boolean[] = [];
  const vcpuHeard: boolean[] = [];
  device.setOutputListener((level) => deviceHeard.push(level));
  vcpu.setOutputListener((level) => vcpuHeard.push(level));
  pulse(device, 4);
  assert.equal(vcpu.acknowledge(), 0x0c);
  out(vcpu, MasterCommand, NON_SPECIFIC_EOI);
  pulse(device, 4);
  assert.deepEqual(deviceHeard, [true, true]);
  assert.deepEqual(vcpuHeard, [false]);
});

test('mask listener hears each flipped IMR bit with its new state, slave bits as IRQ 8–15', () => {
  const pic = initialisedPic();
  const flips: [number, boolean][] = [];
  pic.setMaskListener((irq, masked) => flips.push([irq, masked]));
  out(pic, MasterData, 0x05);
  out(pic, MasterData, 0x04);
  out(pic, SlaveData, 0x80);
  assert.deepEqual(flips, [
    [0, true],
    [2, true],
    [0, false],
    [15, true],
  ]);
});

// ---------------------------------------------------------------------------------------------
// Guest misbehaviour: counted, never thrown
// ---------------------------------------------------------------------------------------------

test('non-byte accesses are ignored and counted; reads float high', () => {
  const pic = initialisedPic();
  assert.equal(pic.readPort(MasterCommand, 2), 0xffff);
  assert.equal(pic.readPort(MasterData, 4), 0xffffffff);
  pic.writePort(MasterData, 2, 0x1234);
  assert.equal(master(pic).imr, 0x00);
  assert.equal(pic.counters().ignoredAccesses, 3);
});

test('ports the PIC does not decode read 0xFF and count as ignored accesses', () => {
  const pic = initialisedPic();
  assert.equal(inb(pic, 0x22), 0xff);
  out(pic, 0x4d2, 0xff);
  assert.equal(pic.counters().ignoredAccesses, 2);
});

test('ICW4 in MCS-80 mode, ICW3 off the PC cascade, and reserved ICW4/OCW3 bits are counted', () => {
  const pic = PicPair.create();
  out(pic, MasterCommand, 0x11);
  out(pic, MasterData, 0x08);
  out(pic, MasterData, 0x08);
  out(pic, MasterData, 0xe0);
  out(pic, MasterCommand, 0x88);
  assert.deepEqual(
    { unsupported: pic.counters().unsupportedModes, reserved: pic.counters().reservedBitWrites },
    { unsupported: 2, reserved: 2 },
  );
  assert.equal(master(pic).initState, InitState.Ready);
});

test('OCW2 no-op (0x40) changes nothing; non-specific EOI with nothing in service does nothing', () => {
  const pic = initialisedPic();
  const before = pic.snapshot();
  out(pic, MasterCommand, 0x40);
  out(pic, MasterCommand, NON_SPECIFIC_EOI);
  out(pic, MasterCommand, 0xa0);
  assert.deepEqual(pic.snapshot(), before);
});

// ---------------------------------------------------------------------------------------------
// Reset, views, caller misuse
// ---------------------------------------------------------------------------------------------

test('reset returns to power-on state (ELCR 0, IMR 0, vector base 0), acknowledges in-service IRQs, keeps counters', () => {
  const pic = initialisedPic();
  out(pic, MasterElcr, 0x10);
  out(pic, MasterData, 0x22);
  pic.setIrq(4, true);
  assert.equal(pic.acknowledge(), 0x0c);
  assert.equal(pic.acknowledge(), 0x0f, 'level IRQ4 waits behind itself in service');
  const acknowledged: number[] = [];
  pic.setAckListener(4, (irq) => acknowledged.push(irq));
  pic.reset();
  const fresh = PicPair.create();
  assert.deepEqual(master(pic), master(fresh));
  assert.deepEqual(slave(pic), slave(fresh));
  assert.equal(pic.outputLevel(), false);
  assert.deepEqual(acknowledged, [4]);
  assert.equal(pic.counters().spuriousAcknowledges, 1);
});

test('a second view built from the descriptor operates on the same pair', () => {
  const pic = initialisedPic();
  const other = PicPair.fromState(pic.descriptor());
  other.setIrq(4, true);
  assert.equal(pic.outputLevel(), true);
  assert.equal(pic.acknowledge(), 0x0c);
  assert.equal(other.registers(0).isr, 0x10);
});

test('caller misuse throws EINVAL and changes nothing', () => {
  const pic = initialisedPic();
  pic.setIrq(4, true);
  const before = pic.snapshot();
  const misuses: (() => unknown)[] = [
    () => pic.setIrq(16, true),
    () => pic.setIrq(-1, true),
    () => pic.setIrq(1.5, true),
    () => pic.setIrq(Number.NaN, false),
    () => pic.setIrq(3, 1 as unknown as boolean),
    () => pic.readPort(0x10000, 1),
    () => pic.readPort(MasterCommand, 3),
    () => { pic.writePort(MasterData, 1, 0x100); },
    () => { pic.writePort(MasterData, 1, -1); },
    () => { pic.writePort(-0x20, 1, 0); },
    () => { pic.setAckListener(16, undefined); },
    () => pic.registers(2 as 0),
    () => PicPair.fromState({ kind: 'pic-pair', buffer: new SharedArrayBuffer(8) }),
    () => PicPair.fromState({ kind: 'ioapic' as 'pic-pair', buffer: pic.descriptor().buffer }),
  ];
  for (const misuse of misuses) {
    assert.throws(misuse, { name: 'IrqChipError', code: 'EINVAL' });
  }
  assert.deepEqual(pic.snapshot(), before);
});

test('a worker thread raising IRQs while this thread acknowledges: every request reported raised is delivered once', async () => {
  const pic = initialisedPic();
  const flags = new Int32Array(new SharedArrayBuffer(WORKER_FLAG_WORDS * Int32Array.BYTES_PER_ELEMENT));
  const workerData: PulseWorkerData = { pic: pic.descriptor(), flags: flags.buffer, irqs: [3, 11], pulses: 5_000 };
  const worker = startTypeScriptWorker(new URL('./pic-worker-fixture.ts', import.meta.url), { workerData });
  await once(worker, 'message');
  const exited = once(worker, 'exit');
  worker.postMessage('start');
  const delivered = new Map<number, number>();
  // Acknowledge whatever the worker raises until it is done and nothing is left pending.
  for (;;) {
    const workerDone = Atomics.load(flags, WorkerFlag.Done) === 1;
    if (pic.outputLevel()) {
      const vector = pic.acknowledge();
      delivered.set(vector, (delivered.get(vector) ?? 0) + 1);
      if (vector >= 0x70) out(pic, SlaveCommand, NON_SPECIFIC_EOI);
      out(pic, MasterCommand, NON_SPECIFIC_EOI);
    } else if (workerDone) {
      break;
    }
  }
  assert.deepEqual(await exited, [0]);
  assert.equal(delivered.get(0x0b) ?? 0, Atomics.load(flags, WorkerFlag.RaisedFirst));
  assert.equal(delivered.get(0x73) ?? 0, Atomics.load(flags, WorkerFlag.RaisedSecond));
  assert.ok((delivered.get(0x0b) ?? 0) > 0 && (delivered.get(0x73) ?? 0) > 0);
});
