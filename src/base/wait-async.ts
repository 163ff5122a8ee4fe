/**
 * `Atomics.waitAsync` that holds the event loop open while it waits.
 *
 * A pending `Atomics.waitAsync` does not keep Node's event loop alive, so a process whose only
 * work is a waiter would exit under it. A timer that never fires holds the loop open until the
 * wait settles, as a pending read on a real file descriptor would.
 */

/** The longest timer delay JavaScript allows: the keep-alive timer never fires in practice. */
const KEEP_ALIVE_INTERVAL_MS = 2 ** 31 - 1;

export type AsyncWaitResult = 'ok' | 'not-equal' | 'timed-out';

/** Waits while `array[index]` equals `value`, up to `timeoutMs` (Infinity: no limit). */
export async function waitAsyncKeepingAlive<T extends Int32Array | BigInt64Array>(
  array: T,
  index: number,
  value: T extends Int32Array ? number : bigint,
  timeoutMs: number,
): Promise<AsyncWaitResult> {
  const pending = (Atomics.waitAsync as (array: T, index: number, value: number | bigint, timeout: number) => { async: boolean; value: AsyncWaitResult | Promise<AsyncWaitResult> })(
    array,
    index,
    value,
    timeoutMs,
  );
  if (!pending.async) return pending.value;
  const keepAlive = setInterval(() => undefined, KEEP_ALIVE_INTERVAL_MS);
  try {
    return await pending.value;
  } finally {
    clearInterval(keepAlive);
  }
}
