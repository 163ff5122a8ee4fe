/**
 * Test support: the apic-base guest (guests/apic-base.c) on one KVM vCPU with the chip of any mode.
 * The guest moves its local APIC's page through IA32_APIC_BASE, disables the APIC, re-enables it,
 * and (where CPUID offers it) enters x2APIC mode, checking at each step where the page answers; it
 * leaves what it saw in a results block in guest RAM and its verdict on isa-debug-exit. The vCPU
 * runs in its own worker (apic-base-vcpu.fixture.ts), which also reports where the accesses that
 * reached no APIC ended: the vCPU thread's bus counters, the MMIO exits. Not part of the API.
 */

import { createModeChip, describeModeChip, type ChipMode, type ChipDescriptor } from './chip-mode.ts';
import { waitForLogWord } from './kvm-test-support.ts';
import { KvmVm } from './kvm-vm.ts';
import { loadGuestImage, readGuestImage, writeLongModeTables } from './long-mode.ts';
import { VcpuThread } from './vcpu-thread.ts';

/** Where the guest moves its APIC's page (guests/apic-base.c MOVED_BASE). */
export const APIC_BASE_MOVED_ADDRESS = 0xfed00000;
/** isa-debug-exit, where the guest writes its verdict (guests/lib/runtime.h PORT_DEBUG_EXIT). */
export const GUEST_DEBUG_EXIT_PORT = 0xf4;

/** The guest's results block: u32 slots at RESULTS_ADDRESS, in guests/apic-base.c `enum result` order. */
const RESULTS_ADDRESS = 0x8000;
const RESULT_NAMES = [
  'failedCheck',
  'initialBaseLow',
  'initialBaseHigh',
  'defaultId',
  'defaultVersion',
  'movedBaseLow',
  'movedBaseHigh',
  'movedId',
  'movedVersion',
  'movedSvr',
  'oldPageId',
  'oldPageVersion',
  'movedSvrAfterOldWrite',
  'selfIpisTaken',
  'isrAfterEoi',
  'irrAfterEoi',
  'disabledBaseLow',
  'disabledBaseHigh',
  'disabledMovedPage',
  'disabledDefaultPage',
  'reenabledVersion',
  'x2apicTested',
  'x2apicPage',
  'x2apicMsrVersion',
] as const;
export type ApicBaseResults = Readonly<Record<(typeof RESULT_NAMES)[number], number>>;

/** Words of the log the vCPU worker fills (Int32Array over a SharedArrayBuffer). */
export const ApicBaseLog = {
  /** 1 once the worker's loop ended and the words below are final. */
  Done: 0,
  /** What the guest wrote to isa-debug-exit (0: every check passed), or -1 if it never did. */
  DebugExit: 1,
  /** An exception's vector + 1, when the guest took one. */
  GuestException: 2,
  /** The KvmExit the loop could not serve, if any. */
  FatalExit: 3,
  /** Handler runs the guest reported (PORT_REPORT). */
  InterruptReports: 4,
  /** The vCPU thread's MMIO bus: reads and writes that reached no device. */
  UnclaimedReads: 5,
  UnclaimedWrites: 6,
  /** KVM_EXIT_MMIO exits the loop served. */
  MmioExits: 7,
} as const;
export const APIC_BASE_LOG_WORDS = 8;

/** What the vCPU worker gets. */
export interface ApicBaseVcpuData {
  readonly log: SharedArrayBuffer;
  readonly chip: ChipDescriptor;
}

/** One run of the guest: what it saw, and where the vCPU thread's accesses ended. */
export interface ApicBaseRun {
  readonly results: ApicBaseResults;
  readonly debugExit: number;
  readonly interruptReports: number;
  readonly unclaimedReads: number;
  readonly unclaimedWrites: number;
  readonly mmioExits: number;
  /** Userspace chip only: its local APIC's counters and IA32_APIC_BASE at the end. */
  readonly localApic?: { readonly ignoredAccesses: number; readonly apicBase: bigint };
}

/** The guest and its tables fit in the first 2 MiB. */
const MEMORY_BYTES = 4 << 20;
const VCPU_FIXTURE = new URL('./apic-base-vcpu.fixture.ts', import.meta.url);

/** Runs the apic-base guest to its end on a new VM with the chip of `mode`. */
export async function runApicBaseGuest(mode: ChipMode): Promise<ApicBaseRun> {
  const vm = KvmVm.create({ memoryBytes: MEMORY_BYTES });
  try {
    const modeChip = createModeChip(vm, mode, { vcpuCount: 1 });
    writeLongModeTables(vm.memory);
    loadGuestImage(vm.memory, readGuestImage('apic-base'));
    const logBuffer = new SharedArrayBuffer(APIC_BASE_LOG_WORDS * Int32Array.BYTES_PER_ELEMENT);
    const log = new Int32Array(logBuffer);
    const { descriptor, transferList } = describeModeChip(modeChip);
    const data: ApicBaseVcpuData = { log: logBuffer, chip: descriptor };
    const thread = await VcpuThread.start(vm, { vcpuId: 0, module: VCPU_FIXTURE, data, transferList });
    try {
      await waitForLogWord(log, ApicBaseLog.Done, 1, () => failureOf(log));
    } finally {
      // A vCPU halted in our chip's wait is woken by its doorbell, not by the stop kick.
      modeChip.chip.kickHaltedVcpus();
      await thread.stop();
    }
    const failure = failureOf(log);
    if (failure !== undefined) throw new Error(failure);
    const apic = modeChip.mode === 'userspace' ? modeChip.chip.localApic(0) : undefined;
    return {
      results: readResults(vm.memory),
      debugExit: Atomics.load(log, ApicBaseLog.DebugExit),
      interruptReports: Atomics.load(log, ApicBaseLog.InterruptReports),
      unclaimedReads: Atomics.load(log, ApicBaseLog.UnclaimedReads),
      unclaimedWrites: Atomics.load(log, ApicBaseLog.UnclaimedWrites),
      mmioExits: Atomics.load(log, ApicBaseLog.MmioExits),
      ...(apic === undefined ? {} : { localApic: { ignoredAccesses: apic.counters().ignoredAccesses, apicBase: apic.apicBase() } }),
    };
  } finally {
    vm.close();
  }
}

function failureOf(log: Int32Array): string | undefined {
  const exception = Atomics.load(log, ApicBaseLog.GuestException);
  if (exception !== 0) return `the guest took exception ${exception - 1}`;
  const fatal = Atomics.load(log, ApicBaseLog.FatalExit);
  return fatal === 0 ? undefined : `the guest's vCPU stopped on exit reason ${fatal}`;
}

function readResults(memory: Uint8Array): ApicBaseResults {
  const view = new DataView(memory.buffer, memory.byteOffset + RESULTS_ADDRESS, RESULT_NAMES.length * Uint32Array.BYTES_PER_ELEMENT);
  return Object.fromEntries(RESULT_NAMES.map((name, slot) => [name, view.getUint32(slot * Uint32Array.BYTES_PER_ELEMENT, true)])) as Record<
    (typeof RESULT_NAMES)[number],
    number
  >;
}
