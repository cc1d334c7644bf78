/* vmexit CODE: ends the VM with QEMU's isa-debug-exit device (-device isa-debug-exit,iobase=0xf4,
 * iosize=0x01). QEMU then exits with status CODE*2+1. Without the device the write is ignored, so
 * the helper falls back to a power-off (QEMU exits 0, which the host side reports as "no result").
 * The guest kernel has no /dev/port, hence ioperm + outb. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/io.h>
#include <sys/reboot.h>
#include <unistd.h>

#define DEBUG_EXIT_PORT 0xf4

int main(int argc, char **argv) {
  long code = argc > 1 ? strtol(argv[1], NULL, 10) : 1;
  if (code < 0 || code > 127) code = 127;
  sync();
  if (ioperm(DEBUG_EXIT_PORT, 1, 1) == 0) {
    outb((unsigned char)code, DEBUG_EXIT_PORT);
  } else {
    perror("vmexit: ioperm");
  }
  reboot(RB_POWER_OFF);
  perror("vmexit: reboot");
  return 1;
}
