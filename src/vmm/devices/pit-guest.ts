/**
 * Test support: the pit guest (guests/pit.c) on real KVM in each chip mode, with the PIT each mode
 * has: KVM's in-kernel PIT with the kernel chip, our `Pit8254` with the split and userspace chips.
 * Here our PIT sits on the vCPU thread's own I/O bus with a POSIX timer of that thread for its
 * events (pit-guest-vcpu.fixture.ts); the VMM instead serves it on its device thread. The machine
 * and its chip come from probe-machine.ts and chip-mode.ts. Not part of the API.
 */

import { describeModeChip, type ChipDescriptor, type ChipMode } from '../../kvm/chip-mode.ts';
import { ProbePort } from '../../kvm/irq-probe.ts';
import type { GuestTscClockDescriptor } from '../../kvm/kvm-guest-tsc.ts';
import { setKvmPitReinject } from '../../kvm/kvm-pit.ts';
import { waitForLogWord } from '../../kvm/kvm-test-support.ts';
import { loadGuestImage, readGuestImage, writeLongModeTables } from '../../kvm/long-mode.ts';
import { createProbeMachine } from '../../kvm/probe-machine.ts';
import { VcpuThread } from '../../kvm/vcpu-thread.ts';

/** guests/pit.c's configuration block (struct pit_config) and results block (struct pit_results). */
const CONFIG_ADDRESS = 0x8000;
const RESULTS_ADDRESS = 0x8100;
const CONFIG_MAGIC = 0x38544950;
const ROUTES = { pic: 0, ioapic: 1 } as const;
const CONFIG_FIELDS = ['magic', 'route', 'mode', 'count', 'ticks', 'blackoutPeriods', 'afterPeriods', 'calibrationCount'] as const;
const RESULT_FIELDS = [
  'ticks',
  'status0',
  'status1',
  'status2',
  'latchedCount',
  'calibrationPolls',
  'gateLowFirst',
  'gateLowSecond',
  'blackoutPeriods',
  'afterTicks',
  'done',
] as const;
const WORD_BYTES = 4;

/** The vectors the guest takes IRQ 0 on: the 8259A's IRQ 0, or its IOAPIC pin 0 entry. */
export const PIT_GUEST_VECTORS = { pic: 0x20, ioapic: 0x30 } as const;

export interface PitGuestConfig {
  readonly route: keyof typeof ROUTES;
  /** Channel 0's mode: 2 (rate generator) or 3 (square wave). */
  readonly mode: 2 | 3;
  readonly count: number;
  readonly ticks: number;
  /** Periods with interrupts off, then periods watched after STI (mode 2 only; 0 skips it). */
  readonly blackoutPeriods: number;
  readonly afterPeriods: number;
  /** Channel 2's count for Linux's calibration pattern. */
  readonly calibrationCount: number;
}

export type PitGuestResults = Readonly<Record<(typeof RESULT_FIELDS)[number], number>>;

/** The vCPU thread's log: Int32Array words the fixture writes. */
export const PitGuestLog = {
  /** isa-debug-exit's value + 1 once the guest ended. */
  Done: 0,
  /** Interrupts the guest's handler reported (PORT_REPORT). */
  Reports: 1,
  /** The KvmExit the loop could not serve, if any. */
  FatalExit: 2,
  /** Our PIT's `ticks` and `coalescedTicks` at the end (split and userspace chips). */
  PitTicks: 3,
  PitCoalescedTicks: 4,
} as const;
const LOG_WORDS = 5;

export interface PitGuestVcpuData {
  readonly log: SharedArrayBuffer;
  readonly chip: ChipDescriptor;
  /** The userspace chip's local APIC clock (the guest's TSC), which the vCPU's set-up calibrates. */
  readonly guestTsc?: GuestTscClockDescriptor;
}

export interface PitGuestRun {
  /** The guest's isa-debug-exit value: 0 when every check passed, else the failed check's number. */
  readonly exitValue: number;
  readonly results: PitGuestResults;
  readonly reportedInterrupts: number;
  /** Our PIT's counters (absent on the kernel chip, whose PIT is KVM's). */
  readonly pit?: { readonly ticks: number; readonly coalescedTicks: number };
}

const PIT_GUEST_VCPU = new URL('./pit-guest-vcpu.fixture.ts', import.meta.url);

/**
 * Runs the guest on a one-vCPU machine with the chip of `mode` until it exits: with `config`, or
 * with its own defaults when undefined (as `irqchip run` starts it). `reinject: false` turns KVM's
 * PIT re-injection off (kernel chip only).
 */
export async function runPitGuest(mode: ChipMode, config: PitGuestConfig | undefined, options: { readonly reinject?: boolean } = {}): Promise<PitGuestRun> {
  const machine = createProbeMachine(mode);
  try {
    if (options.reinject !== undefined) setKvmPitReinject(machine.vm, options.reinject);
    loadPitGuest(machine.vm.memory, config);
    const log = new Int32Array(new SharedArrayBuffer(LOG_WORDS * Int32Array.BYTES_PER_ELEMENT));
    const { descriptor, transferList } = describeModeChip(machine.modeChip);
    const data: PitGuestVcpuData = { log: log.buffer, chip: descriptor, ...(machine.guestTsc === undefined ? {} : { guestTsc: machine.guestTsc.descriptor() }) };
    const thread = await VcpuThread.start(machine.vm, { vcpuId: 0, module: PIT_GUEST_VCPU, data, transferList });
    try {
      await waitForLogWord(log, PitGuestLog.Done, 1, () => {
        const fatal = Atomics.load(log, PitGuestLog.FatalExit);
        return fatal === 0 ? undefined : `the guest's vCPU stopped on exit reason ${fatal}`;
      });
    } finally {
      await thread.stop();
    }
    return {
      exitValue: Atomics.load(log, PitGuestLog.Done) - 1,
      results: readResults(machine.vm.memory),
      reportedInterrupts: Atomics.load(log, PitGuestLog.Reports),
      ...(mode === 'kernel' ? {} : { pit: { ticks: Atomics.load(log, PitGuestLog.PitTicks), coalescedTicks: Atomics.load(log, PitGuestLog.PitCoalescedTicks) } }),
    };
  } finally {
    machine.vm.close();
  }
}

function loadPitGuest(memory: Uint8Array, config: PitGuestConfig | undefined): void {
  writeLongModeTables(memory);
  loadGuestImage(memory, readGuestImage('pit'));
  if (config === undefined) return;
  const view = new DataView(memory.buffer, memory.byteOffset + CONFIG_ADDRESS, CONFIG_FIELDS.length * WORD_BYTES);
  const values: Record<(typeof CONFIG_FIELDS)[number], number> = { ...config, magic: CONFIG_MAGIC, route: ROUTES[config.route] };
  CONFIG_FIELDS.forEach((field, index) => {
    view.setUint32(index * WORD_BYTES, values[field], true);
  });
}

function readResults(memory: Uint8Array): PitGuestResults {
  const view = new DataView(memory.buffer, memory.byteOffset + RESULTS_ADDRESS, RESULT_FIELDS.length * WORD_BYTES);
  return Object.fromEntries(RESULT_FIELDS.map((field, index) => [field, view.getUint32(index * WORD_BYTES, true)])) as PitGuestResults;
}

/** The guest's report ports (guests/lib/runtime.h), for the fixture. */
export const PIT_GUEST_REPORT_PORTS = { base: ProbePort.Report, length: ProbePort.Fatal - ProbePort.Report + 1 } as const;
