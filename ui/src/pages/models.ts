// Models: local models, adapters and commercial models with status, replicas, placement,
// breaker, queue, batch, price and limits; "Test" makes one small generation.
import { ApiError, api } from "../api";
import { alertBox, h, int, ms, showAlert, table, usd } from "../dom";
import type { Cleanup } from "../types";

interface ModelInfo {
  id: string;
  type: string;
  provider: string;
  status: string;
  price: { input_per_million_usd: number; output_per_million_usd: number } | null;
  limits: { max_tokens: number; context_length: number | null; rpm: number | null; tpm: number | null };
  metadata: Record<string, unknown> & { adapter?: { base_model: string; loaded: boolean } };
}

interface ModelState {
  id: string;
  state: string;
  reason: string | null;
  deployment: string | null;
  replicas: Record<string, number> | null;
  ongoing_requests: number | null;
  average_batch_size: number | null;
  placement: Record<string, unknown> | null;
}

interface Status {
  models: ModelState[];
  circuit_breakers: Record<string, { state: string; consecutive_failures: number }>;
}

function replicas(counts: Record<string, number> | null): string {
  if (!counts) return "—";
  return Object.entries(counts).map(([state, n]) => `${n} ${state.toLowerCase()}`).join(", ") || "0";
}

function placement(where: Record<string, unknown> | null | undefined): string {
  if (!where || Object.keys(where).length === 0) return "—";
  const node = String(where.node_id ?? "?").slice(0, 12);
  const gpus = where.cuda_visible_devices ? `GPU ${String(where.cuda_visible_devices)}` : "CPU";
  return `node ${node}…, ${gpus}`;
}

function kind(model: ModelInfo): string {
  if (model.metadata.adapter) return `adapter of ${model.metadata.adapter.base_model}`;
  return model.type === "commercial" ? `commercial (${model.provider})` : "local";
}

export async function models(main: HTMLElement): Promise<Cleanup> {
  const alert = alertBox();
  const result = h("div", { class: "test-result", role: "status", "aria-live": "polite", "data-testid": "test-result" });
  const [list, status] = await Promise.all([
    api<{ models: ModelInfo[] }>("GET", "/api/v1/models"),
    api<Status>("GET", "/api/v1/status"),
  ]);
  const states = new Map(status.models.map((m) => [m.id, m]));

  async function test(model: ModelInfo, button: HTMLButtonElement): Promise<void> {
    button.disabled = true;
    result.textContent = `Testing ${model.id}…`;
    try {
      const answer = await api<{ text: string; model_id: string; metrics: { latency_ms: number; output_tokens: number }; metadata: { cost_usd: number } }>(
        "POST", "/api/v1/generate", { model_id: model.id, prompt: "Say hello.", max_tokens: 8 });
      result.textContent = `${answer.model_id}: ${ms(answer.metrics.latency_ms)}, ${answer.metrics.output_tokens} tokens, ` +
        `${usd(answer.metadata.cost_usd)}: ` + (answer.text.trim() ? `“${answer.text.trim()}”` : "(empty answer)");
      showAlert(alert, null);
    } catch (error) {
      result.textContent = "";
      const detail = error instanceof ApiError ? ` (${error.status} ${error.code ?? error.type})` : "";
      showAlert(alert, `Test of ${model.id} failed: ${(error as Error).message}${detail}`);
    } finally {
      button.disabled = false;
    }
  }

  const rows = list.models.map((model) => {
    const state = states.get(model.id);
    const breaker = state?.deployment ? status.circuit_breakers[state.deployment] : undefined;
    const button = h("button", { type: "button", class: "secondary", "aria-label": `Test ${model.id}` }, "Test");
    button.addEventListener("click", () => void test(model, button));
    const price = model.price ? `${usd(model.price.input_per_million_usd)} / ${usd(model.price.output_per_million_usd)}` : "—";
    return [
      h("strong", {}, model.id), kind(model),
      h("span", { class: model.status === "available" ? "badge ok" : "badge off", title: state?.reason ?? "" }, model.status),
      replicas(state?.replicas ?? null),
      placement((state?.placement ?? model.metadata.placement) as Record<string, unknown> | null),
      breaker ? `${breaker.state} (${breaker.consecutive_failures} failures)` : "closed",
      state?.ongoing_requests ?? "—",
      state?.average_batch_size ?? "—",
      price,
      `${int(model.limits.max_tokens)} tokens` + (model.limits.rpm ? `, ${model.limits.rpm} rpm` : "") +
        (model.limits.tpm ? `, ${model.limits.tpm} tpm` : ""),
      button,
    ];
  });
  main.append(
    h("h1", {}, "Models"),
    alert,
    result,
    table(`${rows.length} models`,
      ["Model", "Kind", "Status", "Replicas", "Placement", "Breaker", "Queue", "Avg batch", "Price in/out per 1M", "Limits", ""],
      rows, "models-table"),
    // Runtime adapters (issue 14's /api/v1/admin/adapters) plug in here once that API exists.
    h("p", { class: "muted" }, "Adapters are declared in the gateway's YAML (adapters:)."),
  );
  return () => undefined;
}
