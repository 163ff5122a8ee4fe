import assert from 'node:assert/strict';
import { closeSync, openSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { after, afterEach, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { IrqChipError } from '../base/errors.ts';
import { EVENT_COUNTER_MAX, Event, MemoryEvent } from '../event/event.ts';
import type { FixtureReply, FixtureRequest } from '../event/event-worker.fixture.ts';
import { TestWorker } from '../testing/test-worker.ts';
import { addon } from './addon.ts';
import { OsEvent } from './os-event.ts';

const FIXTURE = new URL('./os-event-worker.fixture.ts', import.meta.url);

function assertIrqChipError(action: () => unknown, code: string): void {
  assert.throws(action, (error: unknown) => error instanceof IrqChipError && error.code === code);
}

/** Every event a test makes, closed after it, so no test leaks fds. */
const opened: OsEvent[] = [];
function created(): OsEvent {
  const event = OsEvent.create();
  opened.push(event);
  return event;
}
function kept<T extends Event>(event: T): T {
  if (event instanceof OsEvent) opened.push(event);
  return event;
}
afterEach(() => {
  for (const event of opened.splice(0)) event.close();
});

describe('OsEvent: eventfd counter semantics, as the memory backing', () => {
  test('signal adds, tryRead returns the whole count and zeroes it', () => {
    const event = created();
    event.signal();
    event.signal(2);
    event.signal(3n);
    assert.equal(event.tryRead(), 6n);
    assert.equal(event.tryRead(), 0n);
    assert.equal(event.readCount(), 0n);
  });

  test('tryRead with nothing signalled returns 0 and does not block', () => {
    assert.equal(created().tryRead(), 0n);
  });

  test('signal(0) is accepted and leaves the count', () => {
    const event = created();
    event.signal(4);
    event.signal(0);
    assert.equal(event.readCount(), 4n);
  });

  test('writeCount then readCount returns 55, and a clone reads what the original wrote', () => {
    const event = created();
    event.writeCount(55);
    assert.equal(event.readCount(), 55n);
    const clone = kept(event.tryClone());
    assert.notEqual(clone.fd, event.fd, 'a clone owns its own fd');
    assert.equal(clone.readCount(), 55n);
    clone.signal();
    assert.equal(event.tryRead(), 56n);
    assert.equal(clone.readCount(), 0n);
  });

  test('writeCount(0) clears the counter', () => {
    const event = created();
    event.signal(3);
    event.writeCount(0);
    assert.equal(event.readCount(), 0n);
  });

  test('sameCounter: true for clones and rebuilt handles, false for another eventfd and for a memory event', () => {
    const event = created();
    assert.ok(event.sameCounter(kept(event.tryClone())));
    assert.ok(event.sameCounter(kept(Event.fromDescriptor(structuredClone(event.descriptor())))));
    assert.ok(!event.sameCounter(created()));
    assert.ok(!event.sameCounter(Event.create()));
    assert.ok(!Event.create().sameCounter(event));
  });

  test('readCount does not clear; reset does', () => {
    const event = created();
    event.signal(7);
    assert.equal(event.readCount(), 7n);
    assert.equal(event.readCount(), 7n);
    event.reset();
    assert.equal(event.readCount(), 0n);
  });

  test('the counter holds 0xfffffffffffffffe exactly', () => {
    const event = created();
    event.signal(EVENT_COUNTER_MAX);
    assert.equal(event.readCount(), EVENT_COUNTER_MAX);
    assert.equal(event.tryRead(), EVENT_COUNTER_MAX);
  });

  test('a signal past 0xfffffffffffffffe throws EAGAIN (the kernel refuses the write) and changes nothing', () => {
    const event = created();
    event.writeCount(EVENT_COUNTER_MAX - 1n);
    event.signal();
    assertIrqChipError(() => {
      event.signal();
    }, 'EAGAIN');
    assert.equal(event.readCount(), EVENT_COUNTER_MAX);
    event.writeCount(10);
    assertIrqChipError(() => {
      event.signal(EVENT_COUNTER_MAX - 9n);
    }, 'EAGAIN');
    assert.equal(event.readCount(), 10n);
  });

  test('a bad signal amount throws EINVAL and changes nothing', () => {
    const event = created();
    event.signal(3);
    for (const bad of [-1, 1.5, Number.NaN, 2 ** 60, -1n, 0xffffffffffffffffn, 1n << 64n]) {
      assertIrqChipError(() => {
        event.signal(bad);
      }, 'EINVAL');
    }
    assert.equal(event.readCount(), 3n);
  });

  test('writeCount above the maximum throws EINVAL and changes nothing', () => {
    const event = created();
    event.writeCount(9);
    assertIrqChipError(() => {
      event.writeCount(0xffffffffffffffffn);
    }, 'EINVAL');
    assertIrqChipError(() => {
      event.writeCount(-2);
    }, 'EINVAL');
    assert.equal(event.readCount(), 9n);
  });

  test('wait() on the main thread throws EAGAIN instead of freezing the event loop', () => {
    const event = created();
    event.signal();
    assertIrqChipError(() => event.wait(), 'EAGAIN');
    assert.equal(event.readCount(), 1n, 'the refused wait consumed nothing');
  });

  test('the fd is a real eventfd the kernel reads: an eventfd read sees what signal wrote', () => {
    const event = created();
    event.signal(5);
    assert.equal(addon.eventfdRead(event.fd), 5n);
    assert.equal(event.readCount(), 0n);
  });
});

describe('OsEvent: waiting', () => {
  test('waitAsync resolves signaled at once when the count is non-zero, and does not consume it', async () => {
    const event = created();
    event.signal(2);
    assert.equal(await event.waitAsync(1000), 'signaled');
    assert.equal(event.tryRead(), 2n);
  });

  test('waitAsync times out with the count untouched', async () => {
    const event = created();
    assert.equal(await event.waitAsync(5), 'timed-out');
    assert.equal(event.readCount(), 0n);
    assert.equal(await event.waitAsync(0), 'timed-out');
  });

  test('waitAsync wakes on a later signal from this thread; every concurrent waiter wakes', async () => {
    const event = created();
    const waiting = [event.waitAsync(), event.waitAsync(10_000)];
    setTimeout(() => {
      event.signal(4);
    }, 2);
    assert.deepEqual(await Promise.all(waiting), ['signaled', 'signaled']);
    assert.equal(event.tryRead(), 4n);
  });

  test('waitAsync uses no thread-pool slot: eight waiters leave the four pool threads free for fs calls', async () => {
    const events = Array.from({ length: 8 }, created);
    const waiting = events.map((event) => event.waitAsync(10_000));
    // With the pool busy, fs.stat would never run; here it completes while all eight wait.
    await stat(new URL(import.meta.url));
    for (const event of events) event.signal();
    assert.deepEqual(await Promise.all(waiting), Array<string>(8).fill('signaled'));
  });

  test('close() resolves a pending waitAsync as timed-out and makes the handle refuse use (EBADF)', async () => {
    const event = OsEvent.create();
    const waiting = event.waitAsync();
    event.close();
    assert.equal(await waiting, 'timed-out');
    assert.ok(event.closed);
    assertIrqChipError(() => {
      event.signal();
    }, 'EBADF');
    event.close();
  });

  test('closing a clone leaves the original working', () => {
    const event = created();
    const clone = event.tryClone();
    clone.close();
    event.signal();
    assert.equal(event.tryRead(), 1n);
  });
});

describe('OsEvent: descriptors', () => {
  test('Event.fromDescriptor rebuilds a handle on the same eventfd (a dup of the fd)', () => {
    const event = created();
    const rebuilt = kept(Event.fromDescriptor(structuredClone(event.descriptor())));
    assert.ok(rebuilt instanceof OsEvent);
    assert.notEqual(rebuilt.fd, event.fd);
    rebuilt.signal(5);
    assert.equal(event.tryRead(), 5n);
  });

  test('a descriptor naming no eventfd is EINVAL: a memory descriptor, a negative fd, the fd of a plain file', () => {
    assertIrqChipError(() => OsEvent.fromDescriptor({ kind: 'memory' }), 'EINVAL');
    assertIrqChipError(() => OsEvent.fromDescriptor({ kind: 'eventfd', fd: -3 } as never), 'EINVAL');
    const file = openSync(new URL(import.meta.url), 'r');
    try {
      assertIrqChipError(() => OsEvent.fromDescriptor({ kind: 'eventfd', fd: file } as never), 'EINVAL');
    } finally {
      closeSync(file);
    }
    assertIrqChipError(() => MemoryEvent.fromDescriptor(created().descriptor()), 'EINVAL');
  });
});

describe('OsEvent across worker threads', () => {
  const workers: TestWorker<FixtureRequest, FixtureReply>[] = [];

  before(() => {
    for (let i = 0; i < 5; i++) workers.push(new TestWorker<FixtureRequest, FixtureReply>(FIXTURE));
  });

  after(async () => {
    await Promise.all(workers.map((worker) => worker.terminate()));
  });

  function worker(index: number): TestWorker<FixtureRequest, FixtureReply> {
    const found = workers[index];
    assert.ok(found);
    return found;
  }

  test('a descriptor carried by postMessage is the same eventfd in the worker', async () => {
    const event = created();
    const reply = await worker(0).request({ op: 'signal', event: event.descriptor(), amounts: [1, 2, 3], pauseEvery: 0, pauseMicros: 0 });
    assert.deepEqual(reply, { op: 'signalled', total: '6' });
    assert.equal(event.tryRead(), 6n);
  });

  test('wait() in a worker blocks in poll until a signal, then returns and clears the count', async () => {
    const event = created();
    const waiting = worker(0).request({ op: 'wait-once', event: event.descriptor() });
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(event.readCount(), 0n);
    event.signal(3);
    assert.deepEqual(await waiting, { op: 'waited', count: '3' });
    assert.equal(event.readCount(), 0n);
  });

  test('waitAsync on the main thread (uv_poll) wakes on a signal from a worker', async () => {
    const event = created();
    const waiting = event.waitAsync(10_000);
    await worker(1).request({ op: 'signal', event: event.descriptor(), amounts: [9], pauseEvery: 0, pauseMicros: 0 });
    assert.equal(await waiting, 'signaled');
    assert.equal(event.tryRead(), 9n);
  });

  test('property: 2–4 signalling workers and one draining reader; the sum read equals the sum signalled', async () => {
    const schedule = fc.record({
      writers: fc.array(fc.array(fc.integer({ min: 0, max: 1_000_000 }), { minLength: 1, maxLength: 300 }), { minLength: 2, maxLength: 4 }),
      pauseEvery: fc.integer({ min: 0, max: 50 }),
      pauseMicros: fc.integer({ min: 1, max: 200 }),
      blockingReader: fc.boolean(),
    });
    await fc.assert(
      fc.asyncProperty(schedule, async ({ writers, pauseEvery, pauseMicros, blockingReader }) => {
        using event = OsEvent.create();
        const expected = writers.flat().reduce((sum, amount) => sum + BigInt(amount), 0n);
        let read = 0n;
        const reader = blockingReader ? worker(4).request({ op: 'drain', event: event.descriptor(), expectedTotal: expected.toString() }) : undefined;
        const writes = writers.map((amounts, index) => worker(index).request({ op: 'signal', event: event.descriptor(), amounts, pauseEvery, pauseMicros }));
        if (reader === undefined) {
          while (read < expected) {
            if ((await event.waitAsync(5_000)) === 'timed-out') break;
            read += event.tryRead();
          }
        } else {
          const drained = await reader;
          assert.ok(drained.op === 'drained');
          read = BigInt(drained.total);
        }
        const signalled = (await Promise.all(writes)).reduce((sum, reply) => sum + (reply.op === 'signalled' ? BigInt(reply.total) : 0n), 0n);
        assert.equal(signalled, expected);
        assert.equal(read + event.tryRead(), expected);
      }),
      { numRuns: 30 },
    );
  });
});
