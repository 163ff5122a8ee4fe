/**
 * Snapshot and restore of the whole chip: a random walk of guest and device actions behaves the
 * same after a restore into a fresh chip as on the original; damaged or mismatched bytes are
 * refused with EINVAL and change nothing.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { crc32 } from '../base/shared-state.ts';
import { msiIrqRoute } from '../routing/irq-route.ts';
import { IoapicVersion } from '../x86/ioapic/ioapic.ts';
import { decodeChipSnapshot, encodeChipSnapshot, encodeWordSection } from './chip-snapshot.ts';
import {
  LocalApicOffset,
  fire,
  makeMachine,
  programIoapicPin,
  registerEdge,
  registerLevel,
  unmaskPicIrqs,
  vcpuOf,
  whileIoapicHeld,
  writeLocalApic,
  type RedirectionEntry,
  type RegisteredEdge,
  type RegisteredLevel,
  type TestMachine,
} from './chip-test-support.ts';

const PIC_VECTORS = { master: 0x20, slave: 0x28 };
/** The IOAPIC pins the walk drives, as the guest programs them. */
const WALK_PINS: Readonly<Record<number, RedirectionEntry>> = {
  4: { vector: 0x34 },
  10: { vector: 0x3a, level: true, destination: 1 },
  5: { vector: 0x35, level: true },
};
const LINE_GSI = 5;
const MSI_GSI = 30;
/** LVT timer bit 17: periodic mode; TDCR 1011b: divide by 1. */
const PERIODIC = 1 << 17;
const DIVIDE_BY_ONE = 0xb;
const TIMER_PERIOD_NS = 300_000;

/** Snapshot layout (chip-snapshot.ts): where the header fields are, and the section order. */
const HEADER_FIELDS: readonly [string, number][] = [
  ['magic', 0],
  ['kind', 4],
  ['version', 8],
  ['section count', 12],
];
const SECTION_NAMES = ['LINE', 'PIC2', 'IOAP', 'ABUS', 'LAPC 0', 'LAPC 1', 'ROUT', 'EVNT'];

/** A machine with the walk's devices: an edge on GSI 4, level devices on GSI 10 (IOAPIC) and 3 (PIC), an MSI, a line, a timer. */
interface WalkMachine {
  readonly machine: TestMachine;
  readonly edge: RegisteredEdge;
  readonly levels: readonly RegisteredLevel[];
  /** Whether each level device wants service (device state, not chip state). */
  readonly asserting: boolean[];
  /** What each action returned, in order. */
  readonly observed: unknown[];
}

function walkMachine(options: { readonly vcpuCount?: number; readonly ioapicVersion?: IoapicVersion } = {}): WalkMachine {
  const machine = makeMachine(options, { picVectorBases: PIC_VECTORS });
  for (const [pin, entry] of Object.entries(WALK_PINS)) programIoapicPin(machine, Number(pin), entry);
  vcpuOf(machine, 0).bus.outb(0x4d0, 1 << 3);
  unmaskPicIrqs(machine, 1 << 3);
  machine.chip.routeIrq(msiIrqRoute(MSI_GSI, 0xfee01000n, 0x51));
  writeLocalApic(machine, 0, LocalApicOffset.TimerDivide, DIVIDE_BY_ONE);
  writeLocalApic(machine, 0, LocalApicOffset.LvtTimer, PERIODIC | 0x60);
  writeLocalApic(machine, 0, LocalApicOffset.TimerInitialCount, TIMER_PERIOD_NS);
  return {
    machine,
    edge: registerEdge(machine, 4),
    levels: [registerLevel(machine, 10), registerLevel(machine, 3)],
    asserting: [false, false],
    observed: [],
  };
}

type Device = 0 | 1;
type Action =
  | { readonly kind: 'edge' }
  | { readonly kind: 'raise' | 'quiet' | 'poll'; readonly device: Device }
  | { readonly kind: 'service' }
  | { readonly kind: 'line'; readonly level: boolean }
  | { readonly kind: 'msi' }
  | { readonly kind: 'step'; readonly vcpu: Device }
  | { readonly kind: 'mask'; readonly pin: number; readonly masked: boolean }
  | { readonly kind: 'tick'; readonly ns: number }
  | { readonly kind: 'tpr'; readonly vcpu: Device; readonly value: number }
  | { readonly kind: 'interrupts'; readonly vcpu: Device; readonly enabled: boolean };

const device = fc.constantFrom<Device>(0, 1);
const action: fc.Arbitrary<Action> = fc.oneof(
  fc.constant({ kind: 'edge' as const }),
  fc.record({ kind: fc.constantFrom('raise' as const, 'quiet' as const, 'poll' as const), device }),
  fc.constant({ kind: 'service' as const }),
  fc.record({ kind: fc.constant('line' as const), level: fc.boolean() }),
  fc.constant({ kind: 'msi' as const }),
  fc.record({ kind: fc.constant('step' as const), vcpu: device }),
  fc.record({ kind: fc.constant('mask' as const), pin: fc.constantFrom(4, 10, 5), masked: fc.boolean() }),
  fc.record({ kind: fc.constant('tick' as const), ns: fc.integer({ min: 0, max: 2 * TIMER_PERIOD_NS }) }),
  fc.record({ kind: fc.constant('tpr' as const), vcpu: device, value: fc.integer({ min: 0, max: 0xff }) }),
  fc.record({ kind: fc.constant('interrupts' as const), vcpu: device, enabled: fc.boolean() }),
);

/** One action; returns what a test can observe of it. */
function perform(walk: WalkMachine, step: Action): unknown {
  const { machine } = walk;
  const { chip } = machine;
  switch (step.kind) {
    case 'edge':
      walk.edge.event.trigger();
      return undefined;
    case 'raise':
      walk.asserting[step.device] = true;
      walk.levels[step.device]?.event.trigger();
      return undefined;
    case 'quiet':
      walk.asserting[step.device] = false;
      return undefined;
    case 'poll': {
      const level = walk.levels[step.device];
      const resampled = level?.event.clearResample() ?? false;
      if (resampled && walk.asserting[step.device] === true) level?.event.trigger();
      return resampled;
    }
    case 'service':
      for (const token of chip.irqEventTokens()) chip.serviceIrqEvent(token.index);
      return undefined;
    case 'line':
      return chip.serviceIrq(LINE_GSI, step.level);
    case 'msi':
      return chip.serviceIrq(MSI_GSI, true);
    case 'step':
      return vcpuOf(machine, step.vcpu).step(chip);
    case 'mask':
      programIoapicPin(machine, step.pin, { ...WALK_PINS[step.pin], vector: WALK_PINS[step.pin]?.vector ?? 0, masked: step.masked });
      return undefined;
    case 'tick':
      machine.clock.advance(step.ns);
      chip.processTimers();
      return undefined;
    case 'tpr':
      writeLocalApic(machine, step.vcpu, LocalApicOffset.TaskPriority, step.value);
      return undefined;
    case 'interrupts':
      vcpuOf(machine, step.vcpu).interruptsEnabled = step.enabled;
      return undefined;
  }
}

function run(walk: WalkMachine, actions: readonly Action[]): void {
  for (const step of actions) walk.observed.push(perform(walk, step));
}

/** A fresh walk machine restored from `original`'s snapshot, with the devices' and vCPUs' own state copied. */
function restoredCopy(original: WalkMachine): WalkMachine {
  const copy = walkMachine();
  copy.machine.clock.advance(original.machine.clock.nowNs() - copy.machine.clock.nowNs());
  copy.machine.chip.restore(original.machine.chip.snapshot());
  copy.asserting.splice(0, copy.asserting.length, ...original.asserting);
  copy.machine.vcpus.forEach((vcpu, id) => {
    const source = vcpuOf(original.machine, id);
    vcpu.interruptsEnabled = source.interruptsEnabled;
    vcpu.interruptWindowRequested = source.interruptWindowRequested;
  });
  return copy;
}

/** Everything a test can see of a walk machine, from the vCPUs' `taken[from..]` on. */
function observable(walk: WalkMachine, takenFrom: readonly number[]): unknown {
  const { chip } = walk.machine;
  return {
    observed: walk.observed,
    taken: walk.machine.vcpus.map((vcpu, id) => vcpu.taken.slice(takenFrom[id] ?? 0)),
    chip: chip.counters(),
    pic: chip.pic.counters(),
    ioapic: chip.ioapic.counters(),
    bus: chip.apicBus.counters(),
    apics: walk.machine.vcpus.map((_, id) => chip.localApic(id).counters()),
    state: chip.snapshot(),
  };
}

/** Expects `restore(bytes)` to throw EINVAL and leave the chip exactly as it was. */
function assertRefused(walk: WalkMachine, bytes: Uint8Array, what: string): void {
  const { chip } = walk.machine;
  const before = chip.snapshot();
  assert.throws(
    () => {
      chip.restore(bytes);
    },
    { name: 'IrqChipError', code: 'EINVAL' },
    what,
  );
  assert.deepEqual(chip.snapshot(), before, `${what}: nothing changed`);
}

/** `bytes` with the container's CRC recomputed, so that damage inside reaches the checks behind it. */
function withSections(bytes: Uint8Array, change: (sections: Uint8Array[]) => void): Uint8Array {
  const sections = decodeChipSnapshot(bytes, SECTION_NAMES.length).map((section) => section.slice());
  change(sections);
  return encodeChipSnapshot(sections);
}

/** A busy walk machine: every device has done something and something is pending. */
function busyWalk(): WalkMachine {
  const walk = walkMachine();
  run(walk, [
    { kind: 'edge' },
    { kind: 'raise', device: 0 },
    { kind: 'raise', device: 1 },
    { kind: 'service' },
    { kind: 'line', level: true },
    { kind: 'msi' },
    { kind: 'step', vcpu: 0 },
    { kind: 'tick', ns: TIMER_PERIOD_NS },
    { kind: 'edge' },
  ]);
  return walk;
}

describe('UserspaceIrqChip snapshot and restore', () => {
  test('random walk: restored into a fresh chip with the same registrations, the rest of the walk behaves identically', () => {
    fc.assert(
      fc.property(fc.array(action, { maxLength: 40 }), fc.array(action, { maxLength: 40 }), (before, after) => {
        const original = walkMachine();
        run(original, before);
        const copy = restoredCopy(original);
        assert.deepEqual(copy.machine.chip.snapshot(), original.machine.chip.snapshot(), 'restored state is the saved state');
        const takenFrom = original.machine.vcpus.map((vcpu) => vcpu.taken.length);
        original.observed.length = 0;
        run(original, after);
        run(copy, after);
        assert.deepEqual(observable(copy, [0, 0]), observable(original, takenFrom));
      }),
      { numRuns: 100 },
    );
  });

  test("pending event counts come back: a trigger signalled but not serviced, a resample not yet read", () => {
    const original = walkMachine();
    original.edge.event.trigger();
    original.edge.event.trigger();
    fire(original.machine, original.levels[0] ?? assert.fail('level device'));
    vcpuOf(original.machine, 1).step(original.machine.chip);
    const copy = restoredCopy(original);
    assert.equal(copy.edge.event.getTrigger().readCount(), 2n);
    assert.equal(copy.levels[0]?.event.getResample().readCount(), 1n);
  });

  test('a deferred assertion is saved: the restored chip signals its delayed token and retries it', () => {
    const original = walkMachine();
    whileIoapicHeld(original.machine.chip, () => {
      fire(original.machine, original.edge);
    });
    const copy = restoredCopy(original);
    assert.equal(copy.machine.chip.irqDelayedEventToken().readCount(), 1n);
    copy.machine.chip.processDelayedIrqEvents();
    assert.deepEqual(vcpuOf(copy.machine, 0).runUntilIdle(copy.machine.chip), [0x34]);
  });

  test('truncated bytes are refused at every length', () => {
    const bytes = busyWalk().machine.chip.snapshot();
    const target = walkMachine();
    for (let length = 0; length < bytes.length; length += 7) assertRefused(target, bytes.subarray(0, length), `cut at ${length}`);
  });

  test('each header field changed is refused, with the checksum left stale or made to match', () => {
    const bytes = busyWalk().machine.chip.snapshot();
    const target = walkMachine();
    for (const [field, offset] of HEADER_FIELDS) {
      const stale = bytes.slice();
      stale[offset] = (stale[offset] ?? 0) ^ 0x01;
      assertRefused(target, stale, `${field}, stale checksum`);
      assertRefused(target, resealed(stale), `${field}, matching checksum`);
    }
  });

  test('a bit flipped in any section is refused, even with the container checksum made to match', () => {
    const bytes = busyWalk().machine.chip.snapshot();
    const target = walkMachine();
    SECTION_NAMES.forEach((name, index) => {
      const flipped = withSections(bytes, (sections) => {
        const section = sections[index] ?? assert.fail(name);
        const middle = section.length >> 1;
        section[middle] = (section[middle] ?? 0) ^ 0x10;
      });
      assertRefused(target, flipped, `section ${name}`);
    });
  });

  test('random damage (cut or bit flip anywhere) is refused and changes nothing', () => {
    const bytes = busyWalk().machine.chip.snapshot();
    const target = walkMachine();
    fc.assert(
      fc.property(fc.nat(), (bit) => {
        const flipped = bytes.slice();
        const index = bit % (flipped.length * 8);
        flipped[index >> 3] = (flipped[index >> 3] ?? 0) ^ (1 << (index & 7));
        assertRefused(target, flipped, `bit ${index}`);
      }),
      { numRuns: 200 },
    );
  });

  test('sections that decode but describe impossible state are refused', () => {
    const bytes = busyWalk().machine.chip.snapshot();
    const target = walkMachine();
    const lineIndex = SECTION_NAMES.indexOf('LINE');
    const routeIndex = SECTION_NAMES.indexOf('ROUT');
    const eventIndex = SECTION_NAMES.indexOf('EVNT');
    const lineWords = new Int32Array(16 + 24 + Object.keys(target.machine.chip.counters()).length);
    lineWords[3] = 0x4;
    assertRefused(target, withSections(bytes, (sections) => sections.splice(lineIndex, 1, encodeWordSection('LINE', 1, lineWords))), 'a line source bit that does not exist');
    const badRoute = Int32Array.of(1, 5, 9, 1, 0, 0);
    assertRefused(target, withSections(bytes, (sections) => sections.splice(routeIndex, 1, encodeWordSection('ROUT', 1, badRoute))), 'an unknown route source');
    const pinPastEnd = Int32Array.of(1, 5, 3, 24, 0, 0);
    assertRefused(target, withSections(bytes, (sections) => sections.splice(routeIndex, 1, encodeWordSection('ROUT', 1, pinPastEnd))), 'a route to IOAPIC pin 24');
    const events = (changes: (words: Int32Array) => void): Uint8Array => {
      const words = Int32Array.from([3, 0, 1, 4, 0, 0, 0, 0, 3, 10, 0, 0, 0, 0, 3, 3, 0, 0, 0, 0]);
      changes(words);
      return withSections(bytes, (sections) => sections.splice(eventIndex, 1, encodeWordSection('EVNT', 1, words)));
    };
    assert.doesNotThrow(() => {
      walkMachine().machine.chip.restore(events(() => undefined));
    }, 'the unchanged event words are acceptable');
    assertRefused(target, events((words) => (words[0] = 2)), 'another slot count');
    assertRefused(target, events((words) => (words[2] = 3)), 'an edge slot saved as level');
    assertRefused(target, events((words) => (words[9] = 11)), 'a slot on another GSI');
    assertRefused(target, events((words) => words.fill(-1, 4, 6)), 'an edge with a resample count');
    assertRefused(target, events((words) => words.fill(-1, 10, 12)), 'a count of 2^64 − 1');
    assertRefused(
      target,
      withSections(bytes, (sections) => sections.splice(eventIndex, 1, encodeWordSection('EVNT', 1, Int32Array.from([3, 1, 1, 4, 0, 0, 0, 0, 3, 10, 0, 0, 0, 0, 3, 3, 0, 0, 0, 0, 7])))),
      'a deferred assertion of a slot that does not exist',
    );
    assertRefused(target, withSections(bytes, (sections) => sections.reverse()), 'sections out of order');
    assertRefused(
      target,
      withSections(bytes, (sections) => sections.splice(4, 2, sections[5] ?? new Uint8Array(), sections[4] ?? new Uint8Array())),
      "vCPU 1's local APIC in vCPU 0's place",
    );
  });

  test('a snapshot of a chip configured or registered differently is refused', () => {
    const target = walkMachine();
    assertRefused(target, walkMachine({ vcpuCount: 3 }).machine.chip.snapshot(), 'three vCPUs into two');
    assertRefused(target, walkMachine({ ioapicVersion: IoapicVersion.V11 }).machine.chip.snapshot(), 'an IOAPIC of another version');
    const extra = walkMachine();
    registerEdge(extra.machine, 7);
    assertRefused(target, extra.machine.chip.snapshot(), 'one more event');
    const unregistered = walkMachine();
    unregistered.machine.chip.unregisterEdgeIrqEvent(4, unregistered.edge.event);
    assertRefused(target, unregistered.machine.chip.snapshot(), 'an event unregistered');
    assertRefused(target, target.machine.chip.pic.snapshot(), "a controller's snapshot");
    assertRefused(target, encodeChipSnapshot([]), 'no sections');
    assertRefused(target, new Uint8Array(64), 'zeros');
  });
});

/** `bytes` with its trailing CRC-32 recomputed, so that the damage inside reaches the checks behind it. */
function resealed(bytes: Uint8Array): Uint8Array {
  const copy = bytes.slice();
  new DataView(copy.buffer).setUint32(copy.length - 4, crc32(copy.subarray(0, copy.length - 4)), true);
  return copy;
}
