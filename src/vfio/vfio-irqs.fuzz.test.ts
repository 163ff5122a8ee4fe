/**
 * Fuzz: random SET_IRQS buffers (lengths, flags, indexes, ranges, argsz, payloads) against random
 * functions. Each request is applied or rejected with an `IrqChipError`, never anything else, and
 * the outcome agrees with `referenceOutcome` below: a separate reading of the uapi header's comment
 * and the kernel's rules, written in one pass over the raw bytes without the engine's helpers.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { IrqChipError } from '../base/errors.ts';
import { Event } from '../event/event.ts';
import { VfioIrqs, type VfioIrqsConfig, type VfioIrqsState } from './vfio-irqs.ts';

// ---- The reference ----------------------------------------------------------------------------

interface Shape {
  readonly intx: boolean;
  /** The pin has a host IRQ (else INTx enable is ENODEV). */
  readonly intxHostIrq: boolean;
  readonly msi: number;
  readonly msix: number;
  readonly pcie: boolean;
  readonly dynamicMsix: boolean;
  readonly hostVectors: number;
}

interface Expected {
  /** 'OK' or the errno. */
  readonly outcome: string;
  /** For an eventfd block that fails on an already enabled MSI/MSI-X index: the failing position. */
  readonly failedAt?: number;
}

const ok: Expected = { outcome: 'OK' };
const fail = (outcome: string): Expected => ({ outcome });

function subIndexes(shape: Shape, index: number): number {
  return [shape.intx ? 1 : 0, shape.msi, shape.msix, shape.pcie ? 1 : 0, 1][index] ?? 0;
}

/** What Linux vfio-pci answers to `bytes` on a function shaped `shape` in state `before`. */
function referenceOutcome(shape: Shape, before: VfioIrqsState, bytes: Uint8Array, isOpen: (fd: number) => boolean): Expected {
  if (bytes.length < 20) return fail('EFAULT'); // copy_from_user of the header faults
  const raw = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const argsz = raw.getUint32(0, true);
  const flags = raw.getUint32(4, true);
  const index = raw.getUint32(8, true);
  const start = raw.getUint32(12, true);
  const count = raw.getUint32(16, true);
  if (argsz < 20 || index >= 5 || count >= 0xffffffff - start || flags > 0x3f) return fail('EINVAL');
  const n = subIndexes(shape, index);
  if (start >= n || start + count > n) return fail('EINVAL');
  const dataBits = flags & 0x7;
  const width = new Map([[1, 0], [2, 1], [4, 4]]).get(dataBits);
  if (width === undefined) return fail('EINVAL');
  if (argsz - 20 < count * width) return fail('EINVAL'); // the validation trusts argsz
  if (bytes.length - 20 < count * width) return fail('EFAULT'); // then memdup_user of the payload faults
  const fdAt = (i: number): number => raw.getInt32(20 + 4 * i, true);
  const actionBits = flags & 0x38;
  const none = dataBits === 1;
  const eventfds = dataBits === 4;
  const active = before.activeIndex;

  if (index === 0) {
    if (actionBits === 0x08 || actionBits === 0x10) {
      if (active !== 0 || start !== 0 || count !== 1) return fail('EINVAL');
      if (!eventfds) return ok;
      if (actionBits === 0x08) return fail('ENOTTY');
      const fd = fdAt(0);
      if (fd < 0) return ok;
      if (!isOpen(fd)) return fail('EBADF');
      return before.intxUnmaskEvent === null ? ok : fail('EBUSY');
    }
    if (actionBits !== 0x20) return fail('ENOTTY');
    if (active === 0 && count === 0 && none) return ok;
    if ((active !== 0 && active !== null) || start !== 0 || count !== 1) return fail('EINVAL');
    if (eventfds) {
      if (fdAt(0) >= 0 && !isOpen(fdAt(0))) return fail('EBADF'); // eventfd_ctx_fdget comes first
      return active === 0 || shape.intxHostIrq ? ok : fail('ENODEV');
    }
    return active === 0 ? ok : fail('EINVAL');
  }

  if (index === 1 || index === 2) {
    if (actionBits !== 0x20) return fail('ENOTTY');
    if (active === index && count === 0 && none) return ok;
    if (active !== index && active !== null) return fail('EINVAL');
    if (!eventfds) return active === index ? ok : fail('EINVAL');
    const allocated = new Set(active === index ? before.allocatedVectors : []);
    if (active !== index) {
      if (start + count === 0) return fail('ERANGE'); // pci_alloc_irq_vectors(1, 0)
      if (start + count > shape.hostVectors) return fail('ENOSPC');
      for (let v = 0; v < start + count; v++) allocated.add(v);
    }
    // When the index was enabled by this call, a failure disables it again: no partial state.
    const failure = (outcome: string, position: number): Expected => (active === index ? { outcome, failedAt: position } : fail(outcome));
    for (let i = 0; i < count; i++) {
      const fd = fdAt(i);
      if (fd < 0) continue;
      if (!allocated.has(start + i)) {
        if (index !== 2 || !shape.dynamicMsix) return failure('EINVAL', i);
        if (allocated.size >= shape.hostVectors) return failure('ENOSPC', i);
        allocated.add(start + i);
      }
      if (!isOpen(fd)) return failure('EBADF', i);
    }
    return ok;
  }

  // ERR (3) and REQ (4)
  if (actionBits !== 0x20 || (index === 3 && !shape.pcie)) return fail('ENOTTY');
  if (start !== 0 || count > 1) return fail('EINVAL');
  const bound = (index === 3 ? before.errTrigger : before.reqTrigger) !== null;
  if (none) return bound ? ok : fail('EINVAL');
  if (count === 0) return fail('EINVAL');
  if (eventfds && fdAt(0) >= 0 && !isOpen(fdAt(0))) return fail('EBADF');
  return ok;
}

// ---- Generators -------------------------------------------------------------------------------

const U32_MAX = 0xffffffff;
const EVENT_COUNT = 4;
/** fds 0-2 stay open; fd 3 is closed before the run; 7 and 1000 were never opened. */
const CLOSED_FD = 3;

const mostly = fc.constantFrom(true, true, true, false);
const shapeArbitrary: fc.Arbitrary<Shape> = fc.record({
  intx: mostly,
  intxHostIrq: mostly,
  msi: fc.constantFrom(0, 1, 2, 4, 8),
  msix: fc.constantFrom(0, 1, 3, 16),
  pcie: mostly,
  dynamicMsix: fc.boolean(),
  hostVectors: fc.constantFrom(Number.MAX_SAFE_INTEGER, 0, 2, 6),
});

const u32Near = (values: readonly number[]): fc.Arbitrary<number> =>
  fc.oneof(fc.integer({ min: 0, max: 20 }), fc.constantFrom(...values), fc.integer({ min: 0, max: U32_MAX }));

const flagsArbitrary = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(fc.constantFrom(1, 2, 4), fc.constantFrom(0x08, 0x10, 0x20)).map(([data, action]) => data | action) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 0x3f }) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: U32_MAX }) },
);

/** Mostly open fds and -1, so that requests get applied; some closed, never opened and odd negative ones. */
const fdArbitrary = fc.constantFrom(0, 1, 2, 0, 1, 2, -1, -1, CLOSED_FD, -2, 7, 1000, -0x80000000);

interface RawRequest {
  readonly flags: number;
  readonly index: number;
  readonly start: number;
  /** The header's count; undefined: the number of payload entries, as a well-formed request has. */
  readonly count: number | undefined;
  readonly fds: readonly number[];
  readonly bools: readonly number[];
  /** How argsz relates to the payload. */
  readonly argszMode: 'exact' | 'random' | 'large';
  readonly randomArgsz: number;
  /** Bytes cut off the end of the buffer (0: none). */
  readonly truncate: number;
}

const randomRequestArbitrary: fc.Arbitrary<RawRequest> = fc.record({
  flags: flagsArbitrary,
  index: fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 0, max: 4 }) }, { weight: 1, arbitrary: u32Near([5, U32_MAX]) }),
  start: fc.oneof(
    { weight: 10, arbitrary: fc.constantFrom(0, 0, 0, 1, 2, 3) },
    { weight: 3, arbitrary: fc.integer({ min: 0, max: 18 }) },
    { weight: 1, arbitrary: u32Near([U32_MAX, U32_MAX - 1]) },
  ),
  count: fc.oneof(
    { weight: 8, arbitrary: fc.constant(undefined) },
    { weight: 2, arbitrary: fc.integer({ min: 0, max: 18 }) },
    { weight: 1, arbitrary: u32Near([U32_MAX, U32_MAX - 1, 2 ** 31]) },
  ),
  // Short payloads dominate: INTx, ERR and REQ take exactly one entry.
  fds: fc.oneof({ weight: 3, arbitrary: fc.array(fdArbitrary, { maxLength: 2 }) }, { weight: 1, arbitrary: fc.array(fdArbitrary, { maxLength: 8 }) }),
  bools: fc.oneof({ weight: 3, arbitrary: fc.array(fc.constantFrom(0, 1, 0xff), { maxLength: 2 }) }, { weight: 1, arbitrary: fc.array(fc.constantFrom(0, 1, 0xff), { maxLength: 8 }) }),
  argszMode: fc.constantFrom('exact', 'exact', 'exact', 'exact', 'random', 'large'),
  randomArgsz: fc.integer({ min: 0, max: 60 }),
  truncate: fc.oneof({ weight: 8, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 30 }) }),
});

/** Requests a caller could mean: one data type, one action, a small range, a matching payload. */
const plausibleRequestArbitrary: fc.Arbitrary<RawRequest> = fc.record({
  flags: fc.tuple(fc.constantFrom(1, 2, 4), fc.constantFrom(0x08, 0x10, 0x20, 0x20)).map(([data, action]) => data | action),
  index: fc.integer({ min: 0, max: 4 }),
  start: fc.constantFrom(0, 0, 0, 1, 2),
  count: fc.constant(undefined),
  fds: fc.array(fdArbitrary, { maxLength: 3 }),
  bools: fc.array(fc.constantFrom(0, 1), { maxLength: 3 }),
  argszMode: fc.constant('exact' as const),
  randomArgsz: fc.constant(0),
  truncate: fc.constant(0),
});

const requestArbitrary = fc.oneof(plausibleRequestArbitrary, randomRequestArbitrary);

/** A well-formed eventfd TRIGGER/UNMASK request, to start sequences in the states the rules depend on. */
function wellFormed(action: number, index: number, fds: readonly number[]): RawRequest {
  return { flags: 0x4 | action, index, start: 0, count: undefined, fds, bools: [], argszMode: 'exact', randomArgsz: 0, truncate: 0 };
}

const prefixArbitrary: fc.Arbitrary<readonly RawRequest[]> = fc.constantFrom(
  [],
  [wellFormed(0x20, 0, [0])],
  [wellFormed(0x20, 0, [0]), wellFormed(0x10, 0, [1])],
  [wellFormed(0x20, 1, [0, -1, 1])],
  [wellFormed(0x20, 2, [0, 1])],
  [wellFormed(0x20, 3, [2]), wellFormed(0x20, 4, [2])],
);

/** Random requests after a prefix that enables something (or nothing). */
const sequenceArbitrary: fc.Arbitrary<readonly RawRequest[]> = fc
  .tuple(prefixArbitrary, fc.array(requestArbitrary, { minLength: 5, maxLength: 30 }))
  .map(([prefix, requests]) => [...prefix, ...requests]);

/** Builds the bytes by hand, without the codec under test. */
function buildBytes(request: RawRequest): Uint8Array {
  const payloadIsFds = (request.flags & 0x7) === 4;
  const entries = payloadIsFds ? request.fds.length : request.bools.length;
  const payloadBytes = payloadIsFds ? entries * 4 : entries;
  const full = new Uint8Array(20 + payloadBytes);
  const view = new DataView(full.buffer);
  const argsz = { exact: full.length, random: request.randomArgsz, large: full.length + 1024 }[request.argszMode];
  [argsz, request.flags, request.index, request.start, request.count ?? entries].forEach((value, position) => {
    view.setUint32(position * 4, value, true);
  });
  if (payloadIsFds) request.fds.forEach((fd, i) => { view.setInt32(20 + 4 * i, fd, true); });
  else full.set(request.bools, 20);
  return full.subarray(0, Math.max(0, full.length - request.truncate));
}

// ---- The run ----------------------------------------------------------------------------------

interface Subject {
  readonly irqs: VfioIrqs;
  readonly eventOfFd: ReadonlyMap<number, Event>;
}

function subject(shape: Shape): Subject {
  const config: VfioIrqsConfig = {
    intx: shape.intx,
    intxHostIrq: shape.intxHostIrq,
    msiVectors: shape.msi,
    msixVectors: shape.msix,
    pcie: shape.pcie,
    dynamicMsix: shape.dynamicMsix,
    hostVectors: shape.hostVectors,
  };
  const irqs = new VfioIrqs(config);
  const eventOfFd = new Map<number, Event>();
  for (let i = 0; i < EVENT_COUNT; i++) {
    const event = Event.create();
    eventOfFd.set(irqs.fds.install(event), event);
  }
  irqs.fds.close(CLOSED_FD);
  eventOfFd.delete(CLOSED_FD);
  return { irqs, eventOfFd };
}

function outcomeOf(irqs: VfioIrqs, bytes: Uint8Array): string {
  try {
    irqs.setIrqs(bytes);
    return 'OK';
  } catch (error) {
    assert.ok(error instanceof IrqChipError, `an untyped exception escaped: ${String(error)}`);
    return error.code;
  }
}

/** What an applied eventfd request must have left bound, checked from the raw bytes. */
function checkAppliedBindings(s: Subject, before: VfioIrqsState, after: VfioIrqsState, bytes: Uint8Array): void {
  const raw = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const flags = raw.getUint32(4, true);
  const index = raw.getUint32(8, true);
  const start = raw.getUint32(12, true);
  const count = raw.getUint32(16, true);
  const fdAt = (i: number): number => raw.getInt32(20 + 4 * i, true);
  const eventOf = (fd: number): Event | null => s.eventOfFd.get(fd) ?? null;
  if ((flags & 0x38) !== 0x20) return;
  if ((flags & 0x7) === 1 && count === 0 && index <= 2) assert.equal(after.activeIndex, null, 'a count-0 DATA_NONE disables');
  if ((flags & 0x7) !== 4) return;
  if (index === 0) {
    assert.equal(after.activeIndex, 0);
    assert.equal(after.intxTrigger, eventOf(fdAt(0)));
  } else if (index === 1 || index === 2) {
    assert.equal(after.activeIndex, index);
    for (let i = 0; i < count; i++) assert.equal(after.vectorTriggers.get(start + i) ?? null, eventOf(fdAt(i)), `vector ${start + i}`);
  } else {
    const fd = fdAt(0);
    const previous = index === 3 ? before.errTrigger : before.reqTrigger;
    const expected = fd >= 0 ? eventOf(fd) : fd === -1 ? null : previous;
    assert.equal(index === 3 ? after.errTrigger : after.reqTrigger, expected);
  }
}

/** A rejected request: nothing changes, except the vectors an eventfd block processed before it failed. */
function checkRejected(expected: Expected, before: VfioIrqsState, after: VfioIrqsState, bytes: Uint8Array): void {
  const { failedAt } = expected;
  if (failedAt === undefined) {
    assert.deepEqual(after, before, 'a rejected request changed the state');
    return;
  }
  const start = new DataView(bytes.buffer, bytes.byteOffset).getUint32(12, true);
  for (const [vector, trigger] of before.vectorTriggers) {
    const processed: boolean = vector >= start && vector <= start + failedAt;
    assert.equal(after.vectorTriggers.get(vector), processed ? undefined : trigger, `vector ${vector} after a failed block`);
  }
  for (const vector of after.vectorTriggers.keys()) assert.ok(before.vectorTriggers.has(vector), `vector ${vector} was bound by a failed block`);
  assert.equal(after.activeIndex, before.activeIndex);
}

describe('SET_IRQS fuzz against the reference', () => {
  test('random request sequences: typed outcome, agreeing with the reference, state rules kept', () => {
    fc.assert(
      fc.property(shapeArbitrary, sequenceArbitrary, (shape, requests) => {
        const s = subject(shape);
        for (const request of requests) {
          const bytes = buildBytes(request);
          const before = s.irqs.state();
          const expected = referenceOutcome(shape, before, bytes, (fd) => s.eventOfFd.has(fd));
          const outcome = outcomeOf(s.irqs, bytes);
          assert.equal(outcome, expected.outcome, `request ${JSON.stringify(request)}`);
          const after = s.irqs.state();
          if (outcome === 'OK') checkAppliedBindings(s, before, after, bytes);
          else checkRejected(expected, before, after, bytes);
        }
      }),
      { numRuns: 400 },
    );
  });

  test('arbitrary bytes: never an untyped exception, and the reference agrees', () => {
    fc.assert(
      fc.property(shapeArbitrary, fc.uint8Array({ maxLength: 64 }), (shape, bytes) => {
        const s = subject(shape);
        const before = s.irqs.state();
        const expected = referenceOutcome(shape, before, bytes, (fd) => s.eventOfFd.has(fd));
        assert.equal(outcomeOf(s.irqs, bytes), expected.outcome);
      }),
      { numRuns: 2000 },
    );
  });

  test('the generators reach every outcome (a fuzz that never applies a request proves little)', () => {
    const seen = new Set<string>();
    fc.assert(
      fc.property(shapeArbitrary, sequenceArbitrary, (shape, requests) => {
        const s = subject(shape);
        for (const request of requests) seen.add(outcomeOf(s.irqs, buildBytes(request)));
      }),
      { numRuns: 500, seed: 1 },
    );
    assert.deepEqual([...seen].sort(), ['EBADF', 'EBUSY', 'EFAULT', 'EINVAL', 'ENODEV', 'ENOSPC', 'ENOTTY', 'ERANGE', 'OK']);
  });
});
