/**
 * The KVM demo end to end: the demo guest (guests/demo.c) on the machine with two vCPUs and the
 * userspace chip, for one second, sampled live as `npm start` samples it.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { IrqChipError } from '../../base/errors.ts';
import { kvmSkipReason } from '../../kvm/kvm-test-support.ts';
import { DEMO_SOURCES, DemoPhase } from './demo-layout.ts';
import type { DemoSample } from './demo-sampler.ts';
import { runKvmDemo } from './kvm-demo.ts';

const skip = kvmSkipReason('the KVM demo boots the demo guest');

/** Not the guest's default (1000 µs), so the status block shows the command line reached it. */
const TIMER_PERIOD_US = 800;

describe('the KVM demo', { skip }, () => {
  test('a one-second run: every source runs, the live sampler sees each at a non-zero rate, and every interrupt is accounted for', async () => {
    const samples: DemoSample[] = [];
    const result = await runKvmDemo({
      durationMs: 1000,
      timerPeriodUs: TIMER_PERIOD_US,
      onSample: (sample) => {
        samples.push(sample);
      },
    });
    const failed = result.accounting.checks.filter((check) => !check.ok).map((check) => `${check.subjects.join(', ')}: ${check.description}`);
    assert.deepEqual(failed, [], `the guest said:\n${result.serialOutput}`);
    assert.deepEqual(result.report.end, { kind: 'guest-exit', value: 0 });
    assert.equal(result.accounting.accounted, true);
    assert.match(result.serialOutput, /demo: every interrupt asked for was handled, once/);

    assert.equal(result.status.phase, DemoPhase.Done);
    assert.equal(result.status.timerPeriodUs, TIMER_PERIOD_US);
    assert.ok(result.status.runningUs >= 1_000_000, `the sources ran ${result.status.runningUs} µs by the guest's TSC`);
    for (const row of result.accounting.rows) assert.ok(row.handled > 0 && row.raised >= row.handled, `${row.source}: ${row.raised} raised, ${row.handled} handled`);

    assert.equal(result.samples, samples.length);
    for (const source of DEMO_SOURCES) assert.ok(result.peakRates[source] > 0, `the sampler saw ${source} running`);
    assert.ok(
      samples.some((sample) => sample.status.phase === DemoPhase.Running),
      'a sample was taken while the sources ran',
    );
  });

  test('a duration or timer period out of range is refused before anything starts', async () => {
    await assert.rejects(runKvmDemo({ durationMs: 0 }), (error) => error instanceof IrqChipError && error.code === 'EINVAL');
    await assert.rejects(runKvmDemo({ timerPeriodUs: 199 }), (error) => error instanceof IrqChipError && error.code === 'EINVAL');
  });
});
