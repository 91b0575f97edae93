// What a PromQL query (as a Grafana panel writes it) refers to: its series selectors with their
// label matchers and the function directly around each, the labels of its grouping clauses, and
// any function name PromQL does not have. Enough to check a dashboard against the metric
// families the server exports; not a full PromQL parser (no evaluation, no precedence).

export interface Matcher {
  label: string;
  op: "=" | "!=" | "=~" | "!~";
  value: string;
}

export interface Selector {
  /** The metric name, or null for a bare `{…}` selector. */
  metric: string | null;
  matchers: Matcher[];
  /** The function whose argument list directly holds the selector (rate, sum, …), or null. */
  inside: string | null;
}

export interface QueryRefs {
  selectors: Selector[];
  /** Labels named by by/without/on/ignoring/group_left/group_right, in order. */
  grouping: string[];
  /** Names called like functions that PromQL does not define. */
  unknownFunctions: string[];
}

const GROUPING = new Set(["by", "without", "on", "ignoring", "group_left", "group_right"]);
const OPERATOR_WORDS = new Set(["and", "or", "unless", "bool", "offset", "atan2"]);
const FUNCTIONS = new Set([
  // aggregations
  "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile",
  "limitk", "limit_ratio",
  // functions
  "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "day_of_month",
  "day_of_week", "day_of_year", "days_in_month", "delta", "deriv", "exp", "floor", "histogram_quantile",
  "holt_winters", "hour", "idelta", "increase", "irate", "label_join", "label_replace", "ln", "log2", "log10",
  "minute", "month", "predict_linear", "rate", "resets", "round", "scalar", "sgn", "sort", "sort_desc", "sqrt",
  "time", "timestamp", "vector", "year", "avg_over_time", "min_over_time", "max_over_time", "sum_over_time",
  "count_over_time", "quantile_over_time", "stddev_over_time", "stdvar_over_time", "last_over_time",
  "present_over_time",
]);

type Token =
  | { t: "ident"; v: string }
  | { t: "braces"; matchers: Matcher[] }
  | { t: "string"; v: string }
  | { t: "punct"; v: string };

/** Grafana's interval variables become a literal duration, so the range brackets stay well-formed. */
export function substituteGrafanaVariables(expr: string): string {
  return expr.replace(/\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}/g, "5m");
}

function tokenize(expr: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  const readString = (): string => {
    const q = expr[i]!;
    let j = i + 1;
    let v = "";
    while (j < expr.length && expr[j] !== q) {
      if (expr[j] === "\\") j++;
      v += expr[j];
      j++;
    }
    if (j >= expr.length) throw new Error(`unterminated string in ${JSON.stringify(expr)}`);
    i = j + 1;
    return v;
  };
  while (i < expr.length) {
    const c = expr[i]!;
    if (/\s/.test(c)) i++;
    else if (c === '"' || c === "'" || c === "`") out.push({ t: "string", v: readString() });
    else if (c === "[") {
      const end = expr.indexOf("]", i);
      if (end < 0) throw new Error(`unterminated [ in ${JSON.stringify(expr)}`);
      i = end + 1; // a range or subquery: durations only
    } else if (c === "{") {
      const matchers: Matcher[] = [];
      i++;
      for (;;) {
        while (/[\s,]/.test(expr[i] ?? "")) i++;
        if (expr[i] === "}") {
          i++;
          break;
        }
        const m = /^([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*/.exec(expr.slice(i));
        if (m === null) throw new Error(`bad label matcher at ${JSON.stringify(expr.slice(i))}`);
        i += m[0].length;
        if (expr[i] !== '"' && expr[i] !== "'" && expr[i] !== "`") throw new Error(`label ${m[1]}: expected a quoted value`);
        matchers.push({ label: m[1]!, op: m[2] as Matcher["op"], value: readString() });
      }
      out.push({ t: "braces", matchers });
    } else {
      const id = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(expr.slice(i));
      if (id) {
        out.push({ t: "ident", v: id[0] });
        i += id[0].length;
        continue;
      }
      const num = /^[0-9][0-9a-zA-Z.]*/.exec(expr.slice(i));
      if (num) {
        i += num[0].length; // numbers and durations
        continue;
      }
      out.push({ t: "punct", v: c });
      i++;
    }
  }
  return out;
}

export function queryRefs(rawExpr: string): QueryRefs {
  const tokens = tokenize(substituteGrafanaVariables(rawExpr));
  const selectors: Selector[] = [];
  const grouping: string[] = [];
  const unknownFunctions: string[] = [];
  const calls: (string | null)[] = []; // the function of each open "("
  let aggregation: string | null = null; // `sum by (x) (…)`: the "(" after the label list is sum's
  for (let k = 0; k < tokens.length; k++) {
    const tok = tokens[k]!;
    const next = tokens[k + 1];
    const opensCall = next?.t === "punct" && next.v === "(";
    if (tok.t === "ident") {
      if (GROUPING.has(tok.v)) {
        if (!opensCall) {
          if (tok.v === "group_left" || tok.v === "group_right") continue; // no label list
          throw new Error(`"${tok.v}" without a label list in ${JSON.stringify(rawExpr)}`);
        }
        k += 2;
        for (; k < tokens.length; k++) {
          const l = tokens[k]!;
          if (l.t === "punct" && l.v === ")") break;
          if (l.t === "ident") grouping.push(l.v);
        }
        continue;
      }
      if (OPERATOR_WORDS.has(tok.v)) continue;
      if (next?.t === "ident" && (next.v === "by" || next.v === "without")) {
        if (!FUNCTIONS.has(tok.v)) unknownFunctions.push(tok.v);
        aggregation = tok.v;
        continue;
      }
      if (opensCall) {
        if (!FUNCTIONS.has(tok.v)) unknownFunctions.push(tok.v);
        calls.push(tok.v);
        k++;
        continue;
      }
      const braces = next?.t === "braces" ? next : null;
      selectors.push({ metric: tok.v, matchers: braces?.matchers ?? [], inside: calls.at(-1) ?? null });
      if (braces) k++;
    } else if (tok.t === "braces") {
      selectors.push({ metric: null, matchers: tok.matchers, inside: calls.at(-1) ?? null });
    } else if (tok.t === "punct" && tok.v === "(") {
      calls.push(aggregation);
      aggregation = null;
    } else if (tok.t === "punct" && tok.v === ")") {
      calls.pop();
    }
  }
  return { selectors, grouping, unknownFunctions };
}

/** The labels a legend format names: `{{kind}} bytes` → ["kind"]. */
export function legendLabels(format: string): string[] {
  return [...format.matchAll(/\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}/g)].map((m) => m[1]!);
}

/** A Prometheus text exposition as family → label → values seen (labels of every sample). */
export function exposedLabels(text: string): { families: Map<string, Map<string, Set<string>>>; types: Map<string, string> } {
  const families = new Map<string, Map<string, Set<string>>>();
  const types = new Map<string, string>();
  for (const line of text.split("\n")) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) {
      types.set(type[1]!, type[2]!);
      if (!families.has(type[1]!)) families.set(type[1]!, new Map());
      continue;
    }
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? \S+$/.exec(line);
    if (m === null) throw new Error(`not a Prometheus sample line: ${JSON.stringify(line)}`);
    let labels = families.get(m[1]!);
    if (!labels) families.set(m[1]!, (labels = new Map()));
    for (const l of (m[3] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      let values = labels.get(l[1]!);
      if (!values) labels.set(l[1]!, (values = new Set()));
      values.add(l[2]!.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c)));
    }
  }
  return { families, types };
}
