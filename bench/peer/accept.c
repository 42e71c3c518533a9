/* The C server the agent's acceptor is measured against: PROCS processes, each
 * with its own SO_REUSEPORT listener on IP:PORT and an epoll loop that accepts
 * until EAGAIN and holds every connection. Prints "ready" once all listen, then
 * "accepted N" for each line read on stdin, and exits (closing all, by RST) at
 * EOF. Usage: accept IP PORT PROCS */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static long *counts; /* shared with the children: accepted per process */

static int listener(const char *ip, int port) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
  inet_pton(AF_INET, ip, &a.sin_addr);
  if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 4096) < 0) { perror("listen"); exit(1); }
  return s;
}

static void serve(int l, long *count) {
  int ep = epoll_create1(0);
  struct epoll_event ev = { .events = EPOLLIN, .data.fd = l }, out[16];
  epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
  for (;;) {
    int n = epoll_wait(ep, out, 16, -1);
    for (int i = 0; i < n; i++)
      for (;;) {
        int c = accept4(l, NULL, NULL, 0);
        if (c < 0) { if (errno == EMFILE || errno == ENFILE) { epoll_ctl(ep, EPOLL_CTL_DEL, l, NULL); } break; }
        (*count)++;
      }
  }
}

int main(int argc, char **argv) {
  if (argc != 4) { fprintf(stderr, "usage: accept IP PORT PROCS\n"); return 2; }
  int procs = atoi(argv[3]);
  struct rlimit rl; getrlimit(RLIMIT_NOFILE, &rl); rl.rlim_cur = rl.rlim_max; setrlimit(RLIMIT_NOFILE, &rl);
  counts = mmap(NULL, sizeof(long) * procs, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  pid_t pids[256];
  for (int p = 0; p < procs && p < 256; p++) {
    int l = listener(argv[1], atoi(argv[2]));
    if ((pids[p] = fork()) == 0) { prctl(PR_SET_PDEATHSIG, SIGKILL); serve(l, &counts[p]); }
    close(l);
  }
  printf("ready\n"); fflush(stdout);
  char line[64];
  while (fgets(line, sizeof line, stdin)) {
    long t = 0; for (int p = 0; p < procs; p++) t += counts[p];
    printf("accepted %ld\n", t); fflush(stdout);
  }
  for (int p = 0; p < procs; p++) kill(pids[p], SIGKILL);
  for (int p = 0; p < procs; p++) waitpid(pids[p], NULL, 0);
  return 0;
}
