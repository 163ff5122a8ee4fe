/**
 * Model-based test of MSI-X delivery (fast-check `commands`): random sequences of device triggers,
 * notifier signals (an irqfd writer the VMM never sees), the VMM's service loop, and the guest's
 * vector masks, reprogramming (with and without masking, by DWORDs or QWORDs), function mask,
 * enable and disable, run against a small reference model of the PCI rules. After every command:
 * - the vCPUs took exactly the interrupts the model delivered, at the vCPU and vector the entry
 *   was programmed with at that moment (none lost, none duplicated);
 * - the PBA, whenever the guest reads it, equals the model's pending bits;
 * - a vector holds a GSI exactly when it has been deliverable since MSI-X was last enabled (lazy).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { Event } from '../event/event.ts';
import { runGuests, serviceSignalledEvents } from './device-test-support.ts';
import { makeMsixRig, type MsixRig } from './msix-test-support.ts';

const VECTORS = 3;
const CPUS = 2;
/** Entry v sends guest vector 0x40 + v or 0x80 + v; the low 6 bits name the entry. */
const VECTOR_BASES = [0x40, 0x80] as const;

interface Target {
  readonly cpu: number;
  readonly vector: number;
}

interface Model {
  enabled: boolean;
  functionMasked: boolean;
  readonly vectorMasked: boolean[];
  readonly pending: boolean[];
  /** A notifier signal on a deliverable vector that the service loop has not consumed yet. */
  readonly inFlight: boolean[];
  /** Deliverable at some point since MSI-X was last enabled: such a vector holds a GSI. */
  readonly everDeliverable: boolean[];
  readonly targets: Target[];
  /** Interrupts the guest should have received during the current command. */
  readonly expected: Target[];
}

interface Real {
  readonly rig: MsixRig;
  readonly notifiers: readonly Event[];
  /** The chip's count of MSIs sent, as of the last check. */
  msisSeen: number;
}

const indexes = Array.from({ length: VECTORS }, (_, index) => index);

function deliverable(model: Model, vector: number): boolean {
  return model.enabled && !model.functionMasked && !(model.vectorMasked[vector] ?? true);
}

/**
 * Applies a change to the mask state under the PCI rules: a vector that stops being deliverable
 * keeps an unconsumed notifier signal as pending; one that becomes deliverable sends its pending
 * interrupt, once.
 */
function changeMasks(model: Model, change: () => void): void {
  const before = indexes.map((vector) => deliverable(model, vector));
  change();
  if (!model.enabled) model.everDeliverable.fill(false);
  for (const vector of indexes) {
    const now = deliverable(model, vector);
    if (before[vector] === true && !now && model.inFlight[vector] === true) {
      model.inFlight[vector] = false;
      model.pending[vector] = true;
    }
    if (!now) continue;
    model.everDeliverable[vector] = true;
    if (before[vector] === false && model.pending[vector] === true) {
      model.pending[vector] = false;
      deliver(model, vector);
    }
  }
}

function deliver(model: Model, vector: number): void {
  const target = model.targets[vector];
  assert.ok(target);
  model.expected.push(target);
}

/**
 * Compares the machine with the model after a command. Messages are counted at the chip as well as
 * at the guest: a duplicate sent while the first copy still sits in the local APIC's IRR would
 * merge with it there and be invisible to the guest.
 */
function verify(model: Model, real: Real): void {
  const { machine, group } = real.rig;
  const sent = machine.chip.counters().msisSent;
  assert.equal(sent - real.msisSeen, model.expected.length, 'MSIs sent');
  real.msisSeen = sent;
  const taken = runGuests(machine).flatMap((vectors, cpu) => vectors.map((vector) => ({ cpu, vector })));
  assert.deepEqual(sortTargets(taken), sortTargets(model.expected), 'the guest took exactly the interrupts delivered');
  model.expected.length = 0;
  for (const vector of indexes) {
    assert.equal(group.gsiOf(vector) !== undefined, model.everDeliverable[vector], `vector ${vector} holds a GSI only once it was deliverable`);
  }
}

function sortTargets(targets: readonly Target[]): Target[] {
  return [...targets].sort((a, b) => a.cpu - b.cpu || a.vector - b.vector);
}

type MsixCommand = fc.Command<Model, Real>;

class Trigger implements MsixCommand {
  constructor(readonly vector: number) {}
  check = () => true;
  run(model: Model, real: Real): void {
    real.rig.group.trigger(this.vector);
    if (deliverable(model, this.vector)) deliver(model, this.vector);
    else model.pending[this.vector] = true;
    verify(model, real);
  }
  toString = () => `trigger(${this.vector})`;
}

class SignalNotifier implements MsixCommand {
  constructor(readonly vector: number) {}
  check = () => true;
  run(model: Model, real: Real): void {
    real.notifiers[this.vector]?.signal();
    if (deliverable(model, this.vector)) model.inFlight[this.vector] = true;
    else model.pending[this.vector] = true;
    verify(model, real);
  }
  toString = () => `notifier(${this.vector}).signal()`;
}

/**
 * The guest reads the PBA. Only here, not after every command: a read drains notifier signals into
 * the pending bits, and sequences without one must exercise the drain an unmask does itself.
 */
class ReadPba implements MsixCommand {
  check = () => true;
  run(model: Model, real: Real): void {
    const expected = indexes.reduce((bits, vector) => (model.pending[vector] === true ? bits | (1n << BigInt(vector)) : bits), 0n);
    assert.equal(real.rig.guest.readPba(), expected, 'PBA');
    verify(model, real);
  }
  toString = () => 'read PBA';
}

class ServiceLoop implements MsixCommand {
  check = () => true;
  run(model: Model, real: Real): void {
    serviceSignalledEvents(real.rig.machine.chip);
    for (const vector of indexes) {
      if (model.inFlight[vector] !== true) continue;
      model.inFlight[vector] = false;
      deliver(model, vector);
    }
    verify(model, real);
  }
  toString = () => 'service loop';
}

class SetVectorMask implements MsixCommand {
  constructor(
    readonly vector: number,
    readonly masked: boolean,
  ) {}
  check = () => true;
  run(model: Model, real: Real): void {
    real.rig.guest.setVectorMask(this.vector, this.masked);
    changeMasks(model, () => {
      model.vectorMasked[this.vector] = this.masked;
    });
    verify(model, real);
  }
  toString = () => `${this.masked ? 'mask' : 'unmask'}(${this.vector})`;
}

class SetControl implements MsixCommand {
  constructor(
    readonly enabled: boolean,
    readonly functionMasked: boolean,
  ) {}
  check = () => true;
  run(model: Model, real: Real): void {
    real.rig.guest.setControl(this.enabled, this.functionMasked);
    changeMasks(model, () => {
      model.enabled = this.enabled;
      model.functionMasked = this.functionMasked;
    });
    verify(model, real);
  }
  toString = () => `control(enable=${this.enabled}, functionMask=${this.functionMasked})`;
}

/** The guest points an entry at another vCPU and vector; a careful driver masks it around the change. */
class Reprogram implements MsixCommand {
  constructor(
    readonly vector: number,
    readonly cpu: number,
    readonly base: number,
    readonly maskAround: boolean,
    readonly byQword: boolean,
  ) {}
  check = () => true;
  run(model: Model, real: Real): void {
    const { guest } = real.rig;
    const wasMasked = model.vectorMasked[this.vector] ?? true;
    const target = { cpu: this.cpu, vector: this.base + this.vector };
    if (this.maskAround) {
      guest.setVectorMask(this.vector, true);
      changeMasks(model, () => {
        model.vectorMasked[this.vector] = true;
      });
    }
    // By QWORDs the second write carries Vector Control too: the driver writes back the mask it has.
    if (this.byQword) guest.programByQwords(this.vector, target.cpu, target.vector, model.vectorMasked[this.vector] ?? true);
    else guest.program(this.vector, target.cpu, target.vector);
    model.targets[this.vector] = target;
    if (this.maskAround) {
      guest.setVectorMask(this.vector, wasMasked);
      changeMasks(model, () => {
        model.vectorMasked[this.vector] = wasMasked;
      });
    }
    verify(model, real);
  }
  toString = () => `reprogram(${this.vector} → cpu ${this.cpu}, 0x${(this.base + this.vector).toString(16)}${this.maskAround ? ', masked around' : ''}${this.byQword ? ', by QWORDs' : ''})`;
}

const vector = fc.integer({ min: 0, max: VECTORS - 1 });
/** MSI-X enabled most of the time, so vectors spend time deliverable as well as masked. */
const enabledMostly = fc.constantFrom(true, true, true, false);
const command: fc.Arbitrary<MsixCommand> = fc.oneof(
  { weight: 4, arbitrary: vector.map((v) => new Trigger(v)) },
  { weight: 3, arbitrary: vector.map((v) => new SignalNotifier(v)) },
  { weight: 2, arbitrary: fc.constant(new ServiceLoop()) },
  { weight: 2, arbitrary: fc.constant(new ReadPba()) },
  { weight: 4, arbitrary: fc.tuple(vector, fc.boolean()).map(([v, masked]) => new SetVectorMask(v, masked)) },
  { weight: 2, arbitrary: fc.tuple(enabledMostly, fc.boolean()).map(([enabled, functionMasked]) => new SetControl(enabled, functionMasked)) },
  {
    weight: 3,
    arbitrary: fc
      .tuple(vector, fc.integer({ min: 0, max: CPUS - 1 }), fc.constantFrom(...VECTOR_BASES), fc.boolean(), fc.boolean())
      .map(([v, cpu, base, maskAround, byQword]) => new Reprogram(v, cpu, base, maskAround, byQword)),
  },
);

function setup(): { model: Model; real: Real } {
  const rig = makeMsixRig(VECTORS);
  const targets = indexes.map((vector) => ({ cpu: vector % CPUS, vector: VECTOR_BASES[0] + vector }));
  for (const vector of indexes) {
    const target = targets[vector];
    if (target !== undefined) rig.guest.program(vector, target.cpu, target.vector);
  }
  const notifiers = indexes.map((vector) => rig.group.notifier(vector));
  const model: Model = {
    enabled: false,
    functionMasked: false,
    vectorMasked: indexes.map(() => true),
    pending: indexes.map(() => false),
    inFlight: indexes.map(() => false),
    everDeliverable: indexes.map(() => false),
    targets,
    expected: [],
  };
  return { model, real: { rig, notifiers, msisSeen: rig.machine.chip.counters().msisSent } };
}

test('MSI-X against a reference model: no interrupt lost or duplicated, PBA exact, GSIs only for vectors ever deliverable', () => {
  fc.assert(
    fc.property(fc.commands([command], { maxCommands: 50, size: 'max' }), (sequence) => {
      fc.modelRun(setup, [...sequence, new ReadPba()]);
    }),
    { numRuns: 300 },
  );
});
