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
 */

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
