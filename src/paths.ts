import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The project's root: the nearest directory above this module with a package.json (works from src/ and dist/src/). */
export function projectRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('cannot find the project root (package.json)');
    dir = up;
  }
  return dir;
}

/** The quick-start configuration, used when no --config is given. */
export function defaultConfigPath(): string {
  return process.env.MAILD_CONFIG ?? path.join(projectRoot(), 'config', 'quickstart.yaml');
}
