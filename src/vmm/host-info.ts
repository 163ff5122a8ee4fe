/**
 * `irqchip info`: what this host's KVM offers that matters to interrupt delivery — the KVM
 * implementation (VMX, SVM, or PVM, the nested software one), the capabilities each chip mode
 * needs, and so which chip modes `irqchip run` can use here.
 */

import { existsSync } from 'node:fs';
import { CHIP_MODES, CHIP_MODE_CAPS, type ChipMode } from '../kvm/chip-mode.ts';
import { KvmCap } from '../kvm/kvm-abi.ts';
import { KvmVm } from '../kvm/kvm-vm.ts';

/** Capabilities shown, with what each is for. */
const SHOWN_CAPABILITIES: readonly { readonly name: keyof typeof KvmCap; readonly purpose: string }[] = [
  { name: 'IRQCHIP', purpose: "KVM's PIC, IOAPIC and local APICs (kernel chip)" },
  { name: 'SPLIT_IRQCHIP', purpose: "KVM's local APICs only (split chip)" },
  { name: 'PIT2', purpose: "KVM's 8254 PIT (kernel chip)" },
  { name: 'IRQFD', purpose: 'eventfds that inject interrupts' },
  { name: 'IRQFD_RESAMPLE', purpose: 'resample eventfds for level-triggered irqfds' },
  { name: 'IRQ_INJECT_STATUS', purpose: 'KVM_IRQ_LINE_STATUS (coalescing reported)' },
  { name: 'SIGNAL_MSI', purpose: 'KVM_SIGNAL_MSI (MSIs from userspace)' },
  { name: 'IMMEDIATE_EXIT', purpose: 'kicking a vCPU without losing a kick' },
  { name: 'X86_USER_SPACE_MSR', purpose: 'MSR exits to userspace (our local APIC)' },
  { name: 'X86_MSR_FILTER', purpose: 'choosing which MSRs exit (our local APIC)' },
  { name: 'TSC_DEADLINE_TIMER', purpose: "TSC-deadline mode of KVM's local APIC timer" },
  { name: 'X2APIC_API', purpose: '32-bit x2APIC IDs in KVM_{GET,SET}_LAPIC' },
  { name: 'MAX_VCPUS', purpose: 'vCPUs per VM' },
];

/** The KVM implementation, by its kernel module. */
const KVM_MODULES: readonly (readonly [module: string, name: string])[] = [
  ['kvm_pvm', 'PVM (nested, pagetable-based; software virtualisation)'],
  ['kvm_intel', 'VMX (kvm_intel)'],
  ['kvm_amd', 'SVM (kvm_amd)'],
];

/** The least RAM a VM needs to be created for the questions (KvmVm maps it). */
const PROBE_VM_BYTES = 2 << 20;

export interface HostKvmInfo {
  readonly implementation: string;
  readonly capabilities: readonly { readonly name: string; readonly value: number; readonly purpose: string }[];
  readonly chipModes: readonly { readonly mode: ChipMode; readonly missing: readonly string[] }[];
}

/** Asks KVM (through a throw-away VM, as VM-level answers can differ from /dev/kvm's). Throws when KVM cannot be opened. */
export function readHostKvmInfo(): HostKvmInfo {
  const implementation = KVM_MODULES.find(([module]) => existsSync(`/sys/module/${module}`))?.[1] ?? 'unknown';
  const vm = KvmVm.create({ memoryBytes: PROBE_VM_BYTES });
  try {
    const capabilities = SHOWN_CAPABILITIES.map(({ name, purpose }) => ({ name, purpose, value: vm.checkExtension(KvmCap[name]) }));
    const chipModes = CHIP_MODES.map((mode) => ({ mode, missing: CHIP_MODE_CAPS[mode].filter((name) => vm.checkExtension(KvmCap[name]) === 0) }));
    return { implementation, capabilities, chipModes };
  } finally {
    vm.close();
  }
}

export function formatHostKvmInfo(info: HostKvmInfo): string {
  const width = Math.max(...info.capabilities.map((capability) => capability.name.length));
  const lines = [
    `KVM: ${info.implementation}`,
    '',
    'Capabilities:',
    ...info.capabilities.map(({ name, value, purpose }) => `  ${name.padEnd(width)}  ${String(value).padStart(4)}  ${purpose}`),
    '',
    'Chip modes (irqchip run --chip):',
    ...info.chipModes.map(({ mode, missing }) => `  ${mode.padEnd(9)}  ${missing.length === 0 ? 'usable' : `not usable: lacks ${missing.map((name) => `KVM_CAP_${name}`).join(', ')}`}`),
  ];
  return lines.join('\n');
}
