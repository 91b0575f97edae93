// --profile: a summary of the server's .cpuprofile by sample counts. Bun's own markdown weighs
// each sample by the time since the previous one, so an idle stretch (between runs, or while the
// server waits for the network) is charged to whatever JavaScript ran last — a timer callback
// can show up with seconds of "self time". Counting samples instead gives the share of the JS
// thread's busy time each function holds. Native functions called from JavaScript (socket
// write, sendBinary, subarray) appear by their JavaScript name; their kernel time is included.
import { readFileSync, writeFileSync } from "node:fs";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

export function summarizeProfile(cpuprofile: string, out: string, root: string, top = 30): void {
  const p = JSON.parse(readFileSync(cpuprofile, "utf8")) as { nodes: ProfileNode[]; samples: number[] };
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const name = (n: ProfileNode) => {
    const f = n.callFrame;
    const where = f.url ? `${f.url.replace(root + "/", "").replace(/^file:\/\//, "")}:${f.lineNumber + 1}` : "native";
    return `\`${f.functionName || "(anonymous)"}\` ${where}`;
  };
  const self = new Map<string, number>();
  const incl = new Map<string, number>();
  for (const id of p.samples) {
    const leaf = byId.get(id)!;
    self.set(name(leaf), (self.get(name(leaf)) ?? 0) + 1);
    const seen = new Set<string>();
    for (let n: ProfileNode | undefined = leaf; n; n = byId.get(parent.get(n.id) ?? -1)) {
      const k = name(n);
      if (seen.has(k)) continue;
      seen.add(k);
      incl.set(k, (incl.get(k) ?? 0) + 1);
    }
  }
  const total = p.samples.length || 1;
  const table = (m: Map<string, number>) =>
    [...m]
      .filter(([k]) => !k.startsWith("`(root)`"))
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, v]) => `| ${((100 * v) / total).toFixed(1)}% | ${v} | ${k} |`);
  const md = [
    `# Server CPU profile by samples`,
    "",
    `${total} samples of the server's JavaScript thread (\`${cpuprofile.replace(root + "/", "")}\`). Each sample counts once, so`,
    "idle time is charged to nobody (Bun's own markdown next to this file charges it to whatever ran last).",
    "",
    "## Self",
    "",
    "| share | samples | function |",
    "|---:|---:|---|",
    ...table(self),
    "",
    "## Inclusive (the function and what it called)",
    "",
    "| share | samples | function |",
    "|---:|---:|---|",
    ...table(incl),
    "",
  ];
  writeFileSync(out, md.join("\n"));
}
