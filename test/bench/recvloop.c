/*
 * recvloop: the baseline for the receive benchmark.  A plain C loop on a
 * blocklistd-style socket: blocking recvmsg(2) of one datagram with its
 * credentials and descriptor, close the descriptor, count.  No decoding:
 * the least any receiver must do.  Prints the count on SIGTERM.
 */
#define _GNU_SOURCE
#include <sys/socket.h>
#include <sys/un.h>
#include <err.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t done;

static void
stop(int s)
{
	(void)s;
	done = 1;
}

int
main(int argc, char *argv[])
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct sigaction sa;
	unsigned long count = 0;
	int fd, one = 1;

	if (argc != 2 || strlen(argv[1]) >= sizeof(sun.sun_path))
		errx(2, "usage: recvloop socketpath");
	strcpy(sun.sun_path, argv[1]);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = stop;	/* no SA_RESTART: recvmsg returns EINTR */
	sigaction(SIGTERM, &sa, NULL);
	unlink(argv[1]);
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1 ||
	    bind(fd, (void *)&sun, sizeof(sun)) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) == -1)
		err(1, "%s", argv[1]);
	printf("ready\n");
	fflush(stdout);
	while (!done) {
		char buf[512];
		union {
			struct cmsghdr h;
			char b[CMSG_SPACE(sizeof(struct ucred)) +
			    CMSG_SPACE(4 * sizeof(int))];
		} u;
		struct iovec iov = { buf, sizeof(buf) };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
		    .msg_control = u.b, .msg_controllen = sizeof(u.b) };
		struct cmsghdr *c;

		if (recvmsg(fd, &m, MSG_CMSG_CLOEXEC) == -1) {
			if (errno == EINTR)
				continue;
			err(1, "recvmsg");
		}
		for (c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
			if (c->cmsg_level == SOL_SOCKET &&
			    c->cmsg_type == SCM_RIGHTS)
				for (size_t i = 0; i < (c->cmsg_len -
				    CMSG_LEN(0)) / sizeof(int); i++)
					close(((int *)CMSG_DATA(c))[i]);
		count++;
	}
	printf("%lu\n", count);
	return 0;
}
