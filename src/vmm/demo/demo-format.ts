/**
 * What the KVM demo shows a person: the live status line (interrupts per second per source,
 * redrawn in place on a terminal) and the final table with its cross-checks.
 */

import type { DemoAccounting } from './demo-accounting.ts';
import { DEMO_SOURCES, DEMO_SOURCE_LABELS, DemoPhase } from './demo-layout.ts';
import type { DemoSample } from './demo-sampler.ts';
import { formatTable } from '../../base/text-table.ts';

const PHASE_NAMES: Readonly<Record<DemoPhase, string>> = {
  [DemoPhase.Booting]: 'booting',
  [DemoPhase.Running]: 'running',
  [DemoPhase.Draining]: 'draining',
  [DemoPhase.Done]: 'done',
};

/** Carriage return, then ANSI "erase in line" (CSI 2 K): the cursor's line is blank and the cursor at its start. */
export const CLEAR_LINE = '\r\x1b[2K';

/** One line: time, the guest's phase, and each source's handler runs per second. */
export function formatStatusLine(sample: DemoSample): string {
  const phase = sample.status.started ? PHASE_NAMES[sample.status.phase] : 'starting';
  const rates = DEMO_SOURCES.map((source) => `${DEMO_SOURCE_LABELS[source]} ${Math.round(sample.rates[source])}/s`);
  return [`demo ${sample.elapsedSeconds.toFixed(1)} s ${phase}`, ...rates].join(' | ');
}

/** The status line as a terminal redraws it: over the previous one. */
export function redrawStatusLine(sample: DemoSample): string {
  return `${CLEAR_LINE}${formatStatusLine(sample)}`;
}

function plural(count: number, one: string, many: string): string {
  return `${count} ${count === 1 ? one : many}`;
}

export interface DemoReportContext {
  readonly chip: string;
  readonly cpus: number;
}

/** The final table: per source, raised vs handled, rate and whether it is accounted for; then what failed, if anything. */
export function formatDemoReport(accounting: DemoAccounting, context: DemoReportContext): string {
  const table = formatTable(
    accounting.rows.map((row) => ({
      source: DEMO_SOURCE_LABELS[row.source],
      raised: row.raised,
      handled: row.handled,
      merged: row.merged,
      'per second': Math.round(row.perSecond),
      accounted: row.accounted ? 'yes' : 'NO',
      path: row.path,
    })),
  );
  const title = `irqchip demo on KVM: the demo guest, ${context.chip} chip, ${context.cpus} vCPUs`;
  if (!accounting.sourcesRan) return `${title}: the guest ended before its interrupt sources ran (${accounting.guestEnd}); its output above says why.`;
  const failed = accounting.checks.filter((check) => !check.ok);
  const lines = [
    `${title}; the sources ran ${accounting.runningSeconds.toFixed(2)} s`,
    '',
    table,
    '',
    `raised: timer, its handler runs + what vCPU 0's LAPIC merged; IPI, vCPU 0's ICR writes; level, the PCI test device's INTA# triggers; MSI-X, its raises.`,
    `merged: timer expiries vCPU 0's LAPIC folded into another (processed late, or the vector still requested: SDM 11.5.4, 11.8.4).`,
    `vCPU 0 skipped ${plural(accounting.skipped.ipi, 'IPI', 'IPIs')} and ${plural(accounting.skipped.msix, 'MSI-X raise', 'MSI-X raises')} while the previous one was in flight (one of each at a time, so none can merge).`,
    '',
  ];
  if (failed.length === 0) {
    lines.push(`Every interrupt is accounted for: ${accounting.checks.length} cross-checks between the guest's, the devices' and the chip's counts hold.`);
  } else {
    lines.push(`NOT every interrupt is accounted for: ${plural(failed.length, 'check', 'checks')} of ${accounting.checks.length} failed:`);
    for (const check of failed) lines.push(`  ${check.subjects.join(', ')}: ${check.description}`);
  }
  return lines.join('\n');
}
