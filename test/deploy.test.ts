// The deployment files agree with the server: deploy/compose.yaml (+ compose/policy.toml and
// compose/Caddyfile), deploy/kubernetes/*.yaml and deploy/grafana/wasmnet.json are parsed and
// checked against the code and the Dockerfile — ports, probes, the drain and its grace periods,
// policies (parsed by the server's own parser), where key files are mounted, the Redis address,
// the user id, and every metric name and label the dashboard queries. There is no docker or
// kubectl here: the checks are static, plus a server on loopback for what only a running
// server can say (the labels /metrics exports, and the probe command during a drain).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { basename, dirname, join, posix, resolve } from "node:path";
import ipaddr from "ipaddr.js";
import { checkHs256Secret } from "../src/auth/keys.ts";
import { DEFAULT_PORT, SHUTDOWN_GRACE_MS } from "../src/constants.ts";
import { defaultPolicy } from "../src/policy/config.ts";
import { type PolicyConfig, parsePolicy } from "../src/policy/load.ts";
import { memoryBudgetMb } from "../src/policy/memory-budget.ts";
import { FAMILIES, type FamilyName, Metrics } from "../src/session/metrics.ts";
import { exposedLabels, legendLabels, queryRefs } from "./helpers/promql.ts";
import { startServer } from "./helpers/server.ts";
import { spawnServer } from "./helpers/spawn.ts";
import { waitFor } from "./helpers/wait.ts";
import { duplicateKeys, parseYamlDocuments } from "./helpers/yaml.ts";

const REPO = resolve(import.meta.dir, "..");
const DEPLOY = join(REPO, "deploy");
const read = (path: string) => readFileSync(join(REPO, path), "utf8");

// Manifests are untyped data; these tests navigate them freely and fail on what is missing.
type Any = any;

/** Seconds after SIGTERM until the port is released at the latest: the drain, then the release. */
const releaseSecs = SHUTDOWN_GRACE_MS / 1000;

// ---------------------------------------------------------------- small readers

/** A flag's value in an argument list: `--name V`, `--name=V`, or `-s V`. */
function flag(args: readonly string[], long: string, short?: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === `--${long}` || (short !== undefined && a === `-${short}`)) return args[i + 1];
    if (a.startsWith(`--${long}=`)) return a.slice(long.length + 3);
  }
  return undefined;
}

/** What a wasmnet command line means for these checks. */
function serverArgs(args: readonly string[]) {
  const port = flag(args, "port", "p");
  const drain = flag(args, "drain-secs");
  return {
    port: port === undefined ? DEFAULT_PORT : Number(port),
    policy: flag(args, "policy") ?? null,
    drainSecs: drain === undefined ? null : Number(drain),
  };
}

/** The drain the server runs with: --drain-secs, else the policy's [server] drain_secs, else the default. */
function drainSecsOf(args: ReturnType<typeof serverArgs>, policy: PolicyConfig | null): number {
  return args.drainSecs ?? policy?.server.drainSecs ?? defaultPolicy().server.drainSecs;
}

/** A compose duration ("20s", "1m30s", "500ms") in seconds. */
function composeSeconds(d: string | number): number {
  if (typeof d === "number") return d;
  const units: Record<string, number> = { h: 3600, m: 60, s: 1, ms: 0.001, us: 0.000001 };
  let total = 0;
  let rest = d;
  for (const m of d.matchAll(/(\d+(?:\.\d+)?)(h|ms|us|m|s)/g)) {
    total += Number(m[1]) * units[m[2]!]!;
    rest = rest.replace(m[0], "");
  }
  if (rest !== "" || total === 0) throw new Error(`not a duration: ${JSON.stringify(d)}`);
  return total;
}

/** A Kubernetes memory quantity ("512Mi", "1G", "268435456") in bytes. */
function k8sBytes(q: string | number): number {
  if (typeof q === "number") return q;
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(q);
  if (m === null) throw new Error(`not a memory quantity: ${JSON.stringify(q)}`);
  const mult: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, k: 1e3, M: 1e6, G: 1e9, T: 1e12 };
  return Number(m[1]) * (m[2] ? mult[m[2]]! : 1);
}

/** A Docker memory size ("512M", "1g", "1024k"): binary units, as Docker reads them. */
function dockerBytes(q: string | number): number {
  if (typeof q === "number") return q;
  const m = /^(\d+)([bkmg])?$/i.exec(q);
  if (m === null) throw new Error(`not a memory size: ${JSON.stringify(q)}`);
  const mult: Record<string, number> = { b: 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30 };
  return Number(m[1]) * (m[2] ? mult[m[2].toLowerCase()]! : 1);
}

const MIB = 2 ** 20;

/**
 * A policy file's comment about the default memory budget ("512Mi → 256") must say what the
 * code computes: half of the container's limit.
 */
function expectBudgetComment(policyText: string, limitBytes: number, where: string): void {
  const policy = parsePolicy(policyText, where);
  const budget = memoryBudgetMb(Number.MAX_SAFE_INTEGER, limitBytes);
  expect(budget).toBe(Math.floor(limitBytes / 2 / MIB));
  const m = /max_memory_mb: unset[^\n]*?(\d+)\s*(Mi|M)\s*→\s*(\d+)/.exec(policyText);
  expect(m, `${where} says what max_memory_mb defaults to`).not.toBeNull();
  expect(Number(m![1]) * MIB).toBe(limitBytes);
  expect(Number(m![3])).toBe(budget);
  expect(policyText).not.toMatch(/^\s*max_memory_mb\s*=/m); // the comment only holds while unset
  expect(policy.limits.maxMemoryMb).toBeGreaterThan(0);
}

// ---------------------------------------------------------------- the Dockerfile

const dockerfile = read("Dockerfile");
const finalStage = dockerfile.split(/^FROM\s+/m).at(-1)!;
const instruction = (name: string) => new RegExp(`^${name}\\s+(.+)$`, "m").exec(finalStage)?.[1]?.trim();
const image = {
  uid: Number(/^(\d+)/.exec(instruction("USER") ?? "")?.[1]),
  gid: Number(/:(\d+)$/.exec(instruction("USER") ?? "")?.[1]),
  entrypoint: JSON.parse(instruction("ENTRYPOINT") ?? "null") as string[],
  cmd: JSON.parse(instruction("CMD") ?? "null") as string[],
  expose: Number(instruction("EXPOSE")),
  stopSignal: instruction("STOPSIGNAL") ?? "SIGTERM",
};

describe("the Dockerfile", () => {
  test("runs as a numeric non-root user, exposes the server's port and serves on it", () => {
    expect(image.uid).toBe(65532);
    expect(image.gid).toBe(65532);
    expect(image.expose).toBe(DEFAULT_PORT);
    expect(serverArgs(image.cmd).port).toBe(image.expose);
    expect(image.entrypoint).toEqual(["/wasmnet"]);
    // The server drains on SIGTERM (what Docker and Kubernetes send): nothing may change that.
    expect(image.stopSignal).toBe("SIGTERM");
  });
});

// ---------------------------------------------------------------- YAML helper

describe("the YAML helper", () => {
  test("one list per document, whatever a document holds", () => {
    expect(parseYamlDocuments("a: 1\n")).toEqual([{ a: 1 }]);
    expect(parseYamlDocuments("- x\n- y\n")).toEqual([["x", "y"]]);
    expect(parseYamlDocuments("# head\n---\nkind: A\n---   # two\nkind: B\n---\n")).toEqual([{ kind: "A" }, { kind: "B" }]);
    expect(parseYamlDocuments("x-a: &a\n  image: w\ns:\n  <<: *a\n  n: 1\n")).toEqual([{ "x-a": { image: "w" }, s: { image: "w", n: 1 } }]);
    expect(parseYamlDocuments("data:\n  f: |\n    a = 1\n    b = \"c\"\n")).toEqual([{ data: { f: 'a = 1\nb = "c"\n' } }]);
    expect(() => parseYamlDocuments("a: [1\nb: 2\n")).toThrow();
  });

  test("duplicate keys are found per mapping, in lists, not inside block scalars or across documents", () => {
    const text = [
      "spec:", //                1
      "  ports:", //             2
      "    - name: a", //        3
      "      port: 1", //        4
      "      name: b", //        5 duplicate in the item
      "    - name: c", //        6 a new item: not a duplicate
      '  "ports": []', //        7 duplicate in spec (quoted)
      "x: |", //                 8
      "  a: 1", //               9
      "  a: 2", //              10 block scalar content
      "y: 1", //                11
      "---", //                 12
      "y: 2", //                13 another document
      "spec:", //               14
      "  template:", //         15
      "    metadata: {}", //    16
      "  template: {}", //      17 duplicate
    ].join("\n");
    expect(duplicateKeys(text)).toEqual([
      { line: 5, key: "name", path: "spec.ports[]" },
      { line: 7, key: "ports", path: "spec" },
      { line: 17, key: "template", path: "spec" },
    ]);
    expect(duplicateKeys("a:\n  - b: 1\n    c: 2\n  - b: 3\nd:\n  - b: 4\n")).toEqual([]);
    expect(duplicateKeys("test: [\"CMD\", \"x:y\"]\nurl: http://h:1/p\nimage: redis:7\n- ./a:/b:ro\n")).toEqual([]);
  });
});

// ---------------------------------------------------------------- every manifest

const yamlFiles = [
  "deploy/compose.yaml",
  ...readdirSync(join(DEPLOY, "kubernetes"))
    .filter((f) => f.endsWith(".yaml") || f.endsWith(".yml"))
    .map((f) => `deploy/kubernetes/${f}`),
];

describe("every manifest parses", () => {
  for (const file of yamlFiles) {
    test(file, () => {
      const text = read(file);
      expect(duplicateKeys(text)).toEqual([]);
      const docs = parseYamlDocuments(text);
      expect(docs.length).toBeGreaterThan(0);
      for (const d of docs) expect(typeof d).toBe("object");
    });
  }
});

// ---------------------------------------------------------------- compose

describe("deploy/compose.yaml", () => {
  const compose = parseYamlDocuments(read("deploy/compose.yaml"))[0] as Any;
  const services = Object.entries(compose.services as Record<string, Any>);
  const isWasmnet = (s: Any) => s.image === "wasmnet:latest" || (s.build !== undefined && resolve(DEPLOY, s.build.context) === REPO);
  const wasmnets = services.filter(([, s]) => isWasmnet(s));
  const redis = services.filter(([, s]) => /^redis(:|$)/.test(s.image ?? ""));
  const caddy = services.filter(([, s]) => /^caddy(:|$)/.test(s.image ?? ""));

  /** The host file a service mounts at `target` (paths relative to deploy/). */
  const mounted = (s: Any, target: string): string | null => {
    for (const v of (s.volumes ?? []) as (string | Any)[]) {
      const [src, dst] = typeof v === "string" ? v.split(":") : [v.source, v.target];
      if (dst === target && src !== undefined && /^\.{1,2}\//.test(src)) return resolve(DEPLOY, src);
    }
    return null;
  };

  test("two wasmnet instances built from the repository's Dockerfile, one Redis, one Caddy", () => {
    expect(wasmnets.length).toBe(2);
    for (const [, s] of wasmnets) {
      expect(resolve(DEPLOY, s.build.context)).toBe(REPO);
      expect(existsSync(join(REPO, s.build.dockerfile ?? "Dockerfile"))).toBe(true);
    }
    expect(redis.length).toBe(1);
    expect(caddy.length).toBe(1);
  });

  for (const [name, s] of wasmnets) {
    describe(name, () => {
      const args = serverArgs(s.command ?? image.cmd);
      const policyFile = args.policy === null ? null : mounted(s, args.policy);
      const policy = policyFile === null ? null : parsePolicy(readFileSync(policyFile, "utf8"), args.policy!);

      test("serves on the image's port, as its own user, read-only, with the shared policy mounted", () => {
        expect(args.port).toBe(image.expose);
        if (s.user !== undefined) expect(String(s.user)).toBe(`${image.uid}:${image.gid}`);
        expect(s.read_only).toBe(true);
        expect(s.cap_drop).toContain("ALL");
        expect(policyFile).toBe(join(DEPLOY, "compose/policy.toml"));
        for (const v of s.volumes as string[]) if (typeof v === "string" && v.includes("policy.toml")) expect(v.endsWith(":ro")).toBe(true);
      });

      test("its healthcheck is the binary probing /healthz on the port it serves", () => {
        expect(s.healthcheck.test).toEqual(["CMD", image.entrypoint[0], "healthcheck", `http://127.0.0.1:${args.port}/healthz`]);
      });

      test("stop: SIGTERM, and a grace period longer than the drain plus the port's release", () => {
        expect(s.stop_signal ?? image.stopSignal).toBe("SIGTERM");
        expect(s.stop_grace_period).toBeDefined(); // Docker's default (10 s) is no longer than drain_secs here
        expect(composeSeconds(s.stop_grace_period)).toBeGreaterThan(drainSecsOf(args, policy) + releaseSecs);
      });

      test("a memory limit, and the policy's note on the budget it implies is right", () => {
        const limit = dockerBytes(s.deploy.resources.limits.memory);
        expectBudgetComment(readFileSync(policyFile!, "utf8"), limit, "deploy/compose/policy.toml");
      });
    });
  }

  const [caddyName, caddyService] = caddy[0]!;
  const policyText = read("deploy/compose/policy.toml");
  const policy = parsePolicy(policyText, "/etc/wasmnet/policy.toml");

  test("the policy counts limits in the compose Redis, at the port it listens on", () => {
    expect(policy.cluster.redis).not.toBeNull();
    const url = new URL(policy.cluster.redis!);
    const [redisName, redisService] = redis[0]!;
    expect(url.hostname).toBe(redisName);
    const redisPort = Number(flag(redisService.command ?? [], "port") ?? 6379);
    expect(Number(url.port || 6379)).toBe(redisPort);
    expect(redisService.healthcheck.test.join(" ")).toContain(`-p ${redisPort} ping`);
    for (const [, s] of wasmnets) expect(s.depends_on[redisName].condition).toBe("service_healthy");
  });

  test("the policy trusts X-Forwarded-For from Caddy's pinned address only, inside the compose subnet", () => {
    const nets = Object.entries(caddyService.networks as Record<string, Any>);
    expect(nets.length).toBe(1);
    const [netName, { ipv4_address: caddyIp }] = nets[0]!;
    const subnet = compose.networks[netName].ipam.config[0].subnet as string;
    expect(ipaddr.parse(caddyIp).match(ipaddr.parseCIDR(subnet))).toBe(true);
    expect(policy.server.trustedProxies.map((e) => e.text)).toEqual([caddyIp]);
    for (const [, s] of wasmnets) expect(s.networks).toContain(netName);
  });

  test("the policy is safe for a public server: default deny list, origins set, limits on", () => {
    expect(policy.rules.deny.map((e) => e.text)).toEqual(expect.arrayContaining(["nonpublic", "*:25"]));
    expect(policy.server.allowedOrigins).not.toBeNull();
    for (const v of [policy.limits.maxSessions, policy.limits.maxSessionsPerIp, policy.maxConnections, policy.maxBandwidthMbps]) expect(v).toBeGreaterThan(0);
  });

  describe("the Caddyfile", () => {
    const caddyfilePath = mounted(caddyService, "/etc/caddy/Caddyfile");
    const caddyfile = caddyfilePath === null ? "" : readFileSync(caddyfilePath, "utf8");
    /** Directive lines, comments dropped, as word lists. */
    const lines = caddyfile
      .split("\n")
      .map((l) => l.replace(/(^|\s)#.*$/, "").trim())
      .filter((l) => l !== "")
      .map((l) => l.split(/\s+/));
    const directive = (name: string) => lines.find((l) => l[0] === name)?.slice(1);

    test(`is mounted into ${caddyName} and proxies to exactly the wasmnet instances, on their ports`, () => {
      expect(caddyfilePath).toBe(join(DEPLOY, "compose/Caddyfile"));
      const upstreams = directive("reverse_proxy")!.filter((w) => w !== "{");
      const expected = wasmnets.map(([name, s]) => `${name}:${serverArgs(s.command ?? image.cmd).port}`);
      expect(upstreams.sort()).toEqual(expected.sort());
    });

    test("health-checks /healthz for 200, often enough to see a drain well before it ends", () => {
      expect(directive("health_uri")).toEqual(["/healthz"]);
      expect(directive("health_status")).toEqual(["200"]);
      const interval = composeSeconds(directive("health_interval")![0]!);
      for (const [, s] of wasmnets) expect(interval * 2).toBeLessThanOrEqual(drainSecsOf(serverArgs(s.command ?? image.cmd), policy));
    });

    test("keeps /metrics off the public side", () => {
      const matcher = lines.find((l) => l[0]!.startsWith("@") && l[1] === "path" && l.includes("/metrics"));
      expect(matcher).toBeDefined();
      expect(directive("respond")).toEqual([matcher![0]!, "404"]);
    });
  });
});

// ---------------------------------------------------------------- Kubernetes

describe("deploy/kubernetes", () => {
  const dir = join(DEPLOY, "kubernetes");
  const files = readdirSync(dir).filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml");
  const docs: Any[] = files.flatMap((f) => parseYamlDocuments(readFileSync(join(dir, f), "utf8")) as Any[]);
  const find = (kind: string, name: string) => docs.find((d) => d.kind === kind && d.metadata.name === name);
  const kustomization = parseYamlDocuments(readFileSync(join(dir, "kustomization.yaml"), "utf8"))[0] as Any;

  const deployment = docs.find((d) => d.kind === "Deployment" && d.spec.template.spec.containers.some((c: Any) => /^wasmnet(:|@|$)/.test(c.image)));
  const pod = deployment.spec.template.spec;
  const container = pod.containers.find((c: Any) => /^wasmnet(:|@|$)/.test(c.image));
  const args = serverArgs(container.args ?? image.cmd);
  const mountOf = (path: string) => (container.volumeMounts as Any[]).find((m) => m.mountPath === path);
  const volume = (name: string) => (pod.volumes as Any[]).find((v) => v.name === name);
  /** A probe's or Service's port (a number or a container port's name) as a number. */
  const containerPort = (p: string | number, c: Any = container) =>
    typeof p === "number" ? p : (c.ports as Any[]).find((x) => x.name === p)?.containerPort;

  const policyMount = mountOf(dirname(args.policy ?? ""));
  const configMap = find("ConfigMap", volume(policyMount?.name)?.configMap?.name);
  const policyText: string = configMap?.data?.[basename(args.policy ?? "")];
  const policy = parsePolicy(policyText, args.policy!);
  const drainSecs = drainSecsOf(args, policy);

  test("every document names itself; kustomization.yaml lists exactly the files", () => {
    for (const d of docs) {
      expect(typeof d.apiVersion).toBe("string");
      expect(typeof d.kind).toBe("string");
      expect(d.metadata.name).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
    }
    expect([...kustomization.resources].sort()).toEqual([...files].sort());
  });

  test("the policy comes from the ConfigMap through --policy, and parses with the server's parser", () => {
    expect(args.policy).not.toBeNull();
    expect(policyMount?.readOnly).toBe(true);
    expect(configMap).toBeDefined();
    expect(typeof policyText).toBe("string");
    expect(policy.source).toBe(args.policy);
  });

  test("the container serves on the image's port; ports and both probes use it and /healthz", () => {
    expect(container.command ?? image.entrypoint).toEqual(image.entrypoint);
    expect(args.port).toBe(image.expose);
    expect((container.ports as Any[]).map((p) => p.containerPort)).toContain(args.port);
    for (const probe of [container.readinessProbe, container.livenessProbe]) {
      expect(probe.httpGet.path).toBe("/healthz");
      expect(containerPort(probe.httpGet.port)).toBe(args.port);
    }
    const a = deployment.spec.template.metadata.annotations ?? {};
    if (a["prometheus.io/port"] !== undefined) {
      expect(Number(a["prometheus.io/port"])).toBe(args.port);
      expect(a["prometheus.io/path"]).toBe("/metrics");
    }
  });

  test("stopping: a preStop pause, then the drain; the grace period covers both and the port's release", () => {
    // The image has no shell or sleep binary: only the sleep action (or the binary itself) can run.
    const preStop = container.lifecycle.preStop;
    expect(preStop.exec).toBeUndefined();
    const pause = preStop.sleep.seconds as number;
    expect(pause).toBeGreaterThan(0);
    const grace = pod.terminationGracePeriodSeconds ?? 30;
    expect(grace).toBeGreaterThan(pause + drainSecs + releaseSecs);
  });

  test("the probes: readiness notices the drain before it ends; liveness never kills a draining pod", () => {
    const r = container.readinessProbe;
    expect((r.periodSeconds ?? 10) * (r.failureThreshold ?? 3)).toBeLessThan(drainSecs);
    const l = container.livenessProbe;
    const pause = container.lifecycle.preStop.sleep.seconds as number;
    // /healthz is 503 from SIGTERM until exit; liveness must tolerate that whole time.
    expect((l.periodSeconds ?? 10) * (l.failureThreshold ?? 3)).toBeGreaterThan(pause + drainSecs + releaseSecs);
  });

  test("security: the image's user, non-root, read-only root, no privilege escalation, no capabilities", () => {
    const sc = { ...pod.securityContext, ...container.securityContext };
    expect(sc.runAsUser).toBe(image.uid);
    expect(sc.runAsGroup ?? image.gid).toBe(image.gid);
    expect(sc.runAsNonRoot).toBe(true);
    expect(sc.readOnlyRootFilesystem).toBe(true);
    expect(sc.allowPrivilegeEscalation).toBe(false);
    expect(sc.capabilities.drop).toContain("ALL");
  });

  test("resources: a memory limit (the default budget is half of it, as the policy says) and a CPU request for the HPA", () => {
    const limit = k8sBytes(container.resources.limits.memory);
    expectBudgetComment(policyText, limit, "deploy/kubernetes/configmap.yaml");
    expect(container.resources.requests.cpu).toBeDefined();
  });

  test("the [auth] key files are where the Secret is mounted, readable by the server's user", () => {
    const files = [policy.auth.hs256SecretFile, policy.auth.jwksFile].filter((f): f is string => f !== null);
    expect(files.length).toBeGreaterThan(0);
    for (const file of files) {
      const mount = mountOf(posix.dirname(file));
      expect(mount, `a volume mounted at ${posix.dirname(file)}`).toBeDefined();
      const secretVolume = volume(mount.name).secret;
      const secret = find("Secret", secretVolume.secretName);
      expect(secret, `Secret ${secretVolume.secretName}`).toBeDefined();
      expect(Object.keys({ ...secret.data, ...secret.stringData })).toContain(posix.basename(file));
      const mode = secretVolume.defaultMode ?? 0o644;
      const groupReadable = (mode & 0o040) !== 0 && pod.securityContext.fsGroup === (pod.securityContext.runAsGroup ?? image.gid);
      expect((mode & 0o004) !== 0 || groupReadable).toBe(true);
    }
  });

  test("the committed Secret holds no usable key: the server refuses its placeholder", () => {
    const file = policy.auth.hs256SecretFile;
    if (file === null) return;
    const secret = find("Secret", volume(mountOf(posix.dirname(file)).name).secret.secretName);
    const value: string = secret.stringData?.[posix.basename(file)] ?? Buffer.from(secret.data[posix.basename(file)], "base64").toString();
    expect(() => checkHs256Secret(new TextEncoder().encode(value), file)).toThrow(/at least 32/);
  });

  test("[cluster] redis names the Redis Service and its port, which reaches the Redis container", () => {
    const url = new URL(policy.cluster.redis!);
    const svc = find("Service", url.hostname);
    expect(svc).toBeDefined();
    const port = (svc.spec.ports as Any[]).find((p) => p.port === Number(url.port || 6379));
    expect(port).toBeDefined();
    const target = docs.find((d) => d.kind === "Deployment" && matches(svc.spec.selector, d.spec.template.metadata.labels));
    const c = target.spec.template.spec.containers[0];
    expect(containerPort(port.targetPort ?? port.port, c)).toBe(Number(flag(c.args ?? [], "port") ?? 6379));
  });

  const matches = (selector: Record<string, string>, labels: Record<string, string>) =>
    Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v);
  const podLabels = deployment.spec.template.metadata.labels;

  test("the Service selects the wasmnet pods and targets the server's port", () => {
    const svc = docs.find((d) => d.kind === "Service" && matches(d.spec.selector, podLabels));
    expect(svc).toBeDefined();
    for (const p of svc.spec.ports) expect(containerPort(p.targetPort ?? p.port)).toBe(args.port);
  });

  test("the PodDisruptionBudget and the HPA govern this Deployment and never leave it without a pod", () => {
    const pdb = docs.find((d) => d.kind === "PodDisruptionBudget");
    expect(matches(pdb.spec.selector.matchLabels, podLabels)).toBe(true);
    const hpa = docs.find((d) => d.kind === "HorizontalPodAutoscaler");
    expect(hpa.spec.scaleTargetRef).toMatchObject({ apiVersion: "apps/v1", kind: "Deployment", name: deployment.metadata.name });
    expect(hpa.spec.metrics.some((m: Any) => m.type === "Resource" && m.resource.name === "cpu")).toBe(true);
    const min = hpa.spec.minReplicas ?? 1;
    expect(min).toBeGreaterThanOrEqual(2);
    if (pdb.spec.maxUnavailable !== undefined) expect(pdb.spec.maxUnavailable).toBeLessThan(min);
    else expect(pdb.spec.minAvailable).toBeGreaterThanOrEqual(1);
    expect(deployment.spec.replicas).toBeUndefined(); // the HPA owns the count; an apply would reset it
    expect(matches(deployment.spec.selector.matchLabels, podLabels)).toBe(true);
  });
});

// ---------------------------------------------------------------- metrics: the labels the server exports

/** Labels Prometheus adds at scrape time: usable in any query. */
const SCRAPE_LABELS = new Set(["instance", "job"]);

/** family → label → values, or null for "any value" (labels whose values come from traffic). */
const familyLabels = new Map<string, Map<string, Set<string> | null>>();
let live: Awaited<ReturnType<typeof startServer>> | null = null;

beforeAll(async () => {
  // What a fresh server exports: every family (HELP/TYPE) and the fixed-label series.
  live = await startServer();
  const r = await fetch(`http://127.0.0.1:${live.port}/metrics`);
  expect(r.status).toBe(200);
  const fresh = exposedLabels(await r.text());
  for (const name of Object.keys(FAMILIES)) familyLabels.set(name, new Map());
  for (const [name, labels] of fresh.families) {
    const known = familyLabels.get(name);
    if (known === undefined) throw new Error(`/metrics exports ${name}, which is not in FAMILIES`);
    expect(fresh.types.get(name)).toBe(FAMILIES[name as FamilyName].type);
    for (const [label, values] of labels) known.set(label, new Set(values));
  }
  // Labels whose values come from traffic (rules, codes, statuses, reasons, profiles): one of each.
  const m = new Metrics();
  m.sessionOpened("p");
  m.denied("rule", "p");
  m.error("ECODE");
  m.refusedSession(503);
  m.udpDropped("bandwidth");
  for (const s of m.series()) {
    const known = familyLabels.get(s.name)!;
    for (const label of Object.keys(s.labels ?? {})) if (!known.has(label)) known.set(label, null);
  }
});

afterAll(async () => {
  await live?.stop();
});

/** What is wrong with one dashboard query (and its legend): [] when nothing. */
function queryProblems(expr: string, legend = ""): string[] {
  const out: string[] = [];
  let refs: ReturnType<typeof queryRefs>;
  try {
    refs = queryRefs(expr);
  } catch (e) {
    return [(e as Error).message];
  }
  for (const f of refs.unknownFunctions) out.push(`${f}(): not a PromQL function, nor may a metric be called`);
  const families: string[] = [];
  for (const s of refs.selectors) {
    if (s.metric === null || !Object.hasOwn(FAMILIES, s.metric)) {
      out.push(`${s.metric ?? "{…}"}: not a family in FAMILIES (src/session/metrics.ts)`);
      continue;
    }
    families.push(s.metric);
    const labels = familyLabels.get(s.metric)!;
    for (const m of s.matchers) {
      if (SCRAPE_LABELS.has(m.label)) continue;
      if (!labels.has(m.label)) out.push(`${s.metric} has no label "${m.label}" (it has: ${[...labels.keys()].join(", ") || "none"})`);
      const values = labels.get(m.label);
      if (values && (m.op === "=" || m.op === "!=") && !values.has(m.value)) out.push(`${s.metric}{${m.label}} is never "${m.value}" (only ${[...values].join(", ")})`);
    }
    const counter = FAMILIES[s.metric as FamilyName].type === "counter";
    const rated = ["rate", "irate", "increase", "resets"].includes(s.inside ?? "");
    if (counter && !rated) out.push(`${s.metric} is a counter: use rate() or increase()`);
    if (!counter && rated) out.push(`${s.metric} is a gauge: rate()/increase() make no sense on it`);
  }
  const grouping = new Set(refs.grouping);
  for (const label of [...refs.grouping, ...legendLabels(legend)]) {
    if (SCRAPE_LABELS.has(label)) continue;
    for (const f of families) if (!familyLabels.get(f)!.has(label)) out.push(`${f} has no label "${label}"`);
  }
  if (grouping.size > 0) for (const l of legendLabels(legend)) if (!grouping.has(l)) out.push(`legend {{${l}}}: the aggregation drops it (by: ${[...grouping].join(", ")})`);
  return out;
}

describe("the metric families the server exports", () => {
  test("a fresh server lists every family in FAMILIES with its type", () => {
    expect([...familyLabels.keys()].sort()).toEqual(Object.keys(FAMILIES).sort());
    expect(familyLabels.get("wasmnet_sockets")!.get("kind")).toEqual(new Set(["tcp", "tls", "udp", "listener", "inbound"]));
    expect(familyLabels.get("wasmnet_denials_total")!.has("rule")).toBe(true);
  });

  test("the query check catches wrong names, labels, values and counter/gauge mix-ups", () => {
    expect(queryProblems(`sum by (kind) (wasmnet_sockets{instance=~"$instance"})`, "{{kind}}")).toEqual([]);
    expect(queryProblems("sum(wasmnet_session)")).toEqual([expect.stringContaining("wasmnet_session: not a family")]);
    expect(queryProblems("sum(up)")).toEqual([expect.stringContaining("up: not a family")]);
    expect(queryProblems("sum by (rule) (wasmnet_sockets)")).toEqual([expect.stringContaining('no label "rule"')]);
    expect(queryProblems('wasmnet_bytes_total{direction="sideways"}')[0]).toContain('never "sideways"');
    expect(queryProblems("sum(rate(wasmnet_sessions[5m]))")).toEqual([expect.stringContaining("is a gauge")]);
    expect(queryProblems("sum(wasmnet_sessions_total)")).toEqual([expect.stringContaining("is a counter")]);
    expect(queryProblems("sum by (instance) (wasmnet_sessions)", "{{kind}}")).toHaveLength(2);
    expect(queryProblems("rated(wasmnet_bytes_total[5m])")[0]).toContain("not a PromQL function");
    expect(queryProblems('{__name__="wasmnet_sessions"}')[0]).toContain("not a family");
    // Both places PromQL puts a grouping clause; the function around each selector.
    expect(queryRefs('sum(rate(wasmnet_bytes_total{direction="up"}[$__rate_interval])) by (direction)')).toEqual({
      selectors: [{ metric: "wasmnet_bytes_total", matchers: [{ label: "direction", op: "=", value: "up" }], inside: "rate" }],
      grouping: ["direction"],
      unknownFunctions: [],
    });
    expect(queryRefs("max by (instance) (wasmnet_workers) / on (instance) group_left max(wasmnet_sessions)").selectors.map((s) => s.inside)).toEqual(["max", "max"]);
  });
});

// ---------------------------------------------------------------- the Grafana dashboard

describe("deploy/grafana/wasmnet.json", () => {
  const dashboard = JSON.parse(read("deploy/grafana/wasmnet.json")) as Any;
  const variables = dashboard.templating.list as Any[];
  const dsVar = variables.find((v) => v.type === "datasource");
  const panels = (dashboard.panels as Any[]).flatMap((p) => [p, ...(p.panels ?? [])]);
  const dataPanels = panels.filter((p) => p.type !== "row");
  const targets = dataPanels.flatMap((p) => (p.targets as Any[]).map((t) => ({ panel: p.title as string, ...t })));

  test("has a Prometheus data source variable every panel and query uses", () => {
    expect(dsVar).toMatchObject({ type: "datasource", query: "prometheus" });
    const uid = `\${${dsVar.name}}`;
    for (const p of dataPanels) expect(p.datasource, p.title).toEqual({ type: "prometheus", uid });
    for (const t of targets) if (t.datasource !== undefined) expect(t.datasource, t.panel).toEqual({ type: "prometheus", uid });
    for (const v of variables.filter((v) => v.type === "query")) expect(v.datasource.uid).toBe(uid);
  });

  test("panels are well-formed: unique ids, a place on the grid, queries with unique refIds", () => {
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of panels) {
      expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
      expect(p.gridPos.h, p.title).toBeGreaterThan(0);
    }
    for (const p of dataPanels) {
      expect(p.targets.length, p.title).toBeGreaterThan(0);
      const refIds = p.targets.map((t: Any) => t.refId);
      expect(new Set(refIds).size, p.title).toBe(refIds.length);
    }
    expect(typeof dashboard.uid).toBe("string");
    expect(dashboard.schemaVersion).toBeGreaterThan(30);
  });

  test("every query names only families in FAMILIES, with labels (and label values) each family has", () => {
    const problems = targets.flatMap((t) => queryProblems(t.expr, t.legendFormat ?? "").map((p) => `${t.panel} [${t.refId}]: ${p}`));
    for (const v of variables.filter((v) => v.type === "query")) {
      const q = typeof v.query === "string" ? v.query : v.query.query;
      const m = /^label_values\((\w+),\s*(\w+)\)$/.exec(q);
      if (m === null) problems.push(`variable ${v.name}: expected label_values(family, label), got ${q}`);
      else {
        problems.push(...queryProblems(m[1]!.endsWith("_total") ? `rate(${m[1]}[5m])` : m[1]!).map((p) => `variable ${v.name}: ${p}`));
        if (!SCRAPE_LABELS.has(m[2]!) && !familyLabels.get(m[1]!)?.has(m[2]!)) problems.push(`variable ${v.name}: ${m[1]} has no label ${m[2]}`);
      }
    }
    expect(problems).toEqual([]);
  });

  test("every family in FAMILIES has a panel (a new family needs one here)", () => {
    const used = new Set(targets.flatMap((t) => queryRefs(t.expr).selectors.map((s) => s.metric)));
    expect(Object.keys(FAMILIES).filter((f) => !used.has(f))).toEqual([]);
  });
});

// ---------------------------------------------------------------- the probe during a drain

test("the healthcheck the manifests run answers 0 while serving and 1 once SIGTERM starts the drain; open sessions go on", async () => {
  const compose = parseYamlDocuments(read("deploy/compose.yaml"))[0] as Any;
  const probe = (Object.values(compose.services) as Any[]).find((s) => s.healthcheck?.test?.[1] === image.entrypoint[0]).healthcheck.test as string[];
  // A drain far longer than the test: it ends when the last session does, not on a timer.
  const child = await spawnServer(["--drain-secs", "120"]);
  const run = async () => {
    const url = new URL(probe[3]!);
    url.port = String(child.port);
    const p = Bun.spawn([process.execPath, join(REPO, "src/cli.ts"), probe[2]!, url.href], { stdout: "pipe", stderr: "pipe" });
    return { code: await p.exited, out: await new Response(p.stdout).text() };
  };
  try {
    expect((await run()).code).toBe(0);
    const ws = new WebSocket(child.wsUrl);
    await new Promise((ok, fail) => {
      ws.addEventListener("open", ok, { once: true });
      ws.addEventListener("error", fail, { once: true });
    });
    const closed = new Promise<number>((r) => ws.addEventListener("close", (e) => r(e.code)));
    child.proc.kill("SIGTERM");
    await waitFor(async () => (await fetch(`${child.url}/healthz`)).status === 503, { what: "/healthz to answer 503 after SIGTERM", detail: child.logs });
    const during = await run();
    expect(during.code).toBe(1);
    expect(during.out).toContain("503");
    const metrics = await (await fetch(`${child.url}/metrics`)).text();
    expect(metrics).toMatch(/^wasmnet_draining 1$/m);
    expect(metrics).toMatch(/^wasmnet_sessions 1$/m);
    // The open session still works: the server has not closed it.
    expect(ws.readyState).toBe(WebSocket.OPEN);
    ws.close(1000);
    expect(await closed).toBe(1000); // closed by us, not by the server (1001)
    expect(await child.proc.exited).toBe(0);
  } finally {
    await child.stop("SIGKILL");
  }
});
