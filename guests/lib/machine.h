/* The machine `irqchip run` builds, for our C guests: where its devices are (the numbers of
 * src/vmm/machine-layout.ts, which a test keeps equal: src/vmm/devices/machine-header.test.ts) and
 * what the guests do with its QEMU-compatible devices (src/vmm/devices/): the 16550 UART on COM1
 * (polled output and a small printf), isa-debug-exit, pc-testdev's IRQ lines and fw_cfg. A guest
 * written with these also runs under `qemu-system-x86_64 -device pc-testdev -serial stdio
 * -device isa-debug-exit,iobase=0xf4,iosize=0x4`. Freestanding, like runtime.h. */
#ifndef GUEST_MACHINE_H
#define GUEST_MACHINE_H

#include "runtime.h"

/* I/O ports (machine-layout.ts `Port`; PORT_DEBUG_EXIT, 0xf4, is runtime.h's). */
#define PORT_PIT 0x40                /* 8254 counters 0-2 at 0x40-0x42, control word at 0x43 */
#define PORT_SYSTEM_CONTROL_B 0x61   /* PIT counter 2's gate and output */
#define PORT_COM1 0x3f8              /* 16550A UART */
#define PORT_FW_CFG_SELECTOR 0x510   /* 16-bit write: select an item */
#define PORT_FW_CFG_DATA 0x511       /* 8-bit read: the item's next byte */
#define PORT_PCI_CONFIG_ADDRESS 0xcf8
#define PORT_PCI_CONFIG_DATA 0xcfc
#define PORT_TESTDEV_IRQ 0x2000      /* pc-testdev: a byte written to 0x2000 + n sets IRQ line n */

/* GSIs (machine-layout.ts `Gsi`): IOAPIC pins; ISA IRQs 0-15 also reach the 8259A pair. */
#define GSI_PIT 0
#define GSI_COM1 4
#define GSI_PCI_TEST_DEVICE_INTX 11
#define TESTDEV_IRQ_LINES 24         /* pc-testdev lines 0-23, one per IOAPIC pin */

#define MACHINE_MAX_VCPUS 16
#define PCI_MMIO_WINDOW_BASE 0xe0000000ul
#define PCI_MMIO_WINDOW_BYTES 0x1ec00000ul

/* fw_cfg item keys (QEMU docs/specs/fw_cfg.rst; src/vmm/devices/fw-cfg.ts `FwCfgKey`). */
#define FW_CFG_SIGNATURE 0x00        /* "QEMU" */
#define FW_CFG_ID 0x01               /* u32: bit 0, the traditional interface */
#define FW_CFG_RAM_SIZE 0x03         /* u64: bytes */
#define FW_CFG_NB_CPUS 0x05          /* u16: CPUs that boot */
#define FW_CFG_MAX_CPUS 0x0f         /* u16 */
#define FW_CFG_CMDLINE_SIZE 0x14     /* u32: bytes including the NUL */
#define FW_CFG_CMDLINE_DATA 0x15     /* the command line, NUL-terminated */
#define FW_CFG_FILE_DIR 0x19         /* u32 big-endian count, then the entries */

/* COM1 at 115200 baud, 8 data bits, no parity, 1 stop bit, FIFOs on; interrupts off (polled). */
void serial_init(void);
/* Waits for THR empty (LSR.THRE), then sends the byte. */
void serial_putc(char c);
/* Sends the string as is (no newline added), whole: other CPUs' output does not cut into it. */
void serial_puts(const char *s);
/* printf to COM1: %d %i %u %x %c %s %%, an `l` for 64-bit integers (%ld %lu %lx), a field width and
 * the `0` flag (%08x, %5d). One call's output is not cut into by other CPUs' printf, nor by an
 * interrupt handler's on this CPU (interrupts are held off while it writes). Returns the bytes sent. */
int printf(const char *format, ...) __attribute__((format(printf, 1, 2)));

/* isa-debug-exit: the VMM (or QEMU) exits with status (value << 1) | 1. Never returns. */
void debug_exit(u32 value) __attribute__((noreturn));

/* pc-testdev: sets interrupt line `line` (0-23) high (level != 0) or low. */
void testdev_set_irq(u32 line, int level);

/* fw_cfg: selects `key` and reads `length` bytes of its item into `buffer` (0s past its end). */
void fw_cfg_read(u16 key, void *buffer, u32 length);
u32 fw_cfg_u32(u16 key);
u64 fw_cfg_u64(u16 key);
/* Whether fw_cfg answers with its signature, "QEMU". */
int fw_cfg_present(void);
u32 fw_cfg_cpu_count(void);
u64 fw_cfg_ram_bytes(void);
/* Copies the kernel command line into `buffer` (at most `capacity` bytes, NUL-terminated when
 * capacity > 0) and returns its length without the NUL. */
u32 fw_cfg_command_line(char *buffer, u32 capacity);

#endif
