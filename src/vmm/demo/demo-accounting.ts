/**
 * The demo's books: what the guest counted (its status block), what the devices and the chip
 * counted on their own (the machine report's counters), and the equations between them that say
 * every interrupt is accounted for — raised, then handled once, or merged by a rule the hardware
 * has (a periodic timer expiry processed late: `coalescedTimerTicks`; a fixed vector already
 * requested: `coalescedInterrupts`, SDM vol. 3 §11.8.4).
 *
 * Each source's row is accounted when every equation about it holds; the run is accounted when
 * every row is and the guest itself ended saying its counts matched (isa-debug-exit 0).
 */

import { PCI_TEST_DEVICE_COUNTER_NAMES, type PciTestDeviceCounterName } from '../devices/pci/pci-test-device.ts';
import type { MachineEnd } from '../machine.ts';
import { DEMO_EXIT_UNHANDLED, DemoPhase, DemoVector, type DemoSource } from './demo-layout.ts';
import type { DemoStatus } from './demo-status.ts';

/** The machine report's counters, by section ('chip', 'lapic0', a device's name...). */
export type ReportCounters = Readonly<Record<string, Readonly<Record<string, number>>>>;

/** What a check is about: a source, or the guest's own verdict. */
export type DemoCheckSubject = DemoSource | 'guest';

export interface DemoCheck {
  readonly subjects: readonly DemoCheckSubject[];
  readonly description: string;
  readonly ok: boolean;
}

export interface DemoSourceRow {
  readonly source: DemoSource;
  /** How its interrupts travel, for a person. */
  readonly path: string;
  /** Interrupts the source raised, by the counts of whoever raised them. */
  readonly raised: number;
  /** Handler runs in the guest. */
  readonly handled: number;
  /** Raised interrupts merged into another by a hardware rule. */
  readonly merged: number;
  /** Handler runs per second of the guest's running time. */
  readonly perSecond: number;
  readonly accounted: boolean;
}

export interface DemoAccounting {
  readonly rows: readonly DemoSourceRow[];
  readonly checks: readonly DemoCheck[];
  /** Ticks on which vCPU 0 sent no IPI, or raised no MSI-X, because the previous one was still in flight. */
  readonly skipped: { readonly ipi: number; readonly msix: number };
  readonly runningSeconds: number;
  /** The guest got past its set-up and ran its sources (else its output says what stopped it). */
  readonly sourcesRan: boolean;
  /** How the run ended, in the guest's terms. */
  readonly guestEnd: string;
  readonly accounted: boolean;
}

/** The guest's vCPUs: the timer is vCPU 0's; the other sources go to vCPU 1. */
const BSP_LAPIC = 'lapic0';
const AP_LAPIC = 'lapic1';
const CHIP = 'chip';
/** The level function's INTA# is the only pin the guest unmasks. */
const IOAPIC = 'ioapic';

/** The sum of `name` over every PCI test function's counters (the sections that have all of them). */
function pciTestDeviceTotal(counters: ReportCounters, name: PciTestDeviceCounterName): number | undefined {
  const sections = Object.values(counters).filter((section) => PCI_TEST_DEVICE_COUNTER_NAMES.every((counter) => counter in section));
  return sections.length === 0 ? undefined : sections.reduce((sum, section) => sum + (section[name] ?? 0), 0);
}

function counter(counters: ReportCounters, section: string, name: string): number | undefined {
  return counters[section]?.[name];
}

/** `a == b`, where a count the report lacks never equals anything. */
function same(...values: readonly (number | undefined)[]): boolean {
  const [first] = values;
  return first !== undefined && values.every((value) => value === first);
}

function show(value: number | undefined): string {
  return value === undefined ? 'missing' : String(value);
}

/** How the run ended, in the guest's terms (guests/demo.c: 0 matched, DEMO_EXIT_UNHANDLED a count did not; other values are a set-up check or a fault its output names). */
function describeGuestEnd(end: MachineEnd): string {
  if (end.kind !== 'guest-exit') return end.kind;
  if (end.value === DEMO_EXIT_UNHANDLED) return `value ${end.value}: a count differed after the drain`;
  return `value ${end.value}`;
}

export interface DemoAccountingInput {
  /** The status block after the run. */
  readonly status: DemoStatus;
  readonly counters: ReportCounters;
  readonly end: MachineEnd;
}

export function accountDemo(input: DemoAccountingInput): DemoAccounting {
  const { status, counters, end } = input;
  const device = (name: PciTestDeviceCounterName): number | undefined => pciTestDeviceTotal(counters, name);
  const timerMergedLate = counter(counters, BSP_LAPIC, 'coalescedTimerTicks');
  const timerMergedRequested = counter(counters, BSP_LAPIC, 'coalescedInterrupts');
  const apMerged = counter(counters, AP_LAPIC, 'coalescedInterrupts');
  const levelRuns = status.levelHandled + status.levelIdle;
  const timerRuns = status.timerTicks + status.timerLateTicks;
  const timerMerged = (timerMergedLate ?? 0) + (timerMergedRequested ?? 0);

  const checks: DemoCheck[] = [
    {
      subjects: ['guest'],
      description: `the guest finished and said every count matched (isa-debug-exit 0; ended: ${describeGuestEnd(end)})`,
      ok: end.kind === 'guest-exit' && end.value === 0 && status.phase === DemoPhase.Done,
    },
    { subjects: ['timer'], description: `vCPU 0's timer ticked (${status.timerTicks} ticks)`, ok: status.timerTicks > 0 },
    {
      subjects: ['timer'],
      description: `vCPU 0's LAPIC counted what it merged (late ticks ${show(timerMergedLate)}, already requested ${show(timerMergedRequested)})`,
      ok: timerMergedLate !== undefined && timerMergedRequested !== undefined,
    },
    { subjects: ['ipi'], description: `each IPI sent was handled once (${status.ipisSent} sent, ${status.ipisHandled} handled)`, ok: status.ipisSent > 0 && status.ipisSent === status.ipisHandled },
    { subjects: ['ipi'], description: `every tick sent an IPI or skipped one (${status.ipisSent} + ${status.ipisSkipped} = ${status.timerTicks} ticks)`, ok: status.ipisSent + status.ipisSkipped === status.timerTicks },
    {
      subjects: ['ipi', 'msix'],
      description: `vCPU 1's LAPIC merged no interrupt (coalescedInterrupts ${show(apMerged)}): one IPI and one MSI-X message in flight at a time`,
      ok: apMerged === 0,
    },
    {
      subjects: ['level'],
      description: `each tick queued a unit, and the device counted it (${status.levelQueued} queued by the guest, ${show(device('levelUnitsQueued'))} by the device, ${status.timerTicks} ticks)`,
      ok: status.levelQueued > 0 && same(status.levelQueued, device('levelUnitsQueued'), status.timerTicks) && device('levelUnitsRefused') === 0,
    },
    {
      subjects: ['level'],
      description: `each unit was completed by one handler run (${status.levelHandled} runs with work, ${show(device('levelUnitsCompleted'))} completed by the device)`,
      ok: same(status.levelQueued, status.levelHandled, device('levelUnitsCompleted')) && device('levelAcksWithoutWork') === 0,
    },
    {
      subjects: ['level'],
      description: `each trigger of INTA# was one IOAPIC message and one handler run (${show(device('levelTriggers'))} triggers, ${show(counter(counters, IOAPIC, 'messagesAccepted'))} messages, ${levelRuns} runs)`,
      ok: same(device('levelTriggers'), counter(counters, IOAPIC, 'messagesAccepted'), levelRuns),
    },
    {
      subjects: ['level'],
      description: `each run's EOI resampled the pin (${show(counter(counters, IOAPIC, 'resampleSignals'))} resamples by the IOAPIC)`,
      ok: same(counter(counters, IOAPIC, 'resampleSignals'), levelRuns),
    },
    {
      subjects: ['level'],
      description: `no run found no work (${status.levelIdle}), or the local APIC ends interrupts at delivery (${status.eoiAtDelivery ? 'it does' : 'it does not'})`,
      ok: status.levelIdle === 0 || status.eoiAtDelivery,
    },
    {
      subjects: ['msix'],
      description: `each raise reached the device and the chip sent it (${status.msixRaised} asked, ${show(device('msixRaises'))} raised, ${show(counter(counters, CHIP, 'msisSent'))} messages sent)`,
      ok: status.msixRaised > 0 && same(status.msixRaised, device('msixRaises'), counter(counters, CHIP, 'msisSent')),
    },
    { subjects: ['msix'], description: `each MSI-X message was handled once (${status.msixHandled} handled)`, ok: status.msixRaised === status.msixHandled },
    { subjects: ['msix'], description: `every tick raised one or skipped one (${status.msixRaised} + ${status.msixSkipped} = ${status.timerTicks} ticks)`, ok: status.msixRaised + status.msixSkipped === status.timerTicks },
  ];

  const runningSeconds = status.runningUs / 1e6;
  const perSecond = (handled: number): number => (runningSeconds > 0 ? handled / runningSeconds : 0);
  const accounted = (source: DemoSource): boolean => checks.every((check) => check.ok || !check.subjects.includes(source));
  const rowOf = (source: DemoSource, path: string, raised: number, handled: number, merged: number): DemoSourceRow => ({
    source,
    path,
    raised,
    handled,
    merged,
    perSecond: perSecond(handled),
    accounted: accounted(source),
  });
  const hex = (vector: number): string => `0x${vector.toString(16)}`;
  const rows: readonly DemoSourceRow[] = [
    rowOf('timer', `vCPU 0's LAPIC timer, periodic ${status.timerPeriodUs} µs, vector ${hex(DemoVector.Timer)}`, timerRuns + timerMerged, timerRuns, timerMerged),
    rowOf('ipi', `fixed IPI vCPU 0 → vCPU 1, vector ${hex(DemoVector.Ipi)}`, status.ipisSent, status.ipisHandled, 0),
    rowOf('level', `PCI INTA# → IOAPIC GSI ${status.levelGsi} level, resampled → vCPU 1, vector ${hex(DemoVector.Level)}`, device('levelTriggers') ?? 0, levelRuns, 0),
    rowOf('msix', `PCI MSI-X entry 0 → vCPU 1, vector ${hex(DemoVector.Msix)}`, device('msixRaises') ?? 0, status.msixHandled, 0),
  ];
  return {
    rows,
    checks,
    skipped: { ipi: status.ipisSkipped, msix: status.msixSkipped },
    runningSeconds,
    sourcesRan: status.started && status.phase !== DemoPhase.Booting,
    guestEnd: describeGuestEnd(end),
    accounted: checks.every((check) => check.ok),
  };
}
