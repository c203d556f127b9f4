// DOM building without innerHTML: every value becomes a text node or an attribute set
// through the DOM API, so nothing the API returns is ever parsed as HTML.

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (typeof value === "function") {
      el.addEventListener(name.replace(/^on/, ""), value);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el: Element, children: (Child | Child[])[]): void {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el: Element): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

export function usd(value: number | null | undefined): string {
  if (value === null || value === undefined) return "—";
  if (value !== 0 && Math.abs(value) < 0.01) return `$${value.toFixed(6)}`;
  return `$${value.toFixed(4)}`;
}

export function int(value: number | null | undefined): string {
  return value === null || value === undefined ? "—" : Math.round(value).toLocaleString("en-US");
}

export function ms(value: number | null | undefined): string {
  return value === null || value === undefined ? "—" : `${value.toFixed(1)} ms`;
}

export function when(epochSeconds: number | null | undefined): string {
  if (epochSeconds === null || epochSeconds === undefined) return "never";
  return new Date(epochSeconds * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

export function bucketLabel(iso: string, bucket: string): string {
  const text = iso.replace("T", " ");
  return bucket === "day" ? text.slice(0, 10) : text.slice(0, 16);
}

// A table from header names and rows of cells (text, or nodes for action buttons).
export function table(
  caption: string,
  headers: string[],
  rows: Child[][],
  testid: string,
  numeric: Set<number> = new Set(),
): HTMLElement {
  return h(
    "div",
    { class: "table-wrap", tabindex: 0, role: "region", "aria-label": caption },
    h(
      "table",
      { "data-testid": testid },
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, headers.map((name, i) => h("th", { scope: "col", class: numeric.has(i) ? "num" : null }, name)))),
      h(
        "tbody",
        {},
        rows.length === 0
          ? h("tr", {}, h("td", { colspan: headers.length, class: "empty" }, "Nothing yet."))
          : rows.map((cells) =>
              h(
                "tr",
                {},
                cells.map((cell, i) =>
                  h("td", { class: numeric.has(i) ? "num" : null, "data-label": headers[i] }, cell),
                ),
              ),
            ),
      ),
    ),
  );
}

export function field(label: string, control: HTMLElement, hint?: string): HTMLElement {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    control,
    hint ? h("small", {}, hint) : null,
  );
}

export function select(
  name: string,
  options: [string, string][],
  value: string,
): HTMLSelectElement {
  const el = h(
    "select",
    { name },
    options.map(([v, text]) => h("option", { value: v, selected: v === value }, text)),
  );
  el.value = value;
  return el;
}

export function alertBox(): HTMLElement {
  return h("div", { class: "alert", role: "alert", "aria-live": "assertive", hidden: true });
}

export function showAlert(box: HTMLElement, message: string | null, kind = "error"): void {
  box.textContent = message ?? "";
  box.className = `alert ${kind}`;
  box.hidden = !message;
}
