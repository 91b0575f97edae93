// Numbers of the Emscripten PROXY_POSIX_SOCKETS wire protocol and of the program's own libc
// (Emscripten 3.1.6's musl with WASI errno numbering). Every value here was checked against the
// headers of Debian's emscripten 3.1.6 package and against a program compiled with it that
// prints them (test/fixtures/posix/constants.c, compared in test/posix-constants.test.ts).
// The program compares errno with these numbers, never with the host's: see docs/posix.md.
// Browser-safe: no Bun or Node APIs.

/** Function numbers in the request header. */
export const POSIX_CALL = {
  socket: 1,
  socketpair: 2,
  shutdown: 3,
  bind: 4,
  connect: 5,
  listen: 6,
  accept: 7,
  getsockname: 8,
  getpeername: 9,
  send: 10,
  recv: 11,
  sendto: 12,
  recvfrom: 13,
  sendmsg: 14,
  recvmsg: 15,
  getsockopt: 16,
  setsockopt: 17,
  getaddrinfo: 18,
  getnameinfo: 19,
} as const;
export type PosixCallName = keyof typeof POSIX_CALL;

const CALL_NAMES: Record<number, PosixCallName> = Object.fromEntries(
  Object.entries(POSIX_CALL).map(([name, fn]) => [fn, name as PosixCallName]),
);

/** The call a function number names, or null for a number the stub never sends. */
export function posixCallName(fn: number): PosixCallName | null {
  return CALL_NAMES[fn] ?? null;
}

/** errno in the program's numbering (musl's bits/errno.h for Emscripten = WASI's). */
export const ERRNO = {
  EACCES: 2,
  EADDRINUSE: 3,
  EADDRNOTAVAIL: 4,
  EAFNOSUPPORT: 5,
  EAGAIN: 6, // = EWOULDBLOCK
  EALREADY: 7,
  EBADF: 8,
  ECONNABORTED: 13,
  ECONNREFUSED: 14,
  ECONNRESET: 15,
  EDESTADDRREQ: 17,
  EFAULT: 21,
  EHOSTUNREACH: 23,
  EINPROGRESS: 26,
  EINTR: 27,
  EINVAL: 28,
  EIO: 29,
  EISCONN: 30,
  EMFILE: 33,
  EMSGSIZE: 35,
  ENETDOWN: 38,
  ENETUNREACH: 40,
  ENFILE: 41,
  ENOBUFS: 42,
  ENOMEM: 48,
  ENOPROTOOPT: 50,
  ENOSYS: 52,
  ENOTCONN: 53,
  ENOTSOCK: 57,
  EPERM: 63,
  EPIPE: 64,
  EPROTO: 65,
  EPROTONOSUPPORT: 66,
  EPROTOTYPE: 67,
  ETIMEDOUT: 73,
  EOPNOTSUPP: 138, // = ENOTSUP; outside WASI's dense 1-76 range
} as const;

/** getaddrinfo return codes (the same libc's netdb.h). errno is meaningful only with EAI_SYSTEM. */
export const EAI = {
  BADFLAGS: -1,
  NONAME: -2,
  AGAIN: -3,
  FAIL: -4,
  FAMILY: -6,
  SOCKTYPE: -7,
  SERVICE: -8,
  MEMORY: -10,
  SYSTEM: -11,
  OVERFLOW: -12,
} as const;

/** Address families (musl = Linux numbering). */
export const AF = { UNSPEC: 0, UNIX: 1, INET: 2, INET6: 10 } as const;

/** Socket types; NONBLOCK and CLOEXEC are flag bits or-ed into the type argument of socket(). */
export const SOCK = {
  STREAM: 1,
  DGRAM: 2,
  RAW: 3,
  SEQPACKET: 5,
  NONBLOCK: 0o4000, // 2048
  CLOEXEC: 0o2000000, // 524288
} as const;

/** The socket type without its NONBLOCK / CLOEXEC flag bits. */
export function baseSocketType(type: number): number {
  return type & ~(SOCK.NONBLOCK | SOCK.CLOEXEC);
}

export const IPPROTO = { IP: 0, ICMP: 1, TCP: 6, UDP: 17, IPV6: 41, RAW: 255 } as const;

/** setsockopt/getsockopt level for the SO_* options. */
export const SOL_SOCKET = 1;

/** SOL_SOCKET options. In this libc SO_RCVTIMEO/SO_SNDTIMEO are 20/21 and take an 8-byte timeval. */
export const SO = {
  REUSEADDR: 2,
  TYPE: 3,
  ERROR: 4,
  BROADCAST: 6,
  SNDBUF: 7,
  RCVBUF: 8,
  KEEPALIVE: 9,
  LINGER: 13,
  REUSEPORT: 15,
  RCVTIMEO: 20,
  SNDTIMEO: 21,
  ACCEPTCONN: 30,
  PROTOCOL: 38,
  DOMAIN: 39,
} as const;

/** IPPROTO_TCP options. */
export const TCP_OPT = { NODELAY: 1, KEEPIDLE: 4, KEEPINTVL: 5, KEEPCNT: 6 } as const;

/** IPPROTO_IPV6 option. */
export const IPV6_V6ONLY = 26;

/** send/recv flags. */
export const MSG = {
  OOB: 0x1,
  PEEK: 0x2,
  TRUNC: 0x20,
  DONTWAIT: 0x40,
  WAITALL: 0x100,
  NOSIGNAL: 0x4000,
} as const;

/** shutdown() how. */
export const SHUT = { RD: 0, WR: 1, RDWR: 2 } as const;

/** addrinfo flags. */
export const AI = {
  PASSIVE: 0x01,
  CANONNAME: 0x02,
  NUMERICHOST: 0x04,
  V4MAPPED: 0x08,
  ALL: 0x10,
  ADDRCONFIG: 0x20,
  NUMERICSERV: 0x400,
} as const;

/** sizeof(struct sockaddr_in), sizeof(struct sockaddr_in6), sizeof(struct sockaddr_storage). */
export const SOCKADDR_IN_BYTES = 16;
export const SOCKADDR_IN6_BYTES = 28;
export const SOCKADDR_STORAGE_BYTES = 128;
/** sizeof(struct timeval) in this libc: i32 tv_sec, i32 tv_usec. */
export const TIMEVAL_BYTES = 8;

/** Request header: i32 callId, i32 function. */
export const POSIX_REQUEST_HEADER_BYTES = 8;
/** Reply header: i32 callId, i32 ret, i32 errno. */
export const POSIX_REPLY_HEADER_BYTES = 12;
/** sendto's fixed, zero-padded destination address field. */
export const SENDTO_ADDR_FIELD_BYTES = 256;
/** getaddrinfo's NUL-padded node and service fields, and the reply's canonical-name field. */
export const GAI_NODE_BYTES = 2048;
export const GAI_SERVICE_BYTES = 128;
/** The whole getaddrinfo request: header, node, service, hasHints and four hint fields. */
export const GAI_REQUEST_BYTES = POSIX_REQUEST_HEADER_BYTES + GAI_NODE_BYTES + GAI_SERVICE_BYTES + 5 * 4;
