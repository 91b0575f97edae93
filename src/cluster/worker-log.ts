// A worker's log: every line carries the worker's pid, so an operator (and a test) can tell
// which process served what. The server's own "listening" line becomes "worker listening": the
// supervisor announces the server once every worker listens, and scripts that wait for the
// first "listening" line must not start on one worker's.
import type { Logger } from "../log.ts";

export function workerLogger(log: Logger, pid: number): Logger {
  const wrap =
    (level: "error" | "warn" | "info" | "debug") =>
    (msg: string, fields?: Record<string, unknown>): void => {
      // A session's inbound listener logs "listening" too, with its session id: left as it is.
      const renamed = msg === "listening" && fields?.session === undefined ? "worker listening" : msg;
      log[level](renamed, { pid, ...fields });
    };
  return {
    get level() {
      return log.level;
    },
    set level(l) {
      log.level = l;
    },
    error: wrap("error"),
    warn: wrap("warn"),
    info: wrap("info"),
    debug: wrap("debug"),
    enabled: (l) => log.enabled(l),
  };
}
