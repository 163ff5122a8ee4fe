/**
 * Starting the bootstrap processor where a loader said (`BootEntry`), on the thread that runs
 * the vCPU: the multiboot magic in EAX/RAX and the information's address in EBX/RBX, the rest
 * of the state as the entry's mode requires.
 */

import type { KvmVcpu } from '../../kvm/kvm-vcpu.ts';
import { enterLongMode } from '../../kvm/long-mode.ts';
import type { BootEntry } from './loaded-image.ts';
import { MULTIBOOT_BOOTLOADER_MAGIC } from './multiboot-header.ts';
import { enterProtectedMode } from './protected-mode.ts';

export function startBootProcessor(vcpu: KvmVcpu, boot: BootEntry): void {
  const registers = { rax: MULTIBOOT_BOOTLOADER_MAGIC, rbx: boot.bootInformation };
  if (boot.mode === 'long') enterLongMode(vcpu, boot.entry, registers);
  else enterProtectedMode(vcpu, boot.entry, registers);
}
