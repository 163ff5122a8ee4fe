/**
 * IOAPIC state: views over shared memory (fromState, worker threads), snapshots and their
 * validation (§6.34), checked against the word layout documented at the top of ioapic.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startTypeScriptWorker } from '../../node/worker.ts';
import { VirtualClock } from '../../base/clock.ts';
import { encodeSnapshot } from '../../base/shared-state.ts';
import type { InterruptMessageSink } from '../interrupt-message.ts';
import { Ioapic, IOAPIC_STORM_DELAY_NS, IOAPIC_STORM_EOI_THRESHOLD, type IoapicDescriptor } from './ioapic.ts';
import { assertRejectedUnchanged, RecordingSink } from '../controller-test-support.ts';
import { entryLow, makeIoapic, writeEntry } from './test-support.ts';

/** Word indexes from the layout table in ioapic.ts. */
const Layout = {
  totalWords: 144,
  ioregsel: 6,
  ioapicId: 7,
  lineLevels: 8,
  rtcEoiPending: 9,
  deferredPins: 10,
  rteLow: (pin: number) => 24 + 2 * pin,
  stormCount: (pin: number) => 72 + pin,
  deadlineHigh: (pin: number) => 97 + 2 * pin,
} as const;

function stateWords(ioapic: Ioapic): Int32Array {
  return new Int32Array(ioapic.descriptor().buffer);
}

/** A snapshot of `ioapic`'s state with `edit` applied to a copy of its words. */
function editedSnapshot(ioapic: Ioapic, edit: (words: Int32Array) => void, kind = 'IOAP', version = 1): Uint8Array {
  const copy = Int32Array.from(stateWords(ioapic));
  edit(copy);
  return encodeSnapshot(kind, version, copy);
}

function busyIoapic() {
  const rig = makeIoapic();
  writeEntry(rig.ioapic, 3, entryLow({ vector: 0x31, level: true }), 0x01000000);
  writeEntry(rig.ioapic, 4, entryLow({ vector: 0x32 }));
  rig.ioapic.setIrq(3, true);
  rig.ioapic.setIrq(4, true);
  return rig;
}

test('the state buffer has the documented size and words', () => {
  const { ioapic } = busyIoapic();
  const words = stateWords(ioapic);
  assert.equal(words.length, Layout.totalWords);
  assert.equal(words[Layout.lineLevels], (1 << 3) | (1 << 4));
  assert.equal(words[Layout.rteLow(3)], entryLow({ vector: 0x31, level: true }) | (1 << 14));
});

test('a view built from the descriptor shares the state: an EOI through it clears remote IRR', () => {
  const { ioapic, sink, clock } = busyIoapic();
  const otherSink = new RecordingSink();
  const view = Ioapic.fromState(structuredClone(ioapic.descriptor()), { sink: otherSink, clock });
  assert.equal(view.remoteIrr(3), true);
  assert.equal(view.baseAddress, ioapic.baseAddress);
  view.endOfInterrupt(0x31);
  assert.equal(ioapic.remoteIrr(3), true, 're-delivered through the view, whose sink took it');
  assert.deepEqual(otherSink.vectors(), [0x31]);
  assert.equal(sink.messages.length, 2);
});

test('fromState rejects a foreign descriptor, a wrong-sized buffer and a missing sink with EINVAL', () => {
  const { ioapic, clock } = busyIoapic();
  const sink = new RecordingSink();
  const bad: unknown[] = [
    { kind: 'pic', buffer: ioapic.descriptor().buffer },
    { kind: 'ioapic', buffer: new SharedArrayBuffer(16) },
    { kind: 'ioapic', buffer: new ArrayBuffer(Layout.totalWords * 4) },
    { kind: 'ioapic', buffer: new SharedArrayBuffer(Layout.totalWords * 4) },
    undefined,
  ];
  for (const descriptor of bad) {
    assert.throws(() => Ioapic.fromState(descriptor as IoapicDescriptor, { sink, clock }), {
      name: 'IrqChipError',
      code: 'EINVAL',
    });
  }
  const notASink: unknown = {};
  assert.throws(() => Ioapic.fromState(ioapic.descriptor(), { sink: notASink as InterruptMessageSink, clock }), {
    code: 'EINVAL',
  });
});

test('a worker thread asserting a pin through its own view is seen by this thread', async () => {
  const { ioapic } = makeIoapic();
  writeEntry(ioapic, 6, entryLow({ vector: 0x46, level: true }));
  const worker = startTypeScriptWorker(new URL('./ioapic.worker-fixture.ts', import.meta.url), { workerData: ioapic.descriptor() });
  const reply = await new Promise<unknown>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  await worker.terminate();
  assert.deepEqual(reply, { result: 1, vectors: [0x46] });
  assert.equal(ioapic.remoteIrr(6), true);
  assert.equal(ioapic.lineLevel(6), true);
});

test('snapshot and restore into a fresh IOAPIC reproduce registers, lines, remote IRR and counters', () => {
  const { ioapic } = busyIoapic();
  const copy = makeIoapic().ioapic;
  copy.restore(ioapic.snapshot());
  assert.deepEqual(copy.snapshot(), ioapic.snapshot());
  assert.equal(copy.remoteIrr(3), true);
  assert.equal(copy.lineLevel(4), true);
  assert.deepEqual(copy.counters(), ioapic.counters());
});

test('restore keeps this view\'s resample listeners (they are not state)', () => {
  const { ioapic } = busyIoapic();
  const copy = makeIoapic().ioapic;
  const signalled: number[] = [];
  copy.setResampleListener(3, (pin) => signalled.push(pin));
  copy.restore(ioapic.snapshot());
  copy.endOfInterrupt(0x31);
  assert.deepEqual(signalled, [3]);
});

test('restore caps a deferral deadline from another clock at now + 10 ms', () => {
  const rig = makeIoapic();
  rig.clock.advance(1e12);
  writeEntry(rig.ioapic, 2, entryLow({ vector: 0x60, level: true }));
  rig.ioapic.setIrq(2, true);
  for (let i = 0; i < IOAPIC_STORM_EOI_THRESHOLD; i++) rig.ioapic.endOfInterrupt(0x60);
  assert.equal(rig.ioapic.nextDeadlineNs(), 1e12 + IOAPIC_STORM_DELAY_NS);

  const sink = new RecordingSink();
  const clock = new VirtualClock(500);
  const restored = Ioapic.create({ sink, clock });
  restored.restore(rig.ioapic.snapshot());
  assert.equal(restored.nextDeadlineNs(), 500 + IOAPIC_STORM_DELAY_NS);
  clock.advance(IOAPIC_STORM_DELAY_NS);
  restored.runDelayedWork();
  assert.deepEqual(sink.vectors(), [0x60]);
});

test('a truncated snapshot is rejected and nothing changes', () => {
  const { ioapic } = busyIoapic();
  const bytes = ioapic.snapshot();
  const target = makeIoapic().ioapic;
  for (const length of [0, 8, 16, bytes.length - 4, bytes.length - 1]) {
    assertRejectedUnchanged(target, () => {
      target.restore(bytes.subarray(0, length));
    });
  }
});

test('a snapshot with a flipped bit is rejected and nothing changes', () => {
  const { ioapic } = busyIoapic();
  const target = makeIoapic().ioapic;
  const bytes = ioapic.snapshot();
  for (const bit of [0, 8 * 20 + 3, 8 * (bytes.length - 1)]) {
    const damaged = Uint8Array.from(bytes);
    damaged[bit >> 3] = (damaged[bit >> 3] ?? 0) ^ (1 << (bit & 7));
    assertRejectedUnchanged(target, () => {
      target.restore(damaged);
    });
  }
});

test('a snapshot of another kind or layout version is rejected and nothing changes', () => {
  const { ioapic } = busyIoapic();
  const target = makeIoapic().ioapic;
  for (const [kind, version] of [
    ['PIC2', 1],
    ['IOAP', 2],
  ] as const) {
    const foreign = editedSnapshot(ioapic, () => undefined, kind, version);
    assertRejectedUnchanged(target, () => {
      target.restore(foreign);
    });
  }
});

test('a snapshot of a differently configured IOAPIC (version, base, ID, features) is rejected', () => {
  const { ioapic } = busyIoapic();
  for (const options of [{ version: 0x11 }, { baseAddress: 0xfec01000 }, { id: 1 }, { rtcEoiTracking: true }] as const) {
    const other = makeIoapic(options).ioapic;
    assertRejectedUnchanged(other, () => {
      other.restore(ioapic.snapshot());
    });
  }
});

test('snapshots with impossible states are rejected and nothing changes', () => {
  const { ioapic } = busyIoapic();
  const target = makeIoapic().ioapic;
  const impossible: [string, (words: Int32Array) => void][] = [
    ['IOREGSEL wider than 8 bits', (words) => (words[Layout.ioregsel] = 0x100)],
    ['ID bits outside 27:24', (words) => (words[Layout.ioapicId] = 0x10000000)],
    ['line of pin 24', (words) => (words[Layout.lineLevels] = 1 << 24)],
    ['deferral of pin 30', (words) => (words[Layout.deferredPins] = 1 << 30)],
    ['RTC pending without tracking', (words) => (words[Layout.rtcEoiPending] = 1)],
    ['delivery status set', (words) => (words[Layout.rteLow(5)] = 1 << 12)],
    ['remote IRR on an edge entry', (words) => (words[Layout.rteLow(4)] = entryLow({ vector: 0x32 }) | (1 << 14))],
    ['remote IRR on an NMI entry', (words) => (words[Layout.rteLow(4)] = (4 << 8) | (1 << 15) | (1 << 14))],
    ['storm count at the threshold', (words) => (words[Layout.stormCount(3)] = IOAPIC_STORM_EOI_THRESHOLD)],
    ['negative storm count', (words) => (words[Layout.stormCount(3)] = -1)],
    ['deadline beyond 2^53 ns', (words) => (words[Layout.deadlineHigh(3)] = 2 ** 21)],
  ];
  for (const [why, edit] of impossible) {
    const bytes = editedSnapshot(ioapic, edit);
    assertRejectedUnchanged(
      target,
      () => {
        target.restore(bytes);
      },
      why,
    );
  }
});
