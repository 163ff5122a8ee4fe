import assert from 'node:assert/strict';
import { test } from 'node:test';
import { registerThreadWaker } from '../../base/thread-waker.ts';
import { fixed, makeEnabledApic } from './local-apic-test-support.ts';

/** The thread ids this thread was asked to wake, in order. */
const woken: number[] = [];
registerThreadWaker((threadId) => woken.push(threadId));
const VCPU_THREAD = 4242;

test('while its vCPU runs guest code, every ring of the doorbell (an accepted interrupt) wakes the published thread; after leaveGuest none does', () => {
  const { apic } = makeEnabledApic();
  woken.length = 0;
  assert.equal(apic.enterGuest(VCPU_THREAD, apic.doorbellGeneration()), true);
  apic.accept(fixed(0x40));
  apic.accept(fixed(0x41));
  assert.deepEqual(woken, [VCPU_THREAD, VCPU_THREAD]);
  apic.leaveGuest();
  apic.accept(fixed(0x42));
  assert.deepEqual(woken, [VCPU_THREAD, VCPU_THREAD], 'no wake-up once the thread is back');
});

test('enterGuest refuses, publishing nothing, when the doorbell rang after the vCPU last looked: it must look again instead of running', () => {
  const { apic } = makeEnabledApic();
  woken.length = 0;
  const looked = apic.doorbellGeneration();
  apic.accept(fixed(0x50));
  assert.equal(apic.enterGuest(VCPU_THREAD, looked), false);
  apic.accept(fixed(0x51));
  assert.deepEqual(woken, [], 'the refused thread was not published');
  assert.equal(apic.enterGuest(VCPU_THREAD, apic.doorbellGeneration()), true);
  apic.leaveGuest();
});
