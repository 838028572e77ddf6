// SPDX-License-Identifier: Apache-2.0
// svcpulse tcplife: one event per closed TCP connection, from sock:inet_sock_set_state.
//
// Loaded by collectors/tcplife.py with bcc. Every tunable is a -D constant given at load time:
//   OFF_BYTES_ACKED, OFF_BYTES_RECEIVED  byte offsets inside struct tcp_sock, read from the running
//                                        kernel's BTF (the installed headers may be for another kernel)
//   MAP_SIZE                             sockets tracked at once
//   RING_PAGES                           ring buffer size in pages (power of two)
//   FILTER_PORTS, FILTER_PIDS, FILTER_CGROUPS  1 = only report matches from the filter maps
// No kernel struct headers are included: only tracepoint arguments (layout from tracefs) and the
// two BTF offsets are used, so a header/kernel mismatch cannot corrupt the figures.

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

// The one event struct; collectors/tcplife.py decodes it with struct format EVENT_FORMAT.
struct event {
    u64 ts_ns;      // close time, CLOCK_MONOTONIC (bpf_ktime_get_ns)
    u64 span_ns;    // first state change to close
    u64 tx_bytes;   // tcp_sock.bytes_acked
    u64 rx_bytes;   // tcp_sock.bytes_received
    u64 cgroup_id;  // cgroup v2 inode of the owning process
    u32 pid;
    u16 lport;
    u16 rport;
    u8 laddr[16];   // IPv4 arrives v4-mapped (::ffff:a.b.c.d): one code path for both families
    u8 raddr[16];
    char comm[16];
    u8 family;      // 4 or 6
    u8 role;        // 0 unknown, ROLE_CLIENT, ROLE_SERVER
    u8 pad[6];
};

// Per-socket state, kept from the first state change until TCP_CLOSE.
struct sock_info {
    u64 start_ns;
    u64 cgroup_id;
    u32 pid;        // 0 = not yet seen in process context
    u8 role;
    u8 pad[3];
    char comm[16];
};

BPF_HASH(socks, u64, struct sock_info, MAP_SIZE);
BPF_RINGBUF_OUTPUT(events, RING_PAGES);
BPF_PERCPU_ARRAY(counters, u64, 2);
BPF_HASH(port_filter, u16, u8, 1024);
BPF_HASH(pid_filter, u32, u8, 1024);
BPF_HASH(cgroup_filter, u64, u8, 4096);

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

// ev arrives with the tracepoint fields filled in (bcc defines the args struct inside the probe only).
static __always_inline void emit(struct event *ev, const void *sk, struct sock_info *info)
{
    if (!info->pid)
        remember_owner(info);  // e.g. an RST-aborted accepted socket: best effort
    if (!wanted_owner(info->pid, info->cgroup_id))
        return;
    ev->ts_ns = bpf_ktime_get_ns();
    ev->span_ns = ev->ts_ns - info->start_ns;
    bpf_probe_read_kernel(&ev->tx_bytes, sizeof(ev->tx_bytes), (const char *)sk + OFF_BYTES_ACKED);
    bpf_probe_read_kernel(&ev->rx_bytes, sizeof(ev->rx_bytes), (const char *)sk + OFF_BYTES_RECEIVED);
    ev->cgroup_id = info->cgroup_id;
    ev->pid = info->pid;
    __builtin_memcpy(ev->comm, info->comm, sizeof(ev->comm));
    ev->role = info->role;
    if (events.ringbuf_output(ev, sizeof(*ev), 0) < 0)
        count(COUNTER_RING_FULL);
}

TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    if (args->protocol != PROTO_TCP)
        return 0;
    if (!wanted_ports(args->sport, args->dport))
        return 0;
    u64 key = (u64)args->skaddr;
    int newstate = args->newstate;
    struct sock_info *info = socks.lookup(&key);
    if (!info) {
        // The first state change seen is the birth. Listening sockets carry no traffic; a close
        // without a birth is a listener or a socket that found the map full: not reported.
        // A connection open before start-up is tracked from its first change seen (role unknown).
        if (newstate == TCP_CLOSE || newstate == TCP_LISTEN)
            return 0;
        struct sock_info fresh = {};
        fresh.start_ns = bpf_ktime_get_ns();
        socks.insert(&key, &fresh);  // fails when full, or when another CPU inserted first
        info = socks.lookup(&key);
        if (!info) {
            // Count a connection once, at its birth; its later transitions find the map full too.
            if (newstate == TCP_SYN_SENT || newstate == TCP_SYN_RECV)
                count(COUNTER_MAP_FULL);
            return 0;
        }
    }
    if (newstate == TCP_SYN_SENT)
        info->role = ROLE_CLIENT;
    else if (newstate == TCP_SYN_RECV && !info->role)
        info->role = ROLE_SERVER;
    if (newstate == TCP_SYN_SENT || newstate == TCP_FIN_WAIT1 || newstate == TCP_LAST_ACK)
        remember_owner(info);
    if (newstate == TCP_CLOSE) {
        struct event ev = {};
        ev.lport = args->sport;
        ev.rport = args->dport;
        __builtin_memcpy(ev.laddr, args->saddr_v6, sizeof(ev.laddr));
        __builtin_memcpy(ev.raddr, args->daddr_v6, sizeof(ev.raddr));
        ev.family = args->family == FAMILY_INET ? 4 : 6;
        emit(&ev, args->skaddr, info);
        socks.delete(&key);
    }
    return 0;
}
