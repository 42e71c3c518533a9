/* The peer the agent's ramp is measured against: the least a client can do to
 * open N connections (socket + blocking connect, held open), in C. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <errno.h>
#include <string.h>

int main(int argc, char **argv) {
  if (argc != 4) { fprintf(stderr, "usage: connect IP PORT N\n"); return 2; }
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
  inet_pton(AF_INET, argv[1], &a.sin_addr);
  int n = atoi(argv[3]), ok = 0, err = 0;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int i = 0; i < n; i++) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) { err = errno; break; }
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) { err = errno; close(s); break; }
    ok++;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
  printf("%d %.6f %s\n", ok, secs, err ? strerror(err) : "-");
  return 0;
}
