/**
 * Local APIC timer: one-shot, periodic, TSC-deadline, divider, masking, software disable
 * (x86-controllers.md §3.13, scenarios L26–L32, §6.25–§6.27). Time is a VirtualClock.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { VirtualClock } from '../../base/clock.ts';
import { LocalApic } from './local-apic.ts';
import { MSR_TSC_DEADLINE, Mmio, SVR_ENABLED, makeApic, makeEnabledApic, rdmsr } from './local-apic-test-support.ts';

const ONE_SHOT = 0x00000;
const PERIODIC = 0x20000;
const TSC_DEADLINE = 0x40000;
const MASKED = 0x10000;
const DIVIDE_BY_1 = 0xb;
const DIVIDE_BY_2 = 0x0;

/** Starts the timer at one count per ns: TDCR ÷1, then the LVT entry, then TMICT (the write that arms it). */
function startTimer(apic: LocalApic, lvtTimer: number, initialCount: number): void {
  apic.mmioWrite(Mmio.TimerDivide, 4, DIVIDE_BY_1);
  apic.mmioWrite(Mmio.LvtTimer, 4, lvtTimer);
  apic.mmioWrite(Mmio.TimerInitialCount, 4, initialCount);
}

/** Moves the clock and lets the APIC process the expiries due, as the VMM's timer loop does. */
function advance(apic: LocalApic, clock: VirtualClock, deltaNs: number): void {
  clock.advance(deltaNs);
  apic.processTimerExpiry();
}

/** Takes and EOIs the timer vector, so the next expiry is visible in IRR. */
function service(apic: LocalApic, vector: number): void {
  assert.equal(apic.acknowledgeInterrupt(), vector);
  apic.mmioWrite(Mmio.Eoi, 4, 0);
}

test('L26 one-shot, ÷1, TMICT 1000: TMCCT 600 at t=400, fires once at t=1000, then TMCCT 0', () => {
  const { apic, clock } = makeEnabledApic();
  startTimer(apic, ONE_SHOT | 0x20, 1000);
  assert.equal(apic.nextTimerDeadlineNs(), 1000);
  advance(apic, clock, 400);
  assert.equal(apic.mmioRead(Mmio.TimerCurrentCount, 4), 600);
  advance(apic, clock, 599);
  assert.equal(apic.irr(0x20), false);
  advance(apic, clock, 1);
  assert.equal(apic.irr(0x20), true);
  assert.equal(apic.mmioRead(Mmio.TimerCurrentCount, 4), 0);
  assert.equal(apic.mmioRead(Mmio.TimerInitialCount, 4), 1000, 'TMICT keeps its value');
  assert.equal(apic.nextTimerDeadlineNs(), undefined);
  service(apic, 0x20);
  advance(apic, clock, 10_000);
  assert.equal(apic.irr(0x20), false, 'one-shot fires once');
});

test('L27 periodic, ÷2, TMICT 100000: fires every 200 µs; TMICT = 0 stops it', () => {
  const { apic, clock } = makeEnabledApic();
  apic.mmioWrite(Mmio.LvtTimer, 4, PERIODIC | 0x30);
  apic.mmioWrite(Mmio.TimerDivide, 4, DIVIDE_BY_2);
  apic.mmioWrite(Mmio.TimerInitialCount, 4, 100_000);
  for (const expiry of [200_000, 400_000, 600_000]) {
    assert.equal(apic.nextTimerDeadlineNs(), expiry);
    advance(apic, clock, expiry - 1 - clock.nowNs());
    assert.equal(apic.irr(0x30), false);
    advance(apic, clock, 1);
    assert.equal(apic.irr(0x30), true, `fires at ${expiry} ns`);
    service(apic, 0x30);
  }
  assert.equal(apic.mmioRead(Mmio.TimerCurrentCount, 4), 100_000, 'reloaded');
  apic.mmioWrite(Mmio.TimerInitialCount, 4, 0);
  assert.equal(apic.nextTimerDeadlineNs(), undefined);
  advance(apic, clock, 1_000_000);
  assert.equal(apic.irr(0x30), false);
});

test('L28 divide table: TDCR 0,1,2,3,8,9,0xA,0xB with TMICT 1 last 2,4,8,16,32,64,128,1 ns', () => {
  const { apic, clock } = makeEnabledApic();
  apic.mmioWrite(Mmio.LvtTimer, 4, ONE_SHOT | 0x40);
  const table: [number, number][] = [[0x0, 2], [0x1, 4], [0x2, 8], [0x3, 16], [0x8, 32], [0x9, 64], [0xa, 128], [0xb, 1]];
  for (const [divide, periodNs] of table) {
    apic.mmioWrite(Mmio.TimerDivide, 4, divide);
    apic.mmioWrite(Mmio.TimerInitialCount, 4, 1);
    assert.equal(apic.nextTimerDeadlineNs(), clock.nowNs() + periodNs, `TDCR 0x${divide.toString(16)}`);
    advance(apic, clock, periodNs);
    assert.equal(apic.irr(0x40), true);
    service(apic, 0x40);
  }
});

test('L29 masked periodic timer: the count runs with no interrupts; after unmasking the next expiry delivers', () => {
  const { apic, clock } = makeEnabledApic();
  startTimer(apic, MASKED | PERIODIC | 0x30, 300_000);
  assert.equal(apic.nextTimerDeadlineNs(), undefined, 'nothing to deliver while masked');
  advance(apic, clock, 100_000);
  assert.equal(apic.mmioRead(Mmio.TimerCurrentCount, 4), 200_000);
  advance(apic, clock, 250_000);
  assert.equal(apic.mmioRead(Mmio.TimerCurrentCount, 4), 250_000, 'reloaded at 300 µs and counting');
  assert.equal(apic.irr(0x30), false);
  apic.mmioWrite(Mmio.LvtTimer, 4, PERIODIC | 0x30);
  assert.equal(apic.counters().maskedLocalInterrupts, 1);
  assert.equal(apic.nextTimerDeadlineNs(), 600_000);
  advance(apic, clock, 250_000);
  assert.equal(apic.irr(0x30), true);
});

test('L30 §6.25 TSC-deadline: TMICT ignored, TMCCT 0; deadline fires; MSR reads 0 after; switching to one-shot zeroes TMICT', () => {
  const { apic, clock } = makeEnabledApic();
  clock.advance(5000);
  apic.mmioWrite(Mmio.TimerInitialCount, 4, 7777);
  apic.mmioWrite(Mmio.LvtTimer, 4, TSC_DEADLINE | 0x30);
  assert.equal(apic.mmioRead(Mmio.TimerInitialCount, 4), 0, 'entering TSC-deadline mode zeroes TMICT');
  apic.mmioWrite(Mmio.TimerInitialCount, 4, 1000);
  assert.equal(apic.mmioRead(Mmio.TimerInitialCount, 4), 0);
  assert.equal(apic.mmioRead(Mmio.TimerCurrentCount, 4), 0);
  assert.equal(apic.counters().ignoredWrites, 1);
  const deadline = apic.guestTsc() + 1000n;
  assert.equal(deadline, 6000n, 'TSC at 1 GHz counts ns');
  assert.equal(apic.writeMsr(MSR_TSC_DEADLINE, deadline), true);
  assert.equal(rdmsr(apic, MSR_TSC_DEADLINE), deadline);
  assert.equal(apic.nextTimerDeadlineNs(), 6000);
  advance(apic, clock, 999);
  assert.equal(apic.irr(0x30), false);
  advance(apic, clock, 1);
  assert.equal(apic.irr(0x30), true);
  assert.equal(rdmsr(apic, MSR_TSC_DEADLINE), 0n);
  assert.equal(apic.nextTimerDeadlineNs(), undefined);
  apic.writeMsr(MSR_TSC_DEADLINE, apic.guestTsc() + 5000n);
  apic.mmioWrite(Mmio.LvtTimer, 4, ONE_SHOT | 0x30);
  assert.equal(apic.nextTimerDeadlineNs(), undefined, 'leaving TSC-deadline mode stops the timer');
  assert.equal(apic.mmioRead(Mmio.TimerInitialCount, 4), 0);
  assert.equal(rdmsr(apic, MSR_TSC_DEADLINE), 0n);
});

test('TSC deadline: a past deadline fires at once, 0 disarms, a write outside TSC-deadline mode is ignored', () => {
  const { apic, clock } = makeEnabledApic({ tscHz: 2_000_000_000 });
  clock.advance(1000);
  assert.equal(apic.guestTsc(), 2000n);
  apic.writeMsr(MSR_TSC_DEADLINE, 10n);
  assert.equal(rdmsr(apic, MSR_TSC_DEADLINE), 0n, 'reads 0 outside TSC-deadline mode');
  assert.equal(apic.counters().ignoredWrites, 1);
  apic.mmioWrite(Mmio.LvtTimer, 4, TSC_DEADLINE | 0x31);
  apic.writeMsr(MSR_TSC_DEADLINE, 1999n);
  assert.equal(apic.irr(0x31), true);
  apic.writeMsr(MSR_TSC_DEADLINE, 3000n);
  assert.equal(apic.nextTimerDeadlineNs(), 1500, '3000 ticks at 2 GHz');
  apic.writeMsr(MSR_TSC_DEADLINE, 0n);
  assert.equal(apic.nextTimerDeadlineNs(), undefined);
});

test('without a TSC frequency there is no TSC-deadline mode: MSR 0x6E0 #GPs and LVT timer bit 18 is reserved', () => {
  const apic = LocalApic.create({ busIndex: 0, bsp: true, clock: new VirtualClock() });
  apic.mmioWrite(Mmio.SpuriousVector, 4, SVR_ENABLED);
  assert.equal(apic.readMsr(MSR_TSC_DEADLINE).ok, false);
  assert.equal(apic.writeMsr(MSR_TSC_DEADLINE, 1n), false);
  apic.mmioWrite(Mmio.LvtTimer, 4, TSC_DEADLINE | 0x30);
  assert.equal(apic.mmioRead(Mmio.LvtTimer, 4), 0x30);
  assert.equal(apic.counters().reservedBitWrites, 1);
});

test('the reserved timer mode 11 keeps the previous mode', () => {
  const { apic } = makeEnabledApic();
  apic.mmioWrite(Mmio.LvtTimer, 4, PERIODIC | 0x30);
  apic.mmioWrite(Mmio.LvtTimer, 4, PERIODIC | TSC_DEADLINE | 0x31);
  assert.equal(apic.mmioRead(Mmio.LvtTimer, 4), PERIODIC | 0x31);
  assert.equal(apic.counters().reservedBitWrites, 1);
});

test('L31 TDCR change mid-count rescales the remaining time by new/old divisor', () => {
  const { apic, clock } = makeEnabledApic();
  startTimer(apic, ONE_SHOT | 0x20, 1000);
  advance(apic, clock, 400);
  apic.mmioWrite(Mmio.TimerDivide, 4, DIVIDE_BY_2);
  assert.equal(apic.nextTimerDeadlineNs(), 400 + 1200);
  assert.equal(apic.mmioRead(Mmio.TimerCurrentCount, 4), 600, 'the count itself is unchanged');
  advance(apic, clock, 1199);
  assert.equal(apic.irr(0x20), false);
  advance(apic, clock, 1);
  assert.equal(apic.irr(0x20), true);
});

test('L32 software disable while the timer runs: LVT timer masked, no further timer interrupts', () => {
  const { apic, clock } = makeEnabledApic();
  startTimer(apic, PERIODIC | 0x30, 300_000);
  advance(apic, clock, 300_000);
  service(apic, 0x30);
  apic.mmioWrite(Mmio.SpuriousVector, 4, 0xff);
  assert.equal(apic.mmioRead(Mmio.LvtTimer, 4), MASKED | PERIODIC | 0x30);
  assert.equal(apic.nextTimerDeadlineNs(), undefined);
  advance(apic, clock, 3_000_000);
  apic.mmioWrite(Mmio.SpuriousVector, 4, SVR_ENABLED);
  assert.equal(apic.irr(0x30), false);
});

test('an expiry due but not yet processed is delivered before a software disable masks the timer (no interrupt lost)', () => {
  const { apic, clock } = makeEnabledApic();
  startTimer(apic, ONE_SHOT | 0x30, 1000);
  clock.advance(1500);
  apic.mmioWrite(Mmio.SpuriousVector, 4, 0xff);
  assert.equal(apic.irr(0x30), true);
});

test('an expiry due but not yet processed is delivered before TMICT restarts the count', () => {
  const { apic, clock } = makeEnabledApic();
  startTimer(apic, ONE_SHOT | 0x30, 1000);
  clock.advance(1500);
  apic.mmioWrite(Mmio.TimerInitialCount, 4, 1000);
  assert.equal(apic.irr(0x30), true);
  assert.equal(apic.nextTimerDeadlineNs(), 2500);
});

test('a TMICT write restarts the count from the new value', () => {
  const { apic, clock } = makeEnabledApic();
  startTimer(apic, ONE_SHOT | 0x30, 1000);
  advance(apic, clock, 500);
  apic.mmioWrite(Mmio.TimerInitialCount, 4, 1000);
  assert.equal(apic.nextTimerDeadlineNs(), 1500);
  assert.equal(apic.mmioRead(Mmio.TimerCurrentCount, 4), 1000);
});

test('§6.26 a periodic timer processed late delivers once, counts the missed ticks, and keeps its phase', () => {
  const { apic, clock } = makeEnabledApic();
  startTimer(apic, PERIODIC | 0x30, 200_000);
  clock.advance(1_050_000);
  assert.equal(apic.mmioRead(Mmio.TimerCurrentCount, 4), 150_000, 'TMCCT follows the hardware countdown before processing');
  apic.processTimerExpiry();
  assert.equal(apic.irr(0x30), true);
  assert.equal(apic.counters().coalescedTimerTicks, 4);
  service(apic, 0x30);
  assert.equal(apic.irr(0x30), false, 'no burst');
  assert.equal(apic.nextTimerDeadlineNs(), 1_200_000);
  assert.equal(apic.mmioRead(Mmio.TimerCurrentCount, 4), 150_000);
});

test('§6.27 a periodic period below the minimum (200 µs by default) is stretched to it; one-shot is not', () => {
  const { apic } = makeEnabledApic();
  startTimer(apic, PERIODIC | 0x30, 10);
  assert.equal(apic.nextTimerDeadlineNs(), 200_000);
  apic.mmioWrite(Mmio.LvtTimer, 4, ONE_SHOT | 0x30);
  apic.mmioWrite(Mmio.TimerInitialCount, 4, 10);
  assert.equal(apic.nextTimerDeadlineNs(), 10);
  const unclamped = makeEnabledApic({ minPeriodicTimerNs: 0 }).apic;
  startTimer(unclamped, PERIODIC | 0x30, 10);
  assert.equal(unclamped.nextTimerDeadlineNs(), 10);
});

test('one-shot → periodic keeps the running count and then reloads; periodic → one-shot stops after the next expiry', () => {
  const { apic, clock } = makeEnabledApic();
  startTimer(apic, ONE_SHOT | 0x30, 300_000);
  advance(apic, clock, 100_000);
  apic.mmioWrite(Mmio.LvtTimer, 4, PERIODIC | 0x30);
  assert.equal(apic.nextTimerDeadlineNs(), 300_000);
  advance(apic, clock, 200_000);
  service(apic, 0x30);
  assert.equal(apic.nextTimerDeadlineNs(), 600_000);
  apic.mmioWrite(Mmio.LvtTimer, 4, ONE_SHOT | 0x30);
  advance(apic, clock, 300_000);
  service(apic, 0x30);
  assert.equal(apic.nextTimerDeadlineNs(), undefined);
});

test('the APIC bus cycle scales the count: 10 ns cycles, ÷1, TMICT 100 → 1000 ns', () => {
  const { apic } = makeEnabledApic({ apicBusCycleNs: 10 });
  startTimer(apic, ONE_SHOT | 0x30, 100);
  assert.equal(apic.nextTimerDeadlineNs(), 1000);
});

test('a timer expiry whose vector is still in IRR coalesces there', () => {
  const { apic, clock } = makeEnabledApic();
  startTimer(apic, PERIODIC | 0x30, 200_000);
  advance(apic, clock, 200_000);
  advance(apic, clock, 200_000);
  assert.equal(apic.counters().coalescedInterrupts, 1);
});

test('x2APIC timer registers: TMICT, TMCCT and TDCR through MSRs 0x838, 0x839, 0x83E', () => {
  const { apic, clock } = makeApic();
  apic.mmioWrite(Mmio.SpuriousVector, 4, SVR_ENABLED);
  apic.writeMsr(0x1b, 0xfee00d00n);
  apic.writeMsr(0x83e, 0xbn);
  apic.writeMsr(0x832, 0x30n);
  apic.writeMsr(0x838, 1000n);
  advance(apic, clock, 250);
  assert.equal(rdmsr(apic, 0x839), 750n);
  assert.equal(apic.writeMsr(0x839, 0n), false, 'TMCCT is read-only');
});

test('a snapshot keeps the remaining count: restored on another clock, the timer resumes where it stood', () => {
  const source = makeEnabledApic();
  startTimer(source.apic, ONE_SHOT | 0x30, 1000);
  advance(source.apic, source.clock, 400);
  const bytes = source.apic.snapshot();
  const target = makeApic();
  target.clock.advance(10_000);
  target.apic.restore(bytes);
  assert.equal(target.apic.mmioRead(Mmio.TimerCurrentCount, 4), 600);
  assert.equal(target.apic.nextTimerDeadlineNs(), 10_600);
});
