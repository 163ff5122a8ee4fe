import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { assertIrqChipError } from '../testing/irq-chip-error.ts';
import { describeAcrossThreads, describeCounterSemantics, describeWaiting, type ThreadedEventBacking } from './event-contract-test-support.ts';
import { Event, MemoryEvent, registerEventBacking } from './event.ts';

const MEMORY_BACKING: ThreadedEventBacking = {
  title: 'Event',
  create: () => Event.create(),
  keep: (event) => event,
  workerFixture: new URL('./event-worker.fixture.ts', import.meta.url),
  maxSignalsPerWriter: 400,
  propertyRuns: 40,
};

describeCounterSemantics(MEMORY_BACKING);
describeWaiting(MEMORY_BACKING);

describe('Event: descriptors and backings', () => {
  test('Event.fromDescriptor rebuilds a handle on the same counter; an unknown backing is EINVAL', () => {
    const event = Event.create();
    const rebuilt = Event.fromDescriptor(structuredClone(event.descriptor()));
    rebuilt.signal(5);
    assert.equal(event.tryRead(), 5n);
    assertIrqChipError(() => Event.fromDescriptor({ kind: 'no-such-backing' }), 'EINVAL');
    assertIrqChipError(() => MemoryEvent.fromDescriptor({ kind: 'memory' }), 'EINVAL');
    assertIrqChipError(() => new MemoryEvent(new SharedArrayBuffer(4)), 'EINVAL');
  });

  test('registerEventBacking lets another backing rebuild its own descriptors', () => {
    const made: string[] = [];
    registerEventBacking('test-backing', (descriptor) => {
      made.push(descriptor.kind);
      return Event.create();
    });
    Event.fromDescriptor({ kind: 'test-backing' });
    assert.deepEqual(made, ['test-backing']);
  });
});

describeAcrossThreads(MEMORY_BACKING);
