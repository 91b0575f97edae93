// The Prometheus text exposition format (0.0.4) as the tests read it: a strict parser (it throws
// on anything else, so a test that reads /metrics also checks the format), one sample's value,
// and a scrape of a server's /metrics.

export interface Family {
  help: string;
  type: string;
  samples: { labels: Record<string, string>; value: number }[];
}

/** A small parser for the Prometheus text exposition format (0.0.4); throws on anything else. */
export function parsePrometheus(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const fam = (name: string) => {
    let f = families.get(name);
    if (!f) families.set(name, (f = { help: "", type: "untyped", samples: [] }));
    return f;
  };
  if (!text.endsWith("\n")) throw new Error("metrics text must end with a newline");
  for (const [i, line] of text.slice(0, -1).split("\n").entries()) {
    let m: RegExpExecArray | null;
    if ((m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line))) {
      fam(m[1]!).help = m[2]!;
    } else if ((m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line))) {
      const f = fam(m[1]!);
      if (f.samples.length > 0) throw new Error(`line ${i + 1}: TYPE after samples`);
      f.type = m[2]!;
    } else if ((m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line))) {
      const labels: Record<string, string> = {};
      if (m[2]) {
        const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y;
        let lm: RegExpExecArray | null;
        while (re.lastIndex < m[2].length && (lm = re.exec(m[2]))) labels[lm[1]!] = lm[2]!.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
        if (re.lastIndex !== m[2].length) throw new Error(`line ${i + 1}: bad labels ${JSON.stringify(m[2])}`);
      }
      const value = Number(m[3]);
      if (Number.isNaN(value) && m[3] !== "NaN") throw new Error(`line ${i + 1}: bad value ${m[3]}`);
      if (!families.has(m[1]!)) throw new Error(`line ${i + 1}: sample ${m[1]} without HELP/TYPE`);
      fam(m[1]!).samples.push({ labels, value });
    } else if (line !== "") {
      throw new Error(`line ${i + 1}: not Prometheus text: ${JSON.stringify(line)}`);
    }
  }
  return families;
}

export type Metrics = Map<string, Family>;

/**
 * The sample of family `name` whose labels are exactly `labels`: 0 when the family has no such
 * sample, NaN when the family itself is missing (so a misspelt name cannot pass as 0).
 */
export function value(m: Metrics, name: string, labels: Record<string, string> = {}): number {
  const f = m.get(name);
  if (!f) return NaN;
  const s = f.samples.find((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v) && Object.keys(s.labels).length === Object.keys(labels).length);
  return s ? s.value : 0;
}

/** GET `<serverUrl>/metrics`, parsed; throws unless it is a 200 with a text/plain body. */
export async function scrape(serverUrl: string | URL): Promise<Metrics> {
  const r = await fetch(new URL("/metrics", serverUrl));
  const type = r.headers.get("content-type") ?? "";
  if (r.status !== 200 || !type.includes("text/plain")) throw new Error(`/metrics answered ${r.status} (${type}): ${await r.text()}`);
  return parsePrometheus(await r.text());
}

/** One sample of a server's /metrics, scraped now (see `value`). */
export async function metricValue(serverUrl: string | URL, name: string, labels: Record<string, string> = {}): Promise<number> {
  return value(await scrape(serverUrl), name, labels);
}
