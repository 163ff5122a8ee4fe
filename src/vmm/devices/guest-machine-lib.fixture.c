/* The guest of guest-machine-lib.test.ts (compiled by the test, never an image of guests/): calls
 * every function of guests/lib/machine.h against the VMM's device models on KVM. The test compares
 * its serial output, its pc-testdev lines and its isa-debug-exit value with what it expects. */
#include "lib/machine.h"

#define EXIT_VALUE 0x2a

/* A null string that GCC cannot see is null (it refuses a literal one for %s). */
static const char *volatile no_string;

void guest_interrupt(u64 vector, u64 error_code) {
  (void)error_code;
  fatal(vector);
}

int main(void) {
  serial_init();
  serial_puts("machine.h\n");
  serial_putc('!');
  serial_putc('\n');
  printf("int %d %d %d %i\n", 0, -1, 2147483647, -2147483647 - 1);
  printf("unsigned %u %x %x\n", 4294967295u, 0xdeadbeefu, 0u);
  printf("long %ld %lu %lx\n", -9223372036854775807l - 1, 18446744073709551615ul, 0x123456789abcdef0ul);
  printf("width [%5d] [%05d] [%5d] [%05d] [%08x] [%3s] [%2c] [%1d]\n", 42, 42, -42, -42, 0xbeefu, "a", 'b', 123);
  printf("text [%s] [%c] [%%] [%s]\n", "hi", 'x', no_string);
  int written = printf("%300d\n", 7);
  printf("written %d\n", written);

  char line[64];
  char tiny[4];
  u32 length = fw_cfg_command_line(line, sizeof line);
  fw_cfg_command_line(tiny, sizeof tiny);
  u16 max_cpus;
  fw_cfg_read(FW_CFG_MAX_CPUS, &max_cpus, sizeof max_cpus);
  printf("fw_cfg %d id %u cpus %u max %u ram %lu\n", fw_cfg_present(), fw_cfg_u32(FW_CFG_ID), fw_cfg_cpu_count(), max_cpus, fw_cfg_ram_bytes());
  printf("cmdline %u [%s] [%s]\n", length, line, tiny);

  testdev_set_irq(0, 1);
  testdev_set_irq(0, 0);
  testdev_set_irq(TESTDEV_IRQ_LINES - 1, 7);
  debug_exit(EXIT_VALUE);
}
