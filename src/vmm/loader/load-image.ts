/**
 * `loadImage`: puts the image `irqchip run` was given into guest RAM (RAM from guest-physical 0)
 * with the loader its format needs (image-format.ts), and says how the bootstrap processor starts.
 * A refused image throws `IrqChipError` (ENOEXEC: not a format we load; ENOSPC: it does not fit;
 * EINVAL: it lands on what the VMM writes) before anything is written.
 */

import { identifyImage } from './image-format.ts';
import type { LoadedImage } from './loaded-image.ts';
import { loadLongModeGuest, longModeGuestFromElf, longModeGuestFromFlat } from './long-mode-loader.ts';
import { loadMultibootKernel, multibootKernelFromAout, multibootKernelFromElf } from './multiboot-loader.ts';

export interface LoadImageOptions {
  /** The image's file name exactly as the user gave it: the command line starts with it, as under QEMU. */
  readonly fileName: string;
  /** The kernel arguments (`--append`); QEMU's default is empty. */
  readonly commandLine?: string;
}

/**
 * The command line a kernel sees: "<file name> <arguments>", as QEMU's multiboot loader composes
 * it (so an empty `--append` leaves a trailing space).
 */
export function kernelCommandLine(options: LoadImageOptions): string {
  return `${options.fileName} ${options.commandLine ?? ''}`;
}

export function loadImage(memory: Uint8Array, image: Uint8Array, options: LoadImageOptions): LoadedImage {
  const imageName = options.fileName;
  const commandLine = kernelCommandLine(options);
  const identified = identifyImage(image, imageName);
  switch (identified.kind) {
    case 'multiboot-elf':
      return loadMultibootKernel(memory, multibootKernelFromElf(identified.elf), identified.header, commandLine, imageName);
    case 'multiboot-aout':
      return loadMultibootKernel(memory, multibootKernelFromAout(image, identified.header, identified.loadAddresses, imageName), identified.header, commandLine, imageName);
    case 'elf64':
      return loadLongModeGuest(memory, longModeGuestFromElf(identified.elf), commandLine, imageName);
    case 'flat':
      return loadLongModeGuest(memory, longModeGuestFromFlat(image), commandLine, imageName);
  }
}
