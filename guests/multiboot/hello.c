/* multiboot-hello: a multiboot v1 test image, built the way QEMU test images are built
 * (entry.S, guests/multiboot.mk). It prints on COM1 (lib/machine.c: 115200 8N1, polled THR
 * writes after LSR.THRE) what its multiboot loader handed it — the magic, the information block's
 * address and flags, mem_lower/mem_upper, the command line, the memory map and the boot loader
 * name — checks that they agree with each other, and ends through isa-debug-exit: 0 when every
 * check passed (the process exits 1), 1 otherwise (it exits 3).
 *
 * Under `qemu-system-x86_64 -kernel guests/build/multiboot-hello.elf32 -append "hello multiboot"
 * -device isa-debug-exit,iobase=0xf4,iosize=0x4 -serial stdio -m 128` (QEMU 7.1 or later, its
 * default pc machine and TCG accelerator, SeaBIOS; isa-debug-exit's own default port is 0x501)
 * the serial output is exactly:
 *
 *   multiboot-hello
 *   magic: 0x2badb002 (ok)
 *   information: 0x00009500, flags 0x0000024f
 *   mem_lower: 639 KiB
 *   mem_upper: 129920 KiB
 *   cmdline: "guests/build/multiboot-hello.elf32 hello multiboot"
 *   strings after the image: yes
 *   mmap: 7 entries at 0x00009000
 *     0x0000000000000000-0x000000000009fbff type 1
 *     0x000000000009fc00-0x000000000009ffff type 2
 *     0x00000000000f0000-0x00000000000fffff type 2
 *     0x0000000000100000-0x0000000007fdffff type 1
 *     0x0000000007fe0000-0x0000000007ffffff type 2
 *     0x00000000fffc0000-0x00000000ffffffff type 2
 *     0x000000fd00000000-0x000000ffffffffff type 2
 *   mem_upper agrees with the map: yes
 *   boot_loader_name: "qemu"
 *   result: pass
 *
 * and QEMU exits with status 1. Where it comes from: hw/i386/multiboot.c writes the information
 * block at 0x9500 with the flags MEMORY|BOOTDEV|CMDLINE|MODS|MMAP|BOOT_LOADER_NAME, the command
 * line "<kernel file name> <-append text>" and "qemu" right after the image's page-aligned end;
 * its option ROM (pc-bios/optionrom/multiboot.S) fills in mem_lower from INT 12h (SeaBIOS: 639,
 * below its 1 KiB EBDA), the map from INT 15h E820 at 0x9000 (SeaBIOS's map of QEMU's RAM, its
 * 128 KiB of tables at the top of RAM, the BIOS ROM, and the AMD HyperTransport hole QEMU 7.1+
 * reserves for its default AMD-vendor CPU), and mem_upper as the RAM contiguous from 1 MiB in that
 * map. With `-accel kvm` QEMU adds one entry, 0x00000000feffc000-0x00000000feffffff type 2 (KVM's
 * identity-map and TSS pages), and the entry count says 8. `irqchip run` gives the TCG answer
 * (src/vmm/loader/pc-memory-map.ts). The command line begins with the kernel file name exactly
 * as given on the command line. */
#include "../lib/machine.h"

#define MULTIBOOT_BOOTLOADER_MAGIC 0x2badb002u
/* multiboot_info.flags bits (Multiboot 0.6.96 §3.3). */
#define INFO_MEMORY (1u << 0)
#define INFO_CMDLINE (1u << 2)
#define INFO_MEMORY_MAP (1u << 6)
#define INFO_BOOT_LOADER_NAME (1u << 9)
#define E820_RAM 1u
#define ONE_MIB 0x100000ul
#define FOUR_GIB 0x100000000ul
#define PAGE_BYTES 4096ul
#define DEBUG_EXIT_PASS 0u
#define DEBUG_EXIT_FAIL 1u

struct multiboot_info {
  u32 flags;
  u32 mem_lower;
  u32 mem_upper;
  u32 boot_device;
  u32 cmdline;
  u32 mods_count;
  u32 mods_addr;
  u32 syms[4];
  u32 mmap_length;
  u32 mmap_addr;
  u32 drives_length;
  u32 drives_addr;
  u32 config_table;
  u32 boot_loader_name;
} __attribute__((packed));

/* One map entry; `size` counts the bytes after itself, so the next entry is at +size+4. */
struct mmap_entry {
  u32 size;
  u64 base;
  u64 length;
  u32 type;
} __attribute__((packed));

/* The end of the loaded image, .bss included (multiboot.ld). */
extern char image_end[];

static const char *yes_no(int yes) { return yes ? "yes" : "no"; }

static u64 string_length(const char *s) {
  u64 length = 0;
  while (s[length]) length++;
  return length;
}

static u64 align_up(u64 value, u64 alignment) { return (value + alignment - 1) & ~(alignment - 1); }

static const struct mmap_entry *next_entry(const struct mmap_entry *entry) { return (const struct mmap_entry *)((u64)entry + entry->size + 4); }

#define FOR_EACH_MAP_ENTRY(entry, info) \
  for (const struct mmap_entry *entry = (const struct mmap_entry *)(u64)(info)->mmap_addr; (u64)entry < (u64)(info)->mmap_addr + (info)->mmap_length; entry = next_entry(entry))

/* mem_upper as the map implies it: the RAM contiguous from 1 MiB, in KiB (what QEMU's option ROM
 * computes: RAM entries below 4 GiB that contain the running end extend it; the map is unordered). */
static u64 upper_memory_from_map(const struct multiboot_info *info) {
  u64 end = ONE_MIB;
  for (int extended = 1; extended;) {
    extended = 0;
    FOR_EACH_MAP_ENTRY(entry, info) {
      if (entry->type == E820_RAM && entry->base < FOUR_GIB && entry->base <= end && end < entry->base + entry->length) {
        end = entry->base + entry->length;
        extended = 1;
      }
    }
  }
  return (end - ONE_MIB) >> 10;
}

/* Prints the map; returns whether mem_upper agrees with it. */
static int print_memory_map(const struct multiboot_info *info) {
  u32 count = 0;
  FOR_EACH_MAP_ENTRY(entry, info) count++;
  printf("mmap: %u entries at 0x%08x\n", count, info->mmap_addr);
  FOR_EACH_MAP_ENTRY(entry, info) printf("  0x%016lx-0x%016lx type %u\n", entry->base, entry->base + entry->length - 1, entry->type);
  u64 upper = upper_memory_from_map(info);
  printf("mem_upper agrees with the map: %s\n", yes_no(upper == info->mem_upper));
  return count > 0 && upper == info->mem_upper;
}

/* Prints what the loader handed over; returns whether everything agreed. */
static int report(u32 magic, const struct multiboot_info *info) {
  printf("magic: 0x%08x (%s)\n", magic, magic == MULTIBOOT_BOOTLOADER_MAGIC ? "ok" : "wrong");
  if (magic != MULTIBOOT_BOOTLOADER_MAGIC) return 0;
  printf("information: 0x%08lx, flags 0x%08x\n", (u64)info, info->flags);
  const u32 needed = INFO_MEMORY | INFO_CMDLINE | INFO_MEMORY_MAP | INFO_BOOT_LOADER_NAME;
  if ((info->flags & needed) != needed) return 0;
  printf("mem_lower: %u KiB\nmem_upper: %u KiB\n", info->mem_lower, info->mem_upper);
  const char *command_line = (const char *)(u64)info->cmdline;
  const char *name = (const char *)(u64)info->boot_loader_name;
  printf("cmdline: \"%s\"\n", command_line);
  /* QEMU puts the command line at the image's page-aligned end and the boot loader name right after it. */
  int strings_after_image = (u64)command_line == align_up((u64)image_end, PAGE_BYTES) && name == command_line + string_length(command_line) + 1;
  printf("strings after the image: %s\n", yes_no(strings_after_image));
  int map_agrees = print_memory_map(info);
  printf("boot_loader_name: \"%s\"\n", name);
  return strings_after_image && map_agrees;
}

void multiboot_main(u32 magic, u64 information) {
  serial_init();
  printf("multiboot-hello\n");
  int passed = report(magic, (const struct multiboot_info *)information);
  printf("result: %s\n", passed ? "pass" : "fail");
  debug_exit(passed ? DEBUG_EXIT_PASS : DEBUG_EXIT_FAIL);
}
