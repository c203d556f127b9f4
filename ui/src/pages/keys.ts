// Keys (admin): create (shown once, with a copy button), list with limits, budget, spend and
// last use, disable/enable, edit limits and budget. Errors are shown as the API words them.
import { ApiError, api } from "../api";
import { alertBox, clear, field, h, int, showAlert, table, usd, when } from "../dom";
import type { Cleanup, KeyRecord } from "../types";

function numberOrNull(input: HTMLInputElement): number | null {
  return input.value.trim() === "" ? null : Number(input.value);
}

function models(input: HTMLInputElement): string[] {
  return input.value.split(",").map((m) => m.trim()).filter(Boolean);
}

function message(error: unknown): string {
  if (error instanceof ApiError) {
    return `${error.message} (${error.status} ${error.code ?? error.type}, request ${error.requestId ?? "?"})`;
  }
  return (error as Error).message;
}

function limitInputs(key?: KeyRecord): Record<string, HTMLInputElement> {
  return {
    name: h("input", { name: "name", required: true, maxlength: 200, value: key?.name ?? "", autocomplete: "off" }),
    models: h("input", { name: "allowed_models", value: key?.allowed_models.join(", ") ?? "", placeholder: "all models" }),
    rpm: h("input", { name: "rpm", type: "number", min: 1, step: 1, value: key?.rpm ?? "", placeholder: "default" }),
    tpm: h("input", { name: "tpm", type: "number", min: 1, step: 1, value: key?.tpm ?? "", placeholder: "default" }),
    budget: h("input", { name: "budget_usd", type: "number", min: 0, step: "any", value: key?.budget_usd ?? "", placeholder: "none" }),
  };
}

function limitFields(inputs: Record<string, HTMLInputElement>): HTMLElement[] {
  return [
    field("Name", inputs.name),
    field("Allowed models", inputs.models, "Comma-separated; empty = all"),
    field("Requests / min", inputs.rpm),
    field("Tokens / min", inputs.tpm),
    field("Budget (USD)", inputs.budget),
  ];
}

function body(inputs: Record<string, HTMLInputElement>): Record<string, unknown> {
  return {
    name: inputs.name.value,
    allowed_models: models(inputs.models),
    rpm: numberOrNull(inputs.rpm),
    tpm: numberOrNull(inputs.tpm),
    budget_usd: numberOrNull(inputs.budget),
  };
}

export async function keys(main: HTMLElement): Promise<Cleanup> {
  const alert = alertBox();
  const created = h("div", { class: "created", hidden: true, role: "status" });
  const list = h("div", {});
  const create = limitInputs();
  const form = h("form", { class: "controls", novalidate: true, "aria-label": "Create a key", "data-testid": "create-key" },
    ...limitFields(create),
    h("div", { class: "field" }, h("button", { type: "submit" }, "Create key")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void run(async () => {
      const record = await api<KeyRecord & { key: string }>("POST", "/api/v1/admin/keys", body(create));
      form.reset();
      showCreated(record.name, record.key);
    });
  });
  main.append(h("h1", {}, "Keys"), h("h2", {}, "Create a key"), form, created, alert, h("h2", {}, "All keys"), list);

  function showCreated(name: string, plain: string): void {
    clear(created);
    const value = h("input", { readonly: true, value: plain, "data-testid": "new-key", "aria-label": `New key for ${name}` });
    const copied = h("span", { role: "status", class: "muted" });
    created.append(
      h("p", {}, "Key ", h("strong", {}, name), " created. Copy it now: it will not be shown again."),
      h("div", { class: "row" }, value,
        h("button", { type: "button", onclick: () => {
          void navigator.clipboard.writeText(plain).then(
            () => { copied.textContent = "Copied."; },
            () => { value.select(); copied.textContent = "Select the key and copy it (Ctrl+C)."; });
        } }, "Copy"),
        h("button", { type: "button", class: "secondary", onclick: () => { clear(created); created.hidden = true; } }, "Done")),
      copied);
    created.hidden = false;
    value.focus();
  }

  async function run(action: () => Promise<void>): Promise<void> {
    try {
      await action();
      showAlert(alert, null);
      await refresh();
    } catch (error) {
      showAlert(alert, message(error));
    }
  }

  function editRow(key: KeyRecord, cell: HTMLElement): void {
    const inputs = limitInputs(key);
    const editor = h("form", { class: "editor", novalidate: true, "aria-label": `Edit ${key.name}` }, ...limitFields(inputs),
      h("div", { class: "row" }, h("button", { type: "submit" }, "Save"),
        h("button", { type: "button", class: "secondary", onclick: () => void refresh() }, "Cancel")));
    editor.addEventListener("submit", (event) => {
      event.preventDefault();
      void run(async () => { await api("PATCH", `/api/v1/admin/keys/${encodeURIComponent(key.id)}`, body(inputs)); });
    });
    clear(cell);
    cell.append(editor);
    inputs.name.focus();
  }

  function actions(key: KeyRecord): HTMLElement {
    const cell = h("div", { class: "row" });
    const path = `/api/v1/admin/keys/${encodeURIComponent(key.id)}/${key.enabled ? "disable" : "enable"}`;
    cell.append(
      h("button", { type: "button", class: key.enabled ? "danger" : "", "aria-label": `${key.enabled ? "Disable" : "Enable"} ${key.name}`,
        onclick: () => void run(async () => { await api("POST", path); }) }, key.enabled ? "Disable" : "Enable"),
      h("button", { type: "button", class: "secondary", "aria-label": `Edit ${key.name}`, onclick: () => editRow(key, cell) }, "Edit"));
    return cell;
  }

  async function refresh(): Promise<void> {
    const { keys: all } = await api<{ keys: KeyRecord[] }>("GET", "/api/v1/admin/keys");
    clear(list);
    list.append(table(`${all.length} keys`,
      ["Name", "Id", "Models", "RPM", "TPM", "Budget", "Spend", "Last used", "Status", "Actions"],
      all.map((k) => [k.name, h("code", {}, `${k.id} (gw-${k.prefix}…)`), k.allowed_models.join(", ") || "all",
        k.rpm === null ? "default" : int(k.rpm), k.tpm === null ? "default" : int(k.tpm),
        k.budget_usd === null ? "none" : usd(k.budget_usd), usd(k.spend_usd), when(k.last_used_at),
        h("span", { class: k.enabled ? "badge ok" : "badge off" }, k.enabled ? "enabled" : "disabled"), actions(k)]),
      "keys-table", new Set([3, 4, 5, 6])));
  }

  await refresh();
  return () => undefined;
}
