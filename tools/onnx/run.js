#!/usr/bin/env node
// Runs an ONNX model with ONNX Runtime (npm's onnxruntime-node, CPU) on input
// rows and prints its outputs as one JSON document:
//   {"outputs": {"label": {"type": "int64", "dims": [2], "data": [1, 0]}, ...},
//    "inputs": [{"name": "amount", "type": "float64"}, ...]}
//
//   node tools/onnx/run.js MODEL.onnx ROWS.json|ROWS.csv
//
// ROWS.json: an array of row objects ({"amount": 3.5, "country": "fr"}), or
// {"rows": [...]}. ROWS.csv: a header row, then comma-separated values
// ("double quotes" may wrap a value holding commas). Every graph input is a
// [N, 1] tensor filled from the column of its name, converted to the
// input's type: a missing or null number is NaN, a missing text is "".
// Numbers print as JavaScript writes doubles (shortest round-trip form),
// NaN as null, int64 as numbers. Exit status 1 with a message on stderr when
// anything fails.
'use strict';

const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');

function fail(msg) {
  process.stderr.write(`run.js: ${msg}\n`);
  process.exit(1);
}

// One CSV line into fields: commas separate, "..." quotes ("" is a quote).
function csvFields(line) {
  const out = [];
  let i = 0;
  for (;;) {
    let field = '';
    if (line[i] === '"') {
      i++;
      for (;;) {
        if (i >= line.length) fail('unterminated quote in CSV line: ' + line);
        if (line[i] === '"') {
          if (line[i + 1] === '"') { field += '"'; i += 2; continue; }
          i++;
          break;
        }
        field += line[i++];
      }
    } else {
      const end = line.indexOf(',', i);
      field = end < 0 ? line.slice(i) : line.slice(i, end);
      i = end < 0 ? line.length : end;
    }
    out.push(field);
    if (line[i] !== ',') return out;
    i++;
  }
}

function readRows(file) {
  const text = fs.readFileSync(file, 'utf8');
  if (path.extname(file).toLowerCase() === '.csv') {
    const lines = text.split(/\r?\n/).filter((l) => l.length > 0);
    if (lines.length === 0) fail(`${file}: no header row`);
    const header = csvFields(lines[0]);
    return lines.slice(1).map((line, n) => {
      const fields = csvFields(line);
      if (fields.length !== header.length) fail(`${file}: row ${n + 1} has ${fields.length} fields, the header ${header.length}`);
      const row = {};
      header.forEach((name, j) => { row[name] = fields[j] === '' ? null : fields[j]; });
      return row;
    });
  }
  const doc = JSON.parse(text);
  const rows = Array.isArray(doc) ? doc : doc && doc.rows;
  if (!Array.isArray(rows)) fail(`${file}: expected an array of rows or {"rows": [...]}`);
  return rows;
}

function toNumber(v, name, i) {
  if (v === null || v === undefined || v === '') return NaN;
  if (typeof v === 'boolean') return v ? 1 : 0;
  const x = typeof v === 'number' ? v : Number(v);
  if (typeof v !== 'number' && Number.isNaN(x) && String(v).toLowerCase() !== 'nan') {
    fail(`row ${i + 1}: input '${name}' is not a number: ${JSON.stringify(v)}`);
  }
  return x;
}

// The [N, 1] tensor of input `meta` from the rows.
function inputTensor(meta, rows) {
  const n = rows.length;
  const name = meta.name;
  const col = (i) => rows[i][name];
  switch (meta.type) {
    case 'string': {
      const data = rows.map((r, i) => (col(i) === null || col(i) === undefined ? '' : String(col(i))));
      return new ort.Tensor('string', data, [n, 1]);
    }
    case 'float64': case 'float32': {
      const data = meta.type === 'float64' ? new Float64Array(n) : new Float32Array(n);
      for (let i = 0; i < n; i++) data[i] = toNumber(col(i), name, i);
      return new ort.Tensor(meta.type, data, [n, 1]);
    }
    case 'int64': {
      const data = new BigInt64Array(n);
      for (let i = 0; i < n; i++) data[i] = BigInt(Math.trunc(toNumber(col(i), name, i)));
      return new ort.Tensor('int64', data, [n, 1]);
    }
    default:
      return fail(`input '${name}' has type ${meta.type}, which run.js does not feed`);
  }
}

function plain(tensor) {
  const data = Array.from(tensor.data, (v) => {
    if (typeof v === 'bigint') return Number(v);
    if (typeof v === 'number' && !Number.isFinite(v)) return Number.isNaN(v) ? null : (v > 0 ? 'Infinity' : '-Infinity');
    return v;
  });
  return { type: tensor.type, dims: Array.from(tensor.dims), data };
}

async function main() {
  const [model, rowsFile] = process.argv.slice(2);
  if (!model || !rowsFile) fail('usage: node run.js MODEL.onnx ROWS.json|ROWS.csv');
  const rows = readRows(rowsFile);
  const session = await ort.InferenceSession.create(model, { logSeverityLevel: 3 });
  const feeds = {};
  const inputs = [];
  for (const meta of session.inputMetadata) {
    if (!meta.isTensor) fail(`input '${meta.name}' is not a tensor`);
    feeds[meta.name] = inputTensor(meta, rows);
    inputs.push({ name: meta.name, type: meta.type });
  }
  const results = await session.run(feeds);
  const outputs = {};
  for (const name of session.outputNames) outputs[name] = plain(results[name]);
  process.stdout.write(JSON.stringify({ outputs, inputs }) + '\n');
}

main().catch((e) => fail(e && e.message ? e.message : String(e)));
