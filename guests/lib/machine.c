/* The guests' side of the machine's devices (machine.h). Register facts: the PC16550D datasheet
 * (UART), QEMU docs/specs/fw_cfg.rst (fw_cfg), hw/misc/debugexit.c and hw/misc/pc-testdev.c. No
 * loop here may look like a memset or memcpy: GCC may turn one into a call, and nothing provides it. */
#include <stdarg.h>
#include "machine.h"

/* --- locks: a CPU's critical section, safe against other CPUs and this CPU's interrupts ---- */

#define RFLAGS_IF (1ul << 9)

static inline void cpu_relax(void) { __asm__ volatile("pause"); }

/* Takes `lock` with interrupts held off; returns RFLAGS to give back to lock_release. */
static u64 lock_acquire(volatile int *lock) {
  u64 flags;
  __asm__ volatile("pushfq; popq %0; cli" : "=r"(flags) : : "memory");
  while (__atomic_exchange_n(lock, 1, __ATOMIC_ACQUIRE)) cpu_relax();
  return flags;
}

static void lock_release(volatile int *lock, u64 flags) {
  __atomic_store_n(lock, 0, __ATOMIC_RELEASE);
  if (flags & RFLAGS_IF) __asm__ volatile("sti" ::: "memory");
}

/* --- 16550A UART on COM1 ------------------------------------------------------------------ */

#define UART_THR 0                  /* DLL while LCR.DLAB */
#define UART_IER 1                  /* DLM while LCR.DLAB */
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_LCR_DLAB 0x80
#define UART_LCR_8N1 0x03           /* 8 data bits, no parity, 1 stop bit */
#define UART_FCR_FIFOS_CLEARED 0xc7 /* FIFOs on, both cleared, receive trigger level 14 */
#define UART_MCR_DTR_RTS_OUT2 0x0b
#define UART_LSR_THRE 0x20
#define UART_CLOCK_HZ 115200        /* 1.8432 MHz / 16 */
#define SERIAL_BAUD 115200
#define SERIAL_DIVISOR (UART_CLOCK_HZ / SERIAL_BAUD)

static volatile int serial_lock;

void serial_init(void) {
  outb(PORT_COM1 + UART_IER, 0);
  outb(PORT_COM1 + UART_LCR, UART_LCR_DLAB);
  outb(PORT_COM1 + UART_THR, SERIAL_DIVISOR & 0xff);
  outb(PORT_COM1 + UART_IER, SERIAL_DIVISOR >> 8);
  outb(PORT_COM1 + UART_LCR, UART_LCR_8N1);
  outb(PORT_COM1 + UART_FCR, UART_FCR_FIFOS_CLEARED);
  outb(PORT_COM1 + UART_MCR, UART_MCR_DTR_RTS_OUT2);
}

void serial_putc(char c) {
  while (!(inb(PORT_COM1 + UART_LSR) & UART_LSR_THRE)) cpu_relax();
  outb(PORT_COM1 + UART_THR, (u8)c);
}

static void serial_write(const char *text, u32 length) {
  u64 flags = lock_acquire(&serial_lock);
  for (u32 i = 0; i < length; i++) serial_putc(text[i]);
  lock_release(&serial_lock, flags);
}

void serial_puts(const char *s) {
  u32 length = 0;
  while (s[length]) length++;
  serial_write(s, length);
}

/* --- printf --------------------------------------------------------------------------------- */

/* Output is gathered here and written whole; a longer output goes out in pieces of this size. */
#define PRINTF_BUFFER_BYTES 256
#define MAX_DIGITS 20 /* 2^64 - 1 has 20 decimal digits */

struct printf_output {
  char buffer[PRINTF_BUFFER_BYTES];
  u32 length;
  int written;
};

static void output_flush(struct printf_output *out) {
  serial_write(out->buffer, out->length);
  out->length = 0;
}

static void output_char(struct printf_output *out, char c) {
  if (out->length == PRINTF_BUFFER_BYTES) output_flush(out);
  out->buffer[out->length++] = c;
  out->written++;
}

static void output_padding(struct printf_output *out, char pad, int count) {
  for (int i = 0; i < count; i++) output_char(out, pad);
}

/* `magnitude` in `base`, with a '-' when `negative`, right-aligned in `width` with `pad`
 * (zeros go after the sign, spaces before it, as C's printf does). */
static void output_number(struct printf_output *out, u64 magnitude, u32 base, int negative, int width, char pad) {
  char digits[MAX_DIGITS];
  int count = 0;
  do {
    digits[count++] = "0123456789abcdef"[magnitude % base];
    magnitude /= base;
  } while (magnitude != 0);
  int padding = width - count - (negative ? 1 : 0);
  if (pad == ' ') output_padding(out, ' ', padding);
  if (negative) output_char(out, '-');
  if (pad == '0') output_padding(out, '0', padding);
  while (count > 0) output_char(out, digits[--count]);
}

static void output_string(struct printf_output *out, const char *s, int width) {
  if (!s) s = "(null)";
  int length = 0;
  while (s[length]) length++;
  output_padding(out, ' ', width - length);
  for (int i = 0; i < length; i++) output_char(out, s[i]);
}

int printf(const char *format, ...) {
  struct printf_output out;
  out.length = 0;
  out.written = 0;
  va_list arguments;
  va_start(arguments, format);
  for (const char *f = format; *f; f++) {
    if (*f != '%') {
      output_char(&out, *f);
      continue;
    }
    const char *start = f++;
    char pad = ' ';
    if (*f == '0') {
      pad = '0';
      f++;
    }
    int width = 0;
    while (*f >= '0' && *f <= '9') width = width * 10 + (*f++ - '0');
    int wide = 0;
    if (*f == 'l') {
      wide = 1;
      f++;
    }
    switch (*f) {
    case 'd':
    case 'i': {
      long value = wide ? va_arg(arguments, long) : va_arg(arguments, int);
      /* The magnitude in unsigned arithmetic: -LONG_MIN does not fit a long. */
      output_number(&out, value < 0 ? 0ul - (u64)value : (u64)value, 10, value < 0, width, pad);
      break;
    }
    case 'u':
    case 'x': {
      u64 value = wide ? va_arg(arguments, u64) : va_arg(arguments, u32);
      output_number(&out, value, *f == 'x' ? 16 : 10, 0, width, pad);
      break;
    }
    case 'c':
      output_padding(&out, ' ', width - 1);
      output_char(&out, (char)va_arg(arguments, int));
      break;
    case 's':
      output_string(&out, va_arg(arguments, const char *), width);
      break;
    case '%':
      output_char(&out, '%');
      break;
    default:
      /* Not a conversion we know (or the format ended): print it as written. */
      while (start < f) output_char(&out, *start++);
      if (!*f) f--;
      else output_char(&out, *f);
    }
  }
  va_end(arguments);
  output_flush(&out);
  return out.written;
}

/* --- isa-debug-exit and pc-testdev ---------------------------------------------------------- */

void debug_exit(u32 value) {
  outl(PORT_DEBUG_EXIT, value);
  /* The VMM stops this vCPU at the write; should it run on, it stays here. */
  for (;;) {
    cli();
    __asm__ volatile("hlt");
  }
}

void testdev_set_irq(u32 line, int level) { outb(PORT_TESTDEV_IRQ + line, level ? 1 : 0); }

/* --- fw_cfg --------------------------------------------------------------------------------- */

#define FW_CFG_SIGNATURE_BYTES 4

/* fw_cfg holds one selection for all CPUs: selecting and reading must not interleave. */
static volatile int fw_cfg_lock;

/* A 16-bit OUT of the key to the selector port (runtime.h has no outw). */
static inline void fw_cfg_select(u16 key) { __asm__ volatile("outw %0, %1" : : "a"(key), "Nd"((u16)PORT_FW_CFG_SELECTOR)); }

void fw_cfg_read(u16 key, void *buffer, u32 length) {
  u8 *bytes = buffer;
  u64 flags = lock_acquire(&fw_cfg_lock);
  fw_cfg_select(key);
  for (u32 i = 0; i < length; i++) bytes[i] = inb(PORT_FW_CFG_DATA);
  lock_release(&fw_cfg_lock, flags);
}

/* Items are little-endian, as x86 is: the bytes read in order are the integer. */
u32 fw_cfg_u32(u16 key) {
  u32 value;
  fw_cfg_read(key, &value, sizeof value);
  return value;
}

u64 fw_cfg_u64(u16 key) {
  u64 value;
  fw_cfg_read(key, &value, sizeof value);
  return value;
}

int fw_cfg_present(void) {
  char signature[FW_CFG_SIGNATURE_BYTES];
  fw_cfg_read(FW_CFG_SIGNATURE, signature, sizeof signature);
  return signature[0] == 'Q' && signature[1] == 'E' && signature[2] == 'M' && signature[3] == 'U';
}

u32 fw_cfg_cpu_count(void) {
  u16 count;
  fw_cfg_read(FW_CFG_NB_CPUS, &count, sizeof count);
  return count;
}

u64 fw_cfg_ram_bytes(void) { return fw_cfg_u64(FW_CFG_RAM_SIZE); }

u32 fw_cfg_command_line(char *buffer, u32 capacity) {
  u32 size = fw_cfg_u32(FW_CFG_CMDLINE_SIZE);
  u32 length = size > 0 ? size - 1 : 0;
  if (capacity == 0) return length;
  u32 copied = length < capacity - 1 ? length : capacity - 1;
  fw_cfg_read(FW_CFG_CMDLINE_DATA, buffer, copied);
  buffer[copied] = 0;
  return length;
}
