import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { PicPort } from '../x86/pic/pic.ts';
import { kvmSkipReason } from './kvm-test-support.ts';
import { assertRandomOracleRuns, describeOracleDifference, oracleOpSequences, oracleRunCount } from './oracle-guest.ts';
import { CASCADE_IRQ, PIC_DIFFERENCES, planPicOracleRun, replayOnKvm, type PicOracleOp, type PicOraclePlan } from './pic-oracle.ts';

const skip = kvmSkipReason("differential test of KVM's in-kernel 8259A pair against PicPair");

/** ICW1 bits generated freely: A7–A5 and ADI (ignored in 8086 mode) and IC4. SNGL and LTIM stay 0 (`icw1-single-ltim`). */
const ICW1 = 0x10;
const ICW1_FREE_BITS = 0xe5;
const OCW3 = 0x08;
/** Everything but bit 4 (which would make it ICW1) and bit 3 (set: OCW3). */
const OCW3_FREE_BITS = 0xe7;
/** OCW2: command bits 7:5 and level bits 2:0; bits 4:3 are 0. */
const OCW2_BITS = 0xe7;
const ICW4_8086 = 0x01;
const ICW4_AEOI = 0x02;
const ICW4_SFNM = 0x10;

const commandPort = fc.constantFrom(PicPort.MasterCommand, PicPort.SlaveCommand);
const dataPort = fc.constantFrom(PicPort.MasterData, PicPort.SlaveData);
const anyPicPort = fc.constantFrom(PicPort.MasterCommand, PicPort.MasterData, PicPort.SlaveCommand, PicPort.SlaveData, PicPort.MasterElcr, PicPort.SlaveElcr);
const byte = fc.integer({ min: 0, max: 0xff });
const lineIrq = fc.integer({ min: 0, max: 15 }).filter((irq) => irq !== CASCADE_IRQ);

const write = (port: number, value: number): PicOracleOp => ({ kind: 'write', port, value });

/** A whole initialisation of one chip, as a BIOS or OS does it: ICW1–ICW4 with a random base, AEOI and SFNM. */
const initialisation = fc
  .record({ master: fc.boolean(), base: byte, autoEoi: fc.boolean(), sfnm: fc.boolean() })
  .map(({ master, base, autoEoi, sfnm }): PicOracleOp[] => {
    const [command, data, icw3] = master ? [PicPort.MasterCommand, PicPort.MasterData, 0x04] : [PicPort.SlaveCommand, PicPort.SlaveData, 0x02];
    return [write(command, ICW1 | 0x01), write(data, base), write(data, icw3), write(data, ICW4_8086 | (autoEoi ? ICW4_AEOI : 0) | (sfnm ? ICW4_SFNM : 0))];
  });

const oneOp: fc.Arbitrary<PicOracleOp[]> = fc.oneof(
  { weight: 2, arbitrary: initialisation },
  { weight: 1, arbitrary: fc.tuple(commandPort, byte).map(([port, bits]) => [write(port, ICW1 | (bits & ICW1_FREE_BITS))]) },
  { weight: 3, arbitrary: fc.tuple(commandPort, byte).map(([port, bits]) => [write(port, bits & OCW2_BITS)]) },
  { weight: 2, arbitrary: fc.tuple(commandPort, byte).map(([port, bits]) => [write(port, OCW3 | (bits & OCW3_FREE_BITS))]) },
  { weight: 3, arbitrary: fc.tuple(dataPort, byte).map(([port, value]) => [write(port, value)]) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(PicPort.MasterElcr, PicPort.SlaveElcr), byte).map(([port, value]) => [write(port, value)]) },
  { weight: 2, arbitrary: anyPicPort.map((port): PicOracleOp[] => [{ kind: 'read', port }]) },
  { weight: 5, arbitrary: fc.tuple(lineIrq, fc.boolean()).map(([irq, level]): PicOracleOp[] => [{ kind: 'line', irq, level }]) },
  { weight: 4, arbitrary: fc.constant<PicOracleOp[]>([{ kind: 'inta' }]) },
);

const opSequence = oracleOpSequences(oneOp);
const RUNS = oracleRunCount('PIC_ORACLE_RUNS');

function describeDifference(plan: PicOraclePlan): string | undefined {
  return describeOracleDifference(plan, replayOnKvm(plan));
}

describe("KVM's in-kernel 8259A pair and PicPair agree (differential test)", { skip }, () => {
  test('a BIOS-style initialisation, IRQ4 edge and IRQ10 level, INTA, EOI: same registers, statuses, reads and vectors step by step', () => {
    const ops: PicOracleOp[] = [
      write(PicPort.MasterCommand, 0x11), write(PicPort.MasterData, 0x20), write(PicPort.MasterData, 0x04), write(PicPort.MasterData, 0x01),
      write(PicPort.SlaveCommand, 0x11), write(PicPort.SlaveData, 0x28), write(PicPort.SlaveData, 0x02), write(PicPort.SlaveData, 0x01),
      write(PicPort.SlaveElcr, 0x04),
      { kind: 'line', irq: 4, level: true },
      { kind: 'line', irq: 10, level: true },
      { kind: 'inta' }, // IR2 (the slave's IRQ10) outranks IR4
      { kind: 'inta' },
      write(PicPort.MasterCommand, 0x0b), { kind: 'read', port: PicPort.MasterCommand },
      write(PicPort.SlaveCommand, 0x20), write(PicPort.MasterCommand, 0x20),
      { kind: 'line', irq: 10, level: false },
      { kind: 'inta' }, // master IRR2 stayed latched (edge) after IRQ10 fell: spurious IRQ15
      write(PicPort.MasterCommand, 0x20),
      { kind: 'inta' },
    ];
    const plan = planPicOracleRun(ops);
    assert.deepEqual(plan.skipped, {}, 'nothing left out');
    const vectors = plan.steps.filter((step) => step.op.kind === 'inta').map((step) => step.expected?.result);
    assert.deepEqual(vectors, [0x2a, -1, 0x2f, 0x24], 'our model: IRQ10 via IR2; nothing (IR2 in service outranks IR4); spurious IRQ15; IRQ4');
    assert.equal(describeDifference(plan), undefined);
  });

  test(`random operation sequences (${RUNS} runs): KVM and ours agree after every operation, up to the listed differences`, () => {
    assertRandomOracleRuns({ title: 'PIC differences (KVM vs ours)', differences: PIC_DIFFERENCES, ops: opSequence, runs: RUNS, plan: planPicOracleRun, replay: describeDifference });
  });
});
