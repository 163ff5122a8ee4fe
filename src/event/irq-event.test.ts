import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { rejectsWith } from '../testing/irq-chip-error.ts';
import { TestWorker } from '../testing/test-worker.ts';
import { Event } from './event.ts';
import type { FixtureReply, FixtureRequest } from './event-worker.fixture.ts';
import { IrqEdgeEvent, IrqLevelEvent, type IrqEdgeEventDescriptor, type IrqLevelEventDescriptor } from './irq-event.ts';

test('IrqEdgeEvent: trigger signals the trigger event; clearTrigger consumes without blocking', () => {
  const edge = new IrqEdgeEvent();
  assert.equal(edge.clearTrigger(), false, 'nothing pending: returns at once');
  edge.trigger();
  edge.trigger();
  assert.equal(edge.getTrigger().readCount(), 2n);
  assert.equal(edge.clearTrigger(), true);
  assert.equal(edge.getTrigger().readCount(), 0n);
});

test('IrqEdgeEvent.fromEvent wraps an existing event; tryClone shares its counter', () => {
  const event = Event.create();
  const edge = IrqEdgeEvent.fromEvent(event);
  assert.equal(edge.getTrigger(), event);
  const clone = edge.tryClone();
  clone.trigger();
  assert.equal(event.tryRead(), 1n);
});

test('IrqLevelEvent: trigger and resample are separate counters with their own clear methods', () => {
  const level = new IrqLevelEvent();
  level.trigger();
  assert.equal(level.getTrigger().readCount(), 1n);
  assert.equal(level.getResample().readCount(), 0n);
  assert.equal(level.clearResample(), false);
  level.triggerResample();
  assert.equal(level.clearTrigger(), true);
  assert.equal(level.clearTrigger(), false);
  assert.equal(level.clearResample(), true);
  assert.equal(level.clearResample(), false);
});

test('IrqLevelEvent.fromEventPair keeps the order (trigger, resample); tryClone clones both', () => {
  const trigger = Event.create();
  const resample = Event.create();
  const level = IrqLevelEvent.fromEventPair(trigger, resample);
  assert.equal(level.getTrigger(), trigger);
  assert.equal(level.getResample(), resample);
  const clone = level.tryClone();
  clone.trigger();
  clone.triggerResample();
  clone.triggerResample();
  assert.equal(trigger.readCount(), 1n);
  assert.equal(resample.readCount(), 2n);
});

test('blocking clear forms refuse to block the main thread (EAGAIN) and consume nothing', () => {
  const level = new IrqLevelEvent();
  level.trigger();
  level.triggerResample();
  for (const blocking of [() => { level.clearTriggerBlocking(); }, () => { level.clearResampleBlocking(); }, () => { new IrqEdgeEvent(level.getTrigger()).clearTriggerBlocking(); }]) {
    assert.throws(blocking, rejectsWith('EAGAIN'));
  }
  assert.equal(level.getTrigger().readCount(), 1n);
  assert.equal(level.getResample().readCount(), 1n);
});

test('descriptors survive structured cloning and rebuild the same events; a wrong kind is EINVAL', () => {
  const level = new IrqLevelEvent();
  const rebuilt = IrqLevelEvent.fromDescriptor(structuredClone(level.descriptor()));
  rebuilt.trigger();
  assert.equal(level.clearTrigger(), true);
  const edge = new IrqEdgeEvent();
  IrqEdgeEvent.fromDescriptor(structuredClone(edge.descriptor())).trigger();
  assert.equal(edge.clearTrigger(), true);
  assert.throws(
    () => IrqLevelEvent.fromDescriptor(edge.descriptor() as unknown as IrqLevelEventDescriptor),
    rejectsWith('EINVAL'),
  );
  assert.throws(
    () => IrqEdgeEvent.fromDescriptor(level.descriptor() as unknown as IrqEdgeEventDescriptor),
    rejectsWith('EINVAL'),
  );
});

const device = new TestWorker<FixtureRequest, FixtureReply>(new URL('./event-worker.fixture.ts', import.meta.url));
after(() => device.terminate());

test('level handshake with a device in a worker: every trigger is answered by one resample, none lost', async () => {
  const level = new IrqLevelEvent();
  const rounds = 200;
  const done = device.request({ op: 'level-device', event: level.descriptor(), rounds });
  let serviced = 0;
  // The "chip": take the assertion, then (as at the guest's EOI) signal resample.
  while (serviced < rounds) {
    assert.equal(await level.getTrigger().waitAsync(10_000), 'signaled');
    assert.equal(level.clearTrigger(), true);
    serviced++;
    level.triggerResample();
  }
  assert.deepEqual(await done, { op: 'device-done', rounds });
  assert.equal(level.getTrigger().readCount(), 0n);
  assert.equal(level.getResample().readCount(), 0n);
});
