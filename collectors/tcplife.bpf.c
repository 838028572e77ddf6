// SPDX-License-Identifier: Apache-2.0
// svcpulse tcplife: one event per closed TCP connection, with how it ended and how healthy it was.
//
// Tracepoints (no kprobes): sock:inet_sock_set_state (birth, handshake, close), and raw tracepoints
// tcp:tcp_retransmit_skb (segments sent again), tcp:tcp_receive_reset and tcp:tcp_send_reset (RSTs),
// tcp:tcp_destroy_sock (the event leaves then: an abortive close sends its RST after TCP_CLOSE).
// Loaded by collectors/tcplife.py with bcc. Every tunable is a -D constant given at load time:
//   OFF_BYTES_ACKED, OFF_BYTES_RECEIVED, OFF_SRTT_US  byte offsets inside struct tcp_sock, and
//   OFF_SK_ERR, OFF_SK_ERR_SOFT                       inside struct sock, read from the running kernel's
//                                                     BTF (the installed headers may be for another kernel)
//   MAP_SIZE                             sockets tracked at once
//   RING_PAGES                           ring buffer size in pages (power of two)
//   FILTER_PORTS, FILTER_PIDS, FILTER_CGROUPS  1 = only report matches from the filter maps
// No kernel struct headers are included: only tracepoint arguments (layout from tracefs) and the
// BTF offsets are used, so a header/kernel mismatch cannot corrupt the figures.
// The outcome (ok, refused, timeout, ...) is derived in user space from the facts recorded here
// (collectors/tcpoutcome.py), so the rule is one pure, tested function.

#ifndef MAP_SIZE
#define MAP_SIZE 65536
#endif
#ifndef RING_PAGES
#define RING_PAGES 1024
#endif
#ifndef FILTER_PORTS
#define FILTER_PORTS 0
#endif
#ifndef FILTER_PIDS
#define FILTER_PIDS 0
#endif
#ifndef FILTER_CGROUPS
#define FILTER_CGROUPS 0
#endif

// include/net/tcp_states.h: stable since 2.6
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_FIN_WAIT1 4
#define TCP_CLOSE 7
#define TCP_LAST_ACK 9
#define TCP_LISTEN 10
#define PROTO_TCP 6
#define FAMILY_INET 2

#define ROLE_CLIENT 1
#define ROLE_SERVER 2

#define COUNTER_RING_FULL 0
#define COUNTER_MAP_FULL 1

// The one event struct. collectors/tcplife.py derives its decoder from this text (field names,
// types, order) and checks every field's offset against clang's layout at start-up.
struct event {
    u64 ts_ns;        // close time, CLOCK_MONOTONIC (bpf_ktime_get_ns)
    u64 span_ns;      // first state change to close
    u64 tx_bytes;     // tcp_sock.bytes_acked
    u64 rx_bytes;     // tcp_sock.bytes_received
    u64 cgroup_id;    // cgroup v2 inode of the owning process
    u64 connect_ns;   // SYN_SENT -> ESTABLISHED (client side); 0 = no handshake seen
    u32 pid;
    u32 srtt_us;      // tcp_sock.srtt_us >> 3 at close; 0 = no RTT sample
    u32 retransmits;  // tcp_retransmit_skb calls on this socket (SYNs included)
    s32 sk_err;       // sock.sk_err at close: the errno that ended it (0 = none)
    s32 sk_err_soft;  // sock.sk_err_soft: e.g. an ICMP unreachable while the SYN waited
    u16 lport;
    u16 rport;
    u16 resets_in;    // RSTs received (tcp_receive_reset)
    u16 resets_out;   // RSTs sent (tcp_send_reset)
    u8 laddr[16];     // IPv4 arrives v4-mapped (::ffff:a.b.c.d): one code path for both families
    u8 raddr[16];
    char comm[16];
    u8 family;        // 4 or 6
    u8 role;          // 0 unknown, ROLE_CLIENT, ROLE_SERVER
    u8 established;   // 1 = the handshake completed (or the connection predates the collector)
    u8 pad[1];
};

// Per-socket state, kept from the first state change until TCP_CLOSE; then the finished event waits
// in `closing` until the socket is destroyed (usually at once; for a socket its owner still holds
// after an error, when the owner closes it), so RSTs sent after TCP_CLOSE are counted too.
struct sock_info {
    u64 start_ns;
    u64 cgroup_id;
    u64 connect_ns;
    u32 pid;          // 0 = not yet seen in process context
    u32 retransmits;
    u16 resets_in;
    u16 resets_out;
    u8 role;
    u8 established;
    u8 pad[2];
    char comm[16];
};

// Every map is sized at load time: memory is bounded whatever the traffic (MAP_SIZE sockets).
BPF_HASH(socks, u64, struct sock_info, MAP_SIZE);
BPF_HASH(closing, u64, struct event, MAP_SIZE);
BPF_RINGBUF_OUTPUT(events, RING_PAGES);
BPF_PERCPU_ARRAY(counters, u64, 2);
BPF_HASH(port_filter, u16, u8, 1024);
BPF_HASH(pid_filter, u32, u8, 1024);
BPF_HASH(cgroup_filter, u64, u8, 4096);
// Never written: it makes bcc hand clang's layout of struct event to user space for the offset check.
BPF_ARRAY(event_layout, struct event, 1);

static __always_inline void count(int index)
{
    u64 *value = counters.lookup(&index);
    if (value)
        (*value)++;
}

static __always_inline int wanted_ports(u16 lport, u16 rport)
{
    if (!FILTER_PORTS)
        return 1;
    return port_filter.lookup(&lport) || port_filter.lookup(&rport);
}

static __always_inline int wanted_owner(u32 pid, u64 cgroup_id)
{
    if (FILTER_PIDS && !pid_filter.lookup(&pid))
        return 0;
    if (FILTER_CGROUPS && !cgroup_filter.lookup(&cgroup_id))
        return 0;
    return 1;
}

// Process context: connect() (SYN_SENT), close()/shutdown() (FIN_WAIT1, LAST_ACK). Other
// transitions run in softirq, where "current" is whoever the packet interrupted.
static __always_inline void remember_owner(struct sock_info *info)
{
    info->pid = bpf_get_current_pid_tgid() >> 32;
    info->cgroup_id = bpf_get_current_cgroup_id();
    bpf_get_current_comm(&info->comm, sizeof(info->comm));
}

static __always_inline void read_kernel(void *dst, u32 size, const void *sk, u32 offset)
{
    bpf_probe_read_kernel(dst, size, (const char *)sk + offset);
}

static __always_inline void output(struct event *ev)
{
    if (events.ringbuf_output(ev, sizeof(*ev), 0) < 0)
        count(COUNTER_RING_FULL);
}

// A finished event still waiting for its socket's destruction leaves now (the socket is reused).
static __always_inline void flush_closing(u64 key)
{
    struct event *done = closing.lookup(&key);
    if (done) {
        output(done);
        closing.delete(&key);
    }
}

// ev arrives with the tracepoint fields filled in (bcc defines the args struct inside the probe only).
static __always_inline void finish(u64 key, struct event *ev, const void *sk, struct sock_info *info)
{
    if (!info->pid)
        remember_owner(info);  // e.g. an RST-aborted accepted socket: best effort
    if (!wanted_owner(info->pid, info->cgroup_id))
        return;
    ev->ts_ns = bpf_ktime_get_ns();
    ev->span_ns = ev->ts_ns - info->start_ns;
    read_kernel(&ev->tx_bytes, sizeof(ev->tx_bytes), sk, OFF_BYTES_ACKED);
    read_kernel(&ev->rx_bytes, sizeof(ev->rx_bytes), sk, OFF_BYTES_RECEIVED);
    read_kernel(&ev->srtt_us, sizeof(ev->srtt_us), sk, OFF_SRTT_US);
    ev->srtt_us >>= 3;  // the kernel keeps it scaled by 8
    // tcp_done_with_error() stores sk_err before tcp_done() moves the socket to TCP_CLOSE, so the
    // error that ended a connection (refused, timed out, unreachable, reset) is readable here; an
    // abortive close sets ECONNRESET only after TCP_CLOSE, so it does not read as a peer's reset.
    read_kernel(&ev->sk_err, sizeof(ev->sk_err), sk, OFF_SK_ERR);
    read_kernel(&ev->sk_err_soft, sizeof(ev->sk_err_soft), sk, OFF_SK_ERR_SOFT);
    ev->cgroup_id = info->cgroup_id;
    ev->connect_ns = info->connect_ns;
    ev->pid = info->pid;
    ev->retransmits = info->retransmits;
    ev->resets_in = info->resets_in;
    ev->resets_out = info->resets_out;
    __builtin_memcpy(ev->comm, info->comm, sizeof(ev->comm));
    ev->role = info->role;
    ev->established = info->established;
    if (closing.insert(&key, ev) < 0)
        output(ev);  // no room to wait: leave now, without RSTs sent after the close
}

// The socket's entry, created at its first state change; NULL for sockets not tracked.
static __always_inline struct sock_info *track(u64 key, int newstate)
{
    struct sock_info *info = socks.lookup(&key);
    if (info)
        return info;
    // The first state change seen is the birth. Listening sockets carry no traffic; a close
    // without a birth is a listener or a socket that found the map full: not reported.
    // A connection open before start-up is tracked from its first change seen (role unknown).
    if (newstate == TCP_CLOSE || newstate == TCP_LISTEN)
        return 0;
    flush_closing(key);
    struct sock_info fresh = {};
    fresh.start_ns = bpf_ktime_get_ns();
    // Any first state past the handshake means a connection that was established before start-up.
    fresh.established = newstate != TCP_SYN_SENT && newstate != TCP_SYN_RECV;
    socks.insert(&key, &fresh);  // fails when full, or when another CPU inserted first
    info = socks.lookup(&key);
    // Count a connection once, at its birth; its later transitions find the map full too.
    if (!info && (newstate == TCP_SYN_SENT || newstate == TCP_SYN_RECV))
        count(COUNTER_MAP_FULL);
    return info;
}

TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    if (args->protocol != PROTO_TCP)
        return 0;
    if (!wanted_ports(args->sport, args->dport))
        return 0;
    u64 key = (u64)args->skaddr;
    int newstate = args->newstate;
    struct sock_info *info = track(key, newstate);
    if (!info)
        return 0;
    if (newstate == TCP_SYN_SENT)
        info->role = ROLE_CLIENT;
    else if (newstate == TCP_SYN_RECV && !info->role)
        info->role = ROLE_SERVER;
    if (newstate == TCP_ESTABLISHED && !info->established) {
        info->established = 1;
        if (info->role == ROLE_CLIENT)
            info->connect_ns = bpf_ktime_get_ns() - info->start_ns;
    }
    if (newstate == TCP_SYN_SENT || newstate == TCP_FIN_WAIT1 || newstate == TCP_LAST_ACK)
        remember_owner(info);
    if (newstate == TCP_CLOSE) {
        struct event ev = {};
        ev.lport = args->sport;
        ev.rport = args->dport;
        __builtin_memcpy(ev.laddr, args->saddr_v6, sizeof(ev.laddr));
        __builtin_memcpy(ev.raddr, args->daddr_v6, sizeof(ev.raddr));
        ev.family = args->family == FAMILY_INET ? 4 : 6;
        finish(key, &ev, args->skaddr, info);
        socks.delete(&key);
    }
    return 0;
}

// The three tcp tracepoints are attached raw: their first argument is the socket on every kernel
// since 4.17, while their tracefs layouts differ across versions (6.10 added `enum sk_rst_reason`
// to tcp_send_reset, a type older headers lack). Raw attachment is also the cheaper one.
static __always_inline struct sock_info *tracked(u64 sk)
{
    return socks.lookup(&sk);
}

// Segments sent again (data, FIN, or the SYN itself): loss or a peer too slow to acknowledge.
RAW_TRACEPOINT_PROBE(tcp_retransmit_skb)
{
    struct sock_info *info = tracked(ctx->args[0]);
    if (info)
        info->retransmits++;
    return 0;
}

// Fires before the RST moves the socket to TCP_CLOSE; whether it answered our SYN (refused) or
// ended an established connection (reset) is told apart by `established` at close.
RAW_TRACEPOINT_PROBE(tcp_receive_reset)
{
    struct sock_info *info = tracked(ctx->args[0]);
    if (info)
        info->resets_in++;
    return 0;
}

// RSTs this host sends on a tracked socket (an abortive close: SO_LINGER 0, unread data, ...).
// RSTs answering segments that match no socket carry a NULL socket and find no entry.
RAW_TRACEPOINT_PROBE(tcp_send_reset)
{
    u64 key = ctx->args[0];
    struct sock_info *info = tracked(key);
    if (info) {
        info->resets_out++;
        return 0;
    }
    struct event *done = closing.lookup(&key);  // SO_LINGER 0 / unread data: RST after TCP_CLOSE
    if (done)
        done->resets_out++;
    return 0;
}

RAW_TRACEPOINT_PROBE(tcp_destroy_sock)
{
    flush_closing(ctx->args[0]);
    return 0;
}
