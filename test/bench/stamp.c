/*
 * stamp: a helper for the latency benchmark.  Appends "start <ns>" with
 * CLOCK_MONOTONIC, taken first thing, to $HELPER_LOG and answers "OK", so
 * that the time measured ends when the helper starts, not after a shell
 * has forked date(1).  CLOCK_MONOTONIC is the clock of Node.js's
 * process.hrtime (libuv's uv_hrtime), which the benchmark stamps the send
 * with: the wall clock may run at another rate (on the bench machine in
 * December 2026 it gained 5 ms a second on the monotonic clock, which
 * performance.timeOrigin + performance.now() follows), and a difference
 * of two clocks measured that drift, not the latency.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int
main(void)
{
	struct timespec ts;
	const char *log = getenv("HELPER_LOG");
	FILE *f;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (log != NULL && (f = fopen(log, "a")) != NULL) {
		fprintf(f, "start %lld%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
		fclose(f);
	}
	printf("OK\n");
	return 0;
}
