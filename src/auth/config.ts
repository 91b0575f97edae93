// The `[auth]` table of the policy file, as the token layer sees it. Declared here (not imported
// from the policy loader) so the token layer stands alone; the loader's type is structurally the
// same, so a PolicyConfig's `auth` can be passed in as is.

export interface AuthConfig {
  required: boolean; // false: a request without a token is anonymous (keyed by client IP)
  audience: string | null; // expected `aud`; must be set when any key is configured
  issuers: string[] | null; // accepted `iss`; null: any (the claim is then optional)
  hs256SecretFile: string | null;
  jwksFile: string | null;
  leewaySecs: number; // clock skew tolerated on `exp` and `nbf`
}
