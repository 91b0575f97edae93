// Client TLS options for connect_tls: verification always on, SNI and the name check on the
// name the client asked for, extra CAs added to the bundled public roots (Bun's `ca` replaces
// the roots, docs/bun.md#custom-cas-replace-the-public-roots).
import tls from "node:tls";

let bundle: { extra: readonly string[]; ca: string[] } | null = null;

export function tlsClientOptions(name: string | null, extraCa: readonly string[]): object {
  if (extraCa.length > 0 && (bundle === null || bundle.extra !== extraCa)) bundle = { extra: extraCa, ca: [...tls.rootCertificates, ...extraCa] };
  return {
    rejectUnauthorized: true,
    // An IP literal is checked against IP SANs; "" stops Bun sending the IP as SNI (RFC 6066).
    serverName: name ?? "",
    ...(extraCa.length > 0 ? { ca: bundle!.ca } : {}),
  };
}
