/**
 * What every oracle guest shares (pic-oracle.ts, ioapic-oracle.ts, lapic-oracle.ts): the ports
 * it reports on and the loop that replays a planned run. Test support, not part of the package's
 * API.
 *
 * A guest is straight-line code generated from the plan, run with interrupts off except inside
 * INTA windows. After every operation it OUTs to `OraclePort.Sync`, where KVM_RUN returns to us:
 * the oracle changes lines there and reads KVM's state. A value the guest read is reported on
 * `Read`, a vector its handler took on `Vector`, an INTA window is announced on `Window` (KVM
 * injects at the entry that follows), and the end on `Done`. None of these ports is emulated in
 * the kernel, so each OUT returns from KVM_RUN.
 *
 * The vCPU runs on the calling thread: the guest never halts (HLT is the only thing that blocks
 * inside KVM_RUN with KVM's irqchip), and the rest of its memory is filled with `in al, 0xE4`
 * (E4 E4), so a guest that ran astray exits at its next instruction whatever byte it lands on.
 * KVM_RUN therefore always returns.
 *
 * Every oracle plans a run on our model (each step an operation and the observation KVM should
 * match), replays it on KVM (`replayOracleSteps`), and its test checks random runs the same way
 * (`assertRandomOracleRuns`).
 */

import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { IrqRoute } from '../routing/irq-route.ts';
import { KvmExit } from './kvm-abi.ts';
import { KvmKernelIrqChip } from './kvm-kernel-irq-chip.ts';
import { KvmVcpu } from './kvm-vcpu.ts';
import { KvmVm } from './kvm-vm.ts';

export const OraclePort = {
  Sync: 0xe0,
  Read: 0xe1,
  Vector: 0xe2,
  Done: 0xe3,
  /** Read (IN) by the trap byte: an exit on it means the guest ran astray. */
  Trap: 0xe4,
  Window: 0xe5,
} as const;

/** `in al, 0xE4` is E4 E4: the filler byte of every oracle guest. */
export const ORACLE_TRAP_BYTE = OraclePort.Trap;

/** No interrupt taken in an INTA window. */
export const NO_VECTOR = -1;

/**
 * Runs the guest of a plan of `stepCount` operations to its DONE exit. At the SYNC exit of each
 * step it calls `atSync(step, reported)`, `reported` being the last value the guest reported on
 * READ or VECTOR during that step; a result other than undefined (a difference) ends the run and
 * is returned. Throws if the guest stops anywhere else, or reports more steps than planned.
 */
export function runOracleGuest<T>(vcpu: KvmVcpu, stepCount: number, atSync: (step: number, reported: number | undefined) => T | undefined): T | undefined {
  let step = 0;
  let reported: number | undefined;
  // Per step: at most a window exit and a read or vector report, then the SYNC; then DONE.
  const maximumExits = stepCount * 3 + 1;
  for (let exits = 0; exits < maximumExits; exits++) {
    const exit = vcpu.run();
    if (exit !== KvmExit.IO || !vcpu.ioIsOut()) throw new Error(`the oracle guest stopped on exit reason ${exit} at step ${step}`);
    const port = vcpu.ioPort();
    if (port === OraclePort.Done) {
      if (step !== stepCount) throw new Error(`the oracle guest finished after ${step} of ${stepCount} steps`);
      return undefined;
    }
    if (port === OraclePort.Window) continue;
    if (port === OraclePort.Read || port === OraclePort.Vector) {
      reported = vcpu.ioValue();
      continue;
    }
    if (port !== OraclePort.Sync) throw new Error(`the oracle guest wrote port 0x${port.toString(16)} at step ${step}`);
    if (step >= stepCount) throw new Error('the oracle guest ran past its plan');
    const difference = atSync(step, reported);
    if (difference !== undefined) return difference;
    reported = undefined;
    step += 1;
  }
  throw new Error(`the oracle guest made more than ${maximumExits} exits`);
}

/** A VM with KVM's whole irqchip and one vCPU, pointed at an oracle guest. */
export interface OracleMachine {
  readonly vm: KvmVm;
  readonly chip: KvmKernelIrqChip;
  readonly vcpu: KvmVcpu;
}

export interface OracleMachineOptions {
  readonly memoryBytes: number;
  /** The GSI routes the oracle drives lines through (replacing KVM's default table). */
  readonly routes: readonly IrqRoute[];
  /** Writes the guest into guest RAM; returns its entry point. */
  readonly load: (memory: Uint8Array) => number;
  /** Points the vCPU at the entry point, in the guest's mode. */
  readonly enter: (vcpu: KvmVcpu, entry: number) => void;
}

/** Builds the machine, runs `body` on it, and closes it however `body` ended. */
export function withOracleMachine<T>(options: OracleMachineOptions, body: (machine: OracleMachine) => T): T {
  const vm = KvmVm.create({ memoryBytes: options.memoryBytes });
  try {
    const chip = KvmKernelIrqChip.create(vm, { vcpuCount: 1 });
    chip.setIrqRoutes(options.routes);
    const entry = options.load(vm.memory);
    const vcpu = KvmVcpu.create(vm, 0);
    try {
      options.enter(vcpu, entry);
      return body({ vm, chip, vcpu });
    } finally {
      vcpu.close();
    }
  } finally {
    vm.close();
  }
}

/** One planned operation and what KVM should show after it (undefined: not compared). */
export interface OracleStep<Op, Observation> {
  readonly op: Op;
  readonly expected: Observation | undefined;
}

/** The first step where KVM and our model disagree. */
export interface OracleDifference<Op, Observation> {
  readonly step: number;
  readonly op: Op;
  readonly kvm: Observation;
  readonly ours: Observation;
}

/** How an oracle drives and reads KVM at each step's SYNC exit. */
export interface OracleReplay<Op, Observation> {
  /** Does `op` where the guest cannot (a line change, an MSI) and returns KVM's status; undefined for an operation the guest did. */
  readonly drive: (machine: OracleMachine, op: Op) => number | undefined;
  /** KVM's state after a step, with the step's result (the status, the value the guest read, the vector taken). */
  readonly observe: (machine: OracleMachine, result: number | undefined) => Observation;
  readonly same: (kvm: Observation, ours: Observation) => boolean;
}

/**
 * Runs the guest of `steps` on a new oracle machine and compares KVM with each step's expected
 * observation; returns the first difference, or undefined. An INTA window in which the guest took
 * no interrupt has the result NO_VECTOR.
 */
export function replayOracleSteps<Op extends { readonly kind: string }, Observation>(
  options: OracleMachineOptions,
  steps: readonly OracleStep<Op, Observation>[],
  replay: OracleReplay<Op, Observation>,
): OracleDifference<Op, Observation> | undefined {
  return withOracleMachine(options, (machine) =>
    runOracleGuest(machine.vcpu, steps.length, (step, reported) => {
      const planned = steps[step];
      if (planned === undefined) return undefined;
      const { op, expected } = planned;
      const driven = replay.drive(machine, op);
      const result = driven ?? (op.kind === 'inta' ? (reported ?? NO_VECTOR) : reported);
      const kvm = replay.observe(machine, result);
      return expected === undefined || replay.same(kvm, expected) ? undefined : { step, op, kvm, ours: expected };
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// The differential tests' shared checks
// ---------------------------------------------------------------------------------------------

/** A row of an oracle's table of differences between KVM and our model. */
export interface OracleDifferenceRow {
  readonly rule: string;
  readonly handling: string;
  readonly reason: string;
}

/** What a plan reports besides its steps: operations left out, and (for some oracles) compared under a normalisation, per rule. */
export interface OraclePlanCounts<Op> {
  readonly steps: readonly { readonly op: Op }[];
  readonly skipped: Readonly<Partial<Record<string, number>>>;
  readonly normalised?: Readonly<Partial<Record<string, number>>>;
}

/** A difference as a test failure message: the step, both observations (`shown` picks what to print of each) and the whole plan to replay. */
export function describeOracleDifference<Op, Observation>(
  plan: OraclePlanCounts<Op>,
  difference: OracleDifference<Op, Observation> | undefined,
  shown: (observation: Observation) => unknown = (observation) => observation,
): string | undefined {
  if (difference === undefined) return undefined;
  return `step ${difference.step} ${JSON.stringify(difference.op)}:\n  kvm  ${JSON.stringify(shown(difference.kvm))}\n  ours ${JSON.stringify(shown(difference.ours))}\nplan ${JSON.stringify(plan.steps.map((step) => step.op))}`;
}

/** Operation groups in one random run at most: short enough for a fast run, long enough to reach nested in-service levels. */
const MAX_GROUPS_PER_RUN = 40;
/** Random runs per differential test unless its environment variable says otherwise. */
const DEFAULT_RANDOM_RUNS = 50;

/** Random operation sequences: 1 to MAX_GROUPS_PER_RUN groups from `oneGroup`, flattened. */
export function oracleOpSequences<Op>(oneGroup: fc.Arbitrary<Op[]>): fc.Arbitrary<Op[]> {
  return fc.array(oneGroup, { minLength: 1, maxLength: MAX_GROUPS_PER_RUN, size: 'max' }).map((groups) => groups.flat());
}

/** How many random runs a differential test makes: the environment variable `name`, or DEFAULT_RANDOM_RUNS. */
export function oracleRunCount(name: string): number {
  return Number(process.env[name] ?? DEFAULT_RANDOM_RUNS);
}

export interface RandomOracleRuns<Op, Plan extends OraclePlanCounts<Op>> {
  /** The heading of the printed table of differences. */
  readonly title: string;
  readonly differences: readonly OracleDifferenceRow[];
  readonly ops: fc.Arbitrary<Op[]>;
  readonly runs: number;
  readonly plan: (ops: Op[]) => Plan;
  /** Replays a plan on KVM: a description of the first difference, or undefined. */
  readonly replay: (plan: Plan) => string | undefined;
}

/**
 * The random half of a differential test: prints the table of differences, then plans and replays
 * `runs` random operation sequences, each of which must agree with KVM; prints how many operations
 * were compared, left out and normalised, and asserts that operations were compared at all.
 */
export function assertRandomOracleRuns<Op, Plan extends OraclePlanCounts<Op>>(check: RandomOracleRuns<Op, Plan>): void {
  console.log(`# ${check.title}, each handled as described:`);
  for (const { rule, handling, reason } of check.differences) console.log(`#   ${rule}: ${reason}. Handling: ${handling}.`);
  const skipped: Record<string, number> = {};
  const normalised: Record<string, number> = {};
  let compared = 0;
  fc.assert(
    fc.property(check.ops, (ops) => {
      const plan = check.plan(ops);
      addCounts(skipped, plan.skipped);
      addCounts(normalised, plan.normalised ?? {});
      compared += plan.steps.length;
      const difference = check.replay(plan);
      assert.equal(difference, undefined, difference);
    }),
    { numRuns: check.runs, includeErrorInReport: true },
  );
  console.log(`# ${compared} operations compared; left out: ${JSON.stringify(skipped)}; normalised: ${JSON.stringify(normalised)}`);
  assert.ok(compared > check.runs, 'the runs compared operations');
}

function addCounts(total: Record<string, number>, counts: Readonly<Partial<Record<string, number>>>): void {
  for (const [rule, count] of Object.entries(counts)) total[rule] = (total[rule] ?? 0) + (count ?? 0);
}
