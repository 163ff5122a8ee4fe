/**
 * Reads the demo guest's status block (demo-layout.ts) out of guest RAM while the guest runs.
 *
 * Guest RAM is a SharedArrayBuffer the vCPUs write behind JavaScript's back; each word is read
 * with `Atomics.load`, so no read is torn or cached. The words are read one by one, not as one
 * snapshot: a sample may show a handler's count one ahead of another's, which rates over 250 ms
 * do not notice, and the final read comes after every vCPU has stopped.
 */

import { ErrorCode, IrqChipError } from '../../base/errors.ts';
import { DEMO_STATUS_ADDRESS, DEMO_STATUS_MAGIC, DEMO_STATUS_VERSION, DEMO_WORDS, DemoPhase, DemoWord } from './demo-layout.ts';

/** What the guest has counted so far. */
export interface DemoStatus {
  /** The guest has claimed the block (its magic and version are there). */
  readonly started: boolean;
  readonly phase: DemoPhase;
  readonly timerPeriodUs: number;
  /** How long the sources ran, by the guest's TSC (0 until they stop). */
  readonly runningUs: number;
  readonly timerTicks: number;
  readonly timerLateTicks: number;
  readonly ipisSent: number;
  readonly ipisSkipped: number;
  readonly ipisHandled: number;
  readonly levelQueued: number;
  readonly levelHandled: number;
  readonly levelIdle: number;
  readonly msixRaised: number;
  readonly msixSkipped: number;
  readonly msixHandled: number;
  /** The local APIC ended the level interrupt before its handler ran (the host's APIC, not the SDM's). */
  readonly eoiAtDelivery: boolean;
  /** The GSI the level function's INTA# is wired to, as firmware told the guest. */
  readonly levelGsi: number;
}

const PHASES: ReadonlySet<number> = new Set(Object.values(DemoPhase));

export class DemoStatusReader {
  private readonly words: Uint32Array;

  /** `guestMemory`: guest RAM from guest-physical 0, over a SharedArrayBuffer. */
  constructor(guestMemory: Uint8Array) {
    if (!(guestMemory.buffer instanceof SharedArrayBuffer)) throw new IrqChipError(ErrorCode.EINVAL, 'guest memory must be a SharedArrayBuffer view');
    const end = DEMO_STATUS_ADDRESS + DEMO_WORDS * Uint32Array.BYTES_PER_ELEMENT;
    if (guestMemory.byteLength < end) throw new IrqChipError(ErrorCode.EINVAL, `guest memory of ${guestMemory.byteLength} bytes does not hold the demo status block (up to 0x${end.toString(16)})`);
    this.words = new Uint32Array(guestMemory.buffer, guestMemory.byteOffset + DEMO_STATUS_ADDRESS, DEMO_WORDS);
  }

  read(): DemoStatus {
    const word = (index: number): number => Atomics.load(this.words, index);
    const started = word(DemoWord.Magic) === DEMO_STATUS_MAGIC && word(DemoWord.Version) === DEMO_STATUS_VERSION;
    const phase = word(DemoWord.Phase);
    return {
      started,
      phase: started && PHASES.has(phase) ? (phase as DemoPhase) : DemoPhase.Booting,
      timerPeriodUs: word(DemoWord.TimerPeriodUs),
      runningUs: word(DemoWord.RunningUs),
      timerTicks: word(DemoWord.TimerTicks),
      timerLateTicks: word(DemoWord.TimerLateTicks),
      ipisSent: word(DemoWord.IpisSent),
      ipisSkipped: word(DemoWord.IpisSkipped),
      ipisHandled: word(DemoWord.IpisHandled),
      levelQueued: word(DemoWord.LevelQueued),
      levelHandled: word(DemoWord.LevelHandled),
      levelIdle: word(DemoWord.LevelIdle),
      msixRaised: word(DemoWord.MsixRaised),
      msixSkipped: word(DemoWord.MsixSkipped),
      msixHandled: word(DemoWord.MsixHandled),
      eoiAtDelivery: word(DemoWord.EoiAtDelivery) !== 0,
      levelGsi: word(DemoWord.LevelGsi),
    };
  }
}
