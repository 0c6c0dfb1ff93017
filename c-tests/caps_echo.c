/*
 * caps_echo -- CAPS stress and fault-injection program.
 *
 * Server:  caps_echo -s NAME [-f FLAGS] [-g GID] [-m MODE] [-h HOLD] [-n N]
 *		[-u UID] [-G GID]
 *	Serves NAME. Each request's payload is complemented byte by byte,
 *	u.ms_result complemented, and the reply carries error = ms_cmd.
 *	With -h HOLD it keeps HOLD requests and replies to them in reverse
 *	order. Command 2 ("grow") makes the reply fill the whole buffer.
 *	Stops after N requests (-n) or when the service is closed. With -k K
 *	it closes the service on the K-th request, leaving the held ones
 *	unanswered. -u/-G: as for the client, dropped to before serving.
 *
 * Client:  caps_echo -c NAME [-u UID] [-G GID] [-r ROUNDS] [-z SIZE] [-p PIPE]
 *		[-o OWNER] [-x] [-w SECS] [-q SECS]
 *	Optionally drops to group GID and user UID, connects to NAME of user
 *	OWNER (default -1), and runs ROUNDS requests of SIZE payload bytes,
 *	PIPE outstanding at a time, checking every reply. -x asks for grown
 *	replies. Prints "ok ROUNDS" or, if the server goes away, how the
 *	outstanding requests ended. -C closes the port right after sending
 *	the first PIPE requests and reports how they ended. -w keeps the
 *	connection open and idle for SECS seconds after the last reply.
 *	-q: after the rounds, prints "quiet", keeps the connection quiet for
 *	SECS seconds while the program waits inside libcaps (lwkt_yield and
 *	short naps: its cpu reads its sockets), then runs the rounds again.
 *
 * SIGPIPE is ignored unless -P is given (the library never raises it).
 */
#include <sys/types.h>
#include <libcaps/globaldata.h>
#include <sys/thread.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>
#include <sys/thread2.h>
#include <sys/caps.h>

#include <errno.h>
#include <grp.h>
#include <time.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CMD_ECHO	1
#define CMD_GROW	2

static unsigned char
pattern(long seq, size_t i)
{
	return ((unsigned char)(seq * 31 + i * 7));
}

static int
server(const char *name, int flags, gid_t gid, mode_t mode, int hold, long limit, long abandon)
{
	caps_port_t port;
	lwkt_msg_t held[64];
	long served = 0;
	int nheld = 0;

	port = caps_service(name, gid, mode, flags);
	if (port == NULL) {
		printf("caps_service: %s\n", strerror(errno));
		return (1);
	}
	printf("serving %s\n", name);
	fflush(stdout);
	while (limit < 0 || served < limit) {
		lwkt_msg_t msg = nheld > 0 ? lwkt_getport(&port->lport) : NULL;
		unsigned char *p;
		size_t i, n;

		if (msg == NULL) {
			/* nothing more queued: answer what we hold, newest first
			 * (unless the service is to be abandoned with them) */
			while (nheld > 0 && abandon == 0) {
				lwkt_msg_t h = held[--nheld];
				lwkt_replymsg(h, h->ms_cmd);
			}
			msg = lwkt_waitport(&port->lport, NULL);
			if (msg == NULL)
				break;
		}
		p = (unsigned char *)(msg + 1);
		if (msg->ms_cmd == CMD_GROW)
			msg->ms_msgsize = msg->ms_maxsize;
		n = msg->ms_msgsize - sizeof(*msg);
		for (i = 0; i < n; ++i)
			p[i] = ~p[i];
		msg->u.ms_result = ~msg->u.ms_result;
		++served;
		if (abandon > 0 && served >= abandon) {
			printf("closing the service with %d requests unanswered\n", nheld + 1);
			caps_close(port);
			return (0);
		}
		if (hold > 1) {
			held[nheld++] = msg;
			if (nheld == hold) {
				while (nheld > 0) {
					lwkt_msg_t h = held[--nheld];
					lwkt_replymsg(h, h->ms_cmd);
				}
			}
		} else {
			lwkt_replymsg(msg, msg->ms_cmd);
		}
	}
	while (nheld > 0) {
		lwkt_msg_t msg = held[--nheld];
		lwkt_replymsg(msg, msg->ms_cmd);
	}
	printf("served %ld\n", served);
	caps_close(port);
	return (0);
}

struct req {
	long	seq;
	size_t	size;
	struct lwkt_msg *msg;
};

static void
fill(struct req *r, long seq, int grow, lwkt_port_t rport)
{
	unsigned char *p = (unsigned char *)(r->msg + 1);
	size_t i;

	lwkt_initmsg(r->msg, rport, grow ? CMD_GROW : CMD_ECHO);
	r->seq = seq;
	for (i = 0; i < r->size; ++i)
		p[i] = pattern(seq, i);
	r->msg->u.ms_result = (int)seq;
	r->msg->ms_msgsize = sizeof(struct lwkt_msg) + r->size;
	r->msg->ms_maxsize = grow ? CAPMSG_MAXSIZE : (int)(sizeof(struct lwkt_msg) + r->size);
}

static int
check(struct req *r, int grow)
{
	unsigned char *p = (unsigned char *)(r->msg + 1);
	size_t i, n = r->msg->ms_msgsize - sizeof(struct lwkt_msg);

	if (r->msg->ms_error != (grow ? CMD_GROW : CMD_ECHO))
		return (printf("seq %ld: error %d\n", r->seq, r->msg->ms_error), 0);
	if (~r->msg->u.ms_result != (int)r->seq)
		return (printf("seq %ld: result %d\n", r->seq, ~r->msg->u.ms_result), 0);
	if (n != (grow ? CAPMSG_MAXSIZE - sizeof(struct lwkt_msg) : r->size))
		return (printf("seq %ld: reply size %zu\n", r->seq, n), 0);
	for (i = 0; i < r->size; ++i) {
		if (p[i] != (unsigned char)~pattern(r->seq, i))
			return (printf("seq %ld: byte %zu\n", r->seq, i), 0);
	}
	return (1);
}

/* Requests the port refused at once: complete, no reply will come. */
static lwkt_msg_t refused[64];
static int nrefused;

/* Send; a request the port refuses at once is complete with that error. */
static void
send(caps_port_t port, lwkt_msg_t msg)
{
	int error = lwkt_beginmsg(&port->lport, msg);

	if (error != EASYNC) {
		msg->ms_error = error;
		msg->ms_flags |= MSGF_DONE;
		if (nrefused < 64)
			refused[nrefused++] = msg;
	}
}

/* -w: seconds the client keeps its connection open after the rounds. */
static unsigned int linger;
/* -q: seconds the client stays quiet inside libcaps between two runs. */
static unsigned int quiet;

/* Wait `secs` seconds the way an idle LWKT program waits: inside the
 * library, its cpu looking at its sockets (lwkt_yield does every 32
 * calls), with short naps. */
static void
quiet_in_libcaps(unsigned int secs)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		lwkt_yield();
		usleep(1000);
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while (t.tv_sec - t0.tv_sec < (time_t)secs);
}

static int
client(const char *name, uid_t owner, long rounds, size_t size, int pipe, int grow,
    int close_early)
{
	struct lwkt_port rport;
	struct req *reqs;
	caps_port_t port;
	long sent = 0, done = 0;
	int pass = 0;
	size_t bufsize = grow ? CAPMSG_MAXSIZE : sizeof(struct lwkt_msg) + size;
	int i;

	lwkt_initport(&rport, curthread);
	port = caps_client(name, owner, 0);
	if (port == NULL) {
		printf("caps_client: %s\n", strerror(errno));
		return (1);
	}
	reqs = calloc(pipe, sizeof(*reqs));
	for (i = 0; i < pipe; ++i) {
		reqs[i].msg = calloc(1, bufsize);	/* every byte sent is defined */
		reqs[i].size = size;
	}
again:
	for (i = 0; i < pipe && sent < rounds; ++i) {
		fill(&reqs[i], sent++, grow, &rport);
		send(port, reqs[i].msg);
	}
	if (close_early) {
		int eio = 0, ndone = 0;

		caps_close(port);
		for (i = 0; i < pipe; ++i) {
			ndone += (reqs[i].msg->ms_flags & MSGF_DONE) != 0;
			eio += reqs[i].msg->ms_error == EIO;
		}
		printf("closed with %d outstanding: %d done, %d with EIO\n", pipe, ndone, eio);
		return (0);
	}
	while (done < rounds) {
		lwkt_msg_t m = nrefused > 0 ? refused[--nrefused] :
		    caps_client_waitreply(port, NULL);
		struct req *r = NULL;

		if (m == NULL || m->ms_error == EIO) {	/* connection lost */
			int eio = 0, replied = 0;

			/*
			 * Every request must be complete: with EIO if it was
			 * in flight, or with its (correct) reply if that came
			 * before the connection died.
			 */
			for (i = 0; i < pipe; ++i) {
				if (!(reqs[i].msg->ms_flags & MSGF_DONE)) {
					printf("request %ld never completed\n", reqs[i].seq);
					return (4);
				}
				if (reqs[i].msg->ms_error == EIO)
					++eio;
				else if (check(&reqs[i], grow))
					++replied;
				else
					return (2);
			}
			printf("server gone after %ld replies: all %d requests done, %s\n",
			    done, pipe, eio > 0 ? "some with EIO, the others replied" :
			    "NONE with EIO");
			fprintf(stderr, "%d with EIO, %d replied\n", eio, replied);
			return (3);
		}
		for (i = 0; i < pipe; ++i) {
			if (reqs[i].msg == m)
				r = &reqs[i];
		}
		if (r == NULL || !check(r, grow))
			return (2);
		++done;
		if (sent < rounds) {
			fill(r, sent++, grow, &rport);
			send(port, r->msg);
		}
	}
	printf("ok %ld\n", done);
	if (quiet > 0 && pass++ == 0) {
		printf("quiet\n");
		quiet_in_libcaps(quiet);
		sent = done = 0;
		goto again;
	}
	if (linger > 0)
		sleep(linger);
	caps_close(port);
	for (i = 0; i < pipe; ++i)
		free(reqs[i].msg);
	free(reqs);
	return (0);
}

int
main(int ac, char **av)
{
	int mode = 0, flags = 0, hold = 0, pipe = 1, grow = 0, close_early = 0, ch;
	int keep_sigpipe = 0;
	long limit = -1, rounds = 1, abandon = 0;
	size_t size = 0;
	gid_t gid = (gid_t)-1, newgid = (gid_t)-1;
	uid_t owner = (uid_t)-1, newuid = (uid_t)-1;
	mode_t fmode = 0666;
	const char *name = NULL;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((ch = getopt(ac, av, "s:c:f:g:m:h:n:k:u:G:r:z:p:o:w:q:xCP")) != -1) {
		switch (ch) {
		case 's': mode = 's'; name = optarg; break;
		case 'c': mode = 'c'; name = optarg; break;
		case 'f': flags = (int)strtol(optarg, NULL, 0); break;
		case 'g': gid = (gid_t)strtol(optarg, NULL, 0); break;
		case 'm': fmode = (mode_t)strtol(optarg, NULL, 8); break;
		case 'h': hold = (int)strtol(optarg, NULL, 0); break;
		case 'n': limit = strtol(optarg, NULL, 0); break;
		case 'u': newuid = (uid_t)strtol(optarg, NULL, 0); break;
		case 'G': newgid = (gid_t)strtol(optarg, NULL, 0); break;
		case 'r': rounds = strtol(optarg, NULL, 0); break;
		case 'z': size = (size_t)strtol(optarg, NULL, 0); break;
		case 'p': pipe = (int)strtol(optarg, NULL, 0); break;
		case 'o': owner = (uid_t)strtol(optarg, NULL, 0); break;
		case 'w': linger = (unsigned int)strtoul(optarg, NULL, 0); break;
		case 'q': quiet = (unsigned int)strtoul(optarg, NULL, 0); break;
		case 'x': grow = 1; break;
		case 'C': close_early = 1; break;
		case 'P': keep_sigpipe = 1; break;
		case 'k': abandon = strtol(optarg, NULL, 0); break;
		default: return (64);
		}
	}
	if (!keep_sigpipe)
		signal(SIGPIPE, SIG_IGN);
	if (hold > 64)
		hold = 64;
	if (pipe > 64)
		pipe = 64;
	if (newgid != (gid_t)-1 && (setgroups(0, NULL) != 0 || setgid(newgid) != 0)) {
		perror("setgid");
		return (65);
	}
	if (newuid != (uid_t)-1 && setuid(newuid) != 0) {
		perror("setuid");
		return (65);
	}
	if (mode == 's')
		return (server(name, flags, gid, fmode, hold, limit, abandon));
	if (mode == 'c')
		return (client(name, owner, rounds, size, pipe, grow, close_early));
	return (64);
}
