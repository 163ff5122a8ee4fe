import assert from 'node:assert/strict';
import { closeSync, openSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { afterEach, describe, test } from 'node:test';
import { describeAcrossThreads, describeCounterSemantics, describeWaiting, type ThreadedEventBacking } from '../event/event-contract-test-support.ts';
import { Event, MemoryEvent } from '../event/event.ts';
import { assertIrqChipError } from '../testing/irq-chip-error.ts';
import { addon } from './addon.ts';
import { OsEvent } from './os-event.ts';

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

const EVENTFD_BACKING: ThreadedEventBacking = {
  title: 'OsEvent',
  create: created,
  keep: kept,
  workerFixture: new URL('./os-event-worker.fixture.ts', import.meta.url),
  maxSignalsPerWriter: 300,
  propertyRuns: 30,
};

describeCounterSemantics(EVENTFD_BACKING);
describeWaiting(EVENTFD_BACKING);

describe('OsEvent: the eventfd under the handle', () => {
  test('the fd is a real eventfd the kernel reads: an eventfd read sees what signal wrote', () => {
    const event = created();
    event.signal(5);
    assert.equal(addon.eventfdRead(event.fd), 5n);
    assert.equal(event.readCount(), 0n);
  });

  test('a clone owns its own fd, on the same counter', () => {
    const event = created();
    const clone = kept(event.tryClone());
    assert.notEqual(clone.fd, event.fd);
    assert.ok(event.sameCounter(clone));
  });

  test('sameCounter is false between an eventfd and a memory event, either way round', () => {
    const event = created();
    assert.ok(!event.sameCounter(Event.create()));
    assert.ok(!Event.create().sameCounter(event));
  });
});

describe('OsEvent: waiting through uv_poll, and closing', () => {
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

describeAcrossThreads(EVENTFD_BACKING);
