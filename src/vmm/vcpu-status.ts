/**
 * What each vCPU worker tells the machine, in shared memory: how its run loop ended and the exits
 * it served, by reason. The machine waits on `ENDED` to learn that a vCPU stopped on its own (a
 * triple fault, an entry failure, an error in the worker), and reads the counts for its report.
 *
 * It is also the start gate: KVM delivers the guest's INIT and SIPI only to vCPUs that exist
 * (src/kvm/vcpu-setup.ts), and hardware has every CPU from power-on, so no vCPU runs guest code
 * until every one is created and set up.
 *
 * Layout (Int32 words): 0 vCPUs ended (the machine waits on it), 1 vCPUs set up, 2 the gate (1:
 * open); then per vCPU v at VCPUS_AT + v × VCPU_WORDS: end reason, fatal exit reason, MMIO
 * accesses of a size no register takes, then one count per exit reason.
 */

import { waitAsyncKeepingAlive } from '../base/wait-async.ts';
import { KvmExit } from '../kvm/kvm-abi.ts';

const ENDED = 0;
const SET_UP = 1;
const GATE = 2;
const VCPUS_AT = 4;
/** Exit reasons counted: KVM's exit reasons we serve are all below this. */
export const COUNTED_EXIT_REASONS = 40;
const VCPU_WORDS = 3 + COUNTED_EXIT_REASONS;
const Field = { End: 0, FatalExit: 1, OddSizedMmio: 2, Counts: 3 } as const;

/** How a vCPU's loop ended: still running, stopped by the machine, or on its own. */
export const VcpuEnd = { Running: 0, Stopped: 1, FatalExit: 2, WorkerError: 3 } as const;
export type VcpuEnd = (typeof VcpuEnd)[keyof typeof VcpuEnd];

/** Names of KVM exit reasons, for reports. */
export const EXIT_REASON_NAMES: Readonly<Record<number, string>> = Object.fromEntries(Object.entries(KvmExit).map(([name, value]) => [value, name.toLowerCase()]));

export interface VcpuStatus {
  readonly vcpuId: number;
  readonly end: VcpuEnd;
  /** The exit that ended it (`VcpuEnd.FatalExit`). */
  readonly fatalExit: number;
  /** Exits served, by reason name. */
  readonly exits: Readonly<Record<string, number>>;
  /** MMIO exits of 3, 5, 6 or 7 bytes (a page-crossing access): not decoded (`KvmVcpuLoop`). */
  readonly oddSizedMmioAccesses: number;
}

/** What a vCPU loop counted, as `recordVcpuEnd` stores it. */
export interface VcpuLoopCounts {
  readonly exitCounts: ReadonlyMap<number, number>;
  readonly oddSizedMmioAccesses: number;
}

export function createVcpuStatus(vcpuCount: number): SharedArrayBuffer {
  return new SharedArrayBuffer((VCPUS_AT + vcpuCount * VCPU_WORDS) * Int32Array.BYTES_PER_ELEMENT);
}

/** In the worker: says this vCPU is set up, then sleeps until the machine opens the gate (or stops it). */
export function waitAtStartGate(status: SharedArrayBuffer, stopRequested: () => boolean): void {
  const words = new Int32Array(status);
  Atomics.add(words, SET_UP, 1);
  Atomics.notify(words, SET_UP);
  while (Atomics.load(words, GATE) === 0 && !stopRequested()) Atomics.wait(words, GATE, 0, GATE_POLL_MS);
}
/** How often a vCPU at the gate looks at its stop flag (a stop request kicks, but a kick does not wake Atomics.wait). */
const GATE_POLL_MS = 20;

/** The machine: waits until `vcpuCount` vCPUs are set up (or `timeoutMs` passes: false), then opens the gate. */
export async function openStartGate(status: SharedArrayBuffer, vcpuCount: number, timeoutMs: number): Promise<boolean> {
  const words = new Int32Array(status);
  const deadline = performance.now() + timeoutMs;
  for (let setUp = Atomics.load(words, SET_UP); setUp < vcpuCount; setUp = Atomics.load(words, SET_UP)) {
    const remaining = deadline - performance.now();
    if (remaining <= 0) return false;
    await waitAsyncKeepingAlive(words, SET_UP, setUp, remaining);
  }
  Atomics.store(words, GATE, 1);
  Atomics.notify(words, GATE);
  return true;
}

/** In the worker: records how the loop ended and its exit counts, and wakes the machine. */
export function recordVcpuEnd(status: SharedArrayBuffer, vcpuId: number, end: VcpuEnd, fatalExit: number, counts: VcpuLoopCounts): void {
  const words = new Int32Array(status);
  const base = VCPUS_AT + vcpuId * VCPU_WORDS;
  words[base + Field.OddSizedMmio] = counts.oddSizedMmioAccesses;
  for (const [reason, count] of counts.exitCounts) {
    if (reason >= 0 && reason < COUNTED_EXIT_REASONS) words[base + Field.Counts + reason] = count;
  }
  words[base + Field.FatalExit] = fatalExit;
  Atomics.store(words, base + Field.End, end);
  Atomics.add(words, ENDED, 1);
  Atomics.notify(words, ENDED);
}

/** vCPUs whose loop has ended so far. */
export function endedVcpus(status: SharedArrayBuffer): number {
  return Atomics.load(new Int32Array(status), ENDED);
}

/** The word to wait on for the next vCPU end: `Atomics.waitAsync(array, index, endedVcpus(...))`. */
export function vcpuEndWord(status: SharedArrayBuffer): { readonly array: Int32Array; readonly index: number } {
  return { array: new Int32Array(status), index: ENDED };
}

export function readVcpuStatus(status: SharedArrayBuffer, vcpuId: number): VcpuStatus {
  const words = new Int32Array(status);
  const base = VCPUS_AT + vcpuId * VCPU_WORDS;
  const exits: Record<string, number> = {};
  for (let reason = 0; reason < COUNTED_EXIT_REASONS; reason++) {
    const count = Atomics.load(words, base + Field.Counts + reason);
    if (count !== 0) exits[EXIT_REASON_NAMES[reason] ?? `exit-${reason}`] = count;
  }
  return {
    vcpuId,
    end: Atomics.load(words, base + Field.End) as VcpuEnd,
    fatalExit: Atomics.load(words, base + Field.FatalExit),
    exits,
    oddSizedMmioAccesses: Atomics.load(words, base + Field.OddSizedMmio),
  };
}
