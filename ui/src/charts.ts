// Stacked bar charts (Chart.js, canvas). Each chart's canvas says how many series it drew
// (`data-series`) and carries a text summary for screen readers.
import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  Legend,
  LinearScale,
  Tooltip,
} from "chart.js";

import { h } from "./dom";

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Legend, Tooltip);

const PALETTE = [
  "#2563eb", "#d97706", "#059669", "#dc2626", "#7c3aed",
  "#0891b2", "#be185d", "#4d7c0f", "#9a3412", "#475569",
];

export interface Series {
  name: string;
  values: number[];
}

export function stackedChart(
  title: string,
  labels: string[],
  series: Series[],
  testid: string,
  format: (value: number) => string,
  integers = false, // counts: whole-number ticks only
): { element: HTMLElement; destroy: () => void } {
  const total = series.reduce((sum, s) => sum + s.values.reduce((a, b) => a + b, 0), 0);
  const canvas = h("canvas", {
    role: "img",
    "data-testid": testid,
    "data-series": series.length,
    "aria-label": `${title}: ${series.length} series, total ${format(total)}. ` +
      series.map((s) => `${s.name}: ${format(s.values.reduce((a, b) => a + b, 0))}`).join("; "),
  });
  const element = h("figure", { class: "chart" }, h("figcaption", {}, title),
    h("div", { class: "chart-box" }, canvas));
  const chart = new Chart(canvas, {
    type: "bar",
    data: {
      labels,
      datasets: series.map((s, i) => ({
        label: s.name, // Chart.js draws labels as canvas text, never as HTML
        data: s.values,
        backgroundColor: PALETTE[i % PALETTE.length],
        borderWidth: 0,
        stack: "all",
      })),
    },
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      interaction: { mode: "index", intersect: false },
      scales: {
        x: { stacked: true, ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 8 } },
        y: { stacked: true, beginAtZero: true, ticks: { precision: integers ? 0 : undefined, callback: (v) => format(Number(v)) } },
      },
      plugins: {
        legend: { position: "bottom", labels: { boxWidth: 12 } },
        tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${format(Number(c.raw))}` } },
      },
    },
  });
  return { element, destroy: () => chart.destroy() };
}
