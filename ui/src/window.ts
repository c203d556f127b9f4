// The time window picker shared by the overview and the explorer.
import { field, h, select } from "./dom";

export interface Window {
  since: string; // ISO-8601, UTC
  until: string;
  bucket: "hour" | "day";
}

const PRESETS: Record<string, number> = { "1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400 };

function local(date: Date): string {
  const shifted = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
  return shifted.toISOString().slice(0, 16);
}

export function resolveWindow(preset: string, from: string, to: string): Window {
  if (preset === "custom") {
    const since = new Date(from);
    const until = new Date(to);
    if (Number.isNaN(since.getTime()) || Number.isNaN(until.getTime())) {
      throw new Error("Pick a start and an end for the custom window.");
    }
    const span = until.getTime() - since.getTime();
    return {
      since: since.toISOString(),
      until: until.toISOString(),
      bucket: span > 7 * 86400 * 1000 ? "day" : "hour",
    };
  }
  const seconds = PRESETS[preset] ?? 86400;
  const until = new Date();
  const since = new Date(until.getTime() - seconds * 1000);
  return { since: since.toISOString(), until: until.toISOString(), bucket: seconds > 7 * 86400 ? "day" : "hour" };
}

export function windowPicker(initial: string, onChange: () => void): {
  element: HTMLElement;
  current: () => Window;
} {
  const preset = select("window", [
    ["1h", "Last hour"], ["24h", "Last 24 hours"], ["7d", "Last 7 days"],
    ["30d", "Last 30 days"], ["custom", "Custom"],
  ], initial);
  const now = new Date();
  const from = h("input", { type: "datetime-local", name: "from", value: local(new Date(now.getTime() - 86400000)) });
  const to = h("input", { type: "datetime-local", name: "to", value: local(now) });
  const custom = h("div", { class: "custom", hidden: initial !== "custom" },
    field("From (local time)", from), field("To (local time)", to));
  preset.addEventListener("change", () => {
    custom.hidden = preset.value !== "custom";
    onChange();
  });
  from.addEventListener("change", onChange);
  to.addEventListener("change", onChange);
  return {
    element: h("div", { class: "window" }, field("Window", preset), custom),
    current: () => resolveWindow(preset.value, from.value, to.value),
  };
}
