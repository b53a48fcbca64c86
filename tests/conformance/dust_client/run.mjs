// Conformance run of the real `@dust-tt/client` SDK (pinned in package.json) against a live Alexandria server.
//
// Driven by tests/conformance/test_dust_client.py, which starts the server and passes, in the environment:
//   ALEX_BASE_URL, ALEX_WORKSPACE, ALEX_BUILDER_KEY, ALEX_SYSTEM_KEY, ALEX_DS_DOCS, ALEX_DS_TABLES,
//   ALEX_VIEW_SETUP (optional: what the harness did, or failed to do, to create a custom data source view).
// Prints ONE JSON report on stdout ({sdk_version, node_version, schemas, checks:[{name, ok, details}], summary}) and
// exits 1 when any check fails. SDK logs go to stderr.
//
// Response bodies are validated with the package's zod schemas: the exported ones where the package exports them,
// otherwise the package's own (non-exported) definitions, evaluated from the `src/types.ts` the package ships.
// Request bodies and queries are parsed with the exported request schemas before they are sent.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const require = createRequire(import.meta.url);
const sdk = require("@dust-tt/client");
const { z } = require("zod");
const { DustAPI } = sdk;

const SDK_DIR = dirname(require.resolve("@dust-tt/client/package.json"));
const SDK_VERSION = JSON.parse(readFileSync(join(SDK_DIR, "package.json"), "utf8")).version;

const env = (name, fallback) => {
  const v = process.env[name];
  if (v === undefined || v === "") {
    if (fallback !== undefined) return fallback;
    throw new Error(`missing environment variable ${name}`);
  }
  return v;
};
const BASE = env("ALEX_BASE_URL");
const WS = env("ALEX_WORKSPACE");
const BUILDER_KEY = env("ALEX_BUILDER_KEY");
const SYSTEM_KEY = env("ALEX_SYSTEM_KEY");
const DS = env("ALEX_DS_DOCS");
const DS_TABLES = env("ALEX_DS_TABLES");
const VIEW_SETUP = env("ALEX_VIEW_SETUP", "(not reported by the harness)");
const CHECK_TIMEOUT_MS = Number(env("ALEX_CHECK_TIMEOUT_MS", "30000"));

// --- schemas ---------------------------------------------------------------------------------------------------------
const used = { exported: new Set(), from_source: new Set(), request: new Set() };

function exported(name) {
  const s = sdk[name];
  if (!s || typeof s.safeParse !== "function") throw new Error(`@dust-tt/client does not export zod schema ${name}`);
  return s;
}

// Sub-schemas reachable from exported ones (the package exports their wrappers, not the schemas themselves).
const DataSourceTypeSchema = exported("GetDataSourcesResponseSchema").shape.data_sources.element;
const DataSourceViewSchema = exported("DataSourceViewResponseSchema").shape.dataSourceView;

// The package's non-exported response schemas, taken verbatim from the src/types.ts it ships and evaluated with the
// same zod. Each entry: [name, names of the schemas it refers to].
const SOURCE_SCHEMAS = [
  ["CoreAPIDocumentChunkSchema", []],
  ["CoreAPIDocumentSchema", ["CoreAPIDocumentChunkSchema"]],
  ["CoreAPILightDocumentSchema", []],
  ["CoreAPIRowValueSchema", []],
  ["CoreAPIRowSchema", ["CoreAPIRowValueSchema"]],
  ["CoreAPITableSchema", []],
  ["CoreAPITablePublicSchema", ["CoreAPITableSchema"]],
  ["GetDocumentResponseSchema", ["CoreAPIDocumentSchema"]],
  ["GetDocumentsResponseSchema", ["CoreAPIDocumentSchema"]],
  ["UpsertDocumentResponseSchema", ["CoreAPIDocumentSchema", "CoreAPILightDocumentSchema", "DataSourceTypeSchema"]],
  ["DeleteDocumentResponseSchema", []],
  ["PostParentsResponseSchema", []],
  ["CheckUpsertQueueResponseSchema", []],
  ["DataSourceSearchResponseSchema", ["CoreAPIDocumentSchema"]],
  ["DataSourceViewsListResponseSchema", ["DataSourceViewSchema"]],
  ["GetTableRowsResponseSchema", ["CoreAPIRowSchema"]],
  ["UpsertTableRowsResponseSchema", ["CoreAPITableSchema"]],
  ["ListTableRowsResponseSchema", ["CoreAPIRowSchema"]],
  ["GetTableResponseSchema", ["CoreAPITablePublicSchema"]],
  ["ListTablesResponseSchema", ["CoreAPITablePublicSchema"]],
  ["UpsertTableResponseSchema", ["CoreAPITablePublicSchema"]],
  ["PostTableParentsResponseSchema", []],
];

function extractDefinition(source, name) {
  const m = new RegExp(`(?:^|\\n)(?:export )?const ${name}\\s*=\\s*`).exec(source);
  if (!m) throw new Error(`${name} not found in @dust-tt/client/src/types.ts`);
  let i = m.index + m[0].length;
  const start = i;
  let depth = 0;
  for (; i < source.length; i++) {
    const c = source[i];
    if (c === '"' || c === "'" || c === "`") {
      for (i++; i < source.length && source[i] !== c; i++) if (source[i] === "\\") i++;
    } else if (c === "/" && source[i + 1] === "/") {
      while (i < source.length && source[i] !== "\n") i++;
    } else if ("([{".includes(c)) depth++;
    else if (")]}".includes(c)) depth--;
    else if (c === ";" && depth === 0) return source.slice(start, i);
  }
  throw new Error(`unterminated definition of ${name}`);
}

const S = { DataSourceTypeSchema, DataSourceViewSchema };
let schemaLoadError = null;
try {
  const source = readFileSync(join(SDK_DIR, "src", "types.ts"), "utf8");
  for (const [name, deps] of SOURCE_SCHEMAS) {
    const expr = extractDefinition(source, name);
    // biome-ignore lint: evaluating the package's own schema source
    S[name] = new Function("z", ...deps, `return (${expr});`)(z, ...deps.map((d) => S[d]));
  }
} catch (e) {
  schemaLoadError = String(e && e.stack ? e.stack : e);
}

function schema(name) {
  if (sdk[name] && typeof sdk[name].safeParse === "function") {
    used.exported.add(name);
    return sdk[name];
  }
  if (!S[name]) throw new Error(`schema ${name} unavailable: ${schemaLoadError ?? "not loaded"}`);
  used.from_source.add(name);
  return S[name];
}

function requestBody(name, body) {
  const r = exported(name).safeParse(body);
  used.request.add(name);
  if (!r.success) throw new CheckError(`request body rejected by ${name}`, { body, issues: r.error.issues });
  return body;
}

// --- clients ---------------------------------------------------------------------------------------------------------
const sdkLogs = [];
const logger = Object.fromEntries(
  ["error", "warn", "info", "trace", "debug"].map((level) => [
    level,
    (args, message) => {
      sdkLogs.push({ level, message });
      process.stderr.write(`[sdk ${level}] ${message} ${safeJson(args)}\n`);
    },
  ])
);

function safeJson(v) {
  try {
    return JSON.stringify(v, (_k, x) => (x instanceof Error ? String(x) : x)).slice(0, 2000);
  } catch {
    return String(v);
  }
}

// Newest constructor form for the builder key, legacy form for the system key: both are exercised.
const builder = new DustAPI({ workspaceId: WS, apiKey: BUILDER_KEY, baseUrl: BASE, logger });
const system = new DustAPI({ url: BASE }, { workspaceId: WS, apiKey: SYSTEM_KEY }, logger);
const badKey = new DustAPI({ url: BASE }, { workspaceId: WS, apiKey: "sk-not-a-real-key-0000000000" }, logger);

// --- check harness ---------------------------------------------------------------------------------------------------
class CheckError extends Error {
  constructor(message, details) {
    super(message);
    this.details = details;
  }
}

function expect(cond, message, details) {
  if (!cond) throw new CheckError(message, details);
}

const checks = [];
async function check(name, fn) {
  const started = Date.now();
  let timer;
  try {
    const details = await Promise.race([
      fn(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new CheckError(`timed out after ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS);
      }),
    ]);
    checks.push({ name, ok: true, details: details ?? null, ms: Date.now() - started });
  } catch (e) {
    const details =
      e instanceof CheckError
        ? { reason: e.message, ...(e.details !== undefined ? { context: e.details } : {}) }
        : { reason: `exception: ${e && e.stack ? e.stack : e}` };
    checks.push({ name, ok: false, details, ms: Date.now() - started });
  } finally {
    clearTimeout(timer);
  }
}

const clip = (s, n = 1500) => (typeof s === "string" && s.length > n ? `${s.slice(0, n)}…(${s.length} chars)` : s);

// One request through `dustAPI.request()`; returns the raw result and a printable summary of the server's answer.
async function call(client, { method, path, query, body }) {
  const res = await client.request({ method, path, query, body });
  if (res.isErr()) return { res, status: null, text: null, json: undefined, where: `${method} ${path}` };
  const { status, body: text } = res.value.response;
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { res, status, text, json, where: `${method} ${path}${query ? `?${query}` : ""}` };
}

const server = (r) =>
  r.status === null
    ? { request: r.where, network_error: r.res.error }
    : { request: r.where, status: r.status, body: clip(r.text) };

// Validates a successful answer: HTTP 200, the named schema parses it, and the SDK's own result handling
// (`DustAPI._resultFromResponse`, private in TypeScript, the code path behind every SDK method) gives Ok.
async function ok(client, r, schemaName) {
  expect(r.status !== null, "network error", server(r));
  const sdkResult = await client._resultFromResponse(schema(schemaName), r.res);
  const parsed = schema(schemaName).safeParse(r.json);
  expect(r.status === 200, `expected HTTP 200, got ${r.status}`, server(r));
  expect(parsed.success, `response does not match ${schemaName}`, {
    ...server(r),
    issues: parsed.success ? undefined : parsed.error.issues.slice(0, 10),
  });
  expect(sdkResult.isOk(), `SDK result is an error`, { ...server(r), sdk_error: sdkResult.error });
  return sdkResult.value;
}

// The SDK's error result for an answer (what any SDK method would return), with the schema it would have used.
async function sdkError(client, r, schemaName) {
  const result = await client._resultFromResponse(schema(schemaName), r.res);
  expect(result.isErr(), `expected an SDK error result, got Ok`, server(r));
  return result.error;
}

const qs = (params) => {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined) continue;
    for (const item of Array.isArray(v) ? v : [v]) q.append(k, String(item));
  }
  return q;
};

// --- fixtures --------------------------------------------------------------------------------------------------------
const NOW = Date.now();
const DOCS = {
  "doc-photosynthesis": {
    text: "Plants convert sunlight, water and carbon dioxide into glucose and oxygen in their leaves.",
    tags: ["biology", "shared"],
    timestamp: NOW - 3_000_000,
  },
  "doc-volcano": {
    text: "Magma rises through the crust and erupts as lava from a volcano, building new rock.",
    tags: ["geology", "shared"],
    timestamp: NOW - 2_000_000,
  },
  "doc-inflation": {
    text: "Central banks raise interest rates to slow down rising consumer prices and cool the economy.",
    tags: ["economics"],
    timestamp: NOW - 1_000_000,
  },
};
const FOLDER_ID = "folder: field notes";
const state = { space: null, views: [], defaultView: null, customView: null };

const dsRoot = (ds = DS) => `spaces/${state.space}/data_sources/${ds}`;
const docPath = (id, ds = DS) => `${dsRoot(ds)}/documents/${encodeURIComponent(id)}`;
const idsOf = (documents) => documents.map((d) => d.document_id);

async function search(params, { client = builder, path = `${dsRoot()}/search` } = {}) {
  // The query must satisfy the SDK's DataSourceSearchQuerySchema (the server's own parser in Dust).
  requestBody("DataSourceSearchQuerySchema", params);
  const r = await call(client, { method: "GET", path, query: qs(params) });
  const value = await ok(client, r, "DataSourceSearchResponseSchema");
  return { r, documents: value.documents };
}

// --- 1. spaces, data sources, views (SDK methods and request()) ------------------------------------------------------
await check("sdk.getSpaces", async () => {
  const res = await builder.getSpaces();
  expect(res.isOk(), "getSpaces() returned an error", { sdk_error: res.isErr() ? res.error : undefined });
  used.exported.add("GetSpacesResponseSchema");
  const global = res.value.find((s) => s.kind === "global");
  expect(global, "no space of kind `global`", { spaces: res.value });
  state.space = global.sId;
  state.spaces = res.value;
  return { spaces: res.value.map((s) => `${s.sId} (${s.kind})`) };
});
state.space ??= "vlt_unknown";

await check("sdk.getDataSources (legacy route → global space)", async () => {
  const res = await builder.getDataSources();
  expect(res.isOk(), "getDataSources() returned an error", { sdk_error: res.isErr() ? res.error : undefined });
  used.exported.add("GetDataSourcesResponseSchema");
  const ids = res.value.map((d) => d.sId);
  expect(ids.includes(DS) && ids.includes(DS_TABLES), "the data sources created by the harness are missing", { ids });
  return { data_sources: ids };
});

await check("request.GET spaces/{spaceId}/data_sources", async () => {
  const r = await call(builder, { method: "GET", path: `spaces/${state.space}/data_sources` });
  const value = await ok(builder, r, "GetDataSourcesResponseSchema");
  expect(
    value.data_sources.some((d) => d.sId === DS),
    "data source missing from its space",
    server(r)
  );
});

await check("request.GET spaces/{spaceId}/data_source_views", async () => {
  const spaces = state.spaces ?? [{ sId: state.space, kind: "global" }];
  const seen = [];
  for (const space of spaces) {
    const r = await call(builder, { method: "GET", path: `spaces/${space.sId}/data_source_views` });
    if (space.kind !== "global" && r.status !== 200) continue; // other spaces may be closed to a builder key
    const value = await ok(builder, r, "DataSourceViewsListResponseSchema");
    seen.push(...value.dataSourceViews);
  }
  state.views = seen;
  state.defaultView = seen.find((v) => v.kind === "default" && v.dataSource.sId === DS);
  expect(state.defaultView, "no default view of the data source in the listing", { views: seen });
  expect(
    state.defaultView.spaceId === state.space && state.defaultView.parentsIn === null,
    "default view must have spaceId = its space and parentsIn = null",
    { view: state.defaultView }
  );
  return { views: seen.map((v) => `${v.sId} (${v.kind}, ds=${v.dataSource.sId}, space=${v.spaceId})`) };
});

// The system key may see spaces (e.g. the one holding a custom view) that the builder key cannot.
await check("request.GET data_source_views (system key, every space)", async () => {
  const res = await system.getSpaces();
  expect(res.isOk(), "getSpaces() with the system key returned an error", { sdk_error: res.error });
  const found = [];
  for (const space of res.value) {
    const r = await call(system, { method: "GET", path: `spaces/${space.sId}/data_source_views` });
    const value = await ok(system, r, "DataSourceViewsListResponseSchema");
    found.push(...value.dataSourceViews);
  }
  state.customView = found.find((v) => v.kind === "custom" && v.dataSource.sId === DS) ?? null;
  return { spaces: res.value.map((s) => `${s.sId} (${s.kind})`), views: found.map((v) => `${v.sId} (${v.kind})`) };
});

await check("request.GET spaces/{spaceId}/data_source_views/{dsvId}", async () => {
  expect(state.defaultView, "no default view to fetch (see the listing check)");
  const r = await call(builder, {
    method: "GET",
    path: `spaces/${state.space}/data_source_views/${state.defaultView.sId}`,
  });
  const value = await ok(builder, r, "DataSourceViewResponseSchema");
  expect(value.dataSourceView.sId === state.defaultView.sId, "wrong view returned", server(r));
});

await check("sdk.searchDataSourceViews (system key)", async () => {
  const params = { dataSourceId: DS, kind: "default" };
  requestBody("SearchDataSourceViewsRequestSchema", params);
  const res = await system.searchDataSourceViews(new URLSearchParams(params));
  expect(res.isOk(), "searchDataSourceViews() returned an error", { sdk_error: res.isErr() ? res.error : undefined });
  used.exported.add("SearchDataSourceViewsResponseSchema");
  expect(
    res.value.some((v) => v.dataSource.sId === DS && v.kind === "default"),
    "the data source's default view is not in the result",
    { views: res.value }
  );
  return { views: res.value.map((v) => v.sId) };
});

await check("sdk.searchDataSourceViews (builder key is refused)", async () => {
  const res = await builder.searchDataSourceViews(new URLSearchParams({ dataSourceId: DS }));
  expect(res.isErr(), "a non-system key must not be able to search views (Dust: 404)", { value: res.value });
  return { sdk_error: res.error };
});

// --- 2. documents ----------------------------------------------------------------------------------------------------
await check("documents.upsert (sync)", async () => {
  const out = {};
  for (const [id, doc] of Object.entries(DOCS)) {
    const body = requestBody("PostDataSourceDocumentRequestSchema", {
      title: id,
      text: doc.text,
      tags: doc.tags,
      timestamp: doc.timestamp,
      source_url: `https://example.com/${id}`,
      mime_type: "text/plain",
    });
    const r = await call(builder, { method: "POST", path: docPath(id), body });
    const value = await ok(builder, r, "UpsertDocumentResponseSchema");
    expect(value.document.document_id === id, "document.document_id differs from the URL id", server(r));
    expect(value.data_source.sId === DS, "data_source.sId differs from the data source", server(r));
    expect(value.document.chunk_count >= 1 && value.document.chunks.length >= 1, "no chunks", server(r));
    out[id] = { hash: value.document.hash, chunks: value.document.chunk_count };
  }
  return out;
});

await check("documents.upsert (section tree, light_document_output)", async () => {
  const body = requestBody("PostDataSourceDocumentRequestSchema", {
    title: "Sectioned",
    section: {
      prefix: "# Tides\n",
      content: null,
      sections: [{ prefix: null, content: "The moon's gravity pulls the oceans and causes tides.", sections: [] }],
    },
    light_document_output: true,
    upsert_context: { sync_type: "incremental" },
  });
  const r = await call(builder, { method: "POST", path: docPath("doc-tides"), body });
  const value = await ok(builder, r, "UpsertDocumentResponseSchema");
  const light = schema("CoreAPILightDocumentSchema").safeParse(value.document);
  expect(light.success, "light_document_output:true must return a LightDocument", server(r));
  return { document: value.document };
});

await check("documents.upsert (async:true)", async () => {
  const body = requestBody("PostDataSourceDocumentRequestSchema", {
    title: "Async",
    text: "Tectonic plates slip along faults and release energy as seismic waves during an earthquake.",
    tags: ["geology"],
    async: true,
  });
  const r = await call(builder, { method: "POST", path: docPath("doc-async"), body });
  // Dust answers `{"document":{"document_id"}}` only (no data_source), i.e. the third branch of the SDK's
  // UpsertDocumentResponseSchema.document union.
  const asyncBranch = schema("UpsertDocumentResponseSchema").shape.document.options[2];
  expect(r.status === 200, `expected HTTP 200, got ${r.status}`, server(r));
  const parsed = asyncBranch.safeParse(r.json?.document);
  expect(parsed.success && parsed.data.document_id === "doc-async", "expected {document:{document_id}}", server(r));
  const fullSchema = schema("UpsertDocumentResponseSchema").safeParse(r.json).success;
  // The document must become readable shortly after.
  const deadline = Date.now() + 20_000;
  let g;
  for (;;) {
    g = await call(builder, { method: "GET", path: docPath("doc-async") });
    if (g.status === 200 || Date.now() > deadline) break;
    await new Promise((res) => setTimeout(res, 250));
  }
  await ok(builder, g, "GetDocumentResponseSchema");
  return { response: r.json, also_matches_full_UpsertDocumentResponseSchema: fullSchema };
});

await check("check_upsert_queue (system key: running_count drains to 0)", async () => {
  // Queue a few async upserts, then poll the queue as connectors do for back-pressure.
  for (const i of [1, 2, 3]) {
    const body = requestBody("PostDataSourceDocumentRequestSchema", {
      text: `Queued note number ${i} about ocean currents and climate.`,
      async: true,
    });
    await call(system, { method: "POST", path: `data_sources/${DS}/documents/doc-queued-${i}`, body });
  }
  const deadline = Date.now() + 20_000;
  const seen = [];
  let last;
  for (;;) {
    const q = await call(system, { method: "GET", path: `data_sources/${DS}/check_upsert_queue` });
    last = await ok(system, q, "CheckUpsertQueueResponseSchema");
    seen.push(last.running_count);
    if (last.running_count === 0 || Date.now() > deadline) break;
    await new Promise((res) => setTimeout(res, 250));
  }
  expect(last.running_count === 0, "the upsert queue did not drain within 20 s", { running_counts: seen });
  const list = await call(builder, {
    method: "GET",
    path: `${dsRoot()}/documents`,
    query: qs({ document_ids: ["doc-queued-1", "doc-queued-2", "doc-queued-3"] }),
  });
  const value = await ok(builder, list, "GetDocumentsResponseSchema");
  expect(value.documents.length === 3, "queued documents must be stored once the queue is empty", server(list));
  return { running_counts: seen };
});

await check("check_upsert_queue (system key, legacy and space routes)", async () => {
  const legacy = await call(system, { method: "GET", path: `data_sources/${DS}/check_upsert_queue` });
  const a = await ok(system, legacy, "CheckUpsertQueueResponseSchema");
  const spaced = await call(system, { method: "GET", path: `${dsRoot()}/check_upsert_queue` });
  const b = await ok(system, spaced, "CheckUpsertQueueResponseSchema");
  return { legacy: a, space: b };
});

await check("check_upsert_queue (builder key → 403 data_source_auth_error)", async () => {
  const r = await call(builder, { method: "GET", path: `${dsRoot()}/check_upsert_queue` });
  const err = await sdkError(builder, r, "CheckUpsertQueueResponseSchema");
  expect(r.status === 403 && err.type === "data_source_auth_error", "expected 403 data_source_auth_error", {
    ...server(r),
    sdk_error: err,
  });
});

await check("documents.get", async () => {
  const id = "doc-photosynthesis";
  const r = await call(builder, { method: "GET", path: docPath(id) });
  const value = await ok(builder, r, "GetDocumentResponseSchema");
  const d = value.document;
  expect(d.document_id === id && d.text === DOCS[id].text, "wrong document or text", server(r));
  expect(d.timestamp === DOCS[id].timestamp, "timestamp not kept (ms)", server(r));
  expect(DOCS[id].tags.every((t) => d.tags.includes(t)), "tags not kept", server(r));
  expect(d.source_url === `https://example.com/${id}`, "source_url not kept", server(r));
});

await check("documents.get (legacy route without space)", async () => {
  const r = await call(builder, { method: "GET", path: `data_sources/${DS}/documents/doc-volcano` });
  await ok(builder, r, "GetDocumentResponseSchema");
});

await check("documents.list", async () => {
  const r = await call(builder, { method: "GET", path: `${dsRoot()}/documents`, query: qs({ limit: 50, offset: 0 }) });
  const value = await ok(builder, r, "GetDocumentsResponseSchema");
  const ids = idsOf(value.documents);
  expect(Object.keys(DOCS).every((id) => ids.includes(id)), "upserted documents missing", { ids, total: value.total });
  expect(value.total >= Object.keys(DOCS).length, "total too small", { total: value.total });
  const some = await call(builder, {
    method: "GET",
    path: `${dsRoot()}/documents`,
    query: qs({ document_ids: ["doc-volcano", "doc-inflation"] }),
  });
  const v2 = await ok(builder, some, "GetDocumentsResponseSchema");
  expect(
    JSON.stringify(idsOf(v2.documents).sort()) === JSON.stringify(["doc-inflation", "doc-volcano"]),
    "document_ids filter not applied",
    server(some)
  );
  return { ids, total: value.total };
});

// --- 3. folders and hierarchy (system key, as connectors do) ---------------------------------------------------------
await check("sdk.upsertFolder", async () => {
  const args = {
    dataSourceId: DS,
    folderId: FOLDER_ID,
    timestamp: NOW + 0.7,
    title: "Field notes",
    parentId: null,
    parents: [FOLDER_ID],
    mimeType: "application/vnd.dust.folder",
    sourceUrl: null,
    providerVisibility: null,
  };
  // The exact body upsertFolder() sends.
  requestBody("UpsertDataSourceFolderRequestSchema", {
    timestamp: Math.floor(args.timestamp),
    title: args.title,
    parent_id: args.parentId,
    parents: args.parents,
    mime_type: args.mimeType,
    source_url: args.sourceUrl,
    provider_visibility: args.providerVisibility,
  });
  const res = await system.upsertFolder(args);
  expect(res.isOk(), "upsertFolder() returned an error", { sdk_error: res.isErr() ? res.error : undefined });
  used.exported.add("UpsertFolderResponseSchema");
  const f = res.value.folder;
  expect(f.folder_id === FOLDER_ID && f.title === "Field notes", "wrong folder echoed", res.value);
  expect(res.value.data_source.sId === DS, "data_source.sId differs", res.value);
  return res.value.folder;
});

await check("documents.upsert under a folder (system key, parents + parent_id)", async () => {
  const body = requestBody("PostDataSourceDocumentRequestSchema", {
    title: "Mitochondria",
    text: "The mitochondrion produces most of the cell's ATP through cellular respiration.",
    parents: ["doc-mito", FOLDER_ID],
    parent_id: FOLDER_ID,
    tags: ["biology"],
  });
  const r = await call(system, { method: "POST", path: `data_sources/${DS}/documents/doc-mito`, body });
  await ok(system, r, "UpsertDocumentResponseSchema");
  const hits = await search({ query: "cellular energy ATP", top_k: 5, parents_in: [FOLDER_ID] });
  expect(
    JSON.stringify(idsOf(hits.documents)) === JSON.stringify(["doc-mito"]),
    "parents_in=<folder> must match the folder's children",
    server(hits.r)
  );
});

await check("documents.parents update", async () => {
  const body = { parents: ["doc-inflation", FOLDER_ID], parent_id: FOLDER_ID };
  // No document-specific schema is exported; PostTableParentsRequestSchema has the same shape.
  requestBody("PostTableParentsRequestSchema", body);
  const r = await call(system, { method: "POST", path: `${docPath("doc-inflation")}/parents`, body });
  const value = await ok(system, r, "PostParentsResponseSchema");
  expect(value.updated === true, "updated must be true", server(r));
  const g = await call(builder, { method: "GET", path: docPath("doc-inflation") });
  const doc = (await ok(builder, g, "GetDocumentResponseSchema")).document;
  expect(doc.parent_id === FOLDER_ID, "parent_id not updated", server(g));
  expect(JSON.stringify(g.json.document.parents) === JSON.stringify(body.parents), "parents not updated", server(g));
});

// --- 4. search -------------------------------------------------------------------------------------------------------
await check("search (query, top_k; no full_text → no text)", async () => {
  const { r, documents } = await search({ query: "how do plants make sugar from light", top_k: 3 });
  expect(documents.length >= 1 && documents[0].document_id === "doc-photosynthesis", "wrong top document", server(r));
  const chunks = documents.flatMap((d) => d.chunks);
  expect(chunks.length <= 3, "top_k counts chunks: more than 3 returned", server(r));
  expect(
    chunks.every((c) => typeof c.score === "number" && c.score >= -1 && c.score <= 1),
    "chunk scores must be numbers in [-1, 1]",
    server(r)
  );
  expect(
    documents.every((d) => d.text === undefined || d.text === null),
    "text must be absent without full_text",
    server(r)
  );
  return { ranking: idsOf(documents), top_score: chunks[0]?.score };
});

await check("search (full_text=true)", async () => {
  const { r, documents } = await search({ query: "volcano lava", top_k: 2, full_text: true });
  const top = documents.find((d) => d.document_id === "doc-volcano");
  expect(top && top.text === DOCS["doc-volcano"].text, "full_text must return the whole document text", server(r));
});

await check("search (tags_in / tags_not)", async () => {
  const query = "sunlight plants lava volcano interest rates prices";
  const a = await search({ query, top_k: 10, tags_in: ["economics"] });
  expect(
    JSON.stringify(idsOf(a.documents)) === JSON.stringify(["doc-inflation"]),
    "tags_in=[economics] must return only doc-inflation",
    server(a.r)
  );
  const b = await search({ query, top_k: 10, tags_in: ["economics", "geology"] });
  const bIds = idsOf(b.documents);
  expect(
    bIds.includes("doc-inflation") && bIds.includes("doc-volcano") && !bIds.includes("doc-photosynthesis"),
    "tags_in is an OR over its values",
    server(b.r)
  );
  const c = await search({ query, top_k: 10, tags_not: ["shared"] });
  const cIds = idsOf(c.documents);
  expect(
    !cIds.includes("doc-photosynthesis") && !cIds.includes("doc-volcano") && cIds.includes("doc-inflation"),
    "tags_not must exclude tagged documents",
    server(c.r)
  );
});

await check("search (parents_in / parents_not)", async () => {
  const a = await search({ query: "magma and lava", top_k: 10, parents_in: ["doc-volcano"] });
  expect(
    JSON.stringify(idsOf(a.documents)) === JSON.stringify(["doc-volcano"]),
    "parents_in=[doc] must target that document",
    server(a.r)
  );
  const b = await search({ query: "lava", top_k: 10, parents_not: ["doc-volcano"] });
  expect(!idsOf(b.documents).includes("doc-volcano"), "parents_not must exclude the document", server(b.r));
});

await check("search (timestamp_gt / timestamp_lt, inclusive, ms)", async () => {
  const ts = DOCS["doc-volcano"].timestamp;
  const params = { query: "sunlight lava prices", top_k: 10, timestamp_gt: ts, timestamp_lt: ts };
  const { r, documents } = await search(params);
  expect(
    JSON.stringify(idsOf(documents)) === JSON.stringify(["doc-volcano"]),
    "gt=lt=<doc timestamp> must return exactly that document (both bounds inclusive)",
    server(r)
  );
});

await check("search (empty query → latest first, score null)", async () => {
  const { r, documents } = await search({ query: "", top_k: 3, tags_in: ["shared", "economics"] });
  expect(
    JSON.stringify(idsOf(documents)) === JSON.stringify(["doc-inflation", "doc-volcano", "doc-photosynthesis"]),
    "documents must be sorted by timestamp desc",
    server(r)
  );
  expect(
    documents.flatMap((d) => d.chunks).every((c) => c.score === null || c.score === undefined),
    "scores must be null for an empty query",
    server(r)
  );
});

await check("search (data source view route)", async () => {
  expect(state.defaultView, "no default view (see the listing check)");
  const { r, documents } = await search(
    { query: "interest rates", top_k: 3 },
    { path: `spaces/${state.space}/data_source_views/${state.defaultView.sId}/search` }
  );
  expect(documents[0]?.document_id === "doc-inflation", "wrong top document through the view", server(r));
});

// --- 5. views: PATCH -------------------------------------------------------------------------------------------------
await check("sdk.patchDataSourceView (custom view: parentsToAdd, view search, parentsToRemove)", async () => {
  const view = state.customView;
  expect(view, "no custom data source view of the data source exists, so there is nothing to patch", {
    harness_view_setup: VIEW_SETUP,
    views_seen: state.views.map((v) => `${v.sId} (${v.kind})`),
  });
  const viewSearch = `spaces/${view.spaceId}/data_source_views/${view.sId}/search`;
  const mixed = { query: "sunlight plants lava volcano", top_k: 10 };
  const before = await search(mixed, { client: system, path: viewSearch });
  const exposed = idsOf(before.documents).filter((id) => !(view.parentsIn ?? []).includes(id));
  expect(
    view.parentsIn === null || view.parentsIn.length > 0 || before.documents.length === 0,
    "an empty custom view (parentsIn = []) must expose no documents",
    { ...server(before.r), parentsIn: view.parentsIn, exposed }
  );
  const add = requestBody("PatchDataSourceViewRequestSchema", { parentsToAdd: ["doc-volcano"], parentsToRemove: [] });
  const r1 = await system.patchDataSourceView(view, add);
  expect(r1.isOk(), "patchDataSourceView(parentsToAdd) returned an error", { sdk_error: r1.error });
  used.exported.add("DataSourceViewResponseSchema");
  expect(r1.value.parentsIn?.includes("doc-volcano"), "parentsIn must contain the added parent", r1.value);
  const { r, documents } = await search(mixed, { client: system, path: viewSearch });
  const seen = idsOf(documents);
  expect(
    seen.includes("doc-volcano") &&
      (r1.value.parentsIn.includes("doc-photosynthesis") || !seen.includes("doc-photosynthesis")),
    "a custom view must only expose documents under its parentsIn",
    { ...server(r), parentsIn: r1.value.parentsIn }
  );
  const remove = requestBody("PatchDataSourceViewRequestSchema", { parentsToRemove: ["doc-volcano"] });
  const r2 = await system.patchDataSourceView(r1.value, remove);
  expect(r2.isOk(), "patchDataSourceView(parentsToRemove) returned an error", { sdk_error: r2.error });
  expect(!r2.value.parentsIn?.includes("doc-volcano"), "parentsIn must no longer contain the parent", r2.value);
  return { after_add: r1.value.parentsIn, after_remove: r2.value.parentsIn };
});

await check("sdk.patchDataSourceView (default view is refused)", async () => {
  expect(state.defaultView, "no default view (see the listing check)");
  const patch = requestBody("PatchDataSourceViewRequestSchema", { parentsToAdd: ["doc-volcano"] });
  const res = await system.patchDataSourceView(state.defaultView, patch);
  expect(res.isErr(), "patching a default view must fail (Dust: 500 internal_server_error)", { value: res.value });
  return { sdk_error: res.error };
});

// --- 6. tokenize, folder delete --------------------------------------------------------------------------------------
await check("sdk.tokenize", async () => {
  const res = await builder.tokenize("Mitochondria produce ATP.", DS);
  expect(res.isOk(), "tokenize() returned an error", { sdk_error: res.isErr() ? res.error : undefined });
  used.exported.add("TokenizeResponseSchema");
  expect(res.value.length > 0, "no tokens", { tokens: res.value });
  return { tokens: res.value.slice(0, 12) };
});

await check("sdk.deleteFolder", async () => {
  const res = await system.deleteFolder({ dataSourceId: DS, folderId: FOLDER_ID });
  expect(res.isOk(), "deleteFolder() returned an error", { sdk_error: res.isErr() ? res.error : undefined });
  used.exported.add("DeleteFolderResponseSchema");
  expect(res.value.folder.folder_id === FOLDER_ID, "wrong folder_id echoed", res.value);
});

// --- 7. tables and rows ----------------------------------------------------------------------------------------------
const TABLE_ID = "people";
const tRoot = `spaces/${state.space}/data_sources/${DS_TABLES}/tables`;
const BORN = Date.UTC(1815, 11, 10);

await check("tables.upsert", async () => {
  const body = requestBody("UpsertDatabaseTableRequestSchema", {
    table_id: TABLE_ID,
    name: "people",
    title: "People",
    description: "Famous people",
    timestamp: NOW,
    tags: ["demo"],
  });
  const r = await call(builder, { method: "POST", path: tRoot, body });
  const value = await ok(builder, r, "UpsertTableResponseSchema");
  expect(value.table.table_id === TABLE_ID && value.table.name === "people", "wrong table echoed", server(r));
  return value.table;
});

await check("tables.list", async () => {
  const r = await call(builder, { method: "GET", path: tRoot });
  const value = await ok(builder, r, "ListTablesResponseSchema");
  expect(value.tables.some((t) => t.table_id === TABLE_ID), "table missing from the list", server(r));
});

await check("tables.get", async () => {
  const r = await call(builder, { method: "GET", path: `${tRoot}/${TABLE_ID}` });
  const value = await ok(builder, r, "GetTableResponseSchema");
  expect(value.table.table_id === TABLE_ID && value.table.description === "Famous people", "wrong table", server(r));
});

await check("rows.upsert", async () => {
  const body = requestBody("UpsertTableRowsRequestSchema", {
    rows: [
      { row_id: "1", value: { name: "Ada", age: 36, active: true, born: { type: "datetime", epoch: BORN } } },
      { row_id: "2", value: { name: "Alan", age: 41, active: false, born: null } },
    ],
    truncate: false,
  });
  const r = await call(builder, { method: "POST", path: `${tRoot}/${TABLE_ID}/rows`, body });
  const value = await ok(builder, r, "UpsertTableRowsResponseSchema");
  const types = Object.fromEntries((value.table.schema ?? []).map((c) => [c.name, c.value_type]));
  expect(
    types.name === "text" && types.age === "int" && types.active === "bool" && types.born === "datetime",
    "inferred schema must be name:text, age:int, active:bool, born:datetime",
    server(r)
  );
  return { schema: value.table.schema };
});

await check("rows.list", async () => {
  const r = await call(builder, {
    method: "GET",
    path: `${tRoot}/${TABLE_ID}/rows`,
    query: qs({ limit: 10, offset: 0 }),
  });
  const value = await ok(builder, r, "ListTableRowsResponseSchema");
  expect(value.total === 2 && value.rows.length === 2, "expected 2 rows", server(r));
  expect(value.limit === 10 && value.offset === 0, "limit/offset must be echoed", server(r));
});

await check("rows.get", async () => {
  const r = await call(builder, { method: "GET", path: `${tRoot}/${TABLE_ID}/rows/1` });
  const value = await ok(builder, r, "GetTableRowsResponseSchema");
  const v = value.row.value;
  expect(value.row.row_id === "1" && v.name === "Ada" && v.age === 36 && v.active === true, "wrong row", server(r));
  expect(v.born && v.born.type === "datetime" && v.born.epoch === BORN, "datetime must round-trip", server(r));
});

await check("rows.delete", async () => {
  const r = await call(builder, { method: "DELETE", path: `${tRoot}/${TABLE_ID}/rows/2` });
  expect(r.status === 200 && r.json?.success === true, 'expected 200 {"success": true}', server(r));
  const l = await call(builder, { method: "GET", path: `${tRoot}/${TABLE_ID}/rows` });
  const value = await ok(builder, l, "ListTableRowsResponseSchema");
  expect(value.total === 1, "row not deleted", server(l));
});

await check("tables.get missing → table_not_found", async () => {
  const r = await call(builder, { method: "GET", path: `${tRoot}/no-such-table` });
  const err = await sdkError(builder, r, "GetTableResponseSchema");
  expect(r.status === 404 && err.type === "table_not_found", "expected 404 table_not_found", {
    ...server(r),
    sdk_error: err,
  });
});

await check("tables.delete", async () => {
  const r = await call(builder, { method: "DELETE", path: `${tRoot}/${TABLE_ID}` });
  expect(r.status === 200, `expected HTTP 200 (Dust: empty body), got ${r.status}`, server(r));
  const g = await call(builder, { method: "GET", path: `${tRoot}/${TABLE_ID}` });
  const err = await sdkError(builder, g, "GetTableResponseSchema");
  expect(err.type === "table_not_found", "deleted table must be table_not_found", { ...server(g), sdk_error: err });
  return { delete_body: r.text };
});

// --- 8. document delete ----------------------------------------------------------------------------------------------
await check("documents.delete (idempotent)", async () => {
  const r = await call(builder, { method: "DELETE", path: docPath("doc-volcano") });
  const value = await ok(builder, r, "DeleteDocumentResponseSchema");
  expect(value.document.document_id === "doc-volcano", "wrong document_id echoed", server(r));
  const again = await call(builder, { method: "DELETE", path: docPath("doc-volcano") });
  await ok(builder, again, "DeleteDocumentResponseSchema");
  const { documents } = await search({ query: "volcano lava magma", top_k: 10 });
  expect(!idsOf(documents).includes("doc-volcano"), "deleted document still searchable", { ids: idsOf(documents) });
});

// --- 9. errors as the SDK reports them -------------------------------------------------------------------------------
await check("errors.invalid_api_key_error (sdk.getSpaces with a bad key)", async () => {
  const res = await badKey.getSpaces();
  expect(res.isErr(), "a bad key must give an error result", { value: res.value });
  expect(res.error.type === "invalid_api_key_error", "expected type invalid_api_key_error", { sdk_error: res.error });
  const r = await call(badKey, { method: "GET", path: `${dsRoot()}/documents` });
  expect(r.status === 401, `expected HTTP 401, got ${r.status}`, server(r));
  return { sdk_error: res.error };
});

await check("errors.data_source_error (missing document)", async () => {
  const r = await call(builder, { method: "GET", path: docPath("doc-does-not-exist") });
  const err = await sdkError(builder, r, "GetDocumentResponseSchema");
  expect(err.type === "data_source_error", "expected type data_source_error", { ...server(r), sdk_error: err });
  expect(
    err.data_source_error?.code === "data_source_document_not_found",
    "expected data_source_error.code = data_source_document_not_found",
    { ...server(r), sdk_error: err }
  );
  expect(r.status === 400, `expected HTTP 400 (Dust), got ${r.status}`, server(r));
  return { sdk_error: err };
});

await check("errors.content_too_large (17 MB document body)", async () => {
  const body = requestBody("PostDataSourceDocumentRequestSchema", { text: "a".repeat(17 * 1024 * 1024) });
  const r = await call(builder, { method: "POST", path: docPath("doc-huge"), body });
  const err = await sdkError(builder, r, "UpsertDocumentResponseSchema");
  expect(err.type === "content_too_large", "expected type content_too_large (HTTP 413)", {
    ...server(r),
    sdk_error: err,
  });
  return { status: r.status, sdk_error: err };
});

// --- report ----------------------------------------------------------------------------------------------------------
const failed = checks.filter((c) => !c.ok);
const report = {
  sdk_version: SDK_VERSION,
  node_version: process.version,
  base_url: BASE,
  schemas: {
    exported_response_schemas_used: [...used.exported].sort(),
    exported_request_schemas_used: [...used.request].sort(),
    non_exported_schemas_from_package_source: [...used.from_source].sort(),
    derived_from_exported: {
      DataSourceTypeSchema: "GetDataSourcesResponseSchema.shape.data_sources.element",
      DataSourceViewSchema: "DataSourceViewResponseSchema.shape.dataSourceView",
    },
    source_load_error: schemaLoadError,
  },
  summary: { total: checks.length, passed: checks.length - failed.length, failed: failed.map((c) => c.name) },
  checks,
};
process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
process.exitCode = failed.length ? 1 : 0;
