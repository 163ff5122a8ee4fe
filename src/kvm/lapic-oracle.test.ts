import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { DeliveryMode, DestinationMode, TriggerMode } from '../x86/interrupt-message.ts';
import { ApicRegister, LVT_REGISTERS } from '../x86/lapic/apic-registers.ts';
import { encodeMsi } from '../x86/msi/msi-codec.ts';
import { kvmSkipReason } from './kvm-test-support.ts';
import { assertRandomOracleRuns, describeOracleDifference, oracleOpSequences, oracleRunCount } from './oracle-guest.ts';
import {
  LAPIC_COMPARED_REGISTERS,
  LAPIC_DIFFERENCES,
  kvmLapicHost,
  planLapicOracleRun,
  replayLapicOnKvm,
  type LapicObservation,
  type LapicOracleOp,
  type LapicOraclePlan,
} from './lapic-oracle.ts';

const skip = kvmSkipReason("differential test of KVM's in-kernel local APIC against LocalApic");

/** The module that serves /dev/kvm on the PVM hosts this project runs on (kvm-from-node.md). */
const PVM_MODULE = '/sys/module/kvm_pvm';

const write = (register: number, value: number): LapicOracleOp => ({ kind: 'write', register, value: value >>> 0 });
const read = (register: number): LapicOracleOp => ({ kind: 'read', register });
const inta: LapicOracleOp = { kind: 'inta' };
const msi = (vector: number, fields: { destination?: number; logical?: boolean; level?: boolean; lowestPriority?: boolean } = {}): LapicOracleOp => {
  const { addressLow, data } = encodeMsi({
    destination: fields.destination ?? 0,
    destinationMode: fields.logical === true ? DestinationMode.Logical : DestinationMode.Physical,
    redirectionHint: false,
    deliveryMode: fields.lowestPriority === true ? DeliveryMode.LowestPriority : DeliveryMode.Fixed,
    vector,
    triggerMode: fields.level === true ? TriggerMode.Level : TriggerMode.Edge,
    level: true,
  });
  return { kind: 'msi', addressLow, data };
};

/** A difference with each register named by its offset in the xAPIC page. */
function describeDifference(plan: LapicOraclePlan): string | undefined {
  const named = (observation: LapicObservation): unknown => ({
    ...observation,
    registers: Object.fromEntries(LAPIC_COMPARED_REGISTERS.map((register, index) => [`0x${(register * 16).toString(16)}`, `0x${(observation.registers[index] ?? 0).toString(16)}`])),
  });
  return describeOracleDifference(plan, replayLapicOnKvm(plan), named);
}

/** Vectors of every priority class that matters here, all legal, plus a few illegal ones (< 16). */
const vector = fc.constantFrom(0x05, 0x20, 0x21, 0x3f, 0x40, 0x41, 0x80, 0x8f, 0xf0, 0xff);
const destination = fc.constantFrom(0x00, 0x00, 0x00, 0x01, 0x02, 0x0f, 0x10, 0xff);
const anyDword = fc.integer({ min: 0, max: 0xffffffff });
/** TMICT values that never expire within a run (see lapic-oracle.ts on time). */
const longCount = fc.oneof(fc.constant(0), fc.integer({ min: 0x80000000, max: 0xffffffff }));
const lvt = fc.constantFrom(...LVT_REGISTERS);
/** LVT values: any vector, delivery mode and flag; LINT and timer modes alike (none is ever triggered here). */
const lvtValue = fc.tuple(anyDword, fc.boolean()).map(([bits, masked]) => (masked ? bits | 0x10000 : bits & ~0x10000) >>> 0);
/** ICR low values that are safe to send: fixed or lowest priority to anyone; INIT, SIPI, NMI, SMI only as level de-asserts or to nobody. */
const icrLow = fc
  .record({ vector, mode: fc.constantFrom(0, 0, 1, 2, 4, 5, 6, 7), logical: fc.boolean(), level: fc.boolean(), trigger: fc.boolean(), shorthand: fc.constantFrom(0, 0, 1, 2, 3), reserved: fc.constantFrom(0, 0, 0x2000, 0xfff00000, 0x00031000) })
  .map((f) => (f.vector | (f.mode << 8) | (f.logical ? 0x800 : 0) | (f.level ? 0x4000 : 0) | (f.trigger ? 0x8000 : 0) | (f.shorthand << 18) | f.reserved) >>> 0);
const FIXED_MODES = new Set([0, 1, 7]);

const oneOp: fc.Arbitrary<LapicOracleOp[]> = fc.oneof(
  { weight: 5, arbitrary: fc.tuple(vector, destination, fc.boolean(), fc.boolean(), fc.boolean()).map(([v, d, logical, level, lowestPriority]) => [msi(v, { destination: d, logical, level, lowestPriority })]) },
  { weight: 5, arbitrary: fc.constant<LapicOracleOp[]>([inta]) },
  { weight: 2, arbitrary: fc.constantFrom(0x00, 0x10, 0x3f, 0x40, 0x7f, 0xff).map((tpr) => [write(ApicRegister.TaskPriority, tpr)]) },
  { weight: 2, arbitrary: fc.constant<LapicOracleOp[]>([write(ApicRegister.EndOfInterrupt, 0)]) },
  { weight: 1, arbitrary: fc.constantFrom(0x1ff, 0x1ff, 0x1ff, 0x0ff, 0x3ff, 0x13f, 0xfffff1ff).map((svr) => [write(ApicRegister.SpuriousVector, svr)]) },
  { weight: 1, arbitrary: fc.constantFrom(0, 0x01000000, 0x02000000, 0x03000000, 0x11000000, 0xff000000, 0x00ffffff).map((ldr) => [write(ApicRegister.LogicalDestination, ldr)]) },
  { weight: 1, arbitrary: fc.constantFrom(0xffffffff, 0xffffffff, 0x0fffffff, 0x00000000, 0x1fffffff).map((dfr) => [write(ApicRegister.DestinationFormat, dfr)]) },
  { weight: 1, arbitrary: fc.constantFrom(0, 0, 0x01000000, 0xff000000, 0x00ffffff).map((id) => [write(ApicRegister.Id, id)]) },
  { weight: 3, arbitrary: fc.tuple(lvt, lvtValue).map(([register, value]) => [write(register, value)]) },
  { weight: 1, arbitrary: fc.tuple(longCount, fc.integer({ min: 0, max: 0xf })).map(([count, divide]) => [write(ApicRegister.TimerDivideConfiguration, divide), write(ApicRegister.TimerInitialCount, count)]) },
  { weight: 1, arbitrary: anyDword.map((value) => [write(ApicRegister.ErrorStatus, value), read(ApicRegister.ErrorStatus)]) },
  {
    weight: 3,
    arbitrary: fc.tuple(icrLow, destination).map(([low, dest]) => {
      // INIT (not a de-assert), SIPI, NMI and SMI would stop or reset the vCPU: only to nobody.
      const mode = (low >>> 8) & 7;
      const deassert = mode === 5 && (low & 0xc000) === 0x8000;
      const safe = FIXED_MODES.has(mode) || deassert;
      const icrLowValue = safe ? low : (low & ~0x000c0800) >>> 0;
      return [write(ApicRegister.InterruptCommandHigh, (safe ? dest : 0x42) << 24), write(ApicRegister.InterruptCommand, icrLowValue)];
    }),
  },
  { weight: 2, arbitrary: fc.constantFrom(...LAPIC_COMPARED_REGISTERS, ApicRegister.EndOfInterrupt, 0x00, 0x01, 0x04, 0x2f, 0x3a, 0x3f).map((register) => [read(register)]) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(ApicRegister.Version, ApicRegister.ProcessorPriority, ApicRegister.InServiceFirst, 0x04, 0x2f, 0x3f), anyDword).map(([register, value]) => [write(register, value)]) },
);

const opSequence = oracleOpSequences(oneOp);
const RUNS = oracleRunCount('LAPIC_ORACLE_RUNS');

describe("KVM's in-kernel local APIC and LocalApic agree (differential test)", { skip }, () => {
  test('eoi-at-delivery: KVM ends an interrupt as it injects it on this PVM host (ISR and PPR stay 0, a lower class is taken without an EOI)', () => {
    const host = kvmLapicHost();
    assert.equal(host.eoisAtDelivery, existsSync(PVM_MODULE), `the probe found eoisAtDelivery = ${host.eoisAtDelivery} on a host ${existsSync(PVM_MODULE) ? 'with' : 'without'} kvm_pvm`);
    // Two requests of different classes; the SDM takes 0x80, holds 0x40 behind it until the EOI.
    const ops = [msi(0x40), msi(0x80), inta, read(ApicRegister.InServiceFirst + 4), read(ApicRegister.ProcessorPriority), inta, write(ApicRegister.EndOfInterrupt, 0), inta, write(ApicRegister.EndOfInterrupt, 0)];
    const sdm = planLapicOracleRun(ops, { eoisAtDelivery: false });
    const atDelivery = planLapicOracleRun(ops, { eoisAtDelivery: true });
    const taken = (plan: LapicOraclePlan): (number | undefined)[] => plan.steps.filter((step) => step.op.kind === 'inta').map((step) => step.expected.result);
    assert.deepEqual(taken(sdm), [0x80, -1, 0x40], 'SDM §11.8.3.1: 0x40 waits for the EOI of 0x80');
    assert.deepEqual(taken(atDelivery), [0x80, 0x40, -1], 'ended at delivery, 0x40 is taken at the next window');
    const [asHost, other] = host.eoisAtDelivery ? [atDelivery, sdm] : [sdm, atDelivery];
    assert.equal(describeDifference(asHost), undefined, 'KVM agrees step by step with the behaviour the probe found');
    const difference = replayLapicOnKvm(other);
    assert.equal(difference?.op.kind, 'inta', 'and differs from the other one at the first INTA');
    const isrBank = LAPIC_COMPARED_REGISTERS.indexOf(ApicRegister.InServiceFirst + 4);
    assert.equal(difference.kvm.registers[isrBank], host.eoisAtDelivery ? 0 : 1, 'in ISR bit 0x80');
  });

  test('interrupts, priorities, IPIs to self and register writes: same registers, statuses and vectors step by step', () => {
    const ops = [
      write(ApicRegister.TaskPriority, 0x30), msi(0x20), msi(0x41, { level: true }), inta, inta,
      write(ApicRegister.TaskPriority, 0), inta, write(ApicRegister.EndOfInterrupt, 0),
      write(ApicRegister.LogicalDestination, 0x02000000), msi(0x60, { destination: 0x02, logical: true }), msi(0x61, { destination: 0x01, logical: true }), inta,
      write(ApicRegister.InterruptCommandHigh, 0), write(ApicRegister.InterruptCommand, 0x000040a0), write(ApicRegister.InterruptCommand, 0x000440a1), inta, inta,
      write(ApicRegister.LvtLint1, 0x00005400), read(ApicRegister.LvtLint1), write(ApicRegister.SpuriousVector, 0xff), read(ApicRegister.LvtTimer), msi(0x70), inta,
    ];
    const plan = planLapicOracleRun(ops, kvmLapicHost());
    assert.deepEqual(plan.skipped, {}, 'nothing left out');
    assert.equal(describeDifference(plan), undefined);
  });

  test(`random operation sequences (${RUNS} runs): KVM and ours agree after every operation, up to the listed differences`, () => {
    const host = kvmLapicHost();
    assertRandomOracleRuns({
      title: `LAPIC differences (KVM vs ours; this host: eoisAtDelivery = ${host.eoisAtDelivery})`,
      differences: LAPIC_DIFFERENCES,
      ops: opSequence,
      runs: RUNS,
      plan: (ops) => planLapicOracleRun(ops, host),
      replay: describeDifference,
    });
  });
});
