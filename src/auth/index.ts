// Tokens: who is connecting. Verification, key rings, transport forms, issuing.
export { type AuthOutcome, authenticateRequest, authFailureResponse } from "./authenticate.ts";
export {
  MAX_ALLOW_ENTRIES,
  MAX_ALLOW_ENTRY_CHARS,
  MAX_PROFILE_CHARS,
  MAX_SUB_CHARS,
  MAX_TOKEN_BYTES,
  type WasmnetClaim,
  checkWasmnetClaim,
} from "./claims.ts";
export { type AuthConfig, defaultAuthConfig } from "./config.ts";
export { type CreateTokenOptions, type GeneratedKeys, TokenIssueError, createToken, generateKeys, parseDuration } from "./issue.ts";
export {
  type AsymmetricAlg,
  AuthKeyError,
  EMPTY_KEY_RING,
  type KeyRing,
  type LoadKeyRingOptions,
  MIN_HS256_SECRET_BYTES,
  type PublicKeyEntry,
  type TokenAlg,
  describeKeyRing,
  loadKeyRing,
  readHs256Secret,
} from "./keys.ts";
export { BEARER_PROTOCOL_PREFIX, type RequestToken, redactProtocols, redactedPath, splitProtocols, tokenFromRequest } from "./transport.ts";
export { type VerifyResult, verifyToken, wwwAuthenticate } from "./verify.ts";
