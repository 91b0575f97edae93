// `wasmnet token create` and `wasmnet token keygen`: operator tools for the token layer.
import { readFileSync } from "node:fs";
import { defineCommand } from "citty";
import { createToken, generateKeys, parseDuration } from "./auth/issue.ts";
import { type AsymmetricAlg, readHs256Secret } from "./auth/keys.ts";
import { fail } from "./cli-fail.ts";


const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e));

/**
 * Every `--allow` value, in order. The argument parser keeps only the last value of a repeated
 * flag, so the raw arguments are read here; each value may also hold several entries separated
 * by commas (policy entries never contain one).
 */
export function allowArgs(rawArgs: readonly string[]): string[] {
  const values: string[] = [];
  for (let i = 0; i < rawArgs.length; i++) {
    const a = rawArgs[i] as string;
    if (a === "--") break;
    if (a === "--allow") {
      const v = rawArgs[i + 1];
      if (v === undefined) fail("--allow needs a value");
      values.push(v);
      i++;
    } else if (a.startsWith("--allow=")) {
      values.push(a.slice("--allow=".length));
    }
  }
  return values.flatMap((v) => v.split(",")).map((e) => e.trim()).filter((e) => e !== "");
}

const create = defineCommand({
  meta: { name: "create", description: "Sign a token and print it (for testing, or for an app that shells out)" },
  args: {
    "secret-file": { type: "string", description: "HS256 shared secret file (the server's hs256_secret_file)" },
    key: { type: "string", description: "private JWK file from `token keygen` (EdDSA or ES256)" },
    sub: { type: "string", description: "the identity (required)" },
    profile: { type: "string", description: "policy profile the token selects ([profiles.NAME])" },
    allow: {
      type: "string",
      description: "narrow the profile to these destinations; repeat the flag or separate entries with commas (--allow a:443 --allow b:443, or --allow a:443,b:443)",
    },
    ttl: { type: "string", description: "lifetime: 30s, 15m, 2h, 1d (default 15m)" },
    aud: { type: "string", description: "audience (default wasmnet; must equal the server's [auth] audience)" },
    iss: { type: "string", description: "issuer (must be in the server's [auth] issuers, when that is set)" },
  },
  async run({ args, rawArgs }) {
    const secretFile = args["secret-file"];
    const keyFile = args.key;
    if ((secretFile === undefined) === (keyFile === undefined)) fail("token create needs exactly one of --secret-file or --key");
    if (typeof args.sub !== "string" || args.sub === "") fail("token create needs --sub (the identity)");
    let ttlSecs: number;
    try {
      ttlSecs = parseDuration(args.ttl ?? "15m");
    } catch (e) {
      fail(`--ttl: ${errorText(e)}`);
    }
    let secret: Uint8Array | undefined;
    let privateJwk: Record<string, unknown> | undefined;
    try {
      if (secretFile !== undefined) secret = readHs256Secret(secretFile);
      else privateJwk = JSON.parse(readFileSync(keyFile as string, "utf8"));
    } catch (e) {
      fail(e instanceof SyntaxError ? `${keyFile}: not valid JSON` : errorText(e));
    }
    const allow = allowArgs(rawArgs);
    try {
      const token = await createToken({
        secret,
        privateJwk,
        sub: args.sub,
        profile: args.profile,
        allow: allow.length > 0 ? allow : undefined,
        ttlSecs,
        aud: args.aud ?? "wasmnet",
        iss: args.iss,
      });
      process.stdout.write(`${token}\n`);
    } catch (e) {
      fail(errorText(e));
    }
  },
});

const keygen = defineCommand({
  meta: { name: "keygen", description: "Make a key pair: private.jwk.json (signs tokens) and public.jwks.json (the server's jwks_file)" },
  args: {
    alg: { type: "string", description: "EdDSA (Ed25519, default) or ES256 (P-256)" },
    out: { type: "string", description: "directory to write the two files into (created if missing; existing files are not overwritten)" },
  },
  async run({ args }) {
    const alg = args.alg ?? "EdDSA";
    if (alg !== "EdDSA" && alg !== "ES256") fail(`--alg must be EdDSA or ES256, got "${alg}"`);
    if (typeof args.out !== "string" || args.out === "") fail("token keygen needs --out DIR");
    try {
      const k = await generateKeys({ alg: alg as AsymmetricAlg, outDir: args.out });
      process.stdout.write(
        `wrote ${k.privateFile} (private ${k.alg} key, mode 0600: keep it with the app that signs tokens)\n` +
          `wrote ${k.publicFile} (public key: point [auth] jwks_file at it)\n` +
          `kid ${k.kid}\n`,
      );
    } catch (e) {
      fail(errorText(e));
    }
  },
});

export const tokenCommand = defineCommand({
  meta: { name: "token", description: "Token tools: create a token, generate a signing key pair" },
  subCommands: { create, keygen },
});
