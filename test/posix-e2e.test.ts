// A real C program against wasmnet's /posix/ endpoint: test/fixtures/posix/posix-client.c, built
// with `emcc -lwebsocket -sPROXY_POSIX_SOCKETS -pthread -sPROXY_TO_PTHREAD` (Emscripten 3.1.6's
// stub forwards every socket call), runs in headless Chromium on a cross-origin-isolated page
// and talks to real targets on loopback through wasmnet, under a policy that allows loopback
// except one port. It prints OK per check (its own errno constants: ECONNREFUSED, EACCES,
// EAGAIN), then DONE. Without emcc or Chromium the tests are skipped (where CI requires them,
// they fail).
import { afterAll, beforeAll, describe, expect } from "bun:test";
import type { Socket } from "bun";
import { join } from "node:path";
import { createLogger } from "../src/log.ts";
import { parsePolicy } from "../src/policy/load.ts";
import { launchBrowser, openPage, type Browser } from "./helpers/browser.ts";
import { needing } from "./helpers/components.ts";
import { dnsServer } from "./helpers/dns-server.ts";
import { compileOnce, compilePosixClient, EXAMPLE_DIR, readmeEmccFlags, runPosixProgram, servePage, type PageServer, type ProgramLines } from "./helpers/emscripten.ts";
import { startServer } from "./helpers/server.ts";
import { echoServer, freePort, udpEcho, type Peer } from "./helpers/targets.ts";
import { waitFor } from "./helpers/wait.ts";

const needs = needing("emcc", "chromium");

const GREETING = "hello from the test\n";
const NAME = "echo.posix.test";
const REFUSED_NAME = "denied.posix.test";

let srv: Awaited<ReturnType<typeof startServer>>;
let page: PageServer;
let browser: Browser;
const logLines: Array<Record<string, unknown>> = [];
const echo = echoServer();
const echo6 = echoServer("::1");
/** A live target the policy refuses: EACCES must come from the policy, not from the network. */
const forbidden = echoServer();
let udp: Peer;
let udp6: Peer;
/** Accepts and says nothing (for SO_RCVTIMEO). */
const silent = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {}, error() {} } });

beforeAll(async () => {
  if (!needs.available) return;
  udp = await udpEcho("127.0.0.1");
  udp6 = await udpEcho("::1");
  const compiled = compilePosixClient();
  page = servePage(compiled);
  const policy = parsePolicy(
    `[network]
deny = ["127.0.0.1:${forbidden.port}", "[::1]:${forbidden.port}", "${REFUSED_NAME}"]
allow = ["127.0.0.1", "::1"]
bind_ports = "1024-65535"
`,
    "posix-e2e.test.toml",
  );
  const names: Record<string, string[]> = { [NAME]: ["127.0.0.1", "::1"], [REFUSED_NAME]: ["127.0.0.1"] };
  srv = await startServer({ policy, resolver: async (n) => names[n] ?? [], logger: createLogger("info", (l) => logLines.push(JSON.parse(l))) });
  browser = await launchBrowser();
}, 180_000);

afterAll(async () => {
  await browser?.close();
  page?.stop();
  await srv?.stop();
  for (const t of [echo, echo6, forbidden]) t.stop();
  udp?.stop();
  udp6?.stop();
  silent.stop(true);
});

/** Runs the program against wasmnet's /posix/ (see runPosixProgram). */
const runProgram = (args: Record<string, string>, onListening?: (port: number, lines: ProgramLines) => Promise<void>) =>
  runPosixProgram(browser, page, `ws://127.0.0.1:${srv.port}/posix/`, args, onListening);

/** The test is the other end of the program's listen check: it dials in, says a line, reads the echo. */
async function dialIn(port: number): Promise<string> {
  let got = "";
  let closed = false;
  const s: Socket<undefined> = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data: (_s, d) => void (got += new TextDecoder().decode(d)),
      close: () => void (closed = true),
      error() {},
    },
  });
  s.write(GREETING);
  await waitFor(() => got.endsWith("\n") || closed, { what: "the program's answer", timeoutMs: 20_000, detail: () => got });
  s.end();
  return got;
}

describe("a C program built with emcc -sPROXY_POSIX_SOCKETS, through wasmnet's /posix/", () => {
  needs.test(
    "IPv4: TCP echo, UDP exchange, getaddrinfo, bind/listen/accept, ECONNREFUSED, EACCES, SO_RCVTIMEO, EAI_NONAME, small getsockname",
    async () => {
      let answered = "";
      const { lines, problems } = await runProgram(
        {
          tcp: `127.0.0.1:${echo.port}`,
          udp: `127.0.0.1:${udp.port}`,
          resolve: NAME,
          numeric: "127.0.0.1",
          listen: "0",
          refused: `127.0.0.1:${freePort()}`,
          denied: `127.0.0.1:${forbidden.port}`,
          rcvtimeo: `127.0.0.1:${silent.port}`,
          noname: REFUSED_NAME,
          smallname: "1",
        },
        async (port) => {
          answered = await dialIn(port);
        },
      );
      expect(lines.filter((l) => !l.startsWith("LISTENING "))).toEqual([
        "OK tcp",
        "OK udp",
        "OK resolve",
        "OK numeric",
        "OK listen",
        "OK refused",
        "OK denied",
        "OK rcvtimeo",
        "OK noname",
        "OK smallname",
        "DONE",
      ]);
      expect(answered).toBe(`echo: ${GREETING}`);
      expect(problems).toEqual([]);
      expect(forbidden.accepted).toBe(0);
      // The session's streams were audited like any other's, and its sockets are gone.
      expect(logLines.some((l) => l.msg === "stream end" && l.port === echo.port && l.kind === "tcp")).toBe(true);
      expect(logLines.some((l) => l.msg === "denied" && String(l.target).includes(String(forbidden.port)))).toBe(true);
      await waitFor(() => ["tcp", "udp", "listener", "inbound"].every((k) => srv.handler.ctx.metrics.sockets[k as "tcp"] === 0), {
        what: "every socket of the program to be closed",
        detail: () => srv.handler.ctx.metrics.sockets,
      });
    },
    120_000,
  );

  needs.test(
    "IPv6: TCP echo, UDP exchange, ECONNREFUSED and EACCES on ::1",
    async () => {
      const { lines, problems } = await runProgram({
        tcp: `[::1]:${echo6.port}`,
        udp: `[::1]:${udp6.port}`,
        numeric: "::1",
        refused: `[::1]:${freePort()}`,
        denied: `[::1]:${forbidden.port}`,
      });
      expect(lines).toEqual(["OK tcp", "OK udp", "OK numeric", "OK refused", "OK denied", "DONE"]);
      expect(problems).toEqual([]);
    },
    120_000,
  );
});

describe("examples/emscripten, run as its README says", () => {
  needs.test(
    "an HTTP GET and a DNS query through /posix/ under a policy that allows just those; another port is EACCES",
    async () => {
      const http = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("hello\n") });
      const dns = await dnsServer({ "example.test": ["192.0.2.7"] });
      const closed = freePort();
      const wasmnet = await startServer({
        policy: parsePolicy(`[network]\ndeny = ["*:25"]\nallow = ["127.0.0.1:${http.port}", "127.0.0.1:${dns.port}"]\n`, "example.toml"),
      });
      const example = servePage(compileOnce(join(EXAMPLE_DIR, "http-and-dns.c"), readmeEmccFlags(), { inputs: [join(EXAMPLE_DIR, "shell.html")] }));
      try {
        const query = new URLSearchParams({ bridge: `ws://127.0.0.1:${wasmnet.port}/posix/` });
        const run = async (args: string) => {
          const { page: tab, problems } = await openPage(browser, `${example.url}?${query}&${args}`);
          const text = () => tab.evaluate(() => document.getElementById("out")!.textContent ?? "");
          await waitFor(async () => (await text()).includes("done\n"), { what: "the example to print done", timeoutMs: 45_000 });
          const out = (await text()).trim().split("\n");
          await tab.close();
          expect(problems.errors).toEqual([]);
          return out;
        };
        expect(await run(`get=127.0.0.1:${http.port}/&dns=example.test&resolver=127.0.0.1:${dns.port}`)).toEqual([
          expect.stringMatching(new RegExp(`^get: 127\\.0\\.0\\.1:${http.port}/ -> "HTTP/1\\.1 200 OK", \\d+ bytes$`)),
          `dns: example.test: rcode 0, 1 answers from 127.0.0.1:${dns.port}`,
          "dns: example.test A 192.0.2.7",
          "done",
        ]);
        expect(dns.queries).toContain("example.test A");
        expect(await run(`get=127.0.0.1:${closed}/`)).toEqual(["get: connect: Permission denied", "done"]);
      } finally {
        example.stop();
        await wasmnet.stop();
        dns.stop();
        http.stop(true);
      }
    },
    120_000,
  );
});
