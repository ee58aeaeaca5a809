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
 * With `launcher`, the helper is started by a launcher made in advance
 * instead (a prototype, the benchmark's daemon.latency.launcher.floor): a
 * child forked before the datagram comes, already in a session of its own
 * with every signal at its default, blocked in recvmsg(2) on a socket pair;
 * for each datagram the receiver sends it the argv and the two descriptors
 * (stdin /dev/null, stdout a socket pair, SCM_RIGHTS), the child puts them
 * on 0 and 1 and execs the helper, and the receiver forks the next launcher
 * once the request is sent.  What a launcher could buy at most: no clone
 * between the datagram and the exec, only a wake-up of another process.
 *
 * usage: spawnfloor socket helper log count [launcher]
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

static char *helper_argv[] = { "control", "add", "ssh", "tcp", "127.0.1.1", "32", "22", "", NULL };

static void
start(const char *helper)
{
	char **argv = helper_argv;
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

/*
 * A launcher forked now: set up as posix_spawn sets up the helper, then
 * blocked until a request comes on the returned socket; it then execs
 * `helper` with the request's argv (NUL-separated) and descriptors.
 */
static int
launcher(const char *helper)
{
	char buf[1024], control[CMSG_SPACE(2 * sizeof(int))], *argv[16];
	struct iovec iov = { buf, sizeof buf - 1 };
	struct msghdr m = { 0 };
	struct cmsghdr *c;
	sigset_t none;
	ssize_t n;
	int pair[2], fds[2], argc = 0, sig;
	char *p;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) == -1)
		err(1, "socketpair");
	switch (fork()) {
	case -1:
		err(1, "fork");
	case 0:
		break;
	default:
		close(pair[1]);
		return pair[0];
	}
	close(pair[0]);
	setsid();
	for (sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	m.msg_control = control;
	m.msg_controllen = sizeof control;
	/* the receiver gone without a request: so is the launcher */
	if ((n = recvmsg(pair[1], &m, 0)) <= 0)
		_exit(0);
	buf[n] = '\0';
	for (p = buf; p < buf + n && argc < 15; p += strlen(p) + 1)
		argv[argc++] = p;
	argv[argc] = NULL;
	c = CMSG_FIRSTHDR(&m);
	if (c == NULL || c->cmsg_type != SCM_RIGHTS)
		_exit(127);
	memcpy(fds, CMSG_DATA(c), sizeof fds);
	dup2(fds[0], 0);
	dup2(fds[1], 1);
	execve(helper, argv, environ);
	_exit(127);
}

/* The request to the launcher on `s`: the argv and the helper's stdin and stdout, as start() gives them. */
static void
launch(int s)
{
	char buf[1024], control[CMSG_SPACE(2 * sizeof(int))];
	struct iovec iov = { buf, 0 };
	struct msghdr m = { 0 };
	struct cmsghdr *c;
	int out[2], fds[2];
	size_t len;
	char **a;

	for (a = helper_argv; *a != NULL; a++) {
		len = strlen(*a) + 1;
		memcpy(buf + iov.iov_len, *a, len);
		iov.iov_len += len;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, out) == -1 ||
	    (fds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC)) == -1)
		err(1, "socketpair or /dev/null");
	fds[1] = out[1];
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	m.msg_control = control;
	m.msg_controllen = sizeof control;
	c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof fds);
	memcpy(CMSG_DATA(c), fds, sizeof fds);
	if (sendmsg(s, &m, 0) == -1)
		err(1, "sendmsg to the launcher");
	close(fds[0]);
	close(out[0]);
	close(out[1]);
}

static void
receive(int s, const char *helper, int prepared)
{
	int next = prepared ? launcher(helper) : -1;

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
		if (next == -1) {
			start(helper);
			continue;
		}
		launch(next);
		close(next);
		next = launcher(helper);
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

	if (argc != 5 && !(argc == 6 && strcmp(argv[5], "launcher") == 0))
		errx(2, "usage: spawnfloor socket helper log count [launcher]");
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
		receive(s, argv[2], argc == 6);
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
