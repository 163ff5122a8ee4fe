/**
 * The local APIC timer's arithmetic (SDM vol. 3 §11.5.4; x86-controllers.md §3.13): when it
 * expires, what the current-count register reads, and how register writes move the expiry.
 *
 * It keeps its state in the local APIC's state words (layout in local-apic-state.ts) and is
 * driven by the times its caller passes in, read from the injected clock: the model never starts
 * a real timer. It decides *when*; `LocalApic` decides what an expiry delivers. Every method
 * expects the local APIC's lock to be held.
 *
 * Time base: the counter decrements once per (APIC bus cycle × divisor) ns. The bus cycle is 1 ns
 * by default, as in KVM (KVM_CAP_X86_APIC_BUS_CYCLES_NS), so a count lasts count × divisor ns.
 */

import { highHalf, joinHalves, lowHalf } from '../../base/integers.ts';
import { TimerMode, lvtTimerMode, timerDivisor } from './apic-registers.ts';
import { Word, float64Slot } from './local-apic-state.ts';

const NS_PER_SECOND = 1_000_000_000n;

export class ApicTimer {
  private readonly expirySlot = float64Slot(Word.TimerExpiryNs);
  private readonly tscHzSlot = float64Slot(Word.TscHz);

  constructor(
    private readonly words: Int32Array,
    private readonly times: Float64Array,
  ) {}

  mode(): TimerMode {
    return lvtTimerMode(this.words[Word.LvtFirst] ?? 0);
  }

  isArmed(): boolean {
    return this.words[Word.TimerArmed] === 1;
  }

  /** The next expiry on the clock, or undefined when the timer is not counting. */
  expiryNs(): number | undefined {
    return this.isArmed() ? (this.times[this.expirySlot] ?? 0) : undefined;
  }

  /** A TMICT write: counting restarts from the new initial count; 0 stops the timer (SDM §11.5.4). */
  restart(nowNs: number): void {
    const initialCount = this.initialCount();
    if (initialCount === 0) this.disarm();
    else this.arm(nowNs + this.periodNs(initialCount));
  }

  /**
   * Consumes the expiries due at `nowNs` and returns how many there were (0 when none). A one-shot
   * or TSC-deadline timer stops; a periodic one reloads and keeps its phase, so however late the
   * clock is processed, the counter reads what the hardware counter would (it reloads and goes on
   * counting, SDM §11.5.4). The caller delivers one interrupt for any number of expiries: no
   * catch-up burst (x86-controllers.md §6.26).
   */
  collectExpiries(nowNs: number): number {
    const expiry = this.times[this.expirySlot] ?? 0;
    if (!this.isArmed() || nowNs < expiry) return 0;
    const mode = this.mode();
    if (mode !== TimerMode.Periodic) {
      this.disarm();
      // A fired deadline reads 0 (SDM §11.5.4.1).
      if (mode === TimerMode.TscDeadline) this.setTscDeadline(0n);
      return 1;
    }
    const period = this.periodNs(this.initialCount());
    const expiries = Math.floor((nowNs - expiry) / period) + 1;
    this.times[this.expirySlot] = expiry + expiries * period;
    return expiries;
  }

  /** TMCCT: whole counts left until the next expiry; 0 when stopped, after a one-shot expiry, and in TSC-deadline mode. */
  currentCount(nowNs: number): number {
    if (!this.isArmed() || this.mode() === TimerMode.TscDeadline) return 0;
    const expiry = this.times[this.expirySlot] ?? 0;
    let remainingNs = expiry - nowNs;
    if (remainingNs <= 0) {
      if (this.mode() !== TimerMode.Periodic) return 0;
      // Periodic expiries not yet collected: the counter has reloaded and is part-way down again.
      const period = this.periodNs(this.initialCount());
      remainingNs = period - ((nowNs - expiry) % period);
    }
    return Math.min(this.initialCount(), Math.floor(remainingNs / this.nsPerCount(this.divideConfiguration())));
  }

  /**
   * A TDCR write while counting: the time left is stretched or shrunk by new/old divisor, as KVM
   * does (x86-controllers.md §3.13, L31). Expiries due must have been collected first.
   */
  changeDivisor(nowNs: number, oldDivideConfiguration: number): void {
    if (!this.isArmed() || this.mode() === TimerMode.TscDeadline) return;
    const ratio = timerDivisor(this.divideConfiguration()) / timerDivisor(oldDivideConfiguration);
    const remainingNs = (this.times[this.expirySlot] ?? 0) - nowNs;
    this.times[this.expirySlot] = nowNs + remainingNs * ratio;
  }

  /**
   * An LVT timer write changed the mode. Into or out of TSC-deadline mode the timer stops and
   * TMICT and the deadline are zeroed; one-shot ↔ periodic keeps the running count (KVM
   * `apic_update_lvtt`; x86-controllers.md §3.13, §6.25).
   */
  changeMode(oldMode: TimerMode, newMode: TimerMode): void {
    if (oldMode === newMode) return;
    if (oldMode !== TimerMode.TscDeadline && newMode !== TimerMode.TscDeadline) return;
    this.disarm();
    this.words[Word.TimerInitialCount] = 0;
    this.setTscDeadline(0n);
  }

  /** IA32_TSC_DEADLINE write in TSC-deadline mode: 0 disarms, a past deadline is due at once (SDM §11.5.4.1). */
  writeTscDeadline(deadline: bigint): void {
    this.setTscDeadline(deadline);
    if (deadline === 0n) this.disarm();
    else this.arm(this.tscToNs(deadline));
  }

  tscDeadline(): bigint {
    return joinHalves(this.words[Word.TscDeadlineLow] ?? 0, this.words[Word.TscDeadlineHigh] ?? 0);
  }

  /** The guest TSC at `nowNs`: the clock scaled to the TSC frequency (TSC 0 at clock 0). */
  tscAt(nowNs: number): bigint {
    return (BigInt(Math.floor(nowNs)) * BigInt(this.times[this.tscHzSlot] ?? 0)) / NS_PER_SECOND;
  }

  /** Stops counting (RESET, INIT, hardware disable). */
  disarm(): void {
    this.words[Word.TimerArmed] = 0;
  }

  private arm(expiryNs: number): void {
    this.times[this.expirySlot] = expiryNs;
    this.words[Word.TimerArmed] = 1;
  }

  private setTscDeadline(deadline: bigint): void {
    this.words[Word.TscDeadlineLow] = lowHalf(deadline);
    this.words[Word.TscDeadlineHigh] = highHalf(deadline);
  }

  /** Earliest clock time at which the guest TSC reaches `tsc` (rounded up to a whole ns). */
  private tscToNs(tsc: bigint): number {
    const tscHz = BigInt(this.times[this.tscHzSlot] ?? 0);
    return Number((tsc * NS_PER_SECOND + tscHz - 1n) / tscHz);
  }

  private initialCount(): number {
    return (this.words[Word.TimerInitialCount] ?? 0) >>> 0;
  }

  private divideConfiguration(): number {
    return this.words[Word.TimerDivide] ?? 0;
  }

  private nsPerCount(divideConfiguration: number): number {
    return timerDivisor(divideConfiguration) * (this.words[Word.ApicBusCycleNs] ?? 1);
  }

  /**
   * Length of a count of `initialCount`. A periodic timer is held to the configured minimum
   * period (KVM `min_timer_period_us`, 200 µs by default; x86-controllers.md §6.27): a host
   * cannot honour tiny periods, and the guest sees only a slower tick.
   */
  private periodNs(initialCount: number): number {
    const periodNs = initialCount * this.nsPerCount(this.divideConfiguration());
    return this.mode() === TimerMode.Periodic ? Math.max(periodNs, this.words[Word.MinPeriodicNs] ?? 0) : periodNs;
  }
}
