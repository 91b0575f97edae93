// wasmnet browser client: `import { WasmnetClient } from "/wasmnet-client.js"`.
export { WasmnetClient } from "./client.ts";
export type {
  AcceptCallback,
  CloseCallback,
  DataCallback,
  DataFromCallback,
  EndCallback,
  ErrorCallback,
  OpenAndSendOptions,
  WasmnetClientOptions,
} from "./client.ts";
export { WasmnetError } from "./errors.ts";
export type { WasmnetErrorCode } from "./errors.ts";
export type { SocketStream, StreamOptions } from "./streams.ts";
export type { Data } from "./bytes.ts";
export type { ErrorCode, HelloLimits } from "../../src/protocol/index.ts";
