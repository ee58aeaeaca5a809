/*
 * spawnfloor: the floor of the latency benchmark (issue 19).  A child
 * process blocks in recvmsg(2) on a blocklistd-style socket (credentials
 * on) and, for each datagram, closes the passed descriptor and starts the
 * helper at once as the daemon's addon does (posix_spawn, a session of its
 * own, every signal at its default, stdin /dev/null, stdout a socket
 * pair); nothing else: no decoding, no state, no log.  The parent sends
 * `count` datagrams with a descriptor, 20 ms apart, and prints for each the
 * milliseconds from before its sendmsg to the helper's "start <ns>" line
 * in `log` (test/bench/stamp.c), one a line.
 *
 * usage: spawnfloor socket helper log count
 */
#define _GNU_SOURCE
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <err.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static long long
now(void)
{
	struct timespec ts;

	/* the clock of test/bench/stamp.c */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void
start(const char *helper)
{
	char *argv[] = { "control", "add", "ssh", "tcp", "127.0.1.1", "32", "22", "", NULL };
	posix_spawn_file_actions_t actions;
	posix_spawnattr_t attr;
	sigset_t none, all;
	int out[2], in;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, out) == -1 ||
	    (in = open("/dev/null", O_RDONLY | O_CLOEXEC)) == -1)
		err(1, "socketpair or /dev/null");
	posix_spawn_file_actions_init(&actions);
	posix_spawn_file_actions_adddup2(&actions, in, 0);
	posix_spawn_file_actions_adddup2(&actions, out[1], 1);
	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	memset(&all, 0xff, sizeof all);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &all);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	if (posix_spawn(&pid, helper, &actions, &attr, argv, environ) != 0)
		errx(1, "posix_spawn %s failed", helper);
	posix_spawn_file_actions_destroy(&actions);
	posix_spawnattr_destroy(&attr);
	close(in);
	close(out[0]);
	close(out[1]);
}

static void
receive(int s, const char *helper)
{
	char buf[2048], control[CMSG_SPACE(sizeof(int)) + CMSG_SPACE(64)];
	struct iovec iov = { buf, sizeof buf };
	struct msghdr m;
	struct cmsghdr *c;
	int fd;

	/* the daemon reaps its helpers; here the kernel does */
	signal(SIGCHLD, SIG_IGN);
	for (;;) {
		memset(&m, 0, sizeof m);
		m.msg_iov = &iov;
		m.msg_iovlen = 1;
		m.msg_control = control;
		m.msg_controllen = sizeof control;
		if (recvmsg(s, &m, MSG_CMSG_CLOEXEC) == -1)
			continue;
		for (c = CMSG_FIRSTHDR(&m); c != NULL; c = CMSG_NXTHDR(&m, c))
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
				memcpy(&fd, CMSG_DATA(c), sizeof fd);
				close(fd);
			}
		start(helper);
	}
}

static off_t
size(const char *path)
{
	struct stat st;

	return stat(path, &st) == -1 ? 0 : st.st_size;
}

/* The first "start <ns>" from `offset` on, or 0 when it is not there yet. */
static long long
stamped(const char *path, off_t offset)
{
	long long ns = 0;
	FILE *f;

	if ((f = fopen(path, "r")) == NULL)
		return 0;
	if (fseeko(f, offset, SEEK_SET) == 0 && fscanf(f, "start %lld", &ns) != 1)
		ns = 0;
	fclose(f);
	return ns;
}

int
main(int argc, char *argv[])
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char buf[151] = { 0 }, control[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { buf, sizeof buf };
	struct msghdr m;
	struct cmsghdr *c;
	int s, client, passed, one = 1, i, count;
	long long sent, at;
	off_t before;
	pid_t receiver;

	if (argc != 5)
		errx(2, "usage: spawnfloor socket helper log count");
	count = atoi(argv[4]);
	setenv("HELPER_LOG", argv[3], 1);
	strncpy(sun.sun_path, argv[1], sizeof sun.sun_path - 1);
	unlink(argv[1]);
	if ((s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1 ||
	    setsockopt(s, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) == -1 ||
	    bind(s, (struct sockaddr *)&sun, sizeof sun) == -1)
		err(1, "%s", argv[1]);
	if ((receiver = fork()) == -1)
		err(1, "fork");
	if (receiver == 0)
		receive(s, argv[2]);
	close(s);
	if ((client = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1 ||
	    connect(client, (struct sockaddr *)&sun, sizeof sun) == -1)
		err(1, "connect %s", argv[1]);
	for (i = 0; i < count; i++) {
		if ((passed = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
			err(1, "socket");
		memset(&m, 0, sizeof m);
		m.msg_iov = &iov;
		m.msg_iovlen = 1;
		m.msg_control = control;
		m.msg_controllen = sizeof control;
		c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &passed, sizeof passed);
		before = size(argv[3]);
		sent = now();
		if (sendmsg(client, &m, 0) == -1)
			err(1, "sendmsg");
		close(passed);
		/* polled as the benchmark polls the daemon's helper */
		while ((at = stamped(argv[3], before)) == 0)
			usleep(5000);
		printf("%.3f\n", (at - sent) / 1e6);
		usleep(20000);
	}
	kill(receiver, SIGKILL);
	waitpid(receiver, NULL, 0);
	return 0;
}
