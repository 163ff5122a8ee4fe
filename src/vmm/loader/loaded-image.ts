/**
 * What a loader hands the machine: what it found, where it put it, and how the bootstrap
 * processor starts (`BootEntry`: plain data, so it crosses to the BSP's worker, which sets the
 * registers on its own thread with `startBootProcessor`).
 */

import type { ImageExtent } from './image-segment.ts';
import type { WrittenMultibootInfo } from './multiboot-info.ts';

/**
 * How the bootstrap processor starts; every mode enters with EAX/RAX = 0x2BADB002 and EBX/RBX =
 * the multiboot information's address.
 * - 'protected': as a multiboot loader starts a kernel (protected-mode.ts).
 * - 'long': 64-bit mode on the VMM's identity-mapped tables (src/kvm/long-mode.ts).
 */
export interface BootEntry {
  readonly mode: 'protected' | 'long';
  readonly entry: number;
  readonly bootInformation: number;
}

export type ImageFormat = 'multiboot' | 'elf64' | 'flat';

export interface LoadedImage {
  readonly format: ImageFormat;
  /** What was recognised, for people: e.g. "multiboot kernel (ELF32)". */
  readonly description: string;
  /** The guest-physical bytes the image occupies. */
  readonly extent: ImageExtent;
  readonly entry: number;
  readonly bootInformation: WrittenMultibootInfo;
  readonly boot: BootEntry;
  /** Things a person should know that did not stop the load (header flags not met). */
  readonly warnings: readonly string[];
}
