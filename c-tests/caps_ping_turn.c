/*
 * caps_ping_turn -- a v1 service answers at most a few turns' worth of
 * a lone client's pings (src/caps/conn/mod.rs: TURN = 32 frames) before
 * the other threads of its cpu run again: a client that sends pings as
 * fast as it reads the answers must not keep the cpu on its connection.
 *
 *	caps_ping_turn SOCKET
 *
 * main, a thread of the service's cpu, connects to the service's socket
 * itself (SOCKET: its path), writes a hello and NPING pings in one go,
 * then yields, looking after each yield at how many bytes of answers
 * came since the last (FIONREAD). Prints whether every ping was
 * answered and whether no single yield brought more than MAXSTEP bytes.
 */
#include <sys/types.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <sys/caps.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NAME	"pingturn"
#define NPING	1000
#define FRAME	48
/*
 * A poll of the cpu's sources may run a connection's callback up to
 * three times (its event, then twice from the list of callbacks due
 * again), each a turn; and the answer to the hello.
 */
#define MAXSTEP	(3 * 32 * FRAME + 1024)
#define YIELDS	1000000

static void
fail(const char *what)
{
	perror(what);
	exit(1);
}

int
main(int argc, char **argv)
{
	static const unsigned char hello[16] = {
		'C', 'A', 'P', 'S', 1, 0, 1, 0, 0x00, 0x04, 0x01, 0x00, 0, 0, 0, 0
	};
	static unsigned char pings[NPING * FRAME];
	struct sockaddr_un sa;
	caps_port_t s;
	int fd, i, n, got = 0, step, maxstep = 0;

	if (argc != 2 || strlen(argv[1]) >= sizeof(sa.sun_path))
		return (2);
	uthread_init();
	if ((s = caps_service(NAME, (gid_t)-1, 0600, 0)) == NULL)
		fail("caps_service");
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	strcpy(sa.sun_path, argv[1]);
	if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		fail("connect");
	/* Frame kind 5 (ping), no body, id i (docs/wire-protocol.md). */
	for (i = 0; i < NPING; ++i) {
		unsigned char *h = pings + i * FRAME;
		int b;

		h[0] = 5;
		for (b = 0; b < 8; ++b)
			h[8 + b] = (unsigned char)((unsigned)i >> (8 * b));
	}
	/* The socket takes it all before the service reads. */
	if (write(fd, hello, sizeof(hello)) != sizeof(hello) ||
	    write(fd, pings, sizeof(pings)) != sizeof(pings))
		fail("write");
	for (i = 0; i < YIELDS && got < NPING * FRAME; ++i) {
		lwkt_yield();
		if (ioctl(fd, FIONREAD, &n) != 0)
			fail("FIONREAD");
		step = n - got;
		got = n;
		if (step > maxstep)
			maxstep = step;
	}
	printf("every ping answered: %s\n", got >= NPING * FRAME ? "yes" : "no");
	printf("at most %d bytes of answers per yield: %s (%d)\n", MAXSTEP,
	    maxstep <= MAXSTEP ? "yes" : "no", maxstep);
	close(fd);
	caps_close(s);
	return (0);
}
