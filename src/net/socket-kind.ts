// The kinds of socket a session can hold, as counted in /metrics and named in audit lines.
export type SocketKind = "tcp" | "tls" | "udp" | "listener" | "inbound";
export const SOCKET_KINDS: readonly SocketKind[] = ["tcp", "tls", "udp", "listener", "inbound"];
