// Overview: totals for a window, stacked cost and request charts, top keys and models.
import { api, query, session } from "../api";
import { stackedChart } from "../charts";
import { alertBox, bucketLabel, clear, field, h, int, ms, select, showAlert, table, usd } from "../dom";
import type { Cleanup, KeyRecord, Timeseries, Totals, UsageReport } from "../types";
import { windowPicker } from "../window";

function sum(report: UsageReport): Totals {
  const totals = { requests: 0, errors: 0, input_tokens: 0, output_tokens: 0, cost_usd: 0 };
  for (const p of Object.values(report.providers)) {
    totals.requests += p.requests;
    totals.errors += p.errors;
    totals.input_tokens += p.input_tokens;
    totals.output_tokens += p.output_tokens;
    totals.cost_usd += p.cost_usd;
  }
  return totals;
}

function card(label: string, shown: string, value: number | null, testid: string): HTMLElement {
  return h("div", { class: "card", "data-testid": testid, "data-value": value ?? "" },
    h("span", { class: "card-label" }, label), h("strong", {}, shown));
}

export function keyName(id: string, keys: Map<string, string>): string {
  if (id === "admin") return "(admin key)";
  if (id === "anonymous") return "(no key)";
  return keys.get(id) ?? id;
}

export async function overview(main: HTMLElement): Promise<Cleanup> {
  const isOperator = session()?.role !== "key";
  const cleanups: Cleanup[] = [];
  const alert = alertBox();
  const body = h("div", { class: "stack", "aria-busy": "true", "data-testid": "overview-output" });
  const group = select("group", [["provider", "Provider"], ["model", "Model"]], "provider");
  const picker = windowPicker("24h", () => void load());
  group.addEventListener("change", () => void load());
  main.append(
    h("h1", {}, "Overview"),
    h("div", { class: "controls" }, picker.element, field("Stack by", group)),
    alert,
    body,
  );

  let latest = 0; // only the newest request's answer is shown
  async function load(): Promise<void> {
    const mine = ++latest;
    body.setAttribute("aria-busy", "true");
    try {
      const w = picker.current();
      const span = query({ since: w.since, until: w.until });
      const series = query({ since: w.since, until: w.until, bucket: w.bucket });
      const [usage, ts, byKey, commercial, keys] = await Promise.all([
        api<UsageReport>("GET", `/api/v1/usage?${span}`),
        api<Timeseries>("GET", `/api/v1/usage/timeseries?${series}&group_by=${group.value}`),
        api<Timeseries>("GET", `/api/v1/usage/timeseries?${series}&group_by=key`),
        isOperator ? api<UsageReport>("GET", `/api/v1/commercial/usage?${span}`) : null,
        session()?.role === "admin" ? api<{ keys: KeyRecord[] }>("GET", "/api/v1/admin/keys") : null,
      ]);
      if (mine !== latest) return;
      cleanups.splice(0).forEach((c) => c());
      clear(body);
      const names = new Map((keys?.keys ?? []).map((k) => [k.id, k.name]));
      const own = session()?.keyInfo;
      if (own) names.set(String(own.id), String(own.name));
      render(usage, ts, byKey, commercial, names);
      showAlert(alert, null);
    } catch (error) {
      if (mine === latest) showAlert(alert, (error as Error).message);
    } finally {
      if (mine === latest) body.setAttribute("aria-busy", "false");
    }
  }

  function render(usage: UsageReport, ts: Timeseries, byKey: Timeseries,
    commercial: UsageReport | null, keys: Map<string, string>): void {
    const totals = sum(usage);
    const labels = ts.buckets.map((b) => bucketLabel(b, ts.bucket));
    const cost = stackedChart(`Cost by ${ts.group_by} (USD per ${ts.bucket})`, labels,
      ts.series.map((s) => ({ name: s.name, values: s.cost_usd })), "chart-cost", usd);
    const requests = stackedChart(`Requests by ${ts.group_by} (per ${ts.bucket})`, labels,
      ts.series.map((s) => ({ name: s.name, values: s.requests })), "chart-requests", int, true);
    cleanups.push(cost.destroy, requests.destroy);
    const topModels = [...usage.models].sort((a, b) => b.cost_usd - a.cost_usd).slice(0, 10);
    body.append(
      h("section", { class: "cards", "aria-label": "Totals" },
        card("Requests", int(totals.requests), totals.requests, "total-requests"),
        card("Errors", int(totals.errors), totals.errors, "total-errors"),
        card("Latency p50", ms(ts.totals.latency_p50_ms), ts.totals.latency_p50_ms, "latency-p50"),
        card("Latency p95", ms(ts.totals.latency_p95_ms), ts.totals.latency_p95_ms, "latency-p95"),
        card("Cost", usd(totals.cost_usd), totals.cost_usd, "total-cost")),
      h("section", { class: "charts" }, cost.element, requests.element),
      h("section", { class: "tables" },
        table("Top keys by cost", ["Key", "Requests", "Cost"],
          byKey.series.slice(0, 10).map((s) => [keyName(s.name, keys), int(s.totals.requests), usd(s.totals.cost_usd)]),
          "top-keys", new Set([1, 2])),
        table("Top models by cost", ["Model", "Provider", "Requests", "Errors", "Cost"],
          topModels.map((m) => [m.model_id, m.provider, int(m.requests), int(m.errors), usd(m.cost_usd)]),
          "top-models", new Set([2, 3, 4])),
        commercial ? table("Commercial spend by provider", ["Provider", "Requests", "Errors", "Tokens in", "Tokens out", "Cost"],
          Object.entries(commercial.providers).map(([name, p]) => [name, int(p.requests), int(p.errors),
            int(p.input_tokens), int(p.output_tokens), usd(p.cost_usd)]),
          "commercial-providers", new Set([1, 2, 3, 4, 5])) : null),
    );
  }

  await load();
  return () => cleanups.forEach((c) => c());
}
