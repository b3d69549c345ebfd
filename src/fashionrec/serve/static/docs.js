"use strict";
// Renders /openapi.json as a list of endpoints: no third-party viewer, so the docs work offline.

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function resolve(spec, schema) {
  while (schema && schema.$ref) schema = spec.components.schemas[schema.$ref.split("/").pop()];
  return schema || {};
}

function typeOf(spec, schema) {
  schema = resolve(spec, schema);
  if (schema.anyOf) return schema.anyOf.map((s) => typeOf(spec, s)).join(" | ");
  if (schema.type === "array") return `${typeOf(spec, schema.items)}[]`;
  if (schema.format === "binary") return "file";
  if (schema.properties) return `{${Object.keys(schema.properties).join(", ")}}`;
  return schema.type || "any";
}

function bounds(schema) {
  const parts = [];
  if (schema.minimum !== undefined) parts.push(`≥ ${schema.minimum}`);
  if (schema.maximum !== undefined) parts.push(`≤ ${schema.maximum}`);
  if (schema.maxLength !== undefined) parts.push(`at most ${schema.maxLength} characters`);
  if (schema.default !== undefined && schema.default !== null) parts.push(`default ${schema.default}`);
  return parts.join(", ");
}

function fieldTable(spec, rows) {
  const table = el("table", undefined, "fields");
  const head = table.insertRow();
  for (const name of ["field", "in", "type", "limits", "description"]) head.append(el("th", name));
  for (const row of rows) {
    const tr = table.insertRow();
    const schema = resolve(spec, row.schema);
    const name = row.required ? `${row.name} (required)` : row.name;
    for (const cell of [name, row.in, typeOf(spec, schema), bounds(schema), row.description || schema.description || ""]) {
      tr.append(el("td", cell));
    }
  }
  return table;
}

function endpoint(spec, path, method, op) {
  const section = el("section", undefined, "endpoint");
  section.append(el("h2", `${method.toUpperCase()} ${path}`));
  if (op.summary) section.append(el("p", op.summary, "lead"));
  if (op.description) section.append(el("p", op.description));
  const rows = (op.parameters || []).map((p) => ({ ...p, schema: p.schema, in: p.in }));
  const body = op.requestBody && Object.entries(op.requestBody.content)[0];
  if (body) {
    const schema = resolve(spec, body[1].schema);
    for (const [name, field] of Object.entries(schema.properties || {})) {
      rows.push({ name, in: body[0], schema: field, required: (schema.required || []).includes(name) });
    }
  }
  if (rows.length) section.append(fieldTable(spec, rows));
  const answers = el("ul");
  for (const [status, response] of Object.entries(op.responses || {})) {
    const content = response.content && response.content["application/json"];
    const shape = content ? ` → ${typeOf(spec, content.schema)}` : "";
    answers.append(el("li", `${status} ${response.description}${shape}`));
  }
  section.append(answers);
  return section;
}

fetch("/openapi.json").then((r) => r.json()).then((spec) => {
  document.getElementById("title").textContent = `${spec.info.title} API ${spec.info.version}`;
  document.getElementById("summary").textContent = spec.info.summary || "";
  const list = document.getElementById("endpoints");
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) list.append(endpoint(spec, path, method, op));
  }
}).catch(() => {
  document.getElementById("summary").textContent = "Could not load /openapi.json.";
});
