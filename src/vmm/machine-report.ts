/**
 * A machine report for a person: how the run ended, then the counters — each vCPU's exits, the
 * chip's and each device's non-zero counters. `irqchip run` prints it on stderr when the run did
 * not end by the guest's own isa-debug-exit, or when asked (`--stats`).
 */

import type { MachineEnd, MachineReport } from './machine.ts';

export function describeEnd(end: MachineEnd): string {
  switch (end.kind) {
    case 'guest-exit':
      return `the guest wrote 0x${end.value.toString(16)} to isa-debug-exit`;
    case 'vcpu-stopped':
      return `vCPU ${end.vcpuId} stopped: KVM exit '${end.exit}'${end.exit === 'shutdown' ? ' (a triple fault)' : ''}`;
    case 'timeout':
      return `timed out: the guest had not ended after ${end.afterMs / 1000} s`;
    case 'stopped':
      return 'stopped before the guest ended';
    case 'vmm-error':
      return `VMM fault: ${end.error.message}`;
  }
}

function formatCounters(counters: Readonly<Record<string, number>>): string | undefined {
  const shown = Object.entries(counters).filter(([, value]) => value !== 0);
  return shown.length === 0 ? undefined : shown.map(([name, value]) => `${name}=${value}`).join(' ');
}

export function formatMachineReport(report: MachineReport): string {
  const lines = [`irqchip run: ${describeEnd(report.end)}; exit code ${report.exitCode}`];
  for (const vcpu of report.vcpus) {
    const odd = vcpu.oddSizedMmioAccesses === 0 ? '' : `; MMIO accesses of a size no register takes (not decoded): ${vcpu.oddSizedMmioAccesses}`;
    lines.push(`  vcpu${vcpu.vcpuId} exits: ${formatCounters(vcpu.exits) ?? 'none'}${odd}`);
  }
  lines.push(`  device accesses forwarded: ${report.forwardedAccesses}`);
  for (const [section, counters] of Object.entries(report.counters)) {
    const text = formatCounters(counters);
    if (text !== undefined) lines.push(`  ${section}: ${text}`);
  }
  return lines.join('\n');
}
