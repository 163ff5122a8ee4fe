/**
 * Property tests of the PIC pair: random guest port traffic, pin changes and INTA cycles never
 * throw and keep the 8259A's invariants; snapshots round-trip exactly and damaged ones are
 * refused without effect.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { LOCK_WORDS, encodeSnapshot } from '../../base/shared-state.ts';
import { assertRestoreRejected, damagedSnapshots } from '../controller-test-support.ts';
import { CHIP_WORDS, ChipWord } from './pic-chip.ts';
import { PicChip, type PicChipRegisters, PicPair, PicPort } from './pic.ts';
import { master, out, slave, standardInit } from './pic-test-support.ts';

type Step =
  | { readonly kind: 'out'; readonly port: number; readonly size: number; readonly value: number }
  | { readonly kind: 'in'; readonly port: number; readonly size: number }
  | { readonly kind: 'irq'; readonly irq: number; readonly level: boolean }
  | { readonly kind: 'inta' }
  | { readonly kind: 'reset' };

const PIC_PORTS = Object.values(PicPort);
/** Command and data bytes a guest actually uses, so random walks reach deep states often. */
const MEANINGFUL_BYTES = [
  0x00, 0x01, 0x02, 0x03, 0x04, 0x08, 0x0a, 0x0b, 0x0c, 0x10, 0x11, 0x13, 0x19, 0x1b, 0x20, 0x48, 0x60, 0x62,
  0x64, 0x67, 0x68, 0x70, 0x80, 0xa0, 0xc3, 0xe2, 0xe5, 0xf8, 0xfb, 0xff,
];

function sizeMask(size: number): number {
  return size === 4 ? 0xffffffff : (1 << (size * 8)) - 1;
}

const portArbitrary = fc.oneof(
  { weight: 12, arbitrary: fc.constantFrom(...PIC_PORTS) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) },
);
const sizeArbitrary = fc.oneof({ weight: 12, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.constantFrom(2, 4) });
const valueArbitrary = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...MEANINGFUL_BYTES) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffffff }) },
);

const stepArbitrary: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .tuple(portArbitrary, sizeArbitrary, valueArbitrary)
      .map(([port, size, value]): Step => ({ kind: 'out', port, size, value: (value & sizeMask(size)) >>> 0 })),
  },
  { weight: 2, arbitrary: fc.tuple(portArbitrary, sizeArbitrary).map(([port, size]): Step => ({ kind: 'in', port, size })) },
  {
    weight: 6,
    arbitrary: fc.tuple(fc.integer({ min: 0, max: 15 }), fc.boolean()).map(([irq, level]): Step => ({ kind: 'irq', irq, level })),
  },
  { weight: 4, arbitrary: fc.constant<Step>({ kind: 'inta' }) },
  { weight: 1, arbitrary: fc.constant<Step>({ kind: 'reset' }) },
);

const walkArbitrary = fc.record({ initialise: fc.boolean(), steps: fc.array(stepArbitrary, { maxLength: 80 }) });

/** Runs one step and returns what the guest or device observes (a read, a vector, a result). */
function runStep(pic: PicPair, step: Step): number | undefined {
  switch (step.kind) {
    case 'out':
      pic.writePort(step.port, step.size, step.value);
      return undefined;
    case 'in':
      return pic.readPort(step.port, step.size);
    case 'irq':
      return pic.setIrq(step.irq, step.level);
    case 'inta':
      return pic.acknowledge();
    case 'reset':
      pic.reset();
      return undefined;
  }
}

function freshPic(initialise: boolean): PicPair {
  const pic = PicPair.create();
  if (initialise) standardInit(pic);
  return pic;
}

function assertRegistersInRange(registers: PicChipRegisters, elcrWritable: number): void {
  for (const byte of [registers.irr, registers.imr, registers.isr, registers.lastIrr, registers.elcr]) {
    assert.ok(Number.isInteger(byte) && byte >= 0 && byte <= 0xff, `register byte ${byte}`);
  }
  assert.ok(registers.priorityAdd >= 0 && registers.priorityAdd <= 7);
  assert.equal(registers.irqBase & 0x07, 0);
  assert.equal(registers.elcr & ~elcrWritable, 0, 'forced-edge ELCR bits stay 0');
}

/** Whether `vector` names an IRQ that was requested and unmasked on one of the chips before the INTA. */
function isDeliverable(vector: number, chips: readonly PicChipRegisters[]): boolean {
  return chips.some((chip) => {
    const pin = vector - chip.irqBase;
    return pin >= 0 && pin < 8 && (chip.irr & ~chip.imr & (1 << pin)) !== 0;
  });
}

/** The invariants one step must keep, given the registers before and after it. */
function checkStep(pic: PicPair, step: Step, observed: number | undefined, before: readonly PicChipRegisters[], outputBefore: boolean, spuriousBefore: number): void {
  const after = [master(pic), slave(pic)];
  assertRegistersInRange(after[0] ?? assert.fail(), 0xf8);
  assertRegistersInRange(after[1] ?? assert.fail(), 0xde);
  if (step.kind !== 'reset') {
    before.forEach((chip, index) => {
      const newlyInService = (after[index]?.isr ?? 0) & ~chip.isr;
      assert.equal(newlyInService & ~chip.irr, 0, 'ISR bits are set only for IRQs that were requested');
    });
  }
  if (step.kind !== 'inta' || observed === undefined) return;
  const [masterBefore, slaveBefore] = before as [PicChipRegisters, PicChipRegisters];
  const spurious = pic.counters().spuriousAcknowledges !== spuriousBefore;
  if (!outputBefore) {
    assert.equal(observed, masterBefore.irqBase + 7, 'INTA with the output low is a spurious IRQ7');
    assert.ok(spurious);
  }
  if (spurious) {
    assert.ok(observed === masterBefore.irqBase + 7 || observed === slaveBefore.irqBase + 7);
    assert.equal(after[1]?.isr, slaveBefore.isr, 'a spurious INTA puts nothing in service on the slave');
  } else {
    assert.ok(isDeliverable(observed, before), `vector ${observed} was not an unmasked request`);
  }
}

test('random guest traffic, pin changes and INTAs never throw and keep the 8259A invariants', () => {
  fc.assert(
    fc.property(walkArbitrary, ({ initialise, steps }) => {
      const pic = freshPic(initialise);
      for (const step of steps) {
        const before = [master(pic), slave(pic)];
        const outputBefore = pic.outputLevel();
        const spuriousBefore = pic.counters().spuriousAcknowledges;
        const observed = runStep(pic, step);
        checkStep(pic, step, observed, before, outputBefore, spuriousBefore);
      }
    }),
    { numRuns: 300 },
  );
});

test('a poll read answers 0x80|level only for an unmasked request on that chip, else 0', () => {
  fc.assert(
    fc.property(walkArbitrary, fc.constantFrom(PicPort.MasterCommand, PicPort.SlaveData), ({ initialise, steps }, port) => {
      const pic = freshPic(initialise);
      steps.forEach((step) => runStep(pic, step));
      const chip = pic.registers(port === PicPort.MasterCommand ? PicChip.Master : PicChip.Slave);
      out(pic, port & ~1, 0x0c);
      const answer = pic.readPort(port, 1);
      if (answer === 0) return;
      assert.equal(answer & 0x78, 0);
      assert.ok((answer & 0x80) !== 0);
      assert.ok((chip.irr & ~chip.imr & (1 << (answer & 0x07))) !== 0);
    }),
    { numRuns: 200 },
  );
});

function observe(pic: PicPair): unknown {
  return { master: master(pic), slave: slave(pic), counters: pic.counters(), output: pic.outputLevel() };
}

test('snapshot round trip: a restored pair continues a random walk exactly like the original', () => {
  fc.assert(
    fc.property(walkArbitrary, fc.array(stepArbitrary, { maxLength: 60 }), ({ initialise, steps }, continuation) => {
      const original = freshPic(initialise);
      steps.forEach((step) => runStep(original, step));
      const restored = PicPair.create();
      restored.restore(original.snapshot());
      assert.deepEqual(observe(restored), observe(original));
      for (const step of continuation) {
        assert.equal(runStep(restored, step), runStep(original, step));
      }
      assert.deepEqual(observe(restored), observe(original));
      assert.deepEqual(restored.snapshot(), original.snapshot());
    }),
    { numRuns: 200 },
  );
});

/** The snapshot's bytes with the state words of `pic` under another kind or layout version. */
function reencoded(pic: PicPair, kind: string, version: number): Uint8Array {
  return encodeSnapshot(kind, version, new Int32Array(pic.descriptor().buffer));
}

test('damaged snapshots (truncated, a flipped bit, another kind or version) are refused and change nothing', () => {
  fc.assert(
    fc.property(walkArbitrary, walkArbitrary, fc.nat(), fc.nat(), (source, target, cut, bit) => {
      const donor = freshPic(source.initialise);
      source.steps.forEach((step) => runStep(donor, step));
      const bytes = donor.snapshot();
      const pic = freshPic(target.initialise);
      target.steps.forEach((step) => runStep(pic, step));
      const damaged = [...damagedSnapshots(bytes, cut, bit), reencoded(donor, 'IOAP', 1), reencoded(donor, 'PIC2', 2)];
      for (const damage of damaged) assertRestoreRejected(pic, damage);
    }),
    { numRuns: 100 },
  );
});

test('snapshots holding impossible states are refused with EINVAL and change nothing', () => {
  const donor = PicPair.create();
  standardInit(donor);
  donor.setIrq(12, true);
  const masterWord = (field: ChipWord): number => LOCK_WORDS + field;
  const slaveWord = (field: ChipWord): number => LOCK_WORDS + CHIP_WORDS + field;
  const outputWord = LOCK_WORDS + 2 * CHIP_WORDS;
  const corruptions: [string, number, number][] = [
    ['priority rotation 8', masterWord(ChipWord.PriorityAdd), 8],
    ['IMR above a byte', masterWord(ChipWord.Imr), 0x100],
    ['negative IRR', slaveWord(ChipWord.Irr), -1],
    ['vector base not a multiple of 8', slaveWord(ChipWord.IrqBase), 0x71],
    ['init state 4', masterWord(ChipWord.InitState), 4],
    ['AEOI flag 2', slaveWord(ChipWord.AutoEoi), 2],
    ['forced-edge ELCR bit', masterWord(ChipWord.Elcr), 0x01],
    ['output low with a deliverable request', outputWord, 0],
    ['slave request without master IRR2', masterWord(ChipWord.Irr), 0x00],
  ];
  const pic = PicPair.create();
  pic.setIrq(5, true);
  for (const [what, word, value] of corruptions) {
    const words = new Int32Array(donor.descriptor().buffer).slice();
    words[word] = value;
    assertRestoreRejected(pic, encodeSnapshot('PIC2', 1, words), what);
  }
});

test('restore tells the output listener when the restored INT level differs', () => {
  const donor = PicPair.create();
  standardInit(donor);
  donor.setIrq(4, true);
  const pic = PicPair.create();
  const levels: boolean[] = [];
  pic.setOutputListener((level) => levels.push(level));
  pic.restore(donor.snapshot());
  assert.equal(pic.outputLevel(), true);
  assert.deepEqual(levels, [true]);
});
