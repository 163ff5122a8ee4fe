/**
 * Test support: the behaviour every `Event` backing shares (Linux eventfd semantics; crosvm
 * `EventExt`), as suites each backing's test file runs on its own events, so the memory counter
 * and the real eventfd are held to one contract. Not part of the package's API.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { assertIrqChipError } from '../testing/irq-chip-error.ts';
import { TestWorker } from '../testing/test-worker.ts';
import { EVENT_COUNTER_MAX, Event } from './event.ts';
import type { FixtureReply, FixtureRequest } from './event-worker.fixture.ts';

export interface EventBacking {
  /** How the suites' titles name the backing, e.g. 'Event (memory)'. */
  readonly title: string;
  /** A new event of this backing; the test file releases it after each test. */
  readonly create: () => Event;
  /** Hands a handle made from another (a clone, a rebuilt descriptor) to the same release. */
  readonly keep: <T extends Event>(event: T) => T;
}

export interface ThreadedEventBacking extends EventBacking {
  /** The worker (event-worker.fixture.ts, with this backing registered) that receives descriptors. */
  readonly workerFixture: URL;
  /** Sizes of the property run: the most signals per writer, and the number of runs. */
  readonly maxSignalsPerWriter: number;
  readonly propertyRuns: number;
}

/** Counting, reading, clones and limits: what one thread sees of a backing. */
export function describeCounterSemantics({ title, create, keep }: EventBacking): void {
  describe(`${title}: eventfd counter semantics`, () => {
    test('signal adds, tryRead returns the whole count and zeroes it', () => {
      const event = create();
      event.signal();
      event.signal(2);
      event.signal(3n);
      assert.equal(event.tryRead(), 6n);
      assert.equal(event.tryRead(), 0n);
      assert.equal(event.readCount(), 0n);
    });

    test('tryRead with nothing signalled returns 0 and does not block', () => {
      assert.equal(create().tryRead(), 0n);
    });

    test('signal(0) is accepted and leaves the count (eventfd allows a zero write)', () => {
      const event = create();
      event.signal(4);
      event.signal(0);
      assert.equal(event.readCount(), 4n);
    });

    test('writeCount then readCount returns 55, and a clone reads what the original wrote (crosvm EventExt)', () => {
      const event = create();
      event.writeCount(55);
      assert.equal(event.readCount(), 55n);
      const clone = keep(event.tryClone());
      assert.equal(clone.readCount(), 55n);
      clone.signal();
      assert.equal(event.tryRead(), 56n);
      assert.equal(clone.readCount(), 0n);
    });

    test('writeCount(0) clears the counter', () => {
      const event = create();
      event.signal(3);
      event.writeCount(0);
      assert.equal(event.readCount(), 0n);
    });

    test('sameCounter: true for clones and rebuilt handles, false for another event', () => {
      const event = create();
      assert.ok(event.sameCounter(keep(event.tryClone())));
      assert.ok(event.sameCounter(keep(Event.fromDescriptor(structuredClone(event.descriptor())))));
      assert.ok(!event.sameCounter(create()));
    });

    test('readCount does not clear; reset does', () => {
      const event = create();
      event.signal(7);
      assert.equal(event.readCount(), 7n);
      assert.equal(event.readCount(), 7n);
      event.reset();
      assert.equal(event.readCount(), 0n);
    });

    test('the counter holds 0xfffffffffffffffe exactly', () => {
      const event = create();
      event.signal(EVENT_COUNTER_MAX);
      assert.equal(event.readCount(), EVENT_COUNTER_MAX);
      assert.equal(event.tryRead(), EVENT_COUNTER_MAX);
    });

    test('a signal past 0xfffffffffffffffe throws EAGAIN (the kernel refuses the write) and changes nothing', () => {
      const event = create();
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
      const event = create();
      event.signal(3);
      for (const bad of [-1, 1.5, Number.NaN, 2 ** 60, -1n, 0xffffffffffffffffn, 1n << 64n]) {
        assertIrqChipError(() => {
          event.signal(bad);
        }, 'EINVAL');
      }
      assert.equal(event.readCount(), 3n);
    });

    test('writeCount above the maximum throws EINVAL and changes nothing', () => {
      const event = create();
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
      const event = create();
      event.signal();
      assertIrqChipError(() => event.wait(), 'EAGAIN');
      assert.equal(event.readCount(), 1n, 'the refused wait consumed nothing');
    });
  });
}

/** waitAsync on the main thread, woken from this thread. */
export function describeWaiting({ title, create }: EventBacking): void {
  describe(`${title}: waiting`, () => {
    test('waitAsync resolves signaled at once when the count is non-zero, and does not consume it', async () => {
      const event = create();
      event.signal(2);
      assert.equal(await event.waitAsync(1000), 'signaled');
      assert.equal(event.tryRead(), 2n);
    });

    test('waitAsync times out with the count untouched', async () => {
      const event = create();
      assert.equal(await event.waitAsync(5), 'timed-out');
      assert.equal(event.readCount(), 0n);
      assert.equal(await event.waitAsync(0), 'timed-out');
    });

    test('waitAsync wakes on a later signal from this thread; every concurrent waiter wakes', async () => {
      const event = create();
      const waiting = [event.waitAsync(), event.waitAsync(10_000)];
      setTimeout(() => {
        event.signal(4);
      }, 2);
      assert.deepEqual(await Promise.all(waiting), ['signaled', 'signaled']);
      assert.equal(event.tryRead(), 4n);
    });
  });
}

/** Descriptors carried to worker threads: one counter, signalled, waited on and drained from several threads. */
export function describeAcrossThreads({ title, create, workerFixture, maxSignalsPerWriter, propertyRuns }: ThreadedEventBacking): void {
  describe(`${title} across worker threads`, () => {
    const workers: TestWorker<FixtureRequest, FixtureReply>[] = [];

    before(() => {
      for (let i = 0; i < 5; i++) workers.push(new TestWorker<FixtureRequest, FixtureReply>(workerFixture));
    });

    after(async () => {
      await Promise.all(workers.map((worker) => worker.terminate()));
    });

    function worker(index: number): TestWorker<FixtureRequest, FixtureReply> {
      const found = workers[index];
      assert.ok(found);
      return found;
    }

    test('a descriptor carried by postMessage is the same counter in the worker', async () => {
      const event = create();
      const reply = await worker(0).request({ op: 'signal', event: event.descriptor(), amounts: [1, 2, 3], pauseEvery: 0, pauseMicros: 0 });
      assert.deepEqual(reply, { op: 'signalled', total: '6' });
      assert.equal(event.tryRead(), 6n);
    });

    test('wait() in a worker blocks until a signal, then returns and clears the count', async () => {
      const event = create();
      const waiting = worker(0).request({ op: 'wait-once', event: event.descriptor() });
      // Give the worker time to block; the reply must not come before the signal.
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(event.readCount(), 0n);
      event.signal(3);
      assert.deepEqual(await waiting, { op: 'waited', count: '3' });
      assert.equal(event.readCount(), 0n);
    });

    test('waitAsync on the main thread wakes on a signal from a worker', async () => {
      const event = create();
      const waiting = event.waitAsync(10_000);
      await worker(1).request({ op: 'signal', event: event.descriptor(), amounts: [9], pauseEvery: 0, pauseMicros: 0 });
      assert.equal(await waiting, 'signaled');
      assert.equal(event.tryRead(), 9n);
    });

    test('property: 2–4 signalling workers and one draining reader; the sum read equals the sum signalled', async () => {
      const schedule = fc.record({
        writers: fc.array(fc.array(fc.integer({ min: 0, max: 1_000_000 }), { minLength: 1, maxLength: maxSignalsPerWriter }), { minLength: 2, maxLength: 4 }),
        pauseEvery: fc.integer({ min: 0, max: 50 }),
        pauseMicros: fc.integer({ min: 1, max: 200 }),
        blockingReader: fc.boolean(),
      });
      await fc.assert(
        fc.asyncProperty(schedule, async ({ writers, pauseEvery, pauseMicros, blockingReader }) => {
          const event = create();
          const expected = writers.flat().reduce((sum, amount) => sum + BigInt(amount), 0n);
          let read = 0n;
          // Reader: worker 4 blocking in wait(), or this thread polling with waitAsync + tryRead.
          const reader = blockingReader
            ? worker(4).request({ op: 'drain', event: event.descriptor(), expectedTotal: expected.toString() })
            : undefined;
          const writes = writers.map((amounts, index) =>
            worker(index).request({ op: 'signal', event: event.descriptor(), amounts, pauseEvery, pauseMicros }),
          );
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
        { numRuns: propertyRuns },
      );
    });
  });
}
