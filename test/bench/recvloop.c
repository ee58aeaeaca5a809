/*
 * recvloop: the baseline for the receive benchmark.  A plain C loop on a
 * blocklistd-style socket: blocking recvmsg(2) of one datagram with its
 * credentials and descriptor, close the descriptor, count.  No decoding:
 * the least any receiver must do.  Prints the count on SIGTERM.
 *
 * With `facts`, it also reads what blocklistd must know of each passed
 * socket before it can match a rule (doc/protocol.md §5): its type, its local
 * and peer addresses and its network namespace (SO_TYPE, getsockname,
 * getpeername, SO_NETNS_COOKIE), one system call each, as the addon does.
 * What they cost a receiver of one datagram a call on one thread, as
 * upstream's daemon is: the addon takes batches and closes on another
 * thread.
 *
 * usage: recvloop socketpath [facts]
 */
#define _GNU_SOURCE
#include <sys/socket.h>
#include <sys/un.h>
#include <err.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
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

/* The facts blocklistd reads of a passed socket; their values are not used. */
static void
read_facts(int s)
{
	struct sockaddr_storage ss;
	socklen_t len;
#ifdef SO_NETNS_COOKIE
	uint64_t cookie;
#endif
	int type;

	len = sizeof(type);
	(void)getsockopt(s, SOL_SOCKET, SO_TYPE, &type, &len);
	len = sizeof(ss);
	(void)getsockname(s, (void *)&ss, &len);
	len = sizeof(ss);
	(void)getpeername(s, (void *)&ss, &len);
#ifdef SO_NETNS_COOKIE	/* Linux 5.14 */
	len = sizeof(cookie);
	(void)getsockopt(s, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len);
#endif
}

int
main(int argc, char *argv[])
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct sigaction sa;
	unsigned long count = 0;
	int fd, one = 1, facts;

	if (argc < 2 || argc > 3 || strlen(argv[1]) >= sizeof(sun.sun_path) ||
	    (argc == 3 && strcmp(argv[2], "facts") != 0))
		errx(2, "usage: recvloop socketpath [facts]");
	facts = argc == 3;
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
				    CMSG_LEN(0)) / sizeof(int); i++) {
					int passed = ((int *)CMSG_DATA(c))[i];

					if (facts)
						read_facts(passed);
					close(passed);
				}
		count++;
	}
	printf("%lu\n", count);
	return 0;
}
