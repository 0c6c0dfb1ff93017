/*
 * msgport_demo -- a small tour of LWKT message ports: a "disk" port whose
 * putport runs requests synchronously, a queueing port served by hand, and
 * replies gathered on a reply port.
 */
#include <sys/types.h>
#include <sys/msgport.h>
#include <sys/msgport2.h>

#include <stdio.h>

struct req {
	struct lwkt_msg	msg;
	int		block;
	int		sum;
};

static int
disk_putport(lwkt_port_t port, lwkt_msg_t msg)
{
	struct req *r = (struct req *)msg;

	r->sum = r->block * 512;
	return (0);
}

int
main(void)
{
	struct lwkt_port disk, queue, replies;
	struct req r[3];
	lwkt_msg_t m;
	int i;

	lwkt_initport(&disk, NULL);
	disk.mp_putport = disk_putport;
	lwkt_initport(&queue, NULL);
	lwkt_initport(&replies, NULL);

	lwkt_initmsg(&r[0].msg, &replies, 1);
	r[0].block = 3;
	i = lwkt_domsg(&disk, &r[0].msg);
	printf("domsg to the synchronous disk port: error %d, sum %d\n", i, r[0].sum);

	for (i = 0; i < 3; ++i) {
		lwkt_initmsg(&r[i].msg, &replies, 2);
		r[i].block = i + 1;
		lwkt_sendmsg(&queue, &r[i].msg);
	}
	while ((m = lwkt_getport(&queue)) != NULL) {
		struct req *q = (struct req *)m;

		q->sum = q->block * 1000;
		lwkt_replymsg(m, q->block == 2 ? 5 : 0);
	}
	while ((m = lwkt_getport(&replies)) != NULL) {
		struct req *q = (struct req *)m;

		printf("reply: block %d sum %d error %d\n", q->block, q->sum, m->ms_error);
	}
	return (0);
}
