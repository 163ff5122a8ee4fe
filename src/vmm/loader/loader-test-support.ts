/**
 * Test support for the loaders: synthetic images built byte by byte (ELF32/ELF64 executables,
 * multiboot headers, flat images) and tiny hand-assembled guests that report what they were
 * started with. Not part of the package's API.
 */

import { readFileSync } from 'node:fs';
import { Port } from '../machine-layout.ts';
import { ElfMachine } from './elf-image.ts';
import { MULTIBOOT_HEADER_MAGIC, MultibootHeaderFlag, type MultibootLoadAddresses } from './multiboot-header.ts';

export interface TestSegment {
  readonly physical: number;
  /** Default: `physical`. */
  readonly virtual?: number;
  readonly bytes: readonly number[] | Uint8Array;
  /** Default: the bytes' length. */
  readonly memoryBytes?: number;
  /** Default: true (PF_X). */
  readonly executable?: boolean;
  /** Default: 1 (PT_LOAD). */
  readonly type?: number;
}

export interface TestElfOptions {
  readonly elfClass: 32 | 64;
  readonly entry: number;
  readonly segments: readonly TestSegment[];
  /** Default: i386 for 32-bit, x86-64 for 64-bit. */
  readonly machine?: number;
  /** Default: ET_EXEC (2). */
  readonly type?: number;
}

const PF_X = 1;
const PF_W = 2;
const PF_R = 4;

/** An ELF executable: header, program headers, then each segment's bytes in order. */
export function buildElf(options: TestElfOptions): Uint8Array {
  const wide = options.elfClass === 64;
  const headerBytes = wide ? 64 : 52;
  const programHeaderBytes = wide ? 56 : 32;
  const tableEnd = headerBytes + options.segments.length * programHeaderBytes;
  const offsets: number[] = [];
  let end = tableEnd;
  for (const segment of options.segments) {
    offsets.push(end);
    end += segment.bytes.length;
  }
  const image = new Uint8Array(end);
  const view = new DataView(image.buffer);
  image.set([0x7f, 0x45, 0x4c, 0x46, wide ? 2 : 1, 1, 1]);
  view.setUint16(16, options.type ?? 2, true);
  view.setUint16(18, options.machine ?? (wide ? ElfMachine.X86_64 : ElfMachine.I386), true);
  view.setUint32(20, 1, true);
  const word = (at: number, value: number): void => {
    if (wide) view.setBigUint64(at, BigInt(value), true);
    else view.setUint32(at, value, true);
  };
  word(24, options.entry);
  word(wide ? 32 : 28, headerBytes);
  view.setUint16(wide ? 52 : 40, headerBytes, true);
  view.setUint16(wide ? 54 : 42, programHeaderBytes, true);
  view.setUint16(wide ? 56 : 44, options.segments.length, true);
  options.segments.forEach((segment, index) => {
    const at = headerBytes + index * programHeaderBytes;
    const flags = PF_R | PF_W | (segment.executable === false ? 0 : PF_X);
    view.setUint32(at, segment.type ?? 1, true);
    const fields = wide ? { flags: 4, offset: 8, vaddr: 16, paddr: 24, filesz: 32, memsz: 40 } : { offset: 4, vaddr: 8, paddr: 12, filesz: 16, memsz: 20, flags: 24 };
    view.setUint32(at + fields.flags, flags, true);
    word(at + fields.offset, offsets[index] ?? 0);
    word(at + fields.vaddr, segment.virtual ?? segment.physical);
    word(at + fields.paddr, segment.physical);
    word(at + fields.filesz, segment.bytes.length);
    word(at + fields.memsz, segment.memoryBytes ?? segment.bytes.length);
    image.set(segment.bytes, offsets[index] ?? 0);
  });
  return image;
}

/** A multiboot header: magic, flags, checksum, and the a.out kludge's addresses when given. */
export function multibootHeader(flags: number, addresses?: MultibootLoadAddresses): number[] {
  const words = [MULTIBOOT_HEADER_MAGIC, flags, (0x1_0000_0000 - ((MULTIBOOT_HEADER_MAGIC + flags) % 0x1_0000_0000)) % 0x1_0000_0000];
  if (addresses !== undefined) words.push(addresses.headerAddress, addresses.loadAddress, addresses.loadEndAddress, addresses.bssEndAddress, addresses.entryAddress);
  return words.flatMap(dword);
}

export function dword(value: number): number[] {
  return [value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, (value >>> 24) & 0xff];
}

/** Where the test guests report: a 32-bit OUT of EAX (guests/lib/runtime.h's PORT_REPORT). */
export const REPORT_PORT = 0x10;
const OUT_EAX = [0xe7, REPORT_PORT];
const MOV_EAX_EBX = [0x89, 0xd8];
/** mov eax, [ebx + 16] (multiboot_info.cmdline); mov eax, [eax]: the command line's first four bytes. */
const LOAD_COMMAND_LINE_START = [0x8b, 0x43, 0x10, 0x8b, 0x00];
const END_THROUGH_DEBUG_EXIT = [0x31, 0xc0, 0xe7, Port.DebugExit];

/**
 * A guest for 64-bit mode (the same bytes decode alike in 32-bit mode): reports EAX (the magic),
 * EBX (the information), and the command line's first four bytes, then writes 0 to isa-debug-exit.
 */
export const HANDSHAKE_REPORTER = [...OUT_EAX, ...MOV_EAX_EBX, ...OUT_EAX, ...LOAD_COMMAND_LINE_START, ...OUT_EAX, ...END_THROUGH_DEBUG_EXIT];

/**
 * A 32-bit protected-mode guest that reports what a multiboot kernel sees at its entry: EAX, EBX,
 * CR0, CS, DS, SS, EFLAGS (pushfd; pop eax), ESP, and the command line's first four bytes.
 */
export const PROTECTED_MODE_REPORTER = [
  ...OUT_EAX,
  ...MOV_EAX_EBX,
  ...OUT_EAX,
  ...[0x0f, 0x20, 0xc0], // mov eax, cr0
  ...OUT_EAX,
  ...[0x8c, 0xc8], // mov eax, cs
  ...OUT_EAX,
  ...[0x8c, 0xd8], // mov eax, ds
  ...OUT_EAX,
  ...[0x8c, 0xd0], // mov eax, ss
  ...OUT_EAX,
  ...[0x9c, 0x58], // pushfd; pop eax
  ...OUT_EAX,
  ...[0x89, 0xe0], // mov eax, esp
  ...OUT_EAX,
  ...LOAD_COMMAND_LINE_START,
  ...OUT_EAX,
  ...END_THROUGH_DEBUG_EXIT,
];

/** The a.out kludge's flag with the two requirements every loader meets. */
export const AOUT_KLUDGE_FLAGS = MultibootHeaderFlag.AoutKludge | MultibootHeaderFlag.PageAlign | MultibootHeaderFlag.MemoryInfo;

const HELLO_SOURCE = new URL('../../../guests/multiboot/hello.c', import.meta.url);
const EXPECTED_START = 'the serial output is exactly:';

/** The serial output multiboot-hello.c's header documents under qemu-system-x86_64 -kernel. */
export function documentedQemuOutput(): string {
  const lines = readFileSync(HELLO_SOURCE, 'utf8').split('\n');
  const start = lines.findIndex((line) => line.includes(EXPECTED_START));
  const block = lines.slice(start + 2);
  const end = block.findIndex((line) => line.trim() === '*');
  return block
    .slice(0, end)
    .map((line) => `${line.replace(/^ \* {3}/, '')}\n`)
    .join('');
}
