// Talking to the API: the key from localStorage in an Authorization header (never in a URL),
// JSON errors as ApiError, and server-sent events read from fetch() (EventSource cannot send
// headers).

const KEY_STORAGE = "backprop.apiKey";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export const apiKey = {
  get: () => localStorage.getItem(KEY_STORAGE) || "",
  set: (key) => (key ? localStorage.setItem(KEY_STORAGE, key) : localStorage.removeItem(KEY_STORAGE)),
};

function headers(extra = {}) {
  const key = apiKey.get();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function failure(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    message = (await response.json()).error.message;
  } catch {
    // not our JSON error body (a proxy's page): keep the status line
  }
  return new ApiError(response.status, message);
}

export async function getJSON(path, { signal } = {}) {
  const response = await fetch(path, { headers: headers({ Accept: "application/json" }), signal });
  if (!response.ok) throw await failure(response);
  return response.json();
}

/**
 * Read one text/event-stream response until the server closes it.
 * Calls onEvent({event, data, id}) per event; comments (keep-alives) are skipped.
 */
export async function readEvents(path, { lastEventId = null, signal, onEvent }) {
  const extra = { Accept: "text/event-stream" };
  if (lastEventId !== null) extra["Last-Event-ID"] = String(lastEventId);
  const response = await fetch(path, { headers: headers(extra), signal, cache: "no-store" });
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const parsed = parseEvent(block);
      if (parsed) onEvent(parsed);
    }
  }
}

/** One event block ("field: value" lines) -> {event, data, id}, or null for a comment. */
export function parseEvent(block) {
  const event = { event: "message", data: [], id: null };
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event.event = value;
    else if (field === "data") event.data.push(value);
    else if (field === "id") event.id = value;
  }
  if (event.data.length === 0) return null;
  return { ...event, data: event.data.join("\n") };
}
