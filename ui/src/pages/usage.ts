// Usage explorer: filters, hour/day buckets, a stacked chart, a table and its CSV export.
import { api, query, session } from "../api";
import { stackedChart } from "../charts";
import { alertBox, bucketLabel, clear, field, h, int, select, showAlert, table, usd } from "../dom";
import type { Cleanup, KeyRecord, Timeseries } from "../types";
import { windowPicker } from "../window";
import { keyName } from "./overview";

const HEADERS = ["Bucket (UTC)", "Group", "Requests", "Errors", "Tokens in", "Tokens out", "Cost (USD)"];

// RFC 4180 quoting; a cell a spreadsheet would run as a formula gets a leading apostrophe.
export function csvCell(value: string): string {
  const safe = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",\n\r]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

export function toCsv(headers: string[], rows: string[][]): string {
  return [headers, ...rows].map((row) => row.map(csvCell).join(",")).join("\r\n") + "\r\n";
}

export async function usage(main: HTMLElement): Promise<Cleanup> {
  const role = session()?.role;
  const cleanups: Cleanup[] = [];
  const alert = alertBox();
  const out = h("div", { class: "stack", "aria-live": "polite", "aria-busy": "true", "data-testid": "usage-output" });
  let latest = 0; // only the newest request's answer is shown (filters change quickly)
  const [models, keys] = await Promise.all([
    api<{ models: { id: string }[] }>("GET", "/api/v1/models"),
    role === "admin" ? api<{ keys: KeyRecord[] }>("GET", "/api/v1/admin/keys") : null,
  ]);
  const names = new Map((keys?.keys ?? []).map((k) => [k.id, k.name]));
  const keyOptions: [string, string][] = [["", "All keys"], ...(keys?.keys ?? []).map((k): [string, string] => [k.id, `${k.name} (${k.id})`])];
  const filters = {
    key: select("key_id", keyOptions, ""),
    model: select("model", [["", "All models"], ...models.models.map((m): [string, string] => [m.id, m.id])], ""),
    provider: select("provider", [["", "All providers"], ["local", "local"], ["openai", "openai"], ["anthropic", "anthropic"]], ""),
    status: select("status", [["", "Any status"], ["ok", "Succeeded"], ["error", "Failed"]], ""),
    bucket: select("bucket", [["hour", "Hour"], ["day", "Day"]], "hour"),
    group: select("group_by", [["model", "Model"], ["provider", "Provider"], ["key", "Key"]], "model"),
    metric: select("metric", [["cost_usd", "Cost"], ["requests", "Requests"], ["errors", "Errors"], ["output_tokens", "Tokens out"]], "cost_usd"),
  };
  const picker = windowPicker("24h", () => void load());
  for (const control of Object.values(filters)) control.addEventListener("change", () => void load());
  const csv = h("button", { type: "button", class: "secondary", "data-testid": "export-csv", disabled: true }, "Export CSV");
  main.append(
    h("h1", {}, "Usage explorer"),
    h("form", { class: "controls", "aria-label": "Filters", onsubmit: (e: Event) => e.preventDefault() },
      picker.element,
      role === "admin" ? field("Key", filters.key) : null,
      field("Model", filters.model), field("Provider", filters.provider), field("Status", filters.status),
      field("Group by", filters.group), field("Bucket", filters.bucket), field("Chart", filters.metric)),
    h("div", { class: "actions" }, csv),
    alert,
    out,
  );
  let shown: string[][] = [];
  csv.addEventListener("click", () => download(toCsv(HEADERS, shown)));

  async function load(): Promise<void> {
    const mine = ++latest;
    out.setAttribute("aria-busy", "true");
    try {
      const w = picker.current();
      const ts = await api<Timeseries>("GET", "/api/v1/usage/timeseries?" + query({
        since: w.since, until: w.until, bucket: filters.bucket.value, group_by: filters.group.value,
        key_id: filters.key.value, model: filters.model.value, provider: filters.provider.value,
        status: filters.status.value,
      }));
      if (mine !== latest) return;
      cleanups.splice(0).forEach((c) => c());
      clear(out);
      shown = rowsOf(ts, names);
      const metric = filters.metric.value as "cost_usd" | "requests" | "errors" | "output_tokens";
      const chart = stackedChart(`${filters.metric.selectedOptions[0]?.text ?? ""} by ${ts.group_by} per ${ts.bucket}`,
        ts.buckets.map((b) => bucketLabel(b, ts.bucket)),
        ts.series.map((s) => ({ name: label(s.name, ts.group_by, names), values: s[metric] })),
        "chart-explorer", metric === "cost_usd" ? usd : int, metric !== "cost_usd");
      cleanups.push(chart.destroy);
      out.append(chart.element, table(`${shown.length} rows`, HEADERS, shown, "usage-table", new Set([2, 3, 4, 5, 6])));
      csv.disabled = false;
      showAlert(alert, null);
    } catch (error) {
      if (mine === latest) showAlert(alert, (error as Error).message);
    } finally {
      if (mine === latest) out.setAttribute("aria-busy", "false");
    }
  }

  await load();
  return () => cleanups.forEach((c) => c());
}

function label(name: string, groupBy: string, names: Map<string, string>): string {
  return groupBy === "key" ? keyName(name, names) : name;
}

// One row per bucket and group that saw traffic, oldest first: what the table shows.
function rowsOf(ts: Timeseries, names: Map<string, string>): string[][] {
  const rows: string[][] = [];
  ts.buckets.forEach((bucket, i) => {
    for (const s of ts.series) {
      if (s.requests[i] === 0) continue;
      rows.push([bucketLabel(bucket, ts.bucket), label(s.name, ts.group_by, names),
        String(s.requests[i]), String(s.errors[i]), String(s.input_tokens[i]),
        String(s.output_tokens[i]), s.cost_usd[i].toFixed(9)]);
    }
  });
  return rows;
}

function download(text: string): void {
  const url = URL.createObjectURL(new Blob([text], { type: "text/csv;charset=utf-8" }));
  const link = h("a", { href: url, download: "usage.csv", hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
