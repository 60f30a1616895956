// The published types match the modules: they type-check, and realtime.d.ts (with the .d.ts of
// each module it imports) is what `npm run types` generates from their JSDoc today.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const root = fileURLToPath(new URL("..", import.meta.url));
const tsc = join(root, "node_modules", "typescript", "bin", "tsc");

test("realtime.js type-checks and the committed realtime.d.ts is current (else: npm run types)", async () => {
  const out = await mkdtemp(join(tmpdir(), "realtime-types-"));
  try {
    await promisify(execFile)(process.execPath, [tsc, "-p", "tsconfig.json", "--outDir", out], { cwd: root });
    const generated = await readFile(join(out, "realtime.d.ts"), "utf8");
    assert.equal(await readFile(join(root, "realtime.d.ts"), "utf8"), generated);
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});

test("every module's committed .d.ts is current, and none is left over (else: npm run types)", async () => {
  const out = await mkdtemp(join(tmpdir(), "realtime-types-"));
  try {
    await promisify(execFile)(process.execPath, [tsc, "-p", "tsconfig.json", "--outDir", out], { cwd: root });
    const generated = (await readdir(out)).sort();
    const committed = (await readdir(root)).filter((name) => name.endsWith(".d.ts")).sort();
    assert.deepEqual(committed, generated);
    for (const name of generated) {
      assert.equal(await readFile(join(root, name), "utf8"), await readFile(join(out, name), "utf8"), name);
    }
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});
