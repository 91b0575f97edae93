// Typed reads from one TOML table of the policy file. Every mistake throws a PolicyFileError
// that names the file, the full key (`profiles.free.network.allow[2]`) and the value, so the
// table parsers say only what they want, and a value of the wrong type never slips through.
import { dirname, resolve as resolvePath } from "node:path";
import { type Entry, PolicyEntryError, parseEntry } from "./entry.ts";

export type Table = Record<string, unknown>;

export class PolicyFileError extends Error {
  override name = "PolicyFileError";
  constructor(
    readonly file: string,
    readonly key: string | null,
    detail: string,
  ) {
    super(key === null ? `${file}: ${detail}` : `${file}: ${key}: ${detail}`);
  }
}

/** A value as the error messages show it. */
export function show(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (Array.isArray(v)) return "an array";
  if (v !== null && typeof v === "object") return v instanceof Date ? `the date ${v.toISOString()}` : "a table";
  return String(v);
}

export function isTable(v: unknown): v is Table {
  return v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Date);
}

/**
 * One table, read key by key. Each reader returns `current` (or undefined) when the key is
 * absent, so a table parser applied to a config that already holds values leaves the omitted
 * keys as they were: that is how a profile inherits from the top level.
 */
export class TableReader {
  constructor(
    readonly file: string,
    readonly path: string, // "network", or "profiles.free.network"
    private readonly table: Table,
  ) {}

  keyOf(k: string): string {
    return `${this.path}.${k}`;
  }

  fail(k: string, detail: string): never {
    throw new PolicyFileError(this.file, this.keyOf(k), detail);
  }

  has(k: string): boolean {
    return Object.hasOwn(this.table, k);
  }

  raw(k: string): unknown {
    return this.has(k) ? this.table[k] : undefined;
  }

  integer(k: string, current: number, min: number): number {
    const v = this.raw(k);
    if (v === undefined) return current;
    if (typeof v !== "number" || !Number.isInteger(v)) this.fail(k, `expected an integer, got ${show(v)}`);
    if (v < min) this.fail(k, `must be at least ${min}, got ${v}`);
    return v;
  }

  /** A finite number, 0 or more (or, with `positive`, more than 0). */
  number(k: string, current: number, { positive = false } = {}): number {
    const v = this.raw(k);
    if (v === undefined) return current;
    if (typeof v !== "number" || !Number.isFinite(v)) this.fail(k, `expected a number, got ${show(v)}`);
    if (positive ? v <= 0 : v < 0) this.fail(k, `must be ${positive ? "greater than 0" : "0 or more"}, got ${v}`);
    return v;
  }

  boolean(k: string, current: boolean): boolean {
    const v = this.raw(k);
    if (v === undefined) return current;
    if (typeof v !== "boolean") this.fail(k, `expected true or false, got ${show(v)}`);
    return v;
  }

  /** A non-empty string. `what` describes it in the error ("a file path"). */
  string(k: string, what = "a non-empty string"): string | undefined {
    const v = this.raw(k);
    if (v === undefined) return undefined;
    if (typeof v !== "string" || v === "") this.fail(k, `expected ${what}, got ${show(v)}`);
    return v;
  }

  oneOf<T extends string>(k: string, choices: readonly T[], current: T): T {
    const v = this.raw(k);
    if (v === undefined) return current;
    if (typeof v !== "string" || !(choices as readonly string[]).includes(v)) {
      this.fail(k, `expected ${choices.map((c) => JSON.stringify(c)).join(" or ")}, got ${show(v)}`);
    }
    return v as T;
  }

  stringArray(k: string): string[] | undefined {
    const v = this.raw(k);
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) this.fail(k, `expected an array of strings, got ${show(v)}`);
    v.forEach((item, i) => {
      if (typeof item !== "string") this.fail(`${k}[${i}]`, `expected a string, got ${show(item)}`);
    });
    return [...(v as string[])];
  }

  /** An array of policy entries; a bad one is named by its index. */
  entries(k: string): Entry[] | undefined {
    return this.stringArray(k)?.map((s, i) => {
      try {
        return parseEntry(s);
      } catch (e) {
        if (e instanceof PolicyEntryError) this.fail(`${k}[${i}]`, e.message);
        throw e;
      }
    });
  }

  /** Entries that must be IP addresses or CIDRs without a port (bind_addrs, trusted_proxies). */
  addresses(k: string): Entry[] | undefined {
    const list = this.entries(k);
    list?.forEach((e, i) => {
      if (e.host.kind !== "cidr" || e.ports !== null) {
        this.fail(`${k}[${i}]`, `${JSON.stringify(e.text)}: expected an IP address or CIDR without a port`);
      }
    });
    return list;
  }

  /** A path, resolved against the policy file's directory (so a file can travel with its keys). */
  filePath(k: string): string | undefined {
    const p = this.string(k, "a file path");
    return p === undefined ? undefined : resolvePath(dirname(this.file), p);
  }
}
