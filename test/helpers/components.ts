// Outside programs some tests need (a browser, openssl, python3, redis-server, emcc, qemu, ...).
// A test that cannot run for lack of one is reported SKIPPED, never passed. Where the component
// is required — CI is set and it is one CI installs, or WASMNET_REQUIRE names it — a missing one
// makes the test FAIL with a message naming it instead, so CI can never go green by skipping.
//
//   const browser = needing("chromium", "openssl");
//   browser.test("echo", async () => { ... });          // or browser.describe("...", () => { ... })
//   beforeAll(() => { if (!browser.available) return; ... });
//
// WASMNET_REQUIRE is a comma- or space-separated list of component names (or "all").
import { test, describe } from "bun:test";
import { existsSync } from "node:fs";

export type ComponentName =
  | "chromium"
  | "openssl"
  | "python3"
  | "redis-server"
  | "emcc"
  | "qemu-arm64"
  | "netns"
  | "chroot"
  | "systemd-analyze";

/** Installed by .ci/run, so a CI run must not skip what needs them. */
export const REQUIRED_IN_CI: readonly ComponentName[] = ["chromium", "openssl", "python3", "redis-server", "emcc"];

export const CHROMIUM_PATH = "/usr/bin/chromium";
export const ARM64_SYSROOT = "/usr/aarch64-linux-gnu";

export interface Component {
  name: ComponentName;
  available: boolean;
  /** The executable to run, when available. */
  path: string | null;
  /** Why it is missing and how to get it ("" when available). */
  why: string;
  /** Missing means FAIL, not skip (and why it is required), or null when a skip is allowed. */
  requiredBy: string | null;
}

function runs(cmd: string[]): boolean {
  try {
    return Bun.spawnSync(cmd, { stdin: "ignore", stdout: "ignore", stderr: "ignore" }).exitCode === 0;
  } catch {
    return false;
  }
}

/** An executable on PATH that answers `probe` (e.g. --version) with exit code 0. */
function executable(cmd: string, probe: string[], install: string): { path: string | null; why: string } {
  const path = Bun.which(cmd);
  if (!path) return { path: null, why: `${cmd} is not on PATH (install: ${install})` };
  if (!runs([path, ...probe])) return { path: null, why: `${path} ${probe.join(" ")} failed (install: ${install})` };
  return { path, why: "" };
}

const probes: Record<ComponentName, () => { path: string | null; why: string }> = {
  chromium: () =>
    existsSync(CHROMIUM_PATH) ? { path: CHROMIUM_PATH, why: "" } : { path: null, why: `${CHROMIUM_PATH} is missing (install: apt-get install -y chromium)` },
  openssl: () => executable("openssl", ["version"], "apt-get install -y openssl"),
  python3: () => executable("python3", ["-c", ""], "apt-get install -y python3"),
  "redis-server": () => executable("redis-server", ["--version"], "apt-get install -y redis-server"),
  emcc: () => executable("emcc", ["--version"], "apt-get install -y emscripten"),
  "qemu-arm64": () => {
    const q = executable("qemu-aarch64", ["--version"], "apt-get install -y qemu-user");
    if (!q.path) return q;
    const loader = `${ARM64_SYSROOT}/lib/ld-linux-aarch64.so.1`;
    return existsSync(loader) ? q : { path: null, why: `${loader} is missing (install: apt-get install -y libc6-arm64-cross)` };
  },
  netns: () => {
    if (process.platform !== "linux") return { path: null, why: "network namespaces need Linux" };
    const u = executable("unshare", ["--version"], "apt-get install -y util-linux");
    if (!u.path) return u;
    return runs([u.path, "-n", "true"]) ? u : { path: null, why: `${u.path} -n cannot make a network namespace here (needs root or user namespaces)` };
  },
  chroot: () => {
    if (process.platform !== "linux") return { path: null, why: "a chroot image run needs Linux" };
    if (process.getuid?.() !== 0) return { path: null, why: `a chroot image run needs root (uid ${process.getuid?.()})` };
    for (const cmd of ["chroot", "unshare", "ldd"]) if (!Bun.which(cmd)) return { path: null, why: `${cmd} is not on PATH` };
    return { path: Bun.which("chroot"), why: "" };
  },
  "systemd-analyze": () => executable("systemd-analyze", ["--version"], "apt-get install -y systemd"),
};

/** Why a missing `name` must fail rather than skip, or null. */
function requiredBy(name: ComponentName): string | null {
  const listed = (process.env.WASMNET_REQUIRE ?? "").split(/[\s,]+/).filter(Boolean);
  if (listed.includes(name) || listed.includes("all")) return `WASMNET_REQUIRE=${process.env.WASMNET_REQUIRE}`;
  const ci = process.env.CI;
  if (ci && ci !== "false" && ci !== "0" && REQUIRED_IN_CI.includes(name)) return `CI=${ci}`;
  return null;
}

const cache = new Map<ComponentName, Component>();

/** Whether `name` is here (probed once per process). */
export function component(name: ComponentName): Component {
  let c = cache.get(name);
  if (!c) {
    const p = probes[name]();
    c = { name, available: p.path !== null, path: p.path, why: p.why, requiredBy: requiredBy(name) };
    cache.set(name, c);
  }
  return c;
}

type TestBody = () => unknown;
type TestOptions = number | { timeout?: number };

export interface Needs {
  /** Every component is here: the tests run. */
  available: boolean;
  missing: Component[];
  /** `test`, or a skipped test (said loudly), or a test that fails naming what is missing. */
  test(name: string, fn: TestBody, options?: TestOptions): void;
  /** `describe`, or a skipped one (said loudly), or one test that fails naming what is missing. */
  describe(name: string, fn: () => void): void;
}

const warned = new Set<string>();

function warnSkipping(missing: Component[]): void {
  const key = missing.map((c) => c.name).join("+");
  if (warned.has(key)) return;
  warned.add(key);
  const bar = "!".repeat(78);
  console.warn(`\n${bar}\nSKIPPED (not passed): tests needing ${missing.map((c) => `${c.name} (${c.why})`).join(", ")}\n${bar}\n`);
}

function missingError(missing: Component[]): Error {
  return new Error(
    `required component missing: ${missing.map((c) => `${c.name}: ${c.why}; required because ${c.requiredBy}`).join("; ")}`,
  );
}

/** The tests that need every one of `names`. */
export function needing(...names: ComponentName[]): Needs {
  const missing = names.map(component).filter((c) => !c.available);
  const mustFail = missing.filter((c) => c.requiredBy !== null);
  if (missing.length === 0) {
    return {
      available: true,
      missing,
      test: (name, fn, options) => test(name, fn as never, options as never),
      describe: (name, fn) => describe(name, fn),
    };
  }
  if (mustFail.length > 0) {
    const fail = () => {
      throw missingError(mustFail);
    };
    return {
      available: false,
      missing,
      test: (name) => test(name, fail),
      describe: (name) => describe(name, () => test(`needs ${names.join(", ")}`, fail)),
    };
  }
  warnSkipping(missing);
  return {
    available: false,
    missing,
    test: (name, fn, options) => test.skip(name, fn as never, options as never),
    describe: (name, fn) => describe.skip(name, fn),
  };
}
