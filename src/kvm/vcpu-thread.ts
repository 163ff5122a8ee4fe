/**
 * A vCPU in its own worker thread, and how to stop it (kvm-from-node.md §4, gotchas 3–5).
 *
 * `VcpuThread.start(vm, { vcpuId, module })` starts a worker on `module`, which calls
 * `attachVcpuThread()` to create its vCPU (KVM_CREATE_VCPU on its own thread) and then loops on
 * `vcpu.run()` until `vcpu.stopRequested`. Kicks go through the vCPU's control block
 * (vcpu-kick.ts), which any thread may hold: `controlBlock`.
 *
 * Shutdown: a worker blocked in KVM_RUN blocks `worker.terminate()`, and `process.exit()` hangs
 * forever. `stop()` sets the stop flag, kicks, waits for the vCPU to close and then terminates the
 * worker; a process 'exit' listener sets the flag and kicks every vCPU still running, so even an
 * exit that never called `stop()` does not hang.
 */

import { once } from 'node:events';
import { workerData as incomingWorkerData, type Worker, type WorkerOptions } from 'node:worker_threads';
import { ErrorCode, IrqChipError } from '../base/errors.ts';
import { waitAsyncKeepingAlive } from '../base/wait-async.ts';
import { startTypeScriptWorker } from '../node/worker.ts';
import { KvmCap } from './kvm-abi.ts';
import { KvmVcpu, VcpuControlWord, allocateVcpuControl } from './kvm-vcpu.ts';
import { KvmVm, type KvmVmDescriptor } from './kvm-vm.ts';
import { kickVcpuThread } from './vcpu-kick.ts';

export interface VcpuThreadOptions {
  readonly vcpuId: number;
  /** The worker's module: it calls `attachVcpuThread()` and runs the vCPU. */
  readonly module: URL;
  /** Passed to the worker (structured clone): `attachVcpuThread().data`. */
  readonly data?: unknown;
  /** Objects in `data` to transfer rather than clone (a chip view's MessagePort). */
  readonly transferList?: WorkerOptions['transferList'];
  /** How long the worker may take to create its vCPU (default 30 s: a worker loads tsx first). */
  readonly startTimeoutMs?: number;
}

/** What `VcpuThread.start` hands its worker as `workerData`. */
interface VcpuWorkerData {
  readonly kind: 'irqchip-kvm-vcpu';
  readonly vm: KvmVmDescriptor;
  readonly vcpuId: number;
  readonly control: SharedArrayBuffer;
  readonly data: unknown;
}

const DEFAULT_START_TIMEOUT_MS = 30_000;
const DEFAULT_STOP_TIMEOUT_MS = 5_000;

/** Started and not yet stopped, on this thread: kicked with the stop flag set when the process exits. */
const liveThreads = new Set<VcpuThread>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const thread of liveThreads) thread.requestStop();
  });
}

export class VcpuThread {
  private readonly exited: Promise<unknown>;

  private constructor(
    readonly vcpuId: number,
    /** The worker, for the VMM's own messages to its vCPU loop. */
    readonly worker: Worker,
    private readonly control: Int32Array,
  ) {
    this.exited = once(worker, 'exit');
    liveThreads.add(this);
    installExitHook();
    worker.once('exit', () => {
      Atomics.store(control, VcpuControlWord.Exited, 1);
      liveThreads.delete(this);
    });
  }

  /** Starts the worker and resolves once its vCPU exists and can be kicked. */
  static async start(vm: KvmVm, options: VcpuThreadOptions): Promise<VcpuThread> {
    // Without immediate_exit a kick that lands while the thread is in JavaScript would be lost.
    if (vm.checkExtension(KvmCap.IMMEDIATE_EXIT) === 0) throw new IrqChipError(ErrorCode.ENODEV, 'this KVM lacks KVM_CAP_IMMEDIATE_EXIT, which kicks rely on');
    const control = allocateVcpuControl();
    const workerData: VcpuWorkerData = {
      kind: 'irqchip-kvm-vcpu',
      vm: vm.descriptor(),
      vcpuId: options.vcpuId,
      control: control.buffer as SharedArrayBuffer,
      data: options.data,
    };
    const worker = startTypeScriptWorker(options.module, { workerData, ...(options.transferList === undefined ? {} : { transferList: options.transferList }) });
    try {
      await published(worker, control, options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS);
    } catch (error) {
      await worker.terminate();
      throw error;
    }
    return new VcpuThread(options.vcpuId, worker, control);
  }

  /** The vCPU's control block: what another thread needs to kick it (`kickVcpuThread`). */
  get controlBlock(): SharedArrayBuffer {
    return this.control.buffer as SharedArrayBuffer;
  }

  /**
   * Makes the vCPU leave KVM_RUN now, or return from its next KVM_RUN at once: `run()` returns
   * `KvmExit.INTR`. The VMM puts what it wants in its own mailbox before kicking.
   */
  kick(): void {
    kickVcpuThread(this.control);
  }

  /** Sets the stop flag and kicks: the vCPU's `run()` returns and never blocks again. */
  requestStop(): void {
    Atomics.store(this.control, VcpuControlWord.StopRequested, 1);
    this.kick();
  }

  /** Stops the vCPU (stop flag, kick), waits for it to close, and terminates the worker. */
  async stop(timeoutMs = DEFAULT_STOP_TIMEOUT_MS): Promise<void> {
    this.requestStop();
    await stopWorker(this.worker, this.control, timeoutMs);
    await this.exited;
  }
}

/** Waits for the worker to publish its vCPU, failing if it dies or takes longer than `timeoutMs`. */
async function published(worker: Worker, control: Int32Array, timeoutMs: number): Promise<void> {
  let onError: (error: Error) => void = () => undefined;
  let onExit: (code: number) => void = () => undefined;
  const failure = new Promise<never>((_, reject) => {
    onError = reject;
    onExit = (code) => {
      reject(new IrqChipError(ErrorCode.ENODEV, `the vCPU worker exited (code ${code}) before creating its vCPU`));
    };
  });
  worker.once('error', onError).once('exit', onExit);
  const deadline = performance.now() + timeoutMs;
  const publication = (async (): Promise<void> => {
    while (Atomics.load(control, VcpuControlWord.ThreadId) === 0) {
      const remaining = deadline - performance.now();
      if (remaining <= 0) throw new IrqChipError(ErrorCode.EAGAIN, `the vCPU worker did not create its vCPU within ${timeoutMs} ms`);
      await Promise.race([waitAsyncKeepingAlive(control, VcpuControlWord.ThreadId, 0, remaining), failure]);
    }
  })();
  try {
    await publication;
  } finally {
    worker.off('error', onError).off('exit', onExit);
  }
}

/** Waits (bounded) for the vCPU to close after a stop request, then terminates its worker. */
async function stopWorker(worker: Worker, control: Int32Array, timeoutMs = DEFAULT_STOP_TIMEOUT_MS): Promise<void> {
  Atomics.store(control, VcpuControlWord.StopRequested, 1);
  if (Atomics.load(control, VcpuControlWord.Exited) === 0) {
    await waitAsyncKeepingAlive(control, VcpuControlWord.Exited, 0, timeoutMs);
  }
  await worker.terminate();
}

/**
 * In a worker started by `VcpuThread.start`: creates the vCPU on this thread (from then on kicks
 * reach it) and returns it with the VM view and the supervisor's `data`. The caller runs it until `vcpu.stopRequested`, then `vcpu.close()`.
 */
export function attachVcpuThread(): { readonly vcpu: KvmVcpu; readonly vm: KvmVm; readonly data: unknown } {
  const received = incomingWorkerData as Partial<VcpuWorkerData> | undefined;
  if (received?.kind !== 'irqchip-kvm-vcpu' || received.vm === undefined || received.control === undefined || received.vcpuId === undefined) {
    throw new IrqChipError(ErrorCode.EINVAL, 'attachVcpuThread: this worker was not started by VcpuThread.start');
  }
  const vm = KvmVm.fromDescriptor(received.vm);
  const control = new Int32Array(received.control);
  const vcpu = KvmVcpu.create(vm, received.vcpuId, control);
  return { vcpu, vm, data: received.data };
}
