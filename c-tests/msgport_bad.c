/*
 * msgport_bad -- bad input to the message-port API: NULL arguments get
 * EINVAL and a diagnostic where the function returns an error; otherwise
 * (and for a message replied twice, an uninitialised port, or a wait that
 * could never end) the process aborts with a one-line diagnostic.
 */
#include <sys/types.h>
#include <sys/msgport.h>

#include <stdio.h>
#include <string.h>

int lwkt_beginmsg(lwkt_port_t port, lwkt_msg_t msg);
int lwkt_waitmsg(lwkt_msg_t msg);
void lwkt_initmsg(lwkt_msg_t msg, lwkt_port_t rport, int cmd);
void lwkt_replymsg(lwkt_msg_t msg, int error);

int
main(int argc, char **argv)
{
	struct lwkt_port port;
	struct lwkt_msg msg;
	const char *mode = argc > 1 ? argv[1] : "";

	setvbuf(stdout, NULL, _IONBF, 0);
	lwkt_initport(&port, NULL);
	lwkt_initmsg(&msg, &port, 0);

	if (strcmp(mode, "null-args") == 0) {
		printf("domsg(NULL port) = %d\n", lwkt_domsg(NULL, &msg));
		printf("beginmsg(port, NULL) = %d\n", lwkt_beginmsg(&port, NULL));
		printf("waitmsg(NULL) = %d\n", lwkt_waitmsg(NULL));
		printf("still running\n");
	} else if (strcmp(mode, "double-reply") == 0) {
		lwkt_sendmsg(&port, &msg);
		lwkt_replymsg(lwkt_getport(&port), 0);
		printf("first reply ok\n");
		lwkt_replymsg(lwkt_getport(&port), 0);
		printf("second reply returned\n");
	} else if (strcmp(mode, "null-sendmsg") == 0) {
		lwkt_sendmsg(NULL, &msg);
		printf("returned\n");
	} else if (strcmp(mode, "no-vectors") == 0) {
		memset(&port, 0, sizeof(port));
		printf("domsg to a zeroed port\n");
		lwkt_domsg(&port, &msg);
		printf("returned\n");
	} else if (strcmp(mode, "wait-forever") == 0) {
		printf("waiting on an empty port\n");
		lwkt_waitport(&port, NULL);
		printf("returned\n");
	}
	return (0);
}
