// Validates constrained-generation outputs against their JSON Schemas with a real validator
// (ajv, draft 2020-12, plus ajv-formats). Input: a JSONL file, one {"name", "schema", "output"}
// per line. Prints one line per failure; exit status 1 if any output fails to parse or validate.
import { readFileSync } from "node:fs";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
const lines = readFileSync(process.argv[2], "utf8").split("\n").filter((l) => l.trim() !== "");
let failed = 0;
for (const line of lines) {
  const { name, schema, output } = JSON.parse(line);
  let value;
  try {
    value = JSON.parse(output);
  } catch (e) {
    console.log(`FAIL ${name}: not JSON (${e.message}): ${JSON.stringify(output)}`);
    failed++;
    continue;
  }
  const validate = ajv.compile(schema);
  if (!validate(value)) {
    console.log(`FAIL ${name}: ${ajv.errorsText(validate.errors)}: ${output}`);
    failed++;
  }
}
console.log(`validated ${lines.length} outputs, ${failed} failed`);
process.exit(failed ? 1 : 0);
