/*
 * caps_scale's servers and round trips (included by caps_scale.c, which
 * defines PAYLOAD, RAWMSG, enum kind, dir, row and die before): the
 * epoll echo server written here, the CAPS v1 and v2 services, and one
 * client's connection and round trip of each kind.
 */
#ifndef CAPS_SCALE_KINDS_H
#define CAPS_SCALE_KINDS_H

/*
 * CAPS_SCALE_SCHED: put this process (a server when server is 1, a
 * client otherwise) under SCHED_BATCH if the setting asks for it.
 */
static void
sched_as(int server)
{
	const char *e = getenv("CAPS_SCALE_SCHED");
	struct sched_param sp = { 0 };

	if (e == NULL || *e == '\0')
		return;
	if (strcmp(e, "batch") != 0 &&
	    strcmp(e, server ? "batch-server" : "batch-clients") != 0)
		return;
	if (sched_setscheduler(0, SCHED_BATCH, &sp) != 0) {
		perror("caps_scale: sched_setscheduler(SCHED_BATCH)");
		_exit(1);
	}
}


/* ---- the epoll echo server ---- */

static char sock_path[300];
static struct sockaddr_un echo_addr;	/* sock_path */

/* Listen on sock_path before the fork, so clients may connect at once. */
static pid_t
epoll_server(void)
{
	struct sockaddr_un sa;
	struct epoll_event ev, evs[64];
	unsigned char buf[4096];
	int lfd, ep, n, i;
	pid_t pid;

	snprintf(sock_path, sizeof(sock_path), "%s/echo%d.sock", dir, row);
	if (strlen(sock_path) >= sizeof(sa.sun_path))
		die("epoll server: socket path too long");
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, sock_path, strlen(sock_path));
	echo_addr = sa;
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(lfd, 1024) != 0)
		die("epoll server: cannot listen");
	pid = xfork();
	if (pid != 0) {
		close(lfd);
		return (pid);
	}
	sched_as(1);
	ep = epoll_create1(0);
	fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK);
	ev.events = EPOLLIN;
	ev.data.fd = lfd;
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	for (;;) {
		n = epoll_wait(ep, evs, 64, -1);
		for (i = 0; i < n; ++i) {
			int fd = evs[i].data.fd;
			ssize_t r;

			if (fd == lfd) {
				int c;

				while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
					ev.events = EPOLLIN;
					ev.data.fd = c;
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
				}
				continue;
			}
			/*
			 * Echo what came. One request is outstanding per
			 * client, so the reply always fits the socket's
			 * buffer: the write is never short.
			 */
			r = read(fd, buf, sizeof(buf));
			if (r <= 0) {
				if (r < 0 && errno == EAGAIN)
					continue;
				epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
				close(fd);
				continue;
			}
			if (writen(fd, buf, r) != 0) {
				epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
				close(fd);
			}
		}
	}
}

/* ---- CAPS servers ---- */

struct bmsg {
	struct lwkt_msg	msg;
	char		data[PAYLOAD];
};

static char svc_name[64];

static pid_t
v1_server(void)
{
	char path[512];
	struct stat st;
	pid_t pid;

	snprintf(svc_name, sizeof(svc_name), "scale1_%d", row);
	pid = xfork();
	if (pid == 0) {
		caps_port_t port;
		lwkt_msg_t msg;

		sched_as(1);
		port = caps_service(svc_name, (gid_t)-1, 0600, 0);
		if (port == NULL) {
			perror("caps_service");
			_exit(1);
		}
		while ((msg = lwkt_waitport(&port->lport, NULL)) != NULL) {
			struct bmsg *m = (struct bmsg *)msg;

			complement((unsigned char *)m->data, PAYLOAD);
			msg->u.ms_result = ~msg->u.ms_result;
			lwkt_replymsg(msg, 0);
		}
		_exit(0);
	}
	if (geteuid() == 0)
		snprintf(path, sizeof(path), "%s/root/%s", dir, svc_name);
	else
		snprintf(path, sizeof(path), "%s/users/%d/%s", dir, (int)geteuid(),
		    svc_name);
	while (stat(path, &st) != 0)
		usleep(1000);
	return (pid);
}

static pid_t
v2_server(void)
{
	unsigned char buf[PAYLOAD];
	struct caps_msgid msgid;
	pid_t pid;
	int cid, n;

	snprintf(svc_name, sizeof(svc_name), "scale2_%d", row);
	pid = xfork();
	if (pid != 0)
		return (pid);
	sched_as(1);
	cid = caps_sys_service(svc_name, getuid(), getgid(), 0, CAPF_ANYCLIENT);
	if (cid < 0) {
		perror("caps_sys_service");
		_exit(1);
	}
	for (;;) {
		n = caps_sys_wait(cid, buf, sizeof(buf), &msgid, NULL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("caps_sys_wait (server)");
			_exit(1);
		}
		if (msgid.c_state != CAPMS_REQUEST)
			continue;	/* dispose notices */
		complement(buf, n);
		if (caps_sys_reply(cid, buf, n, msgid.c_id) != 0) {
			perror("caps_sys_reply");
			_exit(1);
		}
	}
}

/* ---- clients ---- */

/* One round trip of each kind: 0, or -1 (lost or wrong reply). */
struct conn {
	int		fd;		/* epoll: socket; v2: cid */
	caps_port_t	port;		/* v1 */
	struct lwkt_port rport;		/* v1 */
};

static int
connect_to(enum kind k, struct conn *c)
{
	switch (k) {
	case EPOLL:
		c->fd = socket(AF_UNIX, SOCK_STREAM, 0);
		return (c->fd >= 0 && connect(c->fd, (struct sockaddr *)&echo_addr,
		    sizeof(echo_addr)) == 0 ? 0 : -1);
	case V1:
		lwkt_initport(&c->rport, curthread);
		c->port = caps_client(svc_name, (uid_t)-1, 0);
		return (c->port != NULL ? 0 : -1);
	default:
		c->fd = caps_sys_client(svc_name, getuid(), getgid(), 0,
		    CAPF_ANYCLIENT | CAPF_WAITSVC);
		return (c->fd >= 0 ? 0 : -1);
	}
}

static int
round_trip(enum kind k, struct conn *c, uint64_t seq)
{
	unsigned char buf[RAWMSG], want[RAWMSG];
	struct caps_msgid msgid;
	struct bmsg m;
	off_t id;
	int n;

	switch (k) {
	case EPOLL:
		fill(buf, RAWMSG, seq);
		if (writen(c->fd, buf, RAWMSG) != 0 || readn(c->fd, want, RAWMSG) != 0)
			return (-1);
		return (memcmp(buf, want, RAWMSG) == 0 ? 0 : -1);
	case V1:
		lwkt_initmsg(&m.msg, &c->rport, 0);
		m.msg.u.ms_result = (int)seq;
		m.msg.ms_msgsize = m.msg.ms_maxsize = sizeof(m);
		fill((unsigned char *)m.data, PAYLOAD, seq);
		lwkt_beginmsg(&c->port->lport, &m.msg);
		if (caps_client_waitreply(c->port, &m.msg) == NULL ||
		    ~m.msg.u.ms_result != (int)seq)
			return (-1);
		fill(want, PAYLOAD, seq);
		complement(want, PAYLOAD);
		return (memcmp(m.data, want, PAYLOAD) == 0 ? 0 : -1);
	default:
		fill(buf, PAYLOAD, seq);
		id = caps_sys_put(c->fd, buf, PAYLOAD);
		if (id < 0)
			return (-1);
		do
			n = caps_sys_wait(c->fd, buf, PAYLOAD, &msgid, NULL);
		while (n < 0 && errno == EINTR);
		if (n != PAYLOAD || msgid.c_state != CAPMS_REPLY || msgid.c_id != id)
			return (-1);
		fill(want, PAYLOAD, seq);
		complement(want, PAYLOAD);
		return (memcmp(buf, want, PAYLOAD) == 0 ? 0 : -1);
	}
}

#endif /* CAPS_SCALE_KINDS_H */
