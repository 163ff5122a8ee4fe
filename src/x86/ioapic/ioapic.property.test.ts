/**
 * Property tests: random guest register traffic, pin changes, EOIs and time never throw out of the
 * IOAPIC and keep its invariants; snapshots taken mid-walk continue identically after restore;
 * damaged snapshots are always rejected.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import { VirtualClock } from '../../base/clock.ts';
import { assertRestoreRejected, damagedSnapshots, RecordingSink } from '../controller-test-support.ts';
import { DeliveryMode, TriggerMode, type InterruptMessage } from '../interrupt-message.ts';
import {
  Ioapic,
  IOAPIC_PIN_COUNT,
  IOAPIC_RTC_PIN,
  IOAPIC_STORM_DELAY_NS,
  IoapicMmioOffset,
  type IoapicOptions,
} from './ioapic.ts';
import {
  RTE_DELIVERY_STATUS,
  RTE_REMOTE_IRR,
  rteIsLevelTriggered,
  rteIsMasked,
  rteMessage,
} from './redirection-entry.ts';
import { entryHigh, entryLow, entryLowIndex } from './test-support.ts';

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

type Operation =
  | { readonly kind: 'read'; readonly offset: number; readonly size: number }
  | { readonly kind: 'write'; readonly offset: number; readonly size: number; readonly value: number }
  | { readonly kind: 'register'; readonly index: number; readonly value: number }
  | { readonly kind: 'irq'; readonly pin: number; readonly level: boolean }
  | { readonly kind: 'eoi'; readonly vector: number; readonly triggerMode: TriggerMode }
  | { readonly kind: 'time'; readonly ns: number }
  | { readonly kind: 'resampled'; readonly pin: number; readonly resampled: boolean }
  | { readonly kind: 'reset' };

/** A few vectors and a few pins (the RTC pin among them), so that entries, lines and EOIs meet often. */
const vectorArbitrary = fc.constantFrom(0x30, 0x31, 0x32, 0x33);
const hotPinArbitrary = fc.constantFrom(0, 3, IOAPIC_RTC_PIN, 9);
const pinArbitrary = fc.oneof(
  { weight: 4, arbitrary: hotPinArbitrary },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: IOAPIC_PIN_COUNT - 1 }) },
);

/** RTE low halves: mostly unmasked Fixed entries, every field varied, RO and reserved bits now and then. */
const entryLowArbitrary = fc
  .record({
    vector: vectorArbitrary,
    deliveryMode: fc.oneof(
      { weight: 6, arbitrary: fc.constant(DeliveryMode.Fixed) },
      { weight: 2, arbitrary: fc.constant(DeliveryMode.LowestPriority) },
      { weight: 2, arbitrary: fc.integer({ min: 0, max: 7 }).map((mode) => mode as DeliveryMode) },
    ),
    logical: fc.boolean(),
    activeLow: fc.boolean(),
    level: fc.boolean(),
    masked: fc.oneof({ weight: 3, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
    extraBits: fc.constantFrom(0, 0, 0, RTE_DELIVERY_STATUS, RTE_REMOTE_IRR, 0x00020000, 0x80000000),
  })
  .map((fields) => (entryLow(fields) | fields.extraBits) >>> 0);

const entryHighArbitrary = fc.oneof(
  fc.integer({ min: 0, max: 0xff }).map((destination) => entryHigh(destination)),
  fc.integer({ min: 0, max: 0xffffffff }),
);

/** An IOREGSEL + IOWIN write: mostly to a hot pin's entry, sometimes anywhere with anything. */
const registerWriteArbitrary: fc.Arbitrary<Operation> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({ pin: hotPinArbitrary, value: entryLowArbitrary }).map(
      ({ pin, value }): Operation => ({ kind: 'register', index: entryLowIndex(pin), value }),
    ),
  },
  {
    weight: 1,
    arbitrary: fc.record({ pin: hotPinArbitrary, value: entryHighArbitrary }).map(
      ({ pin, value }): Operation => ({ kind: 'register', index: entryLowIndex(pin) + 1, value }),
    ),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('register' as const),
      index: fc.integer({ min: 0, max: 0xff }),
      value: fc.integer({ min: 0, max: 0xffffffff }),
    }),
  },
);

const sizeArbitrary = fc.constantFrom(1, 2, 4, 4, 4, 8);

function valueForSize(raw: number, size: number): number {
  return size >= 4 ? raw : raw % 2 ** (8 * size);
}

const operationArbitrary: fc.Arbitrary<Operation> = fc.oneof(
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('read' as const),
      offset: fc.oneof(fc.constantFrom(0x00, 0x10, 0x40), fc.integer({ min: 0, max: 0xff })),
      size: sizeArbitrary,
    }),
  },
  {
    weight: 2,
    arbitrary: fc
      .record({
        offset: fc.oneof(fc.constantFrom(0x00, 0x10, 0x40), fc.integer({ min: 0, max: 0xff })),
        size: sizeArbitrary,
        raw: fc.oneof(vectorArbitrary, fc.integer({ min: 0, max: 0xffffffff })),
      })
      .map(({ offset, size, raw }): Operation => ({ kind: 'write', offset, size, value: valueForSize(raw, size) })),
  },
  { weight: 6, arbitrary: registerWriteArbitrary },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('irq' as const), pin: pinArbitrary, level: fc.boolean() }) },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('eoi' as const),
      vector: vectorArbitrary,
      triggerMode: fc.constantFrom(TriggerMode.Level, TriggerMode.Level, TriggerMode.Edge),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('time' as const), ns: fc.integer({ min: 0, max: 2 * IOAPIC_STORM_DELAY_NS }) }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('resampled' as const), pin: hotPinArbitrary, resampled: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'reset' as const }) },
);

/**
 * A walk of up to `maxLength` operations. `size: 'max'` because fast-check's default size keeps
 * arrays under about 10 elements whatever `maxLength` says: too short to reach interesting states.
 */
function walkArbitrary(maxLength: number): fc.Arbitrary<Operation[]> {
  return fc.array(operationArbitrary, { maxLength, size: 'max' });
}

const optionsArbitrary = fc.record({
  version: fc.constantFrom(0x11 as const, 0x20 as const),
  rtcEoiTracking: fc.boolean(),
  extendedDestinationId: fc.boolean(),
});
type WalkOptions = Pick<IoapicOptions, 'version' | 'rtcEoiTracking' | 'extendedDestinationId'>;

/** Applies one operation the way a guest, a device or a LAPIC would; returns what it returned. */
function apply(ioapic: Ioapic, clock: VirtualClock, operation: Operation): number | undefined {
  switch (operation.kind) {
    case 'read':
      return ioapic.mmioRead(operation.offset, operation.size);
    case 'write':
      ioapic.mmioWrite(operation.offset, operation.size, operation.value);
      return undefined;
    case 'register':
      ioapic.mmioWrite(IoapicMmioOffset.RegisterSelect, 4, operation.index);
      ioapic.mmioWrite(IoapicMmioOffset.Window, 4, operation.value);
      return undefined;
    case 'irq':
      return ioapic.setIrq(operation.pin, operation.level);
    case 'eoi':
      ioapic.endOfInterrupt(operation.vector, operation.triggerMode);
      return undefined;
    case 'time':
      clock.advance(operation.ns);
      ioapic.runDelayedWork();
      return ioapic.nextDeadlineNs();
    case 'resampled':
      ioapic.setPinResampled(operation.pin, operation.resampled);
      return undefined;
    case 'reset':
      ioapic.reset();
      return undefined;
  }
}

/** A sink that answers from a cycle of results and checks each message came from an unmasked entry. */
function checkingSink(results: readonly number[], extendedDestinationId: boolean, ioapicOf: () => Ioapic): RecordingSink {
  const sink = new RecordingSink();
  let next = 0;
  sink.result = (message: InterruptMessage) => {
    const ioapic = ioapicOf();
    const sources = Array.from({ length: IOAPIC_PIN_COUNT }, (_, pin) => ioapic.redirectionEntry(pin)).filter(
      (entry) => !rteIsMasked(entry.low) && isDeepStrictEqual(rteMessage(entry.low, entry.high, extendedDestinationId), message),
    );
    assert.ok(sources.length > 0, `message ${JSON.stringify(message)} from no unmasked entry`);
    return results[next++ % results.length] ?? 1;
  };
  return sink;
}

function checkInvariants(ioapic: Ioapic, previousCounters: Readonly<Record<string, number>>): void {
  for (let pin = 0; pin < IOAPIC_PIN_COUNT; pin++) {
    const { low } = ioapic.redirectionEntry(pin);
    assert.equal(low & RTE_DELIVERY_STATUS, 0, `pin ${pin}: delivery status reads 0`);
    if (ioapic.remoteIrr(pin)) assert.ok(rteIsLevelTriggered(low), `pin ${pin}: remote IRR only on level entries`);
  }
  assert.ok(ioapic.mmioRead(IoapicMmioOffset.RegisterSelect, 4) <= 0xff);
  for (const [name, value] of Object.entries(ioapic.counters())) {
    assert.ok(value >= (previousCounters[name] ?? 0), `counter ${name} never goes back`);
  }
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

test('random guest, device and EOI traffic never throws and keeps the invariants', () => {
  fc.assert(
    fc.property(
      optionsArbitrary,
      fc.array(fc.constantFrom(-1, 0, 1, 1, 2), { minLength: 1, maxLength: 5 }),
      walkArbitrary(120),
      fc.array(fc.tuple(pinArbitrary, fc.boolean()), { maxLength: 3 }),
      (options: WalkOptions, results, operations, resamplers) => {
        const clock = new VirtualClock();
        // The sink inspects the IOAPIC it is attached to; it is first called after `create` returns.
        const sink = checkingSink(results, options.extendedDestinationId ?? false, () => ioapic);
        const ioapic = Ioapic.create({ ...options, sink, clock });
        const reasserting = new Set<number>();
        for (const [pin, reasserts] of resamplers) {
          ioapic.setPinResampled(pin, true);
          if (reasserts) reasserting.add(pin);
          else reasserting.delete(pin);
        }
        ioapic.setResampleListener((pin) => {
          if (reasserting.has(pin)) ioapic.setIrq(pin, true);
        });
        let counters = ioapic.counters();
        for (const operation of operations) {
          const result = apply(ioapic, clock, operation);
          if (operation.kind === 'read') assert.ok(result !== undefined && result >= 0 && result <= 0xffffffff);
          checkInvariants(ioapic, counters);
          counters = ioapic.counters();
        }
      },
    ),
    { numRuns: 150 },
  );
});

test('with every message accepted, an unmasked asserted level line always awaits its EOI or a deferral', () => {
  fc.assert(
    fc.property(optionsArbitrary, walkArbitrary(120), (options: WalkOptions, operations) => {
      const clock = new VirtualClock();
      const ioapic = Ioapic.create({ ...options, sink: new RecordingSink(), clock });
      for (const operation of operations) {
        apply(ioapic, clock, operation);
        for (let pin = 0; pin < IOAPIC_PIN_COUNT; pin++) {
          const { low } = ioapic.redirectionEntry(pin);
          if (!rteIsLevelTriggered(low) || rteIsMasked(low) || !ioapic.lineLevel(pin)) continue;
          assert.ok(
            ioapic.remoteIrr(pin) || ioapic.nextDeadlineNs() !== undefined,
            `pin ${pin} is pending but neither delivered nor deferred`,
          );
        }
      }
    }),
    { numRuns: 150 },
  );
});

test('snapshot mid-walk, restore into a fresh IOAPIC: the rest of the walk behaves identically', () => {
  fc.assert(
    fc.property(
      optionsArbitrary,
      walkArbitrary(80),
      walkArbitrary(80),
      fc.array(fc.constantFrom(-1, 0, 1), { minLength: 1, maxLength: 4 }),
      (options: WalkOptions, before, after, results) => {
        /** The same cycle of sink results, from its start. */
        const resultCycle = () => {
          let next = 0;
          return () => results[next++ % results.length] ?? 1;
        };
        const make = (clock: VirtualClock) => {
          const sink = new RecordingSink();
          sink.result = resultCycle();
          return { sink, ioapic: Ioapic.create({ ...options, sink, clock }) };
        };
        const originalClock = new VirtualClock();
        const original = make(originalClock);
        for (const operation of before) apply(original.ioapic, originalClock, operation);

        const copyClock = new VirtualClock(originalClock.nowNs());
        const copy = make(copyClock);
        copy.ioapic.restore(original.ioapic.snapshot());
        original.sink.clear();
        original.sink.result = resultCycle();
        for (const operation of after) {
          assert.equal(apply(copy.ioapic, copyClock, operation), apply(original.ioapic, originalClock, operation));
        }
        assert.deepEqual(copy.sink.messages, original.sink.messages);
        assert.deepEqual(copy.ioapic.snapshot(), original.ioapic.snapshot());
      },
    ),
    { numRuns: 100 },
  );
});

test('with the lock free, trySetIrq behaves exactly as setIrq through any walk', () => {
  fc.assert(
    fc.property(optionsArbitrary, walkArbitrary(120), (options: WalkOptions, operations) => {
      const make = () => {
        const clock = new VirtualClock();
        const sink = new RecordingSink();
        return { clock, sink, ioapic: Ioapic.create({ ...options, sink, clock }) };
      };
      const locking = make();
      const trying = make();
      for (const operation of operations) {
        const expected = apply(locking.ioapic, locking.clock, operation);
        const actual =
          operation.kind === 'irq'
            ? trying.ioapic.trySetIrq(operation.pin, operation.level)
            : apply(trying.ioapic, trying.clock, operation);
        assert.equal(actual, expected);
      }
      assert.deepEqual(trying.sink.messages, locking.sink.messages);
      assert.deepEqual(trying.ioapic.snapshot(), locking.ioapic.snapshot());
    }),
    { numRuns: 100 },
  );
});

test('a snapshot with any flipped bit or any truncation is rejected and changes nothing', () => {
  fc.assert(
    fc.property(walkArbitrary(40), fc.nat(), fc.nat(), (operations, bit, cut) => {
      const clock = new VirtualClock();
      const source = Ioapic.create({ sink: new RecordingSink(), clock });
      for (const operation of operations) apply(source, clock, operation);
      const target = Ioapic.create({ sink: new RecordingSink(), clock: new VirtualClock() });
      for (const damaged of damagedSnapshots(source.snapshot(), cut, bit)) assertRestoreRejected(target, damaged);
    }),
    { numRuns: 100 },
  );
});
