/*
 * stamp: a helper for the latency benchmark.  Appends "start <ns>" with
 * CLOCK_REALTIME, taken first thing, to $HELPER_LOG and answers "OK", so
 * that the time measured ends when the helper starts, not after a shell
 * has forked date(1).
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

	clock_gettime(CLOCK_REALTIME, &ts);
	if (log != NULL && (f = fopen(log, "a")) != NULL) {
		fprintf(f, "start %lld%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
		fclose(f);
	}
	printf("OK\n");
	return 0;
}
