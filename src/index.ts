// Library entry point: `import { createServer, wasmnet } from "wasmnet"`.
export { createServer, type WasmnetServer } from "./server/server.ts";
export { wasmnet, type Wasmnet } from "./server/wasmnet.ts";
export type { WasmnetOptions, ServerOptions } from "./server/options.ts";
export { defaultPolicy, loadPolicyFile, parsePolicy, unrestrictedPolicy, type PolicyConfig } from "./policy/load.ts";
export { dnsServerResolver, systemResolver, type Resolver } from "./net/resolve.ts";
export { createLogger, type Logger, type LogLevel } from "./log.ts";
export * as protocol from "./protocol/index.ts";
export { createToken, generateKeys, parseDuration, type CreateTokenOptions } from "./auth/issue.ts";
export type { ReloadResult } from "./server/policy-store.ts";
