/*
 * A host-server application in C, as the HydraNet-FT paper's were: it calls v_host() and
 * setportopt() through hydranet.h. Driven by tests/c_abi.rs.
 *
 * Usage: vhost_client OP...
 *   vhost <a.b.c.d>                              v_host(inet_addr)
 *   setportopt <port> <mode> <rt> <rw> <hi> <ht> setportopt() with these detector parameters
 *   setportopt-null <port> <mode>                setportopt() with params NULL
 *
 * Prints one line per call: "<op> rc=<rc> errno=<errno> <name>" (errno and name of a failure,
 * "errno=0 OK" for a success). Exits 0 when every call succeeded, else with the errno of the
 * first failure; 100 on a usage error.
 */
#include "hydranet.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t number(const char *s)
{
	return (uint32_t)strtoul(s, NULL, 10);
}

int main(int argc, char **argv)
{
	int first_error = 0;
	int i = 1;

	/* The header promises these; a mismatch would not even compile. */
	_Static_assert(sizeof(struct hydranet_detector_params) == 16, "params layout");

	while (i < argc) {
		const char *op = argv[i++];
		int rc, saved;

		errno = 0;
		if (strcmp(op, "vhost") == 0 && i + 1 <= argc) {
			struct in_addr addr;
			if (inet_pton(AF_INET, argv[i++], &addr) != 1) {
				fprintf(stderr, "bad address\n");
				return 100;
			}
			rc = v_host(addr.s_addr);
		} else if (strcmp(op, "setportopt") == 0 && i + 6 <= argc) {
			struct hydranet_detector_params params = {
				.retransmit_threshold = number(argv[i + 2]),
				.retransmit_window_ms = number(argv[i + 3]),
				.heartbeat_interval_ms = number(argv[i + 4]),
				.heartbeat_timeout_ms = number(argv[i + 5]),
			};
			rc = setportopt((uint16_t)number(argv[i]), number(argv[i + 1]), &params);
			i += 6;
		} else if (strcmp(op, "setportopt-null") == 0 && i + 2 <= argc) {
			rc = setportopt((uint16_t)number(argv[i]), number(argv[i + 1]), NULL);
			i += 2;
		} else {
			fprintf(stderr, "usage: vhost_client [vhost ADDR | setportopt PORT MODE RT RW HI HT"
					" | setportopt-null PORT MODE]...\n");
			return 100;
		}
		saved = errno;
		if (rc == 0) {
			printf("%s rc=0 errno=0 OK\n", op);
		} else {
			printf("%s rc=%d errno=%d %s (%s)\n", op, rc, saved, hydranet_errname(saved),
			       hydranet_strerror(saved));
			if (first_error == 0)
				first_error = saved != 0 ? saved : 101;
		}
	}
	fflush(stdout);
	return first_error;
}
