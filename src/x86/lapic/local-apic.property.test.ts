/**
 * Local APIC properties (fast-check): random guest register traffic, messages, acknowledges,
 * EOIs, LINT edges, INIT/SIPI processing and time never throw and keep the invariants; a
 * snapshot restored into a fresh APIC behaves identically; damaged snapshots are rejected and
 * change nothing.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { VirtualClock } from '../../base/clock.ts';
import { LOCK_WORDS, decodeSnapshot, encodeSnapshot } from '../../base/shared-state.ts';
import { assertRestoreRejected, damagedSnapshots, RecordingSink } from '../controller-test-support.ts';
import { rejectsWith } from '../../testing/irq-chip-error.ts';
import { DeliveryMode, DestinationMode, interruptMessage, TriggerMode, type InterruptMessage } from '../interrupt-message.ts';
import { MODEL_WORDS, Word } from './local-apic-state.ts';
import { LocalApic, type LocalApicOptions } from './local-apic.ts';
import {
  APIC_BASE_DISABLED,
  APIC_BASE_X2APIC,
  APIC_BASE_XAPIC,
  MSR_APIC_BASE,
  MSR_TSC_DEADLINE,
  Mmio,
  RecordingEoiListener,
  SVR_ENABLED,
  ScriptedPic,
  msrOf,
  vectorsOf,
} from './local-apic-test-support.ts';

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

type Operation =
  | { readonly kind: 'mmioRead'; readonly offset: number; readonly size: number }
  | { readonly kind: 'mmioWrite'; readonly offset: number; readonly size: number; readonly value: number }
  | { readonly kind: 'readMsr'; readonly index: number }
  | { readonly kind: 'writeMsr'; readonly index: number; readonly value: bigint }
  | { readonly kind: 'accept'; readonly message: InterruptMessage }
  | { readonly kind: 'tpr'; readonly value: number }
  | { readonly kind: 'acknowledge' }
  | { readonly kind: 'eoi' }
  | { readonly kind: 'advance'; readonly ns: number }
  | { readonly kind: 'lint'; readonly pin: number; readonly level: boolean }
  | { readonly kind: 'pic'; readonly level: boolean }
  | { readonly kind: 'local'; readonly source: 'thermal' | 'performance-counter' }
  | { readonly kind: 'initSipi'; readonly blocked: boolean }
  | { readonly kind: 'takeNmi' }
  | { readonly kind: 'takeSmi' }
  | { readonly kind: 'halt' }
  | { readonly kind: 'reset' };

/** Values that steer the APIC into interesting states, mixed with arbitrary ones. */
const registerValue = fc.oneof(
  fc.constantFrom(0, SVR_ENABLED, 0x11ff, 0xff, 0x700, 0x10700, 0x400, 0x8035, 0x30, 0x20030, 0x40030, 0x10030, 0xb, 0x4041, 0x44042, 0x84043, 0x4500, 0x4608, 0xffffffff),
  fc.integer({ min: 0, max: 0xffff }),
  fc.integer({ min: 0, max: 0xffffffff }),
);

const registerOffset = fc.oneof(
  { weight: 9, arbitrary: fc.integer({ min: 0, max: 0x3f }).map((register) => register * 16) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xff8 }) },
);

const accessSize = fc.oneof({ weight: 9, arbitrary: fc.constant(4) }, { weight: 1, arbitrary: fc.constantFrom(1, 2, 8) });

const msrIndex = fc.oneof(
  { weight: 1, arbitrary: fc.constantFrom(MSR_APIC_BASE, MSR_TSC_DEADLINE) },
  { weight: 6, arbitrary: fc.integer({ min: 0x800, max: 0x83f }) },
  { weight: 1, arbitrary: fc.integer({ min: 0x840, max: 0x8ff }) },
);

const msrValue = fc.oneof(
  fc.constantFrom(0n, APIC_BASE_XAPIC | 0x100n, APIC_BASE_X2APIC | 0x100n, APIC_BASE_DISABLED, APIC_BASE_XAPIC | 0x200n, 0x1ffn, 0x60n, (1n << 32n) | 0x4051n),
  fc.bigInt({ min: 0n, max: 0xffffffffn }),
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
);

/** Messages to physical destination 0 (this APIC), without shorthand or redirection hint. */
const messageArbitrary: fc.Arbitrary<InterruptMessage> = fc
  .record({
    destinationMode: fc.constantFrom(DestinationMode.Physical, DestinationMode.Logical),
    deliveryMode: fc.oneof({ weight: 6, arbitrary: fc.constantFrom(0, 1) }, { weight: 4, arbitrary: fc.integer({ min: 2, max: 7 }) }),
    // Mostly a few priority classes, so that nesting, same-class waits and TPR masking happen often.
    vector: fc.oneof(
      { weight: 7, arbitrary: fc.integer({ min: 0x20, max: 0x5f }) },
      { weight: 2, arbitrary: fc.integer({ min: 16, max: 255 }) },
      { weight: 1, arbitrary: fc.integer({ min: 0, max: 15 }) },
    ),
    triggerMode: fc.constantFrom(TriggerMode.Edge, TriggerMode.Level),
    level: fc.boolean(),
  })
  .map((fields) => interruptMessage({ ...fields, deliveryMode: fields.deliveryMode as DeliveryMode }));

const operation: fc.Arbitrary<Operation> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('mmioRead' as const), offset: registerOffset, size: accessSize }) },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('mmioWrite' as const), offset: registerOffset, size: accessSize, value: registerValue }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('readMsr' as const), index: msrIndex }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('writeMsr' as const), index: msrIndex, value: msrValue }) },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('accept' as const), message: messageArbitrary }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('tpr' as const), value: fc.integer({ min: 0, max: 0x6f }) }) },
  { weight: 4, arbitrary: fc.constant({ kind: 'acknowledge' as const }) },
  { weight: 3, arbitrary: fc.constant({ kind: 'eoi' as const }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('advance' as const), ns: fc.oneof(fc.integer({ min: 0, max: 2000 }), fc.integer({ min: 0, max: 2_000_000 })) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('lint' as const), pin: fc.constantFrom(0, 1), level: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('pic' as const), level: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('local' as const), source: fc.constantFrom('thermal' as const, 'performance-counter' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('initSipi' as const), blocked: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'takeNmi' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'takeSmi' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'halt' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'reset' as const }) },
);

/** A walk starts with the APIC software-enabled (most interesting) or as RESET left it. */
const walk = fc.record({ enableFirst: fc.boolean(), operations: fc.array(operation, { maxLength: 80 }) });

// ---------------------------------------------------------------------------------------------
// A LAPIC under test and the guest-visible result of each operation
// ---------------------------------------------------------------------------------------------

interface Subject {
  readonly apic: LocalApic;
  readonly pic: ScriptedPic;
  readonly sink: RecordingSink;
  readonly eoi: RecordingEoiListener;
}

const OPTIONS = { busIndex: 1, bsp: false, x2apicId: 0x21, tscHz: 1_000_000_000, directedEoi: true } as const;

function makeSubject(clock: VirtualClock, options: Partial<LocalApicOptions> = {}): Subject {
  const pic = new ScriptedPic();
  const sink = new RecordingSink();
  const eoi = new RecordingEoiListener();
  const apic = LocalApic.create({ ...OPTIONS, clock, ipiSink: sink, eoiListener: eoi, extInt: pic, ...options });
  return { apic, pic, sink, eoi };
}

/** Applies an operation that is not a clock move; returns what the guest or vCPU observed. */
function apply(subject: Subject, op: Operation): unknown {
  const { apic } = subject;
  switch (op.kind) {
    case 'mmioRead':
      return apic.mmioRead(op.offset, op.size);
    case 'mmioWrite':
      apic.mmioWrite(op.offset, op.size, op.size >= 4 ? op.value : op.value & ((1 << (op.size * 8)) - 1));
      return undefined;
    case 'readMsr':
      return apic.readMsr(op.index);
    case 'writeMsr':
      return apic.writeMsr(op.index, op.value);
    case 'accept':
      return apic.accept(op.message);
    case 'tpr':
      return writeInCurrentMode(apic, Mmio.TaskPriority, op.value);
    case 'acknowledge':
      return apic.acknowledgeInterrupt();
    case 'eoi':
      return writeInCurrentMode(apic, Mmio.Eoi, 0);
    case 'advance':
      apic.processTimerExpiry();
      return apic.nextTimerDeadlineNs();
    case 'lint':
      apic.setLintLevel(op.pin, op.level);
      return undefined;
    case 'pic':
      subject.pic.level = op.level;
      apic.setLintLevel(0, op.level);
      return apic.hasInterrupt();
    case 'local':
      apic.signalLocalInterrupt(op.source);
      return undefined;
    case 'initSipi':
      return apic.processInitSipi(op.blocked);
    case 'takeNmi':
      return apic.takeNmi();
    case 'takeSmi':
      return apic.takeSmi();
    case 'halt':
      apic.setMpState(3);
      return apic.hasPendingEvents(true);
    case 'reset':
      apic.reset();
      return undefined;
  }
}

/** A register write through the interface of the current mode: WRMSR in x2APIC mode (its #GP result), else MMIO. */
function writeInCurrentMode(apic: LocalApic, offset: number, value: number): boolean | undefined {
  if (apic.isX2apicMode()) return apic.writeMsr(msrOf(offset), BigInt(value));
  apic.mmioWrite(offset, 4, value);
  return undefined;
}

/** TPR and PPR as the guest reads them in the current mode, or undefined when the registers are not reachable (EN = 0). */
function readPriorities(apic: LocalApic): { tpr: number; ppr: number } | undefined {
  if (apic.isX2apicMode()) {
    const tpr = apic.readMsr(msrOf(Mmio.TaskPriority));
    const ppr = apic.readMsr(msrOf(Mmio.ProcessorPriority));
    assert.ok(tpr.ok && ppr.ok);
    return { tpr: Number(tpr.value), ppr: Number(ppr.value) };
  }
  if (!apic.isHardwareEnabled()) return undefined;
  return { tpr: apic.mmioRead(Mmio.TaskPriority, 4), ppr: apic.mmioRead(Mmio.ProcessorPriority, 4) };
}

/** PPR per SDM §11.8.3.1: TPR if TPR[7:4] ≥ ISRV[7:4], else ISRV[7:4]:0. */
function expectedPpr(tpr: number, inService: readonly number[]): number {
  const isrvClass = (inService.at(-1) ?? 0) & 0xf0;
  return (tpr & 0xf0) >= isrvClass ? tpr : isrvClass;
}

function checkInvariants(apic: LocalApic, irrBefore: readonly number[], isrBefore: readonly number[]): void {
  const irr = vectorsOf((vector) => apic.irr(vector));
  const isr = vectorsOf((vector) => apic.isr(vector));
  for (const vector of isr) {
    if (!isrBefore.includes(vector)) assert.ok(irrBefore.includes(vector), `ISR ${vector} set without having been in IRR`);
  }
  assert.ok(irr.every((vector) => vector >= 16) && isr.every((vector) => vector >= 16), 'no illegal vector in IRR/ISR');
  const priorities = readPriorities(apic);
  if (priorities !== undefined) {
    assert.equal(priorities.ppr, expectedPpr(priorities.tpr, isr), 'PPR from TPR and ISR');
    assert.equal(apic.processorPriority(), priorities.ppr);
  }
  if (apic.isX2apicMode()) assert.equal(apic.apicId(), apic.x2apicId());
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

test('random guest accesses, messages, acknowledges, EOIs and time never throw and keep the invariants', () => {
  fc.assert(
    fc.property(walk, ({ enableFirst, operations }) => {
      const clock = new VirtualClock();
      const subject = makeSubject(clock);
      if (enableFirst) subject.apic.mmioWrite(Mmio.SpuriousVector, 4, SVR_ENABLED);
      for (const op of operations) {
        const irrBefore = vectorsOf((vector) => subject.apic.irr(vector));
        const isrBefore = vectorsOf((vector) => subject.apic.isr(vector));
        if (op.kind === 'advance') clock.advance(op.ns);
        apply(subject, op);
        checkInvariants(subject.apic, irrBefore, isrBefore);
      }
    }),
    { numRuns: 150 },
  );
});

test('snapshot, restore into a fresh APIC, continue the same walk on both: identical behaviour', () => {
  fc.assert(
    fc.property(walk, fc.array(operation, { maxLength: 60 }), ({ enableFirst, operations }, continuation) => {
      const clock = new VirtualClock();
      const original = makeSubject(clock);
      if (enableFirst) original.apic.mmioWrite(Mmio.SpuriousVector, 4, SVR_ENABLED);
      for (const op of operations) {
        if (op.kind === 'advance') clock.advance(op.ns);
        apply(original, op);
      }
      const copy = makeSubject(clock);
      copy.apic.restore(original.apic.snapshot());
      copy.pic.level = original.pic.level;
      const sentBefore = original.sink.messages.length;
      const eoisBefore = original.eoi.vectors.length;
      for (const op of continuation) {
        if (op.kind === 'advance') clock.advance(op.ns);
        assert.deepEqual(apply(copy, op), apply(original, op), `after ${JSON.stringify(op, (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}`);
      }
      assert.deepEqual(copy.sink.messages, original.sink.messages.slice(sentBefore));
      assert.deepEqual(copy.eoi.vectors, original.eoi.vectors.slice(eoisBefore));
      assert.deepEqual(copy.apic.counters(), original.apic.counters());
      assert.deepEqual(copy.apic.snapshot(), original.apic.snapshot());
    }),
    { numRuns: 100 },
  );
});

const isEinval = rejectsWith('EINVAL');

/** Expects `restore(bytes)` to throw EINVAL and leave the target exactly as it was, counters included. */
function assertRejected(target: LocalApic, bytes: Uint8Array): void {
  const counters = target.counters();
  assertRestoreRejected(target, bytes);
  assert.deepEqual(target.counters(), counters);
}

/** A walked APIC's snapshot and a different APIC to restore into. */
function walkedSnapshot(operations: readonly Operation[]): { bytes: Uint8Array; target: LocalApic } {
  const clock = new VirtualClock();
  const source = makeSubject(clock);
  source.apic.mmioWrite(Mmio.SpuriousVector, 4, SVR_ENABLED);
  for (const op of operations) {
    if (op.kind === 'advance') clock.advance(op.ns);
    apply(source, op);
  }
  const target = makeSubject(clock).apic;
  target.mmioWrite(Mmio.SpuriousVector, 4, SVR_ENABLED);
  target.accept(interruptMessage({ vector: 0x77, triggerMode: TriggerMode.Level }));
  return { bytes: source.apic.snapshot(), target };
}

test('truncated or bit-flipped snapshots are rejected with the state unchanged', () => {
  fc.assert(
    fc.property(fc.array(operation, { maxLength: 30 }), fc.nat(), fc.nat(), (operations, cut, flip) => {
      const { bytes, target } = walkedSnapshot(operations);
      for (const damaged of damagedSnapshots(bytes, cut, flip)) assertRejected(target, damaged);
    }),
    { numRuns: 50 },
  );
});

/** The snapshot's payload words with `change` applied, re-encoded with a valid checksum. */
function tampered(bytes: Uint8Array, change: (word: (index: number, value?: number) => number) => void, kind = 'LAPC', version = 1): Uint8Array {
  const payload = decodeSnapshot(bytes, 'LAPC', 1, MODEL_WORDS);
  const words = new Int32Array(LOCK_WORDS + MODEL_WORDS);
  words.set(payload, LOCK_WORDS);
  change((index, value) => {
    if (value !== undefined) words[index] = value;
    return words[index] ?? 0;
  });
  return encodeSnapshot(kind, version, words);
}

test('snapshots of another kind, another layout version, another APIC, or of an impossible state are rejected with the state unchanged', () => {
  const { bytes, target } = walkedSnapshot([]);
  assert.doesNotThrow(() => {
    makeSubject(new VirtualClock()).apic.restore(tampered(bytes, () => undefined));
  }, 'the untampered re-encoding is accepted');
  assertRejected(target, tampered(bytes, () => undefined, 'IOAP'));
  assertRejected(target, tampered(bytes, () => undefined, 'LAPC', 2));
  assertRejected(target, makeSubject(new VirtualClock(), { busIndex: 2, x2apicId: 0x22 }).apic.snapshot());
  assertRejected(target, makeSubject(new VirtualClock(), { directedEoi: false }).apic.snapshot());
  const impossible: [string, (word: (index: number, value?: number) => number) => void][] = [
    ['MP state 9', (word) => word(Word.MpState, 9)],
    ['EN = 0, EXTD = 1', (word) => word(Word.ApicBaseLow, 0xfee00400 | 0)],
    ['APIC base bit 9', (word) => word(Word.ApicBaseLow, word(Word.ApicBaseLow) | 0x200)],
    ['APIC base bit 52, above MAXPHYADDR', (word) => word(Word.ApicBaseHigh, 0x00100000)],
    ['x2APIC with a foreign ID', (word) => word(Word.ApicBaseLow, 0xfee00c00 | 0)],
    ['xAPIC ID low bits', (word) => word(Word.Id, 0x01000001)],
    ['TPR above 0xFF', (word) => word(Word.TaskPriority, 0x100)],
    ['DFR low bits clear', (word) => word(Word.DestinationFormat, 0)],
    ['LVT reserved bit', (word) => word(Word.LvtFirst + 1, 0x80000)],
    ['reserved timer mode', (word) => word(Word.LvtFirst, 0x60000)],
    ['TDCR bit 2', (word) => word(Word.TimerDivide, 0x4)],
    ['timer armed with no count', (word) => word(Word.TimerArmed, 1)],
    ['timer armed flag 2', (word) => word(Word.TimerArmed, 2)],
    ['pending-event bit 5', (word) => word(Word.PendingEvents, 0x20)],
    ['SIPI vector 0x100', (word) => word(Word.SipiVector, 0x100)],
    ['LINT level bit 2', (word) => word(Word.LintLevels, 4)],
    ['ESR bit 8', (word) => word(Word.ErrorStatus, 0x100)],
    ['ICR delivery status', (word) => word(Word.InterruptCommandLow, 0x1000)],
  ];
  for (const [what, change] of impossible) {
    assert.throws(() => {
      target.restore(tampered(bytes, change));
    }, isEinval, what);
  }
  assertRejected(target, tampered(bytes, (word) => word(Word.MpState, 9)));
});
