/* What a first touch of memory costs on this machine: map GIB GiB of anonymous
 * memory (no huge pages), write one byte in each 4 KiB page, print the time per
 * page. On metal that is a page fault and a zeroed page, well under 1 us; on a
 * VM whose free memory goes back to the host (virtio_balloon free page
 * reporting) and whose page tables the hypervisor shadows, every cold page also
 * costs the host's fault. A ramp's slab pages are touched the same way, by the
 * kernel: docs/performance.md, "At scale, round four".
 *   gcc -O2 -o /tmp/touch bench/peer/touch.c && /tmp/touch 4 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

int main(int argc, char **argv) {
  size_t n = (size_t)(argc > 1 ? atol(argv[1]) : 1) << 30;
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return perror("mmap"), 1;
  madvise(p, n, MADV_NOHUGEPAGE);
  for (size_t i = 0; i < n; i += 4096) p[i] = 1;
  clock_gettime(CLOCK_MONOTONIC, &b);
  double d = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
  printf("%zu GiB: %.2f s, %.2f us a page\n", n >> 30, d, d * 1e6 / (double)(n / 4096));
  munmap(p, n);
  return 0;
}
