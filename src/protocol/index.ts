export * from "./constants.ts";
export * from "./messages.ts";
export { decodeJsonRequest, encodeJsonEvent, encodeJsonRequest, decodeJsonEvent } from "./json.ts";
export { decodeBinaryRequest, encodeBinaryEvent, encodeBinaryRequest, decodeBinaryEvent, readId } from "./binary.ts";
