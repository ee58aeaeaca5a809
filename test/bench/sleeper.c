/*
 * sleeper: a packet-filter helper that takes $HELPER_SLEEP_MS milliseconds
 * (default 2) per add or rem, as a quick real one would, and answers
 * "OK id-<address>" for add, "OK" for the rest; nothing (one empty line) for
 * capabilities: one call per block.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int
main(int argc, char **argv)
{
	const char *ms = getenv("HELPER_SLEEP_MS");
	long n = ms != NULL ? atol(ms) : 2;
	struct timespec ts = { n / 1000, (n % 1000) * 1000000L };

	if (argc > 1 && strcmp(argv[1], "capabilities") == 0) {
		printf("\n");
		return 0;
	}
	if (argc > 1 && (strcmp(argv[1], "add") == 0 || strcmp(argv[1], "rem") == 0))
		nanosleep(&ts, NULL);
	if (argc > 4 && strcmp(argv[1], "add") == 0)
		printf("OK id-%s\n", argv[4]);
	else
		printf("OK\n");
	return 0;
}
