// The policy file. Every mistake is fatal at start-up and names the file, the
// key and the value: a typo that silently drops a deny rule is exactly the
// kind of misconfiguration that turns a relay into an SSRF proxy.
import { existsSync, readFileSync } from "node:fs";
import { TomlError, parse as parseToml } from "smol-toml";
import { type PolicyConfig, copyPolicy, defaultPolicy } from "./config.ts";
import { TABLES } from "./tables.ts";
import { PolicyFileError, type Table, TableReader, isTable, show } from "./toml-reader.ts";

// The rest of the server reaches the policy through this module.
export { type PolicyConfig, defaultPolicy, policyFor, unrestrictedPolicy } from "./config.ts";
export { PolicyFileError } from "./toml-reader.ts";

const PROFILE_NAME = /^[a-z0-9_-]{1,64}$/;

export function parsePolicy(text: string, source: string): PolicyConfig {
  const doc = parseDocument(text, source);
  const { profiles, ...tables } = doc;
  const cfg = defaultPolicy();
  cfg.source = source;
  applyTables(tables, cfg, source, null);
  // Profiles start from the finished top level, wherever they appear in the file.
  if (Object.hasOwn(doc, "profiles")) cfg.profiles = parseProfiles(profiles, cfg, source);
  checkWispProfiles(cfg, source);
  return cfg;
}

/** A Wisp user's profile must exist: logging in must never fall back to a wider policy. */
function checkWispProfiles(cfg: PolicyConfig, file: string): void {
  for (const [user, u] of cfg.wisp.users) {
    if (u.profile === null || cfg.profiles.has(u.profile)) continue;
    const known = cfg.profiles.size === 0 ? "no [profiles.NAME] is defined" : `defined: ${[...cfg.profiles.keys()].join(", ")}`;
    throw new PolicyFileError(file, `wisp.users.${user}.profile`, `unknown profile ${JSON.stringify(u.profile)} (${known})`);
  }
}

function parseDocument(text: string, source: string): Table {
  try {
    return parseToml(text, { unsafeKeyBehaviour: "throw" }) as Table;
  } catch (e) {
    if (e instanceof TomlError) {
      const first = e.message.split("\n")[0]!.replace(/^Invalid TOML document: /, "");
      throw new PolicyFileError(`${source}:${e.line}:${e.column}`, null, `TOML syntax error: ${first}`);
    }
    throw new PolicyFileError(source, null, `TOML syntax error: ${(e as Error).message}`);
  }
}

/**
 * Check every table and key of `doc` (the file's top level, or one profile), then run the
 * table parsers over `cfg` in their fixed order. Inside a profile, server-wide tables and
 * keys are refused rather than ignored: a limit that silently does not apply is worse than
 * an error at start-up.
 */
function applyTables(doc: Table, cfg: PolicyConfig, file: string, profile: string | null): void {
  const prefix = profile === null ? "" : `profiles.${profile}.`;
  const fail = (key: string, detail: string): never => {
    throw new PolicyFileError(file, `${prefix}${key}`, detail);
  };
  const known = Object.keys(TABLES);
  const topLevelOnly = profile === null ? ", profiles" : "";
  for (const [name, value] of Object.entries(doc)) {
    if (!Object.hasOwn(TABLES, name)) {
      fail(name, `unknown ${isTable(value) ? "table" : "key"} (known tables: ${known.join(", ")}${topLevelOnly})`);
    }
    const spec = TABLES[name]!;
    if (!isTable(value)) fail(name, `expected a table [${prefix}${name}], got ${show(value)}`);
    if (profile !== null && spec.serverWide === true) {
      fail(name, `[${name}] holds for the whole server: set it at the top level, not in a profile`);
    }
    for (const key of Object.keys(value as Table)) {
      if (!spec.keys.includes(key)) fail(`${name}.${key}`, `unknown key (known in [${name}]: ${spec.keys.join(", ")})`);
      if (profile !== null && spec.serverWide !== true && spec.serverWide.includes(key)) {
        fail(`${name}.${key}`, `holds for the whole server: set it in the top-level [${name}], not in a profile`);
      }
    }
  }
  for (const [name, spec] of Object.entries(TABLES)) {
    if (Object.hasOwn(doc, name)) spec.parse(new TableReader(file, `${prefix}${name}`, doc[name] as Table), cfg);
  }
}

function parseProfiles(value: unknown, top: PolicyConfig, file: string): Map<string, PolicyConfig> {
  if (!isTable(value)) throw new PolicyFileError(file, "profiles", `expected tables [profiles.NAME], got ${show(value)}`);
  const profiles = new Map<string, PolicyConfig>();
  for (const [name, body] of Object.entries(value)) {
    const key = `profiles.${name}`;
    if (!PROFILE_NAME.test(name)) {
      throw new PolicyFileError(file, key, `profile names are 1-64 characters of a-z, 0-9, "_" and "-", got ${JSON.stringify(name)}`);
    }
    if (!isTable(body)) throw new PolicyFileError(file, key, `expected a table [${key}], got ${show(body)}`);
    const cfg = copyPolicy(top);
    applyTables(body, cfg, file, name);
    profiles.set(name, cfg);
  }
  return profiles;
}

export function loadPolicyFile(path: string): PolicyConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new PolicyFileError(path, null, `cannot read: ${(e as Error).message}`);
  }
  const cfg = parsePolicy(text, path);
  // Only server-wide tables name files, so the top level has them all.
  const files: [string, string | null][] = [
    ["tls.ca_file", cfg.tls.caFile],
    ["auth.hs256_secret_file", cfg.auth.hs256SecretFile],
    ["auth.jwks_file", cfg.auth.jwksFile],
  ];
  for (const [key, file] of files) {
    if (file !== null && !existsSync(file)) throw new PolicyFileError(path, key, `file not found: ${JSON.stringify(file)}`);
  }
  return cfg;
}
