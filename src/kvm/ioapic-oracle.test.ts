import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { IoapicMmioOffset, IoapicRegisterIndex } from '../x86/ioapic/ioapic.ts';
import { ApicRegister } from '../x86/lapic/apic-registers.ts';
import { IOAPIC_DIFFERENCES, planIoapicOracleRun, replayIoapicOnKvm, type IoapicOracleOp, type IoapicOraclePlan } from './ioapic-oracle.ts';
import { LAPIC_VECTOR_BANKS, kvmLapicHost } from './lapic-oracle.ts';
import { kvmSkipReason } from './kvm-test-support.ts';
import { assertRandomOracleRuns, describeOracleDifference, oracleOpSequences, oracleRunCount } from './oracle-guest.ts';

const skip = kvmSkipReason("differential test of KVM's in-kernel IOAPIC against Ioapic");

const RTE_LEVEL = 0x8000;
const SIZE_MASK = { 1: 0xff, 2: 0xffff, 4: 0xffffffff } as const;
const RTE_MASK = 0x10000;
const RTE_REMOTE_IRR = 0x4000;
const write = (offset: number, value: number, size: 1 | 2 | 4 = 4): IoapicOracleOp => ({ kind: 'write', offset, size, value });
const select = (index: number): IoapicOracleOp => write(IoapicMmioOffset.RegisterSelect, index);
const window = (value: number): IoapicOracleOp => write(IoapicMmioOffset.Window, value);
const line = (pin: number, level: boolean): IoapicOracleOp => ({ kind: 'line', pin, level });
const inta: IoapicOracleOp = { kind: 'inta' };

/** Vectors few enough that pins share them (EOIs scan every entry, §6.5), all legal (≥ 16). */
const vector = fc.constantFrom(0x20, 0x21, 0x40, 0x41, 0x80, 0xa0, 0xf0);
/** Destinations: mostly the LAPIC (ID 0); also nobody, broadcast, and logical IDs a LDR write can take. */
const destination = fc.constantFrom(0x00, 0x00, 0x00, 0x01, 0x02, 0x0f, 0x10, 0xff);
/**
 * Redirection entries: fixed or lowest-priority delivery only (NMI, INIT, SMI and ExtINT would
 * stop or reset the oracle's vCPU, and KVM sends the reserved modes as other messages), with the
 * read-only bits 12 and 14 and the reserved bits 31:17 set at random.
 */
const entryLow = fc
  .record({ vector, lowestPriority: fc.boolean(), logical: fc.boolean(), readOnly: fc.constantFrom(0, 0x1000, 0x4000, 0x5000), polarity: fc.boolean(), level: fc.boolean(), masked: fc.constantFrom(false, false, true), reserved: fc.constantFrom(0, 0, 0, 0xfffe0000, 0x00020000) })
  .map((f) => (f.vector | (f.lowestPriority ? 0x100 : 0) | (f.logical ? 0x800 : 0) | f.readOnly | (f.polarity ? 0x2000 : 0) | (f.level ? RTE_LEVEL : 0) | (f.masked ? RTE_MASK : 0) | f.reserved) >>> 0);
const entryHigh = fc.tuple(destination, fc.constantFrom(0, 0, 0x00ffffff, 0x00010000)).map(([dest, reserved]) => ((dest << 24) | reserved) >>> 0);
/** A few pins, so lines meet programmed entries; the first and last pins are among them. RTC_PIN is never driven (`rtc-pin`). */
const pin = fc.constantFrom(0, 1, 2, 9, 23);
const lowSelect = (p: number): number => IoapicRegisterIndex.RedirectionTable + 2 * p;

const oneOp: fc.Arbitrary<IoapicOracleOp[]> = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(pin, entryLow).map(([p, low]) => [select(lowSelect(p)), window(low)]) },
  { weight: 2, arbitrary: fc.tuple(pin, entryHigh).map(([p, high]) => [select(lowSelect(p) + 1), window(high)]) },
  { weight: 6, arbitrary: fc.tuple(pin, fc.boolean()).map(([p, level]) => [line(p, level)]) },
  { weight: 4, arbitrary: fc.constant<IoapicOracleOp[]>([inta]) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(0, 1, 2, 3, 0x0f, 0x10, 0x2f, 0x3f, 0x40, 0xff, 0x1ff), fc.constantFrom<1 | 2 | 4>(1, 2, 4)).map(([index, size]) => [write(IoapicMmioOffset.RegisterSelect, index & (size === 1 ? 0xff : 0xffff), size)]) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom(IoapicMmioOffset.RegisterSelect, IoapicMmioOffset.Window, IoapicMmioOffset.Window, 0x20, IoapicMmioOffset.EndOfInterrupt), fc.constantFrom<1 | 2 | 4>(1, 2, 4, 4)).map(([offset, size]): IoapicOracleOp[] => [{ kind: 'read', offset, size }]) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(0x20, IoapicMmioOffset.EndOfInterrupt), fc.constantFrom<1 | 2 | 4>(1, 2, 4), fc.integer({ min: 0, max: 0xffffffff })).map(([offset, size, value]) => [write(offset, (value & SIZE_MASK[size]) >>> 0, size)]) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom<1 | 2>(1, 2), fc.integer({ min: 0, max: 0xffff })).map(([size, value]) => [write(IoapicMmioOffset.Window, value & SIZE_MASK[size], size)]) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(IoapicRegisterIndex.Id, IoapicRegisterIndex.Version, IoapicRegisterIndex.Arbitration), fc.integer({ min: 0, max: 0xffffffff })).map(([index, value]) => [select(index), window(value)]) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom(ApicRegister.LogicalDestination, ApicRegister.DestinationFormat, ApicRegister.EndOfInterrupt), fc.constantFrom(0, 0x01000000, 0x02000000, 0x10000000, 0x11000000, 0xffffffff, 0x0fffffff)).map(([register, value]): IoapicOracleOp[] => [{ kind: 'lapic-write', register, value }]) },
);

const opSequence = oracleOpSequences(oneOp);
const RUNS = oracleRunCount('IOAPIC_ORACLE_RUNS');

function describeDifference(plan: IoapicOraclePlan): string | undefined {
  return describeOracleDifference(plan, replayIoapicOnKvm(plan));
}

describe("KVM's in-kernel IOAPIC and Ioapic agree (differential test)", { skip }, () => {
  test('a level and an edge pin, taken and EOIed as a guest does: same registers, statuses, reads, LAPIC banks and vectors step by step', () => {
    const eoi: IoapicOracleOp = { kind: 'lapic-write', register: ApicRegister.EndOfInterrupt, value: 0 };
    const ops: IoapicOracleOp[] = [
      select(lowSelect(5)), window(0x50 | RTE_LEVEL), select(lowSelect(9)), window(0x40), // pin 5 level 0x50, pin 9 edge 0x40, both to APIC 0
      line(5, true), line(9, true),
      { kind: 'read', offset: IoapicMmioOffset.Window, size: 4 },
      inta, eoi, inta, eoi, // the level line, still asserted, comes back after each EOI and outranks 0x40
      line(5, false), inta, eoi, // the last re-delivery, taken after the line fell
      inta, eoi, // now 0x40
      line(9, false), line(9, true), inta, eoi,
    ];
    const plan = planIoapicOracleRun(ops, kvmLapicHost());
    assert.deepEqual(plan.skipped, {}, 'nothing left out');
    const vectors = plan.steps.filter((step) => step.op.kind === 'inta').map((step) => step.expected.result);
    assert.deepEqual(vectors, [0x50, 0x50, 0x50, 0x40, 0x40]);
    const LEVEL = 1;
    const EDGE = 0;
    assert.deepEqual(
      plan.deliveries.map(({ message, result }) => [message.vector, message.triggerMode, result]),
      [[0x50, LEVEL, 1], [0x40, EDGE, 1], [0x50, LEVEL, 1], [0x50, LEVEL, 1], [0x40, EDGE, 1]],
      'our IOAPIC sent the level vector at the assertion and at the two EOIs that found the line high, and the edge vector at each rising edge; the LAPIC took every one',
    );
    assert.equal(describeDifference(plan), undefined);
  });

  test("eoi-at-delivery, seen from the IOAPIC: KVM clears a level pin's remote IRR when its interrupt is injected, not at the guest's EOI", () => {
    const host = kvmLapicHost();
    const plan = (eoisAtDelivery: boolean): IoapicOraclePlan => planIoapicOracleRun([select(lowSelect(5)), window(0x50 | RTE_LEVEL), line(5, true), inta], { eoisAtDelivery });
    const asHost = replayIoapicOnKvm(plan(host.eoisAtDelivery));
    assert.equal(asHost, undefined, 'KVM agrees with our IOAPIC under the behaviour the probe found');
    const other = replayIoapicOnKvm(plan(!host.eoisAtDelivery));
    assert.equal(other?.op.kind, 'inta', 'and differs at the INTA under the other one');
    if (!host.eoisAtDelivery) return;
    // Vector 0x50 is bit 16 of the third ISR and IRR registers.
    const bit = (registers: readonly number[], first: number): boolean => ((registers[LAPIC_VECTOR_BANKS.indexOf(first + 2)] ?? 0) & (1 << 16)) !== 0;
    const { kvm } = other;
    assert.equal(bit(kvm.lapic, ApicRegister.InServiceFirst), false, 'KVM: 0x50 is not in service after the INTA');
    assert.equal(bit(kvm.lapic, ApicRegister.InterruptRequestFirst), true, 'KVM: the EOI at injection found pin 5 still asserted and delivered it again');
    assert.equal(((kvm.ioapic.redirectionTable[5]?.low ?? 0) & RTE_REMOTE_IRR) !== 0, true, 'KVM: and remote IRR is set again by that delivery');
  });

  test('random operation sequences: KVM and ours agree after every operation, up to the listed differences', () => {
    const host = kvmLapicHost();
    assertRandomOracleRuns({
      title: 'IOAPIC differences (KVM vs ours)',
      differences: IOAPIC_DIFFERENCES,
      ops: opSequence,
      runs: RUNS,
      plan: (ops) => planIoapicOracleRun(ops, host),
      replay: describeDifference,
    });
  });
});
