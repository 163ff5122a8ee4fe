/**
 * `Machine`: the minimal VMM `irqchip run` drives. One KVM VM with RAM from guest-physical 0, the
 * chip of the chosen mode, one worker per vCPU (vcpu.worker.ts), and the VMM's devices on this
 * thread (machine-devices.ts), reached through the device mailbox.
 *
 * It runs until the guest ends it (isa-debug-exit), a vCPU stops on its own (a triple fault, an
 * entry failure), the time limit passes, or the caller stops it; in every case it stops every
 * vCPU, closes the VM and returns a report: how it ended, the exit code a process should return,
 * and the counters of the vCPUs, the chip and the devices. A guest cannot make it throw or hang.
 */

import { EventEmitter, once } from 'node:events';
import { writeSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { ErrorCode, IrqChipError, checkRange } from '../base/errors.ts';
import { IrqEventService } from '../chip/irq-event-service.ts';
import { Bus, IO_ADDRESS_LIMIT, MMIO_ADDRESS_LIMIT } from '../chip/bus.ts';
import { createModeChip, describeModeChip, modeChipCounters, type ChipMode, type ModeChip } from '../kvm/chip-mode.ts';
import { GuestTscClock } from '../kvm/kvm-guest-tsc.ts';
import { KvmVm } from '../kvm/kvm-vm.ts';
import { VcpuThread } from '../kvm/vcpu-thread.ts';
import { waitAsyncKeepingAlive } from '../base/wait-async.ts';
import { DeviceMailboxServer, createDeviceMailbox } from './device-mailbox.ts';
import { loadImage } from './loader/load-image.ts';
import type { LoadedImage } from './loader/loaded-image.ts';
import { createMachineDevices, type MachineDevices } from './machine-devices.ts';
import { MAX_MEMORY_MIB, MAX_VCPUS, MIN_MEMORY_MIB, MIN_VCPUS } from './machine-layout.ts';
import type { MachineVcpuData } from './machine-vcpu-data.ts';
import { EXIT_REASON_NAMES, VcpuEnd, createVcpuStatus, openStartGate, endedVcpus, readVcpuStatus, vcpuEndWord, type VcpuStatus } from './vcpu-status.ts';

const VCPU_WORKER = new URL('./vcpu.worker.ts', import.meta.url);
const MIB = 1 << 20;

export interface MachineOptions {
  readonly chip: ChipMode;
  readonly cpus: number;
  readonly memoryMib: number;
  /** The image to boot (loader/load-image.ts says which formats load). */
  readonly image: Uint8Array;
  /** Its file name as the user gave it: multiboot kernels see it first on their command line, as under QEMU. */
  readonly imageName: string;
  /** The kernel arguments (`--append`): in the multiboot information, and in fw_cfg for our 64-bit guests. */
  readonly commandLine?: string;
  /** Bytes the guest writes to its serial port (default: this process's stdout). */
  readonly serialOutput?: (byte: number) => void;
}

/** How a run ended. */
export type MachineEnd =
  /** The guest wrote `value` to isa-debug-exit: QEMU's exit status (value << 1) | 1. */
  | { readonly kind: 'guest-exit'; readonly value: number }
  /** A vCPU stopped on an exit it cannot go on from (a triple fault: `shutdown`). */
  | { readonly kind: 'vcpu-stopped'; readonly vcpuId: number; readonly exit: string }
  | { readonly kind: 'timeout'; readonly afterMs: number }
  | { readonly kind: 'stopped' }
  /** A fault of the VMM itself (a device or a worker threw): a bug, reported, never the guest's doing. */
  | { readonly kind: 'vmm-error'; readonly error: Error };

export interface MachineReport {
  readonly end: MachineEnd;
  /** What `irqchip run` exits with (see `exitCodeOf`). */
  readonly exitCode: number;
  readonly vcpus: readonly VcpuStatus[];
  /** Counters of the chip's lines and events and of each device, by name. */
  readonly counters: Readonly<Record<string, Readonly<Record<string, number>>>>;
  /** Device accesses forwarded by the vCPUs to the device thread. */
  readonly forwardedAccesses: number;
}

/** The process exit code of each ending. The guest's own codes are odd ((value << 1) | 1), ours even or fixed. */
export const MachineExitCode = {
  /** A vCPU stopped on its own (triple fault, entry failure). */
  VcpuStopped: 2,
  /** A VMM fault. */
  VmmError: 70,
  /** The time limit passed (as timeout(1)). */
  Timeout: 124,
  /** Stopped by the caller (SIGINT: 128 + 2). */
  Stopped: 130,
} as const;

export function exitCodeOf(end: MachineEnd): number {
  switch (end.kind) {
    case 'guest-exit':
      // The OS keeps the low 8 bits of a status, as under QEMU.
      return ((end.value << 1) | 1) & 0xff;
    case 'vcpu-stopped':
      return MachineExitCode.VcpuStopped;
    case 'timeout':
      return MachineExitCode.Timeout;
    case 'stopped':
      return MachineExitCode.Stopped;
    case 'vmm-error':
      return MachineExitCode.VmmError;
  }
}

/** Checks the caller's options before anything is created. */
export function checkMachineOptions(options: Pick<MachineOptions, 'cpus' | 'memoryMib'>): void {
  checkRange(options.cpus, MIN_VCPUS, MAX_VCPUS, 'vCPU count (--cpus)');
  checkRange(options.memoryMib, MIN_MEMORY_MIB, MAX_MEMORY_MIB, 'memory in MiB (--memory)');
}

export class Machine {
  private readonly threads: VcpuThread[] = [];
  private endResolve: ((end: MachineEnd) => void) | undefined;
  private readonly ended: Promise<MachineEnd>;
  private finished = false;
  private ran = false;
  /** What each vCPU worker that failed threw (a VMM bug: the report carries its message). */
  private readonly workerErrors = new Map<number, Error>();

  private constructor(
    /** What was loaded, and how (warnings included). */
    readonly loaded: LoadedImage,
    private readonly vm: KvmVm,
    private readonly modeChip: ModeChip,
    private readonly devices: MachineDevices,
    private readonly mailbox: DeviceMailboxServer,
    private readonly service: IrqEventService,
    private readonly status: SharedArrayBuffer,
  ) {
    this.ended = new Promise((resolve) => {
      this.endResolve = resolve;
    });
  }

  /** Creates the VM, its chip, devices and vCPUs, loads the guest and starts it. */
  static async boot(options: MachineOptions): Promise<Machine> {
    checkMachineOptions(options);
    const vm = KvmVm.create({ memoryBytes: options.memoryMib * MIB });
    let machine: Machine | undefined;
    try {
      const commandLine = options.commandLine ?? '';
      const loaded = loadImage(vm.memory, options.image, { fileName: options.imageName, commandLine });
      // Our local APICs count the guest's TSC: their clock follows it, at its frequency.
      const guestTsc = options.chip === 'userspace' ? GuestTscClock.create(vm) : undefined;
      const modeChip = createModeChip(vm, options.chip, { vcpuCount: options.cpus, ...(guestTsc === undefined ? {} : { userspace: { clock: guestTsc, tscHz: guestTsc.tscHz } }) });
      const io = new Bus('io', IO_ADDRESS_LIMIT);
      const mmio = new Bus('mmio', MMIO_ADDRESS_LIMIT);
      const mailboxBuffer = createDeviceMailbox(options.cpus);
      const mailbox = new DeviceMailboxServer(mailboxBuffer, io, mmio);
      const status = createVcpuStatus(options.cpus);
      const service = new IrqEventService(modeChip.chip);
      let onGuestExit: (value: number) => void = () => undefined;
      const devices = createMachineDevices({
        vm,
        modeChip,
        io,
        mmio,
        cpus: options.cpus,
        memoryBytes: options.memoryMib * MIB,
        // QEMU gives fw_cfg the command line of the kernels it boots itself, not of multiboot ones (x86_load_linux).
        commandLine: loaded.format === 'multiboot' ? '' : commandLine,
        serialOutput: options.serialOutput ?? writeToStdout,
        onGuestExit: (value) => {
          onGuestExit(value);
        },
      });
      machine = new Machine(loaded, vm, modeChip, devices, mailbox, service, status);
      const started = machine;
      onGuestExit = (value) => {
        started.finish({ kind: 'guest-exit', value });
      };
      mailbox.start();
      service.start();
      devices.start();
      for (let vcpuId = 0; vcpuId < options.cpus; vcpuId++) {
        const { descriptor, transferList } = describeModeChip(modeChip);
        const data: MachineVcpuData = {
          chip: descriptor,
          vcpuCount: options.cpus,
          mailbox: mailboxBuffer,
          forwarded: devices.forwardedRanges,
          status,
          ...(guestTsc === undefined ? {} : { guestTsc: guestTsc.descriptor() }),
          ...(vcpuId === 0 ? { boot: loaded.boot } : {}),
        };
        const thread = await VcpuThread.start(vm, { vcpuId, module: VCPU_WORKER, data, transferList });
        const watched = machine;
        thread.worker.once('error', (error) => {
          watched.workerErrors.set(vcpuId, error);
        });
        machine.threads.push(thread);
      }
      if (!(await openStartGate(status, options.cpus, START_GATE_TIMEOUT_MS))) throw new IrqChipError(ErrorCode.EAGAIN, `the vCPUs were not set up within ${START_GATE_TIMEOUT_MS} ms`);
      machine.watchVcpus();
      return machine;
    } catch (error) {
      if (machine !== undefined) await machine.shutDown();
      else vm.close();
      throw error;
    }
  }

  /** Runs until the guest or a vCPU ends the run, `timeoutMs` passes (0: no limit), or `stop()`. */
  async run(options: { readonly timeoutMs?: number } = {}): Promise<MachineReport> {
    const timeoutMs = options.timeoutMs ?? 0;
    checkRange(timeoutMs, 0, 2 ** 31 - 1, 'time limit in ms');
    if (this.ran) throw new IrqChipError(ErrorCode.EINVAL, 'this machine has already run');
    this.ran = true;
    const timer =
      timeoutMs === 0
        ? undefined
        : setTimeout(() => {
            this.finish({ kind: 'timeout', afterMs: timeoutMs });
          }, timeoutMs);
    const end = await this.ended;
    clearTimeout(timer);
    const report = await this.shutDown(end);
    return report;
  }

  /** Guest RAM from guest-physical 0: a view of the VM's SharedArrayBuffer, still readable after the run. */
  get memory(): Uint8Array {
    return this.vm.memory;
  }

  /** Ends the run (a caller's request, e.g. SIGINT). */
  stop(): void {
    this.finish({ kind: 'stopped' });
  }

  private finish(end: MachineEnd): void {
    if (this.finished) return;
    this.finished = true;
    // Stop every vCPU now: the one that wrote isa-debug-exit must not run another instruction.
    for (const thread of this.threads) thread.requestStop();
    this.endResolve?.(end);
  }

  /** Waits for vCPUs that end on their own, and for VMM faults in the devices or the service. */
  private watchVcpus(): void {
    const { array, index } = vcpuEndWord(this.status);
    void (async () => {
      let seen = 0;
      while (!this.finished) {
        const failure = this.mailbox.failure() ?? this.service.failure() ?? this.devices.failure();
        if (failure !== undefined) {
          this.finish({ kind: 'vmm-error', error: failure });
          return;
        }
        if (endedVcpus(this.status) > seen) {
          seen = endedVcpus(this.status);
          const stopped = this.threads.map((thread) => readVcpuStatus(this.status, thread.vcpuId)).find((vcpu) => vcpu.end === VcpuEnd.FatalExit || vcpu.end === VcpuEnd.WorkerError);
          if (stopped !== undefined) {
            // The worker's error event follows its status word: let it land so the report can name it.
            if (stopped.end === VcpuEnd.WorkerError) await Promise.race([once(this.threads[stopped.vcpuId]?.worker ?? new EventEmitter(), 'exit'), delay(WORKER_ERROR_GRACE_MS)]);
            this.finish(
              stopped.end === VcpuEnd.FatalExit
                ? { kind: 'vcpu-stopped', vcpuId: stopped.vcpuId, exit: readExitName(stopped.fatalExit) }
                : { kind: 'vmm-error', error: new Error(`vCPU ${stopped.vcpuId}'s worker failed: ${this.workerErrors.get(stopped.vcpuId)?.message ?? 'no error reported'}`) },
            );
            return;
          }
        }
        await waitAsyncKeepingAlive(array, index, seen, FAULT_POLL_MS);
      }
    })();
  }

  /** Stops the vCPUs, the service and the devices, closes the VM, and reports. */
  private async shutDown(end: MachineEnd = { kind: 'stopped' }): Promise<MachineReport> {
    this.finished = true;
    for (const thread of this.threads) thread.requestStop();
    this.modeChip.chip.kickHaltedVcpus();
    // The mailbox keeps answering until every vCPU is gone: a vCPU waiting for an answer must get one.
    await Promise.all(this.threads.map((thread) => thread.stop()));
    await this.mailbox.stop();
    await this.service.stop();
    await this.devices.stop();
    const report: MachineReport = {
      end,
      exitCode: exitCodeOf(end),
      vcpus: this.threads.map((thread) => readVcpuStatus(this.status, thread.vcpuId)),
      counters: { ...modeChipCounters(this.modeChip), ...this.devices.counters() },
      forwardedAccesses: this.mailbox.served,
    };
    this.vm.close();
    return report;
  }
}

/** How long the vCPU workers may take to set up (a worker loads tsx first; 2 cores, many vCPUs). */
const START_GATE_TIMEOUT_MS = 60_000;

/** How long the watcher waits for a failed worker's error to arrive. */
const WORKER_ERROR_GRACE_MS = 1000;

/** How often the watcher looks for a device or service fault while no vCPU ends. */
const FAULT_POLL_MS = 100;

function readExitName(exit: number): string {
  return EXIT_REASON_NAMES[exit] ?? `exit ${exit}`;
}

/** The serial port's bytes go straight to file descriptor 1, in order with nothing buffered. */
function writeToStdout(byte: number): void {
  writeSync(STDOUT_FD, Uint8Array.of(byte));
}
const STDOUT_FD = 1;
