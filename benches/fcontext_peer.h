/*
 * fcontext_peer.h -- Boost.Context fcontext figures for ctxsw_bench
 * (benches/fcontext_peer.c); each returns ns per operation.
 */
#ifndef FCONTEXT_PEER_H
#define FCONTEXT_PEER_H

double	fcontext_switch(long n);	/* per jump, two contexts in turn */
double	fcontext_create(long n);	/* make + first run + exit, reused stack */
double	fcontext_handoff(long n);	/* queued message round trip */

#endif
