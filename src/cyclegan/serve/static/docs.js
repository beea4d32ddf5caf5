// The page at `/docs`: /openapi.json as a plain list of endpoints, parameters and responses (common.js first).
"use strict";

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function schemaText(schema) {
  if (!schema) return "";
  if (schema.$ref) return schema.$ref.split("/").pop();
  if (schema.anyOf || schema.oneOf) return (schema.anyOf || schema.oneOf).map(schemaText).join(" or ");
  if (schema.enum) return "one of " + schema.enum.join(", ");
  if (schema.type === "array") return "array of " + schemaText(schema.items);
  let text = schema.type || "any";
  if (schema.format) text += " (" + schema.format + ")";
  if (schema.default !== undefined) text += ", default " + JSON.stringify(schema.default);
  return text;
}

function listOf(items) {
  const list = element("ul");
  for (const item of items) list.append(element("li", item));
  return list;
}

function operationSection(method, path, operation) {
  const section = element("section", undefined, "operation");
  const heading = element("h3");
  heading.append(element("span", method.toUpperCase(), "method"), " ", element("code", path));
  section.append(heading);
  for (const text of [operation.summary, operation.description]) {
    if (text) section.append(element("p", text, "description"));
  }
  const parameters = operation.parameters || [];
  if (parameters.length) {
    section.append(element("h4", "Parameters"), listOf(parameters.map((parameter) =>
      parameter.name + " (" + parameter.in + (parameter.required ? ", required" : ", optional") + "): " +
      schemaText(parameter.schema) + (parameter.description ? ". " + parameter.description : ""))));
  }
  if (operation.requestBody) {
    const body = operation.requestBody;
    section.append(element("h4", "Request body"), listOf(Object.entries(body.content || {}).map(
      ([type, content]) => type + (content.schema ? ": " + schemaText(content.schema) : ""))));
    if (body.description) section.append(element("p", body.description, "description"));
  }
  section.append(element("h4", "Responses"), listOf(Object.entries(operation.responses || {}).map(
    ([code, response]) => code + ": " + (response.description || "") +
      (response.content ? " (" + Object.keys(response.content).join(", ") + ")" : ""))));
  return section;
}

function schemaSection(name, schema) {
  const section = element("section", undefined, "schema");
  section.append(element("h3", name));
  const required = schema.required || [];
  section.append(listOf(Object.entries(schema.properties || {}).map(([property, value]) =>
    property + (required.includes(property) ? " (required)" : "") + ": " + schemaText(value) +
      (value.description ? ". " + value.description : ""))));
  return section;
}

function renderSpec(spec) {
  const target = $("spec");
  const info = spec.info || {};
  target.replaceChildren(element("h2", (info.title || "API") + (info.version ? " " + info.version : "")));
  if (info.description) target.append(element("p", info.description, "description"));
  target.append(element("h2", "Endpoints"));
  for (const [path, item] of Object.entries(spec.paths || {})) {
    for (const method of ["get", "post", "put", "patch", "delete"]) {
      if (item[method]) target.append(operationSection(method, path, item[method]));
    }
  }
  const schemas = (spec.components || {}).schemas || {};
  if (Object.keys(schemas).length) {
    target.append(element("h2", "Schemas"));
    for (const [name, schema] of Object.entries(schemas)) target.append(schemaSection(name, schema));
  }
}

async function loadSpec() {
  let response;
  try {
    response = await fetch("/openapi.json", { headers: authHeaders() });
  } catch (_) {
    showError(NETWORK_MESSAGE);
    return;
  }
  if (response.status === 401) {
    askForToken(await responseError(response));
    return;
  }
  if (!response.ok) {
    showError(await responseError(response));
    return;
  }
  const spec = await response.json();
  renderSpec(spec);
  if (sessionStorage.getItem(TOKEN_KEY)) {
    // A link cannot send the token's header: link to the JSON as fetched instead.
    const raw = new Blob([JSON.stringify(spec, null, 2)], { type: "application/json" });
    $("raw-spec").href = URL.createObjectURL(raw);
  }
}

function setUpDocsPage() {
  setUpTokenForm(loadSpec);
  loadSpec();
}

setUpDocsPage();
