// The API client: the key lives only in this module's session object (memory of this tab),
// and is sent as a bearer header. It is never put in a URL, a cookie or web storage.

export type Role = "admin" | "key" | "open";

export interface Session {
  key: string;
  role: Role;
  keyInfo: Record<string, unknown> | null;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: string,
    readonly code: string | null,
    readonly requestId: string | null,
  ) {
    super(message);
  }
}

const state: { session: Session | null; onSignedOut: (reason: string) => void } = {
  session: null,
  onSignedOut: () => undefined,
};

export function session(): Session | null {
  return state.session;
}

export function onSignedOut(handler: (reason: string) => void): void {
  state.onSignedOut = handler;
}

export function signOut(reason = ""): void {
  state.session = null;
  state.onSignedOut(reason);
}

async function call(key: string, method: string, path: string, body?: unknown): Promise<unknown> {
  const headers: Record<string, string> = { accept: "application/json" };
  if (key) headers.authorization = `Bearer ${key}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
  });
  const text = await response.text();
  let payload: unknown = null;
  try {
    payload = text ? JSON.parse(text) : null;
  } catch {
    payload = null;
  }
  if (!response.ok) {
    const error = (payload as { error?: Record<string, string | null> } | null)?.error ?? {};
    throw new ApiError(
      response.status,
      error.message || `HTTP ${response.status}`,
      error.type || "error",
      error.code ?? null,
      response.headers.get("x-request-id"),
    );
  }
  return payload;
}

export async function signIn(key: string): Promise<Session> {
  const who = (await call(key, "GET", "/api/v1/whoami")) as {
    role: Role;
    key: Record<string, unknown> | null;
  };
  state.session = { key, role: who.role, keyInfo: who.key };
  return state.session;
}

// Every call of a signed-in page: a 401 (key disabled, deleted, or wrong) ends the session
// and sends the user back to the sign-in form with the API's reason.
export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const current = state.session;
  if (current === null) throw new ApiError(401, "Signed out.", "authentication_error", null, null);
  try {
    return (await call(current.key, method, path, body)) as T;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401 && state.session === current) {
      signOut(error.message);
    }
    throw error;
  }
}

export function query(params: Record<string, string | null | undefined>): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(name, value);
  }
  return search.toString();
}
