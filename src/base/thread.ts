/**
 * Whether the current thread may block in `Atomics.wait`.
 *
 * Blocking waits (`Event.wait()`, a vCPU's `waitUntilRunnable`) belong on worker threads. Node's
 * main thread technically can call `Atomics.wait`, but doing so freezes its event loop, so we treat
 * it as a thread that must not block; a browser's main thread cannot call it at all.
 */

interface NodeProcessLike {
  getBuiltinModule?: (id: string) => unknown;
}

function detectMayBlock(): boolean {
  const nodeProcess = (globalThis as { process?: NodeProcessLike }).process;
  const workerThreads = nodeProcess?.getBuiltinModule?.('node:worker_threads') as { isMainThread?: boolean } | undefined;
  if (workerThreads?.isMainThread !== undefined) return !workerThreads.isMainThread;
  try {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT)), 0, 1, 0);
    return true;
  } catch {
    return false;
  }
}

export const threadMayBlock: boolean = detectMayBlock();
