/* What a syscall costs in a release: PAIRS connections over loopback in one
 * process (both ends, 2 x PAIRS sockets, below a nofile of 20000), then each
 * socket set to TCP_REPAIR and closed, MODE 0 with a setsockopt() and a close()
 * each, MODE 1 through io_uring, 256 per io_uring_enter (as fastconn.c's
 * release does). Prints microseconds per socket and /proc/net/sockstat after,
 * to show they are gone. Needs root (TCP_REPAIR) and Linux 6.7+ for MODE 1.
 *   gcc -O2 -o /tmp/release bench/peer/release.c
 *   ip netns add relbench; ip netns exec relbench ip link set lo up
 *   for m in 0 1 0 1; do ip netns exec relbench /tmp/release 9000 $m $((9000 + m)); done
 *   ip netns del relbench */
#define _GNU_SOURCE
#include <linux/io_uring.h>
#include <sys/syscall.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>
#include <errno.h>

static double mono(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec/1e9;}
struct ring { int fd; unsigned *sq_head,*sq_tail,*sq_mask,*sq_array,*cq_head,*cq_tail,*cq_mask; struct io_uring_sqe *sqes; struct io_uring_cqe *cqes; unsigned entries; };
static int ring_init(struct ring *r, unsigned n){
  struct io_uring_params p; memset(&p,0,sizeof p);
  p.flags = IORING_SETUP_SINGLE_ISSUER|IORING_SETUP_DEFER_TASKRUN;
  int fd = syscall(__NR_io_uring_setup, n, &p); if (fd<0) return -1;
  size_t sql = p.sq_off.array + p.sq_entries*sizeof(unsigned), cql = p.cq_off.cqes + p.cq_entries*sizeof(struct io_uring_cqe);
  char *sq = mmap(0, sql, PROT_READ|PROT_WRITE, MAP_SHARED|MAP_POPULATE, fd, IORING_OFF_SQ_RING);
  char *cq = mmap(0, cql, PROT_READ|PROT_WRITE, MAP_SHARED|MAP_POPULATE, fd, IORING_OFF_CQ_RING);
  r->sqes = mmap(0, p.sq_entries*sizeof(struct io_uring_sqe), PROT_READ|PROT_WRITE, MAP_SHARED|MAP_POPULATE, fd, IORING_OFF_SQES);
  r->sq_head=(unsigned*)(sq+p.sq_off.head); r->sq_tail=(unsigned*)(sq+p.sq_off.tail); r->sq_mask=(unsigned*)(sq+p.sq_off.ring_mask); r->sq_array=(unsigned*)(sq+p.sq_off.array);
  r->cq_head=(unsigned*)(cq+p.cq_off.head); r->cq_tail=(unsigned*)(cq+p.cq_off.tail); r->cq_mask=(unsigned*)(cq+p.cq_off.ring_mask); r->cqes=(struct io_uring_cqe*)(cq+p.cq_off.cqes);
  r->fd=fd; r->entries=p.sq_entries; return 0;
}
static int one=1;
/* submit ops for fds[0..n) : kind 0 setsockopt repair, 1 close; wait all */
static int ring_batch(struct ring *r, const int *fds, int n, int kind){
  unsigned tail=*r->sq_tail;
  for(int i=0;i<n;i++){ unsigned idx=tail & *r->sq_mask; struct io_uring_sqe *s=&r->sqes[idx]; memset(s,0,sizeof *s);
    s->fd=fds[i]; s->user_data=i;
    if(kind==0){ s->opcode=IORING_OP_URING_CMD; s->cmd_op=3; s->addr=((unsigned long long)TCP_REPAIR<<32)|IPPROTO_TCP; s->file_index=sizeof one; s->addr3=(unsigned long)&one; }
    else s->opcode=IORING_OP_CLOSE;
    r->sq_array[idx]=idx; tail++; }
  __atomic_store_n(r->sq_tail, tail, __ATOMIC_RELEASE);
  int got = syscall(__NR_io_uring_enter, r->fd, n, n, IORING_ENTER_GETEVENTS, NULL, 0);
  if(got<0){perror("enter");return -1;}
  unsigned h=*r->cq_head, t=__atomic_load_n(r->cq_tail,__ATOMIC_ACQUIRE); int bad=0;
  for(;h!=t;h++){ struct io_uring_cqe *c=&r->cqes[h & *r->cq_mask]; if(c->res<0){ if(!bad) fprintf(stderr,"kind %d res %d\n",kind,c->res); bad++;} }
  __atomic_store_n(r->cq_head,h,__ATOMIC_RELEASE);
  return bad;
}
int main(int argc,char**argv){
  int n=atoi(argv[1]); int mode=atoi(argv[2]); int port=atoi(argv[3]);
  int l=socket(AF_INET,SOCK_STREAM,0); setsockopt(l,SOL_SOCKET,SO_REUSEADDR,&one,4);
  struct sockaddr_in a={.sin_family=AF_INET,.sin_port=htons(port)}; inet_pton(AF_INET,"127.0.0.1",&a.sin_addr);
  if(bind(l,(void*)&a,sizeof a)||listen(l,4096)){perror("listen");return 1;}
  int *fds=malloc(sizeof(int)*2*n); int k=0;
  for(int i=0;i<n;i++){ int c=socket(AF_INET,SOCK_STREAM,0); if(connect(c,(void*)&a,sizeof a)){perror("connect");return 1;} fds[k++]=c; int s=accept(l,0,0); if(s<0){perror("accept");return 1;} fds[k++]=s; }
  close(l);
  struct ring r; if(mode==1 && ring_init(&r,256)){perror("ring");return 1;}
  double t=mono();
  if(mode==0){ for(int i=0;i<k;i++){ setsockopt(fds[i],IPPROTO_TCP,TCP_REPAIR,&one,sizeof one); close(fds[i]); } }
  else { for(int i=0;i<k;i+=256){ int m=k-i<256?k-i:256; ring_batch(&r,fds+i,m,0); ring_batch(&r,fds+i,m,1);} }
  double d=mono()-t;
  { char b[4096]; FILE *f=fopen("/proc/net/sockstat","r"); size_t z=fread(b,1,sizeof b-1,f); b[z]=0; fclose(f); char *p=strstr(b,"TCP:"); *strchr(p,'\n')=0; printf("%s | ",p);}
  printf("mode %d: %d sockets in %.1f ms, %.2f us/socket\n",mode,k,d*1000,d*1e6/k);
  return 0;
}
