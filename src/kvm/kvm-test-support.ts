/**
 * Test support for tests that run real guests on KVM: the skip decision (said out loud), the PIC
 * test guest on a vCPU thread, and waiting on its guest log. Not part of the package's API.
 */

import { waitAsyncKeepingAlive } from '../base/wait-async.ts';
import { kvmUnavailableReason } from './availability.ts';
import { KvmKernelIrqChip } from './kvm-kernel-irq-chip.ts';
import { KvmVm } from './kvm-vm.ts';
import type { PicGuestVcpuData } from './pic-guest-vcpu.fixture.ts';
import { GUEST_LOG_WORDS, GuestLog, loadPicTestGuest } from './pic-test-guest.ts';
import { VcpuThread } from './vcpu-thread.ts';

/**
 * Why KVM tests must skip here, or undefined when they run. Printed, so a skip is never silent;
 * pass it as `{ skip }` to `describe`/`test`.
 */
export function kvmSkipReason(what: string): string | undefined {
  const reason = kvmUnavailableReason();
  if (reason !== undefined) console.log(`# ${what}: skipped: ${reason}`);
  return reason;
}

export const PIC_GUEST_VCPU = new URL('./pic-guest-vcpu.fixture.ts', import.meta.url);
/** Generous: a guest interrupt takes tens of microseconds, but CI machines are shared. */
const WAIT_TIMEOUT_MS = 20_000;

export const IRQ_SOURCE = { deviceId: 1, queueId: 0, deviceName: 'kvm-test-device' } as const;

/** A VM with KVM's irqchip and the PIC test guest loaded, not yet running. */
export interface KernelChipMachine {
  readonly vm: KvmVm;
  readonly chip: KvmKernelIrqChip;
  readonly log: Int32Array;
}

/** 1 MiB of RAM: the guest uses the first 8 KiB of it. */
const GUEST_MEMORY_BYTES = 1 << 20;

export function kernelChipMachine(options: { readonly levelTriggered: boolean; readonly vcpuCount?: number }): KernelChipMachine {
  const vm = KvmVm.create({ memoryBytes: GUEST_MEMORY_BYTES });
  const chip = KvmKernelIrqChip.create(vm, { vcpuCount: options.vcpuCount ?? 1 });
  loadPicTestGuest(vm.memory, options);
  return { vm, chip, log: new Int32Array(new SharedArrayBuffer(GUEST_LOG_WORDS * Int32Array.BYTES_PER_ELEMENT)) };
}

/** Starts vCPU 0 on the guest, with `data` for the fixture beside the machine's log, and waits until the guest is ready. */
export async function runPicGuest(machine: KernelChipMachine, data: Omit<PicGuestVcpuData, 'log'> = {}): Promise<VcpuThread> {
  const thread = await VcpuThread.start(machine.vm, { vcpuId: 0, module: PIC_GUEST_VCPU, data: { ...data, log: machine.log.buffer } });
  try {
    await waitForLog(machine.log, GuestLog.Ready, 1);
  } catch (error) {
    await thread.stop();
    throw error;
  }
  return thread;
}

/**
 * Runs `body` while vCPU 0 runs the guest (`runPicGuest` with `data`); then, however `body` ended,
 * stops the vCPU and closes the VM.
 */
export async function withPicGuest<T>(machine: KernelChipMachine, data: Omit<PicGuestVcpuData, 'log'>, body: (thread: VcpuThread) => Promise<T>): Promise<T> {
  try {
    const thread = await runPicGuest(machine, data);
    try {
      return await body(thread);
    } finally {
      await thread.stop();
    }
  } finally {
    machine.vm.close();
  }
}

/** Waits until `log[word] >= value`; fails on a fatal guest exit or after a long timeout. */
export async function waitForLog(log: Int32Array, word: number, value: number): Promise<void> {
  await waitForLogWord(log, word, value, () => {
    const fatal = Atomics.load(log, GuestLog.FatalExit);
    return fatal === 0 ? undefined : `the guest's vCPU stopped on exit reason ${fatal}`;
  });
}

/**
 * Waits until `log[word] >= value` (a guest log that a vCPU worker fills and notifies); fails
 * when `failure()` names a reason, or after a long timeout.
 */
export async function waitForLogWord(log: Int32Array, word: number, value: number, failure: () => string | undefined): Promise<void> {
  const deadline = performance.now() + WAIT_TIMEOUT_MS;
  for (;;) {
    const current = Atomics.load(log, word);
    if (current >= value) return;
    const reason = failure();
    if (reason !== undefined) throw new Error(reason);
    const remaining = deadline - performance.now();
    if (remaining <= 0) throw new Error(`guest log word ${word} stayed at ${current}, expected ${value}`);
    // Wake on this word, and at least every 100 ms to look for a failure.
    await waitAsyncKeepingAlive(log, word, current, Math.min(remaining, 100));
  }
}
