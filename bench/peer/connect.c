/* The C client the agent's connect loop is measured against: the least a
 * client can do to open N connections (socket + blocking connect, held open),
 * in one process. Prints "OK SECONDS ERROR", holds the connections until stdin
 * closes, then closes them by RST (no TIME_WAIT to slow the next ramp) and
 * prints "closed SECONDS". With SOURCE, binds it first with
 * IP_BIND_ADDRESS_NO_PORT (the port is picked per 4-tuple at connect, as the
 * agent does with several sources). Usage: connect IP PORT N [SOURCE] */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc != 4 && argc != 5) { fprintf(stderr, "usage: connect IP PORT N [SOURCE]\n"); return 2; }
  struct rlimit rl; getrlimit(RLIMIT_NOFILE, &rl); rl.rlim_cur = rl.rlim_max; setrlimit(RLIMIT_NOFILE, &rl);
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
  inet_pton(AF_INET, argv[1], &a.sin_addr);
  struct sockaddr_in src = { .sin_family = AF_INET };
  if (argc == 5) inet_pton(AF_INET, argv[4], &src.sin_addr);
  int n = atoi(argv[3]), ok = 0, err = 0, one = 1;
  int *fds = calloc(n, sizeof(int));
  double t0 = now();
  for (int i = 0; i < n; i++) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) { err = errno; break; }
    if (argc == 5 && (setsockopt(s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) < 0 ||
                      bind(s, (struct sockaddr *)&src, sizeof src) < 0)) { err = errno; close(s); break; }
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) { err = errno; close(s); break; }
    fds[ok++] = s;
  }
  printf("%d %.6f %s\n", ok, now() - t0, err ? strerror(err) : "-");
  fflush(stdout);
  char line[64];
  while (fgets(line, sizeof line, stdin)) {}
  struct linger lg = { 1, 0 };
  double t1 = now();
  for (int i = 0; i < ok; i++) { setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &lg, sizeof lg); close(fds[i]); }
  printf("closed %.6f\n", now() - t1);
  return 0;
}
