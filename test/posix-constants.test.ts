// Every number in src/protocol/posix-constants.ts against what a program compiled by emcc sees:
// test/fixtures/posix/constants.c prints its libc's values (errno, EAI, socket constants, struct
// sizes and offsets) and Bun runs it. Without emcc the test is skipped (where CI requires emcc, it fails).
import { describe, expect } from "bun:test";
import { join } from "node:path";
import * as C from "../src/protocol/posix-constants.ts";
import { needing } from "./helpers/components.ts";
import { compileOnce, FIXTURES } from "./helpers/emscripten.ts";

const emcc = needing("emcc");

type Row = [group: string, name: string, value: number];

function programValues(): Row[] {
  const built = compileOnce(join(FIXTURES, "constants.c"), ["-sENVIRONMENT=node", "-sWASM_ASYNC_COMPILATION=0"], { ext: "js" });
  const r = Bun.spawnSync([process.execPath, join(built.dir, built.main)], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`constants program failed: ${r.stderr.toString()}`);
  return JSON.parse(r.stdout.toString()) as Row[];
}

const GROUPS: Record<string, Record<string, number>> = {
  ERRNO: C.ERRNO,
  EAI: C.EAI,
  AF: C.AF,
  SOCK: C.SOCK,
  IPPROTO: C.IPPROTO,
  SO: C.SO,
  TCP_OPT: C.TCP_OPT,
  MSG: C.MSG,
  SHUT: C.SHUT,
  AI: C.AI,
};
const SINGLES: Record<string, number> = {
  SOL_SOCKET: C.SOL_SOCKET,
  IPV6_V6ONLY: C.IPV6_V6ONLY,
  SOCKADDR_IN_BYTES: C.SOCKADDR_IN_BYTES,
  SOCKADDR_IN6_BYTES: C.SOCKADDR_IN6_BYTES,
  SOCKADDR_STORAGE_BYTES: C.SOCKADDR_STORAGE_BYTES,
  TIMEVAL_BYTES: C.TIMEVAL_BYTES,
};
/** The struct layout the codec is written for (docs/posix.md, "Addresses"). */
const LAYOUT: Record<string, number> = {
  "timeval.tv_usec": 4,
  "sockaddr_in.sin_port": 2,
  "sockaddr_in.sin_addr": 4,
  "sockaddr_in6.sin6_flowinfo": 4,
  "sockaddr_in6.sin6_addr": 8,
  "sockaddr_in6.sin6_scope_id": 24,
  "sizeof(socklen_t)": 4,
};

describe("posix constants = the compiled program's libc", () => {
  emcc.test("every constant and layout matches, and every constant in the table was checked", () => {
    const rows = programValues();
    const seen = new Set<string>();
    const mismatches: string[] = [];
    for (const [group, name, value] of rows) {
      seen.add(`${group}.${name}`);
      let ours: number | undefined;
      if (group === "") ours = SINGLES[name];
      else if (group === "LAYOUT") ours = LAYOUT[name];
      else if (group === "ERRNO_ALIAS") ours = name === "EWOULDBLOCK" ? C.ERRNO.EAGAIN : C.ERRNO.EOPNOTSUPP;
      else ours = GROUPS[group]?.[name];
      if (ours !== value) mismatches.push(`${group}.${name}: program ${value}, table ${ours}`);
    }
    expect(mismatches).toEqual([]);
    const unchecked = [
      ...Object.entries(GROUPS).flatMap(([g, t]) => Object.keys(t).map((k) => `${g}.${k}`)),
      ...Object.keys(SINGLES).map((k) => `.${k}`),
      ...Object.keys(LAYOUT).map((k) => `LAYOUT.${k}`),
    ].filter((k) => !seen.has(k));
    expect(unchecked).toEqual([]);
  });
});
