// The console shell: sign-in, navigation (hash routes), and one page at a time.
import "./style.css";

import { ApiError, onSignedOut, session, signIn, signOut } from "./api";
import { alertBox, clear, field, h, showAlert } from "./dom";
import { keys } from "./pages/keys";
import { models } from "./pages/models";
import { overview } from "./pages/overview";
import { usage } from "./pages/usage";
import type { Cleanup, Page } from "./types";

interface Route {
  title: string;
  page: Page;
  operatorOnly: boolean; // admin (or auth off); an ordinary key never sees it
}

const ROUTES: Record<string, Route> = {
  overview: { title: "Overview", page: overview, operatorOnly: false },
  usage: { title: "Usage", page: usage, operatorOnly: false },
  keys: { title: "Keys", page: keys, operatorOnly: true },
  models: { title: "Models", page: models, operatorOnly: true },
};

const root = document.getElementById("app") as HTMLElement;
const view: { cleanup: Cleanup; generation: number } = { cleanup: () => undefined, generation: 0 };

function allowed(name: string): boolean {
  const route = ROUTES[name];
  if (!route) return false;
  if (name === "keys") return session()?.role === "admin";
  return !route.operatorOnly || session()?.role !== "key";
}

function currentRoute(): string {
  const name = location.hash.replace(/^#\/?/, "");
  return allowed(name) ? name : "overview";
}

function renderSignIn(reason: string): void {
  view.cleanup();
  view.cleanup = () => undefined;
  clear(root);
  document.title = "Sign in · llm-gateway";
  const alert = alertBox();
  const input = h("input", { type: "password", name: "api-key", autocomplete: "off", spellcheck: "false",
    "data-testid": "key-input" });
  const form = h("form", { class: "signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "llm-gateway console"),
    h("p", { class: "muted" }, "Sign in with the admin key or an API key. The key stays in this tab's memory only."),
    field("API key", input),
    alert,
    h("button", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void (async () => {
      try {
        await signIn(input.value.trim());
        input.value = "";
        await renderShell();
      } catch (error) {
        const why = error instanceof ApiError ? error.message : "The gateway did not answer.";
        showAlert(alert, `Sign-in failed: ${why}`);
        input.focus();
      }
    })();
  });
  root.append(h("main", { id: "main" }, form));
  if (reason) showAlert(alert, `You were signed out: ${reason}`);
  input.focus();
}

async function renderShell(): Promise<void> {
  const active = currentRoute();
  const generation = ++view.generation;
  view.cleanup();
  view.cleanup = () => undefined;
  clear(root);
  const who = session();
  const main = h("main", { id: "main", tabindex: -1 });
  const identity = who?.role === "admin" ? "admin" : who?.role === "open" ? "auth off" : String(who?.keyInfo?.name ?? "key");
  root.append(
    h("header", { class: "top" },
      h("a", { class: "skip", href: "#/" + active, onclick: (e: Event) => { e.preventDefault(); main.focus(); } }, "Skip to content"),
      h("span", { class: "brand" }, "llm-gateway"),
      h("nav", { "aria-label": "Console" },
        Object.entries(ROUTES).filter(([name]) => allowed(name)).map(([name, route]) =>
          h("a", { href: `#/${name}`, "aria-current": name === active ? "page" : null }, route.title))),
      h("span", { class: "who", "data-testid": "identity" }, `Signed in: ${identity}`),
      h("button", { type: "button", class: "secondary", onclick: () => signOut("") }, "Sign out")),
    main,
  );
  document.title = `${ROUTES[active].title} · llm-gateway`;
  try {
    const cleanup = await ROUTES[active].page(main);
    if (generation === view.generation) view.cleanup = cleanup;
    else cleanup();
  } catch (error) {
    if (session() === null) return; // a 401 already sent the user to sign-in
    const box = alertBox();
    main.append(box);
    showAlert(box, (error as Error).message);
  }
}

onSignedOut((reason) => {
  history.replaceState(null, "", location.pathname);
  renderSignIn(reason);
});
window.addEventListener("hashchange", () => {
  if (session() !== null) void renderShell();
});
renderSignIn("");
