/**
 * The demo machine's books: from what each party counted on its own (the devices what they
 * raised, the guest what its handlers took, the controllers what their rules coalesced), one row
 * per interrupt source, the cross-checks between independent counts, and whether every interrupt
 * is accounted for. `formatMachineReport` renders it for a person.
 */

import { formatTable } from '../base/text-table.ts';
import type { ChipCounterName } from '../chip/userspace-irq-chip.ts';
import type { IoapicCounter } from '../x86/ioapic/ioapic.ts';
import type { LocalApic } from '../x86/lapic/local-apic.ts';
import type { PicCounterName } from '../x86/pic/pic.ts';
import {
  APPLICATION_PROCESSORS,
  BSP,
  DEVICE_VCPU,
  IPI_VCPU,
  NIC_GSI,
  PIC_SPURIOUS_IRQ,
  TICKS_PER_IPI,
  UART_IRQ,
  Vector,
  type DevicesReport,
  type VcpuReport,
} from './machine-layout.ts';

type LocalApicCounters = ReturnType<LocalApic['counters']>;

/** Everything the VMM collected after the run. */
export interface MachineLedger {
  readonly durationMs: number;
  /** The timer period the guest programmed, and the one the LAPIC ran (its minimum if the guest's was shorter). */
  readonly timerPeriodRequestedNs: number;
  readonly timerPeriodNs: number;
  /** Timer periods that elapsed and were processed, from the LAPIC's own phase: (last deadline − first) / period. */
  readonly timerPeriodsElapsed: number;
  readonly msiGsi: number;
  readonly vcpus: readonly VcpuReport[];
  readonly devices: DevicesReport;
  readonly chip: Readonly<Record<ChipCounterName, number>>;
  readonly pic: Readonly<Record<PicCounterName, number>>;
  readonly ioapic: Readonly<Record<IoapicCounter, number>>;
  readonly localApics: readonly LocalApicCounters[];
  readonly nicCompleted: number;
  readonly nicPending: number;
  /** Interrupts still pending in a controller after the vCPUs stopped (each should be none). */
  readonly leftPending: readonly string[];
}

export interface CoalescedCount {
  readonly rule: string;
  readonly count: number;
}

export interface SourceSummary {
  readonly source: string;
  readonly path: string;
  readonly raised: number;
  /** Interrupts the guest's handlers took, per vCPU. */
  readonly delivered: readonly { readonly vcpu: number; readonly count: number }[];
  /** Interrupts merged into another by a rule the hardware has, per rule. */
  readonly coalesced: readonly CoalescedCount[];
  /** Interrupts that reached nobody (none is the point). */
  readonly lost: number;
  /** Level sources: resample events the chip signalled at the guest's EOIs, and how many reads the device needed. */
  readonly resamples: { readonly signalled: number; readonly readByDevice: number } | undefined;
  /** raised = delivered + coalesced, and none lost. */
  readonly balanced: boolean;
}

export interface Check {
  readonly description: string;
  readonly ok: boolean;
}

export interface MachineReport {
  /** The raw counts the report was made from. */
  readonly ledger: MachineLedger;
  readonly durationMs: number;
  readonly timerPeriodNs: number;
  readonly sources: readonly SourceSummary[];
  readonly vcpus: readonly { readonly vcpu: number; readonly interrupts: number; readonly halts: number }[];
  readonly checks: readonly Check[];
  readonly accounted: boolean;
}

/** Coalescing rules, as the summary names them. */
export const Rule = {
  LateTimerExpiries: 'late expiries merged',
  IrrAlreadySet: 'vector already in IRR',
  SipiIgnored: 'SIPI ignored or replaced',
  InitPending: 'INIT already pending',
  Eventfd: 'eventfd merged signals',
  PicIrrAlreadySet: '8259A IRR already set',
  LineHeldHigh: 'line already high',
  RemoteIrr: 'line asserted, awaiting EOI',
} as const;

const RULE_EXPLANATIONS: Readonly<Record<string, string>> = {
  [Rule.LateTimerExpiries]: 'periodic expiries processed late give one interrupt (SDM §11.5.4; no catch-up burst)',
  [Rule.IrrAlreadySet]: "a fixed interrupt whose vector is already requested in the target's IRR (SDM §11.8.4)",
  [Rule.SipiIgnored]: 'a SIPI to a processor not waiting for one, or replaced by a later one, is ignored (SDM §9.4.4)',
  [Rule.InitPending]: 'an INIT while one is pending',
  [Rule.Eventfd]: "signals made before the chip read the event count once (eventfd's counter)",
  [Rule.PicIrrAlreadySet]: "an edge while the 8259A's request for that IRQ still waits (8259A datasheet)",
  [Rule.LineHeldHigh]: 'a pulse on a line another source holds high is no edge',
  [Rule.RemoteIrr]: 'a level assertion while the IOAPIC awaits the EOI of the previous one (82093AA remote IRR)',
};

const hex = (value: number): string => `0x${value.toString(16).toUpperCase()}`;
const sum = (values: readonly number[]): number => values.reduce((total, value) => total + value, 0);

export function summariseMachine(ledger: MachineLedger): MachineReport {
  const { devices, chip, pic, ioapic, localApics } = ledger;
  const handled = (vcpu: number, vector: number): number => ledger.vcpus.find((report) => report.vcpuId === vcpu)?.handled[vector] ?? 0;
  const apic = (vcpu: number): LocalApicCounters | undefined => localApics[vcpu];
  const bsp = ledger.vcpus.find((report) => report.vcpuId === BSP);
  const uartVector = Vector.PicMasterBase + UART_IRQ;
  const nicDelivered = handled(DEVICE_VCPU, Vector.Nic);

  const sources: SourceSummary[] = [
    source({
      source: 'LAPIC timer',
      path: `vCPU 0's LVT timer, periodic ${timerPeriodText(ledger)}, host clock → vector ${hex(Vector.Timer)}`,
      raised: ledger.timerPeriodsElapsed,
      delivered: [{ vcpu: BSP, count: handled(BSP, Vector.Timer) }],
      coalesced: [
        { rule: Rule.LateTimerExpiries, count: apic(BSP)?.coalescedTimerTicks ?? 0 },
        // vCPU 0 takes no other fixed interrupt, so its LAPIC's IRR coalescing is the timer's.
        { rule: Rule.IrrAlreadySet, count: apic(BSP)?.coalescedInterrupts ?? 0 },
      ],
    }),
    source({
      source: 'IPI',
      path: `vCPU 0's ICR every ${TICKS_PER_IPI} timer ticks, fixed, physical → APIC bus → vCPU 2, vector ${hex(Vector.Ipi)}`,
      raised: bsp?.ipisSent ?? 0,
      delivered: [{ vcpu: IPI_VCPU, count: handled(IPI_VCPU, Vector.Ipi) }],
      // vCPU 2 takes only these.
      coalesced: [{ rule: Rule.IrrAlreadySet, count: apic(IPI_VCPU)?.coalescedInterrupts ?? 0 }],
    }),
    source({
      source: 'start-up IPIs',
      path: "vCPU 0's ICR: INIT, SIPI, SIPI to each AP → vCPUs 1 and 2 start",
      raised: bsp?.startupIpisSent ?? 0,
      delivered: APPLICATION_PROCESSORS.map((vcpu) => {
        const report = ledger.vcpus.find((candidate) => candidate.vcpuId === vcpu);
        return { vcpu, count: (report?.initsApplied ?? 0) + (report?.sipisApplied ?? 0) };
      }),
      coalesced: [
        { rule: Rule.SipiIgnored, count: sum(APPLICATION_PROCESSORS.map((vcpu) => apic(vcpu)?.discardedSipis ?? 0)) },
        { rule: Rule.InitPending, count: sum(APPLICATION_PROCESSORS.map((vcpu) => apic(vcpu)?.coalescedInits ?? 0)) },
      ],
    }),
    source({
      source: 'UART (ISA)',
      path: `IrqEdgeEvent → GSI ${UART_IRQ} → 8259A IRQ ${UART_IRQ} → vCPU 0's LINT0 (ExtINT), vector ${hex(uartVector)}; EOI to port 0x20`,
      raised: devices.uartPulses,
      delivered: [{ vcpu: BSP, count: handled(BSP, uartVector) }],
      coalesced: [
        // The only edge event: every edge service is the UART's.
        { rule: Rule.Eventfd, count: devices.uartPulses - chip.edgeEventsServiced },
        { rule: Rule.PicIrrAlreadySet, count: pic.coalescedRequests },
        { rule: Rule.LineHeldHigh, count: chip.coalescedPulses },
      ],
    }),
    source({
      source: 'NIC (PCI INTx)',
      path: `IrqLevelEvent → GSI ${NIC_GSI} → IOAPIC pin ${NIC_GSI}, level → vCPU 1, vector ${hex(Vector.Nic)}; EOI → resample`,
      raised: devices.nicTriggers,
      delivered: [{ vcpu: DEVICE_VCPU, count: nicDelivered }],
      coalesced: [
        // The only level event, and the only IOAPIC pin that can coalesce (the UART's pin is masked).
        { rule: Rule.Eventfd, count: devices.nicTriggers - chip.levelEventsServiced },
        { rule: Rule.RemoteIrr, count: ioapic.coalescedAsserts },
      ],
      resamples: { signalled: chip.resamplesSignalled, readByDevice: devices.nicResamplesSeen },
    }),
    source({
      source: 'MSI',
      path: `serviceIrq(GSI ${ledger.msiGsi}) on the device thread → MSI route → vCPU 1, vector ${hex(Vector.Msi)}`,
      raised: devices.msiSent,
      delivered: [{ vcpu: DEVICE_VCPU, count: handled(DEVICE_VCPU, Vector.Msi) }],
      coalesced: [{ rule: Rule.IrrAlreadySet, count: devices.msiCoalesced }],
      lost: devices.msiRejected,
    }),
  ];

  const expectedVectors = new Map<number, readonly number[]>([
    [BSP, [Vector.Timer, uartVector, Vector.PicMasterBase + PIC_SPURIOUS_IRQ]],
    [DEVICE_VCPU, [Vector.Nic, Vector.Msi]],
    [IPI_VCPU, [Vector.Ipi]],
  ]);
  const stray = ledger.vcpus.flatMap((report) =>
    Object.entries(report.handled)
      .filter(([vector]) => !(expectedVectors.get(report.vcpuId) ?? []).includes(Number(vector)))
      .map(([vector, count]) => `vCPU ${report.vcpuId} took vector ${hex(Number(vector))} ${count}×`),
  );
  const spurious = handled(BSP, Vector.PicMasterBase + PIC_SPURIOUS_IRQ);
  const checks: Check[] = [
    {
      description: `NIC: ${devices.nicPackets} packets received, ${ledger.nicCompleted} completed by the guest, ${ledger.nicPending} left`,
      ok: devices.nicPackets === ledger.nicCompleted && ledger.nicPending === 0,
    },
    {
      description: `NIC: the chip signalled a resample at each of the ${nicDelivered} EOIs (${chip.resamplesSignalled})`,
      ok: chip.resamplesSignalled === nicDelivered,
    },
    {
      description: `MSI: vCPU 1's LAPIC counted ${apic(DEVICE_VCPU)?.coalescedInterrupts ?? 0} coalesced, as serviceIrq's results said (${devices.msiCoalesced}); accepted ${devices.msiAccepted} = handled`,
      ok: apic(DEVICE_VCPU)?.coalescedInterrupts === devices.msiCoalesced && devices.msiAccepted === handled(DEVICE_VCPU, Vector.Msi),
    },
    { description: `no interrupt on a vector or vCPU it was not routed to${stray.length === 0 ? '' : `: ${stray.join(', ')}`}`, ok: stray.length === 0 },
    {
      description: `nothing left pending in the 8259A, the IOAPIC or a local APIC${ledger.leftPending.length === 0 ? '' : `: ${ledger.leftPending.join(', ')}`}`,
      ok: ledger.leftPending.length === 0,
    },
    { description: `no deferred IOAPIC assertion dropped (${chip.delayedEvents} deferred and retried)`, ok: chip.droppedDelayedEvents === 0 },
    { description: `spurious 8259A interrupts: ${spurious}`, ok: true },
  ];
  const vcpus = ledger.vcpus
    .map((report) => ({ vcpu: report.vcpuId, interrupts: sum(Object.values(report.handled)), halts: report.halts }))
    .sort((left, right) => left.vcpu - right.vcpu);
  return {
    ledger,
    durationMs: ledger.durationMs,
    timerPeriodNs: ledger.timerPeriodNs,
    sources,
    vcpus,
    checks,
    accounted: sources.every((row) => row.balanced) && checks.every((check) => check.ok),
  };
}

function timerPeriodText(ledger: MachineLedger): string {
  const period = `${ledger.timerPeriodNs / 1000} µs`;
  return ledger.timerPeriodNs === ledger.timerPeriodRequestedNs ? period : `${period} (the LAPIC's minimum; the guest asked ${ledger.timerPeriodRequestedNs / 1000} µs)`;
}

function source(row: Omit<SourceSummary, 'balanced' | 'lost' | 'resamples'> & { lost?: number; resamples?: SourceSummary['resamples'] }): SourceSummary {
  const lost = row.lost ?? 0;
  const delivered = sum(row.delivered.map((entry) => entry.count));
  const coalesced = sum(row.coalesced.map((entry) => entry.count));
  return { ...row, lost, resamples: row.resamples, balanced: lost === 0 && row.raised === delivered + coalesced };
}

// ---------------------------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------------------------

const SOURCE_COLUMN = 16;

/** The second line of a source's detail: which rules coalesced its interrupts, and its resamples. */
function detail(row: SourceSummary): string | undefined {
  const parts = row.coalesced.filter((entry) => entry.count !== 0).map((entry) => `${entry.count} ${entry.rule}`);
  if (row.resamples !== undefined) parts.push(`resample events: ${row.resamples.signalled} signalled, the device read them in ${row.resamples.readByDevice}`);
  return parts.length === 0 ? undefined : parts.join('; ');
}

export function formatMachineReport(report: MachineReport): string {
  const rows = report.sources.map((row) => ({
    source: row.source,
    raised: row.raised,
    delivered: row.delivered.map((entry) => `vCPU ${entry.vcpu}: ${entry.count}`).join(', '),
    coalesced: sum(row.coalesced.map((entry) => entry.count)),
    lost: row.lost,
    resamples: row.resamples?.signalled ?? '-',
    'accounted for': row.balanced ? 'yes' : 'NO',
  }));
  const paths = report.sources.flatMap((row) => {
    const more = detail(row);
    return [`  ${row.source.padEnd(SOURCE_COLUMN)}${row.path}`, ...(more === undefined ? [] : [`  ${' '.repeat(SOURCE_COLUMN)}${more}`])];
  });
  const rulesUsed = new Set(report.sources.flatMap((row) => row.coalesced.filter((entry) => entry.count !== 0).map((entry) => entry.rule)));
  const seconds = (report.durationMs / 1000).toFixed(2);
  return [
    `A simulated PC on UserspaceIrqChip, devices running for ${seconds} s of host time. Three vCPUs (SimVcpu) run on`,
    "worker threads, the devices on another; this thread services the chip's events. vCPU 0's guest programmed the",
    '8259A, the IOAPIC and the local APICs through the buses, started vCPUs 1 and 2 with INIT-SIPI-SIPI, then its',
    'timer. A vCPU halts when idle and the chip wakes it.',
    '',
    formatTable(rows),
    '',
    'Paths, and what coalesced:',
    ...paths,
    ...(rulesUsed.size === 0 ? [] : ['', 'Coalescing rules:', ...[...rulesUsed].map((rule) => `  ${rule}: ${RULE_EXPLANATIONS[rule] ?? ''}`)]),
    '',
    report.vcpus.map((vcpu) => `vCPU ${vcpu.vcpu}: ${vcpu.interrupts} interrupts, ${vcpu.halts} HLTs`).join('; '),
    ...report.checks.map((check) => `${check.ok ? 'ok  ' : 'FAIL'} ${check.description}`),
    '',
    report.accounted
      ? `every interrupt accounted for: yes (raised = delivered + coalesced for all ${report.sources.length} sources; every check holds)`
      : 'every interrupt accounted for: NO (see the sources not accounted for and the checks marked FAIL)',
  ].join('\n');
}
