// Port 0 with several workers: each worker asking the kernel for "any port" would get a
// different one, and reusePort only shares a port every process names. So the supervisor
// asks once, releases it, and hands the number to every worker.

/** A port free on `hostname` right now (bound with reusePort, as the workers will, then released). */
export function pickFreePort(hostname: string): number {
  const probe = Bun.serve({ hostname, port: 0, reusePort: true, fetch: () => new Response(null, { status: 503 }) });
  const port = probe.port!;
  probe.stop(true);
  return port;
}
