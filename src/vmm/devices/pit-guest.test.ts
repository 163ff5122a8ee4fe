/**
 * The same guest (guests/pit.c) on real KVM with each chip's PIT: KVM's in-kernel PIT on the
 * kernel chip, our `Pit8254` on the split and userspace chips. Both deliver one IRQ 0 per period
 * through the 8259A and through the IOAPIC, serve Linux's calibration pattern on channel 2, and
 * latch counts and status; where KVM's PIT departs from the 8254 datasheet, the guest shows it
 * and the test says which mechanism:
 * - mode 2's OUT: KVM reports it high only at the reload instant (i8254.c `pit_get_out`,
 *   `d % count == 0`), the datasheet's waveform inverted; ours is low for one pulse per period;
 * - GATE low in mode 0: KVM keeps counting (`pit_set_gate` ignores modes 0 and 4, and channel 2's
 *   count runs from `count_load_time`); ours holds the count, as the datasheet says;
 * - ticks missed while the guest had interrupts off: KVM re-injects them one per acknowledgement
 *   (`pit_timer_fn` counts `pending`, `kvm_pit_ack_irq` releases the next); ours, and KVM's with
 *   KVM_REINJECT_CONTROL off, coalesce them into the one edge the 8259A's IRR holds.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { kvmSkipReason } from '../../kvm/kvm-test-support.ts';
import { CHIP_MODES } from '../../kvm/probe-machine.ts';
import { runPitGuest, type PitGuestConfig, type PitGuestRun } from './pit-guest.ts';

const skip = kvmSkipReason('PIT guest on KVM');

/** Linux's divisors: HZ=100 (10 ms) and HZ=1000 (1 ms, above KVM's 200 µs floor, `min_timer_period_us`). */
const COUNT_10_MS = 11932;
const COUNT_1_MS = 1193;
const STATUS_OUTPUT = 0x80;
const GATE_LOW_COUNT = 0xffff;
/** guests/pit.c's bound on the calibration loop. */
const MAX_POLLS = 50_000_000;

/**
 * Mode 2 at 10 ms: the guest keeps interrupts off for 20 periods, then counts the interrupts of
 * the 20 periods after STI. KVM re-injects at most one tick per acknowledgement, through its
 * kvm-pit worker thread (`pit_do_work`); measured here, that drains a backlog at roughly one tick
 * per millisecond, which at a 1 ms period never catches up within the window, and at 10 ms does.
 */
const rateGeneratorThroughPic: PitGuestConfig = {
  route: 'pic',
  mode: 2,
  count: COUNT_10_MS,
  ticks: 20,
  blackoutPeriods: 20,
  afterPeriods: 20,
  calibrationCount: 2 * COUNT_1_MS,
};
const squareWaveThroughIoapic: PitGuestConfig = { ...rateGeneratorThroughPic, route: 'ioapic', mode: 3, count: COUNT_1_MS, blackoutPeriods: 0, afterPeriods: 0 };

/**
 * Interrupts in the periods after STI: coalesced edges give one per period watched plus the one
 * the 8259A's IRR held (21 here); re-injected ones also bring back every period spent with
 * interrupts off (40 and more: a late poll of the count only lengthens the window). Halfway
 * between tells them apart with room for a busy host on both sides.
 */
const BACKLOG_THRESHOLD = rateGeneratorThroughPic.afterPeriods + rateGeneratorThroughPic.blackoutPeriods / 2;

function assertGuestPassed(run: PitGuestRun, config: PitGuestConfig): void {
  assert.equal(run.exitValue, 0, `the guest's check ${run.exitValue} failed`);
  assert.equal(run.results.done, 1);
  assert.ok(run.results.ticks >= config.ticks, `${run.results.ticks} ticks`);
  assert.ok(run.results.calibrationPolls < MAX_POLLS, "Linux's calibration loop saw OUT2 rise");
  assert.equal(run.reportedInterrupts, run.results.ticks + run.results.afterTicks, 'every interrupt the guest took was reported, and only those');
  if (run.pit !== undefined) assert.ok(run.pit.ticks >= run.reportedInterrupts, 'our PIT pulsed at least once per interrupt taken');
}

function highOutputs(run: PitGuestRun): number {
  return [run.results.status0, run.results.status1, run.results.status2].filter((status) => (status & STATUS_OUTPUT) !== 0).length;
}

describe('the pit guest on each chip', { skip }, () => {
  for (const mode of CHIP_MODES) {
    const ours = mode !== 'kernel';
    const pitName = ours ? 'our Pit8254' : "KVM's PIT";

    test(`${mode} (${pitName}): mode 2 through the 8259A; Linux's calibration; status, count and GATE; missed ticks`, async () => {
      const run = await runPitGuest(mode, rateGeneratorThroughPic);
      assertGuestPassed(run, rateGeneratorThroughPic);
      const { results } = run;
      if (ours) {
        // Three status reads: OUT is low for 1 pulse in 11932, so two of them read high at least.
        assert.ok(highOutputs(run) >= 2, 'mode 2 OUT high between the count-1 pulses (datasheet)');
        assert.deepEqual([results.gateLowFirst, results.gateLowSecond], [GATE_LOW_COUNT, GATE_LOW_COUNT], 'GATE low holds the count');
        assert.ok(results.afterTicks < BACKLOG_THRESHOLD, `${results.afterTicks} interrupts after ${results.blackoutPeriods} periods off: coalesced`);
      } else {
        assert.ok(highOutputs(run) <= 1, "KVM's mode 2 OUT reads low except at the reload instant");
        assert.ok(results.gateLowSecond < results.gateLowFirst, `KVM counts with GATE low: 0x${results.gateLowFirst.toString(16)} then 0x${results.gateLowSecond.toString(16)}`);
        assert.ok(results.afterTicks >= BACKLOG_THRESHOLD, `${results.afterTicks} interrupts after ${results.blackoutPeriods} periods off: re-injected`);
      }
    });

    test(`${mode} (${pitName}): mode 3 through the IOAPIC, edge-triggered`, async () => {
      const run = await runPitGuest(mode, squareWaveThroughIoapic);
      assertGuestPassed(run, squareWaveThroughIoapic);
    });
  }

  test('without a configuration block the guest runs its defaults (mode 2 at 1 ms through the 8259A) and passes', async () => {
    const run = await runPitGuest('userspace', undefined);
    assert.equal(run.exitValue, 0, `the guest's check ${run.exitValue} failed`);
    assert.equal(run.results.done, 1);
    assert.equal(run.reportedInterrupts, run.results.ticks + run.results.afterTicks);
  });

  test("kernel with KVM_REINJECT_CONTROL off: KVM's PIT coalesces missed ticks as the hardware does", async () => {
    const run = await runPitGuest('kernel', rateGeneratorThroughPic, { reinject: false });
    assertGuestPassed(run, rateGeneratorThroughPic);
    assert.ok(run.results.afterTicks < BACKLOG_THRESHOLD, `${run.results.afterTicks} interrupts after ${run.results.blackoutPeriods} periods off`);
  });
});
